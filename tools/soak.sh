#!/usr/bin/env bash
# yolose soak: the element run long in one process, three ways (see
# tests/soak/soak.c): FRAMES frames through videotestsrc ! yolose ! fakesink
# with resident memory flat within 5 % after warm-up; CYCLES
# NULL->PLAYING->NULL state-change cycles; PARALLEL elements running at once
# in one pipeline.  The defaults are the full counts; CI runs the same
# script with small ones (tests/soak/meson.build, suite 'soak').
#
#   tools/soak.sh [--build DIR] [--model M.pt] [--input-size S] [--threads T]
#                 [--frames N] [--cycles N] [--parallel N] [--parallel-frames N]
#
# --threads is yolose's `threads` for the frames and cycles runs (default 0:
# all cores); the parallel run gives each element one thread.
#
# Exit status: 0 all passed, 1 one failed, 77 the model is missing (skip).
set -uo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
build=$here/build
model=${YOLOSE_TESTDATA:-$here/../shared/testdata}/models/yolov5n-coco.pt
size=64
threads=0
frames=20000
cycles=500
parallel=4
parallel_frames=500
soak_bin=

while [ $# -gt 0 ]; do
  case $1 in
    --build) build=$2 ;;
    --soak) soak_bin=$2 ;;
    --model) model=$2 ;;
    --input-size) size=$2 ;;
    --threads) threads=$2 ;;
    --frames) frames=$2 ;;
    --cycles) cycles=$2 ;;
    --parallel) parallel=$2 ;;
    --parallel-frames) parallel_frames=$2 ;;
    *) sed -n '2,15p' "$0"; exit 2 ;;
  esac
  shift 2
done
soak_bin=${soak_bin:-$build/tests/soak/soak}
if [ ! -x "$soak_bin" ]; then
  echo "soak.sh: $soak_bin is not built (ninja -C $build)" >&2
  exit 1
fi
if [ ! -f "$model" ]; then
  echo "SKIP: model $model not found (set YOLOSE_TESTDATA)"
  exit 77
fi

# The freshly built plugin, in a registry of its own; scanned in-process so
# that sanitizer builds work (the forked scanner is not instrumented).
export GST_PLUGIN_PATH=$build/gst-plugin${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}
export GST_REGISTRY=${GST_REGISTRY:-$build/tests/soak/registry.bin}
export GST_REGISTRY_FORK=no

status=0
run() {
  local start=$SECONDS rc
  "$soak_bin" "$@"
  rc=$?
  echo "soak.sh: '$1' took $((SECONDS - start)) s, exit status $rc"
  case $rc in
    0) ;;
    77) [ $status = 0 ] && status=77 ;;
    *) status=1 ;;
  esac
}

echo "soak.sh: model $model, input size $size, $(nproc) cores"
run frames "$model" "$size" "$threads" "$frames"
run cycles "$model" "$size" "$threads" "$cycles"
run parallel "$model" "$size" "$parallel" "$parallel_frames"
exit $status
