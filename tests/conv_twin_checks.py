"""The conv and pool families' checks for ``tests/twin_checks.py`` (which runs them): the exact
maths written here in float64 — the correlation one tap (i, j) at a time, the pooling one window
offset at a time — and each kernel's check against it by ``assert_close`` with the rule
(``rounding_bound``; the chained bounds of tests/helpers.py). Not a test module.
"""

import numpy as np

from fastnet.kernels.config import SIGMOID, TANH
from helpers import (activation_bound, assert_close, check_argmax, prime_magnitude,
                     rounding_bound)
from twin_checks import ELEMENTWISE, EXACT_ACT, EXACT_PRIME, F64, garbage, rand, thread_counts

def taps(x, w):
    """Valid cross-correlation (no bias) of float64 x (n, c, h, w) with w (o, c, kh, kw), one
    tap (i, j) at a time."""
    kh, kw = w.shape[2:]
    oh, ow = x.shape[2] - kh + 1, x.shape[3] - kw + 1
    z = np.zeros((x.shape[0], w.shape[0], oh, ow))
    for i in range(kh):
        for j in range(kw):
            z += np.einsum("ncyx,oc->noyx", x[:, :, i:i + oh, j:j + ow], w[:, :, i, j])
    return z


def taps_backward(x, w, dz):
    """(dx, dw, db) of ``taps`` + bias given dz, tap by tap."""
    kh, kw = w.shape[2:]
    oh, ow = dz.shape[2:]
    dx, dw = np.zeros(x.shape), np.zeros(w.shape)
    for i in range(kh):
        for j in range(kw):
            dw[:, :, i, j] = np.einsum("noyx,ncyx->oc", dz, x[:, :, i:i + oh, j:j + ow])
            dx[:, :, i:i + oh, j:j + ow] += np.einsum("noyx,oc->ncyx", dz, w[:, :, i, j])
    return dx, dw, dz.sum(axis=(0, 2, 3))


def pool_exact(x, ph, pw):
    """(window maxima, int32 flat index of the first maximum in x's plane; a NaN beats every
    number) by a loop over the window's offsets in row-major order."""
    oh, ow = x.shape[2] // ph, x.shape[3] // pw
    best = x[:, :, 0:oh * ph:ph, 0:ow * pw:pw].copy()
    rows, cols = np.indices((oh, ow))
    idx = np.broadcast_to(rows * ph * x.shape[3] + cols * pw, best.shape).copy()
    for r in range(ph):
        for q in range(pw):
            v = x[:, :, r:oh * ph:ph, q:ow * pw:pw]
            take = (v > best) | (np.isnan(v) & ~np.isnan(best))
            best = np.where(take, v, best)
            idx = np.where(take, (rows * ph + r) * x.shape[3] + cols * pw + q, idx)
    return best, idx.astype(np.int32)


def unpool(dy, argmax, shape):
    """dy scattered to the flat positions ``argmax`` of planes of ``shape``, zeros elsewhere."""
    n, c, h, w = shape
    dx = np.zeros((n * c, h * w))
    dx[np.arange(n * c)[:, None], argmax.reshape(n * c, -1)] = dy.reshape(n * c, -1)
    return dx.reshape(shape)


# ---------------------------------------------------------------------------- conv
def _conv_inputs(rng, shape, dtype):
    n, c_in, c_out, h, w, kh, kw, _ = shape
    x = rng.standard_normal((n, c_in, h, w)).astype(dtype)
    wt = (rng.standard_normal((c_out, c_in, kh, kw)) / np.sqrt(c_in * kh * kw)).astype(dtype)
    return x, wt, rng.standard_normal(c_out).astype(dtype)


def _upstream(rng, shape, dtype):
    """An upstream gradient scaled so batch sums of its products stay O(1)."""
    return (rng.standard_normal(shape) / np.sqrt(shape[0] * shape[2] * shape[3])).astype(dtype)


