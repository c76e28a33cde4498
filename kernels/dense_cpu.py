"""The dense family's maths on the CPU (Numba ``@njit``): activations (a stable, vectorising
sigmoid), batched feedforward, output and hidden deltas, the fused gradient + SGD update, the
costs, the layer-by-layer kernels (``*_par``) and one mini-batch step of the layers above
layer 0 on the flat workspaces (``step_upper``, ``upper_updates``). The epochs that drive
them: ``dense_epoch_cpu``; their register-blocked row loops: ``blocks_cpu``.

Shapes: ``x: float[B, n_in]``, ``w: float[n_out, n_in]``, ``b: float[n_out]``,
``z, a, delta: float[B, n_out]``; a stack is the flat ``params`` buffer with ``layout[L, 4]``
rows ``(n_in, n_out, w_offset, b_offset)``, ``acts[L]`` and a loss code (docs/design.md).
Kernels write into arrays passed in and do not validate (the Python layer does).

NumPy twin: ``fastnet.reference.dense`` (same names). Tests: ``tests/test_dense.py``.
Why the sigmoid, the blocks and the flat workspaces: docs/kernels.md.
"""

import math

import numpy as np
from numba import njit, prange

from . import config
from .blocks_cpu import NO_ROWS, put2, rows_backprop, rows_forward, rows_update
from .config import CROSS_ENTROPY, QUADRATIC, RELU, SIGMOID, SOFTMAX, SOFTPLUS, TANH
from .simd import exp_floor, is_float32, pow2, rows_of
from .split_cpu import PAR_MIN_WORK, split

_jit = njit(**config.CPU_JIT)
_lite = njit(**config.CPU_LITE)  # no reference counting (config.CPU_LITE)
_pjit = njit(**config.CPU_PARALLEL)

# --------------------------------------------------------------------------- scalar helpers
@njit(**config.CPU_JIT, inline="always")
def _sigmoid_body(z):
    """σ(z) = 1/(1 + e^−z) without branches or libm calls, so loops over it vectorise.

    e = exp(−|z|) ∈ (0, 1] (no overflow for any z) by range reduction t = n·ln2 + r, |r| ≤ ln2/2,
    and a Taylor polynomial, scaled by 2**n built from bits: degree 12 in float64 (relative
    error < 2e-16), degree 7 in float32 (< 6e-9, below float32's rounding; 5 fewer FMAs per
    element); −|z| is clamped where e^t would leave the normal range (σ there is < 1e-38 or
    1 − 1e-38). σ = 1/(1 + e) for z ≥ 0, e/(1 + e) otherwise. NaN stays NaN.

    Inlined (Numba IR) into ``_sigmoid32`` and ``_sigmoid64``, which differ only in their
    fastmath flags."""
    T = type(z)
    t = -abs(z)
    lo = exp_floor(z)
    t = lo if t < lo else t  # NaN passes through to the final select
    n = np.floor(t * T(1.4426950408889634) + T(0.5))
    r = t - n * T(0.6931471803691238) - n * T(1.9082149292705877e-10)
    if is_float32(z):
        p = T(1.0 / 5040.0)
    else:
        p = T(1.0 / 479001600.0)
        p = p * r + T(1.0 / 39916800.0)
        p = p * r + T(1.0 / 3628800.0)
        p = p * r + T(1.0 / 362880.0)
        p = p * r + T(1.0 / 40320.0)
        p = p * r + T(1.0 / 5040.0)
    p = p * r + T(1.0 / 720.0)
    p = p * r + T(1.0 / 120.0)
    p = p * r + T(1.0 / 24.0)
    p = p * r + T(1.0 / 6.0)
    p = p * r + T(0.5)
    p = p * r + T(1.0)
    p = p * r + T(1.0)
    e = p * pow2(n)
    s = T(1.0) / (T(1.0) + e)
    out = s if z >= 0 else e * s
    return z if z != z else out


@_jit
def _sigmoid32(z):
    return _sigmoid_body(z)


