"""Data augmentation's image warp: every output pixel sampled from the input image by bilinear
interpolation at an affine map of its coordinates, zero outside the image.

``warp_affine(x, m, out, nthreads)``: x float[n, h, w] (one channel), m float64[n, 2, 3] (image
k's map from output (row, col, 1) to input (row, col)), out float[n, h, w] written. Images split
into ``nthreads`` chunks under ``prange`` (on Numba's current thread count). Shifts, rotations and their compositions are such maps
(``fastnet/augment.py`` draws them).

Twin: ``fastnet.reference.augment.warp_affine``. Tests: ``tests/test_augment.py``.
"""

import numpy as np
from numba import njit, prange

from . import config


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
def _warp_image(xk, m, outk):
    h, w = xk.shape
    for i in range(h):
        r_i = m[0, 0] * i + m[0, 2]
        c_i = m[1, 0] * i + m[1, 2]
        for j in range(w):
            r = r_i + m[0, 1] * j
            c = c_i + m[1, 1] * j
            if r >= 0.0 and c >= 0.0 and r < h - 1 and c < w - 1:     # all four inside
                i0, j0 = int(r), int(c)
                fr, fc = r - i0, c - j0
                top = xk[i0, j0] + fc * (xk[i0, j0 + 1] - xk[i0, j0])
                bottom = xk[i0 + 1, j0] + fc * (xk[i0 + 1, j0 + 1] - xk[i0 + 1, j0])
                outk[i, j] = top + fr * (bottom - top)
            elif r <= -1.0 or c <= -1.0 or r >= h or c >= w:          # all four outside
                outk[i, j] = 0.0
            else:
                outk[i, j] = _edge(xk, r, c)


@njit(**config.CPU_PARALLEL)
def warp_affine(x, m, out, nthreads):
    n = x.shape[0]
    chunks = max(1, min(nthreads, n))
    for c in prange(chunks):
        for k in range(c * n // chunks, (c + 1) * n // chunks):
            _warp_image(x[k], m[k], out[k])
