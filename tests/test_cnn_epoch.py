"""The compiled CNN epoch (``fastnet.kernels.cnn_cpu``) against the NumPy reference path
(``Model(device="numpy")``, layer by layer), on 1, 2 and 3 threads, and which models take it.

The parameters after a few SGD steps are compared with the book's update run by the reference
in float64 (``helpers.book_sgd``: the weight decay 1 − η·λ/n is worked out there, not taken from
model.py), within ``compounded_bound`` (K × the same run's float32-vs-float64 difference).
"""

import numpy as np
import pytest

from fastnet import Conv2D, Dense, Dropout, Flatten, MaxPool2D, Model
from fastnet.kernels import cnn_cpu
from helpers import (assert_close, book_reference_runs, call_with_watchdog, compounded_bound,
                     fit_orders)

# (c_in, h, w, c_out, k, pool, conv act, hidden, out act, loss): odd sizes, several input
# maps, a non-square kernel and pool, every loss
CASES = [
    (1, 8, 8, 4, 3, 2, "sigmoid", [7], "softmax", "log_likelihood"),
    (3, 9, 7, 5, (3, 2), (3, 2), "relu", [6, 5], "sigmoid", "cross_entropy"),
    (2, 6, 11, 3, 1, 2, "tanh", [], "sigmoid", "quadratic"),
    (1, 7, 9, 2, (2, 4), (1, 2), "softplus", [4], "linear", "quadratic"),
    # pooled rows of 9 (2×2 pooling eight windows at a time), c_in·kh = 6 (the backward through
    # the patch matrix), conv rows of 19 (the float32 forward by row chunks)
    (2, 10, 21, 3, 3, 2, "relu", [5], "softmax", "log_likelihood"),
]


def build(case, dtype, device, seed=3):
    c_in, h, w, c_out, k, pool, act, hidden, out, loss = case
    conv = Conv2D(c_in, c_out, k, activation=act)
    pooling = MaxPool2D(pool)
    shape = pooling.output_shape(conv.output_shape((c_in, h, w)))
    sizes = [int(np.prod(shape))] + hidden + [3]
    dense = [Dense(a, b, "relu" if i < len(hidden) else out)
             for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))]
    return Model([conv, pooling, Flatten()] + dense, loss=loss, input_shape=(c_in, h, w),
                 dtype=dtype, device=device, seed=seed)


def data(case, n, seed=0):
    c_in, h, w = case[:3]
    rng = np.random.default_rng(seed)
    x = rng.random((n, c_in * h * w))
    x[rng.random(x.shape) < 0.3] = 0         # some exact zeros, as in images
    return x, rng.integers(0, 3, n)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
@pytest.mark.parametrize("n,batch", [(23, 5), (7, 1), (9, 16)], ids=["short-last", "batch1",
                                                                      "batch>n"])