# Without "reassoc": it let LLVM merge the two-part ln2 (Cody-Waite) subtraction, r = t − n·ln2_hi
# − n·ln2_lo, into one product, so r lost ~|n| ulps and σ's float64 relative error grew with
# |z| (2.4e-14 near z = −700, 30 ulps at −100; 5e-16 at most so). float32 keeps it: its
# error (~3e-7, a few float32 ulps) is the same either way, and the sigmoid runs faster.
@njit(**dict(config.CPU_JIT, fastmath=config.FASTMATH - {"reassoc"}))
def _sigmoid64(z):
    return _sigmoid_body(z)


@_jit
def _sigmoid(z):
    """σ(z) = 1/(1 + e^−z) for a float32 or float64 z: see ``_sigmoid_body``."""
    if is_float32(z):
        return _sigmoid32(z)
    return _sigmoid64(z)


@_jit
def _softplus(z):
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))


# ------------------------------------------------------------------------------ activations
@_lite
def activate(z, a, code):
    """a[B, n] (overwritten) = act(z[B, n]); softmax is row-wise with the row max subtracted.
    The code is tested outside the loops so each loop is branch-free and vectorises."""
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
    elif code == SIGMOID:
        for i in range(B):
            for j in range(n):
                a[i, j] = _sigmoid(z[i, j])
    elif code == TANH:
        for i in range(B):
            for j in range(n):
                a[i, j] = math.tanh(z[i, j])
    elif code == RELU:
        for i in range(B):
            for j in range(n):
                v = z[i, j]
                a[i, j] = 0.0 if v <= 0 else v   # NaN stays NaN, as np.maximum(z, 0)
    elif code == SOFTPLUS:
        for i in range(B):
            for j in range(n):
                a[i, j] = _softplus(z[i, j])
    else:
        for i in range(B):
            for j in range(n):
                a[i, j] = z[i, j]


@_lite
def activate_flat(z, a, code):
    """``activate`` for C-contiguous z, a[B, n] and an element-wise code (not softmax), as one
    run of B·n elements: short rows (n = 10) otherwise leave the vector loop mostly idle."""
    B, n = z.shape
    activate(rows_of(z, 0, 1, B * n), rows_of(a, 0, 1, B * n), code)


@_lite
def activation_prime(z, a, code, out):
    """out[B, n] (multiplied in place) *= σ'(z), using the stored activation a where cheaper."""
    B, n = z.shape
    one = out.dtype.type(1)
    if code == SIGMOID:
        for i in range(B):
            for j in range(n):
                out[i, j] *= a[i, j] * (one - a[i, j])
    elif code == TANH:
        for i in range(B):
            for j in range(n):
                out[i, j] *= one - a[i, j] * a[i, j]
    elif code == RELU:
        for i in range(B):
            for j in range(n):
                if not z[i, j] > 0:   # relu'(NaN) = 0, as the reference's (z > 0)
                    out[i, j] = 0.0
    elif code == SOFTPLUS:
        for i in range(B):
            for j in range(n):
                out[i, j] *= _sigmoid(z[i, j])


# ------------------------------------------------------------------------------ feedforward
@_jit
def dense_forward(x, w, b, z):
    """z[B, n_out] (overwritten) = x[B, n_in] @ w[n_out, n_in]ᵀ + b[n_out]."""
    rows_forward(x, NO_ROWS, x.shape[0], w, b, z, 0, w.shape[0])


@_jit
def forward(params, layout, acts, x, zs, activations):
    """Forward pass through all layers. ``zs``/``activations`` are flat workspaces of at least
    B·Σn_out elements; layer l's arrays start at B·(Σ_{k<l} n_out_k). Returns the offset of the
    last layer's outputs in them."""
    return forward_from(params, layout, acts, x, zs, activations, 0)


@_jit
def forward_from(params, layout, acts, inp, zs, activations, first):
    """``forward`` from layer ``first`` on, ``inp[B, n_in of first]`` being its input (layer
    first − 1's activations, or x); earlier layers' workspace rows are left as they are."""
    B = inp.shape[0]
    off = 0
    for l in range(layout.shape[0]):
        n_in, n_out, w_off, b_off = layout[l, 0], layout[l, 1], layout[l, 2], layout[l, 3]
        if l >= first:
            w = rows_of(params, w_off, n_out, n_in)
            b = params[b_off:b_off + n_out]
            z = rows_of(zs, off, B, n_out)
            a = rows_of(activations, off, B, n_out)
            dense_forward(inp, w, b, z)
            activate(z, a, acts[l])
            inp = a
        if l < layout.shape[0] - 1:
            off += B * n_out
    return off


