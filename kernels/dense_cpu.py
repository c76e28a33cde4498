"""Dense-layer kernels for the CPU (Numba ``@njit``): batched feedforward, activations, output
and hidden deltas, the fused gradient + SGD update, softmax, and a fused training epoch.

Twin: ``fastnet.reference.dense`` (same names, same conventions; see docs/design.md).
Tests: ``tests/test_dense.py``. Benchmark: ``pytest bench/ --benchmark-only -k dense``.

Shapes: ``x: float[B, n_in]``, ``w: float[n_out, n_in]``, ``b: float[n_out]``,
``z, a, delta: float[B, n_out]``. Kernels write into arrays passed in and allocate nothing in
their loops; they do not validate (the Python layer does).

Variants and why:
- ``dense_forward`` computes two samples × two output units per pass over ``n_in`` (a 2×2
  register block): four dot products share their loads, which is what makes batch-10
  products fast without BLAS; a plain row-by-row loop is ~2× slower here.
- ``dense_update`` fuses the weight gradient Σ_b δ_bᵀ x_b with the SGD step, one pass over each
  weight row per two samples, so the gradient is never stored.
- ``train_epoch`` runs a whole epoch (gather, forward, backward, update per mini-batch) without
  returning to Python. It is single-threaded: on the 2-core machine a parallel region per layer
  per mini-batch costs more than it saves at mini-batch 10 (measured, docs/performance.md).
All kernels use ``config.FASTMATH`` (reassociation and contraction only, no ``nnan``/``ninf``):
the tests pass with margin under it, and NaN/inf checks stay meaningful.
"""

import math

import numpy as np
from numba import njit

from . import config
from .config import (CROSS_ENTROPY, LINEAR, LOG_LIKELIHOOD, QUADRATIC, RELU, SIGMOID, SOFTMAX,
                     SOFTPLUS, TANH)

_jit = njit(cache=config.CACHE, fastmath=config.FASTMATH, nogil=True)


# ---------------------------------------------------------------------------- scalar helpers
@_jit
def _sigmoid(z):
    # exp of a non-positive number only: no overflow for any finite z.
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@_jit
def _softplus(z):
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))


# ---------------------------------------------------------------------------- activations
@_jit
def activate(z, a, code):
    """a[B, n] (overwritten) = act(z[B, n]); softmax is row-wise with the row max subtracted."""
    B, n = z.shape
    if code == SOFTMAX:
        for i in range(B):
            zmax = z[i, 0]
            for j in range(1, n):
                zmax = max(zmax, z[i, j])
            s = 0.0
            for j in range(n):
                e = math.exp(z[i, j] - zmax)
                a[i, j] = e
                s += e
            inv = 1.0 / s
            for j in range(n):
                a[i, j] *= inv
        return
    for i in range(B):
        for j in range(n):
            v = z[i, j]
            if code == SIGMOID:
                a[i, j] = _sigmoid(v)
            elif code == TANH:
                a[i, j] = math.tanh(v)
            elif code == RELU:
                a[i, j] = v if v > 0 else 0.0
            elif code == SOFTPLUS:
                a[i, j] = _softplus(v)
            else:
                a[i, j] = v


@_jit
def activation_prime(z, a, code, out):
    """out[B, n] (multiplied in place) *= σ'(z), using the stored activation a where cheaper."""
    B, n = z.shape
    if code == LINEAR:
        return
    for i in range(B):
        for j in range(n):
            if code == SIGMOID:
                out[i, j] *= a[i, j] * (1.0 - a[i, j])
            elif code == TANH:
                out[i, j] *= 1.0 - a[i, j] * a[i, j]
            elif code == RELU:
                if z[i, j] <= 0:
                    out[i, j] = 0.0
            elif code == SOFTPLUS:
                out[i, j] *= _sigmoid(z[i, j])


# ---------------------------------------------------------------------------- feedforward
@_jit
def dense_forward(x, w, b, z):
    """z[B, n_out] (overwritten) = x[B, n_in] @ w[n_out, n_in]ᵀ + b[n_out]."""
    B, n_in = x.shape
    n_out = w.shape[0]
    zero = z.dtype.type(0)  # accumulate in the array dtype: float64 literals would widen fp32
    for j in range(0, n_out - 1, 2):
        w0, w1 = w[j], w[j + 1]
        for i in range(0, B - 1, 2):
            x0, x1 = x[i], x[i + 1]
            s00 = s01 = s10 = s11 = zero
            for k in range(n_in):
                s00 += x0[k] * w0[k]
                s01 += x0[k] * w1[k]
                s10 += x1[k] * w0[k]
                s11 += x1[k] * w1[k]
            z[i, j] = s00 + b[j]
            z[i, j + 1] = s01 + b[j + 1]
            z[i + 1, j] = s10 + b[j]
            z[i + 1, j + 1] = s11 + b[j + 1]
        if B % 2:
            x0 = x[B - 1]
            s00 = s01 = zero
            for k in range(n_in):
                s00 += x0[k] * w0[k]
                s01 += x0[k] * w1[k]
            z[B - 1, j] = s00 + b[j]
            z[B - 1, j + 1] = s01 + b[j + 1]
    if n_out % 2:
        j = n_out - 1
        w0 = w[j]
        for i in range(B):
            x0 = x[i]
            s = zero
            for k in range(n_in):
                s += x0[k] * w0[k]
            z[i, j] = s + b[j]


