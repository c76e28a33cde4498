"""Argument checks shared by the API. Each raises ``TypeError``/``ValueError`` naming the
argument and the expected form, and never modifies its input."""

from __future__ import annotations

import math
import numbers

import numpy as np


def positive_int(value, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {minimum}, got {type(value).__name__} "
                        f"{value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return int(value)


def finite_float(value, name: str, *, positive: bool = False, nonnegative: bool = False) -> float:
    form = "a finite number" + (" > 0" if positive else " >= 0" if nonnegative else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {form}, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value) or (positive and value <= 0) or (nonnegative and value < 0):
        raise ValueError(f"{name} must be {form}, got {value}")
    return value


def features(x, name: str, n_features: int, dtype: np.dtype) -> np.ndarray:
    """``x`` as a C-contiguous ``dtype[n, n_features]`` array; rejects non-numeric data, wrong
    shapes, empty data and NaN/inf (a copy is made only when needed)."""
    if isinstance(x, np.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"{name} must be an array of shape (n, {n_features}), "
                            f"got {type(x).__name__}") from exc
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers (shape (n, {n_features})), "
                        f"got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[1] != n_features:
        raise ValueError(f"{name} must have shape (n, {n_features}), got {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: expected shape (n, {n_features}) with n >= 1")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name} contains NaN or inf (first at row {bad[0]}, column {bad[1]})")
    return arr


def targets(y, name: str, n: int, n_out: int, dtype: np.dtype) -> np.ndarray:
    """``y`` as dense targets ``dtype[n, n_out]``: integer class labels ``(n,)`` in
    ``[0, n_out)`` become one-hot rows; ``(n, n_out)`` arrays are taken as they are."""
    arr = np.asarray(y)
    if arr.ndim == 1:
        if arr.dtype.kind not in "iu":
            if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)) and \
                    np.all(arr == np.round(arr)):
                arr = arr.astype(np.int64)
            else:
                raise TypeError(f"{name} must be integer class labels of shape ({n},) or "
                                f"targets of shape ({n}, {n_out}), got dtype {arr.dtype}")
        if arr.shape[0] != n:
            raise ValueError(f"{name} has {arr.shape[0]} labels but x has {n} rows")
        if arr.size and (arr.min() < 0 or arr.max() >= n_out):
            bad = arr[(arr < 0) | (arr >= n_out)][0]
            raise ValueError(f"{name} labels must lie in [0, {n_out}), found {bad}")
        out = np.zeros((n, n_out), dtype=dtype)
        out[np.arange(n), arr] = 1
        return out
    if arr.ndim != 2 or arr.shape != (n, n_out):
        raise ValueError(f"{name} must have shape ({n},) (labels) or ({n}, {n_out}) "
                         f"(targets), got {arr.shape}")
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def choice(value, name: str, options) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {sorted(options)}, got {type(value).__name__}")
    if value not in options:
        raise ValueError(f"{name} must be one of {sorted(options)}, got {value!r}")
    return value
