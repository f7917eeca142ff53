#!/usr/bin/env bash
# Installs the dependencies (Debian 12), builds yolose, and runs the detector
# on a real picture.  The model is $YOLOSE_MODEL when set; otherwise the
# upstream yolov5s.pt release checkpoint is fetched (when the network allows),
# or the test checkpoints beside the project are used.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive xargs -a tools/debian-packages.txt \
    apt-get install -y -qq --no-install-recommends >/dev/null
elif ! pkg-config --exists gstreamer-1.0 libzip check json-glib-1.0; then
  echo "Install the packages in tools/debian-packages.txt first:"
  echo "  sudo xargs -a tools/debian-packages.txt apt-get install -y"
  exit 1
fi

[ -d build ] || meson setup build
ninja -C build

cache=${XDG_CACHE_HOME:-$HOME/.cache}/yolose
mkdir -p "$cache"
release=https://github.com/ultralytics/yolov5/releases/download/v6.2
model=${YOLOSE_MODEL:-}
image=${1:-}
shared=../shared/testdata

fetch() { # url dest
  [ -s "$2" ] && return 0
  command -v curl >/dev/null || return 1
  curl -fsSL --connect-timeout 10 -o "$2.part" "$1" && mv "$2.part" "$2"
}

if [ -z "$model" ]; then
  if fetch "$release/yolov5s.pt" "$cache/yolov5s.pt"; then
    model=$cache/yolov5s.pt
  elif [ -f "$shared/models/yolov5n-coco.pt" ]; then
    model=$shared/models/yolov5n-coco.pt
  else
    cat <<MSG
No model: set YOLOSE_MODEL to an upstream YOLOv5 checkpoint (.pt), e.g. the
best.pt your training wrote, or download yolov5s.pt from
  $release/yolov5s.pt
and run:  YOLOSE_MODEL=/path/to/yolov5s.pt $0 [IMAGE]
MSG
    exit 1
  fi
fi

if [ -z "$image" ]; then
  if fetch https://ultralytics.com/images/zidane.jpg "$cache/zidane.jpg"; then
    image=$cache/zidane.jpg
  elif [ -f "$shared/images/zidane.jpg" ]; then
    image=$shared/images/zidane.jpg
  else
    echo "No picture: pass one, e.g. $0 photo.jpg"
    exit 1
  fi
fi

echo "model: $model"
build/tools/yolose-detect --model "$model" "$image"