@_jit
def forward(params, layout, acts, x, zs, activations):
    """Forward pass through all layers. ``zs``/``activations`` are flat workspaces of at least
    B·Σn_out elements; layer l's arrays start at B·(Σ_{k<l} n_out_k). Returns the offset of the
    last layer's outputs in them."""
    B = x.shape[0]
    inp = x
    off = 0
    for l in range(layout.shape[0]):
        n_in, n_out, w_off, b_off = layout[l, 0], layout[l, 1], layout[l, 2], layout[l, 3]
        w = params[w_off:w_off + n_out * n_in].reshape((n_out, n_in))
        b = params[b_off:b_off + n_out]
        z = zs[off:off + B * n_out].reshape((B, n_out))
        a = activations[off:off + B * n_out].reshape((B, n_out))
        dense_forward(inp, w, b, z)
        activate(z, a, acts[l])
        inp = a
        if l < layout.shape[0] - 1:
            off += B * n_out
    return off


# ---------------------------------------------------------------------------- deltas
@_jit
def output_delta(z, a, y, loss, act, delta):
    """delta[B, n] (overwritten) = ∂C/∂z: (a − y)⊙σ'(z) (quadratic), a − y (cross-entropy
    with sigmoid, log-likelihood with softmax)."""
    B, n = z.shape
    for i in range(B):
        for j in range(n):
            delta[i, j] = a[i, j] - y[i, j]
    if loss == QUADRATIC:
        activation_prime(z, a, act, delta)


@_jit
def hidden_delta(delta_next, w_next, z, a, act, delta):
    """delta[B, n] (overwritten) = (delta_next[B, n_next] @ w_next[n_next, n]) ⊙ σ'(z)."""
    B, n = z.shape
    n_next = w_next.shape[0]
    for i in range(B):
        for k in range(n):
            delta[i, k] = 0
        for j in range(n_next):
            d = delta_next[i, j]
            for k in range(n):
                delta[i, k] += d * w_next[j, k]
    activation_prime(z, a, act, delta)


# ---------------------------------------------------------------------------- update
@_jit
def dense_update(x, delta, w, b, scale, decay):
    """SGD step fused with the gradient: w[n_out, n_in] ← decay·w − scale·δᵀx,
    b ← b − scale·Σ_b δ, for x[B, n_in], delta[B, n_out]; scale = lr/m."""
    B, n_in = x.shape
    n_out = w.shape[0]
    scale = w.dtype.type(scale)
    decay = w.dtype.type(decay)
    for j in range(n_out):
        wj = w[j]
        if decay != 1.0:
            for k in range(n_in):
                wj[k] *= decay
        for i in range(0, B - 1, 2):
            c0 = scale * delta[i, j]
            c1 = scale * delta[i + 1, j]
            x0, x1 = x[i], x[i + 1]
            for k in range(n_in):
                wj[k] -= c0 * x0[k] + c1 * x1[k]
        if B % 2:
            c0 = scale * delta[B - 1, j]
            x0 = x[B - 1]
            for k in range(n_in):
                wj[k] -= c0 * x0[k]
        s = w.dtype.type(0)
        for i in range(B):
            s += delta[i, j]
        b[j] -= scale * s


# ---------------------------------------------------------------------------- costs
@_jit
def loss_and_correct(z, a, y, loss):
    """(Σ per-sample cost as float64, number of rows with argmax a == argmax y) for one batch;
    the same formulas as ``fastnet.reference.dense.cost``."""
    B, n = z.shape
    total = 0.0
    correct = 0
    for i in range(B):
        c = 0.0
        if loss == QUADRATIC:
            for j in range(n):
                d = float(a[i, j]) - float(y[i, j])
                c += 0.5 * d * d
        elif loss == CROSS_ENTROPY:
            for j in range(n):
                zz = float(z[i, j])
                c += _softplus(zz) - float(y[i, j]) * zz
        else:  # LOG_LIKELIHOOD: −Σ y·log_softmax(z)
            zmax = float(z[i, 0])
            for j in range(1, n):
                zmax = max(zmax, float(z[i, j]))
            s = 0.0
            for j in range(n):
                s += math.exp(float(z[i, j]) - zmax)
            lse = zmax + math.log(s)
            for j in range(n):
                c -= float(y[i, j]) * (float(z[i, j]) - lse)
        total += c
        ja, jy = 0, 0
        for j in range(1, n):
            if a[i, j] > a[i, ja]:
                ja = j
            if y[i, j] > y[i, jy]:
                jy = j
        correct += ja == jy
    return total, correct


