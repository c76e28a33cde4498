"""Pure-NumPy reference for stacks of dense layers: forward pass, backprop deltas, gradients,
costs and the SGD step, in the book's notation (``zs``, ``activations``, ``delta``, ``nabla_w``).

Arrays are ``(batch, features)``; a layer's ``w`` is ``(n_out, n_in)`` and ``b`` is ``(n_out,)``.
Parameters live in one flat buffer described by ``layout`` (see docs/design.md); ``unpack`` gives
the per-layer views. This module is the oracle every kernel is tested against and the
``backend="numpy"`` backend, so it is written for clarity: the loss and the deltas are computed
in float64 where that costs nothing, and no trick hides a NaN.

Twins: every maths kernel of ``fastnet.kernels.activations_cpu``, ``dense_cpu``,
``dense_epoch_cpu`` and ``sgd_cpu`` has a function here of the same name and signature that
writes the same out-parameters ("kernel twins"; ``nthreads`` does not change the result).
Tests: ``tests/test_twins.py`` (numpy | cpu | cuda-sim), ``tests/test_dense.py``.
"""

from __future__ import annotations

import numpy as np

from fastnet.kernels.config import (CROSS_ENTROPY, LINEAR, LOG_LIKELIHOOD, QUADRATIC, RELU,
                                    SIGMOID, SOFTMAX, SOFTPLUS, TANH)

F64 = np.float64


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


def derivative(z: np.ndarray, code: int) -> np.ndarray:
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


def output_delta(z: np.ndarray, a: np.ndarray, y: np.ndarray, loss: int, act: int,
                 delta: np.ndarray | None = None) -> np.ndarray:
    """δᴸ = ∂C/∂zᴸ per sample: (a − y)⊙σ'(z) for the quadratic cost; a − y for cross-entropy
    with sigmoid outputs and log-likelihood with softmax outputs. Written into ``delta`` (B, n)
    when given, else into a new array of a's dtype; returned."""
    d = a.astype(F64) - y.astype(F64)
    if loss == QUADRATIC:
        d = d * derivative(z.astype(F64), act)
    if delta is None:
        return d.astype(a.dtype)
    delta[...] = d
    return delta


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
def forward_pass(params, layout, acts, x):
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
            delta = (delta @ layers[l][0]) * derivative(zs[l - 1], acts[l - 1])
    return grads


def sgd_step(params, layout, acts, loss, x, y, lr, decay=1.0):
    """One mini-batch step in place: w ← decay·w − (lr/m)·Σ∇w, b ← b − (lr/m)·Σ∇b, with
    ``decay = 1 − lr·λ/n`` (the book's L2 form). Biases are not decayed."""
    zs, activations = forward_pass(params, layout, acts, x)
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


def evaluate(params, layout, acts, loss, x, y, batch_size, nthreads):
    """(summed cost as float64, number of rows whose argmax output equals argmax ``y``) over
    x (N, n0), y (N, nL), ``batch_size`` rows at a time (that bounds the memory; the sums do
    not depend on it)."""
    total, correct = 0.0, 0
    for k in range(0, len(x), batch_size):
        zs, activations = forward_pass(params, layout, acts, x[k:k + batch_size])
        t, c = loss_and_correct(zs[-1], activations[-1], y[k:k + batch_size], loss)
        total += t
        correct += c
    return total, correct


def predict(params, layout, acts, x, out, batch_size, nthreads):
    """out (N, nL) (overwritten) = the network's output for x (N, n0), ``batch_size`` rows at
    a time."""
    for k in range(0, len(x), batch_size):
        out[k:k + batch_size] = forward_pass(params, layout, acts, x[k:k + batch_size])[1][-1]


def train_epoch_threaded(params, layout, acts, loss, x, y, order, batch_size, lr, decay,
                         nthreads, sync=None):
    """``train_epoch`` (the threaded kernel gives the same result for any thread count); with
    ``sync`` (a ``sync_cpu`` array) it counts the mini-batches in its progress slot and stops
    before the next once its abort slot is set, as the kernel does."""
    from fastnet.kernels.config import SYNC_ABORT, SYNC_PROGRESS
    for k in range(0, len(order), batch_size):
        if sync is not None and sync[SYNC_ABORT]:
            return
        sgd_step(params, layout, acts, loss, x[order[k:k + batch_size]],
                 y[order[k:k + batch_size]], lr, decay)
        if sync is not None:
            sync[SYNC_PROGRESS] += 1


# ---------------------------------------------------------------------------- kernel twins
# Same names and signatures as the kernels: the maths in float64, each out-parameter
# overwritten (rounded once to its dtype) and returned; in-place updates return nothing.
def activate(z, a, code):
    """a (B, n) (overwritten) = act(z)."""
    a[...] = activation(z.astype(F64), code)
    return a


