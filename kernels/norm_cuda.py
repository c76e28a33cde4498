"""Batch normalization on the GPU (numba.cuda), behind ``norm_cpu``'s names and signatures:
``batchnorm_forward`` (batch statistics and the running averages in training, the running
averages at inference) and ``batchnorm_backward`` (the Σ-gradients of gamma and beta, the input
gradient through the batch statistics). One block per feature sums its M = N·S values (two
passes for the variance) into float64 shared memory; an elementwise grid-stride launch then
normalises, or forms dx.

Shapes: ``x, y, xhat, dy, dx: [N, C, S]`` C-contiguous device arrays; ``gamma, beta,
running_mean, running_var, invstd, dgamma, dbeta: [C]`` device arrays; every one of the
model's dtype. NumPy twin: ``fastnet.reference.norm``. Tests: ``tests/test_twins.py`` ("norm"
family, cuda-sim) under Numba's CUDA simulator, and ``tests/test_batchnorm.py``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64

from . import config
from .scalar_cuda import device_fn, quiet_launch

TPB = config.THREADS_PER_BLOCK       # a power of two: the block sums halve it
_kernel_cache: dict = {}


@device_fn
def _block_sum(shared, value, t):
    """Σ of ``value`` over the block's threads (``shared``: float64[TPB]), returned to every
    thread; ``shared`` is free again when it returns."""
    shared[t] = value
    cuda.syncthreads()
    half = TPB // 2
    while half > 0:
        if t < half:
            shared[t] += shared[t + half]
        cuda.syncthreads()
        half //= 2
    total = shared[0]
    cuda.syncthreads()
    return total


def kernels(dtype):
    """The kernels for ``dtype`` (float32 or float64), compiled on first launch."""
    dtype = np.dtype(dtype)
    if dtype in _kernel_cache:
        return _kernel_cache[dtype]
    DT = dtype.type

    @cuda.jit
    def stats(x, train, momentum, eps, running_mean, running_var, mean64, inv64, invstd):
        """Block c: feature c's μ and 1/√(σ² + eps) (float64, and invstd in DT); in training
        the running averages move (unbiased σ²·M/(M − 1))."""
        c, t = cuda.blockIdx.x, cuda.threadIdx.x
        N, _, S = x.shape
        M = N * S
        shared = cuda.shared.array(TPB, float64)
        if train:
            s = 0.0
            for e in range(t, M, TPB):
                s += x[e // S, c, e % S]
            mean = _block_sum(shared, s, t) / M
            q = 0.0
            for e in range(t, M, TPB):
                d = x[e // S, c, e % S] - mean
                q += d * d
            var = _block_sum(shared, q, t) / M
        else:
            mean = float64(running_mean[c])
            var = float64(running_var[c])
        if t == 0:
            if train and M > 1:   # one value has no variance to learn from (fit refuses it)
                unbiased = var * M / (M - 1)
                running_mean[c] = DT((1.0 - momentum) * running_mean[c] + momentum * mean)
                running_var[c] = DT((1.0 - momentum) * running_var[c] + momentum * unbiased)
            inv = 1.0 / math.sqrt(var + eps)
            mean64[c] = mean
            inv64[c] = inv
            invstd[c] = DT(inv)

    @cuda.jit
    def normalize(x, gamma, beta, mean64, inv64, y, xhat):
        N, C, S = x.shape
        for e in range(cuda.grid(1), N * C * S, cuda.gridsize(1)):
            n, r = e // (C * S), e % (C * S)
            c, k = r // S, r % S
            h = (x[n, c, k] - mean64[c]) * inv64[c]
            xhat[n, c, k] = DT(h)
            y[n, c, k] = DT(gamma[c] * h + beta[c])

    @cuda.jit
    def sums(xhat, dy, dgamma, dbeta, sg64, sb64):
        """Block c: Σ dy·xhat and Σ dy over feature c's values."""
        c, t = cuda.blockIdx.x, cuda.threadIdx.x
        N, _, S = xhat.shape
        M = N * S
        shared = cuda.shared.array(TPB, float64)
        sg, sb = 0.0, 0.0
        for e in range(t, M, TPB):
            g = float64(dy[e // S, c, e % S])
            sg += g * xhat[e // S, c, e % S]
            sb += g
        sg = _block_sum(shared, sg, t)
        sb = _block_sum(shared, sb, t)
        if t == 0:
            dgamma[c] = DT(sg)
            dbeta[c] = DT(sb)
            sg64[c] = sg
            sb64[c] = sb

    @cuda.jit
    def input_gradient(xhat, invstd, gamma, dy, sg64, sb64, dx):
        N, C, S = xhat.shape
        M = N * S
        for e in range(cuda.grid(1), N * C * S, cuda.gridsize(1)):
            n, r = e // (C * S), e % (C * S)
            c, k = r // S, r % S
            scale = float64(gamma[c]) * float64(invstd[c]) / M
            dx[n, c, k] = DT(scale * (M * float64(dy[n, c, k]) - sb64[c] -
                                      xhat[n, c, k] * sg64[c]))

    ns = dict(stats=stats, normalize=normalize, sums=sums, input_gradient=input_gradient)
    _kernel_cache[dtype] = ns
    return ns


def _elementwise(n: int) -> int:
    from .layers_cuda import blocks_for
    return blocks_for(n)


def batchnorm_forward(x, gamma, beta, running_mean, running_var, train, momentum, eps, y,
                      xhat, invstd):
    """``norm_cpu.batchnorm_forward`` on device arrays (``y``, ``xhat``, ``invstd`` written)."""
    C = x.shape[1]
    k = kernels(x.dtype)
    mean64 = cuda.device_array(C, dtype=np.float64)
    inv64 = cuda.device_array(C, dtype=np.float64)
    quiet_launch(k["stats"], C, TPB, x, bool(train), float(momentum), float(eps),
                 running_mean, running_var, mean64, inv64, invstd)
    if x.size:
        quiet_launch(k["normalize"], _elementwise(x.size), TPB, x, gamma, beta, mean64, inv64,
                     y, xhat)


def batchnorm_backward(xhat, invstd, gamma, dy, need_dx, dx, dgamma, dbeta):
    """``norm_cpu.batchnorm_backward`` on device arrays (``dgamma``, ``dbeta`` and, with
    ``need_dx``, ``dx`` written)."""
    C = xhat.shape[1]
    k = kernels(xhat.dtype)
    sg64 = cuda.device_array(C, dtype=np.float64)
    sb64 = cuda.device_array(C, dtype=np.float64)
    quiet_launch(k["sums"], C, TPB, xhat, dy, dgamma, dbeta, sg64, sb64)
    if need_dx and xhat.size:
        quiet_launch(k["input_gradient"], _elementwise(xhat.size), TPB, xhat, invstd, gamma,
                     dy, sg64, sb64, dx)
