#!/usr/bin/env python3
"""Writes the fuzzers' seed inputs into tests/fuzz/seeds/.

No torch needed: fake `torch`, `models.yolo`, `models.common` and
`torch.nn.*` modules make Python's own pickle emit the same GLOBAL /
NEWOBJ / BUILD / BINPERSID opcodes torch.save does for an upstream YOLOv5
training checkpoint, and the archive is laid out like torch's
(<prefix>/data.pkl, <prefix>/data/<key>, <prefix>/version).

The checkpoints are real YOLOv5 architectures shrunk to 8-16 channels and
a 64x64 input (a few KiB each), so that one fuzzer execution reaches the
model builder, the graph's memory plan and a forward pass in about a
millisecond instead of the ~100 ms a 4 MB upstream checkpoint costs.
Deterministic: the same files on every run.

Usage: tests/fuzz/make_seeds.py [OUTDIR]   (default: tests/fuzz/seeds)
       tests/fuzz/make_seeds.py --hostile [OUTDIR]
           (default: tests/fuzz/regressions/checkpoint): hand-written
           architectures that ask for too much, kept as regression files
"""
import collections
import io
import math
import os
import pickle
import random
import struct
import sys
import types
import zipfile

OrderedDict = collections.OrderedDict


def fake_module(name):
    """A module pickle can import, with its parent packages."""
    if name in sys.modules:
        return sys.modules[name]
    mod = types.ModuleType(name)
    sys.modules[name] = mod
    if "." in name:
        parent, _, child = name.rpartition(".")
        setattr(fake_module(parent), child, mod)
    return mod


def fake_class(mod, name, base=object):
    cls = type(name, (base,), {})
    cls.__module__ = mod.__name__
    cls.__qualname__ = name
    setattr(mod, name, cls)
    return cls


torch = fake_module("torch")
utils = fake_module("torch._utils")
for storage_name in ("HalfStorage", "FloatStorage", "DoubleStorage",
                     "BFloat16Storage"):
    fake_class(torch, storage_name)


def _rebuild_tensor_v2(*args):
    pass


def _rebuild_parameter(*args):
    pass


for fn in (_rebuild_tensor_v2, _rebuild_parameter):
    fn.__module__ = "torch._utils"
    setattr(utils, fn.__name__, fn)

CLASSES = {}
for mod_name, names in {
    "models.yolo": ["Model", "DetectionModel", "Detect"],
    "models.common": ["Conv", "C3", "Bottleneck", "SPPF", "SPP", "SElayer",
                      "Concat"],
    "torch.nn.modules.conv": ["Conv2d"],
    "torch.nn.modules.batchnorm": ["BatchNorm2d"],
    "torch.nn.modules.activation": ["SiLU", "ReLU", "Sigmoid"],
    "torch.nn.modules.container": ["Sequential", "ModuleList"],
    "torch.nn.modules.pooling": ["MaxPool2d", "AdaptiveAvgPool2d"],
    "torch.nn.modules.upsampling": ["Upsample"],
    "torch.nn.modules.linear": ["Linear", "Identity"],
}.items():
    mod = fake_module(mod_name)
    for n in names:
        CLASSES[n] = fake_class(mod, n)

STORAGE_FORMATS = {"HalfStorage": "e", "FloatStorage": "f",
                   "DoubleStorage": "d"}


class Storage:
    def __init__(self, kind, key, values):
        self.kind, self.key, self.values = kind, key, values

    def data(self):
        fmt = STORAGE_FORMATS[self.kind]
        return struct.pack("<%d%s" % (len(self.values), fmt), *self.values)


class Tensor:
    def __init__(self, storage, shape):
        stride, acc = [], 1
        for size in reversed(shape):
            stride.insert(0, acc)
            acc *= size
        self.args = (storage, 0, tuple(shape), tuple(stride), False,
                     OrderedDict())

    def __reduce__(self):
        return (_rebuild_tensor_v2, self.args)


class Parameter:
    def __init__(self, tensor):
        self.tensor = tensor

    def __reduce__(self):
        return (_rebuild_parameter, (self.tensor, True, OrderedDict()))


