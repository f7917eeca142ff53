"""Sorts `perf report --stdio --sort dso,sym` lines (stdin) into what the
element does per frame, and prints one JSON line (tools/element-profile.sh).

A symbol counts as the network when it belongs to the graph or the
kernels; as the element's own work when it is the letterbox, the
postprocess (NMS), the element or the overlay; model loading and start-up
are left out of both.  libc's memmove/memset are the kernels' band copies
and zeroing, so they count as the network.

The graph's and the kernels' symbols come from the file NETWORK_SYMBOLS
names (one per line: what element-profile.sh lists from their object
files), so that a new kernel counts as the network without being added
here; a list of name fragments, which does not follow new code, is the
fallback.  (With only the list, the stride-2 kernel's functions counted
as the element's: 21% of the samples.)"""
import json
import os
import re
import sys

NETWORK = ("gemm", "conv_band", "fill_band", "transform_", "wino_task",
           "pool_", "maxpool", "decode_row", "sigmoid", "upsample", "squeeze",
           "graph_forward", "run_concat", "__memmove", "__memset")
ELEMENT = ("fill_rows", "letterbox", "postprocess", "overlay", "gst_yolose",
           "nms", "cairo", "pango", "blend")
LOADING = ("checkpoint", "pack", "pickle", "zip", "crc32", "inflate",
           "do_lookup", "_dl_")


def network_symbols():
    path = os.environ.get("NETWORK_SYMBOLS")
    if not path:
        return frozenset()
    with open(path, encoding="utf-8") as f:
        return frozenset(line.strip() for line in f if line.strip())


def category(dso, sym, network):
    if any(k in sym for k in LOADING) or dso.startswith("ld-linux"):
        return "loading"
    if sym in network or any(k in sym for k in NETWORK):
        return "network"
    if any(k in sym for k in ELEMENT) or dso.startswith("libgstyolose"):
        return "element"
    if dso.startswith(("libav", "libopenh264", "libx264", "libgstlibav",
                       "libjpeg", "libgstjpeg")):
        return "decoder"
    return "other"


def main():
    shares = {}
    network = network_symbols()
    line = re.compile(r"\s*([\d.]+)%\s+(\S+)\s+\[.\]\s+(.*)")
    for text in sys.stdin:
        m = line.match(text)
        if m:
            c = category(m.group(2), m.group(3), network)
            shares[c] = shares.get(c, 0.0) + float(m.group(1))
    net, own = shares.get("network", 0.0), shares.get("element", 0.0)
    out = {"overlay": os.environ.get("OVERLAY", "?") == "true"}
    out.update({k + "_pct": round(v, 2) for k, v in sorted(shares.items())})
    out["element_share_of_frame"] = round(own / (net + own), 4) if net else None
    out["network_rate_kept"] = round(net / (net + own), 4) if net else None
    print(json.dumps(out))


if __name__ == "__main__":
    main()
