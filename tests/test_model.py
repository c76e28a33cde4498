"""The Model API: training end to end, backends agreeing, save/load, and bad input."""

import json

import numpy as np
import pytest

import fastnet
from fastnet import Conv2D, Dense, Flatten, MaxPool2D, Model
from helpers import (assert_close, compounded_bound, cost_difference_bound,
                     dense_reference_runs, fit_orders)


def toy_data(n=64, n_in=6, n_out=3, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, n_in)).astype(dtype)
    y = (x[:, :n_out].argmax(axis=1)).astype(np.int64)  # learnable labels
    return x, y


# ---------------------------------------------------------------------------- construction
def test_sizes_list_builds_dense_stack():
    m = Model([5, 4, 3], seed=0)
    assert [type(l) for l in m.layers] == [Dense, Dense]
    assert m.params.size == 5 * 4 + 4 + 4 * 3 + 3
    assert m.params.dtype == np.float32
    assert "Dense(5, 4" in repr(m) and "params=39" in repr(m)
    m2 = Model([5, 4, 3], loss="log_likelihood", activation="relu")
    assert [l.activation for l in m2.layers] == ["relu", "softmax"]


def test_seed_reproducible_and_views_are_live():
    a, b = Model([5, 4, 3], seed=3), Model([5, 4, 3], seed=3)
    assert np.array_equal(a.params, b.params)
    assert not np.array_equal(a.params, Model([5, 4, 3], seed=4).params)
    a.params_of(0)["w"][0, 0] = 42.0
    assert a.params[0] == 42.0


def test_layers_must_chain():
    with pytest.raises(ValueError, match=r"Dense\(5, 2\).*\(4,\)"):
        Model([Dense(3, 4), Dense(5, 2)])


# ---------------------------------------------------------------------------- training
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss,act", [("quadratic", "sigmoid"), ("cross_entropy", "tanh"),
                                      ("log_likelihood", "relu")])
def test_backends_agree(loss, act, dtype):
    """numpy (reference) and cpu (Numba) run the same epochs to the same weights."""
    x, y = toy_data()
    layers = [Dense(6, 5, act), Dense(5, 3, "softmax" if loss == "log_likelihood" else
                                      "sigmoid")]
    ref = Model(layers, loss=loss, dtype=dtype, device="numpy", seed=1)
    cpu = Model(layers, loss=loss, dtype=dtype, device="cpu", seed=1)
    start, orders = cpu.params.copy(), fit_orders(cpu, len(x), 2)
    lr, lmbda = 0.5, 0.1
    h_ref = ref.fit(x, y, epochs=2, batch_size=7, lr=lr, lmbda=lmbda, verbose=False)
    h_cpu = cpu.fit(x, y, epochs=2, batch_size=7, lr=lr, lmbda=lmbda, verbose=False)
    # both against the book's update run by the reference, its decay worked out here
    xk, yk = x.astype(dtype), np.eye(3)[y]
    spec = cpu._spec
    exact, ref32 = dense_reference_runs(start, spec.layout, spec.acts, spec.loss_code, xk, yk,
                                        orders, 7, lr, 1 - lr * lmbda / len(x))
    bound = compounded_bound(ref32, exact, dtype)
    for m in (ref, cpu):
        assert_close(m.params, exact.astype(dtype), bound=bound, name=f"params ({m.device})")
    assert h_cpu.accuracy == h_ref.accuracy
    # the last epoch's mean loss: each within cost_difference_bound of the exact parameters'
    each = cost_difference_bound(exact, spec.layout, spec.acts, spec.loss_code, xk, yk, dtype,
                                 bound) / len(x)
    assert_close(np.float64(h_cpu.loss[-1]), np.float64(h_ref.loss[-1]), bound=2 * each,
                 name="loss")


