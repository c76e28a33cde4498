"""Pure-NumPy reference of batch normalization (Ioffe and Szegedy 2015): twins of
``fastnet.kernels.norm_cpu``'s ``batchnorm_forward`` and ``batchnorm_backward``, same names,
signatures and out-parameters. Computed in float64, stored in the arrays' dtype.

Shapes: ``x, y, xhat, dy, dx: [N, C, S]`` — N samples, C features (a dense layer's outputs, or
a conv layer's channels), S positions per feature (1 for a dense layer, h·w for a conv layer);
``gamma, beta, running_mean, running_var, invstd, dgamma, dbeta: [C]``. Each feature is
normalised over its M = N·S values. Tests: ``tests/test_batchnorm.py`` and the "norm" family of
``tests/test_twins.py``.
"""

from __future__ import annotations

import numpy as np

F64 = np.float64


def batchnorm_forward(x, gamma, beta, running_mean, running_var, train, momentum, eps, y,
                      xhat, invstd):
    """y = gamma·xhat + beta with xhat = (x − μ)·invstd, invstd = 1/√(σ² + eps). Training:
    μ, σ² are the batch's (σ² biased, from the deviations: two passes), and the running
    averages move by ``momentum`` towards μ and the unbiased σ²·M/(M − 1), in place (not when
    M = 1); inference: μ, σ² are the running averages."""
    x64 = x.astype(F64)
    M = x.shape[0] * x.shape[2]
    if train:
        mean = x64.mean(axis=(0, 2))
        var = ((x64 - mean[None, :, None]) ** 2).mean(axis=(0, 2))
        if M > 1:                # one value has no variance to learn from (fit refuses it)
            unbiased = var * (M / (M - 1))
            running_mean[...] = (1 - momentum) * running_mean.astype(F64) + momentum * mean
            running_var[...] = (1 - momentum) * running_var.astype(F64) + momentum * unbiased
    else:
        mean, var = running_mean.astype(F64), running_var.astype(F64)
    inv = 1.0 / np.sqrt(var + eps)
    xh = (x64 - mean[None, :, None]) * inv[None, :, None]
    invstd[...] = inv
    xhat[...] = xh
    y[...] = gamma.astype(F64)[None, :, None] * xh + beta.astype(F64)[None, :, None]


def batchnorm_backward(xhat, invstd, gamma, dy, need_dx, dx, dgamma, dbeta):
    """Σ-gradients dgamma = Σ dy·xhat, dbeta = Σ dy (over N and S), and, when ``need_dx``,
    dx = gamma·invstd/M · (M·dy − dbeta − xhat·dgamma): the gradient through the batch's
    own μ and σ² (training-mode statistics)."""
    xh, g = xhat.astype(F64), dy.astype(F64)
    M = xhat.shape[0] * xhat.shape[2]
    dg = (g * xh).sum(axis=(0, 2))
    db = g.sum(axis=(0, 2))
    dgamma[...] = dg
    dbeta[...] = db
    if need_dx:
        k = (gamma.astype(F64) * invstd.astype(F64) / M)[None, :, None]
        dx[...] = k * (M * g - db[None, :, None] - xh * dg[None, :, None])
