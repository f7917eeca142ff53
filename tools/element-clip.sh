# shellcheck shell=sh
# What tools/element-rate.sh and tools/element-profile.sh share, sourced by
# both (POSIX sh): their command line, and the clip their pipelines decode.
# The caller sets `here` (the tools folder) before sourcing it.
#
# element_clip_args DEFAULT_FRAMES "$@"
#   reads BUILD_DIR MODEL.pt [THREADS] [FRAMES] into build, model, threads
#   (2 unless given) and frames (DEFAULT_FRAMES unless given), and image:
#   bus.jpg from $YOLOSE_TESTDATA (or ../shared/testdata beside the
#   project).  Exits with the usage line, or the missing picture's path.
# element_clip_encode FRAMES
#   puts the build's plugin first in GST_PLUGIN_PATH, makes a work folder
#   (work, removed on exit) and writes FRAMES frames of bus.jpg at caps
#   (1280x720) to clip: H.264 in MP4 when x264enc is there, otherwise MJPEG
#   in AVI.

# shellcheck disable=SC2034 # the variables are for the sourcing script
element_clip_args() {
  element_clip_frames=$1
  shift
  element_clip_name=$(basename "$0")
  build=${1:?usage: $element_clip_name BUILD_DIR MODEL.pt [THREADS] [FRAMES]}
  model=${2:?usage: $element_clip_name BUILD_DIR MODEL.pt [THREADS] [FRAMES]}
  threads=${3:-2}
  frames=${4:-$element_clip_frames}
  image=${YOLOSE_TESTDATA:-$here/../../shared/testdata}/images/bus.jpg
  [ -f "$image" ] || {
    echo "$element_clip_name: no $image (set YOLOSE_TESTDATA)" >&2
    exit 1
  }
}

element_clip_encode() {
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
    ! videoscale ! imagefreeze num-buffers="$1" ! "$caps" \
    ! videoconvert ! video/x-raw,format=I420 ! $encode \
    ! filesink location="$clip"
}