def _assert_backward(got, x, w, dconv, dconv_mag, terms, need_dx):
    """(dx, dw, db) of a correlation whose output gradient is ``dconv`` (float64; ``dconv_mag``
    its terms' magnitudes): dx sums c_out·kh·kw terms, dw and db ``terms``."""
    x64, w64 = x.astype(F64), w.astype(F64)
    edx, edw, edb = taps_backward(x64, w64, dconv)
    mdx, mdw, mdb = taps_backward(np.abs(x64), np.abs(w64), dconv_mag)
    dx, dw, db = got
    if need_dx:
        assert_close(dx, edx.astype(x.dtype), n=w[:, 0].size, magnitude=mdx, name="dx")
    assert_close(dw, edw.astype(x.dtype), n=terms, magnitude=mdw, name="dw")
    assert_close(db, edb.astype(x.dtype), n=terms, magnitude=mdb, name="db")


def check_conv2d_forward(f, dtype, shape, rng, small):
    x, w, b = _conv_inputs(rng, shape, dtype)
    x64, w64, b64 = (v.astype(F64) for v in (x, w, b))
    exact = taps(x64, w64) + b64[:, None, None]
    magnitude = taps(np.abs(x64), np.abs(w64)) + np.abs(b64)[:, None, None]
    assert_close(f(x, w, b), exact.astype(dtype), n=w[0].size + 1, magnitude=magnitude, name="z")


def check_conv2d_backward(f, dtype, shape, rng, small):
    x, w, _ = _conv_inputs(rng, shape, dtype)
    dz = _upstream(rng, (x.shape[0], w.shape[0], x.shape[2] - w.shape[2] + 1,
                         x.shape[3] - w.shape[3] + 1), dtype)
    dz64 = dz.astype(F64)
    for need_dx in (True, False):
        got = f(x, w, dz, need_dx)
        assert need_dx or got[0] is None, "dx returned without need_dx"
        _assert_backward(got, x, w, dz64, np.abs(dz64), dz.shape[0] * dz[0, 0].size, need_dx)


def _acts(small):
    return (SIGMOID, TANH) if small else ELEMENTWISE


def _assert_convpool_forward(got, x, w, b, pool, act):
    a, z, argmax = got
    dtype = x.dtype
    x64, w64, b64 = (v.astype(F64) for v in (x, w, b))
    conv = taps(x64, w64)
    pooled, eargmax = pool_exact(conv, *pool)
    ez = pooled + b64[:, None, None]
    ea = EXACT_ACT[act](ez)
    window_mag = pool_exact(taps(np.abs(x64), np.abs(w64)), *pool)[0]
    ezb = rounding_bound(ez, dtype, n=w[0].size + 1, magnitude=window_mag + np.abs(b64)[:, None,
                                                                                          None])
    assert_close(z, ez.astype(dtype), bound=ezb, name="z")
    assert_close(a, ea.astype(dtype), bound=activation_bound(ez, ea, act, dtype, ezb), name="a")
    conv_bound = rounding_bound(pool_exact(np.abs(conv), *pool)[0], dtype, n=w[0].size,
                                magnitude=window_mag)
    check_argmax(argmax, eargmax, conv, conv_bound.reshape(*argmax.shape[:2], -1), dtype)


def check_convpool_forward(f, dtype, shape, rng, small):
    x, w, b = _conv_inputs(rng, shape, dtype)
    for act in _acts(small):
        _assert_convpool_forward(f(x, w, b, shape[-1], act), x, w, b, shape[-1], act)


