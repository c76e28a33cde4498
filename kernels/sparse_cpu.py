"""The sparse-input family's maths on the CPU, for a dense network whose inputs are mostly
zeros (MNIST's): the CSR form of x (``scan_rows``, ``sparse_inputs``), the epoch's workspaces
(layer 0 transposed, ``workspaces``; the one layer above it padded, ``upper_workspaces``) and
one mini-batch step: layer 0 over one part of the inputs (``layer0_part``: the update and the
next forward touch only the weights of each sample's nonzero inputs), the layers above for a
half of the samples (``upper``, ``upper_one``) and their update (``upper_update_one``). The
inputs split at ``k_split`` into two parts with half the nonzeros each. The epochs that drive
them: ``sparse_epoch_cpu``; the gather and scatter: ``gather_cpu``.

Shapes: as ``dense_epoch_cpu`` (flat ``params``, ``layout[L, 4]``, ``y: float[N, n_out]``),
with x as ``csr = sparse_inputs(x, ...)`` = ``(indptr int64[N + 1], indices int32[nnz],
values[nnz], mid int64[N], k_split)``; ``wt: float[n_in, h_pad]``.

NumPy twin: ``fastnet.reference.dense.train_epoch`` (on dense x). Tests:
``tests/test_sparse.py``. Why the parts, the transposed weights: docs/kernels.md.
"""

import numpy as np
from numba import njit, prange

from . import config
from . import dense_cpu as dense
from . import dense_epoch_cpu
from .gather_cpu import gather_cols, scatter_cols
from .simd import rows_of
from .split_cpu import LINE, split

_jit = njit(**config.CPU_JIT)
_lite = njit(**config.CPU_LITE)
_pjit = njit(**config.CPU_PARALLEL)


# Inputs with more nonzeros than this fraction train on the dense path: one-thread epochs of
# [784, 30, 10] at mini-batch 10 cross over a little above it.
SPARSE_MAX_DENSITY = 0.4


_PART0_SHARE = 0.5  # of the nonzeros (module doc)


# ----------------------------------------------------------------------------------- inputs
@_pjit
def scan_rows(x, nthreads):
    """One read of x[N, n]: ``(indptr[N+1], col_counts[n], nonfinite)`` — the CSR row
    pointers (indptr[i + 1] − indptr[i] = row i's nonzeros, NaN counting as nonzero), each
    column's number of nonzeros, and how many entries are NaN or ±inf. Rows split over
    ``nthreads`` threads; every test is a compare, so the loop vectorises."""
    N, n = x.shape
    indptr = np.zeros(N + 1, dtype=np.int64)
    per_col = np.zeros((nthreads, n), dtype=np.int64)
    bad = np.zeros(nthreads, dtype=np.int64)
    big = np.finfo(x.dtype).max
    for t in prange(nthreads):
        lo, hi = split(N, nthreads, t, 1)
        pc = per_col[t]
        nb = 0
        for i in range(lo, hi):
            xi = x[i]
            c = 0
            for k in range(n):
                v = xi[k]
                nz = np.int64(v != 0)
                c += nz
                pc[k] += nz
                nb += np.int64(not (abs(v) <= big))
            indptr[i + 1] = c
        bad[t] = nb
    for i in range(N):
        indptr[i + 1] += indptr[i]
    col_counts = np.zeros(n, dtype=np.int64)
    for t in range(nthreads):
        col_counts += per_col[t]
    return indptr, col_counts, bad.sum()


@_pjit
def _fill(x, indptr, k_split, nthreads):
    """``(indices int32[nnz], values[nnz], mid[N])``: row i's nonzero columns, ascending, in
    ``indices[indptr[i]:indptr[i + 1]]``, their values (x's dtype) beside them, and mid[i] the
    first position of a column ≥ k_split. The fill branches on each element: faster for MNIST
    than a branch-free fill, which writes every element."""
    N, n = x.shape
    indices = np.empty(indptr[N], dtype=np.int32)
    values = np.empty(indptr[N], dtype=x.dtype)
    mid = np.empty(N, dtype=np.int64)
    for t in prange(nthreads):
        lo, hi = split(N, nthreads, t, 1)
        for i in range(lo, hi):
            p = indptr[i]
            xi = x[i]
            for k in range(k_split):
                if xi[k] != 0:
                    indices[p] = k
                    values[p] = xi[k]
                    p += 1
            mid[i] = p
            for k in range(k_split, n):
                if xi[k] != 0:
                    indices[p] = k
                    values[p] = xi[k]
                    p += 1
    return indices, values, mid


