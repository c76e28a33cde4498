"""Checks of ``fastnet.devices.cuda.CudaOps`` (the "cuda" op set of the layer-by-layer path)
against ``NumpyOps``, shared by the simulator run (``sim_layers_cuda.py``, tiny shapes, in a
subprocess) and the real-GPU tests in ``tests/test_layers_cuda.py`` (the book's CNN shapes).

Not a test module (no ``test_`` prefix): importing it imports ``numba.cuda``.

Every check feeds the same inputs to both op sets and compares with ``assert_close`` (shape,
dtype, values) by the rule of tests/helpers.py: the exact value is NumpyOps' result on the
inputs in float64, and each sum's Σ|terms| NumpyOps' result on their absolute values where the
operation is linear (dense and conv layers), so the same bound holds for the simulator's tiny
shapes and the GPU's sums over thousands of terms. Copies, routing and pooling must match bit
for bit. Whole fits compare with the book's update (``helpers.book_sgd``) within
``compounded_bound``.
"""

from __future__ import annotations

import inspect

import numpy as np

from fastnet import Conv2D, Dense, Dropout, Flatten, MaxPool2D, Model
from fastnet.kernels.config import (CROSS_ENTROPY, LINEAR, LOG_LIKELIHOOD, QUADRATIC, RELU,
                                    SIGMOID, SOFTMAX, SOFTPLUS, TANH)
from fastnet import devices
from helpers import (activation_bound, assert_backward_from, assert_close, assert_conv,
                     assert_convpool_backward, book_reference_runs, check_convpool_forward,
                     compounded_bound, cost_bound, dense_reference_runs, fit_orders,
                     output_delta_bound, prime_magnitude)

F64 = np.float64
ELEMENTWISE = (LINEAR, SIGMOID, TANH, RELU, SOFTPLUS)

REF = devices.get("numpy").ops


def cuda_ops():
    return devices.get("cuda").ops


def host(got, name):
    """A CudaOps result (a C-contiguous device array) on the host."""
    assert getattr(got, "__cuda_ndarray__", False), f"{name}: not a device array: {type(got)}"
    assert got.is_c_contiguous(), f"{name}: not C-contiguous"
    return cuda_ops().download(got)


def compare(got, expected, name, **bound):
    """``got``: a CudaOps result; ``expected``: the exact value (or NumpyOps' result where it is
    exact), compared in got's dtype by the rule with ``bound``'s n and magnitude, or bit for
    bit (``exact=True``; integers always)."""
    h = host(got, name)
    expected = np.asarray(expected)
    if expected.dtype.kind in "iub" or bound.pop("exact", False):
        assert h.dtype == expected.dtype, (name, h.dtype, expected.dtype)
        assert_close(h, expected, rtol=0, atol=0, name=name)
    else:
        assert_close(h, expected.astype(h.dtype), name=name, **bound)


