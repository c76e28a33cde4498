"""Pure-NumPy reference of the optimizers (PyTorch's update rules, the book's L2 added to the
weights' gradient, and the L1 ``l1·sgn(w)``): twins of ``fastnet.kernels.optim_cpu``'s
``optimizer_step`` and ``train_epoch_opt``, same names, signatures and out-parameters. Computed in float64, stored
in the parameters' dtype. Tests: ``tests/test_optimizers.py``.
"""

from __future__ import annotations

import math

import numpy as np

from fastnet.kernels.config import ADAM, ADAMW, MOMENTUM, NESTEROV, RMSPROP
from fastnet.kernels.config import SYNC_ABORT as ABORT
from fastnet.kernels.config import SYNC_PROGRESS as PROGRESS
from fastnet.reference.dense import backward, forward_pass

F64 = np.float64


def optimizer_step(params, grads, decayed, gscale, l2, lr, code, hyper, state, step):
    """One update in place on ``params``, ``state`` and ``step`` (see the kernel)."""
    step[0] += 1
    t = int(step[0])
    b1, b2, eps, wd, l1 = (float(h) for h in hyper)
    p = params.astype(F64)
    g = float(gscale) * grads.astype(F64) + np.where(decayed, float(l2) * p + l1 * np.sign(p),
                                                     0.0)
    if code in (MOMENTUM, NESTEROV):
        v = b1 * state[0].astype(F64) + g
        state[0] = v
        p -= lr * (g + b1 * v if code == NESTEROV else v)
    elif code == RMSPROP:
        s = b2 * state[0].astype(F64) + (1 - b2) * g * g
        state[0] = s
        p -= lr * g / (np.sqrt(s) + eps)
    elif code in (ADAM, ADAMW):
        m = b1 * state[0].astype(F64) + (1 - b1) * g
        v = b2 * state[1].astype(F64) + (1 - b2) * g * g
        state[0], state[1] = m, v
        if code == ADAMW:
            p *= 1 - lr * wd
        p -= lr / _one_minus_power(b1, t) * m / (np.sqrt(v) / np.sqrt(_one_minus_power(b2, t))
                                                  + eps)
    else:
        p -= lr * g
    params[...] = p


def _one_minus_power(beta: float, t: int) -> float:
    """1 − βᵗ without cancellation."""
    return -math.expm1(t * math.log1p(beta - 1.0))


def train_epoch_opt(params, layout, acts, loss, x, y, order, batch_size, lr, l2, code, hyper,
                    state, step, decayed, sync):
    """One epoch in place: each mini-batch (consecutive slices of ``order``) its Σ-gradient by
    backprop, then ``optimizer_step`` with gscale 1/m; ``sync`` as the kernel's (progress
    counted, abort honoured)."""
    for k in range(0, len(order), batch_size):
        idx = order[k:k + batch_size]
        zs, activations = forward_pass(params, layout, acts, x[idx])
        grads = backward(params, layout, acts, loss, zs, activations, y[idx])
        optimizer_step(params, grads, decayed, 1.0 / len(idx), l2, lr, code, hyper, state,
                       step)
        sync[PROGRESS] += 1
        if sync[ABORT]:
            return
