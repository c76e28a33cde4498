"""Dense family beyond the per-kernel twin checks (tests/test_twins.py): the register-blocked
row kernels (blocks_cpu.py) on partial ranges, NaN and the sigmoid's whole range, the epochs
and inference (dense_epoch_cpu.py) against the NumPy reference, and the reference's gradients
against central finite differences.

Values are compared by the rule of tests/helpers.py, with the exact value computed here in
float64 and each element's sum length n and Σ|terms| worked out beside it (``products``); a
forward pass through layers composes the rule (``dense_stack_bounds``) and an epoch compares
against the float64 reference with ``compounded_bound``.
"""

import numpy as np
import pytest
from numba.core.errors import TypingError

from fastnet.kernels import blocks_cpu as RB
from fastnet.kernels import dense_cpu as K
from fastnet.kernels import dense_epoch_cpu as E
from fastnet.kernels.config import (CROSS_ENTROPY, LINEAR, LOG_LIKELIHOOD, QUADRATIC, RELU,
                                    SIGMOID, SOFTMAX, SOFTPLUS, TANH)
from fastnet.reference import dense as R
from helpers import (activation_bound, assert_close, call_with_watchdog, compounded_bound,
                     cost_bound, dense_reference_runs, dense_stack_bounds, prime_bound)
from twin_checks import assert_dense, assert_update, products, rand

DTYPES = [np.float32, np.float64]
HIDDEN = [SIGMOID, TANH, RELU, SOFTPLUS, LINEAR]


def one_hot(labels, n, dtype):
    return np.eye(n, dtype=dtype)[labels]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 6, 8, 11])
def test_rows_kernels_write_only_their_samples(m, dtype):
    """The forward's and the backprop's sample groups of five repeat the last sample past the
    end (computed, not stored): each sample's output equals NumPy's, and rows past m (here
    the rest of a larger buffer, as in the epochs' workspaces) keep their sentinel."""
    rng = np.random.default_rng(m)
    n_in, n_out = 37, 9
    x, w, b = rand(rng, (m, n_in), dtype), rand(rng, (n_out, n_in), dtype), rand(rng, n_out, dtype)
    dz = rand(rng, (m, n_out), dtype)
    zbuf = np.full((m + 5, n_out), -7.0, dtype)
    RB.rows_forward(x, RB.NO_ROWS, m, w, b, zbuf, 0, n_out)
    assert_dense(zbuf[:m], x, w, b)
    assert (zbuf[m:] == -7.0).all()
    dxbuf = np.full((m + 5, n_in), -7.0, dtype)
    RB.rows_backprop(dz, w, dxbuf[:m], 0, n_in)
    edx, mag = products(dz, w)
    assert_close(dxbuf[:m], edx.astype(dtype), n=n_out, magnitude=mag, name="dx")
    assert (dxbuf[m:] == -7.0).all()
    # one sample alone (its own pass over w) gives its values in a group, to rounding
    one = np.empty((1, n_out), dtype)
    RB.rows_forward(x[m - 1:], RB.NO_ROWS, 1, w, b, one, 0, n_out)
    assert_dense(one, x[m - 1:], w, b, name="z alone")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [0, 1, 5, 6, 7, 9, 12])
