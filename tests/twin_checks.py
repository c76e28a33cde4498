"""Every maths kernel against the maths it computes, through one call: the kernel's own name and
signature, on any target that holds it — ``fastnet.reference`` (numpy), ``fastnet.kernels.*_cpu``
(cpu) or the CUDA adapter ``tests/cuda_sim/cuda_twins.py`` (cuda-sim). Shared by
``tests/test_twins.py`` and ``tests/cuda_sim/sim_twins.py``; not a test module.

``TWINS`` is the twin table (kernel → its CPU module and its NumPy twin's module). ``check``
runs one kernel of a target over seeded random shapes (batch 1, odd sizes; the wide ones only
off the simulator, whose threads are Python threads) in float32 and float64, with the
out-parameters pre-filled with NaN (they must be overwritten). The exact value is worked out
here in float64, by formulas written independently of the reference (conv and pool:
``tests/conv_twin_checks.py``), and compared by ``assert_close`` with the rule
(``rounding_bound``; the bounds of tests/helpers.py where stages chain).
"""

from __future__ import annotations

import contextlib
import importlib

import numpy as np

from fastnet.kernels.config import (CROSS_ENTROPY, LINEAR, LOG_LIKELIHOOD, QUADRATIC, RELU,
                                    SIGMOID, SOFTMAX, SOFTPLUS, TANH)
from helpers import (activation_bound, assert_close, cost_bound, output_delta_bound, prime_bound,
                     rounding_bound)

F64 = np.float64
DTYPES = (np.float32, np.float64)
ELEMENTWISE = (SIGMOID, TANH, RELU, SOFTPLUS, LINEAR)

# kernel: (its module in fastnet.kernels, its twin's module in fastnet.reference)
TWINS = {
    "activate": ("activations_cpu", "dense"), "activate_flat": ("activations_cpu", "dense"),
    "activation_prime": ("activations_cpu", "dense"), "act_plane": ("activations_cpu", "dense"),
    "sigmoid": ("activations_cpu", "dense"), "softplus": ("activations_cpu", "dense"),
    "dense_forward": ("dense_cpu", "dense"), "dense_forward_par": ("dense_cpu", "dense"),
    "dense_backward_par": ("dense_cpu", "dense"), "dense_update": ("dense_cpu", "dense"),
    "dense_backward_sgd_par": ("dense_cpu", "dense"), "hidden_delta": ("dense_cpu", "dense"),
    "output_delta": ("dense_cpu", "dense"), "output_delta_rows": ("dense_cpu", "dense"),
    "loss_and_correct": ("dense_cpu", "dense"), "forward": ("dense_cpu", "dense"),
    "forward_from": ("dense_cpu", "dense"), "sgd_apply": ("sgd_cpu", "dense"),
    "train_epoch": ("dense_epoch_cpu", "dense"),
    "train_epoch_threaded": ("dense_epoch_cpu", "dense"),
    "evaluate": ("dense_epoch_cpu", "dense"), "predict": ("dense_epoch_cpu", "dense"),
    "conv2d_forward": ("conv_cpu", "conv"), "conv2d_backward": ("conv_cpu", "conv"),
    "convpool_forward": ("conv_cpu", "conv"), "convpool_backward": ("conv_cpu", "conv"),
    "convpool_forward_into": ("conv_cpu", "conv"),
    "convpool_backward_into": ("conv_cpu", "conv"),
    "maxpool_forward": ("pool_cpu", "conv"), "maxpool_backward": ("pool_cpu", "conv"),
    "maxpool_forward_into": ("pool_cpu", "conv"),
    "maxpool_backward_into": ("pool_cpu", "conv"),
    "batchnorm_forward": ("norm_cpu", "norm"), "batchnorm_backward": ("norm_cpu", "norm"),
    # checked in tests/test_optimizers.py (their own steps and epochs)
    "optimizer_step": ("optim_cpu", "optim"), "train_epoch_opt": ("optim_cpu", "optim"),
    # checked in tests/test_augment.py (warps of images, their own bounds)
    "warp_affine": ("augment_cpu", "augment"), "warp_elastic": ("augment_cpu", "augment"),
    "splitmix64": ("augment_cpu", "augment"),
}