def _rand(rng, shape, dtype, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


# ---------------------------------------------------------------------------- interface
def check_method_set():
    """CudaOps has exactly NumpyOps' public methods, with the same parameter names — but the
    conv padding and striding (``HostLayout``: no CUDA kernels yet; the cuda device refuses a
    strided or padded Conv2D, ``check_strided_conv_refused``)."""
    from fastnet.devices.cuda import CudaOps
    from fastnet.devices.ops import HostLayout, NumpyOps

    def methods(cls):
        return {n: list(inspect.signature(getattr(cls, n)).parameters) for n in dir(cls)
                if callable(getattr(cls, n)) and not n.startswith("_")}
    host_only = {n for n in vars(HostLayout) if not n.startswith("_")}
    assert host_only == {"pad2d", "crop2d", "stride2d", "unstride2d"}
    assert methods(CudaOps) == {n: p for n, p in methods(NumpyOps).items()
                                if n not in host_only}


def check_data_movement(dtype, seed=0):
    ops, rng = cuda_ops(), np.random.default_rng(seed)
    for shape, idx in (((5, 2, 3, 4), [4, 0, 0, 2]), ((7, 3), [6]), ((1, 5), [0, 0, 0])):
        x = _rand(rng, shape, dtype)
        dx = ops.upload(x)
        assert ops.upload(dx) is dx
        assert np.array_equal(ops.download(dx), x)
        idx = np.array(idx, dtype=np.int64)
        compare(ops.take(dx, idx), REF.take(x, idx), f"take{shape}", exact=True)
        if shape[0] > 1:   # a row slice (evaluate's chunks), a negative index
            compare(ops.take(dx[1:], np.array([-1], np.int64)), x[1:][[-1]], "take of slice",
                    exact=True)
        flat = ops.take(dx, idx).reshape(len(idx), -1)   # as Flatten does
        assert np.array_equal(ops.download(flat), x[idx].reshape(len(idx), -1))
    f_order = np.asfortranarray(_rand(rng, (3, 4), dtype))
    assert ops.upload(f_order).is_c_contiguous()


# ---------------------------------------------------------------------------- elementwise
def check_elementwise(dtype, shape, seed=0):
    """scale, dropout_backward, activate and act_backward for every elementwise activation,
    including saturating inputs (|z| = 1e3)."""
    ops, rng = cuda_ops(), np.random.default_rng(seed)
    z = _rand(rng, shape, dtype, 3.0)
    z.reshape(-1)[:2] = (1e3, -1e3)
    da = _rand(rng, shape, dtype)
    mask = (rng.random(shape) > 0.4).astype(dtype)
    dz, dda, dmask = ops.upload(z), ops.upload(da), ops.upload(mask)
    z64, da64 = z.astype(F64), da.astype(F64)
    compare(ops.scale(dz, 0.7), REF.scale(z64, 0.7), "scale")
    compare(ops.dropout_backward(dda, dmask), REF.dropout_backward(da, mask), "dropout_backward",
            exact=True)                                    # a product by 0 or 1
    for code in ELEMENTWISE:
        a64 = REF.activate(z64, code)
        got = ops.activate(dz, code)
        compare(got, a64, f"activate code {code}", bound=activation_bound(z64, a64, code, dtype))
        # da·σ'(z), σ' from the activation it is given (got, a64 rounded)
        compare(ops.act_backward(dz, got, code, dda), REF.act_backward(z64, a64, code, da64),
                f"act_backward code {code}", n=2,
                magnitude=np.abs(da64) * prime_magnitude(z64, a64, code))


def check_softmax(dtype, batch, n, seed=0):
    """Row softmax, including logits near ±1e3, an all-zero row and a one-column row."""
    ops, rng = cuda_ops(), np.random.default_rng(seed)
    z = _rand(rng, (batch, n), dtype, 3.0)
    z[0, : min(n, 2)] = 1e3
    if batch > 1:
        z[1] = 0.0
    if batch > 2:
        z[2] = -1e3
    one = _rand(rng, (batch, 1), dtype)
    for logits, name in ((z, "softmax"), (one, "softmax n=1")):
        exact = REF.activate(logits.astype(F64), SOFTMAX)
        compare(ops.activate(ops.upload(logits), SOFTMAX), exact, name,
                bound=activation_bound(logits, exact, SOFTMAX, dtype))


OUTPUT_CASES = [(QUADRATIC, c) for c in ELEMENTWISE] + [(CROSS_ENTROPY, SIGMOID),
                                                        (LOG_LIKELIHOOD, SOFTMAX)]


def check_output_layer(dtype, batch, n, seed=0):
    """output_delta and loss_and_correct for every (loss, output activation) pair."""
    ops, rng = cuda_ops(), np.random.default_rng(seed)
    z = _rand(rng, (batch, n), dtype, 2.0)
    y = np.eye(n, dtype=dtype)[rng.integers(0, n, batch)]
    for loss, code in OUTPUT_CASES:
        a = REF.activate(z, code)
        dz, da, dy = ops.upload(z), ops.upload(a), ops.upload(y)
        z64, a64, y64 = z.astype(F64), a.astype(F64), y.astype(F64)
        compare(ops.output_delta(dz, da, dy, loss, code),
                REF.output_delta(z64, a64, y64, loss, code), f"output_delta loss {loss} code "
                f"{code}", bound=output_delta_bound(z64, a64, y64, loss, code, dtype))
        cost, hits = ops.loss_and_correct(dz, da, dy, loss)
        e_cost, e_hits = REF.loss_and_correct(z64, a64, y64, loss)
        assert isinstance(cost, float) and isinstance(hits, int)
        assert_close(np.float64(cost), np.float64(e_cost), name=f"cost loss {loss}",
                     bound=cost_bound(z64, a64, y64, loss, dtype))
        assert hits == e_hits, (loss, hits, e_hits)


# ---------------------------------------------------------------------------- dense
def check_dense(dtype, batch, n_in, n_out, seed=0):
    """The dense layer's forward and backward by the rule: NumpyOps on the inputs in float64
    (exact) and on their absolute values (each element's Σ|terms|)."""
    ops, rng = cuda_ops(), np.random.default_rng(seed)
    x, w, b = (_rand(rng, s, dtype) for s in ((batch, n_in), (n_out, n_in), (n_out,)))
    dz = _rand(rng, (batch, n_out), dtype)
    dx_, dw_, db_, ddz = (ops.upload(a) for a in (x, w, b, dz))
    x64, w64, b64, dz64 = (v.astype(F64) for v in (x, w, b, dz))
    compare(ops.dense_forward(dx_, dw_, db_), REF.dense_forward(x64, w64, b64), "dense_forward",
            n=n_in + 1, magnitude=REF.dense_forward(np.abs(x64), np.abs(w64), np.abs(b64)))
    for need_dx in (True, False):
        got = ops.dense_backward(dx_, dw_, ddz, need_dx)
        exp = REF.dense_backward(x64, w64, dz64, need_dx)
        mag = REF.dense_backward(np.abs(x64), np.abs(w64), np.abs(dz64), need_dx)
        assert (got[0] is None) == (not need_dx)
        for g, e, m, n, name in zip(got, exp, mag, (n_out, batch, batch), ("dx", "dw", "db")):
            if e is not None:
                compare(g, e, f"dense_backward {name} (need_dx={need_dx})", n=n, magnitude=m)


def check_sgd(dtype, n, seed=0):
    ops, rng = cuda_ops(), np.random.default_rng(seed)
    params, grads = _rand(rng, n, dtype), _rand(rng, n, dtype)
    decayed = rng.random(n) > 0.3
    p64, g64 = params.astype(F64), grads.astype(F64)
    for decay, scl in ((0.97, 0.05), (1.0, 0.3)):
        # params ← decay·params − scale·grads on the weights, params − scale·grads elsewhere:
        # two terms each, with decay and scale as the dtype holds them
        d = np.where(decayed, float(np.dtype(dtype).type(decay)), 1.0)
        s = float(np.dtype(dtype).type(scl))
        d_params = ops.upload(params)
        ops.sgd_apply(d_params, ops.upload(grads), ops.upload(decayed), decay, scl)
        compare(d_params, d * p64 - s * g64, f"sgd_apply decay={decay}", n=2,
                magnitude=np.abs(d * p64) + np.abs(s * g64))


def check_optimizer(dtype, n, seed=0):
    """CudaOps.optimizer_step against NumpyOps' (the reference) for every optimizer, three
    steps from a random state: an update chains about eight roundings of terms of the size of
    |p| plus the step, as tests/test_optimizers.py bounds them."""
    from fastnet.devices.ops import NumpyOps
    from fastnet.kernels.config import OPTIMIZER_SLOTS, OPTIMIZERS
    ops, rng = cuda_ops(), np.random.default_rng(seed)
    # the rules' coefficients, and L1 0.003 on the weights (decayed) for every rule
    hyper = {1: [0.9, 0, 0, 0, 3e-3], 2: [0.9, 0, 0, 0, 3e-3], 3: [0, 0.99, 1e-8, 0, 3e-3],
             4: [0.9, 0.999, 1e-8, 0, 3e-3], 5: [0.9, 0.999, 1e-8, 0.01, 3e-3],
             0: [0, 0, 0, 0, 3e-3]}
    for name, code in OPTIMIZERS.items():
        params = _rand(rng, n, dtype)
        decayed = rng.random(n) > 0.3
        state = np.abs(_rand(rng, (max(1, OPTIMIZER_SLOTS[code]), n), dtype, 0.1))
        want_p, want_s, want_t = params.astype(F64), state.astype(F64), np.zeros(1, np.int64)
        d_p, d_s, t = ops.upload(params), ops.upload(state), np.zeros(1, np.int64)
        for _ in range(3):
            g = _rand(rng, n, dtype)
            before = np.abs(want_p)
            NumpyOps().optimizer_step(want_p, g.astype(F64), decayed, 0.5, 0.01, 0.05, code,
                                      np.array(hyper[code]), want_s, want_t)
            ops.optimizer_step(d_p, ops.upload(g), ops.upload(decayed), 0.5, 0.01, 0.05, code,
                               np.array(hyper[code]), d_s, t)
            compare(d_p, want_p, f"{name} params", n=8,
                    magnitude=before + np.abs(want_p - before) + 0.05)
            want_p = host(d_p, "params").astype(F64)     # the next step from the kernel's own
            want_s = host(d_s, "state").astype(F64)
        assert t[0] == want_t[0] == 3


# ---------------------------------------------------------------------------- conv family
def _hosts(got, names):
    return tuple(None if g is None else host(g, n) for g, n in zip(got, names))


def check_conv2d(dtype, x_shape, w_shape, need_dx, seed=0):
    """conv2d forward and backward by the rule (``helpers.assert_conv``,
    ``assert_backward_from``: the reference on float64 inputs and on absolute values)."""
    ops, rng = cuda_ops(), np.random.default_rng(seed)
    x, w, b = _rand(rng, x_shape, dtype), _rand(rng, w_shape, dtype), _rand(rng, w_shape[0],
                                                                           dtype)
    dx_, dw_ = ops.upload(x), ops.upload(w)
    assert_conv(host(ops.conv2d_forward(dx_, dw_, ops.upload(b)), "conv2d_forward"), x, w, b,
                name="conv2d_forward")
    dz = _rand(rng, REF.conv2d_forward(x, w, b).shape, dtype)
    got = ops.conv2d_backward(dx_, dw_, ops.upload(dz), need_dx)
    assert (got[0] is None) == (not need_dx)
    dz64 = dz.astype(F64)
    assert_backward_from(_hosts(got, ("dx", "dw", "db")), x, w, dz64, np.abs(dz64),
                         dz.shape[0] * dz[0, 0].size, " (conv2d_backward)")


def check_maxpool(dtype, x_shape, size, seed=0):
    """Pooling picks and routes values: bit for bit."""
    ops, rng = cuda_ops(), np.random.default_rng(seed)
    x = _rand(rng, x_shape, dtype)
    x[0, 0, 0, :2] = 5.0   # a tie inside the first window: the first maximum wins
    y, argmax = REF.maxpool_forward(x, size)
    d_y, d_arg = ops.maxpool_forward(ops.upload(x), size)
    compare(d_y, y, "maxpool_forward y", exact=True)
    compare(d_arg, argmax, "maxpool_forward argmax")
    dy = _rand(rng, y.shape, dtype)
    compare(ops.maxpool_backward(ops.upload(dy), d_arg, x.shape),
            REF.maxpool_backward(dy, argmax, x.shape), "maxpool_backward", exact=True)


def check_pooling_nan(dtype, size, seed=0):
    """A window holding a NaN pools to its first NaN, as the reference's argmax has it, in
    maxpool and in the fused ConvPool (a 1×1 identity filter), and ReLU keeps it NaN."""
    ops, rng = cuda_ops(), np.random.default_rng(seed)
    x = (rng.integers(0, 4, (2, 1, 6, 7)) - 1).astype(dtype)
    x[rng.random(x.shape) < 0.15] = np.nan
    y, argmax = REF.maxpool_forward(x, size)
    assert np.isnan(y).any() and not np.isnan(y).all()
    d_y, d_arg = ops.maxpool_forward(ops.upload(x), size)
    compare(d_y, y, "maxpool_forward y", exact=True)
    compare(d_arg, argmax, "maxpool_forward argmax")
    one, zero = np.ones((1, 1, 1, 1), dtype), np.zeros(1, dtype)
    for code in (LINEAR, RELU):      # x·1 + 0 and max(·, 0) are exact
        a, z, argmax = REF.convpool_forward(x, one, zero, size, code)
        d_a, d_z, d_arg = ops.convpool_forward(ops.upload(x), ops.upload(one),
                                               ops.upload(zero), size, code)
        compare(d_z, z, f"convpool_forward z, code {code}", exact=True)
        compare(d_arg, argmax, f"convpool_forward argmax, code {code}")
        compare(d_a, a, f"convpool_forward a, code {code}", exact=True)


def check_convpool(dtype, x_shape, w_shape, size, code, need_dx, seed=0):
    """The fused conv + pool + activation forward (``helpers.check_convpool_forward``: z and a
    by the rule, a winner that differs from the reference's only where rounding can reorder a
    near-tie) and its backward from the kernel's own forward (``assert_convpool_backward``)."""
    ops, rng = cuda_ops(), np.random.default_rng(seed)
    x, w, b = _rand(rng, x_shape, dtype), _rand(rng, w_shape, dtype), _rand(rng, w_shape[0],
                                                                           dtype)
    dx_, dw_ = ops.upload(x), ops.upload(w)
    d_a, d_z, d_arg = ops.convpool_forward(dx_, dw_, ops.upload(b), size, code)
    a, z, argmax = (host(v, n) for v, n in ((d_a, "a"), (d_z, "z"), (d_arg, "argmax")))
    assert argmax.dtype == np.int32
    check_convpool_forward(a, z, argmax, x, w, b, size, code)
    da = _rand(rng, a.shape, dtype)
    got = ops.convpool_backward(dx_, dw_, d_z, d_a, d_arg, ops.upload(da), code, need_dx)
    assert (got[0] is None) == (not need_dx)
    assert_convpool_backward(_hosts(got, ("dx", "dw", "db")), x, w, z, a, argmax, da, code,
                             " (convpool_backward)")


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
                    dtype="float64", seed=5):
    """One epoch of a CNN on device "cuda" against the book's update run by the reference
    (parameters, ``helpers.book_sgd``), and the same model on "numpy" (history, predict,
    evaluate). Those chain the whole network: their bound is ``compounded_bound`` from the
    numpy model's float32 and float64 runs."""
    x, y = _images(n, input_shape, seed)

    def build(dev, dt=dtype):
        return Model(layers() if layers else cnn_layers(kind), loss="log_likelihood",
                     input_shape=input_shape, dtype=dt, device=dev, seed=seed)
    models = {"numpy": build("numpy"), "cuda": build("cuda"), "numpy32": build("numpy", "float32")}
    assert np.array_equal(models["numpy"].params, models["cuda"].params)
    start, orders = models["cuda"].params.copy(), fit_orders(models["cuda"], n, 1)
    models["numpy32"].params[...] = start
    hist = {dev: m.fit(x, y, epochs=1, batch_size=batch_size, lr=0.5, lmbda=0.2,
                       verbose=False) for dev, m in models.items()}
    exact, ref32 = book_reference_runs(lambda d: build("numpy", d), start, x.astype(dtype), y,
                                       orders, batch_size, 0.5, 0.2)
    for dev in ("cuda", "numpy"):
        assert_close(models[dev].params, exact.astype(dtype), name=f"params ({dev})",
                     bound=compounded_bound(ref32, exact, dtype))

    def same(name, got, ref, ref32):
        got, ref = np.asarray(got, F64), np.asarray(ref, F64)
        assert_close(got, ref, name=name, bound=compounded_bound(ref32, ref, dtype))
    same("loss", hist["cuda"].loss, hist["numpy"].loss, hist["numpy32"].loss)
    assert hist["cuda"].accuracy == hist["numpy"].accuracy
    models["numpy32"].params[...] = models["numpy"].params     # the outputs at one point
    pred = {dev: m.predict(x) for dev, m in models.items()}
    same("predict", pred["cuda"], pred["numpy"], pred["numpy32"])
    ev = {dev: m.evaluate(x, y) for dev, m in models.items()}
    same("evaluate", ev["cuda"]["loss"], ev["numpy"]["loss"], ev["numpy32"]["loss"])
    assert ev["cuda"]["accuracy"] == ev["numpy"]["accuracy"]


