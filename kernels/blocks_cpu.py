"""Register-blocked SIMD micro-kernels for the rows of a dense layer, z = x·wᵀ + b and its
gradients, on a range of w's rows or columns (so threads can share a layer):
``rows_forward`` (z on rows [j_lo, j_hi) of w), ``rows_update`` (the gradient fused with the
SGD step on those rows) and ``rows_backprop`` (dx = dz·w on columns [k_lo, k_hi)), built
from two-row × five-sample dot and axpy blocks and eight-lane ``simd`` helpers.

Shapes: ``x: float[B, ≥ n_in]`` read through ``rows`` (int64 sample indices; ``NO_ROWS``:
rows 0..m − 1), ``w: float[n_out, n_in]``, ``b: float[n_out]``, ``z, delta: float[B,
n_out]``. They write into arrays passed in and allocate nothing.

NumPy twin: ``fastnet.reference.dense`` (``dense_forward``, ``dense_update``, and dz @ w).
Tests: ``tests/test_dense.py``. Why the blocks, tiles and masked tails: docs/kernels.md.
"""

import numpy as np
from numba import njit

from . import config
from . import simd
from .simd import is_float32

_jit = njit(**config.CPU_JIT)
_lite = njit(**config.CPU_LITE)

NO_ROWS = np.empty(0, dtype=np.int64)


# Register blocks over two weight rows × five samples: per element of n_in, 7 loads feed
# 10 FMAs. LLVM vectorises the dot products' loops (k over n_in, contiguous in both operands;
# reductions under fastmath); the update's loops, which store, are on ``simd`` vectors.
@_jit
def _dot_2x5(w0, w1, x0, x1, x2, x3, x4, n):
    """The 10 dot products of rows w0, w1 with rows x0..x4 over their first n elements."""
    zero = w0.dtype.type(0)
    s00 = s01 = s02 = s03 = s04 = zero
    s10 = s11 = s12 = s13 = s14 = zero
    for k in range(n):
        a, c = w0[k], w1[k]
        s00 += a * x0[k]
        s01 += a * x1[k]
        s02 += a * x2[k]
        s03 += a * x3[k]
        s04 += a * x4[k]
        s10 += c * x0[k]
        s11 += c * x1[k]
        s12 += c * x2[k]
        s13 += c * x3[k]
        s14 += c * x4[k]
    return s00, s01, s02, s03, s04, s10, s11, s12, s13, s14


@_jit
def _dot_2x1(w0, w1, x0, n):
    zero = w0.dtype.type(0)
    s0 = s1 = zero
    for k in range(n):
        s0 += w0[k] * x0[k]
        s1 += w1[k] * x0[k]
    return s0, s1


@_jit
def _dot_1x5(w0, x0, x1, x2, x3, x4, n):
    zero = w0.dtype.type(0)
    s0 = s1 = s2 = s3 = s4 = zero
    for k in range(n):
        a = w0[k]
        s0 += a * x0[k]
        s1 += a * x1[k]
        s2 += a * x2[k]
        s3 += a * x3[k]
        s4 += a * x4[k]
    return s0, s1, s2, s3, s4


@_jit
def _dot_1x1(w0, x0, n):
    s = w0.dtype.type(0)
    for k in range(n):
        s += w0[k] * x0[k]
    return s


@_jit
def _axpy_2x5(w0, w1, c0, c1, x0, x1, x2, x3, x4, n, d):
    """w0 ← d·w0 − Σ_i c0[i]·x_i, w1 ← d·w1 − Σ_i c1[i]·x_i over five rows x0..x4 (c0, c1:
    5-tuples); d is the weight decay on the first pass over a row, else 1 (d·w − s is one FMA,
    so the decay costs no pass of its own). Eight elements per step on ``simd`` vectors, the
    last step on masked lanes with the same FMA chain, so every element gets the same
    arithmetic whatever the compile (a scalar tail came out differently fresh and from the
    cache) and wherever a row range starts. Written as plain loops over k these did not
    vectorise with a run-time n."""
    k = 0
    while k + simd.LANES <= n:
        v = _x5(x0, x1, x2, x3, x4, k, simd.LANES, True)
        _axpy_step(w0, c0, v, k, simd.LANES, True, d)
        _axpy_step(w1, c1, v, k, simd.LANES, True, d)
        k += simd.LANES
    if k < n:
        v = _x5(x0, x1, x2, x3, x4, k, n - k, False)
        _axpy_step(w0, c0, v, k, n - k, False, d)
        _axpy_step(w1, c1, v, k, n - k, False, d)