_PER_EPOCH = "CUDA trains dense stacks in one launch per epoch (dense_cuda, test_dense_cuda.py)"
_ALLOCATING = "the CUDA conv kernels allocate their outputs (tested in their plain-named forms)"
NO_CUDA = {  # kernel: why the CUDA kernels have no counterpart
    "dense_forward_par": "the CUDA layer path has one dense product (tested as dense_forward)",
    "dense_backward_sgd_par": "the CUDA layer path runs dense_backward, then sgd_apply",
    "dense_update": _PER_EPOCH, "hidden_delta": _PER_EPOCH, "output_delta_rows": _PER_EPOCH,
    "activate_flat": "the CUDA activate takes any shape (tested as activate)",
    "act_plane": "the CUDA activate takes any shape (tested as activate)",
    "convpool_forward_into": _ALLOCATING, "convpool_backward_into": _ALLOCATING,
    "maxpool_forward_into": _ALLOCATING, "maxpool_backward_into": _ALLOCATING,
}


def implementation(target: str, kernel: str):
    """The function named ``kernel`` on the numpy or cpu target."""
    cpu, ref = TWINS[kernel]
    home = f"fastnet.kernels.{cpu}" if target == "cpu" else f"fastnet.reference.{ref}"
    return getattr(importlib.import_module(home), kernel)


def rand(rng, shape, dtype, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def garbage(shape, dtype):
    """An out-parameter before the call: NaN, so an element left unwritten fails."""
    return np.full(shape, np.nan, dtype)


def products(a, b):
    """``(a @ b, |a| @ |b|)`` in float64: exact values and each element's Σ|terms|."""
    a64, b64 = np.asarray(a, F64), np.asarray(b, F64)
    return a64 @ b64, np.abs(a64) @ np.abs(b64)


# ---------------------------------------------------------------------------- exact maths
def sigmoid(z):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0, e) / (1.0 + e)


EXACT_ACT = {LINEAR: lambda z: z, SIGMOID: sigmoid, TANH: np.tanh,
             RELU: lambda z: np.where(z > 0, z, 0.0 * z), SOFTPLUS: lambda z: np.logaddexp(0, z),
             SOFTMAX: lambda z: np.exp(z - np.logaddexp.reduce(z, axis=1, keepdims=True))}
EXACT_PRIME = {LINEAR: np.ones_like, SIGMOID: lambda z: sigmoid(z) * sigmoid(-z),
               TANH: lambda z: 1.0 / np.cosh(np.minimum(np.abs(z), 350.0)) ** 2, RELU: lambda z: (z > 0) * 1.0,
               SOFTPLUS: sigmoid}


def exact_cost(z, a, y, loss):
    """Σ per-sample cost in float64 (quadratic from a; cross-entropy and log-likelihood from z)."""
    if loss == QUADRATIC:
        return 0.5 * ((a - y) ** 2).sum()
    if loss == CROSS_ENTROPY:
        return (np.logaddexp(0, z) - y * z).sum()
    return -(y * (z - np.logaddexp.reduce(z, axis=1, keepdims=True))).sum()


# ---------------------------------------------------------------------------- shapes
def drawn(seed, highs, count=3):
    """``count`` shapes drawn at random (fixed seed), each size in [1, high)."""
    rng = np.random.default_rng(seed)
    return [tuple(int(v) for v in rng.integers(1, highs)) for _ in range(count)]


# (B, n_in, n_out): batch 1, odd and random sizes; the wide layers (the book's 784→30,
# 2880→100, long rows past the vector blocks) off the simulator.
DENSE = [(1, 1, 1), (1, 7, 3), (2, 5, 4), (3, 13, 1), (7, 1, 9), (5, 3, 64), (11, 30, 10)] + \
    drawn(19, (13, 41, 21), 2)
DENSE_WIDE = [(4, 100, 3), (9, 37, 5), (3, 1000, 7), (10, 784, 30), (100, 1001, 7),
              (23, 2890, 12), (10, 2880, 100)]
