#!/usr/bin/env python3
"""Rewrites an upstream YOLOv5 checkpoint as one of its exact variants.

  --fuse  what upstream's Model.fuse() leaves before torch.save: every
          module with a Conv2d `conv` and a BatchNorm2d `bn` (models.common
          Conv) gets a new Conv2d with the BatchNorm folded into its weight
          and a new bias, in float32 exactly as fuse_conv_and_bn computes
          them; `bn` is deleted and `forward` is bound to `forward_fuse`.
          The folded tensors are written as FloatStorage (rounding them back
          to fp16 would move the outputs away from upstream's, which fuse
          in float32); every other tensor keeps its storage and dtype.
  --spp   each SPPF with k=5 becomes an SPP with k=(5, 9, 13), which
          upstream's common.py states is the same function (two 5x5 max
          pools in a row are one 9x9, three are one 13x13): same cv1 and cv2,
          `m` a ModuleList of three MaxPool2d, and the yaml row
          'SPPF', [c, 5] becomes 'SPP', [c, [5, 9, 13]].

So the variant must give upstream's reference output for the original.
Pure standard library (no torch, no numpy): the checkpoint is unpickled
with the fake torch / models classes of tests/fuzz/make_seeds.py and
written back with its save(), in torch's layout.

Usage: make_variant_checkpoint.py IN.pt OUT.pt [--fuse] [--spp]
"""
import argparse
import array
import collections
import math
import os
import pickle
import struct
import sys
import zipfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "fuzz"))
import make_seeds as ms  # noqa: E402  (installs the fake torch modules)

OrderedDict = collections.OrderedDict

# storage class -> (struct format, bytes per element) of what we decode
DECODABLE = {"HalfStorage": ("e", 2), "FloatStorage": ("f", 4),
             "DoubleStorage": ("d", 8)}


class InStorage(ms.Storage):
    """A storage copied from the source archive; the key is handed out when
    the writer first meets it, so the output numbers its storages 0, 1, ...
    in pickling order as torch.save does, and holds only those still used."""

    def __init__(self, kind, raw, numel, written):
        self.kind, self.raw, self.numel = kind, raw, numel
        self.written, self._key = written, None
        self.values = range(numel)  # save() takes len(values) as numel

    @property
    def key(self):
        if self._key is None:
            self._key = str(len(self.written))
            self.written.append(self)
        return self._key

    def data(self):
        return self.raw


class InTensor:
    """_rebuild_tensor_v2's arguments, written back unchanged."""

    def __init__(self, *args):
        self.args = args
        self.storage, self.offset, self.shape, self.stride = args[:4]

    def __reduce__(self):
        return (ms._rebuild_tensor_v2, self.args)

    def values(self):
        """The elements in row-major order, as Python floats."""
        fmt, size = DECODABLE.get(self.storage.kind, (None, 0))
        if fmt is None:
            raise ValueError("cannot decode a %s" % self.storage.kind)
        n = math.prod(self.shape)
        acc, contiguous = 1, []
        for s in reversed(self.shape):
            contiguous.insert(0, acc)
            acc *= s
        if list(self.stride) != contiguous and n > 1:
            raise ValueError("tensor with strides %s" % (self.stride,))
        start = self.offset * size
        return list(struct.unpack_from("<%d%s" % (n, fmt), self.storage.raw,
                                       start))


class InParameter:
    def __init__(self, tensor, requires_grad=True, hooks=None, *rest):
        self.tensor = tensor
        self.args = (tensor, requires_grad, hooks or OrderedDict()) + rest

    def __reduce__(self):
        return (ms._rebuild_parameter, self.args)


class BoundMethod:
    """`m.forward = m.forward_fuse`: pickled as getattr(m, 'forward_fuse')."""

    def __init__(self, obj, name):
        self.obj, self.name = obj, name

    def __reduce__(self):
        return (getattr, (self.obj, self.name))


def read_checkpoint(path):
    """(root object, archive prefix, list the writer fills with storages)."""
    zf = zipfile.ZipFile(path)
    pkl = [n for n in zf.namelist() if n.endswith("/data.pkl")]
    if len(pkl) != 1:
        raise ValueError("%s: no single <folder>/data.pkl" % path)
    prefix = pkl[0][:-len("/data.pkl")]
    written, storages = [], {}

    class Reader(pickle.Unpickler):
        def find_class(self, module, name):
            if module == "torch._utils" and name == "_rebuild_tensor_v2":
                return InTensor
            if module == "torch._utils" and name == "_rebuild_parameter":
                return InParameter
            if module.split(".")[0] in ("torch", "models"):
                mod = ms.fake_module(module)
                return getattr(mod, name, None) or ms.fake_class(mod, name)
            return super().find_class(module, name)

        def persistent_load(self, pid):
            tag, cls, key, _location, numel = pid
            if tag != "storage":
                raise ValueError("persistent id %r" % (pid,))
            if key not in storages:
                raw = zf.read("%s/data/%s" % (prefix, key))
                storages[key] = InStorage(cls.__name__, raw, numel, written)
            return storages[key]

    with zf.open(pkl[0]) as f:
        root = Reader(f).load()
    return root, prefix, written


def is_class(obj, name):
    return type(obj).__name__ == name


def submodules(module):
    return getattr(module, "_modules", None) or OrderedDict()