@_jit
def sparse_inputs(x, indptr, col_counts, nthreads):
    """x[N, n] for the sparse epoch, from ``scan_rows``' indptr and col_counts:
    ``(indptr, indices, values, mid, k_split)``, where each row's nonzeros split into two
    parts: inputs k < k_split (``indices[indptr[i]:mid[i]]``) and the rest. k_split is the
    first column at which the nonzeros before it and in it exceed ``_PART0_SHARE`` of all
    (thread 0's part)."""
    n = x.shape[1]
    k_split, acc = 0, 0
    while k_split < n and acc + col_counts[k_split] <= _PART0_SHARE * indptr[-1]:
        acc += col_counts[k_split]
        k_split += 1
    indices, values, mid = _fill(x, indptr, k_split, nthreads)
    return indptr, indices, values, mid, k_split


# ------------------------------------------------------------------------------- workspaces
@_jit
def aligned_zeros(shape, like):
    """zeros of ``shape`` (a tuple) and like's dtype, starting on a 64-byte boundary."""
    n = 1
    for s in shape:
        n *= s
    per_line = LINE // like.itemsize
    raw = np.zeros(n + per_line, dtype=like.dtype)
    skip = ((-raw.ctypes.data) % LINE) // like.itemsize
    return raw[skip:skip + n].reshape(shape)


@_jit
def padded_width(h, itemsize):
    """h rounded up to whole 64-byte cache lines of ``itemsize``-byte elements."""
    per = LINE // itemsize
    return (h + per - 1) // per * per


@_jit
def workspaces(params, layout, batch_size):
    """The epoch's arrays: ``(wt, bt, zq, c)`` — layer 0's weights transposed and its biases,
    padded to whole cache lines; zq[2, batch, h_pad], the two parts' sums of layer 0's z;
    c[2, batch, h_pad], each part's copy of the update's coefficients −(η/m)·δ⁰ — and the
    dense epoch's ``dense_epoch_cpu.workspaces``.
    wt and bt start as layer 0's weights and biases."""
    n0, h0, w_off, b_off = layout[0, 0], layout[0, 1], layout[0, 2], layout[0, 3]
    hp = padded_width(h0, params.itemsize)
    w0 = rows_of(params, w_off, h0, n0)
    wt = aligned_zeros((n0, hp), params)
    for j in range(h0):
        for k in range(n0):
            wt[k, j] = w0[j, k]
    bt = np.zeros(hp, dtype=params.dtype)
    bt[:h0] = params[b_off:b_off + h0]
    zq = aligned_zeros((2, batch_size, hp), params)
    c = aligned_zeros((2, batch_size, hp), params)
    return (wt, bt, zq, c), dense_epoch_cpu.workspaces(layout, batch_size, bt)


@_jit
def write_back(params, layout, sp):
    """Layer 0's weights and biases from the epoch's wt, bt into params."""
    wt, bt = sp[0], sp[1]
    n0, h0, w_off, b_off = layout[0, 0], layout[0, 1], layout[0, 2], layout[0, 3]
    w0 = rows_of(params, w_off, h0, n0)
    for j in range(h0):
        for k in range(n0):
            w0[j, k] = wt[k, j]
    params[b_off:b_off + h0] = bt[:h0]


@_jit
def fused_upper(layout, acts):
    """True when one layer sits above layer 0 (the book's [n, h, c] networks) and layer 0's
    activation is element-wise: the epoch then runs that layer on padded copies of its weights
    (``upper_workspaces``, ``upper_one``) instead of the generic ``dense_cpu.step_upper``."""
    return layout.shape[0] == 2 and acts[0] != config.SOFTMAX


