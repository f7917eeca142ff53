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

build=${1:?usage: element-profile.sh BUILD_DIR MODEL.pt [THREADS] [FRAMES]}
model=${2:?usage: element-profile.sh BUILD_DIR MODEL.pt [THREADS] [FRAMES]}
threads=${3:-2}
frames=${4:-40}
here=$(cd "$(dirname "$0")" && pwd)
image=${YOLOSE_TESTDATA:-$here/../../shared/testdata}/images/bus.jpg
[ -f "$image" ] || { echo "element-profile.sh: no $image (set YOLOSE_TESTDATA)" >&2; exit 1; }
command -v perf >/dev/null || { echo "element-profile.sh: needs perf (apt-get install linux-perf)" >&2; exit 1; }

export GST_PLUGIN_PATH="$build/gst-plugin${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM

caps=video/x-raw,width=1280,height=720,framerate=30/1
if gst-inspect-1.0 x264enc >/dev/null 2>&1; then
  encode="x264enc speed-preset=ultrafast key-int-max=30 ! h264parse ! mp4mux"
  clip=$work/clip.mp4
else
  encode="jpegenc ! avimux"
  clip=$work/clip.avi
fi
# shellcheck disable=SC2086 # $encode is a pipeline fragment
gst-launch-1.0 -q filesrc location="$image" ! jpegdec ! videoconvert \
  ! videoscale ! imagefreeze num-buffers="$frames" ! "$caps" \
  ! videoconvert ! video/x-raw,format=I420 ! $encode \
  ! filesink location="$clip"

for overlay in false true; do
  perf record -q -e cpu-clock -o "$work/perf.data" -- gst-launch-1.0 -q \
    filesrc location="$clip" ! decodebin \
    ! yolose model="$model" threads="$threads" overlay=$overlay \
    ! fakesink sync=false >/dev/null 2>&1
  perf report -i "$work/perf.data" --stdio --sort dso,sym 2>/dev/null \
    | OVERLAY=$overlay python3 "$here/element-profile.py"
done