def test_rows_kernels_on_odd_ranges(m, dtype):
    """Threads call the backprop on column ranges and the update on row ranges that start
    and end anywhere: only the range changes, bit for bit as the whole range computes it
    (also split in two at an odd place), and every element of it matches NumPy."""
    rng = np.random.default_rng(100 + m)
    n_in, n_out = 37, 11
    x, w, b = rand(rng, (m, n_in), dtype), rand(rng, (n_out, n_in), dtype), rand(rng, n_out, dtype)
    dz = rand(rng, (m, n_out), dtype)
    # backprop on columns [3, 29), whole and as [3, 17) + [17, 29)
    k_lo, k_mid, k_hi = 3, 17, 29
    whole = np.full((m, n_in), -7.0, dtype)
    RB.rows_backprop(dz, w, whole, k_lo, k_hi)
    split = np.full((m, n_in), -7.0, dtype)
    RB.rows_backprop(dz, w, split, k_lo, k_mid)
    RB.rows_backprop(dz, w, split, k_mid, k_hi)
    np.testing.assert_array_equal(split, whole)
    assert (whole[:, :k_lo] == -7.0).all() and (whole[:, k_hi:] == -7.0).all()
    edx, mag = products(dz, w)
    assert_close(whole[:, k_lo:k_hi], edx[:, k_lo:k_hi].astype(dtype), n=n_out,
                 magnitude=mag[:, k_lo:k_hi], name="dx")
    # the update of rows [1, 10), whole and as [1, 6) + [6, 10)
    scale, decay = dtype(0.3 / max(m, 1)), dtype(0.999)
    j_lo, j_mid, j_hi = 1, 6, 10
    results = []
    for parts in (((j_lo, j_hi),), ((j_lo, j_mid), (j_mid, j_hi))):
        wk, bk = w.copy(), b.copy()
        for lo, hi in parts:
            RB.rows_update(x, RB.NO_ROWS, m, dz, wk, bk, scale, decay, lo, hi)
        results.append((wk, bk))
    (wk, bk), (ws, bs) = results
    np.testing.assert_array_equal(ws, wk)
    np.testing.assert_array_equal(bs, bk)
    outside = np.r_[0:j_lo, j_hi:n_out]
    np.testing.assert_array_equal(wk[outside], w[outside])
    np.testing.assert_array_equal(bk[outside], b[outside])
    rows = slice(j_lo, j_hi)
    assert_update(wk[rows], bk[rows], w[rows], b[rows], x, dz[:, rows], scale, decay)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [6, 7, 12])
def test_nan_in_the_last_row_stays_there(m, dtype):
    """A block past the last row repeats that row; its NaN must not reach another row's
    output (backprop: dz's last sample; update: delta's last column, the range's last row)."""
    rng = np.random.default_rng(200 + m)
    n_in, n_out = 29, 7
    x, w, b = rand(rng, (m, n_in), dtype), rand(rng, (n_out, n_in), dtype), rand(rng, n_out, dtype)
    dz = rand(rng, (m, n_out), dtype)
    dz[m - 1, 2] = np.nan
    dx = np.empty((m, n_in), dtype)
    RB.rows_backprop(dz, w, dx, 0, n_in)
    assert np.isnan(dx[m - 1]).all() and np.isfinite(dx[:m - 1]).all()
    delta = rand(rng, (m, n_out), dtype)
    delta[0, n_out - 1] = np.nan
    wk, bk = w.copy(), b.copy()
    RB.rows_update(x, RB.NO_ROWS, m, delta, wk, bk, dtype(0.1), dtype(1.0), 0, n_out)
    assert np.isnan(wk[n_out - 1]).all() and np.isnan(bk[n_out - 1])
    assert np.isfinite(wk[:n_out - 1]).all() and np.isfinite(bk[:n_out - 1]).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_relative_error_over_its_whole_range(dtype):
    """The kernels' sigmoid against 1/(1 + e^−z) in float64 NumPy (itself within ~2 ulps)
    wherever σ is a normal number, not only near 0 where test_activate's inputs lie: the
    relative error must stay within the rule's elementwise 8 ε at every |z| (it grew under
    fastmath's reassociation of the two-part ln2 in float64: 2.4e-14, 108 ε, near z = −700)."""
    lo = -706.0 if dtype == np.float64 else -86.0
    z = np.concatenate([np.random.default_rng(0).uniform(lo, 40.0, 200_000),
                        np.linspace(lo, lo + 1.0, 1001)]).astype(dtype).reshape(1, -1)
    a = np.empty_like(z)
    K.activate_flat(z, a, SIGMOID)
    z64 = z.astype(np.float64)
    expected = 1.0 / (1.0 + np.exp(-z64))
    near = np.abs(z64[0]) < 20          # the far negative end is held to the same bound
    for part in (near, ~near):
        assert_close(a[:, part], expected[:, part].astype(dtype), name="sigmoid")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("code", HIDDEN)
