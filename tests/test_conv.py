"""Convolution family beyond the per-kernel twin checks (tests/test_twins.py): the CPU kernels'
paths (window layouts, ties, NaN, non-finite inputs, image widths, winners at the edge) against
the NumPy reference (``fastnet.reference.conv``), the reference's gradients against central
finite differences, dropout, and saturated activations.

Values are compared by the rule of tests/helpers.py against the reference run on float64
inputs. Each element's Σ|terms| is the reference itself run on absolute values (the convolution
and its gradients are linear in each operand): ``|x| ⋆ |w| + |b|`` for z (n = c_in·kh·kw + 1);
for the backward, the deltas' magnitudes |da|·σ'-magnitude routed to the winners and correlated
with |x| (dw, n = the windows summed over) or |w| (dx, n = c_out·kh·kw).
Arrays keep one layout and dtype per kernel so each kernel compiles once per dtype.
"""

import warnings

import numpy as np
import pytest

from fastnet.kernels import conv_cpu as K
from fastnet.kernels import conv_plan, conv_simd
from fastnet.kernels.config import LINEAR, RELU, SIGMOID, SOFTPLUS, TANH
from fastnet.reference import conv as R
from helpers import assert_close, assert_convpool_backward
import twin_checks as TC

F64 = np.float64
DTYPES = [np.float32, np.float64]
ACTS = [SIGMOID, TANH, RELU, SOFTPLUS, LINEAR]

