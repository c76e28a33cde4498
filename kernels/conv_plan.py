"""The convolution family's plans for the CPU (Numba): how a batch is split over threads, what
every chunk of a pass shares (tap offsets, the winners' places, the filters dx needs), which
backward runs (``sparse_backward``, ``through_patches``) and each chunk's scratch arrays.

    chunk(k, nchunks, n)       images [start, stop) of thread chunk k
    backward_plan(x, w, ..)    (offs, offs_dx, wt, where) shared by the backward's chunks
    forward_scratch / backward_scratch / chunk_scratch   per-chunk scratch, leading chunk axis

Shapes: x ``float[n, c_in, h, w]``, w ``float[c_out, c_in, kh, kw]``; no arithmetic on the
data here (only filter re-layouts), so no NumPy twin. Users: ``conv_cpu``, ``cnn_cpu``.
Tests: ``tests/test_conv.py``, ``tests/test_cnn_epoch.py``. Why: docs/kernels.md.
"""

import numpy as np
from numba import njit

from . import config
from . import simd

_jit = njit(**config.CPU_JIT)


@_jit
def chunk(k, nchunks, n):
    """Images [start, stop) of chunk k when n images are split into nchunks near-equal runs."""
    return k * n // nchunks, (k + 1) * n // nchunks


@_jit
def tap_offsets(c_in, h, w, kh, kw):
    """int64[c_in·kh·kw]: offset of tap (c, i, j) in a flat (c_in, h, w) image."""
    offs = np.empty(c_in * kh * kw, np.int64)
    t = 0
    for c in range(c_in):
        for i in range(kh):
            for j in range(kw):
                offs[t] = c * h * w + i * w + j
                t += 1
    return offs


@_jit
def _row_chunks(ch, cw, wd):
    """int64[ch·⌈cw/8⌉]: where ``corr_rows``' eight-position chunks start in a flat conv output
    of row stride wd — each output row (y, 0..cw-1) in chunks at x = 0, 8, ..; the last one
    of a row starts at cw - 8 (cw >= 8), overlapping the one before when 8 does not divide cw."""
    per = (cw + simd.LANES - 1) // simd.LANES
    out = np.empty(ch * per, np.int64)
    for y in range(ch):
        for c in range(per):
            out[y * per + c] = y * wd + min(c * simd.LANES, cw - simd.LANES)
    return out


@_jit
def _flipped_transpose(w):
    """float[c_in, c_out·kh·kw]: wt[c, (o, i, j)] = w[o, c, kh-1-i, kw-1-j] — the filters that
    map dz back to dx."""
    c_out, c_in, kh, kw = w.shape
    wt = np.empty((c_in, c_out * kh * kw), w.dtype)
    for c in range(c_in):
        t = 0
        for o in range(c_out):
            for i in range(kh):
                for j in range(kw):
                    wt[c, t] = w[o, c, kh - 1 - i, kw - 1 - j]
                    t += 1
    return wt


@_jit
def sparse_backward(kw, nq, ch, wd):
    """Whether the backward should work from the winners (``dw_sparse``, ``dx_sparse``:
    nq winners × filter rows, one 8-lane FMA each) instead of the dense flat correlations
    (``_dw_flat``: ch·w positions × kw taps per filter row, 8 per vector FMA; ``_dx_image``
    likewise): when the weight gradient does at most half the vector work — 2×2 pools of 5×5
    filters do 0.34× (first layer) and 0.53× (second) of it; a plain conv (no pooling) would
    do 1.6× — and the conv plane is small enough for ``pool_cpu.pooled_deltas``' float32 row
    arithmetic (< 2^22 positions)."""
    return kw <= simd.LANES and 2 * simd.LANES * nq <= kw * ch * wd and ch * wd < 2 ** 22


@_jit
def through_patches(c_in, kh, kw, n_pos):
    """Whether the sparse backward goes through the image's patch matrix (``patches``,
    ``_dw_patches``, ``_dx_patches``) instead of loading each winner's patch rows straight
    from the image (``dw_sparse``, ``dx_sparse``): when a filter has more than five rows,
    so the direct kernels' sums need several passes over the winners, each loading
    unaligned short rows — and the matrix (n_pos conv output positions × the patch width,
    one per thread chunk) has at most 2^22 elements (16 MB in float32), so that large
    images do not trade a little speed for a lot of memory. The book's second layer (20 → 40
    maps, 5×5 on 12×12: a 64 × 512 matrix) computes both gradients faster through the
    patches; its first layer (one map: five rows) is faster direct."""
    return c_in * kh > 5 and n_pos * _patch_width(c_in * kh * kw, kw) <= 2 ** 22


@_jit
def _patch_width(n_taps, kw):
    """The row length of the patch matrix and of the filters' rows that go with it: n_taps
    plus the spill of ``conv_simd.patches``' last 8-lane store, rounded up to 16 (64-byte rows)."""
    return (n_taps - kw + simd.LANES + 15) // 16 * 16


@_jit
def _flat_rows(w, width):
    """float[c_out, width]: filter o flat (c_in·kh·kw taps), then zeros — what
    ``conv_cpu``'s ``_dx_patches`` sums, eight lanes at a time."""
    c_out = w.shape[0]
    n_taps = w.size // c_out
    wm = w.reshape(c_out, n_taps)
    out = np.zeros((c_out, width), w.dtype)
    for o in range(c_out):
        for t in range(n_taps):
            out[o, t] = wm[o, t]
    return out