@_jit
def upper_workspaces(params, layout, acts, batch_size):
    """For ``fused_upper`` networks (else all empty): ``(w1p, w1t, b1p, z0p, a0p, z1p, a1p,
    d1p, c1p, dtp, ar, c1T, a0T)``. Layer 1's weights W[n1, h0] twice, padded to whole cache lines:
    w1p[n1, hp] (rows of W: δ⁰ is a gather over them) and w1t[h0, n1p] (columns of W: z¹ is a
    gather over them); both take the same update, so they stay equal bit for bit. b1p[n1p]: its
    biases. Per sample of the mini-batch, rows padded the same way: layer 0's z and a (z0p,
    a0p[batch, hp]), layer 1's z, a and δ (z1p, a1p, d1p[batch, n1p]), −(η/m)·δ¹ (c1p) and
    the unscaled δ⁰ (dtp[batch, hp]). ar = 0, 1, 2, … (int32): the gather and scatter
    intrinsics' indices for dense rows. c1T[n1, batch_pad], a0T[h0, batch_pad]: c1p and a0p
    transposed, for the update. Every pad stays zero all epoch (while the values are
    finite)."""
    fused = fused_upper(layout, acts)
    h0, n1 = layout[0, 1], layout[layout.shape[0] - 1, 1]
    hp = padded_width(h0, params.itemsize) if fused else 0
    n1p = padded_width(n1, params.itemsize) if fused else 0
    rows = n1 if fused else 0
    w1p = aligned_zeros((rows, hp), params)
    w1t = aligned_zeros((h0 if fused else 0, n1p), params)
    b1p = aligned_zeros((n1p,), params)
    if fused:
        w_off, b_off = layout[1, 2], layout[1, 3]
        w1 = rows_of(params, w_off, n1, h0)
        for j in range(n1):
            for k in range(h0):
                w1p[j, k] = w1[j, k]
                w1t[k, j] = w1[j, k]
            b1p[j] = params[b_off + j]
    b = batch_size if fused else 0
    ar = np.arange(max(h0, n1, b) if fused else 0).astype(np.int32)
    bp = padded_width(b, params.itemsize)
    return (w1p, w1t, b1p, aligned_zeros((b, hp), params), aligned_zeros((b, hp), params),
            aligned_zeros((b, n1p), params), aligned_zeros((b, n1p), params),
            aligned_zeros((b, n1p), params), aligned_zeros((b, n1p), params),
            aligned_zeros((b, hp), params), ar, aligned_zeros((rows, bp), params),
            aligned_zeros((h0 if fused else 0, bp), params))


@_jit
def upper_write_back(params, layout, up):
    """Layer 1's weights and biases from ``upper_workspaces``' copies into params (nothing for
    networks that are not ``fused_upper``)."""
    w1p, b1p = up[0], up[2]
    if w1p.shape[0] == 0:
        return
    n1, h0 = layout[1, 1], layout[1, 0]
    w1 = rows_of(params, layout[1, 2], n1, h0)
    for j in range(n1):
        for k in range(h0):
            w1[j, k] = w1p[j, k]
        params[layout[1, 3] + j] = b1p[j]


# ----------------------------------------------------------------------------------- a step
@_lite
def layer0_part(csr, rows_u, rows_f, sp, d0, scale, decay, part):
    """Layer 0 over one part of the inputs (the weight rows k < k_split, or the rest): the SGD
    update with mini-batch t (samples rows_u, δ⁰ in d0[m, h] with h0 ≤ h ≤ h_pad, any columns
    past h0 zero; part 0 also updates the biases), then mini-batch t+1's sum over the part
    (samples rows_f, into zq[part]; part 0's starts from the biases). The parts touch
    disjoint rows of wt, so they can run on different threads."""
    indptr, indices, values, mid, k_split = csr
    wt, bt, zq, cq = sp
    hp = wt.shape[1]
    if rows_u.shape[0] > 0:
        m, h = d0.shape
        c = cq[part]
        for i in range(m):
            for j in range(h):
                c[i, j] = -scale * d0[i, j]  # columns from h0 on stay zero
        if part == 0:
            _bias_step(bt, d0, m, h, scale)
        if decay != 1:
            k_lo, k_hi = (0, k_split) if part == 0 else (k_split, wt.shape[0])
            for k in range(k_lo, k_hi):
                row = wt[k]
                for j in range(hp):
                    row[j] *= decay
        for i in range(m):
            r = rows_u[i]
            s, e = (indptr[r], mid[r]) if part == 0 else (mid[r], indptr[r + 1])
            scatter_cols(values, indices, s, e, wt, 0, hp, c[i])
    z = zq[part]
    for i in range(rows_f.shape[0]):
        zi = z[i]
        for j in range(hp):
            zi[j] = bt[j] if part == 0 else 0
        r = rows_f[i]
        s, e = (indptr[r], mid[r]) if part == 0 else (mid[r], indptr[r + 1])
        gather_cols(values, indices, s, e, wt, 0, hp, zi)


@_jit
def upper(params, layout, acts, loss, y, rows, first, offs, zq, ws, lr, decay):
    """Samples ``rows`` = rows first.. of the mini-batch above layer 0: layer 0's z = the two
    parts' sums, its activation, and the forward and deltas of the layers above
    (``dense_cpu.step_upper`` without the updates, which ``epoch_worker`` splits by rows
    after the barrier); their δ⁰ is left in the workspaces. Row by row, so the two halves of a
    mini-batch run on the two threads."""
    m = rows.shape[0]
    if m == 0:
        return
    zs, acts_buf = ws[0], ws[1]
    h0 = layout[0, 1]
    z0 = rows_of(zs, first * h0, m, h0)
    for i in range(m):
        for j in range(h0):
            z0[i, j] = zq[0, first + i, j] + zq[1, first + i, j]
    a0 = rows_of(acts_buf, first * h0, m, h0)
    if acts[0] == config.SOFTMAX:
        dense.activate(z0, a0, config.SOFTMAX)
    else:
        dense.activate_flat(z0, a0, acts[0])
    dense.step_upper(params, layout, acts, loss, y, rows, offs, ws, lr, decay, False, first)