@_jit
def evaluate(params, layout, acts, loss, x, y, batch_size):
    """Σ cost and the number correct over a whole data set, in chunks of ``batch_size`` rows."""
    N = x.shape[0]
    width = 0
    for l in range(layout.shape[0]):
        width += layout[l, 1]
    zs = np.empty(batch_size * width, dtype=x.dtype)
    acts_buf = np.empty(batch_size * width, dtype=x.dtype)
    total = 0.0
    correct = 0
    nL = layout[layout.shape[0] - 1, 1]
    for k in range(0, N, batch_size):
        m = min(batch_size, N - k)
        off = forward(params, layout, acts, x[k:k + m], zs, acts_buf)
        z = zs[off:off + m * nL].reshape((m, nL))
        a = acts_buf[off:off + m * nL].reshape((m, nL))
        t, c = loss_and_correct(z, a, y[k:k + m], loss)
        total += t
        correct += c
    return total, correct


@_jit
def predict(params, layout, acts, x, out, batch_size):
    """out[N, nL] (overwritten) = the network's output for x[N, n0], in chunks."""
    N = x.shape[0]
    width = 0
    for l in range(layout.shape[0]):
        width += layout[l, 1]
    zs = np.empty(batch_size * width, dtype=x.dtype)
    acts_buf = np.empty(batch_size * width, dtype=x.dtype)
    nL = layout[layout.shape[0] - 1, 1]
    for k in range(0, N, batch_size):
        m = min(batch_size, N - k)
        off = forward(params, layout, acts, x[k:k + m], zs, acts_buf)
        out[k:k + m] = acts_buf[off:off + m * nL].reshape((m, nL))


# ---------------------------------------------------------------------------- fused epoch
@_jit
def train_epoch(params, layout, acts, loss, x, y, order, batch_size, lr, decay):
    """One epoch of mini-batch SGD in place on ``params`` (see docs/design.md): mini-batches are
    consecutive slices of ``order``; the last one may be shorter. x[N, n0], y[N, nL]."""
    N, n0 = x.shape
    L = layout.shape[0]
    nL = y.shape[1]
    width = 0
    for l in range(L):
        width += layout[l, 1]
    xb = np.empty((batch_size, n0), dtype=x.dtype)
    yb = np.empty((batch_size, nL), dtype=x.dtype)
    zs = np.empty(batch_size * width, dtype=x.dtype)
    acts_buf = np.empty(batch_size * width, dtype=x.dtype)
    deltas = np.empty(batch_size * width, dtype=x.dtype)
    offs = np.empty(L, dtype=np.int64)
    for k in range(0, N, batch_size):
        m = min(batch_size, N - k)
        for i in range(m):
            xb[i] = x[order[k + i]]
            yb[i] = y[order[k + i]]
        xm = xb[:m]
        # forward (layer offsets depend on m, the length of this mini-batch)
        off = 0
        inp = xm
        for l in range(L):
            n_in, n_out, w_off, b_off = layout[l, 0], layout[l, 1], layout[l, 2], layout[l, 3]
            offs[l] = off
            w = params[w_off:w_off + n_out * n_in].reshape((n_out, n_in))
            z = zs[off:off + m * n_out].reshape((m, n_out))
            a = acts_buf[off:off + m * n_out].reshape((m, n_out))
            dense_forward(inp, w, params[b_off:b_off + n_out], z)
            activate(z, a, acts[l])
            inp = a
            off += m * n_out
        # backward: delta of layer l-1 is taken before layer l's weights change
        scale = lr / m
        for l in range(L - 1, -1, -1):
            n_in, n_out, w_off, b_off = layout[l, 0], layout[l, 1], layout[l, 2], layout[l, 3]
            o = offs[l]
            z = zs[o:o + m * n_out].reshape((m, n_out))
            a = acts_buf[o:o + m * n_out].reshape((m, n_out))
            d = deltas[o:o + m * n_out].reshape((m, n_out))
            if l == L - 1:
                output_delta(z, a, yb[:m], loss, acts[l], d)
            w = params[w_off:w_off + n_out * n_in].reshape((n_out, n_in))
            if l > 0:
                op = offs[l - 1]
                zp = zs[op:op + m * n_in].reshape((m, n_in))
                ap = acts_buf[op:op + m * n_in].reshape((m, n_in))
                dp = deltas[op:op + m * n_in].reshape((m, n_in))
                hidden_delta(d, w, zp, ap, acts[l - 1], dp)
                inp = ap
            else:
                inp = xm
            dense_update(inp, d, w, params[b_off:b_off + n_out], scale, decay)
