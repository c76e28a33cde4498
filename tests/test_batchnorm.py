"""``BatchNorm`` in models (its kernels against their twins: tests/test_twins.py, "norm"):
gradients by finite differences (dense and conv, numpy and cpu), the running averages by hand,
inference by them, numpy and cpu training alike, the running averages untouched by every
optimizer and by L2, kept by save/load and checkpoints, refusals before anything changes, and
PyTorch's BatchNorm1d/2d on the same numbers where torch is installed."""

import numpy as np
import pytest

import fastnet
from fastnet import BatchNorm, Conv2D, Dense, Flatten, MaxPool2D, Model
from helpers import assert_close

F64 = np.float64


def dense_model(device="cpu", dtype="float64", seed=3, act="sigmoid", momentum=0.1):
    return Model([Dense(6, 5, "linear"), BatchNorm(5, act, momentum=momentum),
                  Dense(5, 3, "softmax")], loss="log_likelihood", dtype=dtype, device=device,
                 seed=seed)


def conv_model(device="cpu", dtype="float64", seed=4):
    return Model([Conv2D(1, 3, 3, activation="linear"), BatchNorm(3, "relu"), MaxPool2D(2),
                  Flatten(), Dense(12, 3, "softmax")], loss="log_likelihood", dtype=dtype,
                 device=device, seed=seed, input_shape=(1, 6, 6))


def data(n_in=6, n=9, n_out=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, n_in)) * 2 + 1, rng.integers(0, n_out, n)


@pytest.mark.parametrize("device", ["cpu", "numpy"])
@pytest.mark.parametrize("act", ["sigmoid", "tanh", "linear"])
def test_dense_gradients_by_finite_differences(device, act):
    m = dense_model(device, act=act)
    x, y = data()
    before = m.params.copy()
    errors = fastnet.gradcheck(m, x, y)
    assert set(errors) == {"layer0.w", "layer0.b", "layer1.gamma", "layer1.beta", "layer2.w",
                           "layer2.b"}
    # the bias before batch norm has a zero gradient (the batch mean absorbs it): its "error"
    # compares two roundings of 0 against the 1e-8 floor; checked as a zero step below
    assert max(v for k, v in errors.items() if k != "layer0.b") <= 1e-6, errors
    np.testing.assert_array_equal(m.params, before)     # running averages restored too
    m.fit(x, y, epochs=1, batch_size=len(x), lr=1.0, shuffle=False, verbose=False,
          training_metrics=False)
    assert_close(m.params_of(0)["b"], m.params_of(0, before)["b"], rtol=0, atol=1e-14,
                 name="bias before batch norm")


@pytest.mark.parametrize("device", ["cpu", "numpy"])
def test_conv_gradients_by_finite_differences(device):
    m = conv_model(device)
    x, y = data(n_in=36, n=5)
    errors = fastnet.gradcheck(m, x, y, samples=10)
    assert {"layer1.gamma", "layer1.beta"} <= set(errors)
    assert max(v for k, v in errors.items() if k != "layer0.b") <= 1e-6, errors


def test_gradcheck_fails_when_the_batch_statistics_are_ignored(monkeypatch):
    """A backward that treats μ and σ² as constants (dx = gamma·invstd·dy) is caught."""
    from fastnet.reference import norm

    def constant_stats(xhat, invstd, gamma, dy, need_dx, dx, dgamma, dbeta):
        dgamma[...] = (dy * xhat).sum(axis=(0, 2))
        dbeta[...] = dy.sum(axis=(0, 2))
        if need_dx:
            dx[...] = (gamma * invstd)[None, :, None] * dy
    monkeypatch.setattr(norm, "batchnorm_backward", constant_stats)
    m = dense_model("numpy")
    x, y = data()
    errors = fastnet.gradcheck(m, x, y)
    assert errors["layer0.w"] > 1e-3, errors
    assert errors["layer1.gamma"] <= 1e-6


