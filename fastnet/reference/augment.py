"""NumPy twin of ``kernels/augment_cpu.py``: data augmentation's bilinear warps, in float64.

- ``warp_affine(x, m, out, nthreads)``: x float[n, h, w], m float64[n, 2, 3] (image k's map from
  output (row, col, 1) to input (row, col)), out float[n, h, w] written.
- ``warp_elastic(x, m, seeds, alpha, taps, out, nthreads)``: the elastic distortion; m
  float64[n, 2, 2, 3], seeds uint64[n], taps float64[2r + 1]. The same splitmix64 draws in
  uint64 arithmetic (``draws``), the smoothing as products with banded matrices
  (``displacements``).

Pixels outside the image count as 0; ``nthreads`` is ignored. Tests: ``tests/test_augment.py``.
"""

import numpy as np

GAMMA = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)


def splitmix64(seed, k):
    """Outputs k (uint64 array) of the splitmix64 streams seeded by ``seed`` (uint64,
    broadcast against k), wrapping modulo 2⁶⁴."""
    z = np.asarray(seed, np.uint64) + (np.asarray(k, np.uint64) + np.uint64(1)) * GAMMA
    z = (z ^ (z >> np.uint64(30))) * MIX1
    z = (z ^ (z >> np.uint64(27))) * MIX2
    return z ^ (z >> np.uint64(31))


def draws(seeds, alpha, h, w):
    """float64[n, 2, h, w]: image k's field before smoothing. Draw z = splitmix64(seeds[k],
    i·w + j) gives pixel (i, j) its Δrow (c = 0) alpha·hi/2³¹ and Δcol (c = 1) alpha·lo/2³¹,
    hi and lo z's high and low 32 bits read as signed int32: uniform in [−alpha, alpha)."""
    z = splitmix64(np.asarray(seeds, np.uint64)[:, None],
                   np.arange(h * w, dtype=np.uint64)[None, :])
    hi = (z >> np.uint64(32)).astype(np.uint32).view(np.int32)
    lo = (z & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(np.int32)
    return np.stack([hi, lo], axis=1).reshape(-1, 2, h, w) * (alpha * 2.0 ** -31)


def band(taps, size):
    """float64[size, size]: G[i, i'] = taps[r + i' − i] where |i' − i| <= r, else 0; G @ v
    filters v's rows index by taps with zeros beyond the ends."""
    r = (len(taps) - 1) // 2
    offset = np.arange(size)[None, :] - np.arange(size)[:, None]
    return np.where(np.abs(offset) <= r, taps[np.clip(offset + r, 0, len(taps) - 1)], 0.0)


def displacements(seeds, alpha, taps, h, w):
    """float64[n, 2, h, w]: the displacement fields (Δrow, Δcol) of ``warp_elastic``."""
    return band(taps, h) @ draws(seeds, alpha, h, w) @ band(taps, w).T


def _bilinear(x, r, c, outside=True):
    """float64[n, h, w]: image k of x float[n, hx, wx] sampled at (r[k], c[k]) bilinearly, zero
    outside (``outside``) or at the clamped point (not ``outside``: edge values extend)."""
    n, hx, wx = x.shape
    if not outside:
        r, c = np.clip(r, 0, hx - 1), np.clip(c, 0, wx - 1)
    r0, c0 = np.floor(r), np.floor(c)
    fr, fc = r - r0, c - c0
    images = np.arange(n)[:, None, None]
    acc = np.zeros(r.shape)
    for di, wr in ((0, 1.0 - fr), (1, fr)):
        for dj, wc in ((0, 1.0 - fc), (1, fc)):
            ii, jj = r0.astype(np.int64) + di, c0.astype(np.int64) + dj
            inside = (ii >= 0) & (ii < hx) & (jj >= 0) & (jj < wx)
            vals = x[images, np.clip(ii, 0, hx - 1), np.clip(jj, 0, wx - 1)]
            acc += np.where(inside, wr * wc * vals, 0.0)
    return acc


def _apply(m, r, c):
    """(row, col) = m[k]·(r, c, 1) for every image k: m float64[n, 2, 3], r, c [n or 1, h, w]."""
    return tuple(m[:, i, 0, None, None] * r + m[:, i, 1, None, None] * c +
                 m[:, i, 2, None, None] for i in range(2))


def _grid(h, w):
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64),
                             indexing="ij")
    return rows[None], cols[None]


def warp_affine(x, m, out, nthreads=1):
    n, h, w = x.shape
    out[...] = _bilinear(x, *_apply(m, *_grid(h, w)))


def warp_elastic(x, m, seeds, alpha, taps, out, nthreads=1):
    n, h, w = x.shape
    d = displacements(seeds, alpha, taps, h, w)
    qr, qc = _apply(m[:, 1], *_grid(h, w))
    pr = qr + _bilinear(d[:, 0], qr, qc, outside=False)
    pc = qc + _bilinear(d[:, 1], qr, qc, outside=False)
    out[...] = _bilinear(x, *_apply(m[:, 0], pr, pc))
