"""Convolution-family workloads: conv2d forward/backward, 2×2 max-pooling forward/backward, and
the fused ConvPool layer of the book's network3 (the CNN's first layer), at mini-batch 10 and
1,000, float32 (the CNN targets are float32).

The three implementations share public names and signatures (``conv2d_forward(x, w, b)``,
``maxpool_backward(dy, argmax, x_shape)``, …), so one *call* per family serves them all:
``fastnet.reference.conv`` (reference, the float64 oracle), ``fastnet.kernels.conv_cpu`` (cpu;
its public wrappers, which allocate their outputs) and ``fastnet.kernels.conv_cuda`` (cuda, on
device arrays: inputs uploaded once, outputs left on the device; the test synchronises).
A module that does not exist yet turns its rows into skips with that reason.

Shapes (the book's chapter-6 network): layer 1 = 1×28×28 images, 20 filters 5×5 (no dx, as
in training); layer 2 = 20×12×12, 40 filters 5×5 (with dx); pooling 2×2 on layer 1's
20×24×24 output. ``FASTNET_BENCH_SMALL=1``: batch 10 and 50.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from bench.harness import SMALL
from bench.registry import Case, Runner, family, to_host, to_torch, torch_env
from fastnet.kernels.config import SIGMOID

F64 = np.float64
BATCHES = (10, 50) if SMALL else (10, 1000)
# conv weight gradients and db sum B·oh·ow products (576,000 at batch 1,000) in float32.
_CONV_RTOL = {"float32": 5e-4}
_MODULES = {"reference": "fastnet.reference.conv", "cpu": "fastnet.kernels.conv_cpu",
            "cuda": "fastnet.kernels.conv_cuda"}
_MISSING = {b: f"{m} is not written yet" for b, m in _MODULES.items()
            if importlib.util.find_spec(m) is None}


def _module(backend):
    return importlib.import_module(_MODULES[backend])


def _ref():
    return _module("reference")


# (id, title, c_in, h, w, c_out, kh, kw)
_LAYERS = [("l1", "1x28x28 20@5x5", 1, 28, 28, 20, 5, 5),
           ("l2", "20x12x12 40@5x5", 20, 12, 12, 40, 5, 5)]


def _conv_cases(layers=("l1", "l2")):
    return [Case(f"b{b}-{lid}", f"B={b} {title}", b, dims)
            for lid, title, *dims in _LAYERS if lid in layers for b in BATCHES]


def _conv_flops(case):
    """One pass of multiply-adds over every output position and tap."""
    c_in, h, w, c_out, kh, kw = case.dims
    return 2.0 * case.batch * c_out * (h - kh + 1) * (w - kw + 1) * c_in * kh * kw


def _conv_inputs(case, dtype, rng):
    c_in, h, w, c_out, kh, kw = case.dims
    oh, ow = h - kh + 1, w - kw + 1
    return dict(
        x=rng.random((case.batch, c_in, h, w)).astype(dtype),
        w=(rng.standard_normal((c_out, c_in, kh, kw)) / np.sqrt(c_in * kh * kw)).astype(dtype),
        b=rng.standard_normal(c_out).astype(dtype),
        dz=(0.1 * rng.standard_normal((case.batch, c_out, oh, ow))).astype(dtype),
        need_dx=c_in > 1)   # a first layer needs no dx (as in training)


def _pool_cases():
    return [Case(f"b{b}-20x24x24", f"B={b} 20x24x24 2x2", b, (20, 24, 24)) for b in BATCHES]


def _pool_inputs(case, dtype, rng):
    c, h, w = case.dims
    x = rng.standard_normal((case.batch, c, h, w)).astype(dtype)   # no ties (continuous)
    _, argmax = _ref().maxpool_forward(x, (2, 2))
    dy = rng.standard_normal((case.batch, c, h // 2, w // 2)).astype(dtype)
    return dict(x=x, argmax=argmax, dy=dy, x_shape=x.shape)


def _pool_bytes(case, itemsize, forward):
    c, h, w = case.dims
    n_in, n_out = case.batch * c * h * w, case.batch * c * (h // 2) * (w // 2)
    # forward: read x, write y and int32 argmax; backward: read dy and argmax, write dx
    return n_in * itemsize + n_out * (itemsize + 4) if forward else \
        n_out * (itemsize + 4) + n_in * itemsize


def _cp_inputs(case, dtype, rng):
    inp = _conv_inputs(case, dtype, rng)
    a, z, argmax = _ref().convpool_forward(inp["x"], inp["w"], inp["b"], (2, 2), SIGMOID)
    inp.update(a=a, z=z, argmax=argmax, da=(0.1 * rng.standard_normal(a.shape)).astype(dtype))
    return inp


def _named(keys, values) -> dict:
    """Outputs by name, dropping the ``None`` a backward returns for an unneeded dx."""
    return {k: v for k, v in zip(keys, values) if v is not None}


# ---------------------------------------------------------------------------- the calls
# Each takes the module and the inputs (host or device arrays, plus the non-array values) and
# returns the outputs by name; the oracle is the same call on the reference in float64.
CALLS = {
    "conv_forward": lambda m, i: {"z": m.conv2d_forward(i["x"], i["w"], i["b"])},
    "conv_backward": lambda m, i: _named(
        ("dx", "dw", "db"), m.conv2d_backward(i["x"], i["w"], i["dz"], i["need_dx"])),
    "maxpool_forward": lambda m, i: _named(("y", "argmax"), m.maxpool_forward(i["x"], (2, 2))),
    "maxpool_backward": lambda m, i: {"dx": m.maxpool_backward(i["dy"], i["argmax"],
                                                               i["x_shape"])},
    "convpool_forward": lambda m, i: _named(
        ("a", "z", "argmax"), m.convpool_forward(i["x"], i["w"], i["b"], (2, 2), SIGMOID)),
    "convpool_backward": lambda m, i: _named(
        ("dx", "dw", "db"), m.convpool_backward(i["x"], i["w"], i["z"], i["a"], i["argmax"],
                                                i["da"], SIGMOID, need_dx=False)),
}


def _oracle(name):
    def reference(inp):
        return CALLS[name](_ref(), {k: v.astype(F64) if isinstance(v, np.ndarray) and
                                    v.dtype.kind == "f" else v for k, v in inp.items()})
    return reference


def _module_builder(name):
    """The reference / cpu / cuda builder of family ``name``."""
    def build(inp, backend):
        mod = _module(backend)
        call_ = CALLS[name]
        out = {}
        if backend == "cuda":
            from numba import cuda
            dev = {k: cuda.to_device(v) if isinstance(v, np.ndarray) else v
                   for k, v in inp.items()}

            def call():
                out.update(call_(mod, dev))
            return Runner(call, lambda: {k: v.copy_to_host() for k, v in out.items()})

        def call():
            out.update(call_(mod, inp))
        return Runner(call, lambda: out)
    return build


def _conv_family(name, **kwargs):
    fam = family(name=name, reference=_oracle(name), **kwargs)
    fam.impl(*(b for b in _MODULES if b not in _MISSING))(_module_builder(name))
    fam.missing.update(_MISSING)
    return fam


# ---------------------------------------------------------------------------- families
CONV_FORWARD = _conv_family("conv_forward", cases=_conv_cases, inputs=_conv_inputs,
                            flops=_conv_flops, rtol=_CONV_RTOL)
CONV_BACKWARD = _conv_family(
    "conv_backward", cases=_conv_cases, inputs=_conv_inputs, rtol=_CONV_RTOL,
    # dw always; dx (the same product count) where the layer needs it
    flops=lambda c: _conv_flops(c) * (2 if c.dims[0] > 1 else 1))
POOL_FORWARD = _conv_family("maxpool_forward", cases=_pool_cases, inputs=_pool_inputs,
                            peak_comparable=False, nbytes=lambda c, s: _pool_bytes(c, s, True))
POOL_BACKWARD = _conv_family("maxpool_backward", cases=_pool_cases, inputs=_pool_inputs,
                             peak_comparable=False,
                             nbytes=lambda c, s: _pool_bytes(c, s, False))
CONVPOOL_FORWARD = _conv_family("convpool_forward", cases=lambda: _conv_cases(("l1",)),
                                inputs=_cp_inputs, flops=_conv_flops, rtol=_CONV_RTOL)
CONVPOOL_BACKWARD = _conv_family("convpool_backward", cases=lambda: _conv_cases(("l1",)),
                                 inputs=_cp_inputs, flops=_conv_flops, rtol=_CONV_RTOL)


# ---------------------------------------------------------------------------- PyTorch
@CONV_FORWARD.impl("torch_cpu", "torch_cuda")
def _(inp, backend):
    torch, dev, _ = torch_env(backend)
    x, w, b = (to_torch(torch, inp[k], dev) for k in ("x", "w", "b"))
    out = {}

    def call():
        out["z"] = torch.nn.functional.conv2d(x, w, b)
    return Runner(call, lambda: {"z": to_host(out["z"])})


@CONV_BACKWARD.impl("torch_cpu", "torch_cuda")
def _(inp, backend):
    torch, dev, _ = torch_env(backend)
    x, w, dz = (to_torch(torch, inp[k], dev) for k in ("x", "w", "dz"))
    grad = torch.nn.grad
    out = {}

    def call():
        out["dw"] = grad.conv2d_weight(x, w.shape, dz)
        out["db"] = dz.sum(dim=(0, 2, 3))
        if inp["need_dx"]:
            out["dx"] = grad.conv2d_input(x.shape, w, dz)
    return Runner(call, lambda: {k: to_host(v) for k, v in out.items()})


@POOL_FORWARD.impl("torch_cpu", "torch_cuda")
def _(inp, backend):
    torch, dev, _ = torch_env(backend)
    x = to_torch(torch, inp["x"], dev)
    out = {}

    def call():   # PyTorch's indices are the same flat (h, w)-plane positions, as int64
        out["y"], out["argmax"] = torch.nn.functional.max_pool2d(x, 2, return_indices=True)
    return Runner(call, lambda: {k: to_host(v) for k, v in out.items()})


@POOL_BACKWARD.impl("torch_cpu", "torch_cuda")
def _(inp, backend):
    torch, dev, _ = torch_env(backend)
    dy = to_torch(torch, inp["dy"], dev)
    idx = to_torch(torch, inp["argmax"].astype(np.int64), dev)
    size = inp["x"].shape[2:]
    out = {}

    def call():
        out["dx"] = torch.nn.functional.max_unpool2d(dy, idx, 2, output_size=size)
    return Runner(call, lambda: {"dx": to_host(out["dx"])})


@CONVPOOL_FORWARD.impl("torch_cpu", "torch_cuda")
def _(inp, backend):
    torch, dev, _ = torch_env(backend)
    x, w, b = (to_torch(torch, inp[k], dev) for k in ("x", "w", "b"))
    F = torch.nn.functional
    out = {}

    def call():   # the book's order: bias after pooling
        pooled, out["argmax"] = F.max_pool2d(F.conv2d(x, w), 2, return_indices=True)
        out["z"] = pooled + b[:, None, None]
        out["a"] = torch.sigmoid(out["z"])
    return Runner(call, lambda: {k: to_host(v) for k, v in out.items()})


@CONVPOOL_BACKWARD.impl("torch_cpu", "torch_cuda")
def _(inp, backend):
    torch, dev, _ = torch_env(backend)
    x, w, a, da = (to_torch(torch, inp[k], dev) for k in ("x", "w", "a", "da"))
    idx = to_torch(torch, inp["argmax"].astype(np.int64), dev)
    kh, kw = inp["w"].shape[2:]
    conv_size = (inp["x"].shape[2] - kh + 1, inp["x"].shape[3] - kw + 1)
    F, grad = torch.nn.functional, torch.nn.grad
    out = {}

    def call():
        dz = da * a * (1 - a)
        out["db"] = dz.sum(dim=(0, 2, 3))
        dconv = F.max_unpool2d(dz, idx, 2, output_size=conv_size)
        out["dw"] = grad.conv2d_weight(x, w.shape, dconv)
    return Runner(call, lambda: {k: to_host(v) for k, v in out.items()})
