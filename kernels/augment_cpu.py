"""Data augmentation's image warps: every output pixel sampled from the input image by bilinear
interpolation, zero outside the image.

- ``warp_affine(x, m, out, nthreads)``: at an affine map of the pixel's coordinates. x float[n,
  h, w] (one channel), m float64[n, 2, 3] (image k's map from output (row, col, 1) to input
  (row, col)), out float[n, h, w] written. Shifts, rotations and their compositions are such
  maps (``fastnet/augment.py`` draws them).
- ``warp_elastic(x, m, seeds, alpha, taps, out, nthreads)``: Simard, Steinkraus and Platt's
  elastic distortion between two affine maps. Image k's displacement field (Δrow, Δcol) is drawn
  on the h×w grid, uniform in [−alpha, alpha) per pixel from the two halves of splitmix64 of
  (seeds[k], pixel index) (seeds uint64[n]), and smoothed by the separable filter ``taps``
  (float64[2r + 1], a normalised Gaussian; zero beyond the image). Output (row, col) is sampled
  at m[k, 0]·(q + Δ(q)), q = m[k, 1]·(row, col, 1) (m float64[n, 2, 2, 3]); Δ at a q off the
  grid is interpolated bilinearly, the field extended by its edge values beyond it. Field,
  coordinates and sums in x's dtype (float32 halves the vector work), in a per-chunk scratch;
  the filter in four 8-lane sums (``simd``), the sampling without branches on a zero-padded
  copy of the image.

Images split into ``nthreads`` chunks under ``prange`` (on Numba's current thread count); every
image depends on its own seed alone, so results do not depend on the thread count.

Twin: ``fastnet.reference.augment`` (same names). Tests: ``tests/test_augment.py``.
Benchmark: ``python -m pytest bench/test_cnn.py -k augment``.
"""

import numpy as np
from numba import njit, prange

from . import config, simd

# splitmix64 (Steele, Lea and Flood 2014; Vigna's splitmix64.c): the golden-ratio increment
# and the two multipliers of its finaliser.
GAMMA = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)


@njit(**config.CPU_LITE)
def splitmix64(seed, k):
    """Output k (0, 1, …) of the splitmix64 stream seeded by ``seed`` (both uint64): a
    counter-based draw, any k computed alone."""
    z = seed + (k + np.uint64(1)) * GAMMA
    z = (z ^ (z >> np.uint64(30))) * MIX1
    z = (z ^ (z >> np.uint64(27))) * MIX2
    return z ^ (z >> np.uint64(31))


@njit(**config.CPU_LITE)
def _edge(xk, r, c):
    """The bilinear sample at (r, c) near or across the image's edge (outside pixels are 0)."""
    h, w = xk.shape
    r0, c0 = np.floor(r), np.floor(c)
    fr, fc = r - r0, c - c0
    i0, j0 = int(r0), int(c0)
    acc = 0.0
    for di in range(2):
        ii = i0 + di
        if ii < 0 or ii >= h:
            continue
        wr = fr if di else 1.0 - fr
        for dj in range(2):
            jj = j0 + dj
            if 0 <= jj < w:
                acc += wr * (fc if dj else 1.0 - fc) * xk[ii, jj]
    return acc


@njit(**config.CPU_LITE)
def _sample(xk, r, c):
    """The bilinear sample of image xk[h, w] at (r, c), pixels outside the image 0."""
    h, w = xk.shape
    if r >= 0.0 and c >= 0.0 and r < h - 1 and c < w - 1:     # all four inside
        i0, j0 = int(r), int(c)
        fr, fc = r - i0, c - j0
        top = xk[i0, j0] + fc * (xk[i0, j0 + 1] - xk[i0, j0])
        bottom = xk[i0 + 1, j0] + fc * (xk[i0 + 1, j0 + 1] - xk[i0 + 1, j0])
        return top + fr * (bottom - top)
    if r <= -1.0 or c <= -1.0 or r >= h or c >= w:          # all four outside
        return 0.0
    return _edge(xk, r, c)


@njit(**config.CPU_LITE)
def _warp_image(xk, m, outk):
    h, w = xk.shape
    for i in range(h):
        r_i = m[0, 0] * i + m[0, 2]
        c_i = m[1, 0] * i + m[1, 2]
        for j in range(w):
            outk[i, j] = _sample(xk, r_i + m[0, 1] * j, c_i + m[1, 1] * j)