def check_batchnorm_model(conv, seed=3):
    """Two epochs of a model with batch normalization (after a dense or a conv layer) on
    "cuda" and on "numpy" (float64): the same parameters and running averages, predictions
    and evaluation (``norm_cuda`` against the reference through the whole network)."""
    from fastnet import BatchNorm, Conv2D, Dense, Flatten, MaxPool2D
    rng = np.random.default_rng(seed)
    if conv:
        shape = (1, 6, 6)

        def layers():
            return [Conv2D(1, 2, 3), BatchNorm(2, "relu"), MaxPool2D(2), Flatten(),
                    Dense(8, 3, "softmax")]
    else:
        shape = (5,)

        def layers():
            return [Dense(5, 4, "linear"), BatchNorm(4, "tanh"), Dense(4, 3, "softmax")]
    x = rng.standard_normal((10, int(np.prod(shape))))
    y = rng.integers(0, 3, 10)
    models = {dev: Model(layers(), loss="log_likelihood", input_shape=shape,
                         dtype="float64", device=dev, seed=seed) for dev in ("numpy", "cuda")}
    for m in models.values():
        m.fit(x, y, epochs=2, batch_size=4, lr=0.3, verbose=False)
    assert_close(models["cuda"].params, models["numpy"].params, rtol=1e-9, atol=1e-12,
                 name="params and running averages")
    assert_close(models["cuda"].predict(x), models["numpy"].predict(x), rtol=1e-9,
                 atol=1e-12, name="predict")