def test_epoch_matches_reference(case, dtype, n, batch):
    x, y = data(case, n)
    cpu = build(case, dtype, "cpu")
    assert cpu._runner(None).plan is not None
    start, orders = cpu.params.copy(), fit_orders(cpu, n, 2)
    cpu.fit(x, y, epochs=2, batch_size=batch, lr=0.2, lmbda=0.3, verbose=False)
    exact, ref32 = book_reference_runs(lambda d: build(case, d, "numpy"), start,
                                       x.astype(dtype), y, orders, batch, 0.2, 0.3)
    assert_close(cpu.params, exact.astype(dtype), bound=compounded_bound(ref32, exact, dtype),
                 name=f"params {dtype}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_thread_counts_agree(dtype):
    """1, 2 and 3 threads (more threads than samples in the last mini-batch) give the same
    epoch to rounding (the conv gradient is summed per thread)."""
    case = CASES[1]
    x, y = data(case, 26, seed=1)
    order = np.random.default_rng(2).permutation(26)
    results = []
    for nthreads in (1, 2, 3):
        m = build(case, dtype, "cpu")
        r = m._runner(None)
        xs, ys = r.data(m._samples(x, "x"), np.eye(3, dtype=m.dtype)[y])
        layout, acts, cg = r.plan
        cnn_cpu.train_epoch(r.params, layout, acts, m._spec.loss_code, cg, xs, ys, order, 4, 0.3,
                            0.99, nthreads)
        results.append(r.params.copy())
    start = build(case, dtype, "cpu").params
    assert not np.array_equal(results[0], start)   # it trained
    lmbda = (1 - 0.99) * 26 / 0.3                  # the book's decay 1 − η·λ/n = 0.99
    exact, ref32 = book_reference_runs(lambda d: build(case, d, "numpy"), start,
                                       x.astype(dtype), y, [order], 4, 0.3, lmbda)
    bound = compounded_bound(ref32, exact, dtype)
    for nthreads, got in zip((1, 2, 3), results):
        assert_close(got, exact.astype(dtype), bound=bound, name=f"params, {nthreads} threads")


def _direct(case, dtype, x, y, batch, nthreads, order=None, layout=None):
    """One epoch through ``cnn_cpu.train_epoch`` on exactly ``nthreads`` threads; the
    parameters after it."""
    m = build(case, dtype, "cpu")
    r = m._runner(None)
    xs, ys = r.data(m._samples(x, "x"), np.eye(3, dtype=m.dtype)[y])
    plan_layout, acts, cg = r.plan
    order = np.arange(len(x)) if order is None else order
    cnn_cpu.train_epoch(r.params, plan_layout if layout is None else layout, acts,
                        m._spec.loss_code, cg, xs, ys, order, batch, 0.2, 0.98, nthreads)
    return r.params.copy()


@pytest.mark.parametrize("nthreads", [2, 3, 4])
@pytest.mark.parametrize("case", CASES[:2], ids=["case0", "case1"])
def test_threads_match_reference(case, nthreads):
    """Explicit thread counts (the fit path picks its own), including more threads than the
    samples of a mini-batch (batch 2) and a short last mini-batch."""
    x, y = data(case, 13, seed=4)
    start = build(case, "float64", "cpu").params
    lmbda = (1 - 0.98) * len(x) / 0.2                  # the book's decay 1 − η·λ/n = 0.98
    for batch in (5, 2):
        exact, ref32 = book_reference_runs(lambda d: build(case, d, "numpy"), start, x, y,
                                           [np.arange(len(x))], batch, 0.2, lmbda)
        got = _direct(case, "float64", x, y, batch, nthreads)
        assert_close(got, exact, bound=compounded_bound(ref32, exact, np.float64),
                     name=f"{nthreads} threads, batch {batch}")


def test_same_threads_same_bits():
    """Two runs on the same thread count are bit-identical (each sum has one order)."""
    case = CASES[0]
    x, y = data(case, 40, seed=5)
    assert np.array_equal(_direct(case, "float32", x, y, 10, 2),
                          _direct(case, "float32", x, y, 10, 2))


def test_worker_error_reaches_the_caller():
    """A bad layout (a dense layer's weights past the end of the buffer) fails in the
    workers' bounds checks; the error is raised here and no thread is left running."""
    case = CASES[0]
    x, y = data(case, 10)
    m = build(case, "float64", "cpu")
    layout = m._runner(None).plan[0].copy()
    layout[-1, 2] = m.params.size
    for nthreads in (1, 2):
        err = call_with_watchdog(lambda: _direct(case, "float64", x, y, 5, nthreads,
                                                 layout=layout))
        assert isinstance(err, IndexError), repr(err)


def test_thread_choice():
    case = CASES[0]
    layout, _, cg = build(case, "float32", "cpu")._runner(None).plan
    assert cnn_cpu.epoch_threads(layout, cg, 10, 4) == 1          # a tiny net: one thread
    book = Model([Conv2D(1, 20, 5, activation="sigmoid"), MaxPool2D(2), Flatten(),
                  Dense(2880, 100), Dense(100, 10, "softmax")], loss="log_likelihood",
                 input_shape=(1, 28, 28))
    layout, _, cg = book._runner(None).plan
    assert cnn_cpu.epoch_threads(layout, cg, 10, 2) == 2
    assert cnn_cpu.epoch_threads(layout, cg, 3, 8) == 3          # one per sample at most
    assert cnn_cpu.epoch_threads(layout, cg, 10, 1) == 1


def test_which_models_take_the_compiled_epoch():
    case = CASES[0]
    assert build(case, "float32", "cpu")._runner(None).plan is not None
    reference = build(case, "float32", "numpy")._runner(None)
    assert getattr(reference, "plan", None) is None                   # the reference path
    with_dropout = Model([Conv2D(1, 2, 3), MaxPool2D(2), Flatten(), Dropout(0.5),
                          Dense(18, 3, "sigmoid")], input_shape=(1, 8, 8))
    assert getattr(with_dropout._runner(None), "plan", None) is None
    two_convs = Model([Conv2D(1, 2, 3), MaxPool2D(2), Conv2D(2, 2, 2), MaxPool2D(1), Flatten(),
                       Dense(2 * 2 * 2, 3, "sigmoid")], input_shape=(1, 8, 8))
    assert getattr(two_convs._runner(None), "plan", None) is None
    no_pool = Model([Conv2D(1, 2, 3), Flatten(), Dense(72, 3, "sigmoid")], input_shape=(1, 8, 8))
    assert getattr(no_pool._runner(None), "plan", None) is None