def activate_flat(z, a, code):
    """``activate`` (the kernel's one-run loop over a C-contiguous z, a)."""
    return activate(z, a, code)


def act_plane(z, a, code, buf):
    """a (m,) (overwritten) = act(z) over a flat plane z (m,); ``buf`` is the kernel's scratch."""
    a[...] = activation(z.astype(F64), code)
    return a


def activation_prime(z, a, code, out):
    """out (B, n) (multiplied in place) *= σ'(z); linear leaves it as it is. ``a`` = act(z)
    is the kernel's shortcut (σ' from the stored activation); here σ' is taken from z."""
    if code != LINEAR:
        out[...] = out.astype(F64) * derivative(z.astype(F64), code)
    return out


def dense_forward(x, w, b, z):
    """z (B, n_out) (overwritten) = x (B, n_in) @ w (n_out, n_in)ᵀ + b (n_out,)."""
    z[...] = x.astype(F64) @ w.astype(F64).T + b.astype(F64)
    return z


def dense_forward_par(x, w, b, z, nthreads):
    """``dense_forward`` (the kernel splits w's rows over threads)."""
    return dense_forward(x, w, b, z)


def hidden_delta(delta_next, w_next, z, a, act, delta):
    """delta (B, n) (overwritten) = (delta_next (B, n_next) @ w_next (n_next, n)) ⊙ σ'(z)."""
    back = delta_next.astype(F64) @ w_next.astype(F64)
    delta[...] = back * derivative(z.astype(F64), act)
    return delta


def output_delta_rows(z, a, y, rows, loss, act, delta):
    """``output_delta`` with the targets y[rows]."""
    return output_delta(z, a, y[rows], loss, act, delta)


def dense_update(x, delta, w, b, scale, decay):
    """SGD step in place: w (n_out, n_in) ← decay·w − scale·deltaᵀ @ x, b ← b − scale·Σ delta,
    for x (B, n_in), delta (B, n_out); scale = lr/m."""
    d = delta.astype(F64)
    w[...] = float(decay) * w.astype(F64) - float(scale) * (d.T @ x.astype(F64))
    b[...] = b.astype(F64) - float(scale) * d.sum(axis=0)


def dense_backward_par(x, w, dz, dx, gw, gb, need_dx, nthreads):
    """Gradients of z = x @ w.T + b: gw (n_out, n_in) = dzᵀ @ x, gb (n_out,) = Σ dz and, when
    ``need_dx``, dx (B, n_in) = dz @ w (all overwritten; dx untouched otherwise)."""
    d = dz.astype(F64)
    gw[...] = d.T @ x.astype(F64)
    gb[...] = d.sum(axis=0)
    if need_dx:
        dx[...] = d @ w.astype(F64)


def dense_backward_sgd_par(x, w, b, dz, dx, need_dx, scale, decay, nthreads):
    """dx = dz @ w from the weights before the step (when ``need_dx``), then the SGD step
    ``dense_update(x, dz, w, b, scale, decay)`` in place."""
    if need_dx:
        dx[...] = dz.astype(F64) @ w.astype(F64)
    dense_update(x, dz, w, b, scale, decay)


def loss_and_correct(z, a, y, loss):
    """(summed ``cost`` as a float, number of rows with argmax a == argmax y) for one batch of
    the output layer's z, a (B, n) and targets y (B, n)."""
    total = cost(z, a, y, loss).sum()
    return float(total), int((a.argmax(axis=1) == y.argmax(axis=1)).sum())


def forward_from(params, layout, acts, inp, zs, activations, first):
    """``forward`` from layer ``first`` on, ``inp`` (B, n_in of first) being its input; each
    layer's z and a go to the flat workspaces at B·Σ_{k<l} n_out_k (rounded to their dtype, as
    the kernel stores them). Returns the last layer's offset."""
    B, off = inp.shape[0], 0
    for l, ((w, b), act) in enumerate(zip(unpack(params, layout), acts)):
        n_out = w.shape[0]
        if l >= first:
            z = zs[off:off + B * n_out].reshape(B, n_out)
            a = activations[off:off + B * n_out].reshape(B, n_out)
            activate(dense_forward(inp, w, b, z), a, act)
            inp = a
        if l < len(acts) - 1:
            off += B * n_out
    return off


def forward(params, layout, acts, x, zs, activations):
    """The forward pass of x (B, n0) into the flat workspaces ``zs``, ``activations`` (the
    layout of ``forward_from``); returns the last layer's offset in them."""
    return forward_from(params, layout, acts, x, zs, activations, 0)


def sgd_apply(params, grads, decayed, decay, scale, nthreads):
    """params (P,) in place ← decay·params − scale·grads where ``decayed`` (bool: the weights),
    params − scale·grads elsewhere (the biases)."""
    p = params.astype(F64)
    params[...] = np.where(decayed, float(decay) * p, p) - float(scale) * grads.astype(F64)
