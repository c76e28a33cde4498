"""``fastnet.gradcheck``: backprop (one full-batch step through the model's own kernels)
against central finite differences, for small float64 networks of every activation and loss,
a CNN, on the cpu and numpy devices; a wrong gradient is caught; the model is left as it was."""

import numpy as np
import pytest

import fastnet
from fastnet import Conv2D, Dense, Dropout, Flatten, MaxPool2D, Model

ACTIVATIONS = ["sigmoid", "tanh", "relu", "softplus", "linear"]


def data(n_in=6, n=9, n_out=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, n_in)), rng.integers(0, n_out, n)


@pytest.mark.parametrize("device", ["cpu", "numpy"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", ["quadratic", "cross_entropy", "log_likelihood"])
def test_dense_networks(device, activation, loss):
    out = "softmax" if loss == "log_likelihood" else "sigmoid"
    m = Model([Dense(6, 5, activation), Dense(5, 4, activation), Dense(4, 3, out)],
              loss=loss, dtype="float64", device=device, seed=2)
    x, y = data()
    before = m.params.copy()
    errors = fastnet.gradcheck(m, x, y)
    assert set(errors) == {f"layer{i}.{k}" for i in range(3) for k in "wb"}
    assert max(errors.values()) <= 1e-6, errors
    np.testing.assert_array_equal(m.params, before)


@pytest.mark.parametrize("device", ["cpu", "numpy"])
def test_cnn(device):
    m = Model([Conv2D(1, 2, 3, activation="tanh"), MaxPool2D(2), Flatten(),
               Dense(8, 3, "softmax")], loss="log_likelihood", dtype="float64",
              device=device, seed=1, input_shape=(1, 6, 6))
    x, y = data(n_in=36, n=5)
    errors = fastnet.gradcheck(m, x, y, samples=12)
    assert set(errors) == {"layer0.w", "layer0.b", "layer3.w", "layer3.b"}
    assert max(errors.values()) <= 1e-6, errors


def test_a_wrong_gradient_is_caught(monkeypatch):
    """The same check fails when the step the model takes is not the gradient (here: twice
    it for every parameter but the first layer's biases)."""
    m = Model([6, 4, 3], dtype="float64", seed=0)
    x, y = data()
    real_fit = Model.fit

    def doubled(self, *args, **kwargs):
        before = self.params.copy()
        real_fit(self, *args, **kwargs)
        keep = self.params_of(0)["b"].copy()
        self.params[...] = before - 2 * (before - self.params)
        self.params_of(0)["b"][...] = keep
    monkeypatch.setattr(Model, "fit", doubled)
    errors = fastnet.gradcheck(m, x, y)
    assert errors["layer0.b"] <= 1e-6
    assert all(abs(errors[k] - 1 / 3) < 1e-3 for k in errors if k != "layer0.b"), errors


def test_refusals():
    x, y = data()
    with pytest.raises(ValueError, match="needs a float64 model"):
        fastnet.gradcheck(Model([6, 3], seed=0), x, y)
    with pytest.raises(ValueError, match="without dropout"):
        fastnet.gradcheck(Model([Dense(6, 4), Dropout(0.5), Dense(4, 3)], dtype="float64",
                                seed=0), x, y)
    with pytest.raises(ValueError, match="samples must be an int in"):
        fastnet.gradcheck(Model([6, 3], dtype="float64", seed=0), x, y, samples=0)