@_jit
def _padded_rows(w):
    """float[c_out, c_in·kh·8]: filter o's row r = (c, i) as eight lanes, w[o, c, i, :kw] then
    zeros (kw <= 8) — what ``conv_simd.dx_sparse`` adds, eight lanes at a time, into dx."""
    c_out, c_in, kh, kw = w.shape
    out = np.zeros((c_out, c_in * kh * simd.LANES), w.dtype)
    for o in range(c_out):
        for c in range(c_in):
            for i in range(kh):
                r = (c * kh + i) * simd.LANES
                for j in range(kw):
                    out[o, r + j] = w[o, c, i, j]
    return out


@_jit
def backward_plan(x, w, need_dx, sparse):
    """What every chunk of the backward shares: tap offsets into x and into the padded dz, the
    filters dx needs (if it is needed: for the sparse backward ``_flat_rows`` through the
    patches, else ``_padded_rows``; for the dense one the flipped filters,
    ``_flipped_transpose``), and where[3, ·]: where[0, y] / where[1, y] shift a
    winner's idx = y·cw + x to its place in dzf (row stride w; also the origin of its patch in
    the flat image) / in the padded dzp (row stride wp = w + kw - 1, offset (kh-1, kw-1));
    where[2, idx] = y, a lookup instead of an integer division."""
    _, c_in, h, wd = x.shape
    c_out, _, kh, kw = w.shape
    ch, cw = h - kh + 1, wd - kw + 1
    hp, wp = h + kh - 1, wd + kw - 1
    where = np.empty((3, ch * cw), np.int64)
    for y in range(ch):
        where[0, y] = y * (kw - 1)
        where[1, y] = (y + kh - 1) * wp + kw - 1 - y * cw
        for x in range(cw):
            where[2, y * cw + x] = y
    offs_dx = tap_offsets(c_out, hp, wp, kh, kw)
    if not need_dx:
        wt = np.empty((c_in, 0), w.dtype)
    elif sparse and through_patches(c_in, kh, kw, ch * cw):
        wt = _flat_rows(w, _patch_width(c_in * kh * kw, kw))
    elif sparse:
        wt = _padded_rows(w)
    else:
        wt = _flipped_transpose(w)
    return tap_offsets(c_in, h, wd, kh, kw), offs_dx, wt, where


@_jit
def forward_scratch(x, w, oh, ow, nchunks):
    """The forward's scratch: per chunk the flat conv output, the pooling passes' buffers and
    the activation buffer (see pool_cpu.pool, activations_cpu.act_plane); shared, ``corr_rows``' row chunks
    (empty: ``conv_simd.corr_flat``, for float64 or output rows narrower than 8)."""
    _, _, h, wd = x.shape
    c_out, _, kh, kw = w.shape
    ch, cw = h - kh + 1, wd - kw + 1
    plane = ch * wd
    rows = simd.is_float32(x.dtype.type(0)) and cw >= simd.LANES
    return (np.empty((nchunks, c_out, plane), x.dtype), np.empty((nchunks, plane), x.dtype),
            np.empty((nchunks, plane), np.int32),
            np.empty((nchunks, 2, c_out * oh * ow), np.float32),
            _row_chunks(ch, cw, wd) if rows else np.empty(0, np.int64))


@_jit
def backward_scratch(x, w, nq, need_dx, nchunks):
    """The backward's per-chunk scratch for images like x and filters w with nq pooled
    windows, each array with a leading chunk axis (``chunk_scratch`` takes chunk k's): dzf
    (zero between images), dzp and dxf (the dense dx only; dzp zero between images), pq and
    dwp (the sparse backward), and the patch work (cols, order, coef, starts, drow: through
    the patches; the last four for dx) — see ``conv_cpu.backward_images``. What a mode does not use
    is empty."""
    _, c_in, h, wd = x.shape
    c_out, _, kh, kw = w.shape
    ch, cw = h - kh + 1, wd - kw + 1
    dt = x.dtype
    sparse = sparse_backward(kw, nq, ch, wd)
    patches = sparse and through_patches(c_in, kh, kw, ch * cw)
    dense_dx = need_dx and not sparse
    width = _patch_width(c_in * kh * kw, kw) if patches else 0
    lanes = width if patches else (c_in * kh * simd.LANES if sparse else 0)
    m = c_out * nq if patches and need_dx else 0
    return (np.zeros((nchunks, c_out, ch * wd), dt),
            np.zeros((nchunks, c_out, (h + kh - 1) * (wd + kw - 1) if dense_dx else 0), dt),
            np.empty((nchunks, c_in, h * (wd + kw - 1) if dense_dx else 0), dt),
            np.empty((nchunks, c_out, nq if sparse else 0), np.int32),
            np.empty((nchunks, c_out, lanes), dt),
            (np.zeros((nchunks, ch * cw if patches else 0, width), dt),
             np.empty((nchunks, m), np.int32), np.empty((nchunks, m), dt),
             np.empty((nchunks, ch * cw + 2 if m else 0), np.int64),
             np.empty((nchunks, width if m else 0), dt)))


@_jit
def chunk_scratch(scratch, k):
    """Chunk k's part of ``backward_scratch``'s arrays, as ``backward_images`` takes it."""
    cols, order, coef, starts, drow = scratch[5]
    return (scratch[0][k], scratch[1][k], scratch[2][k], scratch[3][k], scratch[4][k],
            (cols[k], (order[k], coef[k], starts[k], drow[k])))