def test_fit_learns_and_reports_history(capsys):
    x, y = toy_data(n=300)
    m = Model([6, 16, 3], loss="cross_entropy", seed=0)
    h = m.fit(x, y, epochs=5, batch_size=10, lr=1.0, validation_data=(x[:50], y[:50]))
    assert len(h.loss) == len(h.accuracy) == len(h.val_loss) == len(h.val_accuracy) == 5
    assert h.accuracy[-1] > 0.85 and h.loss[-1] < h.loss[0]
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 5 and out[0].startswith("Epoch 1/5: loss")
    assert m.evaluate(x, y)["accuracy"] == pytest.approx(h.accuracy[-1])
    assert m.predict(x[:4]).shape == (4, 3)


@pytest.mark.parametrize("device", ["numpy", "cpu"])
def test_inference_builds_no_training_state(device, monkeypatch):
    """predict and evaluate make a layer-by-layer runner per call; it must not build what only
    training needs (a zeroed gradient buffer the size of the parameters, its views, the
    compiled epoch's plan), which cost more than a small batch's forward pass. A model then
    trained through the same kind of runner gets them on first use."""
    from fastnet.devices.layerwise import LayerwiseTrainer
    runners = []
    real = LayerwiseTrainer.__init__

    def recording(self, *args, **kwargs):
        real(self, *args, **kwargs)
        runners.append(self)

    monkeypatch.setattr(LayerwiseTrainer, "__init__", recording)
    m = Model([Conv2D(1, 2, 3, activation="sigmoid"), MaxPool2D(2), Flatten(),
               Dense(2 * 3 * 3, 3, activation="softmax")], loss="log_likelihood",
              input_shape=(1, 8, 8), dtype="float64", device=device, seed=0)
    x = np.random.default_rng(0).random((5, 64))
    y = np.arange(5) % 3
    before = m.params.copy()
    m.predict(x)
    m.evaluate(x, y)
    assert len(runners) == 2
    for r in runners:
        assert not {"grads", "gviews", "decayed", "rest"} & set(vars(r))
    assert np.array_equal(m.params, before)
    m.fit(x, y, epochs=1, batch_size=2, lr=0.5, verbose=False)
    assert "grads" in vars(runners[-1]) or hasattr(runners[-1], "plan")
    assert not np.array_equal(m.params, before)


def test_one_hot_targets_equal_labels():
    x, y = toy_data()
    a, b = Model([6, 4, 3], seed=2), Model([6, 4, 3], seed=2)
    a.fit(x, y, epochs=1, batch_size=5, lr=1.0, verbose=False)
    b.fit(x, np.eye(3)[y], epochs=1, batch_size=5, lr=1.0, verbose=False)
    assert np.array_equal(a.params, b.params)


def test_no_shuffle_follows_data_order():
    """shuffle=False visits the data in order; with weight decay, against the book's update
    (the decay 1 − η·λ/n worked out here) run by the reference."""
    x, y = toy_data()
    m = Model([6, 4, 3], dtype="float64", seed=2)
    lr, lmbda = 0.5, 2.0
    exact, ref32 = dense_reference_runs(m.params, m._spec.layout, m._spec.acts, 0, x,
                                        np.eye(3)[y],
                                        [np.arange(len(x))], 8, lr, 1 - lr * lmbda / len(x))
    m.fit(x, y, epochs=1, batch_size=8, lr=lr, lmbda=lmbda, shuffle=False, verbose=False)
    assert_close(m.params, exact, bound=compounded_bound(ref32, exact, np.float64))


@pytest.mark.parametrize("sizes_or_layers", [
    [6, 16, 3],
    [Conv2D(1, 2, 1, activation="relu"), MaxPool2D(2), Flatten(), Dense(2, 3, "sigmoid")]],
    ids=["fused", "layerwise"])
