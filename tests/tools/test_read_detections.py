#!/usr/bin/env python3
"""yolose tests - examples/read_detections.py against yolose-detect.

    test_read_detections.py READ_DETECTIONS.py YOLOSE-DETECT

Runs the Python example on bus.jpg through GStreamer (decodebin, the
element) and yolose-detect on the same picture (gdk-pixbuf, the library),
and checks that they report the same objects: the same count, and for
each detection one of the same class with IoU >= 0.9 and a confidence
within 0.03 (the two decoders' JPEG colour conversions differ a little).
Exits 77 (skip), saying why, without PyGObject, the test data, or when
the plugin is built with sanitizers (which python3 cannot load).

Under a slow checker (CI's valgrind step) $YOLOSE_TEST_KERNELS picks the
kernel table of both programs (the example through its --pipeline) and
$YOLOSE_TEST_QUICK runs both at input size 320 instead of 640."""

import json
import os
import subprocess
import sys

SKIP = 77
MODEL = "models/yolov5n-coco.pt"
PICTURE = "images/bus.jpg"
TIMEOUT = 300


def skip(why):
    print(f"SKIP: {why}")
    sys.exit(SKIP)


def iou(a, b):
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0) * max(h, 0)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area - inter) if area > inter else 0.0


def run(argv):
    done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT)
    if done.returncode != 0:
        sys.exit(f"{argv[0]} failed ({done.returncode}):\n{done.stderr}")
    return [json.loads(line) for line in done.stdout.splitlines() if line]


def main():
    example, detect = sys.argv[1], sys.argv[2]
    if os.environ.get("YOLOSE_SANITIZED"):
        skip("the plugin is built with sanitizers, which python3 cannot load")
    try:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstVideo", "1.0")
    except (ImportError, ValueError) as missing:
        skip(f"PyGObject with GStreamer's typelibs is missing ({missing})")
    root = os.environ.get("YOLOSE_TESTDATA", "")
    model, picture = os.path.join(root, MODEL), os.path.join(root, PICTURE)
    if not root or not (os.path.isfile(model) and os.path.isfile(picture)):
        skip(f"{MODEL} and {PICTURE} not found (YOLOSE_TESTDATA={root or '(unset)'})")

    example_args, detect_args = ["--model", model], ["--model", model]
    kernels = os.environ.get("YOLOSE_TEST_KERNELS", "")
    if kernels:
        pipeline = (
            f'filesrc location="{picture}" ! decodebin ! videoconvert ! '
            f"yolose kernels={kernels} ! fakesink"
        )
        example_args += ["--pipeline", pipeline]
        detect_args += ["--kernels", kernels]
    else:
        example_args.append(picture)
    if os.environ.get("YOLOSE_TEST_QUICK", "0") not in ("", "0"):
        print("quick mode (YOLOSE_TEST_QUICK): both at input size 320")
        example_args += ["--input-size", "320"]
        detect_args += ["--size", "320"]
    frames = run([sys.executable, example] + example_args)
    reference = run([detect] + detect_args + [picture])
    assert len(frames) == 1, f"one frame expected, got {len(frames)}"
    assert frames[0]["frame"] == 0 and frames[0]["pts"] == 0, frames[0]
    ours, theirs = frames[0]["detections"], reference[0]["detections"]
    print(f"read_detections.py: {len(ours)} detections, yolose-detect: {len(theirs)}")
    assert len(ours) == len(theirs) > 0, (ours, theirs)

    unmatched = list(theirs)
    for d in ours:
        same_class = [t for t in unmatched if t["class_id"] == d["class_id"]]
        assert same_class, f"no {d['label']} in yolose-detect's output: {d}"
        best = max(same_class, key=lambda t: iou(d["box"], t["box"]))
        overlap = iou(d["box"], best["box"])
        dconf = abs(d["confidence"] - best["confidence"])
        print(f"  {d['label']:8} IoU {overlap:.3f}  |dconf| {dconf:.4f}")
        assert d["label"] == best["label"], (d, best)
        assert overlap >= 0.9, f"boxes differ: {d} vs {best}"
        assert dconf <= 0.03, f"confidences differ: {d} vs {best}"
        unmatched.remove(best)
    print("same detections")


if __name__ == "__main__":
    main()