class Saver:
    """Collects the storages of one checkpoint."""

    def __init__(self, kind, rng):
        self.kind, self.rng, self.storages = kind, rng, []

    def tensor(self, shape, low=-0.5, high=0.5, values=None):
        n = math.prod(shape) if shape else 1
        if values is None:
            values = [round(self.rng.uniform(low, high), 3) for _ in range(n)]
        storage = Storage(self.kind, str(len(self.storages)), values)
        self.storages.append(storage)
        return Tensor(storage, shape)

    def param(self, shape, **kw):
        return Parameter(self.tensor(shape, **kw))


def module(cls_name, params=None, buffers=None, modules=None, **attrs):
    obj = CLASSES[cls_name]()
    obj.__dict__.update({
        "training": False,
        "_parameters": OrderedDict(params or {}),
        "_buffers": OrderedDict(buffers or {}),
        "_modules": OrderedDict(modules or {}),
    })
    obj.__dict__.update(attrs)
    return obj


class Builder:
    """parse_model's channel arithmetic, emitting modules with weights."""

    def __init__(self, saver, yaml, fused):
        self.s, self.yaml, self.fused = saver, yaml, fused
        self.width = yaml["width_multiple"]
        self.depth = yaml["depth_multiple"]
        self.nc = yaml["nc"]
        anchors = yaml["anchors"]
        self.na = len(anchors[0]) // 2 if isinstance(anchors, list) else anchors
        self.no = self.na * (self.nc + 5)

    def ch(self, c):
        return c if c == self.no else int(math.ceil(c * self.width / 8) * 8)

    def conv(self, c1, c2, k=1, s=1, p=None, g=1):
        p = k // 2 if p is None else p
        conv2d = module("Conv2d", {"weight": self.s.param([c2, c1 // g, k, k]),
                                   "bias": self.s.param([c2]) if self.fused
                                   else None},
                        in_channels=c1, out_channels=c2, kernel_size=(k, k),
                        stride=(s, s), padding=(p, p), dilation=(1, 1),
                        groups=g)
        mods = {"conv": conv2d, "act": module("SiLU", inplace=True)}
        if not self.fused:
            mods["bn"] = module(
                "BatchNorm2d",
                {"weight": self.s.param([c2], low=0.5, high=1.5),
                 "bias": self.s.param([c2])},
                {"running_mean": self.s.tensor([c2]),
                 "running_var": self.s.tensor([c2], low=0.5, high=2.0),
                 "num_batches_tracked": None},
                eps=0.001, momentum=0.03)
        return module("Conv", modules=mods)

    def c3(self, c1, c2, n, shortcut=True):
        c_ = int(c2 * 0.5)
        bottlenecks = OrderedDict()
        for i in range(n):
            bottlenecks[str(i)] = module(
                "Bottleneck", modules={"cv1": self.conv(c_, c_, 1),
                                       "cv2": self.conv(c_, c_, 3)},
                add=shortcut)
        return module("C3", modules={
            "cv1": self.conv(c1, c_), "cv2": self.conv(c1, c_),
            "cv3": self.conv(2 * c_, c2),
            "m": module("Sequential", modules=bottlenecks)})

    def build(self, size):
        rows = self.yaml["backbone"] + self.yaml["head"]
        ch, hw, layers, strides = [3], [size], OrderedDict(), []
        for i, (f, n, m, args) in enumerate(rows):
            n = max(round(n * self.depth), 1) if n > 1 else n
            c1 = ch[f] if isinstance(f, int) else None
            h = hw[f] if isinstance(f, int) else None
            f_list = f if isinstance(f, list) else [f]
            if m == "Conv":
                c2 = self.ch(args[0])
                k = args[1] if len(args) > 1 else 1
                s = args[2] if len(args) > 2 else 1
                p = args[3] if len(args) > 3 else k // 2
                mod, h = self.conv(c1, c2, k, s, p), (h + 2 * p - k) // s + 1
            elif m == "C3":
                c2 = self.ch(args[0])
                mod = self.c3(c1, c2, n, args[1] if len(args) > 1 else True)
            elif m in ("SPPF", "SPP"):
                c2 = self.ch(args[0])
                ks = 1 + (len(args[1]) if m == "SPP" else 3)
                mod = module(m, modules={
                    "cv1": self.conv(c1, c1 // 2),
                    "cv2": self.conv(c1 // 2 * ks, c2),
                    "m": module("MaxPool2d", kernel_size=5, stride=1,
                                padding=2)})
            elif m == "SElayer":
                c2 = self.ch(args[0])
                hidden = c1 // args[1]
                mod = module("SElayer", modules={
                    "avgpool": module("AdaptiveAvgPool2d", output_size=1),
                    "l1": module("Linear", {"weight": self.s.param(
                        [hidden, c1]), "bias": None}),
                    "relu": module("ReLU", inplace=True),
                    "l2": module("Linear", {"weight": self.s.param(
                        [c1, hidden]), "bias": None}),
                    "sig": module("Sigmoid")})
            elif m == "nn.Upsample":
                c2, h = c1, h * args[1]
                mod = module("Upsample", size=None,
                             scale_factor=float(args[1]), mode="nearest")
            elif m == "Concat":
                c2, h = sum(ch[x] for x in f_list), hw[f_list[0]]
                mod = module("Concat", d=1)
            elif m == "Detect":
                convs = OrderedDict()
                for level, x in enumerate(f_list):
                    # hostile graphs may never get here: keep them small
                    c = ch[x] if 0 < ch[x] <= 64 else 8
                    convs[str(level)] = module("Conv2d", {
                        "weight": self.s.param([self.no, c, 1, 1]),
                        "bias": self.s.param([self.no])})
                    strides.append(float(max(size // max(hw[x], 1), 1)))
                nl = len(f_list)
                anchors = [a / strides[lv] for lv in range(nl)
                           for a in self.yaml["anchors"][lv]]
                mod = module("Detect", {}, {
                    "anchors": self.s.tensor([nl, self.na, 2], values=anchors)},
                    {"m": module("ModuleList", modules=convs)},
                    nc=self.nc, no=self.nc + 5, nl=nl, na=self.na,
                    stride=self.s.tensor([nl], values=strides),
                    inplace=True)
                c2 = self.no
            else:
                raise ValueError(m)
            mod.__dict__.update(i=i, f=f, type="models.common." + m, np=0)
            layers[str(i)] = mod
            if i == 0:
                ch, hw = [], []
            ch.append(c2)
            hw.append(h)
        return layers, strides


TINY_YAML = {
    "nc": 2, "depth_multiple": 0.33, "width_multiple": 0.25,
    "anchors": [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119]],
    "backbone": [[-1, 1, "Conv", [32, 3, 2]],       # 0: 32x32
                 [-1, 1, "Conv", [64, 3, 2]],       # 1: 16x16
                 [-1, 3, "C3", [64]],               # 2
                 [-1, 1, "Conv", [64, 3, 2]],       # 3: 8x8
                 [-1, 1, "SElayer", [64, 4]],       # 4
                 [-1, 1, "SPPF", [64, 5]]],         # 5
    "head": [[-1, 1, "Conv", [32, 1, 1]],           # 6
             [-1, 1, "nn.Upsample", [None, 2, "nearest"]],  # 7: 16x16
             [[-1, 2], 1, "Concat", [1]],           # 8
             [-1, 1, "C3", [32, False]],            # 9
             [[9, 5], 1, "Detect", ["nc", "anchors"]]],  # 10
}


def variant_yaml(spp):
    yaml = {k: (list(v) if isinstance(v, list) else v)
            for k, v in TINY_YAML.items()}
    yaml["backbone"] = [list(r) for r in TINY_YAML["backbone"]]
    yaml["head"] = [list(r) for r in TINY_YAML["head"]]
    if spp:
        yaml["backbone"][5] = [-1, 1, "SPP", [64, [3, 5]]]
        yaml["backbone"].pop(4)  # no SE: indices shift by one
        yaml["head"][2] = [[-1, 2], 1, "Concat", [1]]
        yaml["head"][4] = [[8, 4], 1, "Detect", ["nc", "anchors"]]
    return yaml


def checkpoint(kind, fused, spp, ema_only, names_dict, prefix, seed):
    saver = Saver(kind, random.Random(seed))
    yaml = variant_yaml(spp)
    layers, strides = Builder(saver, yaml, fused).build(64)
    names = ["cat", "dog"]
    model = module("DetectionModel" if ema_only else "Model",
                   modules={"model": module("Sequential", modules=layers)},
                   yaml=yaml, yaml_file="tiny.yaml", save=[2, 4, 5, 9],
                   names=dict(enumerate(names)) if names_dict else names,
                   nc=yaml["nc"], hyp={"lr0": 0.01}, inplace=True)
    root = {"epoch": -1, "best_fitness": None,
            "model": None if ema_only else model,
            "ema": model if ema_only else None, "updates": None,
            "optimizer": None, "opt": {"imgsz": 64}, "git": None,
            "date": "2024-01-01T00:00:00"}
    return save(root, saver.storages, prefix)


def save(root, storages, prefix):
    buf = io.BytesIO()

    class TorchPickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                return ("storage", getattr(torch, obj.kind), obj.key, "cpu",
                        len(obj.values))
            return None

    TorchPickler(buf, protocol=2).dump(root)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        def add(name, data):
            info = zipfile.ZipInfo(prefix + "/" + name, (1980, 1, 1, 0, 0, 0))
            zf.writestr(info, data)
        add("data.pkl", buf.getvalue())
        add("byteorder", "little")
        for s in storages:
            add("data/" + s.key, s.data())
        add("version", "3\n")
    return buf.getvalue(), out.getvalue()


def hostile(backbone, head, nc=1, width=0.25, anchors=None):
    """A checkpoint whose architecture asks for something unreasonable."""
    saver = Saver("HalfStorage", random.Random(7))
    yaml = {"nc": nc, "depth_multiple": 1.0, "width_multiple": width,
            "anchors": anchors or [[10, 13, 16, 30, 33, 23]],
            "backbone": backbone, "head": head}
    layers, _ = Builder(saver, yaml, True).build(64)
    model = module("Model",
                   modules={"model": module("Sequential", modules=layers)},
                   yaml=yaml, names=["x"] * nc, nc=nc)
    return save({"model": model, "epoch": -1}, saver.storages, "archive")[1]


CONV_S2 = [-1, 1, "Conv", [32, 3, 2]]            # 8 x 32 x 32 at 64
DETECT_0 = [[0], 1, "Detect", ["nc", "anchors"]]  # stride 2 on layer 0

# name: (backbone, head), each written to regressions/checkpoint/NAME.pt
HOSTILE = {
    # 16-way Concats of the previous layer, 7 deep: 8 * 16^7 channels
    # overflow an int.
    "concat-channels-overflow": (
        [CONV_S2] + [[[-1] * 16, 1, "Concat", [1]] for _ in range(7)],
        [DETECT_0]),
    # Upsampling by 16, 7 times: a 2^33 pixel wide map overflows an int.
    "upsample-size-overflow": (
        [CONV_S2] + [[-1, 1, "nn.Upsample", [None, 16, "nearest"]]] * 7,
        [DETECT_0]),
    # A valid graph through an 8192x8192 map (2 GiB of activations) for a
    # 64x64 input: upsample twice by 16, then stride-16 1x1 convolutions.
    "upsample-8192-then-stride-16": (
        [CONV_S2, [-1, 1, "nn.Upsample", [None, 16, "nearest"]],
         [-1, 1, "nn.Upsample", [None, 16, "nearest"]],
         [-1, 1, "Conv", [32, 1, 16]], [-1, 1, "Conv", [32, 1, 16]]],
        [[[4], 1, "Detect", ["nc", "anchors"]]]),
    # 1x1 convolutions padded by 31 grow the map by 62 pixels each.
    "conv-padding-grows-map": (
        [CONV_S2] + [[-1, 1, "Conv", [32, 1, 1, 31]]] * 40,
        [DETECT_0]),
    # SPPF asking for a 2^31-1 pooling window (billions of comparisons).
    "sppf-kernel-2147483647": (
        [CONV_S2, [-1, 1, "SPPF", [32, 2147483647]]], [DETECT_0]),
    # A 33x33 window on a stride-2 map (320x320 at 640): no wider than the
    # map, but pooling has no weights to bound its cost, so kernels are
    # capped.
    "sppf-kernel-33-at-stride-2": (
        [CONV_S2, [-1, 1, "SPPF", [32, 33]]], [DETECT_0]),
    # The network input used twice by a Concat, then by a Conv: runs.
    "concat-of-the-input": (
        [[[-1, -1], 1, "Concat", [1]], [-1, 1, "Conv", [32, 3, 2]]],
        [[[1], 1, "Detect", ["nc", "anchors"]]]),
    # One value twice in one Concat, after an in-place SElayer: runs.
    "se-output-twice-in-concat": (
        [CONV_S2, [-1, 1, "SElayer", [32, 4]], [[-1, -1], 1, "Concat", [1]],
         [-1, 1, "Conv", [32, 1, 1]]],
        [[[3], 1, "Detect", ["nc", "anchors"]]]),
    # Detect straight on the 3-channel input (stride 1): runs.
    "detect-on-the-input": ([[-1, 1, "Concat", [1]]],
                            [[[-1], 1, "Detect", ["nc", "anchors"]]]),
}


def write_hostile(outdir):
    os.makedirs(outdir, exist_ok=True)
    for name, (backbone, head) in HOSTILE.items():
        with open(os.path.join(outdir, name + ".pt"), "wb") as f:
            f.write(hostile(backbone, head))


def small_pickles():
    """Protocols 2..5 over every kind of value the reader builds."""
    saver = Saver("FloatStorage", random.Random(1))
    t = saver.tensor([2, 3])
    values = {"none": None, "t": True, "f": False, "int": 7, "big": 2 ** 62,
              "neg": -2 ** 63, "float": 0.25, "str": "é", "bytes": b"xy",
              "list": [1, [2, [3]]], "tuple": (1, 2, 3, 4), "set": {1, 2},
              "frozen": frozenset([3]), "tensor": t, "param": Parameter(t),
              "conv": module("Conv", {"weight": t})}
    out = {}
    for proto in (2, 3, 4, 5):
        buf = io.BytesIO()

        class P(pickle.Pickler):
            def persistent_id(self, obj):
                if isinstance(obj, Storage):
                    return ("storage", getattr(torch, obj.kind), obj.key,
                            "cpu", len(obj.values))
                return None

        v = dict(values)
        if proto == 5:
            v["bytearray"] = bytearray(b"z")
        P(buf, protocol=proto).dump(v)
        out["proto%d.pkl" % proto] = buf.getvalue()
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    if sys.argv[1:2] == ["--hostile"]:
        write_hostile(sys.argv[2] if len(sys.argv) > 2 else os.path.join(
            here, "regressions", "checkpoint"))
        return
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "seeds")
    ck_dir = os.path.join(outdir, "checkpoint")
    pk_dir = os.path.join(outdir, "pickle")
    os.makedirs(ck_dir, exist_ok=True)
    os.makedirs(pk_dir, exist_ok=True)
    variants = {
        # name: kind, fused, spp, ema_only, names_dict, prefix
        "tiny-se-f16.pt": ("HalfStorage", False, False, False, False,
                           "archive"),
        "tiny-se-f32-fused-ema.pt": ("FloatStorage", True, False, True, True,
                                     "best"),
        "tiny-spp-f16.pt": ("HalfStorage", False, True, False, False,
                            "yolov5n"),
    }
    for seed, (name, args) in enumerate(sorted(variants.items())):
        pkl, pt = checkpoint(*args, seed=seed)
        with open(os.path.join(ck_dir, name), "wb") as f:
            f.write(pt)
        if name == "tiny-se-f16.pt":
            with open(os.path.join(pk_dir, "tiny-se.pkl"), "wb") as f:
                f.write(pkl)
    for name, data in small_pickles().items():
        with open(os.path.join(pk_dir, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