@_jit
def _axpy_1x5(w0, c0, x0, x1, x2, x3, x4, n, d):
    """``_axpy_2x5`` for one row."""
    k = 0
    while k + simd.LANES <= n:
        _axpy_step(w0, c0, _x5(x0, x1, x2, x3, x4, k, simd.LANES, True), k, simd.LANES, True,
                   d)
        k += simd.LANES
    if k < n:
        _axpy_step(w0, c0, _x5(x0, x1, x2, x3, x4, k, n - k, False), k, n - k, False, d)


@_lite
def _x5(x0, x1, x2, x3, x4, k, r, full):
    """Elements k..k + r of five rows as eight-lane vectors (``_get1``)."""
    return (_get1(x0, k, r, full), _get1(x1, k, r, full), _get1(x2, k, r, full),
            _get1(x3, k, r, full), _get1(x4, k, r, full))


@_lite
def _axpy_step(w0, c, v, k, r, full, d):
    """w0[k:k + r] ← d·w0 − Σ_i c[i]·v[i] (five vectors v, their sum one FMA chain)."""
    a0, a1, a2, a3, a4 = c
    v0, v1, v2, v3, v4 = v
    t = simd.fma(simd.fma(simd.fma(simd.fma(simd.fma(
        simd.splat(w0.dtype.type(0)), v0, -a0), v1, -a1), v2, -a2), v3, -a3), v4, -a4)
    _put1(w0, k, r, full, simd.fma(t, _get1(w0, k, r, full), d))


@_jit
def _axpy_1x1(w0, c0, x0, n, d):
    for k in range(n):
        w0[k] = d * w0[k] - c0 * x0[k]


@njit(**config.CPU_JIT, inline="always")
def _xrow(x, rows, i):
    """Sample i of a mini-batch: row rows[i] of x, or row i when rows is empty (no gather)."""
    r = rows[i] if rows.shape[0] > 0 else i
    return x[r]


# ---------------------------------------------------------------------------------- forward
@_jit
def rows_forward(x, rows, m, w, b, z, j_lo, j_hi):
    """z[i, j] (overwritten) = x_i·w[j] + b[j] for j in [j_lo, j_hi), i < m, where x_i is
    ``_xrow(x, rows, i)``. Sample groups outside, rows inside: the five x rows of a group stay
    in L1 while the weight rows stream past (x traffic, not w, is what limits this loop); a
    last sample on its own takes two rows of w at a time. The first n_in = w.shape[1] elements
    of each x row are read (rows may be longer)."""
    n = w.shape[1]
    i = 0
    while i < m:
        if i + 1 < m:
            # five samples; a group past the last sample repeats it (summed, not stored):
            # 2-4 samples cost one group, not 2-4 single-sample passes over w (a sample
            # alone costs more than twice its share of a whole group)
            g = min(5, m - i)
            i1, i2, i3, i4 = _next4(i, m - 1)
            x0, x1, x2 = _xrow(x, rows, i), _xrow(x, rows, i1), _xrow(x, rows, i2)
            x3, x4 = _xrow(x, rows, i3), _xrow(x, rows, i4)
            j = j_lo
            while j + 2 <= j_hi:
                s = _dot_2x5(w[j], w[j + 1], x0, x1, x2, x3, x4, n)
                for q in range(g):
                    z[i + q, j] = s[q] + b[j]
                    z[i + q, j + 1] = s[5 + q] + b[j + 1]
                j += 2
            if j < j_hi:
                s5 = _dot_1x5(w[j], x0, x1, x2, x3, x4, n)
                for q in range(g):
                    z[i + q, j] = s5[q] + b[j]
            i += g
        else:
            x0 = _xrow(x, rows, i)
            j = j_lo
            while j + 2 <= j_hi:
                s0, s1 = _dot_2x1(w[j], w[j + 1], x0, n)
                z[i, j] = s0 + b[j]
                z[i, j + 1] = s1 + b[j + 1]
                j += 2
            if j < j_hi:
                z[i, j] = _dot_1x1(w[j], x0, n) + b[j]
            i += 1