# (n, c_in, c_out, h, w, kh, kw, (ph, pw)): batch 1, odd sizes, 1×1 and non-square kernels, a
# kernel as large as the image, conv outputs not divisible by the pool, (3, 2) pools, 8 conv
# rows in windows of 3. Off the simulator: float32 output rows of 8 or more through
# conv_simd.corr_rows (rows of 11 and 9, 7 rows of 8, the book's 24 and 8); the backward
# dense, sparse from the image (c_in·kh <= 5: widths 3, 5, 8) and through the patch matrix
# (widths 1 and 5; an 8-wide kernel with c_in·kh = 6), and the book's two conv layers.
CONV = [(1, 1, 2, 6, 7, 3, 3, (2, 2)), (3, 2, 3, 7, 5, 3, 3, (3, 2)),
        (1, 1, 2, 10, 6, 3, 3, (3, 2)), (1, 1, 1, 5, 5, 5, 5, (1, 1))]
CONV_WIDE = [(1, 1, 3, 7, 9, 3, 3, (2, 2)), (2, 3, 5, 13, 11, 1, 1, (1, 1)),
             (2, 2, 5, 9, 10, 3, 3, (1, 1)), (1, 3, 6, 11, 13, 5, 5, (1, 1)),
             (3, 2, 4, 13, 11, 5, 5, (1, 1)), (2, 3, 7, 9, 6, 3, 5, (1, 1)),
             (2, 2, 2, 9, 10, 2, 8, (2, 2)), (1, 2, 2, 6, 8, 3, 1, (3, 3)),
             (2, 2, 3, 12, 14, 3, 9, (2, 2)), (2, 3, 5, 13, 11, 5, 5, (3, 2)),
             (3, 2, 1, 6, 8, 1, 1, (3, 2)), (2, 2, 3, 9, 12, 3, 8, (1, 1)),
             (3, 1, 20, 28, 28, 5, 5, (2, 2)), (2, 20, 40, 12, 12, 5, 5, (2, 2))]
# (n, c, h, w, ph, pw): remainders dropped, (3, 2) windows, a window larger than the plane
POOL = [(1, 1, 4, 4, 2, 2), (2, 3, 7, 9, 2, 2), (3, 2, 13, 11, 3, 2), (2, 1, 2, 5, 3, 2)]
POOL_WIDE = [(1, 20, 24, 24, 2, 2)]
# (B, n): an output layer (batch 1, odd widths)
ROWS = [(1, 1), (1, 10), (5, 4), (7, 3)] + drawn(23, (14, 12))
ROWS_WIDE = [(10, 300), (100, 10)]


def thread_counts(small):
    return (1,) if small else (1, 2, 3)


# ---------------------------------------------------------------------------- dense
def _layer(rng, shape, dtype):
    B, n_in, n_out = shape
    return (rand(rng, (B, n_in), dtype), rand(rng, (n_out, n_in), dtype),
            rand(rng, n_out, dtype), rand(rng, (B, n_out), dtype))


def assert_dense(z, x, w, b, name="z"):
    """z = x·wᵀ + b by the rule: n = n_in + 1, Σ|terms| = |x|·|w|ᵀ + |b|."""
    exact, magnitude = products(x, np.asarray(w).T)
    assert_close(z, (exact + b).astype(z.dtype), n=x.shape[1] + 1,
                 magnitude=magnitude + np.abs(b), name=name)


def assert_update(w_new, b_new, w, b, x, dz, scale, decay):
    """w ← decay·w − scale·dzᵀx, b ← b − scale·Σdz by the rule: m + 1 terms (m samples)."""
    m = len(x)
    gw, gw_mag = products(np.asarray(dz).T, x)
    ew = float(decay) * w.astype(F64) - float(scale) * gw
    eb = b.astype(F64) - float(scale) * dz.astype(F64).sum(0)
    assert_close(w_new, ew.astype(w_new.dtype), n=m + 1,
                 magnitude=np.abs(float(decay) * w.astype(F64)) + float(scale) * gw_mag,
                 name="w")
    assert_close(b_new, eb.astype(b_new.dtype), n=m + 1,
                 magnitude=np.abs(b.astype(F64)) + float(scale) * np.abs(
                     dz.astype(F64)).sum(0), name="b")