# ----------------------------------------------------------------------------------- deltas
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


@_lite
def output_delta_rows(z, a, y, rows, loss, act, delta):
    """output_delta with targets y[rows[i]] read in place."""
    B, n = z.shape
    for i in range(B):
        yi = y[rows[i]]
        for j in range(n):
            delta[i, j] = a[i, j] - yi[j]
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


# ----------------------------------------------------------------------------------- update
@_jit
def dense_update(x, delta, w, b, scale, decay):
    """SGD step fused with the gradient: w[n_out, n_in] ← decay·w − scale·δᵀx,
    b ← b − scale·Σ_b δ, for x[B, n_in], delta[B, n_out]; scale = lr/m."""
    rows_update(x, NO_ROWS, x.shape[0], delta, w, b, w.dtype.type(scale),
                 w.dtype.type(decay), 0, w.shape[0])


# --------------------------------------------------------------------------- layer by layer
# The layer-by-layer path (models with conv layers) calls these once per layer and step; they
# split the work into ``nthreads`` row or column ranges under ``prange`` (one parallel region
# per call, cheap against the work of a wide layer such as the book's 2880→100) with ``_pjit``.
@_pjit
def dense_forward_par(x, w, b, z, nthreads):
    """``dense_forward`` with w's rows split over ``nthreads`` threads."""
    for c in prange(nthreads):
        lo, hi = split(w.shape[0], nthreads, c, 2)
        if hi > lo:
            rows_forward(x, NO_ROWS, x.shape[0], w, b, z, lo, hi)


@_pjit
def dense_backward_par(x, w, dz, dx, gw, gb, need_dx, nthreads):
    """The gradients of z = x @ w.T + b: gw[n_out, n_in] (overwritten) = dzᵀ @ x, gb[n_out]
    (overwritten) = Σ_i dz[i], and, when ``need_dx``, dx[B, n_in] (overwritten) = dz @ w.
    Thread c takes a range of w's rows for gw, gb and a range of its columns for dx."""
    m = x.shape[0]
    zero, minus_one = gw.dtype.type(0), gw.dtype.type(-1)
    for c in prange(nthreads):
        lo, hi = split(w.shape[0], nthreads, c, 2)
        for j in range(lo, hi):
            gb[j] = zero
            gj = gw[j]
            for k in range(gj.shape[0]):
                gj[k] = zero
        if hi > lo:  # g ← 1·g − (−1)·Σ dz·x: the update kernel, accumulating the gradient
            rows_update(x, NO_ROWS, m, dz, gw, gb, minus_one, gw.dtype.type(1), lo, hi)
        if need_dx:
            k_lo, k_hi = split(w.shape[1], nthreads, c, 16)
            if k_hi > k_lo:
                rows_backprop(dz, w, dx, k_lo, k_hi)


@_pjit
def dense_backward_sgd_par(x, w, b, dz, dx, need_dx, scale, decay, nthreads):
    """``dense_backward_par`` fused with the SGD step: dx[B, n_in] (overwritten, when
    ``need_dx``) = dz @ w with the weights as they were, then w ← decay·w − scale·dzᵀ @ x and
    b ← b − scale·Σ_i dz[i] in place — the gradient never goes to memory, and w is read and
    written once instead of three arrays in a separate SGD pass. Two parallel regions (dx's
    columns, then w's rows): dx must read every row before any is updated."""
    m = x.shape[0]
    if need_dx:
        for c in prange(nthreads):
            k_lo, k_hi = split(w.shape[1], nthreads, c, 16)
            if k_hi > k_lo:
                rows_backprop(dz, w, dx, k_lo, k_hi)
    for c in prange(nthreads):
        lo, hi = split(w.shape[0], nthreads, c, 2)
        if hi > lo:
            rows_update(x, NO_ROWS, m, dz, w, b, scale, decay, lo, hi)


# ------------------------------------------------------------------------------------ costs
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


