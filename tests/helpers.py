"""The one assertion helper shared by fastnet's tests, and the one tolerance rule it applies.

``assert_close`` compares an array against its expected value in a fixed order — shape, then
dtype, then values — so a failure says first what kind of mismatch it is, and for values it names
the worst element (index, both values, its error and the error allowed there). The rest of this
module states the rule (``rounding_bound``), composes it over chained stages (a dense forward
pass, a cost, the convolution family), bounds several training steps (``compounded_bound``),
states the book's update independently of the code under test (``book_sgd``), and runs a
threaded call under a watchdog (``call_with_watchdog``).

The rule (``rounding_bound``), for a kernel against its NumPy twin
-----------------------------------------------------------------
A kernel working in a dtype of machine epsilon ε (2⁻²³ for float32, 2⁻⁵² for float64) computes
each element of its result as a sum of n terms tᵢ (a dot product, a convolution tap sum, a batch
sum; n = 1 for an elementwise function). The test computes the exact value in float64 from the
same inputs, and the element must satisfy

    |actual − exact| <= K·(ε·(|exact| + √n·Σ|tᵢ|) + n·η),        K = 4,

where Σ|tᵢ| (``magnitude``) is the element's sum of absolute terms, e.g. ``|x| @ |w|.T + |b|``
for a dense layer's ``z = x @ w.T + b`` (n = n_in + 1), worked out by the test alongside the
exact value. η is the dtype's smallest normal number (1.2e-38 in float32): under fastmath a
result below it may be flushed to zero, or held at the bottom of the normal range (the kernels'
exp does that), so each of the n operations may be off by about η.

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

Chained stages (``dense_stack_bounds``, ``cost_bound``). A forward pass through layers is the
rule at every layer plus the error coming in: layer l's z carries its own rounding (n = n_in + 1)
and the error of its input a carried through |w|; an activation adds its own rounding (n = 1;
softmax: n = the row's length, its magnitude grown by the exponents' terms) and passes z's error
on scaled by its largest slope (¼ for the sigmoid, 1 for the others; softmax by its Jacobian).
A cost summed from the outputs takes their errors times its slope (|a − y|) plus its own float64
rounding.

Several training steps (``compounded_bound``). Each step rounds as the rule says, and the steps
after it carry that error on, damped or amplified by the training dynamics (the data, the
learning rate, the network: there is no closed form). The test measures that effect instead: the
NumPy reference runs the same steps from the same start in float32 and in float64, and their
difference is float32 rounding carried through these dynamics. A kernel rounds as much per step,
in its own orders, so over the parameter vector its largest distance from the float64 run is of
the same size (0.5 to 1.8 times the reference's, over the dense epochs of tests/test_dense.py);
the bound is K times the reference's largest difference, scaled by ε(dtype)/ε(float32) for a
float64 kernel (errors this small propagate linearly, so they scale with ε), plus the rule's
bound on the last rounding of each element.

What the rule is not for. A kernel against its twin, one operation, random data: use the rule.
Other comparisons — central finite differences (truncation error ~h², cancellation ~ε/h), the
book's code run seed for seed against the drop-ins, two runs that must agree bit for bit — state
their own bound (``bound=``, or ``rtol=``/``atol=``) with its derivation where it is stated.
Sums of many equal terms, whose rounding errors all point the same way, are outside the random
model; no test here relies on the rule for them.
"""

from __future__ import annotations

import copy
import threading

import numpy as np

from fastnet.kernels.config import (CROSS_ENTROPY, LINEAR, QUADRATIC, RELU, SIGMOID, SOFTMAX,
                                    SOFTPLUS, TANH)
from fastnet.reference import conv as C
from fastnet.reference import dense as R

F64 = np.float64

# The rule's one constant: λ = 2K = 8 in Higham and Mary's bound (see the module docstring).
K = 4.0


def eps(dtype) -> float:
    """Machine epsilon ε of a floating dtype (the gap between 1 and the next number)."""
    return float(np.finfo(np.dtype(dtype)).eps)


def tiny(dtype) -> float:
    """The smallest normal number of a floating dtype: what a result flushed to zero loses."""
    return float(np.finfo(np.dtype(dtype)).tiny)