@njit(**config.CPU_PARALLEL)
def warp_affine(x, m, out, nthreads):
    n = x.shape[0]
    chunks = max(1, min(nthreads, n))
    for c in prange(chunks):
        for k in range(c * n // chunks, (c + 1) * n // chunks):
            _warp_image(x[k], m[k], out[k])


# ---------------------------------------------------------------------------- elastic
# Everything per image is in the images' dtype, in a per-chunk scratch. The field is flat, row i
# at i·S (S = 2·W): Δrow in lanes [0, w), Δcol in [W, W + w), W = w rounded up to 32 so that
# each pass works in groups of four 8-lane sums (independent FMA chains); the lanes past w hold
# sums nobody reads.

@njit(**config.CPU_LITE)
def _lanes(w):
    return (w + 31) // 32 * 32


@njit(**config.CPU_LITE)
def _pad_taps(taps, h, w, tp):
    """tp[p + o] = taps[r + o] for |o| <= r, 0 elsewhere (tp written, float[2p + W],
    p = max(W, h)): every offset either pass reads is inside tp."""
    r = (taps.shape[0] - 1) // 2
    p = max(_lanes(w), h)
    for k in range(tp.shape[0]):
        tp[k] = 0.0
    for o in range(-min(r, p), min(r, tp.shape[0] - 1 - p) + 1):
        tp[p + o] = taps[r + o]


@njit(**config.CPU_LITE)
def _displacements(seed, alpha, r, tp, h, w, u, t, d):
    """One image's displacement field into d (float[h·S], written), from its seed: draw
    z = splitmix64(seed, i·w + j) gives pixel (i, j) its Δrow = alpha·hi/2³¹ and Δcol =
    alpha·lo/2³¹, hi and lo z's high and low 32 bits read as signed (uniform in [−alpha,
    alpha), worked out in float64); rows, then columns, filtered by the padded taps tp
    (``_pad_taps``; r: the filter's radius). u float[2·h·w], t float[h·S]: scratch; all of
    d's dtype."""
    W = _lanes(w)
    p, S = max(W, h), 2 * W
    step = alpha * 2.0 ** -31
    zero = u.dtype.type(0)
    for k in range(h * w):
        z = splitmix64(seed, np.uint64(k))
        u[k] = np.int32(z >> np.uint64(32)) * step
        u[h * w + k] = np.int32(z) * step
    # rows: t[i, c, j] = Σ_jj tp[p + j − jj]·u[c, i, jj], for 32 lanes j at a time
    for c in range(2):
        for i in range(h):
            row = (c * h + i) * w
            for jg in range(0, W, 32):
                a0 = a1 = a2 = a3 = simd.splat(zero)
                o = p + jg
                for jj in range(w):
                    s = u[row + jj]
                    a0 = simd.fma(a0, simd.load8(tp, o - jj), s)
                    a1 = simd.fma(a1, simd.load8(tp, o + 8 - jj), s)
                    a2 = simd.fma(a2, simd.load8(tp, o + 16 - jj), s)
                    a3 = simd.fma(a3, simd.load8(tp, o + 24 - jj), s)
                q = i * S + c * W + jg
                simd.store8(t, q, a0)
                simd.store8(t, q + 8, a1)
                simd.store8(t, q + 16, a2)
                simd.store8(t, q + 24, a3)
    # columns: d[i, ·] = Σ_ii tp[p + ii − i]·t[ii, ·] over the rows within r of i
    for i in range(h):
        for jg in range(0, S, 32):
            a0 = a1 = a2 = a3 = simd.splat(zero)
            for ii in range(max(0, i - r), min(h, i + r + 1)):
                s = tp[p + ii - i]
                q = ii * S + jg
                a0 = simd.fma(a0, simd.load8(t, q), s)
                a1 = simd.fma(a1, simd.load8(t, q + 8), s)
                a2 = simd.fma(a2, simd.load8(t, q + 16), s)
                a3 = simd.fma(a3, simd.load8(t, q + 24), s)
            q = i * S + jg
            simd.store8(d, q, a0)
            simd.store8(d, q + 8, a1)
            simd.store8(d, q + 16, a2)
            simd.store8(d, q + 24, a3)


@njit(**config.CPU_LITE)
def _field_at(d, q0, h, w, S, qr, qc):
    """The bilinear value at (qr, qc), clamped to the grid (edge values extend beyond it), of
    the field held in d[q0 + i·S + j]; exactly that element at a grid point."""
    T = d.dtype.type
    qr = min(max(qr, T(0)), T(h - 1))
    qc = min(max(qc, T(0)), T(w - 1))
    i0, j0 = int(qr), int(qc)
    i1, j1 = min(i0 + 1, h - 1), min(j0 + 1, w - 1)
    fr, fc = qr - T(i0), qc - T(j0)
    top = d[q0 + i0 * S + j0] + fc * (d[q0 + i0 * S + j1] - d[q0 + i0 * S + j0])
    bottom = d[q0 + i1 * S + j0] + fc * (d[q0 + i1 * S + j1] - d[q0 + i1 * S + j0])
    return top + fr * (bottom - top)


@njit(**config.CPU_LITE)
def _pad_image(xk, xp):
    """xp (flat, written) = xk[h, w] with two rows and columns of zeros around: xk[i, j] at
    (i + 2)·(w + 4) + j + 2."""
    h, w = xk.shape
    wp = w + 4
    for q in range(xp.shape[0]):
        xp[q] = 0.0
    for i in range(h):
        for j in range(w):
            xp[(i + 2) * wp + j + 2] = xk[i, j]


@njit(**config.CPU_LITE)
def _sample_padded(xp, h, w, r, c):
    """The bilinear sample at (r, c) of the image held in xp (``_pad_image``), pixels outside
    it 0, without branches: a point clamped to [−2, h]×[−2, w] has all four neighbours in xp,
    and one clamped from beyond (−1, h)×(−1, w) has only zeros around it, as the true sample
    is 0 there. In xp's dtype."""
    T = xp.dtype.type
    wp = w + 4
    rr = min(max(r, T(-2)), T(h)) + T(2)
    cc = min(max(c, T(-2)), T(w)) + T(2)
    i0, j0 = int(rr), int(cc)
    fr, fc = rr - T(i0), cc - T(j0)
    q = i0 * wp + j0
    top = xp[q] + fc * (xp[q + 1] - xp[q])
    bottom = xp[q + wp] + fc * (xp[q + wp + 1] - xp[q + wp])
    return top + fr * (bottom - top)


@njit(**config.CPU_LITE)
def _elastic_image(xp, m, d, outk):
    """Image k's output outk[h, w] (written) from its padded input xp, maps m[2, 2, 3] and
    field d; coordinates and sums in the images' dtype."""
    h, w = outk.shape
    W = _lanes(w)
    S = 2 * W
    T = xp.dtype.type
    # a: applied to displaced points; b: to output coordinates first
    a00, a01, a02 = T(m[0, 0, 0]), T(m[0, 0, 1]), T(m[0, 0, 2])
    a10, a11, a12 = T(m[0, 1, 0]), T(m[0, 1, 1]), T(m[0, 1, 2])
    b00, b01, b02 = T(m[1, 0, 0]), T(m[1, 0, 1]), T(m[1, 0, 2])
    b10, b11, b12 = T(m[1, 1, 0]), T(m[1, 1, 1]), T(m[1, 1, 2])
    if b00 == 1 and b01 == 0 and b02 == 0 and b10 == 0 and b11 == 1 and b12 == 0:
        for i in range(h):                          # no transform after the distortion
            for j in range(w):
                pr, pc = T(i) + d[i * S + j], T(j) + d[i * S + W + j]
                outk[i, j] = _sample_padded(xp, h, w, a00 * pr + a01 * pc + a02,
                                            a10 * pr + a11 * pc + a12)
        return
    for i in range(h):
        for j in range(w):
            qr = b00 * T(i) + b01 * T(j) + b02
            qc = b10 * T(i) + b11 * T(j) + b12
            pr = qr + _field_at(d, 0, h, w, S, qr, qc)
            pc = qc + _field_at(d, W, h, w, S, qr, qc)
            outk[i, j] = _sample_padded(xp, h, w, a00 * pr + a01 * pc + a02,
                                        a10 * pr + a11 * pc + a12)


@njit(**config.CPU_PARALLEL)
def warp_elastic(x, m, seeds, alpha, taps, out, nthreads):
    n, h, w = x.shape
    W = _lanes(w)
    r = min((taps.shape[0] - 1) // 2, max(W, h))
    chunks = max(1, min(nthreads, n))
    for c in prange(chunks):
        tp = np.empty(2 * max(W, h) + W, x.dtype)       # this chunk's scratch
        u, t = np.empty(2 * h * w, x.dtype), np.empty(h * 2 * W, x.dtype)
        d, xp = np.empty(h * 2 * W, x.dtype), np.empty((h + 4) * (w + 4), x.dtype)
        _pad_taps(taps, h, w, tp)
        for k in range(c * n // chunks, (c + 1) * n // chunks):
            _displacements(seeds[k], alpha, r, tp, h, w, u, t, d)
            _pad_image(x[k], xp)
            _elastic_image(xp, m[k], d, out[k])