@pytest.mark.parametrize("device", ["cpu", "numpy"])
def test_running_averages_by_hand_and_inference_by_them(device):
    """One full-batch epoch moves the running averages by momentum towards the batch's mean
    and unbiased variance of the first layer's outputs (the forward runs before the step);
    predict then normalises by the running averages."""
    m = dense_model(device, momentum=0.25)
    x, y = data()
    p0 = m.params_of(0)
    z = x @ p0["w"].T + p0["b"]
    m.fit(x, y, epochs=1, batch_size=len(x), lr=0.1, shuffle=False, verbose=False,
          training_metrics=False)
    bn = m.params_of(1)
    assert_close(bn["running_mean"], 0.75 * 0 + 0.25 * z.mean(axis=0), rtol=1e-12, atol=1e-15,
                 name="running_mean")
    assert_close(bn["running_var"], 0.75 * 1 + 0.25 * z.var(axis=0, ddof=1), rtol=1e-12,
                 atol=1e-15, name="running_var")
    p0, p2 = m.params_of(0), m.params_of(2)
    h = (x @ p0["w"].T + p0["b"] - bn["running_mean"]) / np.sqrt(bn["running_var"] + 1e-5)
    a = 1 / (1 + np.exp(-(bn["gamma"] * h + bn["beta"])))
    out = a @ p2["w"].T + p2["b"]
    expect = np.exp(out - out.max(axis=1, keepdims=True))
    expect /= expect.sum(axis=1, keepdims=True)
    assert_close(m.predict(x), expect, rtol=1e-12, atol=1e-15, name="predict")


@pytest.mark.parametrize("model", [dense_model, conv_model])
def test_numpy_and_cpu_train_alike(model):
    x, y = data(n_in=6 if model is dense_model else 36, n=40, seed=5)
    a, b = model("numpy"), model("cpu")
    for m in (a, b):
        m.fit(x, y, epochs=2, batch_size=7, lr=0.5, lmbda=0.1, verbose=False)
    assert_close(b.params, a.params, rtol=1e-9, atol=1e-12, name="params")


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "rmsprop", "adam", "adamw"])
def test_no_optimizer_and_no_l2_touches_the_running_averages(optimizer):
    """With momentum 0 the running averages stay at 0 and 1 exactly through training by any
    optimizer with L2 (AdamW's decoupled decay included); gamma and beta train."""
    m = dense_model(momentum=0.0)
    x, y = data(n=30)
    before = m.params.copy()
    m.fit(x, y, epochs=2, batch_size=5, lr=0.05, lmbda=5.0, optimizer=optimizer,
          verbose=False)
    bn = m.params_of(1)
    np.testing.assert_array_equal(bn["running_mean"], 0.0)
    np.testing.assert_array_equal(bn["running_var"], 1.0)
    assert not np.array_equal(m.params_of(1, before)["gamma"], bn["gamma"])
    if optimizer != "sgd":
        assert m.optimizer_state.state.shape[1] == m.params.size - 10   # parameters only


def test_l2_leaves_gamma_and_beta_alone():
    """L2 decays weights only: the decay mask covers the trained parameters (no state) and
    is False at gamma and beta."""
    m = dense_model()
    mask = m._spec.decayed
    assert mask.shape == (m._spec.trainable,)
    for name in ("gamma", "beta"):
        off, shape = m._spec.slices[1][name]
        assert not mask[off:off + shape[0]].any()
    off, shape = m._spec.slices[0]["w"]
    assert mask[off:off + 30].all()


def test_save_load_and_checkpoint_keep_the_running_averages(tmp_path):
    x, y = data(n=30)
    m = dense_model()
    m.fit(x, y, epochs=2, batch_size=5, lr=0.5, verbose=False)
    m.save(tmp_path / "m.npz")
    back = fastnet.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(back.params, m.params)
    np.testing.assert_array_equal(back.predict(x), m.predict(x))
    assert "BatchNorm(5, activation='sigmoid')" in repr(back)

    whole = dense_model()
    whole.fit(x, y, epochs=3, batch_size=4, lr=0.3, optimizer="adam", verbose=False)
    part = dense_model()
    part.fit(x, y, epochs=2, batch_size=4, lr=0.3, optimizer="adam", verbose=False,
             checkpoint=tmp_path / "run.npz")
    resumed = dense_model()
    resumed.fit(x, y, epochs=3, batch_size=4, lr=0.3, optimizer="adam", verbose=False,
                checkpoint=tmp_path / "run.npz")
    np.testing.assert_array_equal(resumed.params, whole.params)


