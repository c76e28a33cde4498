"""Checks of ``fastnet._cuda_ops.CudaOps`` (the "cuda" op set of the layer-by-layer path)
against ``NumpyOps``, shared by the simulator run (``sim_layers_cuda.py``, tiny shapes, in a
subprocess) and the real-GPU tests in ``tests/test_layers_cuda.py`` (the book's CNN shapes).

Not a test module (no ``test_`` prefix): importing it imports ``numba.cuda``.

Every check feeds the same inputs to both op sets and compares with ``assert_close`` (shape,
dtype, values). Tolerances against NumpyOps (which works in the input's dtype, or float64 for
the conv family): float64 rtol 1e-10 / atol 1e-12; float32 rtol 1e-4 / atol 1e-5. The GPU
tests pass looser float32 tolerances for sums over thousands of terms.
"""

from __future__ import annotations

import inspect

import numpy as np

from fastnet import Conv2D, Dense, Dropout, Flatten, MaxPool2D, Model
from fastnet.kernels.config import (CROSS_ENTROPY, LINEAR, LOG_LIKELIHOOD, QUADRATIC, RELU,
                                    SIGMOID, SOFTMAX, SOFTPLUS, TANH)
from fastnet.ops import get_ops
from helpers import assert_close

TOL = {np.dtype(np.float64): dict(rtol=1e-10, atol=1e-12),
       np.dtype(np.float32): dict(rtol=1e-4, atol=1e-5)}
ELEMENTWISE = (LINEAR, SIGMOID, TANH, RELU, SOFTPLUS)

REF = get_ops("numpy")


def cuda_ops():
    return get_ops("cuda")


def _tol(dtype, tol):
    return tol or TOL[np.dtype(dtype)]


def compare(got, expected, name, tol=None):
    """``got``: a CudaOps result (device array, C-contiguous); ``expected``: NumpyOps'."""
    ops = cuda_ops()
    assert getattr(got, "__cuda_ndarray__", False), f"{name}: not a device array: {type(got)}"
    assert got.is_c_contiguous(), f"{name}: not C-contiguous"
    host = ops.download(got)
    if expected.dtype.kind in "iub":
        assert host.dtype == expected.dtype, (name, host.dtype, expected.dtype)
        assert np.array_equal(host, expected), f"{name}: integer results differ"
    else:
        assert_close(host, expected, name=name, **_tol(expected.dtype, tol))


