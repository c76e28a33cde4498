"""The dense family's maths on the CPU (Numba ``@njit``): batched feedforward, output and
hidden deltas, the fused gradient + SGD update, the costs, the layer-by-layer kernels
(``*_par``) and one mini-batch step of the layers above layer 0 on the flat workspaces
(``step_upper``, ``upper_updates``). The activations (``activate``, ``activate_flat``,
``activation_prime``, imported here for the callers): ``activations_cpu``. The epochs that
drive them: ``dense_epoch_cpu``; their register-blocked row loops: ``blocks_cpu``.

Shapes: ``x: float[B, n_in]``, ``w: float[n_out, n_in]``, ``b: float[n_out]``,
``z, a, delta: float[B, n_out]``; a stack is the flat ``params`` buffer with ``layout[L, 4]``
rows ``(n_in, n_out, w_offset, b_offset)``, ``acts[L]`` and a loss code (docs/design.md).
Kernels write into arrays passed in and do not validate (the Python layer does).

NumPy twin: ``fastnet.reference.dense`` (same names). Tests: ``tests/test_twins.py``,
``tests/test_dense.py``.
Why the sigmoid, the blocks and the flat workspaces: docs/kernels.md.
"""

import math

import numpy as np
from numba import njit, prange

from . import config
from .blocks_cpu import NO_ROWS, put2, rows_backprop, rows_forward, rows_update
from .activations_cpu import activate, activate_flat, activation_prime, softplus
from .config import CROSS_ENTROPY, QUADRATIC, SOFTMAX
from .simd import rows_of
from .split_cpu import PAR_MIN_WORK, split

_jit = njit(**config.CPU_JIT)
_lite = njit(**config.CPU_LITE)  # no reference counting (config.CPU_LITE)
_pjit = njit(**config.CPU_PARALLEL)

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
                c += softplus(zz) - float(y[i, j]) * zz
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

