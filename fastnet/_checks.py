"""Argument checks shared by the API. Each raises ``TypeError``/``ValueError`` naming the
argument and the expected form, and never modifies its input."""

from __future__ import annotations

import math
import numbers

import numpy as np


INT64_MAX = 2 ** 63 - 1   # counts and sizes reach the kernels as int64


def positive_int(value, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {minimum}, got {type(value).__name__} "
                        f"{value!r}")
    if not minimum <= value <= INT64_MAX:
        raise ValueError(f"{name} must be an int in [{minimum}, 2**63 - 1], got {value}")
    return int(value)


def finite_float(value, name: str, *, positive: bool = False, nonnegative: bool = False) -> float:
    form = "a finite number" + (" > 0" if positive else " >= 0" if nonnegative else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {form}, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value) or (positive and value <= 0) or (nonnegative and value < 0):
        raise ValueError(f"{name} must be {form}, got {value}")
    return value


def as_array(x, name: str, form: str) -> np.ndarray:
    """``x`` as an ndarray; a ragged list or anything NumPy cannot make an array of raises
    TypeError naming ``name`` and the expected ``form``."""
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x)
    except (TypeError, ValueError, OverflowError) as exc:  # ragged lists and the like
        raise TypeError(f"{name} must be an array of shape {form}, got {type(x).__name__} "
                        f"that is not one ({exc})") from None


def writable(arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``arr`` as a writable C-contiguous array of ``dtype``: the kernels are compiled for
    those, so a read-only input (a memory-mapped data set) or another layout is copied once."""
    arr = np.ascontiguousarray(arr, dtype=dtype)
    return arr if arr.flags.writeable else arr.copy()


def finite_rows(arr: np.ndarray) -> np.ndarray | None:
    """None when every entry of the 2-D ``arr`` is finite, else bool[n]: which rows are. A
    sum is NaN or ±inf whenever a term is, so the row sums decide at the cost of one read
    (half of ``np.isfinite``'s); only when one is not finite (a bad entry, or finite values
    that overflow) are the rows looked at entry by entry."""
    if arr.dtype.kind not in "fc" or np.isfinite(arr.sum(axis=1)).all():
        return None
    ok = np.isfinite(arr).all(axis=1)
    return None if ok.all() else ok


def features(x, name: str, n_features: int, dtype: np.dtype, *,
             finite: bool = True) -> np.ndarray:
    """``x`` as a writable C-contiguous ``dtype[n, n_features]`` array; rejects non-numeric
    data, wrong shapes, empty data and (unless ``finite=False``: the caller checks) NaN/inf.
    A copy is made only when needed."""
    arr = as_array(x, name, f"(n, {n_features})")
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers (shape (n, {n_features})), "
                        f"got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[1] != n_features:
        raise ValueError(f"{name} must have shape (n, {n_features}), got {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: expected shape (n, {n_features}) with n >= 1")
    arr = writable(arr, dtype)
    if finite:
        check_finite(arr, name)
    return arr


def check_finite(arr: np.ndarray, name: str) -> None:
    """ValueError naming ``name`` and the first NaN/inf's row and column, if ``arr`` (2-D)
    holds one."""
    rows = finite_rows(arr)
    if rows is not None:
        i = int(np.argmin(rows))
        j = int(np.argmin(np.isfinite(arr[i])))
        raise ValueError(f"{name} contains NaN or inf (first at row {i}, column {j})")


def targets(y, name: str, n: int, n_out: int, dtype: np.dtype) -> np.ndarray:
    """``y`` as dense targets ``dtype[n, n_out]``: integer class labels ``(n,)`` in
    ``[0, n_out)`` become one-hot rows; ``(n, n_out)`` arrays are taken as they are."""
    arr = as_array(y, name, f"({n},) (labels) or ({n}, {n_out}) (targets)")
    if arr.ndim == 1:
        if arr.dtype.kind not in "iuf" or arr.dtype.kind == "f" and not (
                np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))):
            raise TypeError(f"{name} must be integer class labels of shape ({n},) or "
                            f"targets of shape ({n}, {n_out}), got dtype {arr.dtype}")
        if arr.shape[0] != n:
            raise ValueError(f"{name} has {arr.shape[0]} labels but x has {n} rows")
        out_of_range = (arr < 0) | (arr >= n_out)    # before any cast: 1e20 stays 1e20
        if out_of_range.any():
            bad = arr[out_of_range][0]
            shown = int(bad) if arr.dtype.kind in "iu" else f"{float(bad):g}"
            raise ValueError(f"{name} labels must lie in [0, {n_out}), found {shown}")
        arr = arr.astype(np.int64, copy=False)
        out = np.zeros((n, n_out), dtype=dtype)
        out[np.arange(n), arr] = 1
        return out
    if arr.ndim != 2 or arr.shape != (n, n_out):
        raise ValueError(f"{name} must have shape ({n},) (labels) or ({n}, {n_out}) "
                         f"(targets), got {arr.shape}")
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    arr = writable(arr, dtype)
    if finite_rows(arr) is not None:
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def choice(value, name: str, options) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {sorted(options)}, got {type(value).__name__}")
    if value not in options:
        raise ValueError(f"{name} must be one of {sorted(options)}, got {value!r}")
    return value