def _rand(rng, shape, dtype, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


# ---------------------------------------------------------------------------- interface
def check_method_set():
    """CudaOps has exactly NumpyOps' public methods, with the same parameter names."""
    from fastnet._cuda_ops import CudaOps
    from fastnet.ops import NumpyOps

    def methods(cls):
        return {n: list(inspect.signature(getattr(cls, n)).parameters) for n in dir(cls)
                if callable(getattr(cls, n)) and not n.startswith("_")}
    assert methods(CudaOps) == methods(NumpyOps)
    assert CudaOps.name == "cuda"


def check_data_movement(dtype, seed=0):
    ops, rng = cuda_ops(), np.random.default_rng(seed)
    for shape, idx in (((5, 2, 3, 4), [4, 0, 0, 2]), ((7, 3), [6]), ((1, 5), [0, 0, 0])):
        x = _rand(rng, shape, dtype)
        dx = ops.upload(x)
        assert ops.upload(dx) is dx
        assert np.array_equal(ops.download(dx), x)
        idx = np.array(idx, dtype=np.int64)
        compare(ops.take(dx, idx), REF.take(x, idx), f"take{shape}")
        if shape[0] > 1:   # a row slice (evaluate's chunks), a negative index
            compare(ops.take(dx[1:], np.array([-1], np.int64)), x[1:][[-1]], "take of slice")
        flat = ops.take(dx, idx).reshape(len(idx), -1)   # as Flatten does
        assert np.array_equal(ops.download(flat), x[idx].reshape(len(idx), -1))
    f_order = np.asfortranarray(_rand(rng, (3, 4), dtype))
    assert ops.upload(f_order).is_c_contiguous()


# ---------------------------------------------------------------------------- elementwise
def check_elementwise(dtype, shape, seed=0, tol=None):
    """scale, dropout_backward, activate and act_backward for every elementwise activation,
    including saturating inputs (|z| = 1e3)."""
    ops, rng = cuda_ops(), np.random.default_rng(seed)
    z = _rand(rng, shape, dtype, 3.0)
    z.reshape(-1)[:2] = (1e3, -1e3)
    da = _rand(rng, shape, dtype)
    mask = (rng.random(shape) > 0.4).astype(dtype)
    dz, dda, dmask = ops.upload(z), ops.upload(da), ops.upload(mask)
    compare(ops.scale(dz, 0.7), REF.scale(z, 0.7), "scale", tol)
    compare(ops.dropout_backward(dda, dmask), REF.dropout_backward(da, mask),
            "dropout_backward", tol)
    for code in ELEMENTWISE:
        a = REF.activate(z, code)
        got = ops.activate(dz, code)
        compare(got, a, f"activate code {code}", tol)
        compare(ops.act_backward(dz, got, code, dda), REF.act_backward(z, a, code, da),
                f"act_backward code {code}", tol)


def check_softmax(dtype, batch, n, seed=0, tol=None):
    """Row softmax, including logits near ±1e3, an all-zero row and a one-column row."""
    ops, rng = cuda_ops(), np.random.default_rng(seed)
    z = _rand(rng, (batch, n), dtype, 3.0)
    z[0, : min(n, 2)] = 1e3
    if batch > 1:
        z[1] = 0.0
    if batch > 2:
        z[2] = -1e3
    compare(ops.activate(ops.upload(z), SOFTMAX), REF.activate(z, SOFTMAX), "softmax", tol)
    one = _rand(rng, (batch, 1), dtype)
    compare(ops.activate(ops.upload(one), SOFTMAX), REF.activate(one, SOFTMAX), "softmax n=1",
            tol)


OUTPUT_CASES = [(QUADRATIC, c) for c in ELEMENTWISE] + [(CROSS_ENTROPY, SIGMOID),
                                                        (LOG_LIKELIHOOD, SOFTMAX)]


def check_output_layer(dtype, batch, n, seed=0, tol=None):
    """output_delta and loss_and_correct for every (loss, output activation) pair."""
    ops, rng = cuda_ops(), np.random.default_rng(seed)
    z = _rand(rng, (batch, n), dtype, 2.0)
    y = np.eye(n, dtype=dtype)[rng.integers(0, n, batch)]
    for loss, code in OUTPUT_CASES:
        a = REF.activate(z, code)
        dz, da, dy = ops.upload(z), ops.upload(a), ops.upload(y)
        compare(ops.output_delta(dz, da, dy, loss, code), REF.output_delta(z, a, y, loss, code),
                f"output_delta loss {loss} code {code}", tol)
        cost, hits = ops.loss_and_correct(dz, da, dy, loss)
        e_cost, e_hits = REF.loss_and_correct(z, a, y, loss)
        assert isinstance(cost, float) and isinstance(hits, int)
        assert_close(np.float64(cost), np.float64(e_cost), name=f"cost loss {loss}",
                     **_tol(dtype, tol))
        assert hits == e_hits, (loss, hits, e_hits)


# ---------------------------------------------------------------------------- dense
def check_dense(dtype, batch, n_in, n_out, seed=0, tol=None):
    ops, rng = cuda_ops(), np.random.default_rng(seed)
    x, w, b = (_rand(rng, s, dtype) for s in ((batch, n_in), (n_out, n_in), (n_out,)))
    dz = _rand(rng, (batch, n_out), dtype)
    dx_, dw_, db_, ddz = (ops.upload(a) for a in (x, w, b, dz))
    compare(ops.dense_forward(dx_, dw_, db_), REF.dense_forward(x, w, b), "dense_forward", tol)
    for need_dx in (True, False):
        got = ops.dense_backward(dx_, dw_, ddz, need_dx)
        exp = REF.dense_backward(x, w, dz, need_dx)
        assert (got[0] is None) == (not need_dx)
        for g, e, name in zip(got, exp, ("dx", "dw", "db")):
            if e is not None:
                compare(g, e, f"dense_backward {name} (need_dx={need_dx})", tol)


def check_sgd(dtype, n, seed=0):
    ops, rng = cuda_ops(), np.random.default_rng(seed)
    params, grads = _rand(rng, n, dtype), _rand(rng, n, dtype)
    decayed = rng.random(n) > 0.3
    for decay, scl in ((0.97, 0.05), (1.0, 0.3)):
        expected = params.copy()
        REF.sgd_apply(expected, grads, decayed, decay, scl)
        d_params = ops.upload(params)
        ops.sgd_apply(d_params, ops.upload(grads), ops.upload(decayed), decay, scl)
        compare(d_params, expected, f"sgd_apply decay={decay}")


# ---------------------------------------------------------------------------- conv family
def check_conv2d(dtype, x_shape, w_shape, need_dx, seed=0, tol=None):
    ops, rng = cuda_ops(), np.random.default_rng(seed)
    x, w, b = _rand(rng, x_shape, dtype), _rand(rng, w_shape, dtype), _rand(rng, w_shape[0],
                                                                           dtype)
    dx_, dw_ = ops.upload(x), ops.upload(w)
    z = REF.conv2d_forward(x, w, b)
    compare(ops.conv2d_forward(dx_, dw_, ops.upload(b)), z, "conv2d_forward", tol)
    dz = _rand(rng, z.shape, dtype)
    got = ops.conv2d_backward(dx_, dw_, ops.upload(dz), need_dx)
    exp = REF.conv2d_backward(x, w, dz, need_dx)
    assert (got[0] is None) == (not need_dx)
    for g, e, name in zip(got, exp, ("dx", "dw", "db")):
        if e is not None:
            compare(g, e, f"conv2d_backward {name}", tol)


def check_maxpool(dtype, x_shape, size, seed=0, tol=None):
    ops, rng = cuda_ops(), np.random.default_rng(seed)
    x = _rand(rng, x_shape, dtype)
    x[0, 0, 0, :2] = 5.0   # a tie inside the first window: the first maximum wins
    y, argmax = REF.maxpool_forward(x, size)
    d_y, d_arg = ops.maxpool_forward(ops.upload(x), size)
    compare(d_y, y, "maxpool_forward y", tol)
    compare(d_arg, argmax, "maxpool_forward argmax")
    dy = _rand(rng, y.shape, dtype)
    compare(ops.maxpool_backward(ops.upload(dy), d_arg, x.shape),
            REF.maxpool_backward(dy, argmax, x.shape), "maxpool_backward", tol)


def check_pooling_nan(dtype, size, seed=0):
    """A window holding a NaN pools to its first NaN, as the reference's argmax has it, in
    maxpool and in the fused ConvPool (a 1×1 identity filter), and ReLU keeps it NaN."""
    ops, rng = cuda_ops(), np.random.default_rng(seed)
    x = (rng.integers(0, 4, (2, 1, 6, 7)) - 1).astype(dtype)
    x[rng.random(x.shape) < 0.15] = np.nan
    y, argmax = REF.maxpool_forward(x, size)
    assert np.isnan(y).any() and not np.isnan(y).all()
    d_y, d_arg = ops.maxpool_forward(ops.upload(x), size)
    compare(d_y, y, "maxpool_forward y")
    compare(d_arg, argmax, "maxpool_forward argmax")
    one, zero = np.ones((1, 1, 1, 1), dtype), np.zeros(1, dtype)
    for code in (LINEAR, RELU):
        a, z, argmax = REF.convpool_forward(x, one, zero, size, code)
        d_a, d_z, d_arg = ops.convpool_forward(ops.upload(x), ops.upload(one),
                                               ops.upload(zero), size, code)
        compare(d_z, z, f"convpool_forward z, code {code}")
        compare(d_arg, argmax, f"convpool_forward argmax, code {code}")
        compare(d_a, a, f"convpool_forward a, code {code}")


def check_convpool(dtype, x_shape, w_shape, size, code, need_dx, seed=0, tol=None):
    ops, rng = cuda_ops(), np.random.default_rng(seed)
    x, w, b = _rand(rng, x_shape, dtype), _rand(rng, w_shape, dtype), _rand(rng, w_shape[0],
                                                                           dtype)
    dx_, dw_ = ops.upload(x), ops.upload(w)
    a, z, argmax = REF.convpool_forward(x, w, b, size, code)
    d_a, d_z, d_arg = ops.convpool_forward(dx_, dw_, ops.upload(b), size, code)
    compare(d_a, a, "convpool_forward a", tol)
    compare(d_z, z, "convpool_forward z", tol)
    compare(d_arg, argmax, "convpool_forward argmax")
    da = _rand(rng, a.shape, dtype)
    got = ops.convpool_backward(dx_, dw_, d_z, d_a, d_arg, ops.upload(da), code, need_dx)
    exp = REF.convpool_backward(x, w, z, a, argmax, da, code, need_dx)
    assert (got[0] is None) == (not need_dx)
    for g, e, name in zip(got, exp, ("dx", "dw", "db")):
        if e is not None:
            compare(g, e, f"convpool_backward {name}", tol)


# ---------------------------------------------------------------------------- dropout
def check_dropout(dtype, shape, p, seed=0):
    """Mask statistics (keep rate, neighbour independence), out = x ⊙ mask, repeatability
    for a seed, fresh masks per call."""
    ops = cuda_ops()
    rng_x = np.random.default_rng(seed)
    x = (rng_x.random(shape) + 0.5).astype(dtype)    # no zeros, so out == 0 iff dropped
    d_x = ops.upload(x)
    out, mask = ops.dropout_forward(d_x, p, np.random.default_rng(seed))
    m = ops.download(mask)
    assert m.dtype == np.dtype(dtype) and set(np.unique(m)) <= {0.0, 1.0}
    assert np.array_equal(ops.download(out), x * m)
    n = m.size
    keep = m.mean()
    sigma = np.sqrt(p * (1 - p) / n)
    assert abs(keep - (1 - p)) < 5 * sigma + 1e-12, (keep, 1 - p, sigma)
    flat = m.reshape(-1)
    same = np.mean(flat[1:] == flat[:-1])   # neighbours agree with prob p² + (1-p)²
    expect = p * p + (1 - p) * (1 - p)
    assert abs(same - expect) < 5 * np.sqrt(expect * (1 - expect) / (n - 1)) + 1e-12, same
    # the same seed gives the same masks; the next call from one generator a new mask
    rng_a, rng_b = np.random.default_rng(seed + 1), np.random.default_rng(seed + 1)
    first = ops.download(ops.dropout_forward(d_x, p, rng_a)[1])
    assert np.array_equal(first, ops.download(ops.dropout_forward(d_x, p, rng_b)[1]))
    second = ops.download(ops.dropout_forward(d_x, p, rng_a)[1])
    if p > 0:
        assert not np.array_equal(first, second)
    else:
        assert first.all() and second.all()


# ---------------------------------------------------------------------------- models
def _images(n, shape, seed):
    rng = np.random.default_rng(seed)
    return rng.random((n,) + shape), rng.integers(0, 3, n)


def cnn_layers(kind):
    """Tiny CNNs on (1, 6, 6) inputs. "fused": Conv2D → MaxPool2D runs as a ConvPool stage;
    "unfused": Conv2D, Dropout, MaxPool2D stages apart (conv2d/maxpool ops, relu)."""
    if kind == "fused":
        return [Conv2D(1, 2, 3, "sigmoid"), MaxPool2D(2), Flatten(), Dropout(0.0),
                Dense(8, 5, "tanh"), Dense(5, 3, "softmax")]
    return [Conv2D(1, 2, 3, "relu"), Dropout(0.0), MaxPool2D((3, 2)), Flatten(),
            Dense(4, 3, "softmax")]


def check_cnn_model(kind, *, n=7, batch_size=3, input_shape=(1, 6, 6), layers=None,
                    dtype="float64", rtol=1e-9, seed=5):
    """One epoch of a CNN on device "cuda" == the same model on "numpy" (parameters, history,
    predict, evaluate)."""
    x, y = _images(n, input_shape, seed)
    models = {dev: Model(layers() if layers else cnn_layers(kind), loss="log_likelihood",
                         input_shape=input_shape, dtype=dtype, device=dev, seed=seed)
              for dev in ("numpy", "cuda")}
    assert np.array_equal(models["numpy"].params, models["cuda"].params)
    hist = {dev: m.fit(x, y, epochs=1, batch_size=batch_size, lr=0.5, lmbda=0.2,
                       verbose=False) for dev, m in models.items()}
    tol = dict(rtol=rtol, atol=rtol * 1e-2)
    assert_close(models["cuda"].params, models["numpy"].params, name="params", **tol)
    assert_close(np.array(hist["cuda"].loss), np.array(hist["numpy"].loss), name="loss", **tol)
    assert hist["cuda"].accuracy == hist["numpy"].accuracy
    assert_close(models["cuda"].predict(x), models["numpy"].predict(x), name="predict", **tol)
    ev = {dev: m.evaluate(x, y) for dev, m in models.items()}
    assert_close(np.float64(ev["cuda"]["loss"]), np.float64(ev["numpy"]["loss"]),
                 name="evaluate", **tol)
    assert ev["cuda"]["accuracy"] == ev["numpy"]["accuracy"]


def check_dropout_inference(p=0.3, seed=2):
    """predict through a Dropout(p) layer scales by 1 − p on "cuda" as on "numpy"."""
    x, _ = _images(4, (5,), seed)
    preds = [Model([Dense(5, 4, "tanh"), Dropout(p), Dense(4, 2)], dtype="float64",
                   device=dev, seed=seed, input_shape=(5,)).predict(x)
             for dev in ("numpy", "cuda")]
    assert_close(preds[1], preds[0], rtol=1e-12, atol=1e-14, name="predict")


def check_dense_model(sizes=(4, 3, 2), n=7, batch_size=3, seed=6, dtype="float64",
                      rtol=1e-9):
    """The fused dense path (``_cuda_backend``) on "cuda" == "numpy" after one epoch."""
    rng = np.random.default_rng(seed)
    x, y = rng.random((n, sizes[0])), rng.integers(0, sizes[-1], n)
    models = {dev: Model(list(sizes), device=dev, dtype=dtype, seed=seed)
              for dev in ("numpy", "cuda")}
    for m in models.values():
        m.fit(x, y, epochs=1, batch_size=batch_size, lr=0.5, lmbda=0.2, verbose=False)
    assert_close(models["cuda"].params, models["numpy"].params, name="params", rtol=rtol,
                 atol=rtol * 1e-2)
