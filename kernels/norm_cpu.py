"""Batch normalization on the CPU: ``batchnorm_forward`` (batch statistics and the running
averages in training, the running averages at inference) and ``batchnorm_backward`` (the
Σ-gradients of gamma and beta and the input gradient through the batch statistics), for the
layer-by-layer path's ``BatchNorm`` layer. One thread; the sums in float64, whatever the dtype.

Shapes: ``x, y, xhat, dy, dx: [N, C, S]`` (S = 1 after a dense layer, h·w after a conv layer);
``gamma, beta, running_mean, running_var, invstd, dgamma, dbeta: [C]``.

NumPy twins: ``fastnet.reference.norm``. Tests: ``tests/test_twins.py`` ("norm" family) and
``tests/test_batchnorm.py``.
"""

import math

from numba import njit

from . import config

_jit = njit(**config.CPU_JIT)


@_jit
def batchnorm_forward(x, gamma, beta, running_mean, running_var, train, momentum, eps, y,
                      xhat, invstd):
    """y = gamma·xhat + beta, xhat = (x − μ)/√(σ² + eps) per feature; in training μ and σ²
    (biased) from the batch in two passes, and the running averages moved by ``momentum``
    towards μ and σ²·M/(M − 1) in place; at inference μ, σ² are the running averages."""
    N, C, S = x.shape
    T = y.dtype.type
    M = N * S
    for c in range(C):
        if train:
            s = 0.0
            for n in range(N):
                for k in range(S):
                    s += x[n, c, k]
            mean = s / M
            q = 0.0
            for n in range(N):
                for k in range(S):
                    d = x[n, c, k] - mean
                    q += d * d
            var = q / M
            if M > 1:            # one value has no variance to learn from (fit refuses it)
                unbiased = var * M / (M - 1)
                running_mean[c] = (1.0 - momentum) * running_mean[c] + momentum * mean
                running_var[c] = (1.0 - momentum) * running_var[c] + momentum * unbiased
        else:
            mean = float(running_mean[c])
            var = float(running_var[c])
        inv = 1.0 / math.sqrt(var + eps)
        invstd[c] = inv
        g, b = float(gamma[c]), float(beta[c])
        for n in range(N):
            for k in range(S):
                h = (x[n, c, k] - mean) * inv
                xhat[n, c, k] = h
                y[n, c, k] = T(g * h + b)


@_jit
def batchnorm_backward(xhat, invstd, gamma, dy, need_dx, dx, dgamma, dbeta):
    """dgamma = Σ dy·xhat, dbeta = Σ dy over N and S; with ``need_dx``,
    dx = gamma·invstd/M·(M·dy − dbeta − xhat·dgamma)."""
    N, C, S = xhat.shape
    T = dgamma.dtype.type
    M = N * S
    for c in range(C):
        sg = 0.0
        sb = 0.0
        for n in range(N):
            for k in range(S):
                g = float(dy[n, c, k])
                sg += g * xhat[n, c, k]
                sb += g
        dgamma[c] = T(sg)
        dbeta[c] = T(sb)
        if need_dx:
            scale = float(gamma[c]) * float(invstd[c]) / M
            for n in range(N):
                for k in range(S):
                    dx[n, c, k] = T(scale * (M * float(dy[n, c, k]) - sb - xhat[n, c, k] * sg))