@_lite
def upper_one(acts, loss, y, rows, first, zq, up, scale):
    """``upper`` for ``fused_upper`` networks on the padded copies ``up``: for samples
    ``rows`` = rows first.. of the mini-batch, layer 0's z = the parts' sums and its a, layer
    1's z = b + a⁰·Wᵀ (a gather over w1t's rows: the row vectors scaled by a⁰ and summed, no
    dot products to reduce), a and δ¹, c1p = −scale·δ¹, and δ⁰ = δ¹·W ⊙ σ'(z⁰) (a gather
    over w1p's rows) into dtp (padded rows, so the two threads' halves never share a cache
    line). No shape-dependent set-up per call: the rows are whole vectors."""
    w1p, w1t, b1p, z0p, a0p, z1p, a1p, d1p, c1p, dtp, ar = up[:11]
    n1, hp = w1p.shape
    h0, n1p = w1t.shape
    for q in range(rows.shape[0]):
        i = first + q
        z0, a0, z1, c1, dt = z0p[i], a0p[i], z1p[i], c1p[i], dtp[i]
        for j in range(hp):
            z0[j] = zq[0, i, j] + zq[1, i, j]
        z0v, a0v = rows_of(z0p, i * hp, 1, hp), rows_of(a0p, i * hp, 1, hp)
        dense.activate(z0v, a0v, acts[0])  # whole vectors; the pads are zeroed next
        for j in range(h0, hp):
            a0[j] = 0
        for j in range(n1p):
            z1[j] = b1p[j]
        gather_cols(a0, ar, 0, h0, w1t, 0, n1p, z1)
        z1v, a1v = rows_of(z1p, i * n1p, 1, n1), rows_of(a1p, i * n1p, 1, n1)
        d1v = rows_of(d1p, i * n1p, 1, n1)
        dense.activate(z1v, a1v, acts[1])
        dense.output_delta_rows(z1v, a1v, y, rows[q:q + 1], loss, acts[1], d1v)
        for j in range(n1):
            c1[j] = -scale * d1p[i, j]
        for j in range(hp):
            dt[j] = 0
        gather_cols(d1p[i], ar, 0, n1, w1p, 0, hp, dt)
        dense.activation_prime(z0v, a0v, acts[0], rows_of(dtp, i * hp, 1, hp))


@_lite
def upper_update_one(up, m, scale, decay, part, nparts):
    """Layer 1's SGD step for ``fused_upper`` networks, on both copies: range ``part`` of
    ``nparts`` of w1p's rows and of w1t's rows (whole cache lines each: the parts can run on
    different threads); part 0 also updates the biases. Row by row, the mini-batch's terms
    summed into the row in registers (a gather over the samples' rows: the next sample's
    load does not wait for this one's store). The same products in the same order reach
    W[j, k] in both copies (fma(c, a, w) = fma(a, c, w)), so they stay equal."""
    w1p, w1t, b1p, z0p, a0p, z1p, a1p, d1p, c1p, dtp, ar, c1T, a0T = up
    n1, h0 = w1p.shape[0], w1t.shape[0]
    j_lo, j_hi = split(n1, nparts, part, 1)
    k_lo, k_hi = split(h0, nparts, part, 1)
    if part == 0:
        _bias_step(b1p, d1p, m, n1, scale)
    _rows_update_from(w1p, j_lo, j_hi, c1p, a0p, c1T, ar, m, decay)
    _rows_update_from(w1t, k_lo, k_hi, a0p, c1p, a0T, ar, m, decay)


@_lite
def _bias_step(b, d, m, n, scale):
    """b[j] −= scale·Σ_{i<m} d[i, j] for j < n (the SGD step of a layer's biases)."""
    for j in range(n):
        s = b.dtype.type(0)
        for i in range(m):
            s += d[i, j]
        b[j] -= scale * s


@_lite
def _rows_update_from(w, lo, hi, src, coef, scratch, ar, m, decay):
    """w[r] ← decay·w[r] + Σ_{i<m} src[i, r]·coef[i] for rows r in [lo, hi) (whole vectors of
    w's width): column r of src goes to scratch[r], then one gather per row."""
    width = w.shape[1]
    for r in range(lo, hi):
        wr, vr = w[r], scratch[r]
        for i in range(m):
            vr[i] = src[i, r]
        if decay != 1:
            for k in range(width):
                wr[k] *= decay
        gather_cols(vr, ar, 0, m, coef, 0, width, wr)