# --------------------------------------------------------------------- a step above layer 0
@_jit
def layer_offsets(layout, batch_size):
    """offs[L+1]: layer l's rows in the flat workspaces start at offs[l]; offs[L] is their size."""
    L = layout.shape[0]
    offs = np.zeros(L + 1, dtype=np.int64)
    for l in range(L):
        offs[l + 1] = offs[l] + batch_size * layout[l, 1]
    return offs


@_jit
def copy_cols(src, dst):
    """dst[i, j] = src[i, j] for the rows of dst and the columns of the narrower of the two."""
    n = min(src.shape[1], dst.shape[1])
    for i in range(dst.shape[0]):
        for j in range(n):
            dst[i, j] = src[i, j]


@_jit
def step_upper(params, layout, acts, loss, y, rows, offs, ws, lr, decay, update=True,
                first=0):
    """One mini-batch (samples ``rows``) above layer 0, whose z and a are already in the
    workspaces ``ws = (zs, activations, deltas)``: the forward of layers 1.., every layer's delta
    (layer 0's included), each taken before any weight changes, then (``update``) the SGD
    updates of layers 1.. (``upper_updates``; layer 0's update is the epoch's, in
    ``dense_epoch_cpu``). ``first``: the samples are rows first.. of the mini-batch's
    workspace rows (a part of the mini-batch; the forward and the deltas are row by row, so
    parts can run on different threads; not with ``update``, which needs all rows)."""
    zs, acts_buf, deltas, _ = ws
    L = layout.shape[0]
    m = rows.shape[0]
    no_rows = rows[:0]
    for l in range(1, L):
        n_in, n_out, w_off, b_off = layout[l, 0], layout[l, 1], layout[l, 2], layout[l, 3]
        o, op = offs[l] + first * n_out, offs[l - 1] + first * n_in
        z = rows_of(zs, o, m, n_out)
        ap = rows_of(acts_buf, op, m, n_in)
        w = rows_of(params, w_off, n_out, n_in)
        rows_forward(ap, no_rows, m, w, params[b_off:b_off + n_out], z, 0, n_out)
        a = rows_of(acts_buf, o, m, n_out)
        if acts[l] == SOFTMAX:
            activate(z, a, SOFTMAX)
        else:
            activate_flat(z, a, acts[l])
    for l in range(L - 1, -1, -1):
        n_in, n_out, w_off = layout[l, 0], layout[l, 1], layout[l, 2]
        o = offs[l] + first * n_out
        z = rows_of(zs, o, m, n_out)
        a = rows_of(acts_buf, o, m, n_out)
        d = rows_of(deltas, o, m, n_out)
        if l == L - 1:
            output_delta_rows(z, a, y, rows, loss, acts[l], d)
        if l > 0:
            op = offs[l - 1] + first * n_in
            w = rows_of(params, w_off, n_out, n_in)
            hidden_delta(d, w, rows_of(zs, op, m, n_in),
                         rows_of(acts_buf, op, m, n_in), acts[l - 1],
                         rows_of(deltas, op, m, n_in))
    if update:
        upper_updates(params, layout, offs, ws, m, lr, decay)


@_jit
def upper_updates(params, layout, offs, ws, m, lr, decay, part=0, nparts=1):
    """The SGD updates of layers 1.. for a mini-batch of m samples whose activations and
    deltas are in the workspaces (``step_upper``'s last part; nothing of layer 0). With
    ``nparts`` > 1 only range ``part`` of each layer's rows (ranges of even size; the rows are
    independent, so the parts can run on different threads)."""
    acts_buf, deltas = ws[1], ws[2]
    scale = params.dtype.type(lr / m)
    for l in range(1, layout.shape[0]):
        n_in, n_out, w_off, b_off = layout[l, 0], layout[l, 1], layout[l, 2], layout[l, 3]
        lo, hi = split(n_out, nparts, part, 2)
        if lo >= hi:
            continue
        op, o = offs[l - 1], offs[l]
        rows_update(rows_of(acts_buf, op, m, n_in), NO_ROWS, m,
                     rows_of(deltas, o, m, n_out),
                     rows_of(params, w_off, n_out, n_in),
                     params[b_off:b_off + n_out], scale, decay, lo, hi)

