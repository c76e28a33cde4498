"""The book's dense networks trained by PyTorch and by JAX, for ``fastnet bench``'s side-by-side:
the same mini-batch SGD as ``Model.fit`` (the samples in a given order, the mean gradient of
each mini-batch, the book's L2 as w ← (1 − lr·λ/n)·w), written as a user of each library would.

- ``torch``: PyTorch eager at its default threads, autograd, in-place updates;
- ``jax``: the whole epoch one ``jax.jit`` of a ``lax.scan`` over the mini-batches (a short last
  mini-batch one more jitted step).

``dense(peer, layers, activations, loss, x, y, batch, lr, lmbda)`` takes the start parameters
``[(w, b), ...]`` (w: n_out × n_in, float32), the activation name of each layer, a loss name of
``Model``, float32 inputs and one-hot targets; it returns ``(epoch(order), params())``. Neither
library is a dependency: ``unavailable(peer)`` says why one cannot run. The benchmark suite's
own peers (and their checks) are in ``bench/peers.py``. Tests: ``tests/test_peers.py``.
"""

from __future__ import annotations

import importlib.util

import numpy as np

PEERS = ("torch", "jax")


def unavailable(peer: str) -> str | None:
    """Why ``peer`` cannot run here (not installed), or None."""
    if peer not in PEERS:
        raise ValueError(f"peer must be one of {list(PEERS)}, got {peer!r}")
    return None if importlib.util.find_spec(peer) else f"{peer} is not installed"


def dense(peer, layers, activations, loss, x, y, batch, lr, lmbda=0.0):
    """``(epoch(order), params())`` of ``peer`` training the dense network ``layers``."""
    decay = 1.0 - lr * lmbda / len(x)
    if peer == "torch":
        return _torch(layers, activations, loss, x, y, batch, lr, decay)
    if peer == "jax":
        return _jax(layers, activations, loss, x, y, batch, lr, decay)
    raise ValueError(f"peer must be one of {list(PEERS)}, got {peer!r}")


def _logits(params, activations, fns, xb):
    """The output layer's z for the rows ``xb``: the hidden layers through their activations
    (``fns`` by name, either library's), then the last layer's product (written once for both
    libraries: their arrays share ``@``, ``.T`` and ``+``)."""
    a = xb
    for (w, b), act in zip(params[:-1], activations[:-1]):
        a = fns[act](a @ w.T + b)
    w, b = params[-1]
    return a @ w.T + b


def _torch(layers, activations, loss, x, y, batch, lr, decay):
    import torch
    fns = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu,
           "linear": lambda z: z, "softplus": torch.nn.functional.softplus}
    params = [(torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True))
              for w, b in layers]
    X, Y = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))

    def cost(xb, yb):
        z = _logits(params, activations, fns, xb)
        if loss == "log_likelihood":
            return -(torch.log_softmax(z, dim=1) * yb).sum()
        if loss == "cross_entropy":
            return torch.nn.functional.binary_cross_entropy_with_logits(z, yb, reduction="sum")
        return 0.5 * ((fns[activations[-1]](z) - yb) ** 2).sum()

    def epoch(order):
        idx = torch.from_numpy(np.asarray(order, np.int64))
        for k in range(0, len(idx), batch):
            rows = idx[k:k + batch]
            cost(X[rows], Y[rows]).backward()
            with torch.no_grad():
                for w, b in params:
                    w.mul_(decay).sub_(w.grad, alpha=lr / len(rows))
                    b.sub_(b.grad, alpha=lr / len(rows))
                    w.grad = b.grad = None

    return epoch, lambda: [(w.detach().numpy().copy(), b.detach().numpy().copy())
                           for w, b in params]


def _jax(layers, activations, loss, x, y, batch, lr, decay):
    import jax
    import jax.numpy as jnp
    fns = {"sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh, "relu": jax.nn.relu,
           "linear": lambda z: z, "softplus": jax.nn.softplus}

    def cost(params, xb, yb):
        z = _logits(params, activations, fns, xb)
        if loss == "log_likelihood":
            return -jnp.sum(jax.nn.log_softmax(z) * yb)
        if loss == "cross_entropy":
            return jnp.sum(jax.nn.softplus(z) - yb * z)
        return 0.5 * jnp.sum((fns[activations[-1]](z) - yb) ** 2)

    def step(params, xb, yb):
        g = jax.grad(cost)(params, xb, yb)
        s = lr / xb.shape[0]
        return [(decay * w - s * gw, b - s * gb) for (w, b), (gw, gb) in zip(params, g)]

    @jax.jit
    def full(params, X, Y, idx):
        return jax.lax.scan(lambda p, i: (step(p, X[i], Y[i]), None), params, idx)[0]

    tail = jax.jit(lambda p, X, Y, i: step(p, X[i], Y[i]))
    state = {"p": [(jnp.asarray(w), jnp.asarray(b)) for w, b in layers]}
    X, Y = jnp.asarray(x), jnp.asarray(y)

    def epoch(order):
        order = np.asarray(order, np.int64)
        n_full = len(order) // batch * batch
        p = state["p"]
        if n_full:
            p = full(p, X, Y, jnp.asarray(order[:n_full].reshape(-1, batch)))
        if n_full < len(order):
            p = tail(p, X, Y, jnp.asarray(order[n_full:]))
        state["p"] = jax.block_until_ready(p)

    return epoch, lambda: [(np.asarray(w).copy(), np.asarray(b).copy()) for w, b in state["p"]]
