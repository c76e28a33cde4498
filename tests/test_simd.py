"""fastnet.kernels.simd (eight-lane vectors) against plain NumPy: every lane count, both float
types, the masked loads and stores at an array's ends, keep's select (NaN and inf dropped),
and the bounds errors."""

import numpy as np
import pytest
from numba import njit

from fastnet.kernels import simd
from helpers import assert_close

DTYPES = [np.float32, np.float64]


@njit(cache=False)
def _roundtrip(a, i, n, out):
    """out[0:8] = simd.load(a, i, n) (all eight lanes, through add_to on zeros)."""
    simd.add_to(out, 0, 8, simd.load(a, i, n))


@njit(cache=False)
def _axpy(acc0, a, i, s, out, j, n):
    """out[j:j+n] += (acc0 + a[i:i+8]·s)[:n], via splat, load8, fma and add_to."""
    v = simd.fma(simd.splat(acc0), simd.load8(a, i), s)
    simd.add_to(out, j, n, v)


@njit(cache=False)
def _put(a, i, n, out, j):
    """out[j:j+n] = a[i:i+8][:n] through load8 and the masked store."""
    simd.store(out, j, n, simd.load8(a, i))


@njit(cache=False)
def _dot_rows(x, starts, d, kw):
    """Σ_q d[q]·x[starts[q]:starts[q] + kw], summed in one vector across a loop."""
    acc = simd.splat(x.dtype.type(0))
    for q in range(starts.shape[0]):
        acc = simd.fma(acc, simd.load(x, starts[q], kw), d[q])
    out = np.zeros(kw, x.dtype)
    simd.add_to(out, 0, kw, acc)
    return out


@njit(cache=False)
def _keep(a, n, out):
    """out[0:8] = simd.keep(a[0:8], n) through store8."""
    simd.store8(out, 0, simd.keep(simd.load8(a, 0), n))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", range(9))
def test_keep_zeroes_the_lanes_past_n_whatever_they_hold(n, dtype):
    a = np.array([1, -2, np.nan, np.inf, -np.inf, 6, np.nan, 8], dtype)
    out = np.full(8, 7, dtype)
    _keep(a, n, out)
    expected = np.zeros(8, dtype)
    expected[:n] = a[:n]
    np.testing.assert_array_equal(out, expected)


@njit(cache=False)
def _lanes_ops(a, b, x, y, s, out, out_int):
    """out[0:8] = evens(a, b), out[8:16] = odds(a, b), out[16:24] = pick_above(x, y, x, y),
    out[24:32] = ramp(s); out_int[0:8] = the ramp truncated to int32."""
    u, v = simd.load8(a, 0), simd.load8(b, 0)
    simd.store8(out, 0, simd.evens(u, v))
    simd.store8(out, 8, simd.odds(u, v))
    p, q = simd.load8(x, 0), simd.load8(y, 0)
    simd.store8(out, 16, simd.pick_above(p, q, p, q))
    simd.store8(out, 24, simd.ramp(s))
    simd.store8_int32(out_int, 0, simd.ramp(s))


@pytest.mark.parametrize("dtype", DTYPES)
def test_evens_odds_pick_above_ramp_and_int32_store(dtype):
    a, b = np.arange(8, dtype=dtype), np.arange(8, 16, dtype=dtype)
    nan = np.nan
    x = np.array([1, 2, nan, nan, 3, -np.inf, 0.0, 5], dtype)
    y = np.array([2, 1, 1, nan, nan, -np.inf, -0.0, 5], dtype)
    out, out_int = np.zeros(32, dtype), np.zeros(8, np.int32)
    _lanes_ops(a, b, x, y, dtype(-3), out, out_int)
    np.testing.assert_array_equal(out[:8], np.arange(0, 16, 2))
    np.testing.assert_array_equal(out[8:16], np.arange(1, 16, 2))
    # x wins where x > y or x is NaN and y is not; equal values and NaN against NaN keep y
    np.testing.assert_array_equal(out[16:24], [2, 2, nan, nan, nan, -np.inf, -0.0, 5])
    assert np.signbit(out[22])                    # 0.0 vs -0.0: equal, so y (-0.0) stays
    np.testing.assert_array_equal(out[24:32], np.arange(-3, 5))
    np.testing.assert_array_equal(out_int, np.arange(-3, 5))


@pytest.mark.parametrize("n", [-1, 9])
def test_keep_out_of_range_raises_index_error(n):
    with pytest.raises(IndexError, match="simd.keep"):
        _keep(np.zeros(8, np.float32), n, np.zeros(8, np.float32))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", range(9))
def test_load_masks_the_lanes_past_n(n, dtype):
    a = np.arange(1, 12, dtype=dtype)
    for i in (0, 3, a.size - n):                 # the last start reads up to the array's end
        out = np.zeros(8, dtype)
        _roundtrip(a, i, n, out)
        expected = np.zeros(8, dtype)
        expected[:n] = a[i:i + n]
        np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fma_load8_and_add_to_touch_only_n_lanes(dtype):
    rng = np.random.default_rng(0)
    a = rng.standard_normal(20).astype(dtype)
    for n in range(9):
        out = rng.standard_normal(12).astype(dtype)
        before = out.copy()
        _axpy(dtype(0.5), a, 3, dtype(-2.0), out, 4, n)
        expected = before.astype(np.float64)
        magnitude = np.abs(expected)
        terms = (0.5, a[3:3 + n].astype(np.float64) * -2.0)      # out + 0.5 + a·(−2): n = 3
        expected[4:4 + n] += terms[0] + terms[1]
        magnitude[4:4 + n] += 0.5 + np.abs(terms[1])
        assert_close(out, expected.astype(dtype), n=3, magnitude=magnitude, name="axpy")
        np.testing.assert_array_equal(out[:4], before[:4])
        np.testing.assert_array_equal(out[4 + n:], before[4 + n:])


@pytest.mark.parametrize("dtype", DTYPES)
def test_store_writes_only_n_lanes(dtype):
    a = np.arange(1, 17, dtype=dtype)
    for n in range(9):
        out = np.full(12, -1, dtype)
        _put(a, 2, n, out, 12 - n)              # n lanes ending at out's last element
        expected = np.full(12, -1, dtype)
        expected[12 - n:] = a[2:2 + n]
        np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", [1, 5, 8])
def test_sums_across_a_loop_match_numpy(kw, dtype):
    rng = np.random.default_rng(kw)
    x = rng.standard_normal(50).astype(dtype)
    starts = rng.integers(0, x.size - kw + 1, 37)
    starts[-1] = x.size - kw                    # a row ending at x's last element
    d = rng.standard_normal(37).astype(dtype)
    rows = np.array([x[s:s + kw] for s in starts], np.float64)
    expected = d.astype(np.float64) @ rows
    got = _dot_rows(x, starts, d, kw)
    assert got.dtype == dtype
    assert_close(got, expected.astype(dtype), n=37,
                 magnitude=np.abs(d.astype(np.float64)) @ np.abs(rows), name="sums")


@pytest.mark.parametrize("i,n", [(-1, 2), (0, 9), (0, -1), (7, 4)])
def test_out_of_range_lanes_raise_index_error(i, n):
    a = np.zeros(10, np.float32)
    with pytest.raises(IndexError, match="simd.load"):
        _roundtrip(a, i, n, np.zeros(8, np.float32))
    with pytest.raises(IndexError, match="simd.add_to"):
        _axpy(np.float32(0), np.zeros(16, np.float32), 0, np.float32(1), a, i, n)
    with pytest.raises(IndexError, match="simd.store"):
        _put(np.zeros(16, np.float32), 0, n, a, i)
