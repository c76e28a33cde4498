"""Initializers (``fastnet.layers.init_weights``): each one's distribution on a large layer,
the ×4 Glorot bound for sigmoid, zero biases where the rule says so, seeded draws, per-layer
choice, and the choice kept by save/load."""

import numpy as np
import pytest

import fastnet
from fastnet import Conv2D, Dense, Model
from fastnet.layers import init_weights


def draw(init, fan_in=400, fan_out=300, activation="relu", seed=0):
    w, b = np.empty((fan_out, fan_in)), np.empty(fan_out)
    init_weights(init, w, b, fan_in, fan_out, activation, np.random.default_rng(seed))
    return w, b


@pytest.mark.parametrize("init, std", [("default", 1 / 20), ("large", 1.0),
                                       ("he", np.sqrt(2 / 400))])
def test_normal_rules(init, std):
    w, b = draw(init)
    # 120,000 draws: the sample std is within 1 % of the rule's (its own spread is ~0.2 %)
    assert abs(w.std() / std - 1) < 0.01 and abs(w.mean()) < 0.01 * std
    if init == "he":
        assert not b.any()
    else:
        assert abs(b.std() - 1) < 0.15


@pytest.mark.parametrize("activation, factor", [("tanh", 1.0), ("sigmoid", 4.0)])
def test_glorot_uniform(activation, factor):
    w, b = draw("glorot", activation=activation)
    bound = factor * np.sqrt(6 / 700)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert abs(w.std() / (bound / np.sqrt(3)) - 1) < 0.01     # uniform: std = bound/√3
    assert not b.any()


def test_models_use_them_per_layer_and_keep_them():
    m = Model([Dense(20, 10, "relu", init="he"), Dense(10, 3, "sigmoid", init="glorot")],
              seed=5, dtype="float64")
    w0, b0 = draw("he", 20, 10, "relu", seed=5)
    np.testing.assert_array_equal(m.params_of(0)["w"], w0)
    assert not m.params_of(1)["b"].any()
    assert np.abs(m.params_of(1)["w"]).max() <= 4 * np.sqrt(6 / 13)
    sized = Model([20, 10, 3], init="he", seed=5, dtype="float64")
    np.testing.assert_array_equal(sized.params_of(0)["w"], w0)
    assert [layer.init for layer in sized.layers] == ["he", "he"]
    conv = Model([Conv2D(1, 4, 3, init="he"), fastnet.Flatten(), Dense(64, 2)],
                 input_shape=(1, 6, 6), seed=1)
    assert not conv.params_of(0)["b"].any()
    assert Model([4, 3], seed=2).params.tolist() == Model([4, 3], seed=2).params.tolist()


def test_init_is_saved(tmp_path):
    m = Model([Conv2D(1, 2, 3, "relu", init="glorot"), fastnet.Flatten(),
               Dense(32, 2, init="large")], input_shape=(1, 6, 6), seed=0)
    m.save(tmp_path / "m.npz")
    back = fastnet.load(tmp_path / "m.npz")
    assert [getattr(layer, "init", None) for layer in back.layers] == ["glorot", None, "large"]


def test_bad_init():
    with pytest.raises(ValueError, match="init"):
        Dense(3, 2, init="xavier")
    with pytest.raises(ValueError, match="init"):
        Conv2D(1, 2, 3, init="xavier")
    with pytest.raises(ValueError, match="init applies to a sizes list"):
        Model([Dense(3, 2)], init="he")