def test_nan_goes_through_activations_as_in_the_reference(code, dtype):
    """A NaN pre-activation stays NaN in every elementwise activation (ReLU included: a
    comparison would turn it into 0 silently), and σ'(NaN) multiplies a delta as the
    reference's does (ReLU: 0, as its (z > 0))."""
    z = np.array([[np.nan, 1.5, -2.0, 0.0, np.nan, 3.0, -0.5, 7.0, np.nan]], dtype)
    a = np.empty_like(z)
    with np.errstate(invalid="ignore"):
        K.activate(z, a, code)
        ea = R.activation(z, code)
        out = np.full_like(z, 0.5)
        K.activation_prime(z, a, code, out)
        eout = 0.5 * R.derivative(z, code)
    assert np.isnan(ea).any()
    with np.errstate(invalid="ignore"):
        z64 = z.astype(np.float64)
        a64 = R.activation(z64, code)
        ebound = activation_bound(z64, a64, code, dtype)
        dbound = 0.5 * prime_bound(z64, a64, code, dtype)
    assert_close(a, ea.astype(dtype), bound=ebound, name="a")          # NaN in the same places
    assert_close(out, eout.astype(dtype), bound=dbound, name="delta")


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_extreme_logits(dtype):
    z = np.array([[1e3, -1e3, 0.0], [0.0, 0.0, 0.0], [-1e3, -1e3, -1e3]], dtype)
    a = np.empty_like(z)
    K.activate(z, a, SOFTMAX)
    exact = np.array([[1, 0, 0], [1 / 3] * 3, [1 / 3] * 3])
    assert_close(a, exact.astype(dtype), bound=activation_bound(z, exact, SOFTMAX, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B", [10, 60])
def test_backprop_and_update_do_not_depend_on_the_thread_split(B, dtype):
    """dx's columns and w's rows are split over the threads; every element comes out the same
    whichever thread (and which part of its range: whole vectors or masked lanes; at 60
    samples the update's column tiles too) makes it."""
    rng = np.random.default_rng(3)
    n_in, n_out = 2880 + 13, 37
    x, w, b = rand(rng, (B, n_in), dtype), rand(rng, (n_out, n_in), dtype), rand(rng, n_out, dtype)
    dz = rand(rng, (B, n_out), dtype)
    results = []
    for nthreads in (1, 2, 3):
        wk, bk, dx = w.copy(), b.copy(), np.empty((B, n_in), dtype)
        K.dense_backward_sgd_par(x, wk, bk, dz, dx, True, dtype(0.01), dtype(0.999), nthreads)
        results.append((dx, wk, bk))
    for dx, wk, bk in results[1:]:
        np.testing.assert_array_equal(dx, results[0][0])
        np.testing.assert_array_equal(wk, results[0][1])
        np.testing.assert_array_equal(bk, results[0][2])


NETS = [  # sizes, activations, loss
    ([5, 4, 3], [SIGMOID, SIGMOID], QUADRATIC),
    ([6, 7, 5, 3], [TANH, RELU, SOFTMAX], LOG_LIKELIHOOD),
    ([3, 9, 2], [SOFTPLUS, SIGMOID], CROSS_ENTROPY),
    ([4, 3], [LINEAR], QUADRATIC),
    ([7, 5], [SOFTMAX], LOG_LIKELIHOOD),
    ([784, 30, 10], [SIGMOID, SIGMOID], QUADRATIC),
]


def make_net(sizes, dtype, seed):
    rng = np.random.default_rng(seed)
    layout = R.layout_for(sizes)
    params = rand(rng, R.n_params(layout), dtype, scale=0.5)
    return layout, params, rng


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes,acts,loss", NETS)
@pytest.mark.parametrize("batch_size", [1, 3, 10])
def test_train_epoch(sizes, acts, loss, batch_size, dtype):
    layout, params, rng = make_net(sizes, dtype, len(sizes) + batch_size)
    acts = np.array(acts, dtype=np.int64)
    N = 23  # not a multiple of the batch size: the last mini-batch is short
    x = rand(rng, (N, sizes[0]), dtype)
    y = one_hot(rng.integers(0, sizes[-1], N), sizes[-1], dtype)
    order = rng.permutation(N)
    exact, ref32 = dense_reference_runs(params, layout, acts, loss, x, y, [order], batch_size,
                                        0.5, 0.99)
    E.train_epoch(params, layout, acts, loss, x, y, order, batch_size, 0.5, 0.99)
    assert_close(params, exact.astype(dtype), bound=compounded_bound(ref32, exact, dtype),
                 name="params")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes,acts,loss", NETS)
@pytest.mark.parametrize("nthreads", [1, 2, 3])
def test_evaluate_and_predict(sizes, acts, loss, nthreads, dtype):
    layout, params, rng = make_net(sizes, dtype, 7)
    acts = np.array(acts, dtype=np.int64)
    x = rand(rng, (17, sizes[0]), dtype)
    y = one_hot(rng.integers(0, sizes[-1], 17), sizes[-1], dtype)
    total, correct = E.evaluate(params, layout, acts, loss, x, y, 5, nthreads)
    zs, activations, ez, ea = dense_stack_bounds(params, layout, acts, x, dtype)
    y64 = y.astype(np.float64)
    e_total, e_correct = R.evaluate(params.astype(np.float64), layout, acts, loss,
                                    x.astype(np.float64), y64, 5, nthreads)
    assert_close(np.float64(total), np.float64(e_total), name="cost",
                 bound=cost_bound(zs[-1], activations[-1], y64, loss, dtype, ez[-1], ea[-1]))
    assert correct == e_correct
    out = np.empty((17, sizes[-1]), dtype)
    E.predict(params, layout, acts, x, out, 4, nthreads)
    assert_close(out, activations[-1].astype(dtype), bound=ea[-1], name="outputs")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes,acts,loss", NETS)
@pytest.mark.parametrize("batch_size,nthreads", [(1, 2), (3, 2), (10, 3), (4, 8)])
def test_train_epoch_threaded_matches_one_thread(sizes, acts, loss, batch_size, nthreads, dtype):
    """The threaded epoch (layer-0 rows split over OS threads, two barriers per step) gives
    the same parameters as the one-thread epoch, bit for bit: each element is computed by the
    same code in the same order. nthreads = 8 leaves some threads without rows (and softmax
    on layer 0, in the one-layer nets, must still see whole rows)."""
    layout, params, rng = make_net(sizes, dtype, 11 + batch_size)
    acts = np.array(acts, dtype=np.int64)
    N = 29
    x = rand(rng, (N, sizes[0]), dtype)
    y = one_hot(rng.integers(0, sizes[-1], N), sizes[-1], dtype)
    order = rng.permutation(N)
    one = params.copy()
    E.train_epoch(one, layout, acts, loss, x, y, order, batch_size, 0.5, 0.99)
    E.train_epoch_threaded(params, layout, acts, loss, x, y, order, batch_size, 0.5, 0.99,
                           nthreads)
    assert_close(params, one, rtol=0, atol=0, name="params")


def test_epoch_threads_choice():
    """Threads only where a step's layer-0 work pays for two barriers, at most one per 16
    layer-0 rows, and never more than Numba's thread count."""
    import numba
    big, small = R.layout_for([784, 30, 10]), R.layout_for([20, 6, 3])
    assert E.epoch_threads(small, 10) == 1
    assert E.epoch_threads(big, 10) == min(numba.get_num_threads(), 2)
    assert E.epoch_threads(R.layout_for([784, 100, 10]), 10) == min(numba.get_num_threads(), 7)
    assert E.epoch_threads(R.layout_for([784, 2, 10]), 100) == 1
    numba.set_num_threads(1)
    try:
        assert E.epoch_threads(big, 10) == 1
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)


def test_threaded_epoch_error_reaches_caller():
    """A failure in the compiled epoch is raised in the caller, and no thread is left waiting
    at a barrier: a type error at dispatch (in every thread), and a bounds error in thread 0
    alone (the upper layers are its work, and layer 1's weights lie past the buffer's end)
    while the other waits for it at the step's second barrier."""
    layout = R.layout_for([784, 30, 10])
    params = np.zeros(R.n_params(layout), np.float32)
    x, y = np.zeros((20, 784), np.float32), np.zeros((20, 10), np.float32)
    acts = np.ones(2, np.int64)
    err = call_with_watchdog(lambda: E.train_epoch_threaded(
        params, layout, acts, 0, x, y, np.arange(20.0), 10, 0.5, 1.0, 2))  # float order
    assert isinstance(err, TypingError) and "getitem" in str(err), repr(err)
    upper_out = layout.copy()
    upper_out[1, 2] = params.size
    err = call_with_watchdog(lambda: E.train_epoch_threaded(
        params, upper_out, acts, 0, x, y, np.arange(20), 10, 0.5, 1.0, 2))
    assert isinstance(err, IndexError) and "rows_of" in str(err), repr(err)
    assert call_with_watchdog(lambda: E.train_epoch_threaded(
        params, layout, acts, 0, x, y, np.arange(20), 10, 0.5, 1.0, 2)) is None


# ---------------------------------------------------------------------------- reference
@pytest.mark.parametrize("sizes,acts,loss", NETS[:4])
def test_reference_gradients_finite_differences(sizes, acts, loss):
    """backward() against central differences of the summed cost, float64."""
    layout, params, rng = make_net(sizes, np.float64, 3)
    x = rng.standard_normal((4, sizes[0]))
    y = one_hot(rng.integers(0, sizes[-1], 4), sizes[-1], np.float64)
    if loss == QUADRATIC:
        y = rng.random((4, sizes[-1]))  # dense targets work too
    if RELU in acts:  # keep pre-activations away from the kink
        params += 0.05 * np.sign(params)

    def total_cost(p):
        zs, activations = R.forward_pass(p, layout, acts, x)
        return R.cost(zs[-1], activations[-1], y, loss).sum()

    zs, activations = R.forward_pass(params, layout, acts, x)
    grads = R.backward(params, layout, acts, loss, zs, activations, y)
    h = 1e-6
    numeric = np.empty_like(params)
    for i in range(params.size):
        p1, p2 = params.copy(), params.copy()
        p1[i] += h
        p2[i] -= h
        numeric[i] = (total_cost(p1) - total_cost(p2)) / (2 * h)
    # Not a kernel against its twin: the quotient is off by its truncation, h²/6·|C‴|
    # (~1e-12 here), and by the cost's float64 rounding over 2h (|C| < 10 rounded through a
    # few hundred operations: ~1e-13 / 2e-6 = 5e-8): atol 1e-7 covers both; rtol 1e-5
    # lets the truncation grow with the gradient (C‴ scales with it).
    assert_close(grads, numeric, rtol=1e-5, atol=1e-7, name="gradient")


def test_reference_sgd_step_is_book_update():
    """w ← (1 − ηλ/n)·w − (η/m)·Σ∇w, b ← b − (η/m)·Σ∇b, checked against backward()."""
    layout, params, rng = make_net([3, 4, 2], np.float64, 11)
    acts = [SIGMOID, SIGMOID]
    x, y = rng.standard_normal((5, 3)), rng.random((5, 2))
    zs, activations = R.forward_pass(params, layout, acts, x)
    grads = R.backward(params, layout, acts, QUADRATIC, zs, activations, y)
    eta, lmbda, n = 0.7, 2.0, 100
    decay = 1 - eta * lmbda / n
    params_before = params.copy()
    expected = params.copy()
    for (w, b), (gw, gb) in zip(R.unpack(expected, layout), R.unpack(grads, layout)):
        w[...] = decay * w - eta / 5 * gw
        b[...] = b - eta / 5 * gb
    R.sgd_step(params, layout, acts, QUADRATIC, x, y, eta, decay)
    before = np.abs(decay * params_before) + np.abs(eta / 5 * grads)   # two terms each
    assert_close(params, expected, n=2, magnitude=before, name="params")


def test_reference_sigmoid_no_overflow():
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s = R.sigmoid(np.array([-1e4, -50.0, 0.0, 50.0, 1e4]))
    assert s[0] == 0.0 and s[2] == 0.5 and s[-1] == 1.0


def test_rows_of_views_and_checks():
    """``rows_of``: an (m, n) view of a flat run of a C array, bounds checked, read-only kept."""
    from numba import njit

    @njit
    def rows_of(a, start, m, n):
        return K.rows_of(a, start, m, n)

    a = np.arange(24.0)
    v = rows_of(a, 2, 3, 4)
    assert v.shape == (3, 4) and v.flags.c_contiguous
    assert np.array_equal(v, a[2:14].reshape(3, 4))
    v[0, 0] = -1.0  # a view: writes reach a
    assert a[2] == -1.0
    b = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert np.array_equal(rows_of(b, 4, 2, 4), b[1:])  # 2-D taken flat
    assert rows_of(a, 24, 0, 4).shape == (0, 4)
    for start, m, n in [(21, 1, 4), (-1, 1, 2), (0, -1, 2), (0, 5, 5)]:
        with pytest.raises(IndexError, match="rows_of"):
            rows_of(a, start, m, n)

    @njit
    def write(x):
        K.rows_of(x, 0, 1, 2)[0, 0] = 1.0

    ro = np.zeros(4)
    ro.flags.writeable = False
    with pytest.raises(TypingError):
        write(ro)
