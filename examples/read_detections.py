#!/usr/bin/env python3
"""read_detections.py - read yolose's detections from each buffer, in Python.

Runs

    filesrc location=MEDIA ! decodebin ! videoconvert ! yolose model=M.pt
        ! fakesink

(or the pipeline given with --pipeline, which must hold a yolose element)
and prints one JSON line for every frame that leaves yolose:

    {"frame": 0, "pts": 0, "detections": [{"class_id": 0, "label": "person",
     "confidence": 0.82053, "box": [219.0, 408.0, 350.0, 863.0]}]}

read from the GstVideoRegionOfInterestMeta that yolose attaches to the
buffer: a pad probe on yolose's source pad sees every frame, and each
region's "detection" parameter holds the label, class id, confidence and
the box (0..1 of the frame).

    python3 read_detections.py --model best.pt bus.jpg
    python3 read_detections.py --pipeline \\
        "videotestsrc num-buffers=5 ! videoconvert ! yolose model=best.pt ! fakesink"

Needs PyGObject and GStreamer's introspection data (Debian 12: python3-gi,
gir1.2-gstreamer-1.0, gir1.2-gst-plugins-base-1.0, for Debian's own
/usr/bin/python3), and the yolose plugin installed or in GST_PLUGIN_PATH.
"""

import argparse
import json
import sys

try:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstVideo", "1.0")
    from gi.repository import GLib, Gst, GstVideo
except (ImportError, ValueError) as missing:
    sys.exit(
        "read_detections.py needs PyGObject with GStreamer's introspection "
        "data: apt install python3-gi gir1.2-gstreamer-1.0 "
        "gir1.2-gst-plugins-base-1.0, and run it with /usr/bin/python3 "
        f"({missing})"
    )

DEFAULT_PIPELINE = (
    "filesrc name=media ! decodebin ! videoconvert ! yolose name=detector "
    "! fakesink"
)


def regions(buffer):
    """The buffer's region-of-interest metas.

    PyGObject cannot walk a buffer's metas in general (the iterator of
    gst_buffer_iterate_meta is not introspectable), but it can count them
    by API and fetch a region by its id, and yolose numbers its regions
    0, 1, ... in each buffer."""
    api = GstVideo.video_region_of_interest_meta_api_get_type()
    for roi_id in range(buffer.get_n_meta(api)):
        roi = GstVideo.buffer_get_video_region_of_interest_meta_id(buffer, roi_id)
        if roi is not None:
            yield roi


def detection(roi, width, height):
    """One region as a dict: the "detection" parameter has yolose's own
    box (0..1 of the frame); the meta's x, y, w, h are that box rounded
    outwards to whole pixels."""
    params = roi.get_param("detection")
    if params is None:
        return {
            "class_id": -1,
            "label": GLib.quark_to_string(roi.roi_type),
            "confidence": None,
            "box": [roi.x, roi.y, roi.x + roi.w, roi.y + roi.h],
        }
    box = [
        params.get_value("x_min") * width,
        params.get_value("y_min") * height,
        params.get_value("x_max") * width,
        params.get_value("y_max") * height,
    ]
    return {
        "class_id": params.get_value("label_id"),
        "label": params.get_value("label"),
        "confidence": round(params.get_value("confidence"), 5),
        # round() is half to even, like upstream's torch.round.
        "box": [float(round(v)) for v in box],
    }


def on_frame(pad, info, counter):
    """Pad probe, in the streaming thread: one JSON line per frame."""
    buffer = info.get_buffer()
    caps = pad.get_current_caps().get_structure(0)
    width, height = caps.get_value("width"), caps.get_value("height")
    print(
        json.dumps(
            {
                "frame": counter[0],
                "pts": None if buffer.pts == Gst.CLOCK_TIME_NONE else buffer.pts,
                "detections": [detection(r, width, height) for r in regions(buffer)],
            }
        ),
        flush=True,
    )
    counter[0] += 1
    return Gst.PadProbeReturn.OK


def find_yolose(pipeline):
    """The first yolose element in the pipeline, at any depth."""
    it = pipeline.iterate_recurse()
    while True:
        result, element = it.next()
        if result == Gst.IteratorResult.RESYNC:
            it.resync()
        elif result != Gst.IteratorResult.OK:
            return None
        elif element.get_factory() and element.get_factory().get_name() == "yolose":
            return element


def build(args):
    if args.pipeline:
        pipeline = Gst.parse_launch(args.pipeline)
        detector = find_yolose(pipeline)
        if detector is None:
            sys.exit("the pipeline has no yolose element")
    else:
        pipeline = Gst.parse_launch(DEFAULT_PIPELINE)
        # Set as properties rather than pasted into the launch line: any
        # file name works, quotes and spaces included.
        pipeline.get_by_name("media").set_property("location", args.media)
        detector = pipeline.get_by_name("detector")
    if args.model:
        detector.set_property("model", args.model)
    if args.input_size:
        detector.set_property("input-size", args.input_size)
    if args.conf is not None:
        detector.set_property("conf-threshold", args.conf)
    return pipeline, detector


def run(pipeline):
    """Plays the pipeline to its end; returns an error message or None."""
    bus = pipeline.get_bus()
    failure = None
    if pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
        failure = "the pipeline could not start"
    try:
        while True:
            # A bounded wait, so that Ctrl-C is noticed.
            msg = bus.timed_pop_filtered(
                100 * Gst.MSECOND, Gst.MessageType.ERROR | Gst.MessageType.EOS
            )
            if msg is None:
                continue
            if msg.type == Gst.MessageType.ERROR:
                error, debug = msg.parse_error()
                failure = f"error from {msg.src.get_name()}: {error.message}"
            break
    except KeyboardInterrupt:
        pass
    pipeline.set_state(Gst.State.NULL)
    return failure


def main():
    parser = argparse.ArgumentParser(
        description="Print yolose's detections of every frame as JSON lines."
    )
    parser.add_argument("media", nargs="?", help="a picture or video file")
    parser.add_argument("--model", help="the YOLOv5 checkpoint (.pt)")
    parser.add_argument("--pipeline", help="a gst-launch pipeline with yolose")
    parser.add_argument("--input-size", type=int, help="network input size")
    parser.add_argument("--conf", type=float, help="confidence threshold")
    args = parser.parse_args()
    if not args.pipeline and not (args.media and args.model):
        parser.error("give MEDIA and --model, or --pipeline")

    Gst.init(None)
    if Gst.ElementFactory.find("yolose") is None:
        sys.exit("no yolose element: install the plugin or add its folder to GST_PLUGIN_PATH")
    try:
        pipeline, detector = build(args)
    except GLib.Error as error:
        sys.exit(f"bad pipeline: {error.message}")

    counter = [0]
    detector.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, on_frame, counter)
    failure = run(pipeline)
    if failure:
        sys.exit(failure)
    if counter[0] == 0:
        sys.exit("no frame reached yolose")


if __name__ == "__main__":
    main()