# ----------------------------------------------------------------------------------- update
@_jit
def _rows_update_passes(x, rows, m, delta, w, b, scale, decay, j_lo, j_hi):
    """w[j] ← decay·w[j] − scale·Σ_{i<m} δ[i, j]·x_i, b[j] −= scale·Σ_{i<m} δ[i, j], for j in
    [j_lo, j_hi), x_i = ``_xrow(x, rows, i)``; scale and decay are of w's dtype. Sample groups
    outside, rows inside, as in ``rows_forward``; x rows may be longer than w's. The float64
    path of ``rows_update``."""
    n = w.shape[1]
    for j in range(j_lo, j_hi):
        s = w.dtype.type(0)
        for i in range(m):
            s += delta[i, j]
        b[j] -= scale * s
        if m == 0:                   # no sample: no pass to carry the decay
            for k in range(n):
                w[j, k] *= decay
    one = w.dtype.type(1)
    i = 0
    while i < m:
        d = decay if i == 0 else one  # the decay rides on each row's first pass
        if i + 5 <= m:
            x0, x1, x2 = _xrow(x, rows, i), _xrow(x, rows, i + 1), _xrow(x, rows, i + 2)
            x3, x4 = _xrow(x, rows, i + 3), _xrow(x, rows, i + 4)
            j = j_lo
            while j < j_hi:
                c0 = (scale * delta[i, j], scale * delta[i + 1, j], scale * delta[i + 2, j],
                      scale * delta[i + 3, j], scale * delta[i + 4, j])
                if j + 1 < j_hi:
                    c1 = (scale * delta[i, j + 1], scale * delta[i + 1, j + 1],
                          scale * delta[i + 2, j + 1], scale * delta[i + 3, j + 1],
                          scale * delta[i + 4, j + 1])
                    _axpy_2x5(w[j], w[j + 1], c0, c1, x0, x1, x2, x3, x4, n, d)
                    j += 2
                else:
                    _axpy_1x5(w[j], c0, x0, x1, x2, x3, x4, n, d)
                    j += 1
            i += 5
        else:
            x0 = _xrow(x, rows, i)
            for j in range(j_lo, j_hi):
                _axpy_1x1(w[j], scale * delta[i, j], x0, n, d)
            i += 1


_UPDATE_TILE = 65536   # elements of x per column tile in ``rows_update``