def check_dense_forward(f, dtype, shape, rng, small):
    x, w, b, _ = _layer(rng, shape, dtype)
    z = garbage((shape[0], shape[2]), dtype)
    f(x, w, b, z)
    assert_dense(z, x, w, b)


def check_dense_forward_par(f, dtype, shape, rng, small):
    x, w, b, _ = _layer(rng, shape, dtype)
    for nthreads in thread_counts(small):
        z = garbage((shape[0], shape[2]), dtype)
        f(x, w, b, z, nthreads)
        assert_dense(z, x, w, b)


def check_dense_backward_par(f, dtype, shape, rng, small):
    x, w, _, dz = _layer(rng, shape, dtype)
    B, n_in, n_out = shape
    edx, dx_mag = products(dz, w)
    egw, gw_mag = products(dz.T, x)
    dz64 = dz.astype(F64)
    for nthreads in thread_counts(small):
        for need_dx in (True, False):
            dx = garbage((B, n_in), dtype) if need_dx else np.full((B, n_in), 7.0, dtype)
            gw, gb = garbage((n_out, n_in), dtype), garbage(n_out, dtype)
            f(x, w, dz, dx, gw, gb, need_dx, nthreads)
            if need_dx:
                assert_close(dx, edx.astype(dtype), n=n_out, magnitude=dx_mag, name="dx")
            else:
                assert (dx == 7.0).all(), "dx written without need_dx"
            assert_close(gw, egw.astype(dtype), n=B, magnitude=gw_mag, name="gw")
            assert_close(gb, dz64.sum(0).astype(dtype), n=B, magnitude=np.abs(dz64).sum(0),
                         name="gb")


def check_dense_backward_sgd_par(f, dtype, shape, rng, small):
    x, w, b, dz = _layer(rng, shape, dtype)
    B, n_in, _ = shape
    scale, decay = dtype(0.1 / B), dtype(0.99)
    edx, dx_mag = products(dz, w)
    for nthreads in thread_counts(small):
        for need_dx in (True, False):
            wk, bk = w.copy(), b.copy()
            dx = garbage((B, n_in), dtype) if need_dx else np.full((B, n_in), 7.0, dtype)
            f(x, wk, bk, dz, dx, need_dx, scale, decay, nthreads)
            if need_dx:   # from the weights before the step
                assert_close(dx, edx.astype(dtype), n=shape[2], magnitude=dx_mag, name="dx")
            else:
                assert (dx == 7.0).all(), "dx written without need_dx"
            assert_update(wk, bk, w, b, x, dz, scale, decay)


def check_dense_update(f, dtype, shape, rng, small):
    x, w, b, delta = _layer(rng, shape, dtype)
    for decay in (1.0, 0.999):
        wk, bk = w.copy(), b.copy()
        f(x, delta, wk, bk, 0.3 / shape[0], decay)
        assert_update(wk, bk, w, b, x, delta, 0.3 / shape[0], decay)


def check_hidden_delta(f, dtype, shape, rng, small):
    B, n, n_next = shape
    dn, w = rand(rng, (B, n_next), dtype), rand(rng, (n_next, n), dtype)
    z = rand(rng, (B, n), dtype)
    z64 = z.astype(F64)
    for act in ELEMENTWISE:
        a = EXACT_ACT[act](z64).astype(dtype)
        delta = garbage((B, n), dtype)
        f(dn, w, z, a, act, delta)
        back, mag = products(dn, w)
        prime = EXACT_PRIME[act](z64)
        # a product of two rounded factors: each factor's bound times the other factor
        bound = rounding_bound(back, dtype, n=n_next, magnitude=mag) * np.abs(prime) + \
            np.abs(back) * prime_bound(z64, a.astype(F64), act, dtype)
        assert_close(delta, (back * prime).astype(dtype), bound=bound, name=f"delta act {act}")


# ---------------------------------------------------------------------------- activations, losses
def _outputs(rng, shape, dtype, scale=4.0):
    z = rand(rng, shape, dtype, scale)
    z[0, :3] = [1e3, -1e3, 0.0][:shape[1]]   # saturating inputs must not overflow
    return z


