"""The compiled CNN epoch (``fastnet.kernels.cnn_cpu``) against the NumPy reference path
(``Model(device="numpy")``, layer by layer), on 1, 2 and 3 threads, and which models take it.

Tolerances: float64 rtol 1e-10 / atol 1e-12; float32 rtol 1e-4 / atol 1e-5 on the parameters
after a few SGD steps (the float32 kernels sum in float32, the reference in float64).
"""

import numpy as np
import pytest

from fastnet import Conv2D, Dense, Dropout, Flatten, MaxPool2D, Model
from fastnet.kernels import cnn_cpu
from helpers import assert_close

TOL = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=1e-4, atol=1e-5)}

# (c_in, h, w, c_out, k, pool, conv act, hidden, out act, loss): odd sizes, several input
# maps, a non-square kernel and pool, every loss
CASES = [
    (1, 8, 8, 4, 3, 2, "sigmoid", [7], "softmax", "log_likelihood"),
    (3, 9, 7, 5, (3, 2), (3, 2), "relu", [6, 5], "sigmoid", "cross_entropy"),
    (2, 6, 11, 3, 1, 2, "tanh", [], "sigmoid", "quadratic"),
    (1, 7, 9, 2, (2, 4), (1, 2), "softplus", [4], "linear", "quadratic"),
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
    ref = build(case, dtype, "numpy")
    ref.fit(x, y, epochs=2, batch_size=batch, lr=0.2, lmbda=0.3, verbose=False)
    cpu = build(case, dtype, "cpu")
    assert cpu._runner(None).cnn is not None
    cpu.fit(x, y, epochs=2, batch_size=batch, lr=0.2, lmbda=0.3, verbose=False)
    assert_close(cpu.params, ref.params, **TOL[dtype], name=f"params {dtype}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_thread_counts_agree(dtype):
    """1, 2 and 3 threads (more threads than samples in the last mini-batch) give the same
    epoch to rounding (the conv gradient is summed per thread)."""
    case = CASES[1]
    x, y = data(case, 26, seed=1)
    results = []
    for nthreads in (1, 2, 3):
        m = build(case, dtype, "cpu")
        r = m._runner(None)
        xs, ys = r.data(m._samples(x, "x"), np.eye(3, dtype=m.dtype)[y], training=True)
        layout, acts, cg = r.cnn
        cnn_cpu.train_epoch(r.params, layout, acts, m._loss_code, cg, xs, ys,
                            np.random.default_rng(2).permutation(26), 4, 0.3, 0.99, nthreads)
        results.append(r.params.copy())
    assert not np.array_equal(results[0], build(case, dtype, "cpu").params)   # it trained
    for got in results[1:]:
        assert_close(got, results[0], **TOL[dtype], name="params")


def test_which_models_take_the_compiled_epoch():
    case = CASES[0]
    assert build(case, "float32", "cpu")._runner(None).cnn is not None
    assert build(case, "float32", "numpy")._runner(None).cnn is None     # the reference path
    with_dropout = Model([Conv2D(1, 2, 3), MaxPool2D(2), Flatten(), Dropout(0.5),
                          Dense(18, 3, "sigmoid")], input_shape=(1, 8, 8))
    assert with_dropout._runner(None).cnn is None
    two_convs = Model([Conv2D(1, 2, 3), MaxPool2D(2), Conv2D(2, 2, 2), MaxPool2D(1), Flatten(),
                       Dense(2 * 2 * 2, 3, "sigmoid")], input_shape=(1, 8, 8))
    assert two_convs._runner(None).cnn is None
    no_pool = Model([Conv2D(1, 2, 3), Flatten(), Dense(72, 3, "sigmoid")], input_shape=(1, 8, 8))
    assert no_pool._runner(None).cnn is None
