#!/bin/sh
# How much of the network's rate the whole element keeps: letterbox, NMS,
# metadata and (optionally) the overlay around the same network.
#
# usage: tools/element-rate.sh BUILD_DIR MODEL.pt [THREADS] [FRAMES]
#
# 1. the network alone: yolose-bench at 640, median over FRAMES runs;
# 2. a 1280x720 H.264 (or MJPEG) clip of bus.jpg through
#    `filesrc ! decodebin ! yolose ! fakesink`, overlay off then on.
# The element's per-frame time is the difference between a run of
# FRAMES + 10 frames and one of 10 (which removes loading the model and
# starting the pipeline).  Decoding runs in its own thread and competes
# for the same cores; the pipeline `imagefreeze ! yolose` (no decoder)
# is printed too so that its share can be told apart.
# Prints one JSON line per pipeline.  Run it on a quiet machine.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tools/element-clip.sh
. "$here/element-clip.sh"
element_clip_args 100 "$@"
source_frames=$((frames + 10))
element_clip_encode "$source_frames"

now() { date +%s.%N; }

# seconds that $1 frames take through pipeline template $2 (NUM is
# replaced by the frame count)
run_frames() {
  pipeline=$(echo "$2" | sed "s/NUM/$1/g")
  t0=$(now)
  # shellcheck disable=SC2086 # the pipeline is split into words on purpose
  gst-launch-1.0 -q $pipeline >/dev/null
  t1=$(now)
  echo "$t1 - $t0" | bc -l
}

per_frame_ms() {
  short=$(run_frames 10 "$1")
  long=$(run_frames "$source_frames" "$1")
  echo "($long - $short) * 1000 / $frames" | bc -l
}

net=$("$build/tools/yolose-bench" --model "$model" --threads "$threads" \
  --iterations "$frames" | tail -n 1)
net_ms=$(echo "$net" | sed 's/.*"median_ms":\([0-9.]*\).*/\1/')
echo "{\"pipeline\":\"yolose-bench (network alone, 640)\",\"ms_per_frame\":$net_ms,\"share_of_network_rate\":1}"

element="yolose model=$model threads=$threads"
for overlay in false true; do
  for name in decodebin imagefreeze; do
    if [ $name = decodebin ]; then
      src="filesrc location=$clip ! decodebin ! identity eos-after=NUM"
    else
      src="filesrc location=$image ! jpegdec ! videoconvert ! videoscale ! imagefreeze num-buffers=NUM ! $caps ! videoconvert ! video/x-raw,format=I420"
    fi
    ms=$(per_frame_ms "$src ! $element overlay=$overlay ! fakesink sync=false")
    share=$(echo "$net_ms / $ms" | bc -l)
    printf '{"pipeline":"%s ! yolose overlay=%s ! fakesink","ms_per_frame":%.2f,"share_of_network_rate":%.3f}\n' \
      "$name" "$overlay" "$ms" "$share"
  done
done