def rounding_bound(exact, dtype, *, n=1, magnitude=None) -> np.ndarray:
    """The rule: ``K·(ε(dtype)·(|exact| + √n·magnitude) + n·tiny(dtype))``, elementwise
    (float64).

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
    return K * (eps(dtype) * (e + np.sqrt(n) * m) + n * tiny(dtype))


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


# ---------------------------------------------------------------------------- composing the rule
# The largest slope of each elementwise activation: an error in z reaches a scaled by at most it.
SLOPE = {LINEAR: 1.0, SIGMOID: 0.25, TANH: 1.0, RELU: 1.0, SOFTPLUS: 1.0}


def softmax_bound(z, a, dtype) -> np.ndarray:
    """The rule for a row softmax a = e^(z − max z) / Σ e^(z − max z) computed in ``dtype`` from
    z (float64[B, n]) and its exact value a: each exponent z_j − max z is rounded (an absolute
    error ε·|z_j − max z|, a relative one in e_j), and the row sum has n terms, so a_j's terms
    have magnitude a_j·(1 + |z_j − max z| + Σ_k a_k·|z_k − max z|)."""
    z, a = np.asarray(z, np.float64), np.asarray(a, np.float64)
    gap = np.abs(z - z.max(axis=1, keepdims=True))
    magnitude = a * (1.0 + gap + (a * gap).sum(axis=1, keepdims=True))
    return rounding_bound(a, dtype, n=z.shape[1], magnitude=magnitude)


def activation_bound(z, a, code, dtype, ez=0.0) -> np.ndarray:
    """Bound on a computed activation: its own rounding (the rule, n = 1; softmax's above) plus
    the error ``ez`` already in z carried through the activation's slope."""
    if code == SOFTMAX:
        ez = np.broadcast_to(np.asarray(ez, np.float64), np.shape(z))
        return softmax_bound(z, a, dtype) + a * (ez + (a * ez).sum(axis=1, keepdims=True))
    return rounding_bound(a, dtype) + SLOPE[code] * ez


def prime_magnitude(z, a, code) -> np.ndarray:
    """Σ|terms| of σ'(z) as the kernels compute it (z, a: float64, exact): from the stored
    activation, sigmoid a·(1 − a) and tanh 1 − a² are two-term sums with magnitudes a·(1 + a)
    and 1 + a² (which also cover a's own rounding); softplus' σ(z) is elementwise; linear and
    ReLU are exact. Never below |σ'(z)|, so it also serves as the magnitude of a term that
    carries σ'."""
    z, a = np.asarray(z, np.float64), np.abs(np.asarray(a, np.float64))
    if code == SIGMOID:
        return a * (1 + a)
    if code == TANH:
        return 1 + a * a
    return np.abs(R.derivative(z, code))


def prime_bound(z, a, code, dtype) -> np.ndarray:
    """The rule for σ'(z) as the kernels compute it (n = 2, ``prime_magnitude``)."""
    prime = R.derivative(np.asarray(z, np.float64), code)
    return rounding_bound(prime, dtype, n=2, magnitude=prime_magnitude(z, a, code))


def output_delta_bound(z, a, y, loss, act, dtype) -> np.ndarray:
    """Bound on the output layer's delta a kernel computes from z, a, y (float64, the numbers
    it was given): a − y is a sum of two terms; for the quadratic cost it is multiplied by
    σ'(z), each factor's bound times the other factor."""
    z, a, y = (np.asarray(v, np.float64) for v in (z, a, y))
    diff = rounding_bound(a - y, dtype, n=2, magnitude=np.abs(a) + np.abs(y))
    if loss != QUADRATIC:
        return diff
    return diff * np.abs(R.derivative(z, act)) + np.abs(a - y) * prime_bound(z, a, act,
                                                                                   dtype)


def dense_stack_bounds(params, layout, acts, x, dtype):
    """The exact forward pass of a dense stack and the bounds on a kernel's, all float64:
    ``(zs, activations, ez, ea)``, lists per layer as ``R.forward`` returns them (activations[0]
    is x, exact, with ea[0] = 0). params, x: the kernel's inputs (any float dtype); dtype: the
    kernel's."""
    a, ea = np.asarray(x, np.float64), np.zeros(np.shape(x))
    zs, activations, ezs, eas = [], [a], [], [ea]
    for (w, b), code in zip(R.unpack(np.asarray(params, np.float64), layout), acts):
        z = a @ w.T + b
        ez = rounding_bound(z, dtype, n=w.shape[1] + 1,
                            magnitude=np.abs(a) @ np.abs(w).T + np.abs(b)) + ea @ np.abs(w).T
        a = R.activation(z, code)
        ea = activation_bound(z, a, code, dtype, ez)
        zs.append(z)
        activations.append(a)
        ezs.append(ez)
        eas.append(ea)
    return zs, activations, ezs, eas


def cost_bound(z, a, y, loss, dtype, ez=0.0, ea=0.0) -> float:
    """Bound on the summed cost a kernel computes from its output layer's z and a (float64[B, n],
    exact) with errors ez, ea: those errors times the cost's slope (|a − y|: quadratic through a,
    cross-entropy and log-likelihood through z), plus the rule, in the kernel's dtype (its
    inputs' precision; the CPU kernels sum in float64, which the rule then over-covers), for the
    sum of B·n terms (quadratic: ½(a − y)², of one sign; cross-entropy: softplus(z) and y·z;
    log-likelihood: y·(z − log Σ e^z), whose log carries the sum's relative error)."""
    z, a, y = (np.asarray(v, np.float64) for v in (z, a, y))
    slope = np.abs(a - y)
    carried = float(np.sum(slope * (ea if loss == QUADRATIC else ez)))
    if loss == QUADRATIC:
        terms = 0.5 * (a - y) ** 2
    elif loss == CROSS_ENTROPY:
        terms = np.abs(R.softplus(z)) + np.abs(y * z)
    else:
        zmax = z.max(axis=1, keepdims=True)
        lse = zmax + np.log(np.exp(z - zmax).sum(axis=1, keepdims=True))
        terms = np.abs(y) * (np.abs(z) + np.abs(lse) + 1.0)
    exact = R.cost(z, a, y, loss).sum()
    own = rounding_bound(exact, dtype, n=z.size, magnitude=terms.sum())
    return carried + float(own)


# ---------------------------------------------------------------------------- several steps
def compounded_bound(ref32, exact, dtype) -> np.ndarray:
    """Bound on a kernel's distance from ``exact`` after several training steps (see the module
    docstring): K times the largest difference between the NumPy reference run in float32
    (``ref32``) and in float64 (``exact``) from the same start, scaled to ``dtype``'s ε, plus
    the rule for each element's last rounding (which a spread over few elements, small by
    chance, could miss). The same measure serves any result that chains more operations than
    ``dense_stack_bounds`` follows (a whole CNN's outputs, the losses of a training history)."""
    exact = np.asarray(exact, np.float64)
    spread = float(np.max(np.abs(np.asarray(ref32, np.float64) - exact)))
    return K * spread * eps(dtype) / eps(np.float32) + rounding_bound(exact, dtype)


def dense_reference_runs(params, layout, acts, loss, x, y, orders, batch_size, lr, decay):
    """The reference's epochs of a dense stack (``R.train_epoch``, one per order in ``orders``)
    from a kernel's start and data, run in float64 — the exact result — and in float32:
    ``(exact, ref32)``, float64 arrays for ``compounded_bound``. ``decay`` is the caller's,
    ``1 − lr·λ/n`` worked out from the book's update, not taken from the code under test."""
    runs = []
    for d in (np.float64, np.float32):
        p = np.array(params, dtype=d)
        xd, yd = np.asarray(x, d), np.asarray(y, d)
        for order in orders:
            R.train_epoch(p, layout, acts, loss, xd, yd, order, batch_size, lr, decay)
        runs.append(p.astype(np.float64))
    return tuple(runs)


# ---------------------------------------------------------------------------- the book's update
def fit_orders(model, n: int, epochs: int) -> list:
    """The orders ``Model.fit(shuffle=True)`` will visit n samples in over ``epochs`` epochs,
    read before the fit: one permutation per epoch from (a copy of) the model's generator."""
    rng = copy.deepcopy(model._rng)
    return [rng.permutation(n) for _ in range(epochs)]


def weight_mask(model) -> np.ndarray:
    """bool[params.size]: True on every layer's weights ``w`` (which L2 decays), False on
    biases, found from the layers' views into the flat buffer."""
    mask = np.zeros(model.params.size, dtype=bool)
    base = model.params.__array_interface__["data"][0]
    for i in range(len(model.layers)):
        w = model.params_of(i).get("w")
        if w is not None:
            off = (w.__array_interface__["data"][0] - base) // model.params.itemsize
            mask[off:off + w.size] = True
    return mask


def book_sgd(model, x, y, orders, batch_size: int, lr: float, lmbda: float) -> None:
    """Train ``model`` in place by the book's update, stated here rather than taken from
    model.py: for each mini-batch of m samples (consecutive slices of each order),

        w ← (1 − η·λ/n)·w − (η/m)·Σ∇w,    b ← b − (η/m)·Σ∇b,    n = len(x).

    The model (device "numpy": the reference layers) supplies the gradient step alone, one
    mini-batch per ``fit`` with λ = 0; the decay of the weights is applied here."""
    n = len(x)
    decay = 1.0 - lr * lmbda / n
    weights = weight_mask(model)
    for order in orders:
        for k in range(0, n, batch_size):
            idx = order[k:k + batch_size]
            w = model.params[weights].astype(np.float64)
            model.fit(x[idx], y[idx], epochs=1, batch_size=len(idx), lr=lr, shuffle=False,
                      verbose=False, training_metrics=False)
            model.params[weights] += ((decay - 1.0) * w).astype(model.params.dtype)


def book_reference_runs(build, start, x, y, orders, batch_size, lr, lmbda):
    """``book_sgd`` from a kernel's start and data on reference models (``build(dtype)``: a
    fresh Model of that dtype on device "numpy"), in float64 — the exact result — and in
    float32: ``(exact, ref32)`` for ``compounded_bound``. x: the kernel's inputs (already of
    its dtype, so both runs see the same numbers)."""
    runs = []
    for d in ("float64", "float32"):
        m = build(d)
        m.params[...] = start
        book_sgd(m, x, y, orders, batch_size, lr, lmbda)
        runs.append(m.params.astype(np.float64))
    return tuple(runs)


def cost_difference_bound(params, layout, acts, loss, x, y, dtype, param_error) -> float:
    """Bound on |C(p') − C(params)|, the summed cost a kernel evaluates at parameters p'
    within ``param_error`` (a scalar, or one bound per parameter) of ``params`` (a dense
    stack): the cost's slope, |∂C/∂p|, times param_error summed over the parameters (to first
    order), plus the evaluation's own rounding (``dense_stack_bounds`` and ``cost_bound``)."""
    p, x64, y64 = (np.asarray(v, np.float64) for v in (params, x, y))
    zs, activations = R.forward_pass(p, layout, acts, x64)
    slope = np.abs(R.backward(p, layout, acts, loss, zs, activations, y64))
    zs, activations, ez, ea = dense_stack_bounds(p, layout, acts, x64, dtype)
    carried = float(np.sum(slope * np.asarray(param_error, np.float64)))
    return carried + cost_bound(zs[-1], activations[-1], y64, loss, dtype, ez[-1], ea[-1])


# ---------------------------------------------------------------------------- convolution
# The convolution and its gradients are linear in each operand, so each element's Σ|terms| is
# the reference itself run on absolute values.
def f64(*arrays):
    return [np.asarray(v, F64) for v in arrays]


def assert_conv(z, x, w, b, name="z"):
    """z = x ⋆ w + b by the rule (n = c_in·kh·kw + 1)."""
    x64, w64, b64 = f64(x, w, b)
    exact = C.conv2d_forward(x64, w64, b64)
    magnitude = C.conv2d_forward(np.abs(x64), np.abs(w64), np.abs(b64))
    assert_close(z, exact.astype(z.dtype), n=w[0].size + 1, magnitude=magnitude, name=name)


def assert_backward_from(got, x, w, dconv, dconv_mag, db_terms, suffix=""):
    """(dx, dw, db) of a correlation whose output gradient is ``dconv`` (float64, the conv
    plane; ``dconv_mag`` its terms' magnitudes) by the rule: dx sums c_out·kh·kw terms, dw and
    db one per position the gradient reaches (``db_terms``: all of them, or the winners)."""
    x64, w64 = f64(x, w)
    edx, edw, edb = C.conv2d_backward(x64, w64, dconv)
    mdx, mdw, mdb = C.conv2d_backward(np.abs(x64), np.abs(w64), dconv_mag)
    dx, dw, db = got
    c_out, _, kh, kw = w.shape
    if dx is not None:
        assert_close(dx, edx.astype(x.dtype), n=c_out * kh * kw, magnitude=mdx,
                     name="dx" + suffix)
    assert_close(dw, edw.astype(x.dtype), n=db_terms, magnitude=mdw, name="dw" + suffix)
    assert_close(db, edb.astype(x.dtype), n=db_terms, magnitude=mdb, name="db" + suffix)


def assert_convpool_backward(got, x, w, z, a, argmax, da, act, suffix=""):
    """A convpool backward's (dx, dw, db) by the rule: the deltas dz = da·σ'(z) (magnitude
    |da|·``prime_magnitude``) routed to the winners, then a correlation's backward."""
    z64, a64, da64 = f64(z, a, da)
    dz = da64 * R.derivative(z64, act) if act != LINEAR else da64
    mag = np.abs(da64) * prime_magnitude(z64, a64, act)
    n, c_out = da.shape[:2]
    plane = (n, c_out, x.shape[2] - w.shape[2] + 1, x.shape[3] - w.shape[3] + 1)
    with np.errstate(invalid="ignore"):
        assert_backward_from(got, x, w, C.maxpool_backward(dz, argmax, plane),
                             C.maxpool_backward(mag, argmax, plane), n * da[0, 0].size, suffix)


def check_argmax(argmax, expected, conv_ref, conv_bound, dtype):
    """Winners must agree, except where float32 rounding may reorder near-equal values: there
    the reference conv values at both winners must differ by at most what rounding moves each
    (``conv_bound``: the rule's bound on a conv output, largest of the window)."""
    if dtype == np.float64:
        np.testing.assert_array_equal(argmax, expected)
        return
    n, c = argmax.shape[:2]
    flat = conv_ref.reshape(n, c, -1)
    at_kernel = np.take_along_axis(flat, argmax.reshape(n, c, -1).astype(np.intp), 2)
    at_ref = np.take_along_axis(flat, expected.reshape(n, c, -1).astype(np.intp), 2)
    assert_close(at_kernel, at_ref, bound=2 * conv_bound, name="conv value at argmax")


def check_convpool_forward(a, z, argmax, x, w, b, pool, act):
    """A convpool forward's outputs against the reference on float64 inputs: z = the window's
    largest conv output + b by the rule (the magnitude the window's largest, so a near-tie
    decided the other way by rounding is covered), a = act(z) with z's error carried
    (``activation_bound``), the winners as ``check_argmax`` says."""
    dtype = x.dtype.type
    x64, w64, b64 = f64(x, w, b)
    ea, ez, eargmax = C.convpool_forward(x64, w64, b64, pool, act)
    conv_mag = C.conv2d_forward(np.abs(x64), np.abs(w64), np.zeros(len(b)))
    window_mag = C.maxpool_forward(conv_mag, pool)[0]
    ezb = rounding_bound(ez, dtype, n=w[0].size + 1,
                         magnitude=window_mag + np.abs(b64)[:, None, None])
    assert_close(z, ez.astype(dtype), bound=ezb, name="z")
    with np.errstate(invalid="ignore"):
        assert_close(a, ea.astype(dtype), bound=activation_bound(ez, ea, act, dtype, ezb),
                     name="a")
    assert argmax.shape == eargmax.shape
    conv_bound = rounding_bound(C.maxpool_forward(np.abs(C.conv2d_forward(
        x64, w64, np.zeros(len(b)))), pool)[0], dtype, n=w[0].size, magnitude=window_mag)
    check_argmax(argmax, eargmax, C.conv2d_forward(x64, w64, np.zeros(w.shape[0])),
                 conv_bound.reshape(argmax.shape[0], argmax.shape[1], -1), dtype)


# ---------------------------------------------------------------------------- threads
def call_with_watchdog(fn, seconds=120.0):
    """Run ``fn()`` on a watchdog thread and return the exception it raised (None if none);
    fail if it has not returned within ``seconds`` — a worker left waiting at a barrier would
    hang the call — or if a worker thread outlives it."""
    raised = []

    def run():
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test below
            raised.append(e)

    watchdog = threading.Thread(target=run, daemon=True)
    watchdog.start()
    watchdog.join(seconds)
    assert not watchdog.is_alive(), f"no return after {seconds} s: a thread is left waiting"
    workers = [t.name for t in threading.enumerate() if t.name.startswith("fastnet-worker")]
    assert not workers, f"worker threads still running: {workers}"
    return raised[0] if raised else None


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """The command line in-process: ``fastnet.__main__.main(argv)``'s exit status (argparse's
    SystemExit included), stdout and stderr."""
    from fastnet.__main__ import main
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err