def check_activate(f, dtype, shape, rng, small, codes=ELEMENTWISE + (SOFTMAX,)):
    z = _outputs(rng, shape, dtype)
    z64 = z.astype(F64)
    for code in codes:
        a = garbage(shape, dtype)
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            f(z, a, code)
        exact = EXACT_ACT[code](z64)
        assert_close(a, exact.astype(dtype), bound=activation_bound(z64, exact, code, dtype),
                     name=f"a code {code}")


def check_activate_flat(f, dtype, shape, rng, small):
    check_activate(f, dtype, shape, rng, small, ELEMENTWISE)


def check_activation_prime(f, dtype, shape, rng, small):
    z = _outputs(rng, shape, dtype)
    z64 = z.astype(F64)
    for code in ELEMENTWISE:
        a = EXACT_ACT[code](z64).astype(dtype)
        out = rand(rng, shape, dtype)
        expected = out.astype(F64) * EXACT_PRIME[code](z64)
        got = out.copy()
        f(z, a, code, got)
        assert_close(got, expected.astype(dtype), name=f"out code {code}",
                     bound=np.abs(out.astype(F64)) * prime_bound(z64, a, code, dtype))


def check_act_plane(f, dtype, shape, rng, small):
    z = _outputs(rng, shape, dtype).reshape(-1)
    z64 = z.astype(F64)
    buf = np.empty((2, z.size), np.float32)
    for code in ELEMENTWISE:
        a = garbage(z.shape, dtype)
        f(z, a, code, buf)
        exact = EXACT_ACT[code](z64)
        assert_close(a, exact.astype(dtype), bound=activation_bound(z64, exact, code, dtype),
                     name=f"a code {code}")


PAIRS = [(QUADRATIC, code) for code in ELEMENTWISE] + [(CROSS_ENTROPY, SIGMOID),
                                                      (LOG_LIKELIHOOD, SOFTMAX)]


def _loss_inputs(rng, shape, dtype, act, n_targets=None):
    z = rand(rng, shape, dtype, 3.0)
    a = EXACT_ACT[act](z.astype(F64)).astype(dtype)
    y = np.eye(shape[1], dtype=dtype)[rng.integers(0, shape[1], n_targets or shape[0])]
    return z, a, y


def _assert_output_delta(delta, z, a, y, loss, act):
    z64, a64, y64 = (v.astype(F64) for v in (z, a, y))
    exact = (a64 - y64) * (EXACT_PRIME[act](z64) if loss == QUADRATIC else 1.0)
    assert_close(delta, exact.astype(delta.dtype), name=f"delta loss {loss} act {act}",
                 bound=output_delta_bound(z64, a64, y64, loss, act, delta.dtype))


def check_output_delta(f, dtype, shape, rng, small):
    for loss, act in PAIRS:
        z, a, y = _loss_inputs(rng, shape, dtype, act)
        delta = garbage(shape, dtype)
        f(z, a, y, loss, act, delta)
        _assert_output_delta(delta, z, a, y, loss, act)


def check_output_delta_rows(f, dtype, shape, rng, small):
    for loss, act in PAIRS:
        z, a, y = _loss_inputs(rng, shape, dtype, act, n_targets=shape[0] + 5)
        rows = rng.integers(0, len(y), shape[0])
        delta = garbage(shape, dtype)
        f(z, a, y, rows, loss, act, delta)
        _assert_output_delta(delta, z, a, y[rows], loss, act)


def check_loss_and_correct(f, dtype, shape, rng, small):
    for loss, act in PAIRS:
        z, a, y = _loss_inputs(rng, shape, dtype, act)
        total, correct = f(z, a, y, loss)
        z64, a64, y64 = (v.astype(F64) for v in (z, a, y))
        assert_close(np.float64(total), np.float64(exact_cost(z64, a64, y64, loss)),
                     bound=cost_bound(z64, a64, y64, loss, dtype), name=f"cost loss {loss}")
        assert correct == int((a.argmax(1) == y.argmax(1)).sum()), (correct, loss)


# ---------------------------------------------------------------------------- sgd
SGD = [(1,), (7,), (1000,), (4099,)]


