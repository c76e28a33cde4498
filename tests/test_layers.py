"""The layer-by-layer training path: Conv2D, MaxPool2D, Flatten, Dropout layers in a Model,
the numpy and cpu op sets agreeing, the fused ConvPool stage, and the SGD update kernel.

Training results are compared with the book's update run by the reference in float64
(``helpers.book_sgd``, its weight decay worked out there) within ``compounded_bound``; the
update kernel by the rule of tests/helpers.py.
"""

import numpy as np
import pytest

import fastnet
from fastnet import Conv2D, Dense, Dropout, Flatten, MaxPool2D, Model
from fastnet.layers import ConvPool, fuse
from helpers import (assert_close, book_reference_runs, compounded_bound, dense_reference_runs,
                     fit_orders)


def fit_against_book(models, build, x, y, *, epochs, batch_size, lr, lmbda=0.0):
    """Fit each model (built alike, seeded alike) and compare its parameters with the book's
    update run by the reference from their common start; returns the histories."""
    dtype = models[0].dtype
    start, orders = models[0].params.copy(), fit_orders(models[0], len(x), epochs)
    histories = [m.fit(x, y, epochs=epochs, batch_size=batch_size, lr=lr, lmbda=lmbda,
                       verbose=False) for m in models]
    exact, ref32 = book_reference_runs(build, start, np.asarray(x, dtype), y, orders,
                                       batch_size, lr, lmbda)
    bound = compounded_bound(ref32, exact, dtype)
    for m in models:
        assert_close(m.params, exact.astype(dtype), bound=bound, name=f"params ({m.device})")
    return histories


