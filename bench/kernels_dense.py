"""Dense-family workloads: layer forward, layer backward (deltas + fused SGD update), and the
softmax output with its log-likelihood gradient. Kernels: ``fastnet.kernels.dense_cpu`` (cpu),
CUDA (``dense_cuda.forward`` for the forward rows; the layer-by-layer path's
``layers_cuda`` for backward and softmax, the dense epoch being fused in ``dense_cuda``),
``fastnet.reference.dense`` (reference, the float64 oracle), PyTorch (the comparison).

Shapes: the book's first layer at mini-batch 10 (784 → 30), and a wide layer at batch 8,192
(4,096 → 4,096: 275 GFLOP per forward, the GPU target's shape); ``FASTNET_BENCH_SMALL=1``
keeps the first and shrinks the second to 256 → 256 at batch 256.
"""

from __future__ import annotations

import numpy as np

from bench.harness import SMALL
from bench.registry import Case, Runner, family, to_host, to_torch, torch_env
from fastnet.kernels.config import LOG_LIKELIHOOD, SIGMOID, SOFTMAX
from fastnet.reference import dense as ref

F64 = np.float64
LR, LMBDA, N_TRAIN = 3.0, 5.0, 50_000   # the book's chapter-3 settings: decay is exercised


def _layer_cases():
    big = (256, 256, 256) if SMALL else (8192, 4096, 4096)
    return [Case(f"b{b}-{i}x{o}", f"B={b} {i}->{o}", b, (i, o)) for b, i, o in
            [(10, 784, 30), big]]


def _layer(case, dtype, rng):
    """Flat params of one dense layer (the model's buffer layout) with the book's init."""
    n_in, n_out = case.dims
    layout = ref.layout_for([n_in, n_out])
    params = np.empty(ref.n_params(layout), dtype)
    (w, b), = ref.unpack(params, layout)
    w[...] = rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)
    b[...] = rng.standard_normal(n_out)
    return params, layout, w, b


# ============================================================================ dense forward
def _fwd_inputs(case, dtype, rng):
    params, layout, w, b = _layer(case, dtype, rng)
    x = rng.random((case.batch, case.dims[0])).astype(dtype)
    return dict(x=x, params=params, layout=layout, w=w, b=b,
                acts=np.array([SIGMOID], np.int64))


def _fwd_reference(inp):
    zs, activations = ref.forward_pass(inp["params"].astype(F64), inp["layout"], inp["acts"],
                                       inp["x"].astype(F64))
    return {"z": zs[0], "a": activations[1]}


DENSE_FORWARD = family(
    name="dense_forward", cases=_layer_cases, inputs=_fwd_inputs, reference=_fwd_reference,
    flops=lambda c: 2.0 * c.batch * c.dims[0] * c.dims[1],
    float64_backends=("reference", "cpu", "torch_cpu"),
    notes={"cuda": "dense_cuda.forward (inference path)",
           "cuda_xfer": "dense_cuda.forward (inference path)"})


@DENSE_FORWARD.impl("reference")
def _(inp, backend):
    out = {}

    def call():
        zs, activations = ref.forward_pass(inp["params"], inp["layout"], inp["acts"], inp["x"])
        out.update(z=zs[0], a=activations[1])
    return Runner(call, lambda: out)


@DENSE_FORWARD.impl("cpu")
def _(inp, backend):
    from fastnet.kernels import dense_cpu
    x, w, b = inp["x"], inp["w"], inp["b"]
    z = np.empty((x.shape[0], w.shape[0]), x.dtype)
    a = np.empty_like(z)

    def call():
        dense_cpu.dense_forward(x, w, b, z)
        dense_cpu.activate(z, a, SIGMOID)
    return Runner(call, lambda: {"z": z, "a": a})


@DENSE_FORWARD.impl("cuda", "cuda_xfer")
def _(inp, backend):
    """``dense_cuda.forward`` on a one-layer layout (it returns the activations only);
    parameters stay on the device, ``cuda_xfer`` moves x up and a down inside each call."""
    from numba import cuda

    from fastnet.kernels import dense_cuda
    d_params = cuda.to_device(inp["params"])
    d_x = cuda.to_device(inp["x"])
    layout, acts, x = inp["layout"], inp["acts"], inp["x"]
    out = {}

    if backend == "cuda_xfer":
        def call():
            out["a"] = dense_cuda.forward(d_params, layout, acts, cuda.to_device(x)) \
                .copy_to_host()
        return Runner(call, lambda: out)

    def call():
        out["a"] = dense_cuda.forward(d_params, layout, acts, d_x)
    return Runner(call, lambda: {"a": out["a"].copy_to_host()})


