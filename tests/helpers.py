"""The one assertion helper shared by fastnet's tests.

``assert_close`` compares an array against its expected value in a fixed order — shape, then
dtype, then values — so a failure says first what kind of mismatch it is, and for values it names
the worst element (index, both values, its absolute and relative error).
"""

from __future__ import annotations

import numpy as np


def assert_close(actual, expected, *, rtol: float, atol: float, name: str = "array") -> None:
    """Assert ``|actual - expected| <= atol + rtol * |expected|`` elementwise.

    actual, expected: arrays (or scalars) of the same shape and dtype. NaNs compare equal only to
    NaNs in the same positions; infinities must match exactly.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (
        f"{name}: shape {actual.shape} != expected {expected.shape}")
    assert actual.dtype == expected.dtype, (
        f"{name}: dtype {actual.dtype} != expected {expected.dtype}")
    if actual.size == 0:
        return
    a = actual.astype(np.float64) if actual.dtype.kind != "c" else actual
    e = expected.astype(np.float64) if expected.dtype.kind != "c" else expected
    nan_a, nan_e = np.isnan(a), np.isnan(e)
    if not np.array_equal(nan_a, nan_e):
        idx = np.unravel_index(np.argmax(nan_a != nan_e), a.shape)
        raise AssertionError(f"{name}: NaN mismatch at {idx}: actual {a[idx]!r}, "
                             f"expected {e[idx]!r}")
    with np.errstate(invalid="ignore"):
        inf_bad = (np.isinf(a) | np.isinf(e)) & (a != e)
    if inf_bad.any():
        idx = np.unravel_index(np.argmax(inf_bad), a.shape)
        raise AssertionError(f"{name}: inf mismatch at {idx}: actual {a[idx]!r}, "
                             f"expected {e[idx]!r}")
    finite = np.isfinite(a) & np.isfinite(e)
    err = np.abs(np.where(finite, a, 0.0) - np.where(finite, e, 0.0))   # no inf − inf
    excess = err - (atol + rtol * np.abs(np.where(finite, e, 0.0)))
    n_bad = int(np.count_nonzero(excess > 0))
    if n_bad:
        idx = np.unravel_index(np.argmax(excess), a.shape)
        rel = err[idx] / abs(e[idx]) if e[idx] != 0 else np.inf
        raise AssertionError(
            f"{name}: {n_bad} of {a.size} elements differ beyond rtol={rtol:g}, atol={atol:g}; "
            f"worst at {tuple(int(i) for i in idx)}: actual {a[idx]!r}, expected {e[idx]!r}, "
            f"abs err {err[idx]:.3g}, rel err {rel:.3g}")