def check_strided_conv_refused():
    """A strided or padded Conv2D on "cuda": ValueError from fit before anything changes."""
    import pytest
    m = Model([Conv2D(1, 2, 3, stride=2), Flatten(), Dense(8, 2)], input_shape=(1, 6, 6),
              device="cuda", seed=0)
    before = m.params.copy()
    x, y = np.zeros((4, 36)), np.zeros(4, dtype=np.int64)
    with pytest.raises(ValueError, match="stride 1 and no padding only"):
        m.fit(x, y, epochs=1, batch_size=2, lr=0.1, verbose=False)
    np.testing.assert_array_equal(m.params, before)


def check_dropout_inference(p=0.3, seed=2):
    """predict through a Dropout(p) layer scales by 1 − p on "cuda" as on "numpy" (a forward
    pass through the network: ``compounded_bound`` from the numpy model's float32 and float64
    outputs; without the scaling the outputs would differ by far more)."""
    x, _ = _images(4, (5,), seed)
    preds = [Model([Dense(5, 4, "tanh"), Dropout(p), Dense(4, 2)], dtype=dt,
                   device=dev, seed=seed, input_shape=(5,)).predict(x)
             for dev, dt in (("numpy", "float64"), ("cuda", "float64"), ("numpy", "float32"))]
    # the float32 model starts from the same draws, rounded: part of the measured spread
    assert_close(preds[1], preds[0], name="predict",
                 bound=compounded_bound(preds[2], preds[0], np.float64))


