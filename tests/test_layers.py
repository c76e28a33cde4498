"""The layer-by-layer training path: Conv2D, MaxPool2D, Flatten, Dropout layers in a Model,
the numpy and cpu op sets agreeing, the fused ConvPool stage, and the SGD update kernel."""

import numpy as np
import pytest

import fastnet
from fastnet import Conv2D, Dense, Dropout, Flatten, MaxPool2D, Model
from fastnet.layers import ConvPool, fuse
from helpers import assert_close

TOL = {"float64": dict(rtol=1e-9, atol=1e-11), "float32": dict(rtol=2e-3, atol=2e-4)}


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
    h_ref = ref.fit(x, y, epochs=2, batch_size=5, lr=0.3, lmbda=0.5, verbose=False)
    h_cpu = cpu.fit(x, y, epochs=2, batch_size=5, lr=0.3, lmbda=0.5, verbose=False)
    assert_close(cpu.params, ref.params, **TOL[dtype], name="params")
    assert h_cpu.accuracy == h_ref.accuracy


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_two_conv_layerwise_cpu_matches_numpy_reference(dtype):
    """Two ConvPool stages train layer by layer; on the CPU the dense layers take their SGD
    step inside their backward kernel and the update pass covers only the conv parameters
    (``_LayerwiseRunner.rest``) — with weight decay, against the reference's single pass."""
    x, y = images(n=20, h=14, w=14, dtype=np.dtype(dtype).type)

    def build(device):
        return Model([Conv2D(1, 3, 3, activation="relu"), MaxPool2D(2),
                      Conv2D(3, 4, 3, activation="tanh"), MaxPool2D(2), Flatten(),
                      Dense(4 * 2 * 2, 6, "sigmoid"), Dense(6, 4, "softmax")],
                     loss="log_likelihood", dtype=dtype, device=device, seed=2,
                     input_shape=(1, 14, 14))
    ref, cpu = build("numpy"), build("cpu")
    runner = cpu._runner(None)
    assert runner.cnn is None and runner.fused_sgd
    assert [hi - lo for lo, hi in runner.rest] == [3 * 9 + 3 + 4 * 3 * 9 + 4]
    h_ref = ref.fit(x, y, epochs=2, batch_size=6, lr=0.2, lmbda=0.5, verbose=False)
    h_cpu = cpu.fit(x, y, epochs=2, batch_size=6, lr=0.2, lmbda=0.5, verbose=False)
    assert_close(cpu.params, ref.params, **TOL[dtype], name="params")
    assert h_cpu.accuracy == h_ref.accuracy


@pytest.mark.parametrize("act", ["tanh", "relu", "sigmoid"])
def test_unpooled_conv_with_activation_trains_on_cpu(act):
    """A Conv2D with its own activation and no pool after it (its 4-D output goes through the
    CPU activation kernel, which takes rows) trains like the reference."""
    x, y = images(n=12, dtype=np.float64)

    def build(device):
        return Model([Conv2D(1, 2, 3, activation=act), Flatten(), Dense(2 * 8 * 8, 4, "softmax")],
                     loss="log_likelihood", dtype="float64", device=device, seed=3,
                     input_shape=(1, 10, 10))
    ref, cpu = build("numpy"), build("cpu")
    ref.fit(x, y, epochs=2, batch_size=4, lr=0.2, verbose=False)
    cpu.fit(x, y, epochs=2, batch_size=4, lr=0.2, verbose=False)
    assert_close(cpu.params, ref.params, **TOL["float64"], name="params")


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
    assert not layerwise._fused and fused._fused
    fused.fit(x, y, epochs=2, batch_size=7, lr=0.5, lmbda=0.3, verbose=False)
    layerwise.fit(x, y, epochs=2, batch_size=7, lr=0.5, lmbda=0.3, verbose=False)
    assert_close(layerwise.params, fused.params, rtol=1e-10, atol=1e-12)


def test_dropout_training_and_inference():
    rng = np.random.default_rng(0)
    x = rng.random((2000, 50))
    d = Dropout(0.3)
    from fastnet.ops import get_ops
    ops = get_ops("cpu")
    out, mask = d.forward(ops, {}, x, True, np.random.default_rng(1))
    kept = (out != 0).mean()
    assert abs(kept - 0.7) < 0.01
    assert np.array_equal(out[out != 0], x[out != 0])  # no rescaling in training
    scaled, ctx = d.forward(ops, {}, x, False, None)
    assert_close(scaled, 0.7 * x, rtol=1e-15, atol=0)
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
    from fastnet.ops import get_ops
    rng = np.random.default_rng(0)
    p, g = rng.standard_normal(37).astype(dtype), rng.standard_normal(37).astype(dtype)
    mask = rng.random(37) > 0.5
    expected = p.copy()
    get_ops("numpy").sgd_apply(expected, g, mask, decay, 0.1)
    sgd_apply(p, g, mask, dtype(decay), dtype(0.1), nthreads)
    assert_close(p, expected, rtol=1e-6 if dtype == np.float32 else 1e-15, atol=1e-7)