def images(n=24, c=1, h=10, w=10, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = rng.random((n, c, h, w)).astype(dtype)
    y = (x[:, 0, :3, :3].sum(axis=(1, 2)) > 4.5).astype(np.int64) + \
        2 * (x[:, 0, -3:, -3:].sum(axis=(1, 2)) > 4.5)
    return x, y


def cnn(act="sigmoid", dtype="float64", device="cpu", seed=1, c_in=1, pool=(2, 2)):
    return Model([Conv2D(c_in, 3, 3, activation=act), MaxPool2D(pool), Flatten(),
                  Dense(3 * 4 * 4, 8, act), Dense(8, 4, "softmax")],
                 loss="log_likelihood", dtype=dtype, device=device, seed=seed,
                 input_shape=(c_in, 10, 10))


def test_fuse_pairs_conv_with_following_pool():
    layers = [Conv2D(1, 2, 3), MaxPool2D(2), Conv2D(2, 2, 3), Flatten(), Dense(2, 2)]
    stages = fuse(layers)
    assert isinstance(stages[0][0], ConvPool) and stages[0][1] == 0
    assert [i for _, i in stages] == [0, 2, 3, 4]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("act", ["sigmoid", "relu", "tanh"])
def test_cnn_cpu_matches_numpy_reference(act, dtype):
    x, y = images(dtype=np.dtype(dtype).type)
    ref, cpu = cnn(act, dtype, "numpy"), cnn(act, dtype, "cpu")
    assert np.array_equal(ref.params, cpu.params)
    h_ref, h_cpu = fit_against_book([ref, cpu], lambda d: cnn(act, d, "numpy"), x, y, epochs=2,
                                    batch_size=5, lr=0.3, lmbda=0.5)
    assert h_cpu.accuracy == h_ref.accuracy


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_two_conv_layerwise_cpu_matches_numpy_reference(dtype):
    """Two ConvPool stages train layer by layer; on the CPU the dense layers take their SGD
    step inside their backward kernel and the update pass covers only the conv parameters
    (``LayerwiseTrainer.rest``) — with weight decay, against the reference's single pass."""
    x, y = images(n=20, h=14, w=14, dtype=np.dtype(dtype).type)

    def build(device, dt=dtype):
        return Model([Conv2D(1, 3, 3, activation="relu"), MaxPool2D(2),
                      Conv2D(3, 4, 3, activation="tanh"), MaxPool2D(2), Flatten(),
                      Dense(4 * 2 * 2, 6, "sigmoid"), Dense(6, 4, "softmax")],
                     loss="log_likelihood", dtype=dt, device=device, seed=2,
                     input_shape=(1, 14, 14))
    ref, cpu = build("numpy"), build("cpu")
    runner = cpu._runner(None)
    assert not hasattr(runner, "plan") and runner.fused_sgd
    assert [hi - lo for lo, hi in runner.rest] == [3 * 9 + 3 + 4 * 3 * 9 + 4]
    h_ref, h_cpu = fit_against_book([ref, cpu], lambda d: build("numpy", d), x, y, epochs=2,
                                    batch_size=6, lr=0.2, lmbda=0.5)
    assert h_cpu.accuracy == h_ref.accuracy


@pytest.mark.parametrize("act", ["tanh", "relu", "sigmoid"])
def test_unpooled_conv_with_activation_trains_on_cpu(act):
    """A Conv2D with its own activation and no pool after it (its 4-D output goes through the
    CPU activation kernel, which takes rows) trains like the reference."""
    x, y = images(n=12, dtype=np.float64)

    def build(device, dt="float64"):
        return Model([Conv2D(1, 2, 3, activation=act), Flatten(), Dense(2 * 8 * 8, 4, "softmax")],
                     loss="log_likelihood", dtype=dt, device=device, seed=3,
                     input_shape=(1, 10, 10))
    fit_against_book([build("numpy"), build("cpu")], lambda d: build("numpy", d), x, y,
                     epochs=2, batch_size=4, lr=0.2)


def blobs(n=200, seed=3):
    """Noise with a bright 3×3 blob in one of the four quadrants; the label is the quadrant."""
    rng = np.random.default_rng(seed)
    x = 0.3 * rng.random((n, 1, 10, 10))
    y = rng.integers(0, 4, n)
    for i, q in enumerate(y):
        r, c = 5 * (q // 2) + rng.integers(0, 3), 5 * (q % 2) + rng.integers(0, 3)
        x[i, 0, r:r + 3, c:c + 3] += 1.0
    return x, y


def test_cnn_learns_and_accepts_flat_input():
    x, y = blobs()
    m = cnn("relu", "float32", seed=0)
    h = m.fit(x.reshape(200, -1), y, epochs=10, batch_size=10, lr=0.1, verbose=False)
    assert h.accuracy[-1] > 0.9, h.accuracy
    assert np.array_equal(m.predict(x), m.predict(x.reshape(200, -1)))


def test_layerwise_dense_matches_fused_path():
    """A dense stack with a Dropout(0) layer trains layer by layer; it must agree with the
    fused epoch kernel on the same stack without it."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 6))
    y = rng.integers(0, 3, 40)
    fused = Model([Dense(6, 5, "tanh"), Dense(5, 3)], dtype="float64", seed=4)
    layerwise = Model([Dropout(0.0), Dense(6, 5, "tanh"), Dense(5, 3)], dtype="float64",
                      seed=4, input_shape=(6,))
    assert not layerwise._spec.dense and fused._spec.dense
    start, orders = fused.params.copy(), fit_orders(fused, 40, 2)
    lr, lmbda = 0.5, 0.3
    fused.fit(x, y, epochs=2, batch_size=7, lr=lr, lmbda=lmbda, verbose=False)
    layerwise.fit(x, y, epochs=2, batch_size=7, lr=lr, lmbda=lmbda, verbose=False)
    # both against the book's update (its decay worked out here) run by the reference
    spec = fused._spec
    exact, ref32 = dense_reference_runs(start, spec.layout, spec.acts, spec.loss_code, x,
                                        np.eye(3)[y], orders, 7, lr, 1 - lr * lmbda / 40)
    for m in (fused, layerwise):
        assert_close(m.params, exact, bound=compounded_bound(ref32, exact, np.float64))


def test_dropout_training_and_inference():
    rng = np.random.default_rng(0)
    x = rng.random((2000, 50))
    d = Dropout(0.3)
    from fastnet import devices
    ops = devices.get("cpu").ops
    out, mask = d.forward(ops, {}, x, True, np.random.default_rng(1))
    kept = (out != 0).mean()
    assert abs(kept - 0.7) < 0.01
    assert np.array_equal(out[out != 0], x[out != 0])  # no rescaling in training
    scaled, ctx = d.forward(ops, {}, x, False, None)
    assert_close(scaled, 0.7 * x)                     # one product: the rule, n = 1
    assert ctx is None                                 # inference keeps nothing
    again, _ = Dropout(0.3).forward(ops, {}, x, True, np.random.default_rng(1))
    assert np.array_equal(out, again)  # seeded
    assert np.array_equal(d.backward(ops, {}, {}, mask, np.ones_like(x), True), (out != 0) * 1.0)


def test_conv_model_save_load(tmp_path):
    x, _ = images()
    m = cnn("relu", "float32")
    m.save(tmp_path / "cnn.npz")
    m2 = fastnet.load(tmp_path / "cnn.npz")
    assert m2.input_shape == (1, 10, 10)
    assert np.array_equal(m2.predict(x), m.predict(x))


@pytest.mark.parametrize("layers,input_shape,pattern", [
    ([Conv2D(1, 2, 3), Flatten(), Dense(10, 2)], (1, 10, 10), r"Dense\(10, 2\).*\(128,\)"),
    ([Conv2D(2, 2, 3), Flatten(), Dense(128, 2)], (1, 10, 10), r"Conv2D\(2, 2.*\(1, 10, 10\)"),
    ([Conv2D(1, 2, 11), Flatten(), Dense(2, 2)], (1, 10, 10), "h >= 11"),
    ([Conv2D(1, 2, 3), MaxPool2D(9), Flatten(), Dense(2, 2)], (1, 8, 8), "h >= 9"),
    ([Conv2D(1, 2, 3), Flatten(), Dense(128, 2)], None, "input_shape is needed"),
    ([Conv2D(1, 2, 3)], (1, 10, 10), "last layer must be Dense"),
])
def test_layers_that_do_not_chain(layers, input_shape, pattern):
    with pytest.raises(ValueError, match=pattern):
        Model(layers, input_shape=input_shape)


def test_bad_layer_arguments():
    with pytest.raises(ValueError, match="p must be"):
        Dropout(1.0)
    with pytest.raises(TypeError, match="kernel_size"):
        Conv2D(1, 2, 2.5)
    with pytest.raises(ValueError, match="size"):
        MaxPool2D(0)
    with pytest.raises(ValueError, match="softmax"):
        Conv2D(1, 2, 3, activation="softmax")


def test_wrong_image_shape_is_rejected():
    m = cnn()
    with pytest.raises(ValueError, match=r"x must have shape \(n, 100\)"):
        m.fit(np.zeros((4, 1, 9, 10)), np.zeros(4, int), epochs=1, batch_size=2, lr=0.1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("decay", [1.0, 0.99])
@pytest.mark.parametrize("nthreads", [1, 2, 5])
def test_sgd_apply(dtype, decay, nthreads):
    from fastnet.kernels.sgd_cpu import sgd_apply
    from fastnet import devices
    rng = np.random.default_rng(0)
    p, g = rng.standard_normal(37).astype(dtype), rng.standard_normal(37).astype(dtype)
    mask = rng.random(37) > 0.5
    expected = p.copy()
    devices.get("numpy").ops.sgd_apply(expected, g, mask, decay, 0.1)
    # p ← decay·p − scale·g on the weights, p − scale·g elsewhere: two terms each
    d, sc = np.where(mask, float(dtype(decay)), 1.0), float(dtype(0.1))
    p64, g64 = p.astype(np.float64), g.astype(np.float64)
    exact, magnitude = d * p64 - sc * g64, np.abs(d * p64) + np.abs(sc * g64)
    assert_close(expected, exact.astype(dtype), n=2, magnitude=magnitude, name="numpy ops")
    sgd_apply(p, g, mask, dtype(decay), dtype(0.1), nthreads)
    assert_close(p, exact.astype(dtype), n=2, magnitude=magnitude, name="kernel")