def check_dense_model(sizes=(4, 3, 2), n=7, batch_size=3, seed=6, dtype="float64"):
    """The fused dense path (``fastnet.devices.cuda.CudaDense``) on "cuda" and "numpy" after
    one epoch, against the book's update run by the reference, its decay 1 − η·λ/n worked out
    here."""
    rng = np.random.default_rng(seed)
    x, y = rng.random((n, sizes[0])), rng.integers(0, sizes[-1], n)
    models = {dev: Model(list(sizes), device=dev, dtype=dtype, seed=seed)
              for dev in ("numpy", "cuda")}
    m = models["cuda"]
    start, orders = m.params.copy(), fit_orders(m, n, 1)
    for model in models.values():
        model.fit(x, y, epochs=1, batch_size=batch_size, lr=0.5, lmbda=0.2, verbose=False)
    spec = m._spec
    exact, ref32 = dense_reference_runs(start, spec.layout, spec.acts, spec.loss_code,
                                        x.astype(dtype),
                                        np.eye(sizes[-1])[y], orders, batch_size, 0.5,
                                        1 - 0.5 * 0.2 / n)
    for dev, model in models.items():
        assert_close(model.params, exact.astype(dtype), name=f"params ({dev})",
                     bound=compounded_bound(ref32, exact, dtype))
