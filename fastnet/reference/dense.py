"""Pure-NumPy reference for stacks of dense layers: forward pass, backprop deltas, gradients,
costs and the SGD step, in the book's notation (``zs``, ``activations``, ``delta``, ``nabla_w``).

Arrays are ``(batch, features)``; a layer's ``w`` is ``(n_out, n_in)`` and ``b`` is ``(n_out,)``.
Parameters live in one flat buffer described by ``layout`` (see docs/design.md); ``unpack`` gives
the per-layer views. This module is the oracle every kernel is tested against and the
``backend="numpy"`` backend, so it is written for clarity: the loss and the deltas are computed
in float64 where that costs nothing, and no trick hides a NaN.
"""

from __future__ import annotations

import numpy as np

from fastnet.kernels.config import (CROSS_ENTROPY, LINEAR, LOG_LIKELIHOOD, QUADRATIC, RELU,
                                    SIGMOID, SOFTMAX, SOFTPLUS, TANH)


# ---------------------------------------------------------------------------- activations
def sigmoid(z: np.ndarray) -> np.ndarray:
    """Overflow-free logistic function: exp is only ever taken of a non-positive number."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype, copy=False)


def softplus(z: np.ndarray) -> np.ndarray:
    """log(1 + e^z) without overflow."""
    return (np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))).astype(z.dtype, copy=False)


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``z: (batch, n)``; the row max is subtracted first."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def activation(z: np.ndarray, code: int) -> np.ndarray:
    if code == LINEAR:
        return z.copy()
    if code == SIGMOID:
        return sigmoid(z)
    if code == TANH:
        return np.tanh(z)
    if code == RELU:
        return np.maximum(z, 0)
    if code == SOFTPLUS:
        return softplus(z)
    if code == SOFTMAX:
        return softmax(z)
    raise ValueError(f"unknown activation code {code}")


def activation_prime(z: np.ndarray, code: int) -> np.ndarray:
    """Elementwise derivative σ'(z). Softmax has no elementwise derivative: it is only used
    with the log-likelihood cost, whose output delta is ``a - y``."""
    if code == LINEAR:
        return np.ones_like(z)
    if code == SIGMOID:
        s = sigmoid(z)
        return s * (1 - s)
    if code == TANH:
        return 1 - np.tanh(z) ** 2
    if code == RELU:
        return (z > 0).astype(z.dtype)
    if code == SOFTPLUS:
        return sigmoid(z)
    raise ValueError(f"activation code {code} has no elementwise derivative")


# ---------------------------------------------------------------------------- costs
def cost(z: np.ndarray, a: np.ndarray, y: np.ndarray, loss: int) -> np.ndarray:
    """Per-sample cost, float64 ``(batch,)``, from the output layer's ``z`` and ``a``.

    quadratic: ½‖a − y‖²; cross-entropy: Σ −y·ln a − (1−y)·ln(1−a), computed from z as
    Σ softplus(z) − y·z so it stays finite when a saturates; log-likelihood: −Σ y·ln a, with
    ln a taken as a log-softmax of z.
    """
    z = z.astype(np.float64)
    y = y.astype(np.float64)
    if loss == QUADRATIC:
        return 0.5 * ((a.astype(np.float64) - y) ** 2).sum(axis=1)
    if loss == CROSS_ENTROPY:
        return (softplus(z) - y * z).sum(axis=1)
    if loss == LOG_LIKELIHOOD:
        zmax = z.max(axis=1, keepdims=True)
        log_a = z - zmax - np.log(np.exp(z - zmax).sum(axis=1, keepdims=True))
        return -(y * log_a).sum(axis=1)
    raise ValueError(f"unknown loss code {loss}")


def output_delta(z: np.ndarray, a: np.ndarray, y: np.ndarray, loss: int, act: int) -> np.ndarray:
    """δᴸ = ∂C/∂zᴸ per sample: (a − y)⊙σ'(z) for the quadratic cost; a − y for cross-entropy
    with sigmoid outputs and log-likelihood with softmax outputs."""
    if loss == QUADRATIC:
        return (a - y) * activation_prime(z, act)
    return a - y


# ---------------------------------------------------------------------------- flat parameters
def layout_for(sizes: list[int]) -> np.ndarray:
    """Layout ``int64[L, 4]`` of rows ``(n_in, n_out, w_offset, b_offset)`` for a sizes list;
    each layer's weights are followed by its biases."""
    rows, off = [], 0
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        rows.append((n_in, n_out, off, off + n_in * n_out))
        off += n_in * n_out + n_out
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


def n_params(layout: np.ndarray) -> int:
    n_in, n_out, _, b_off = layout[-1]
    return int(b_off + n_out)


def unpack(params: np.ndarray, layout: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Views ``[(w (n_out, n_in), b (n_out,)), ...]`` into the flat buffer."""
    out = []
    for n_in, n_out, w_off, b_off in layout:
        out.append((params[w_off:w_off + n_out * n_in].reshape(n_out, n_in),
                    params[b_off:b_off + n_out]))
    return out


# ---------------------------------------------------------------------------- passes
def forward(params, layout, acts, x):
    """Forward pass of ``x: (batch, n0)``. Returns ``(zs, activations)``: lists of the
    pre-activations of each layer and of the activations, ``activations[0] is x``."""
    activations, zs = [x], []
    for (w, b), act in zip(unpack(params, layout), acts):
        z = activations[-1] @ w.T + b
        zs.append(z)
        activations.append(activation(z, act))
    return zs, activations


def backward(params, layout, acts, loss, zs, activations, y):
    """Backprop for one batch. Returns the flat gradient ``Σ_batch ∇C`` (same layout as
    ``params``; summed, not averaged, over the batch, as in the book's update)."""
    layers = unpack(params, layout)
    grads = np.zeros_like(params)
    g = unpack(grads, layout)
    delta = output_delta(zs[-1], activations[-1], y, loss, acts[-1])
    for l in range(len(layers) - 1, -1, -1):
        gw, gb = g[l]
        gw[...] = delta.T @ activations[l]
        gb[...] = delta.sum(axis=0)
        if l > 0:
            delta = (delta @ layers[l][0]) * activation_prime(zs[l - 1], acts[l - 1])
    return grads


def sgd_step(params, layout, acts, loss, x, y, lr, decay=1.0):
    """One mini-batch step in place: w ← decay·w − (lr/m)·Σ∇w, b ← b − (lr/m)·Σ∇b, with
    ``decay = 1 − lr·λ/n`` (the book's L2 form). Biases are not decayed."""
    zs, activations = forward(params, layout, acts, x)
    grads = backward(params, layout, acts, loss, zs, activations, y)
    m = x.shape[0]
    for (w, b), (gw, gb) in zip(unpack(params, layout), unpack(grads, layout)):
        w *= decay
        w -= (lr / m) * gw
        b -= (lr / m) * gb


def train_epoch(params, layout, acts, loss, x, y, order, batch_size, lr, decay=1.0):
    """One epoch in place: mini-batches are consecutive slices of ``order``; the last one may
    be shorter."""
    for k in range(0, len(order), batch_size):
        idx = order[k:k + batch_size]
        sgd_step(params, layout, acts, loss, x[idx], y[idx], lr, decay)


def loss_and_correct(params, layout, acts, loss, x, y):
    """Summed cost (float64) and the number of rows whose argmax output equals argmax ``y``."""
    zs, activations = forward(params, layout, acts, x)
    c = cost(zs[-1], activations[-1], y, loss).sum()
    correct = int((activations[-1].argmax(axis=1) == y.argmax(axis=1)).sum())
    return float(c), correct