@DENSE_FORWARD.impl("torch_cpu", "torch_cuda", "torch_cuda_xfer")
def _(inp, backend):
    torch, dev, xfer = torch_env(backend)
    x_host = inp["x"]
    x, w, b = (to_torch(torch, inp[k], dev) for k in ("x", "w", "b"))
    z = torch.empty((x.shape[0], w.shape[0]), dtype=x.dtype, device=dev)
    a = torch.empty_like(z)
    out = {}

    def call():
        xi = to_torch(torch, x_host, dev) if xfer else x
        torch.addmm(b, xi, w.t(), out=z)
        torch.sigmoid(z, out=a)
        if xfer:
            out["a"] = to_host(a)
    if xfer:
        return Runner(call, lambda: out)
    return Runner(call, lambda: {"z": to_host(z), "a": to_host(a)})


# ============================================================================ dense backward
def _bwd_inputs(case, dtype, rng):
    """A hidden layer's backward: δ of this layer given, the previous layer's (z, a) cached
    from its forward; x = a_prev is this layer's input."""
    params, layout, w, b = _layer(case, dtype, rng)
    n_in, n_out = case.dims
    z_prev = rng.standard_normal((case.batch, n_in)).astype(dtype)
    a_prev = ref.sigmoid(z_prev)
    delta = (0.1 * rng.standard_normal((case.batch, n_out))).astype(dtype)
    return dict(w=w, b=b, z_prev=z_prev, a_prev=a_prev, delta=delta,
                scale=LR / case.batch, decay=1.0 - LR * LMBDA / N_TRAIN)


def _bwd_reference(inp):
    """The reference's formulas (``ref.backward`` / ``ref.sgd_step``) in float64:
    δ_prev = (δ @ w) ⊙ σ'(z_prev); w ← decay·w − scale·δᵀx; b ← b − scale·Σδ."""
    w, delta, x = (inp[k].astype(F64) for k in ("w", "delta", "a_prev"))
    return {"delta_prev": (delta @ w) * ref.derivative(inp["z_prev"].astype(F64), SIGMOID),
            "w_change": (inp["decay"] - 1.0) * w - inp["scale"] * (delta.T @ x),
            "b_change": -inp["scale"] * delta.sum(axis=0)}


DENSE_BACKWARD = family(
    name="dense_backward", cases=_layer_cases, inputs=_bwd_inputs, reference=_bwd_reference,
    # δ_prev (2·B·n_in·n_out) + gradient fused with the update (2·B·n_in·n_out + 2·n_in·n_out)
    flops=lambda c: 4.0 * c.batch * c.dims[0] * c.dims[1] + 2.0 * c.dims[0] * c.dims[1],
    float64_backends=("reference", "cpu", "torch_cpu"),
    notes={"cuda": "layers_cuda (layer-by-layer path): 4 launches"})


def _bwd_result(w0, b0, w, b, d_prev):
    """Host dict of what one call produced: δ_prev and the change it made to w and b."""
    return lambda: {"delta_prev": d_prev(), "w_change": w() - w0, "b_change": b() - b0}


@DENSE_BACKWARD.impl("reference")
def _(inp, backend):
    w, b = inp["w"].copy(), inp["b"].copy()
    delta, x, z_prev = inp["delta"], inp["a_prev"], inp["z_prev"]
    scale, decay = inp["scale"], inp["decay"]
    out = {}

    def call():
        out["d"] = (delta @ w) * ref.derivative(z_prev, SIGMOID)
        gw = delta.T @ x
        w[...] *= decay
        w[...] -= scale * gw
        b[...] -= scale * delta.sum(axis=0)
    return Runner(call, _bwd_result(inp["w"], inp["b"], lambda: w, lambda: b,
                                    lambda: out["d"]))


@DENSE_BACKWARD.impl("cpu")
def _(inp, backend):
    from fastnet.kernels import dense_cpu
    w, b = inp["w"].copy(), inp["b"].copy()
    delta, x, z_prev = inp["delta"], inp["a_prev"], inp["z_prev"]
    scale, decay = inp["scale"], inp["decay"]
    d_prev = np.empty_like(z_prev)

    def call():
        dense_cpu.hidden_delta(delta, w, z_prev, x, SIGMOID, d_prev)
        dense_cpu.dense_update(x, delta, w, b, scale, decay)
    return Runner(call, _bwd_result(inp["w"], inp["b"], lambda: w, lambda: b,
                                    lambda: d_prev))