def test_an_interrupted_fit_keeps_the_running_averages_of_its_parameters():
    """Ctrl-C in the second epoch's callback: the model is the two-epoch model (its last
    completed epoch), running averages included, not the interrupted fit's."""
    x, y = data(n=30)
    two = dense_model()
    two.fit(x, y, epochs=2, batch_size=5, lr=0.5, verbose=False)
    m = dense_model()

    def boom(end):
        if end.epoch == 2:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        m.fit(x, y, epochs=3, batch_size=5, lr=0.5, verbose=False, callbacks=[boom])
    np.testing.assert_array_equal(m.params, two.params)


def test_summary_counts_trained_parameters():
    m = dense_model()
    assert m.params.size == 35 + 10 + 18 + 10
    assert "params=63" in repr(m)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(features=0), ValueError, "features"),
    (dict(features=3, activation="softmax"), ValueError, "elementwise"),
    (dict(features=3, activation="swish"), ValueError, "activation"),
    (dict(features=3, momentum=1.5), ValueError, "momentum"),
    (dict(features=3, eps=0.0), ValueError, "eps"),
    (dict(features=3, momentum="0.1"), TypeError, "momentum"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        BatchNorm(**kwargs)


@pytest.mark.parametrize("batch_size, n", [(1, 10), (10, 41), (4, 9)])
def test_a_mini_batch_of_one_sample_is_refused_before_anything_changes(batch_size, n):
    """After a dense layer a mini-batch of one sample has no variance: fit refuses it (as
    PyTorch does) rather than pull the running variance to 0."""
    m = dense_model()
    x, y = data(n=n)
    before = m.params.copy()
    with pytest.raises(ValueError, match="at least 2 samples in every training mini-batch"):
        m.fit(x, y, epochs=1, batch_size=batch_size, lr=0.1, verbose=False)
    np.testing.assert_array_equal(m.params, before)
    conv = conv_model()                  # a conv layer's channel has h·w values per sample
    xc, yc = data(n_in=36, n=5)
    conv.fit(xc, yc, epochs=1, batch_size=1, lr=0.1, verbose=False)


def test_a_width_that_does_not_fit_is_refused():
    with pytest.raises(ValueError, match=r"BatchNorm\(4\) expects inputs of shape"):
        Model([Dense(6, 5, "linear"), BatchNorm(4), Dense(4, 3)], seed=0)


@pytest.mark.parametrize("shape", ["dense", "conv"])
def test_against_pytorch(shape):
    """Training-mode output, running averages and gradients equal torch's BatchNorm1d/2d."""
    torch = pytest.importorskip("torch")
    from fastnet.devices.ops import CpuOps
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 4) if shape == "dense" else (3, 4, 5, 5)) * 3 + 1
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    dy = rng.standard_normal(x.shape)
    rm, rv = np.zeros(4), np.ones(4)
    ops = CpuOps()
    y, xhat, invstd = ops.batchnorm_forward(x, gamma, beta, rm, rv, True, 0.1, 1e-5)
    dx, dgamma, dbeta = ops.batchnorm_backward(xhat, invstd, gamma, dy, True)
    bn = (torch.nn.BatchNorm1d if shape == "dense" else torch.nn.BatchNorm2d)(4).double()
    with torch.no_grad():
        bn.weight[:] = torch.from_numpy(gamma)
        bn.bias[:] = torch.from_numpy(beta)
    tx = torch.from_numpy(x).requires_grad_()
    ty = bn(tx)
    ty.backward(torch.from_numpy(dy))
    for name, ours, theirs in [("y", y, ty), ("dx", dx, tx.grad), ("dgamma", dgamma,
                               bn.weight.grad), ("dbeta", dbeta, bn.bias.grad),
                               ("running_mean", rm, bn.running_mean),
                               ("running_var", rv, bn.running_var)]:
        assert_close(ours, theirs.detach().numpy(), rtol=1e-12, atol=1e-12, name=name)