def check_sgd_apply(f, dtype, shape, rng, small):
    p, g = rand(rng, shape, dtype), rand(rng, shape, dtype)
    decayed = rng.random(shape) < 0.7
    for nthreads in thread_counts(small):
        for decay in (1.0, 0.99):
            got = p.copy()
            f(got, g, decayed, decay, 0.3, nthreads)
            kept = np.where(decayed, decay, 1.0) * p.astype(F64)
            assert_close(got, (kept - 0.3 * g.astype(F64)).astype(dtype), n=2,
                         magnitude=np.abs(kept) + 0.3 * np.abs(g.astype(F64)), name="params")


# ---------------------------------------------------------------------------- batch norm
# (N, C, S): one value per feature (N = S = 1), batch 1 over positions, odd sizes, a dense
# layer's (S = 1) and a conv layer's (S = h·w) forms; the wide ones off the simulator
NORM = [(1, 1, 1), (1, 3, 5), (2, 1, 1), (5, 4, 1), (3, 2, 7)] + drawn(29, (9, 6, 12), 2)
NORM_WIDE = [(100, 30, 1), (10, 20, 576), (7, 40, 64)]


def _norm_stats(x):
    """Exact μ, biased σ² per feature of x[N, C, S] (float64), and M = N·S."""
    x64 = x.astype(F64)
    mean = x64.mean(axis=(0, 2))
    return mean, ((x64 - mean[None, :, None]) ** 2).mean(axis=(0, 2)), x.shape[0] * x.shape[2]


def _norm_inputs(rng, shape, dtype):
    N, C, S = shape
    x = (rng.standard_normal(shape) * rng.uniform(0.5, 3, (1, C, 1)) +
         rng.uniform(-2, 2, (1, C, 1))).astype(dtype)
    return (x, rand(rng, C, dtype, 0.5) + 1, rand(rng, C, dtype, 0.5),
            rand(rng, C, dtype, 0.3), (rng.uniform(0.5, 2, C)).astype(dtype))


def check_batchnorm_forward(f, dtype, shape, rng, small):
    x, gamma, beta, rm, rv = _norm_inputs(rng, shape, dtype)
    N, C, S = shape
    eps, momentum = 1e-5, 0.3
    bc = (None, slice(None), None)
    absx = np.abs(x.astype(F64)).mean(axis=(0, 2))
    for train in (True, False):
        y, xhat, invstd = garbage(shape, dtype), garbage(shape, dtype), garbage(C, dtype)
        rm_k, rv_k = rm.copy(), rv.copy()
        f(x, gamma, beta, rm_k, rv_k, train, momentum, eps, y, xhat, invstd)
        if train:
            mean, var, M = _norm_stats(x)
        if train and M > 1:
            new_m = (1 - momentum) * rm.astype(F64) + momentum * mean
            new_v = (1 - momentum) * rv.astype(F64) + momentum * var * M / (M - 1)
            # the sums: M terms of magnitude Σ|x|/M (the mean) and of (x − μ)² (the variance)
            assert_close(rm_k, new_m.astype(dtype), n=M,
                         magnitude=np.abs(rm) + momentum * absx, name="running_mean")
            terms = ((np.abs(x.astype(F64)) + np.abs(mean[bc])) ** 2).mean(axis=(0, 2))
            assert_close(rv_k, new_v.astype(dtype), n=M,
                         magnitude=np.abs(rv) + momentum * terms * M / (M - 1),
                         name="running_var")
        elif train:                      # one value per feature: the running averages stay
            assert_close(rm_k, rm, rtol=0, atol=0, name="running_mean")
            assert_close(rv_k, rv, rtol=0, atol=0, name="running_var")
        else:
            mean, var, M = rm.astype(F64), rv.astype(F64), 1
            assert_close(rm_k, rm, rtol=0, atol=0, name="running_mean")
            assert_close(rv_k, rv, rtol=0, atol=0, name="running_var")
        inv = 1 / np.sqrt(var + eps)
        exact = (x.astype(F64) - mean[bc]) * inv[bc]
        # xhat's error: (x − μ) (|x| + mean|x|) and σ² (relative, M terms) through 1/√
        mag = (np.abs(x.astype(F64)) + absx[bc] + np.abs(mean[bc])) * inv[bc] + np.abs(exact)
        assert_close(invstd, inv.astype(dtype), n=M, name="invstd")
        assert_close(xhat, exact.astype(dtype), n=M, magnitude=mag, name="xhat")
        ey = gamma.astype(F64)[bc] * exact + beta.astype(F64)[bc]
        assert_close(y, ey.astype(dtype), n=M,
                     magnitude=np.abs(gamma.astype(F64))[bc] * mag + np.abs(beta)[bc], name="y")