def test_training_metrics_off_trains_the_same(capsys, sizes_or_layers):
    """training_metrics=False skips the training-set pass and nothing else: same weights,
    same validation figures, a shorter epoch line."""
    x, y = toy_data(n=60)
    shape = None if isinstance(sizes_or_layers[0], int) else (1, 2, 3)
    runs = []
    for metrics in (True, False):
        m = Model(sizes_or_layers, loss="cross_entropy", seed=3, input_shape=shape)
        h = m.fit(x, y, epochs=2, batch_size=8, lr=0.5, validation_data=(x[:20], y[:20]),
                  training_metrics=metrics)
        runs.append((m.params.copy(), h))
    (p_on, h_on), (p_off, h_off) = runs
    assert np.array_equal(p_on, p_off)
    assert h_off.loss == [] and h_off.accuracy == [] and len(h_on.loss) == 2
    assert h_off.val_loss == h_on.val_loss and h_off.val_accuracy == h_on.val_accuracy
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Epoch 1/2: loss ") and " - val_loss " in out[0]
    assert out[2].startswith("Epoch 1/2: val_loss ") and out[2].endswith(" s)")


# ---------------------------------------------------------------------------- save / load
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_save_load_round_trip(tmp_path, dtype):
    x, _ = toy_data()
    m = Model([Dense(6, 5, "tanh"), Dense(5, 3, "softmax")], loss="log_likelihood",
              dtype=dtype, seed=5)
    path = tmp_path / "model.npz"
    m.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # no temp file left
    m2 = fastnet.load(path)
    assert np.array_equal(m2.predict(x), m.predict(x))
    assert m2.loss == m.loss and m2.dtype == m.dtype and repr(m2) == repr(m)
    with np.load(path, allow_pickle=False) as f:  # readable without pickle
        assert json.loads(str(f["architecture"]))["layers"][0]["activation"] == "tanh"


def test_load_rejects_other_files(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, params=np.zeros(3))
    with pytest.raises(ValueError, match="not a fastnet model"):
        fastnet.load(bad)
    wrong = tmp_path / "wrong.npz"
    arch = Model([3, 2]).architecture()
    np.savez(wrong, params=np.zeros(5, np.float32), architecture=np.array(json.dumps(arch)))
    with pytest.raises(ValueError, match="shape"):
        fastnet.load(wrong)
    objs = tmp_path / "pickled.npz"
    np.savez(objs, params=np.array([object()]), architecture=np.array("{}"))
    with pytest.raises(ValueError):
        fastnet.load(objs)
    cut = tmp_path / "cut.npz"
    Model([3, 2]).save(cut)
    cut.write_bytes(cut.read_bytes()[:-10])           # a truncated download or copy
    with pytest.raises(ValueError, match="not a fastnet model"):
        fastnet.load(cut)


# ---------------------------------------------------------------------------- bad input
GOOD = dict(epochs=1, batch_size=5, lr=0.5)


@pytest.mark.parametrize("kwargs,exc,pattern", [
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(batch_size=2.5), TypeError, "batch_size"),
    (dict(epochs=0), ValueError, "epochs"),
    (dict(lr=0.0), ValueError, "lr"),
    (dict(lr=-1.0), ValueError, "lr"),
    (dict(lr=float("nan")), ValueError, "lr"),
    (dict(lr=float("inf")), ValueError, "lr"),
    (dict(lr="3"), TypeError, "lr"),
    (dict(lmbda=-0.1), ValueError, "lmbda"),
    (dict(validation_data=np.zeros((3, 6))), TypeError, "validation_data"),
    (dict(validation_data=(np.zeros((3, 5)), np.zeros(3, int))), ValueError,
     r"validation_data\[0\]"),
    (dict(shuffle="yes"), TypeError, "shuffle"),
    (dict(training_metrics=1), TypeError, "training_metrics"),
    (dict(device="tpu"), ValueError, "device"),
])
def test_bad_fit_arguments(kwargs, exc, pattern):
    x, y = toy_data()
    m = Model([6, 4, 3], seed=0)
    before = m.params.copy()
    with pytest.raises(exc, match=pattern):
        m.fit(x, y, **{**GOOD, **kwargs}, verbose=False)
    assert np.array_equal(m.params, before)


def _nan_x():
    x, _ = toy_data()
    x[3, 2] = np.nan
    return x


