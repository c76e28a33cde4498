"""The one assertion helper shared by fastnet's tests, and the one tolerance rule it applies.

``assert_close`` compares an array against its expected value in a fixed order — shape, then
dtype, then values — so a failure says first what kind of mismatch it is, and for values it names
the worst element (index, both values, its error and the error allowed there).

The rule (``rounding_bound``), for a kernel against its NumPy twin
-----------------------------------------------------------------
A kernel working in a dtype of machine epsilon ε (2⁻²³ for float32, 2⁻⁵² for float64) computes
each element of its result as a sum of n terms tᵢ (a dot product, a convolution tap sum, a batch
sum; n = 1 for an elementwise function). The test computes the exact value in float64 from the
same inputs, and the element must satisfy

    |actual − exact| <= K·ε·(|exact| + √n·Σ|tᵢ|),        K = 4,

where Σ|tᵢ| (``magnitude``) is the element's sum of absolute terms, e.g. ``|x| @ |w|.T + |b|``
for a dense layer's ``z = x @ w.T + b`` (n = n_in + 1), worked out by the test alongside the
exact value.

Why this form. A sum rounded after every addition, in any order, is off by at most
(n − 1)·u·Σ|tᵢ| (u = ε/2), but that worst case needs every rounding error to point the same way.
Treating the rounding errors as independent and of mean zero — true of random test data —
Higham and Mary ("A new approach to probabilistic rounding error analysis", SIAM J. Sci.
Comput. 41(5), 2019) show that the error is at most λ·√n·u·Σ|tᵢ| (to first order in u)
with probability at least 1 − 2n·exp(−λ²(1 − u)²/2). K·ε = 2K·u, so K = 4 is λ = 8: a correct
kernel fails the √n term with probability below 2n·e⁻³² ≈ n·2.5·10⁻¹⁴ per element. The bound
does not depend on the order of the sum, so it holds alike for a sequential loop, NumPy's
pairwise sum, 8 lanes (AVX2), 16 lanes (AVX-512), several accumulators per lane, fused
multiply-adds or none (``tests/test_tolerance.py`` sums in each of these orders and checks).
The |exact| term covers what is not a sum: rounding the result to its dtype, an elementwise
function's last few ulps (``exp``, ``tanh``: K·ε·(|exact| + |exact|) is 8 ε relative with the
default magnitude), and for a float64 kernel the float64 reference's own rounding, which is of
the same size as the kernel's and which K's margin absorbs.

A magnitude that leaves out cancellation would let a kernel fail by chance: a difference a − y
is a sum of two terms (magnitude |a| + |y|), and a term that carries an earlier rounding error
(a delta through σ'(z), a convolution over a rounded activation) brings it into Σ|tᵢ| at that
term's size. Where a result chains several sums (a forward pass through layers), the test adds
each stage's ``rounding_bound``, carried through the later stages' weights, and passes the total
as ``bound=``.

What the rule is not for. A kernel against its twin, one operation, random data: use the rule.
A comparison that is not that — central finite differences (truncation error ~h²), several
training steps compounding rounding, the book's code run seed for seed against the drop-ins —
states its own bound (``bound=``, or ``rtol=``/``atol=``) with its derivation where it is
stated. Sums of many equal terms, whose rounding errors all point the same way, are outside the
random model; no test here relies on the rule for them.
"""

from __future__ import annotations

import numpy as np

# The rule's one constant: λ = 2K = 8 in Higham and Mary's bound (see the module docstring).
K = 4.0


def eps(dtype) -> float:
    """Machine epsilon ε of a floating dtype (the gap between 1 and the next number)."""
    return float(np.finfo(np.dtype(dtype)).eps)


def rounding_bound(exact, dtype, *, n=1, magnitude=None) -> np.ndarray:
    """The rule: ``K·ε(dtype)·(|exact| + √n·magnitude)``, elementwise (float64).

    exact: the exact value (float64, or the reference's result); dtype: the precision the kernel
    worked in; n: the number of terms summed into each element (an int or an array broadcast
    against exact); magnitude: each element's Σ|terms| (broadcast against exact), ``|exact|``
    when omitted (an elementwise result, or a sum of terms of one sign).
    """
    e = np.abs(np.asarray(exact, dtype=np.float64))
    m = e if magnitude is None else np.abs(np.asarray(magnitude, dtype=np.float64))
    n = np.asarray(n, dtype=np.float64)
    if (n < 1).any():
        raise ValueError(f"n must be at least 1 (the terms summed per element), got {n.min()}")
    return K * eps(dtype) * (e + np.sqrt(n) * m)


