#!/bin/sh
# Where the whole element's CPU time goes, by share of perf samples: the
# network against what the element adds around it (letterbox, NMS and
# metadata, the overlay) and the decoder.  Shares of one process's samples
# do not depend on what else the machine runs, unlike the rates that
# tools/element-rate.sh times, so this answers "does the element keep 90%
# of the network's rate" on a busy machine too.
#
# usage: tools/element-profile.sh BUILD_DIR MODEL.pt [THREADS] [FRAMES]
#
# A 1280x720 H.264 (or MJPEG) clip of bus.jpg goes through
# `filesrc ! decodebin ! yolose ! fakesink`, overlay off then on, under
# `perf record -e cpu-clock`.  Loading the model is reported apart; the
# element's share is (letterbox + postprocess + overlay + element) /
# (that + network).  Needs perf (Debian: linux-perf).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tools/element-clip.sh
. "$here/element-clip.sh"
element_clip_args 40 "$@"
command -v perf >/dev/null || { echo "element-profile.sh: needs perf (apt-get install linux-perf)" >&2; exit 1; }
element_clip_encode "$frames"

# The graph's and the kernels' functions, by name, from their object files
# (element-profile.py counts their samples as the network's).
core=$build/core
for obj in "$core"/libyolose-avx2.a "$core"/libyolose-avx512.a \
  "$core"/libyolose-core.a.p/graph.c.o "$core"/libyolose-core.a.p/kernels_generic.c.o \
  "$core"/libyolose-core.a.p/kernels_pool.c.o; do
  [ -f "$obj" ] && nm --defined-only "$obj"
done | awk 'NF == 3 && $2 ~ /^[tTwW]$/ { print $3 }' >"$work/network-symbols"
export NETWORK_SYMBOLS="$work/network-symbols"

for overlay in false true; do
  perf record -q -e cpu-clock -o "$work/perf.data" -- gst-launch-1.0 -q \
    filesrc location="$clip" ! decodebin \
    ! yolose model="$model" threads="$threads" overlay=$overlay \
    ! fakesink sync=false >/dev/null 2>&1
  perf report -i "$work/perf.data" --stdio --sort dso,sym 2>/dev/null \
    | OVERLAY=$overlay python3 "$here/element-profile.py"
done
