"""``fastnet.peers`` (``fastnet bench``'s PyTorch and JAX columns): one epoch of each peer equals
fastnet's float64 reference epoch from the same start, for every loss and hidden activation,
with L2 and a short last mini-batch; skipped where the library is not installed."""

import numpy as np
import pytest

import fastnet
from fastnet import peers
from helpers import assert_close


@pytest.mark.parametrize("peer", peers.PEERS)
@pytest.mark.parametrize("act, loss", [("sigmoid", "quadratic"), ("tanh", "cross_entropy"),
                                       ("relu", "log_likelihood")])
def test_one_epoch_equals_the_reference(peer, act, loss):
    if peers.unavailable(peer):
        pytest.skip(peers.unavailable(peer))
    rng = np.random.default_rng(0)
    x = rng.random((47, 12)).astype(np.float32)
    y = rng.integers(0, 4, 47)
    out = {"quadratic": "sigmoid", "cross_entropy": "sigmoid", "log_likelihood": "softmax"}
    model = fastnet.Model([fastnet.Dense(12, 9, act), fastnet.Dense(9, 4, out[loss])],
                          loss=loss, dtype="float64", device="numpy", seed=1)
    start = [(model.params_of(i)["w"].astype(np.float32),
              model.params_of(i)["b"].astype(np.float32)) for i in range(2)]
    acts = [layer.activation for layer in model.layers]
    order = rng.permutation(47)
    epoch, params = peers.dense(peer, start, acts, loss, x, np.eye(4, dtype=np.float32)[y],
                                10, 0.5, 2.0)
    epoch(order)
    p0 = model.params.copy()
    model.fit(x.astype(np.float64), y, epochs=1, batch_size=10, lr=0.5, lmbda=2.0,
              order=lambda epoch: order, verbose=False, training_metrics=False)
    got = np.concatenate([np.concatenate([w.ravel(), b]) for w, b in params()])
    change = model.params - p0
    assert_close(got - p0, change, bound=1e-4 * np.abs(change).max() + 1e-5,
                 name=f"{peer} parameter change")


def test_unknown_peer():
    with pytest.raises(ValueError, match="peer must be one of"):
        peers.unavailable("mxnet")