def _index(flat, shape) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(flat, shape))


def assert_close(actual, expected, *, n=1, magnitude=None, bound=None, rtol: float | None = None,
                 atol: float | None = None, name: str = "array") -> None:
    """Assert ``actual`` equals ``expected`` in shape and dtype, and in value to within a bound.

    actual, expected: arrays (or scalars) of the same shape and dtype; ``expected`` is the exact
    value rounded to that dtype. NaNs must sit in the same positions and infinities match
    exactly. The values' bound is one of:

    - the rule (default): ``rounding_bound(expected, actual.dtype, n=n, magnitude=magnitude)``,
      for a kernel against its reference (see the module docstring);
    - ``bound``: an absolute bound (scalar or broadcast array), composed from ``rounding_bound``
      over several stages or derived where the caller states it;
    - ``rtol``/``atol``: ``atol + rtol·|expected|``, a bound the caller states and derives
      (0 and 0 for bit-for-bit equality).
    """
    stated = rtol is not None or atol is not None
    if stated and (rtol is None or atol is None):
        raise TypeError("assert_close: give rtol and atol together")
    rule = magnitude is not None or not (np.isscalar(n) and n == 1)
    if sum((stated, bound is not None, rule)) > 1:
        raise TypeError("assert_close: give one of (n, magnitude), bound, or (rtol, atol)")
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (
        f"{name}: shape {actual.shape} != expected {expected.shape}")
    assert actual.dtype == expected.dtype, (
        f"{name}: dtype {actual.dtype} != expected {expected.dtype}")
    if actual.size == 0:
        return
    if actual.dtype.kind in "iub":
        bad = actual != expected
        if bad.any():
            idx = _index(np.argmax(bad), actual.shape)
            raise AssertionError(f"{name}: {int(bad.sum())} of {actual.size} elements differ; "
                                 f"first at {idx}: actual {actual[idx]}, "
                                 f"expected {expected[idx]}")
        return
    a = actual.astype(np.float64)
    e = expected.astype(np.float64)
    nan_a, nan_e = np.isnan(a), np.isnan(e)
    if not np.array_equal(nan_a, nan_e):
        idx = _index(np.argmax(nan_a != nan_e), a.shape)
        raise AssertionError(f"{name}: NaN mismatch at {idx}: actual {a[idx]}, "
                             f"expected {e[idx]}")
    with np.errstate(invalid="ignore"):
        inf_bad = (np.isinf(a) | np.isinf(e)) & (a != e)
    if inf_bad.any():
        idx = _index(np.argmax(inf_bad), a.shape)
        raise AssertionError(f"{name}: inf mismatch at {idx}: actual {a[idx]}, "
                             f"expected {e[idx]}")
    finite = np.isfinite(a) & np.isfinite(e)
    a0, e0 = np.where(finite, a, 0.0), np.where(finite, e, 0.0)   # no inf − inf
    if stated:
        allowed = atol + rtol * np.abs(e0)
        how = f"atol + rtol·|expected| (rtol={rtol:g}, atol={atol:g})"
    elif bound is not None:
        allowed = np.asarray(bound, dtype=np.float64)
        how = "the stated bound"
    else:
        with np.errstate(invalid="ignore"):
            m = None if magnitude is None else np.where(finite, magnitude, 0.0)
        allowed = rounding_bound(e0, actual.dtype, n=n, magnitude=m)
        how = f"K·ε·(|exact| + √n·Σ|terms|) (K={K:g}, ε={eps(actual.dtype):.3g})"
    allowed = np.broadcast_to(allowed, a.shape)
    err = np.abs(a0 - e0)
    over = err > allowed
    if over.any():
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(over, err / allowed, 0.0)
        idx = _index(np.argmax(np.where(over, ratio, -1.0)), a.shape)
        raise AssertionError(
            f"{name}: {int(over.sum())} of {a.size} elements differ beyond {how}; worst at "
            f"{idx}: actual {float(a[idx])!r}, expected {float(e[idx])!r}, abs err "
            f"{err[idx]:.3g}, allowed {allowed[idx]:.3g} ({ratio[idx]:.3g}× the bound)")
