"""NumPy twin of ``kernels/augment_cpu.py``: the bilinear affine warp of data augmentation.

``warp_affine(x, m, out, nthreads)``: x float[n, h, w], m float64[n, 2, 3] (image k's map from
output (row, col, 1) to input (row, col)), out float[n, h, w] written; pixels outside the image
count as 0. ``nthreads`` is ignored. Tests: ``tests/test_augment.py``.
"""

import numpy as np


def warp_affine(x, m, out, nthreads=1):
    n, h, w = x.shape
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64),
                             indexing="ij")
    grid = np.stack([rows, cols, np.ones_like(rows)])                 # (3, h, w)
    r = np.einsum("kj,jhw->khw", m[:, 0], grid)
    c = np.einsum("kj,jhw->khw", m[:, 1], grid)
    r0, c0 = np.floor(r), np.floor(c)
    fr, fc = r - r0, c - c0
    images = np.arange(n)[:, None, None]
    acc = np.zeros((n, h, w))
    for di, wr in ((0, 1.0 - fr), (1, fr)):
        for dj, wc in ((0, 1.0 - fc), (1, fc)):
            ii, jj = r0.astype(np.int64) + di, c0.astype(np.int64) + dj
            inside = (ii >= 0) & (ii < h) & (jj >= 0) & (jj < w)
            vals = x[images, np.clip(ii, 0, h - 1), np.clip(jj, 0, w - 1)]
            acc += np.where(inside, wr * wc * vals, 0.0)
    out[...] = acc