@DENSE_BACKWARD.impl("cuda")
def _(inp, backend):
    """The layer-by-layer CUDA path (``kernels/layers_cuda.py``, what ``Model`` uses for CNNs):
    dense_backward (dx, Σ∇w, Σ∇b in one launch), act_backward, then sgd_apply on w and b.
    (Dense stacks train through ``dense_cuda.train_epoch`` instead: see the epoch rows.)"""
    from numba import cuda

    from fastnet.kernels import layers_cuda as k
    w, b, delta, x, z_prev = (cuda.to_device(inp[n]) for n in ("w", "b", "delta", "a_prev",
                                                                "z_prev"))
    w_flat, b_flat = w.reshape(w.size), b
    decay_w = cuda.to_device(np.ones(w.size, np.bool_))
    decay_b = cuda.to_device(np.zeros(b.size, np.bool_))
    scale, decay = inp["scale"], inp["decay"]
    out = {}

    def call():
        dx, gw, gb = k.dense_backward(x, w, delta, True)
        out["d"] = k.act_backward(z_prev, x, SIGMOID, dx)
        k.sgd_apply(w_flat, gw.reshape(gw.size), decay_w, decay, scale)
        k.sgd_apply(b_flat, gb, decay_b, decay, scale)
    return Runner(call, _bwd_result(inp["w"], inp["b"], w.copy_to_host, b.copy_to_host,
                                    lambda: out["d"].copy_to_host()))


@DENSE_BACKWARD.impl("torch_cpu", "torch_cuda")
def _(inp, backend):
    torch, dev, _ = torch_env(backend)
    w, b, delta, x = (to_torch(torch, inp[k], dev) for k in ("w", "b", "delta", "a_prev"))
    scale, decay = inp["scale"], inp["decay"]
    d_prev = torch.empty_like(x)

    def call():
        torch.mm(delta, w, out=d_prev)
        d_prev.mul_(x * (1 - x))
        w.addmm_(delta.t(), x, beta=decay, alpha=-scale)
        b.sub_(delta.sum(dim=0), alpha=scale)
    return Runner(call, _bwd_result(inp["w"], inp["b"], lambda: to_host(w),
                                    lambda: to_host(b), lambda: to_host(d_prev)))


# ============================================================================ softmax
def _softmax_cases():
    big = (256, 256) if SMALL else (8192, 4096)
    return [Case(f"b{b}-{n}", f"B={b} n={n}", b, (n,)) for b, n in [(10, 10), big]]


def _softmax_inputs(case, dtype, rng):
    n = case.dims[0]
    z = (3.0 * rng.standard_normal((case.batch, n))).astype(dtype)
    y = np.zeros((case.batch, n), dtype)
    y[np.arange(case.batch), rng.integers(0, n, case.batch)] = 1
    return dict(z=z, y=y)


def _softmax_reference(inp):
    z, y = inp["z"].astype(F64), inp["y"].astype(F64)
    a = ref.softmax(z)
    return {"a": a, "delta": ref.output_delta(z, a, y, LOG_LIKELIHOOD, SOFTMAX)}


SOFTMAX_LL = family(
    name="softmax", cases=_softmax_cases, inputs=_softmax_inputs,
    reference=_softmax_reference, peak_comparable=False,
    nbytes=lambda c, itemsize: 4.0 * c.batch * c.dims[0] * itemsize,  # read z, y; write a, δ
    float64_backends=("reference", "cpu", "torch_cpu"),
    notes={"cuda": "layers_cuda (layer-by-layer path): 2 launches"})


@SOFTMAX_LL.impl("reference")
def _(inp, backend):
    z, y = inp["z"], inp["y"]
    out = {}

    def call():
        a = ref.activation(z, SOFTMAX)
        out.update(a=a, delta=ref.output_delta(z, a, y, LOG_LIKELIHOOD, SOFTMAX))
    return Runner(call, lambda: out)


@SOFTMAX_LL.impl("cpu")
def _(inp, backend):
    from fastnet.kernels import dense_cpu
    z, y = inp["z"], inp["y"]
    a, d = np.empty_like(z), np.empty_like(z)

    def call():
        dense_cpu.activate(z, a, SOFTMAX)
        dense_cpu.output_delta(z, a, y, LOG_LIKELIHOOD, SOFTMAX, d)
    return Runner(call, lambda: {"a": a, "delta": d})


@SOFTMAX_LL.impl("cuda")
def _(inp, backend):
    """The layer-by-layer CUDA path (``kernels/layers_cuda.py``): activate + output_delta."""
    from numba import cuda

    from fastnet.kernels import layers_cuda as k
    z, y = cuda.to_device(inp["z"]), cuda.to_device(inp["y"])
    out = {}

    def call():
        out["a"] = a = k.activate(z, SOFTMAX)
        out["delta"] = k.output_delta(z, a, y, LOG_LIKELIHOOD, SOFTMAX)
    return Runner(call, lambda: {n: v.copy_to_host() for n, v in out.items()})


@SOFTMAX_LL.impl("torch_cpu", "torch_cuda")
def _(inp, backend):
    torch, dev, _ = torch_env(backend)
    z, y = to_torch(torch, inp["z"], dev), to_torch(torch, inp["y"], dev)
    d = torch.empty_like(z)
    out = {}

    def call():
        out["a"] = a = torch.softmax(z, dim=1)
        torch.sub(a, y, out=d)
    return Runner(call, lambda: {"a": to_host(out["a"]), "delta": to_host(d)})