def new_module(cls_name, template, **attrs):
    """A module of class @cls_name with @template's nn.Module bookkeeping
    (hooks, training flag) and no children, parameters or buffers."""
    obj = ms.CLASSES[cls_name]()
    obj.__dict__.update({k: v for k, v in template.__dict__.items()
                         if k.startswith("_") or k == "training"})
    obj.__dict__.update(_parameters=OrderedDict(), _buffers=OrderedDict(),
                        _modules=OrderedDict())
    obj.__dict__.update(attrs)
    return obj


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def tensor_of(value):
    return value.tensor if isinstance(value, InParameter) else value


def float32_parameter(values, shape, written):
    """A new float32 Parameter (requires_grad False, as fuse leaves it)."""
    data = array.array("f", values)
    if sys.byteorder != "little":
        data.byteswap()
    storage = InStorage("FloatStorage", data.tobytes(), len(data), written)
    return InParameter(ms.Tensor(storage, shape), False)


def fold_batchnorm(conv, bn, written):
    """fuse_conv_and_bn in float32, each operation rounded as torch's:
    scale = g / sqrt(var + eps), w' = scale * w,
    b' = scale * b + (beta - g * mean / sqrt(var + eps))."""
    weight = tensor_of(conv._parameters["weight"])
    old_bias = conv._parameters.get("bias")
    p, bufs = bn._parameters, bn._buffers
    gamma = tensor_of(p["weight"]).values()
    beta = tensor_of(p["bias"]).values()
    mean, var = bufs["running_mean"].values(), bufs["running_var"].values()
    eps = f32(bn.eps)
    w = weight.values()
    c2 = weight.shape[0]
    per_out = len(w) // c2
    b = tensor_of(old_bias).values() if old_bias is not None else [0.0] * c2
    new_w, new_b = [], []
    for o in range(c2):
        denom = f32(math.sqrt(f32(var[o] + eps)))
        scale = f32(gamma[o] / denom)
        shift = f32(beta[o] - f32(f32(gamma[o] * mean[o]) / denom))
        new_w.extend(scale * x for x in w[o * per_out:(o + 1) * per_out])
        new_b.append(f32(f32(scale * b[o]) + shift))
    fused = new_module("Conv2d", conv)
    fused.__dict__.update({k: v for k, v in conv.__dict__.items()
                           if not k.startswith("_") and k != "training"})
    fused._parameters = OrderedDict(
        weight=float32_parameter(new_w, weight.shape, written),
        bias=float32_parameter(new_b, [c2], written))
    return fused


def fuse(model, written, done):
    """Folds every conv + bn pair under @model; returns how many."""
    count = 0
    for child in submodules(model).values():
        if id(child) in done:
            continue
        done.add(id(child))
        mods = submodules(child)
        if is_class(mods.get("conv"), "Conv2d") and \
                is_class(mods.get("bn"), "BatchNorm2d"):
            mods["conv"] = fold_batchnorm(mods["conv"], mods["bn"], written)
            del mods["bn"]
            child.forward = BoundMethod(child, "forward_fuse")
            count += 1
        count += fuse(child, written, done)
    return count


SPP_KERNELS = [5, 9, 13]


def sppf_to_spp(model, done):
    """Replaces each SPPF (k=5) of model.model by an SPP (5, 9, 13) and
    edits the yaml row to match; returns how many."""
    layers = submodules(submodules(model)["model"])
    rows = model.yaml["backbone"] + model.yaml["head"]
    count = 0
    for key, sppf in list(layers.items()):
        if not is_class(sppf, "SPPF"):
            continue
        pool = submodules(sppf)["m"]
        if pool.kernel_size != 5 or pool.stride != 1 or pool.padding != 2:
            raise ValueError("layer %s: SPPF with a pool other than k=5" % key)
        pools = OrderedDict(
            (str(i), new_module("MaxPool2d", pool, **dict(
                pool.__dict__, _modules=OrderedDict(), kernel_size=k,
                padding=k // 2)))
            for i, k in enumerate(SPP_KERNELS))
        spp = new_module("SPP", sppf, **{
            k: v for k, v in sppf.__dict__.items() if k != "_modules"})
        spp._modules = OrderedDict(sppf._modules)
        spp._modules["m"] = new_module("ModuleList", pool, _modules=pools)
        spp.type = "models.common.SPP"
        layers[key] = spp
        count += 1
        row = rows[int(key)]
        if id(row) not in done:  # model and ema may share the yaml
            done.add(id(row))
            if row[2] != "SPPF" or row[3][1:] not in ([5], []):
                raise ValueError("yaml row %s is %r, not SPPF k=5" % (key, row))
            row[2], row[3] = "SPP", [row[3][0], list(SPP_KERNELS)]
    return count


def models_of(root):
    if isinstance(root, dict):
        return [m for k, m in root.items()
                if k in ("model", "ema") and m is not None]
    return [root]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--fuse", action="store_true")
    parser.add_argument("--spp", action="store_true")
    args = parser.parse_args()
    if not (args.fuse or args.spp):
        parser.error("nothing to do: give --fuse and/or --spp")

    root, prefix, written = read_checkpoint(args.input)
    fused = spp = 0
    fused_modules, edited_rows = set(), set()
    for model in models_of(root):
        if args.fuse:
            fused += fuse(model, written, fused_modules)
        if args.spp:
            spp += sppf_to_spp(model, edited_rows)
    if (args.fuse and fused == 0) or (args.spp and spp == 0):
        sys.exit("%s: nothing to change (%d convs with BatchNorm, %d SPPF)"
                 % (args.input, fused, spp))
    _, data = ms.save(root, written, prefix)
    with open(args.output, "wb") as f:
        f.write(data)
    print("%s: %d convs fused, %d SPPF made SPP, %d storages"
          % (args.output, fused, spp, len(written)))


if __name__ == "__main__":
    main()