def check_convpool_forward_into(f, dtype, shape, rng, small):
    x, w, b = _conv_inputs(rng, shape, dtype)
    (ph, pw), (n, _, h, wd), (c_out, _, kh, kw) = shape[-1], x.shape, w.shape
    out_shape = (n, c_out, (h - kh + 1) // ph, (wd - kw + 1) // pw)
    for act in _acts(small):
        for nthreads in thread_counts(small):
            a, z = garbage(out_shape, dtype), garbage(out_shape, dtype)
            argmax = np.full(out_shape, -1, np.int32)
            f(x, w, b, ph, pw, act, a, z, argmax, nthreads)
            _assert_convpool_forward((a, z, argmax), x, w, b, shape[-1], act)


def _convpool_backward_case(rng, shape, dtype, act):
    """Inputs of a convpool backward (z, a, argmax: the exact forward's, so every target sees
    the same winners) and the expected routing: (x, w, z, a, argmax, da, dconv, dconv_mag)."""
    x, w, b = _conv_inputs(rng, shape, dtype)
    conv = taps(x.astype(F64), w.astype(F64))
    pooled, argmax = pool_exact(conv, *shape[-1])
    z64 = pooled + b.astype(F64)[:, None, None]
    a64 = EXACT_ACT[act](z64)
    da = _upstream(rng, z64.shape, dtype)
    da64 = da.astype(F64)
    dconv = unpool(da64 * EXACT_PRIME[act](z64), argmax, conv.shape)
    mag = unpool(np.abs(da64) * prime_magnitude(z64, a64, act), argmax, conv.shape)
    return x, w, z64.astype(dtype), a64.astype(dtype), argmax, da, dconv, mag


def check_convpool_backward(f, dtype, shape, rng, small):
    for act in _acts(small):
        x, w, z, a, argmax, da, dconv, mag = _convpool_backward_case(rng, shape, dtype, act)
        for need_dx in (True, False):
            got = f(x, w, z, a, argmax, da, act, need_dx)
            assert need_dx or got[0] is None, "dx returned without need_dx"
            _assert_backward(got, x, w, dconv, mag, da.shape[0] * da[0, 0].size, need_dx)


def check_convpool_backward_into(f, dtype, shape, rng, small):
    for act in _acts(small):
        x, w, z, a, argmax, da, dconv, mag = _convpool_backward_case(rng, shape, dtype, act)
        for nthreads in thread_counts(small):
            for need_dx in (True, False):
                dx = garbage(x.shape if need_dx else (0,) + x.shape[1:], dtype)
                dw, db = garbage(w.shape, dtype), garbage(w.shape[0], dtype)
                f(x, w, z, a, argmax, da, act, dx, dw, db, nthreads)
                _assert_backward((dx, dw, db), x, w, dconv, mag, da.shape[0] * da[0, 0].size,
                                 need_dx)


# ---------------------------------------------------------------------------- pool
def _pool_input(rng, shape, dtype):
    """Few distinct values (ties) and some NaN: the first maximum, or first NaN, must win."""
    x = (rng.integers(0, 4, shape[:4]) - 1).astype(dtype)
    x[rng.random(x.shape) < 0.1] = np.nan
    return x


def check_maxpool_forward(f, dtype, shape, rng, small):
    x = _pool_input(rng, shape, dtype)
    ey, eargmax = pool_exact(x, *shape[4:])
    y, argmax = f(x, shape[4:])
    assert_close(y, ey, rtol=0, atol=0, name="y")
    assert_close(argmax, eargmax, name="argmax")


def check_maxpool_forward_into(f, dtype, shape, rng, small):
    x = _pool_input(rng, shape, dtype)
    ey, eargmax = pool_exact(x, *shape[4:])
    y, argmax = garbage(ey.shape, dtype), np.full(ey.shape, -1, np.int32)
    f(x, *shape[4:], y, argmax)
    assert_close(y, ey, rtol=0, atol=0, name="y")
    assert_close(argmax, eargmax, name="argmax")


def _unpool_case(rng, shape, dtype):
    argmax = pool_exact(_pool_input(rng, shape, dtype), *shape[4:])[1]
    dy = rand(rng, argmax.shape, dtype)
    return dy, argmax, unpool(dy.astype(F64), argmax, shape[:4]).astype(dtype)


def check_maxpool_backward(f, dtype, shape, rng, small):
    dy, argmax, expected = _unpool_case(rng, shape, dtype)
    assert_close(f(dy, argmax, shape[:4]), expected, rtol=0, atol=0, name="dx")


def check_maxpool_backward_into(f, dtype, shape, rng, small):
    dy, argmax, expected = _unpool_case(rng, shape, dtype)
    dx = garbage(shape[:4], dtype)
    f(dy, argmax, dx)
    assert_close(dx, expected, rtol=0, atol=0, name="dx")