@pytest.mark.parametrize("x,y,exc,pattern", [
    (np.zeros((10, 5)), np.zeros(10, int), ValueError, r"x must have shape \(n, 6\)"),
    (np.zeros(6), np.zeros(1, int), ValueError, r"x must have shape"),
    (np.zeros((0, 6)), np.zeros(0, int), ValueError, "x is empty"),
    (np.array([["a"] * 6] * 2), np.zeros(2, int), TypeError, "x must hold real numbers"),
    (_nan_x(), np.zeros(64, int), ValueError, "NaN or inf.*row 3"),
    (np.zeros((4, 6)), np.array([0, 1, 3, 1]), ValueError, r"labels must lie in \[0, 3\)"),
    (np.zeros((4, 6)), np.array([0, 1, -1, 1]), ValueError, r"labels must lie in \[0, 3\)"),
    (np.zeros((4, 6)), np.zeros(5, int), ValueError, "5 labels but x has 4 rows"),
    (np.zeros((4, 6)), np.array([0.5, 1, 2, 1]), TypeError, "integer class labels"),
    (np.zeros((4, 6)), np.zeros((4, 2)), ValueError, r"\(4, 3\) \(targets\)"),
    (np.zeros((4, 6)), np.full((4, 3), np.inf), ValueError, "y contains NaN or inf"),
])
def test_bad_data(x, y, exc, pattern):
    m = Model([6, 4, 3], seed=0)
    before = m.params.copy()
    with pytest.raises(exc, match=pattern):
        m.fit(x, y, **GOOD, verbose=False)
    assert np.array_equal(m.params, before)


@pytest.mark.parametrize("args,kwargs,exc,pattern", [
    (([784, 30, 10],), dict(activation="swish"), ValueError, "activation"),
    (([784, 30, 10],), dict(loss="hinge"), ValueError, "loss"),
    (([784, 30, 10],), dict(dtype="float16"), ValueError, "dtype"),
    (([784, 30, 10],), dict(device="gpu"), ValueError, "device"),
    (([784],), {}, ValueError, "at least an input and an output"),
    (([784, 0, 10],), {}, ValueError, r"sizes_or_layers\[1\]"),
    (([784, 30.5, 10],), {}, TypeError, r"sizes_or_layers\[1\]"),
    (("784,30,10",), {}, TypeError, "sizes_or_layers"),
    (([Dense(3, 2), 4],), {}, TypeError, "mixture"),
    (([Dense(3, 2, "sigmoid")],), dict(loss="log_likelihood"), ValueError, "softmax output"),
    (([Dense(3, 2, "softmax")],), {}, ValueError, "log_likelihood"),
    (([Dense(3, 2, "tanh")],), dict(loss="cross_entropy"), ValueError, "sigmoid output"),
    (([Dense(3, 3, "softmax"), Dense(3, 2)],), {}, ValueError, "output activation only"),
])
def test_bad_model_arguments(args, kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        Model(*args, **kwargs)


def test_fastnet_device_env(monkeypatch):
    monkeypatch.setenv("FASTNET_DEVICE", "numpy")
    assert Model([3, 2], device=None).device == "numpy"
    assert Model([3, 2]).device == "cpu"  # an explicit device wins


# ---------------------------------------------------------------------------- MNIST
@pytest.mark.slow
def test_mnist_chapter1_reaches_93_percent(mnist):
    (x, y), _, (xt, yt) = mnist
    m = Model([784, 30, 10], seed=0)
    m.fit(x, y, epochs=3, batch_size=10, lr=3.0, verbose=False)
    acc = m.evaluate(xt, yt)["accuracy"]
    assert acc >= 0.93, acc


def test_cli_train_runs(mnist_dir, capsys):
    from fastnet.__main__ import main
    assert main(["train", "--epochs", "1", "--seed", "1", "--data", str(mnist_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2].startswith("Epoch 1/1: ") and "/ 10000 test accuracy" in lines[-2]
    assert lines[-1].startswith("Test accuracy ") and "after 1 epochs" in lines[-1]