def test_convpool_shapes_cover_every_backward_path():
    """The conv family's shapes (tests/twin_checks.py) keep all three backward paths under test
    if their rules move."""
    paths = set()
    for n, c_in, c_out, h, w, kh, kw, (ph, pw) in TC.CONV + TC.CONV_WIDE:
        nq = ((h - kh + 1) // ph) * ((w - kw + 1) // pw)
        if not conv_plan.sparse_backward(kw, nq, h - kh + 1, w):
            paths.add("dense")
        else:
            ch, cw = h - kh + 1, w - kw + 1
            paths.add("patches" if conv_plan.through_patches(c_in, kh, kw, ch * cw) else "direct")
    assert paths == {"dense", "direct", "patches"}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fresh", [True, False])
@pytest.mark.parametrize("nv", [1, 6, 8, 10, 20, 64])
def test_accumulate_rows_every_window_layout(nv, fresh, dtype):
    """The patch path's weighted sum of gathered rows (``accumulate_rows``) against NumPy:
    rows of fewer than eight vectors (one at a time), whole windows of eight, and a last
    window moved back over the one before (10, 20 vectors); rows repeated among the gathered
    ones, an empty range, and nothing outside ``out`` or the range written."""
    rng = np.random.default_rng(nv)
    width = 8 * nv
    rows = rng.standard_normal((9, width)).astype(dtype)
    idx = np.array([4, 0, 8, 4, 2, 7, 4], np.int32)
    coef = rng.standard_normal(len(idx)).astype(dtype)
    buf = np.full(width + 8, -3.0, dtype)
    buf[:width] = rng.standard_normal(width)
    out = buf[:width]
    start, stop = 1, 6
    c, r = coef[start:stop].astype(F64), rows[idx[start:stop]].astype(F64)
    before = 0 if fresh else out.astype(F64)
    expected = before + c @ r
    magnitude = np.abs(before) + np.abs(c) @ np.abs(r)
    conv_simd.accumulate_rows(rows, idx, coef, start, stop, out, fresh)
    assert_close(out, expected.astype(dtype), n=stop - start + 1, magnitude=magnitude,
                 name="sums")
    assert (buf[width:] == -3.0).all()
    before = out.copy()
    conv_simd.accumulate_rows(rows, idx, coef, 3, 3, out, False)      # no rows: out unchanged
    assert np.array_equal(out, before)


@pytest.mark.parametrize("dtype", DTYPES)
def test_convpool_backward_large_image_goes_direct(dtype):
    """A filter of six rows on an image whose patch matrix would pass 2^22 elements takes the
    direct sparse path (no 16 MB scratch per chunk) and agrees with the reference."""
    n, c_in, c_out, h, w, kh, kw = 1, 2, 3, 300, 300, 3, 5
    ch, cw = h - kh + 1, w - kw + 1
    assert conv_plan.sparse_backward(kw, (ch // 2) * (cw // 2), ch, w)
    assert not conv_plan.through_patches(c_in, kh, kw, ch * cw)
    assert conv_plan.through_patches(c_in, kh, kw, 64)
    x, wt, b = conv_inputs(np.random.default_rng(4), n, c_in, c_out, h, w, kh, kw, dtype)
    a, z, argmax = R.convpool_forward(x, wt, b, (2, 2), SIGMOID)
    da = upstream(np.random.default_rng(5), a.shape, dtype)
    backward_matches_reference(x, wt, z, a, argmax, da, SIGMOID, dtype)


def conv_inputs(rng, n, c_in, c_out, h, w, kh, kw, dtype):
    x = rng.standard_normal((n, c_in, h, w)).astype(dtype)
    wt = (rng.standard_normal((c_out, c_in, kh, kw)) / np.sqrt(c_in * kh * kw)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    return x, wt, b


def upstream(rng, shape, dtype):
    """An upstream gradient scaled so batch sums of its products stay O(1)."""
    terms = shape[0] * shape[2] * shape[3]
    return (rng.standard_normal(shape) / np.sqrt(terms)).astype(dtype)


def backward_matches_reference(x, w, z, a, argmax, da, act, dtype):
    """convpool_backward against the reference's (dx, dw, db); returns the reference's."""
    got = K.convpool_backward(x, w, z, a, argmax, da, act)
    assert_convpool_backward(got, x, w, z, a, argmax, da, act)
    return R.convpool_backward(x, w, z, a, argmax, da, act)


# ---------------------------------------------------------------------------- kernels vs reference
@pytest.mark.parametrize("impl", [K, R], ids=["kernel", "reference"])
def test_maxpool_ties_pick_first_in_row_major_order(impl):
    x = np.zeros((1, 1, 4, 6))
    x[0, 0, 1, 0] = x[0, 0, 1, 1] = 5.0        # window (0, 0): two maxima in its second row
    x[0, 0, 2:4, 2:4] = -1.0                   # window (1, 1): all equal
    y, argmax = impl.maxpool_forward(x, (2, 2))
    assert argmax[0, 0, 0, 0] == 1 * 6 + 0
    assert argmax[0, 0, 1, 1] == 2 * 6 + 2
    assert argmax[0, 0, 0, 2] == 0 * 6 + 4     # all-zero window: its first element
    assert y[0, 0, 0, 0] == 5.0 and y[0, 0, 1, 1] == -1.0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pool,w", [((2, 2), 6), ((2, 2), 7), ((3, 2), 6), ((2, 2), 16),
                                    ((2, 2), 21)])
def test_convpool_ties_pick_first_in_row_major_order(pool, w, dtype):
    """Every pooling path (2×2 eight windows at a time from 8 windows a row: widths 16 and
    21; 2×2 on an even width; the general scan) breaks ties like the reference. A 1×1
    identity filter makes the conv output equal to the (tied) input."""
    rng = np.random.default_rng(w)
    x = rng.integers(0, 3, (2, 1, 6, w)).astype(dtype)   # many equal values per window
    one, zero = np.ones((1, 1, 1, 1), dtype), np.zeros(1, dtype)
    a, z, argmax = K.convpool_forward(x, one, zero, pool, LINEAR)
    ea, ez, eargmax = R.convpool_forward(x, one, zero, pool, LINEAR)
    np.testing.assert_array_equal(z, ez)
    np.testing.assert_array_equal(argmax, eargmax)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [LINEAR, RELU])
@pytest.mark.parametrize("pool,w", [((2, 2), 6), ((2, 2), 7), ((3, 2), 6), ((2, 2), 16),
                                    ((2, 2), 21)])
def test_pooling_keeps_the_first_nan_of_a_window(pool, w, act, dtype):
    """A window holding a NaN pools to its first NaN (NaN ranks above every number, as the
    reference's argmax has it) on every pooling path — never dropped silently, nor by the
    activation after it (ReLU keeps NaN, as np.maximum) — and the others to their first
    maximum."""
    rng = np.random.default_rng(w + 1)
    x = (rng.integers(0, 4, (6, 1, 8, w)) - 1).astype(dtype)
    x[rng.random(x.shape) < 0.15] = np.nan
    one, zero = np.ones((1, 1, 1, 1), dtype), np.zeros(1, dtype)
    ey, eargmax = R.maxpool_forward(x, pool)
    ea, _, _ = R.convpool_forward(x, one, zero, pool, act)
    a, z, argmax = K.convpool_forward(x, one, zero, pool, act)
    y, argmax2 = K.maxpool_forward(x, pool)
    assert np.isnan(ey).any() and not np.isnan(ey).all()
    for got, arg in ((z, argmax), (y, argmax2)):
        np.testing.assert_array_equal(got, ey)    # NaN in the same places
        np.testing.assert_array_equal(arg, eargmax)
    np.testing.assert_array_equal(a, ea)


def column_zero_winners(rng, c_in, width, k, dtype):
    """One square image, two positive k×k filters and zero biases that put the winner of every
    2×2 window in its left column, and in its upper row for the first filter, its lower row for
    the second: the input falls along each row and is raised on even rows, and each filter
    weighs one row (its first, its second) above the others. The windows at the left edge then
    have their winners at every row y of the conv output that a window covers, in column 0:
    flat index y·cw."""
    rows = np.arange(width)[:, None]
    cols = np.arange(width, dtype=F64)[None, :]
    x = (-cols + 0.5 * (rows % 2 == 0))[None, None] + 0.01 * rng.random((1, c_in, width, width))
    w = 0.01 * rng.random((2, c_in, k, k))
    w[0, :, 0, :] += 1.0
    w[1, :, 1, :] += 1.0
    return x.astype(dtype), w.astype(dtype), np.zeros(2, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_convpool_backward_every_image_width(k, dtype):
    """The backward decodes each winner's row from its flat index in float32,
    y = ⌊(argmax + ½)·(1/cw)⌋: without the ½, 1/cw rounded down puts a winner in column 0 of
    row y into row y − 1 where cw is 41, 47, 55 or 61 (widths 44 to 65 for 4×4 and 5×5
    filters). So every square image width from 6 to 70 with k×k filters and 2×2 pools,
    winners in column 0 at every row (``column_zero_winners``), one call per width: one input
    map, which the sparse backward takes straight from the image (the path that decodes rows),
    and at every fifth width two maps, through the patch matrix where c_in·k > 5; the dense
    path wherever ``conv_plan.sparse_backward`` picks it (always for k = 2)."""
    paths, seen = set(), set()
    for width in list(range(6, 71)) + list(range(6, 71, 5)):
        c_in = 2 if width in seen else 1
        seen.add(width)
        rng = np.random.default_rng(width * 10 + k + c_in)
        x, w, b = column_zero_winners(rng, c_in, width, k, dtype)
        ch = width - k + 1
        if conv_plan.sparse_backward(k, (ch // 2) ** 2, ch, width):
            paths.add("patches" if conv_plan.through_patches(c_in, k, k, ch * ch) else "direct")
        a, z, argmax = R.convpool_forward(x, w, b, (2, 2), LINEAR)
        cw = ch
        assert (argmax[:, :, :, 0] % cw == 0).all()        # column 0 of the conv output
        rows = argmax[0, :, :, 0] // cw
        assert (rows[0] % 2 == 0).all() and (rows[1] % 2 == 1).all()   # both rows of a window
        da = upstream(rng, a.shape, dtype)
        got = np.empty_like(x), np.empty_like(w), np.empty_like(b)
        K.convpool_backward_into(x, w, z, a, argmax, da, LINEAR, *got, 1)   # one thread: cheap
        assert_convpool_backward(got, x, w, z, a, argmax, da, LINEAR,
                                 f" at width {width}, {c_in} input map(s)")
    assert paths == ({"direct", "patches"} if k > 2 else set()), paths


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pool", [(2, 2), (3, 2)])
@pytest.mark.parametrize("c_in", [1, 2])
def test_convpool_backward_winners_at_the_image_edge(c_in, pool, dtype):
    """Inputs rising to the bottom right and positive filters put every window's winner in
    its last row and column, so the last windows' patches end at the image's last element:
    the sparse backward's eight-lane loads and stores must stop there (masked): each image's
    arrays are read and written as that image's slice alone. One input map: straight from
    the image; two: through the patch matrix."""
    n, c_out, h, w, k = 2, 3, 10, 13, 5
    ramp = np.arange(n * c_in * h * w, dtype=np.float64).reshape(n, c_in, h, w) / (h * w)
    x = ramp.astype(dtype)
    wt = (np.random.default_rng(5).random((c_out, c_in, k, k)) + 0.1).astype(dtype)
    b = np.zeros(c_out, dtype)
    a, z, argmax = R.convpool_forward(x, wt, b, pool, LINEAR)
    ch, cw = h - k + 1, w - k + 1
    assert argmax.max() == (pool[0] * (ch // pool[0]) - 1) * cw + pool[1] * (cw // pool[1]) - 1
    da = upstream(np.random.default_rng(6), a.shape, dtype)
    edx, _, _ = backward_matches_reference(x, wt, z, a, argmax, da, LINEAR, dtype)
    # nothing is written past the last image: dx as the head of a longer buffer whose tail
    # holds -0.0, which any store or +0.0 add would turn into +0.0
    buf = np.full(edx.size + 16, -0.0, dtype)
    dx2 = buf[:edx.size].reshape(edx.shape)
    dw2, db2 = np.empty_like(wt), np.empty_like(b)
    K.convpool_backward_into(x, wt, z, a, argmax, da, LINEAR, dx2, dw2, db2, 1)
    assert_convpool_backward((dx2, dw2, db2), x, wt, z, a, argmax, da, LINEAR,
                             " into a longer buffer")
    assert np.signbit(buf[edx.size:]).all(), "written past dx"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c_in", [1, 2])
def test_convpool_backward_nonfinite_input_no_winner_covers(c_in, dtype):
    """An infinite input whose conv outputs never win a window has no path to the cost: the
    weight gradient, a sum over the winners' patches, stays finite, while the reference's
    dense correlation makes 0·∞ = NaN at the positions that lost (docs/design.md, "Max-pooling
    and NaN"). An infinite input inside winners' patches reaches dw. Both against the chain
    rule over the winners written out here. One input map: straight from the image; two:
    through the patch matrix."""
    rng = np.random.default_rng(2)
    x = rng.random((2, c_in, 12, 12)).astype(dtype)
    x[0, 0, 0, 0] = -np.inf              # the conv outputs touching it are -inf: never winners
    x[1, c_in - 1, 6, 6] = np.inf        # +inf conv outputs: they win their windows
    w = (rng.random((3, c_in, 5, 5)) + 0.1).astype(dtype)
    b = np.zeros(3, dtype)
    with np.errstate(invalid="ignore"):
        a, z, argmax = R.convpool_forward(x, w, b, (2, 2), LINEAR)
        da = upstream(rng, a.shape, dtype)
        edx, _, edb = R.convpool_backward(x, w, z, a, argmax, da, LINEAR)
    assert np.isfinite(a[0]).all() and np.isinf(a[1]).any()
    dx, dw, db = K.convpool_backward(x, w, z, a, argmax, da, LINEAR)
    cw = x.shape[3] - w.shape[3] + 1
    edw, mdw = np.zeros(w.shape), np.zeros(w.shape)
    with np.errstate(invalid="ignore"):
        for n, o, qy, qx in np.ndindex(*a.shape):            # LINEAR: dz = da at the winner
            yy, xx = divmod(int(argmax[n, o, qy, qx]), cw)
            patch = x[n, :, yy:yy + 5, xx:xx + 5].astype(F64)
            edw[o] += float(da[n, o, qy, qx]) * patch
            mdw[o] += abs(float(da[n, o, qy, qx])) * np.abs(patch)
    assert not np.isfinite(edw).all()         # the +inf reached dw
    assert_close(dw, edw.astype(dtype), n=a[:, 0].size, magnitude=mdw, name="dw")
    da64 = da.astype(F64)
    assert_close(db, edb, n=a[:, 0].size, magnitude=np.abs(da64).sum(axis=(0, 2, 3)), name="db")
    plane = R.maxpool_backward(np.abs(da64), argmax, (2, 3, cw, cw))
    mdx = R.conv2d_backward(np.abs(x.astype(F64)), np.abs(w.astype(F64)), plane)[0]
    assert_close(dx, edx, n=3 * 25, magnitude=mdx, name="dx")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c_in", [1, 2])
def test_convpool_backward_nonfinite_delta_stays_in_its_patch(c_in, dtype):
    """An infinite upstream gradient makes dx non-finite exactly where the reference's is:
    the sparse dx's padded lanes (0·δ, or a neighbouring row's sum) must not spread NaN past
    the patch — one input map: straight from the image; two: through the patch matrix."""
    x, w, b = conv_inputs(np.random.default_rng(8), 2, c_in, 3, 12, 12, 5, 5, dtype)
    a, z, argmax = R.convpool_forward(x, w, b, (2, 2), LINEAR)
    da = upstream(np.random.default_rng(9), a.shape, dtype)
    da[0, 1, 2, 3] = np.inf
    dx, _, _ = K.convpool_backward(x, w, z, a, argmax, da, LINEAR)
    with np.errstate(invalid="ignore"):
        edx, _, _ = R.convpool_backward(x, w, z, a, argmax, da, LINEAR)
    np.testing.assert_array_equal(np.isnan(dx), np.isnan(edx))
    np.testing.assert_array_equal(np.isinf(dx), np.isinf(edx))
    assert np.isfinite(dx[1]).all()


# ---------------------------------------------------------------------------- finite differences
def numerical_grad(f, arr, eps=1e-6):
    """Central differences of the scalar f() with respect to every element of arr (in place)."""
    g = np.zeros_like(arr)
    for i in np.ndindex(arr.shape):
        old = arr[i]
        arr[i] = old + eps
        up = f()
        arr[i] = old - eps
        down = f()
        arr[i] = old
        g[i] = (up - down) / (2 * eps)
    return g


# Not kernels against their twins: central differences with eps = 1e-6 in float64 are off by
# their truncation, eps²/6·|C‴| (~1e-12 for these costs, whose third derivatives are O(1)),
# and by the cost's rounding over 2·eps (|C| ~ 10, evaluated to ~1e-15 relative: ~1e-14 / 2e-6
# = 5e-9): atol 1e-8 covers both, rtol 1e-6 the truncation growing with the gradient.
FD_TOL = dict(rtol=1e-6, atol=1e-8)


def test_reference_conv2d_gradients():
    rng = np.random.default_rng(11)
    x, w, b = conv_inputs(rng, 2, 2, 3, 5, 4, 3, 2, np.float64)
    g = rng.standard_normal((2, 3, 3, 3))          # C = Σ g ⊙ z
    cost = lambda: float(np.sum(g * R.conv2d_forward(x, w, b)))  # noqa: E731
    dx, dw, db = R.conv2d_backward(x, w, g)
    assert_close(dx, numerical_grad(cost, x), **FD_TOL, name="dx")
    assert_close(dw, numerical_grad(cost, w), **FD_TOL, name="dw")
    assert_close(db, numerical_grad(cost, b), **FD_TOL, name="db")


def test_reference_maxpool_gradient():
    rng = np.random.default_rng(12)
    x = rng.permutation(2 * 2 * 7 * 5).reshape(2, 2, 7, 5) * 0.1   # distinct values: no ties
    g = rng.standard_normal((2, 2, 2, 2))
    cost = lambda: float(np.sum(g * R.maxpool_forward(x, (3, 2))[0]))  # noqa: E731
    _, argmax = R.maxpool_forward(x, (3, 2))
    assert_close(R.maxpool_backward(g, argmax, x.shape), numerical_grad(cost, x), **FD_TOL,
                 name="dx")


@pytest.mark.parametrize("act", ACTS)
def test_reference_convpool_gradients(act):
    rng = np.random.default_rng(13 + act)
    x, w, b = conv_inputs(rng, 2, 2, 3, 7, 6, 3, 2, np.float64)
    a, z, argmax = R.convpool_forward(x, w, b, (2, 2), act)
    g = rng.standard_normal(a.shape)
    cost = lambda: float(np.sum(g * R.convpool_forward(x, w, b, (2, 2), act)[0]))  # noqa: E731
    dx, dw, db = R.convpool_backward(x, w, z, a, argmax, g, act)
    assert_close(dx, numerical_grad(cost, x), **FD_TOL, name="dx")
    assert_close(dw, numerical_grad(cost, w), **FD_TOL, name="dw")
    assert_close(db, numerical_grad(cost, b), **FD_TOL, name="db")


# ---------------------------------------------------------------------------- dropout
def test_dropout_mask_statistics():
    mask = R.dropout_mask((400, 500), 0.3, np.random.default_rng(0))
    assert mask.shape == (400, 500) and mask.dtype == np.float64
    assert set(np.unique(mask)) <= {0.0, 1.0}
    assert abs(mask.mean() - 0.7) < 0.005          # σ of the mean ≈ 0.0007
    assert R.dropout_mask((3, 4), 0.0, np.random.default_rng(1)).all()
    assert not R.dropout_mask((3, 4), 1.0, np.random.default_rng(1)).any()


def test_dropout_mask_is_reproducible():
    m1 = R.dropout_mask((50, 60), 0.5, np.random.default_rng(42), np.float32)
    m2 = R.dropout_mask((50, 60), 0.5, np.random.default_rng(42), np.float32)
    m3 = R.dropout_mask((50, 60), 0.5, np.random.default_rng(43), np.float32)
    assert m1.dtype == np.float32
    np.testing.assert_array_equal(m1, m2)
    assert (m1 != m3).any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_train_and_inference(dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 2, 5, 5)).astype(dtype)
    mask = R.dropout_mask(x.shape, 0.25, rng, dtype)
    y = R.dropout_forward(x, mask)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, np.where(mask == 1, x, 0))
    np.testing.assert_array_equal(R.dropout_backward(x, mask), y)
    assert_close(R.dropout_inference(x, 0.25), (0.75 * x.astype(F64)).astype(dtype))


# ---------------------------------------------------------------------------- adversarial
@pytest.mark.parametrize("act", [SIGMOID, TANH, SOFTPLUS])
def test_convpool_saturated_activations(act):
    """Pre-activations of ±1e3 give exact saturated values and zero gradients, with no
    overflow / invalid warnings (exp underflowing to 0 is the intended result)."""
    x = np.ones((2, 1, 6, 6))
    w = np.zeros((2, 1, 3, 3))
    b = np.array([1e3, -1e3])
    da = np.ones((2, 2, 2, 2))
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        for impl in (R, K):
            a, z, argmax = impl.convpool_forward(x, w, b, (2, 2), act)
            assert np.isfinite(a).all()
            if act == SIGMOID:
                assert (a[:, 0] == 1).all() and (a[:, 1] == 0).all()
            elif act == TANH:
                assert (a[:, 0] == 1).all() and (a[:, 1] == -1).all()
            else:
                assert (a[:, 0] == 1e3).all() and (a[:, 1] == 0).all()
            dx, dw, db = impl.convpool_backward(x, w, z, a, argmax, da, act)
            for g in (dx, dw, db):
                assert np.isfinite(g).all()
            if act != SOFTPLUS:
                assert (dx == 0).all() and (dw == 0).all() and (db == 0).all()