def check_batchnorm_backward(f, dtype, shape, rng, small):
    N, C, S = shape
    M = N * S
    xhat = rand(rng, shape, dtype)
    invstd = rng.uniform(0.3, 3, C).astype(dtype)
    gamma, dy = rand(rng, C, dtype), rand(rng, shape, dtype)
    bc = (None, slice(None), None)
    g, h = dy.astype(F64), xhat.astype(F64)
    dg, db = (g * h).sum(axis=(0, 2)), g.sum(axis=(0, 2))
    mag_dg, mag_db = np.abs(g * h).sum(axis=(0, 2)), np.abs(g).sum(axis=(0, 2))
    k = (gamma.astype(F64) * invstd.astype(F64) / M)[bc]
    exact_dx = k * (M * g - db[bc] - h * dg[bc])
    mag_dx = np.abs(k) * (M * np.abs(g) + mag_db[bc] + np.abs(h) * mag_dg[bc])
    for need_dx in (True, False):
        dx = garbage(shape, dtype) if need_dx else dy[:0]
        dgamma, dbeta = garbage(C, dtype), garbage(C, dtype)
        f(xhat, invstd, gamma, dy, need_dx, dx, dgamma, dbeta)
        assert_close(dgamma, dg.astype(dtype), n=M, magnitude=mag_dg, name="dgamma")
        assert_close(dbeta, db.astype(dtype), n=M, magnitude=mag_db, name="dbeta")
        if need_dx:
            assert_close(dx, exact_dx.astype(dtype), n=M, magnitude=mag_dx, name="dx")


# ---------------------------------------------------------------------------- the families
FAMILIES = {  # family: (shapes for every target, shapes off the simulator, its kernels)
    "dense": (DENSE, DENSE_WIDE, ["dense_forward", "dense_forward_par", "dense_backward_par",
                                  "dense_backward_sgd_par", "dense_update", "hidden_delta"]),
    "activations": (ROWS, ROWS_WIDE, ["activate", "activate_flat", "activation_prime",
                                      "act_plane"]),
    "losses": (ROWS, ROWS_WIDE, ["output_delta", "output_delta_rows", "loss_and_correct"]),
    "conv": (CONV, CONV_WIDE, ["conv2d_forward", "conv2d_backward", "convpool_forward",
                               "convpool_backward", "convpool_forward_into",
                               "convpool_backward_into"]),
    "pool": (POOL, POOL_WIDE, ["maxpool_forward", "maxpool_backward", "maxpool_forward_into",
                               "maxpool_backward_into"]),
    "sgd": (SGD, [], ["sgd_apply"]),
    "norm": (NORM, NORM_WIDE, ["batchnorm_forward", "batchnorm_backward"]),
}


@contextlib.contextmanager
def _case(kernel, shape, dtype):
    try:
        yield
    except AssertionError as e:
        raise AssertionError(f"{kernel}, shape {shape}, {np.dtype(dtype).name}: {e}") from e


def check(family: str, kernel: str, f, small: bool) -> None:
    """``f`` (the target's ``kernel``) against the exact maths over the family's shapes (only
    the small ones when ``small``) in float32 and float64."""
    import conv_twin_checks   # it imports this module
    shapes, wide, _ = FAMILIES[family]
    checker = getattr(conv_twin_checks, f"check_{kernel}", None) or globals()[f"check_{kernel}"]
    for k, shape in enumerate(shapes + ([] if small else wide)):
        for dtype in DTYPES:
            with _case(kernel, shape, dtype):
                checker(f, dtype, shape, np.random.default_rng([k, dtype == F64]), small)