@_lite
def rows_update(x, rows, m, delta, w, b, scale, decay, j_lo, j_hi):
    """w[j] ← decay·w[j] − scale·Σ_{i<m} δ[i, j]·x_i, b[j] −= scale·Σ_{i<m} δ[i, j], for j in
    [j_lo, j_hi), x_i = ``_xrow(x, rows, i)``; scale and decay are of w's dtype; x rows may
    be longer than w's.

    float32: blocks of five w rows × sixteen columns whose gradient sums stay in ten 8-lane
    registers (``simd``) over all m samples — per sample two loads of x_i and five broadcasts
    feed ten FMAs — then w = decay·w − scale·sum, one load and store of w per element (the
    ``_rows_update_passes`` it replaces reads and writes each row once per five samples). A
    block past the last row repeats that row (summed, not stored), so a range of 50 or 100
    rows is whole blocks and a short one costs one block, not one per row; the last columns go
    through masked lanes with the same per-lane arithmetic. The columns run in tiles of
    ~``_UPDATE_TILE``/m so the m x rows of a tile stay in L2 while every block of rows rereads
    them (at 100 samples x is 1.15 MB: untiled, each block streamed it from L3). Each
    element's sum runs over i in order whatever the blocks and tiles, so results do not depend
    on them. Below three samples, at exactly five (one pass of the five-sample groups) and for
    float64: ``_rows_update_passes`` (at exactly five samples the passes are the faster).
    """
    if not is_float32(w.dtype.type(0)) or m < 3 or m == 5:
        _rows_update_passes(x, rows, m, delta, w, b, scale, decay, j_lo, j_hi)
        return
    for j in range(j_lo, j_hi):
        s = w.dtype.type(0)
        for i in range(m):
            s += delta[i, j]
        b[j] -= scale * s
    n = w.shape[1]
    zero = simd.splat(w.dtype.type(0))
    last = j_hi - 1
    # columns in tiles whose m x rows fit in L2 next to the weights (~256 KB), so the rows
    # of every block of w rows reread them from there, not from L3
    tile = max(16, min(n, (_UPDATE_TILE // max(m, 1)) // 16 * 16))
    for t in range(0, n, tile):
        te = min(t + tile, n)
        for j in range(j_lo, j_hi, 5):
            # rows j..j + 4; past the last row the block repeats it (summed, not stored)
            j1, j2, j3, j4 = _next4(j, last)
            k = t
            while k < te:
                n0 = min(simd.LANES, te - k)
                n1 = min(simd.LANES, max(te - k - simd.LANES, 0))
                full = n1 == simd.LANES
                s00 = s01 = s10 = s11 = s20 = s21 = s30 = s31 = s40 = s41 = zero
                for i in range(m):
                    v0, v1 = _get2(_xrow(x, rows, i), k, n0, n1, full)
                    s00, s01, s10, s11, s20, s21, s30, s31, s40, s41 = _fma_5x2(
                        (s00, s01, s10, s11, s20, s21, s30, s31, s40, s41), v0, v1,
                        delta[i, j], delta[i, j1], delta[i, j2], delta[i, j3], delta[i, j4])
                _step2(w[j], k, n0, n1, full, s00, s01, scale, decay)
                if j + 1 <= last:
                    _step2(w[j1], k, n0, n1, full, s10, s11, scale, decay)
                if j + 2 <= last:
                    _step2(w[j2], k, n0, n1, full, s20, s21, scale, decay)
                if j + 3 <= last:
                    _step2(w[j3], k, n0, n1, full, s30, s31, scale, decay)
                if j + 4 <= last:
                    _step2(w[j4], k, n0, n1, full, s40, s41, scale, decay)
                k += n0 + n1


@_lite
def _step2(row, k, n0, n1, full, s0, s1, scale, decay):
    """row[k:k + n0 + n1] ← decay·row − scale·(s0, s1) over the lanes in use."""
    zero = simd.splat(row.dtype.type(0))
    w0, w1 = _get2(row, k, n0, n1, full)
    w0 = simd.fma(simd.fma(zero, w0, decay), s0, -scale)
    w1 = simd.fma(simd.fma(zero, w1, decay), s1, -scale)
    put2(row, k, n0, n1, full, w0, w1)


# --------------------------------------------------------------------------------- backprop
@_lite
def _rows_backprop_one(dz, w, dx, k_lo, k_hi):
    """``rows_backprop`` for float64: the same five-row blocks, one eight-lane vector (two
    256-bit registers) per row, so the five sums, the row of w and a broadcast fit the sixteen
    registers. Faster than the tiled loop it replaced (LLVM's vectorised
    ``d += a0·w0 + … + a3·w3`` over slices, loading and storing dx every four rows of w)."""
    m, n_out = dz.shape
    zero = simd.splat(dx.dtype.type(0))
    k = k_lo
    while k < k_hi:
        n0 = min(simd.LANES, k_hi - k)
        full = n0 == simd.LANES
        for i in range(0, m, 5):
            if i + 1 == m:                               # one row left: one sum
                s0 = zero
                for j in range(n_out):
                    v = _get1(w[j], k, n0, full)
                    s0 = simd.fma(s0, v, dz[i, j])
                _put1(dx[i], k, n0, full, s0)
                continue
            i1, i2, i3, i4 = _next4(i, m - 1)
            s0 = s1 = s2 = s3 = s4 = zero
            for j in range(n_out):
                v = _get1(w[j], k, n0, full)
                s0 = simd.fma(s0, v, dz[i, j])
                s1 = simd.fma(s1, v, dz[i1, j])
                s2 = simd.fma(s2, v, dz[i2, j])
                s3 = simd.fma(s3, v, dz[i3, j])
                s4 = simd.fma(s4, v, dz[i4, j])
            _put1(dx[i], k, n0, full, s0)
            if i + 1 < m:
                _put1(dx[i1], k, n0, full, s1)
            if i + 2 < m:
                _put1(dx[i2], k, n0, full, s2)
            if i + 3 < m:
                _put1(dx[i3], k, n0, full, s3)
            if i + 4 < m:
                _put1(dx[i4], k, n0, full, s4)
        k += n0


@_lite
def rows_backprop(dz, w, dx, k_lo, k_hi):
    """dx[i, k] (overwritten) = Σ_j dz[i, j]·w[j, k] for k in [k_lo, k_hi) and every row i of
    dz: dx = dz @ w on a column range.

    float32: blocks of five dx rows × sixteen columns held in ten 8-lane sums (``simd``)
    over all of j: per j two loads of w's row and five broadcasts feed ten FMAs (the
    tiled slice loop it replaced loaded and stored dx every four j: 6 memory
    operations per 4 FMAs). A block past the last row repeats row m − 1 (summed, not stored):
    five samples (a thread's share of a mini-batch of 10) are one block, where blocks of four
    left one row on its own, whose two FMA chains wait on each other's latency. A single last
    row still goes alone (two sums). The last columns go through masked lanes with the same
    per-lane FMA chain, so an element's value does not depend on where a thread's column range
    begins or ends. float64 (the sums would need 20 registers of their own):
    ``_rows_backprop_one``.
    """
    if not is_float32(w.dtype.type(0)):
        _rows_backprop_one(dz, w, dx, k_lo, k_hi)
        return
    m, n_out = dz.shape
    zero = simd.splat(dx.dtype.type(0))
    k = k_lo
    while k < k_hi:
        n0 = min(simd.LANES, k_hi - k)                   # lanes in the first vector
        n1 = min(simd.LANES, max(k_hi - k - simd.LANES, 0))   # and in the second
        full = n1 == simd.LANES
        for i in range(0, m, 5):
            if i + 1 == m:                               # one row left: two sums
                s00 = s01 = zero
                for j in range(n_out):
                    v0, v1 = _get2(w[j], k, n0, n1, full)
                    s00, s01 = simd.fma(s00, v0, dz[i, j]), simd.fma(s01, v1, dz[i, j])
                put2(dx[i], k, n0, n1, full, s00, s01)
                continue
            # rows i..i + 4; past the last row the block repeats row m − 1 (summed, not stored)
            i1, i2, i3, i4 = _next4(i, m - 1)
            s00 = s01 = s10 = s11 = s20 = s21 = s30 = s31 = s40 = s41 = zero
            for j in range(n_out):
                v0, v1 = _get2(w[j], k, n0, n1, full)
                s00, s01, s10, s11, s20, s21, s30, s31, s40, s41 = _fma_5x2(
                    (s00, s01, s10, s11, s20, s21, s30, s31, s40, s41), v0, v1,
                    dz[i, j], dz[i1, j], dz[i2, j], dz[i3, j], dz[i4, j])
            put2(dx[i], k, n0, n1, full, s00, s01)
            if i + 1 < m:
                put2(dx[i1], k, n0, n1, full, s10, s11)
            if i + 2 < m:
                put2(dx[i2], k, n0, n1, full, s20, s21)
            if i + 3 < m:
                put2(dx[i3], k, n0, n1, full, s30, s31)
            if i + 4 < m:
                put2(dx[i4], k, n0, n1, full, s40, s41)
        k += n0 + n1


# ------------------------------------------------------------------------------------ lanes
@_lite
def _get1(row, k, n0, full):
    """row[k:k + n0] as eight lanes, lanes past n0 zero (a plain load when n0 is a whole
    vector, else masked)."""
    if full:
        return simd.load8(row, k)
    return simd.load(row, k, n0)


@_lite
def _put1(row, k, n0, full, s):
    """row[k:k + n0] = s[:n0] (a plain store when n0 is a whole vector)."""
    if full:
        simd.store8(row, k, s)
    else:
        simd.store(row, k, n0, s)


@_lite
def _next4(r, last):
    """Rows r + 1 .. r + 4 of a five-row block, each at most ``last``: a block past the last
    row repeats it (its sums are computed and not stored)."""
    return min(r + 1, last), min(r + 2, last), min(r + 3, last), min(r + 4, last)


@_lite
def _fma_5x2(s, v0, v1, e0, e1, e2, e3, e4):
    """One step of a five-row block's ten sums s = (s00, s01, s10, …, s41): row r's pair
    (s_r0, s_r1) += (v0, v1)·e_r."""
    s00, s01, s10, s11, s20, s21, s30, s31, s40, s41 = s
    return (simd.fma(s00, v0, e0), simd.fma(s01, v1, e0), simd.fma(s10, v0, e1),
            simd.fma(s11, v1, e1), simd.fma(s20, v0, e2), simd.fma(s21, v1, e2),
            simd.fma(s30, v0, e3), simd.fma(s31, v1, e3), simd.fma(s40, v0, e4),
            simd.fma(s41, v1, e4))


@_lite
def _get2(row, k, n0, n1, full):
    """(row[k:k + n0], row[k + n0:k + n0 + n1]) as two 8-lane vectors, lanes past n0, n1
    zero (plain loads when both are whole vectors, else masked)."""
    if full:
        return simd.load8(row, k), simd.load8(row, k + simd.LANES)
    return simd.load(row, k, n0), simd.load(row, k + n0, n1)


@_lite
def put2(row, k, n0, n1, full, s0, s1):
    """row[k:k + n0] = s0[:n0], row[k + n0:k + n0 + n1] = s1[:n1] (plain stores when both
    are whole vectors, else masked)."""
    if full:
        simd.store8(row, k, s0)
        simd.store8(row, k + simd.LANES, s1)
    else:
        simd.store(row, k, n0, s0)
        simd.store(row, k + n0, n1, s1)
