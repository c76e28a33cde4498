"""``CudaOps``: the op set for device "cuda" in the layer-by-layer training path (models with
convolution, pooling, dropout or flatten layers), on numba.cuda device arrays.

Same methods, arguments and results as ``fastnet.ops.NumpyOps`` (the reference); every method
launches kernels from ``fastnet.kernels.layers_cuda`` / ``conv_cuda`` and returns new
C-contiguous device arrays of the input's dtype (so ``reshape`` works on them, as ``Flatten``
needs). Only ``download``, ``loss_and_correct`` (two numbers) and ``take``'s index upload move
data between host and device; the parameters, gradients and data stay on the device for the
whole ``fit``.

Dropout masks come from a counter-based hash on the device; each call draws its key from the
caller's seeded generator (``rng.integers(2**63)``), so a seeded model repeats its masks — but
they differ from ``NumpyOps``' (which draws ``rng.random(shape)``).

Created only through ``fastnet.ops.get_ops("cuda")``; ``require_cuda()`` raises a clear error
when numba-cuda or a GPU is missing (Numba's CUDA simulator counts as present).
"""

from __future__ import annotations

import contextlib

import numpy as np

from fastnet._cuda import require_cuda, to_device, to_host
from fastnet.ops import ConvFamilyOps


class CudaOps(ConvFamilyOps):
    name = "cuda"

    def __init__(self):
        self._cuda = require_cuda()
        from fastnet.kernels import conv_cuda, layers_cuda
        self._k, self._conv = layers_cuda, conv_cuda

    # data movement ----------------------------------------------------------
    def upload(self, a):
        return to_device(a)

    def download(self, a):
        return to_host(a)

    def running(self):
        return contextlib.nullcontext()

    def assign(self, dst, src):
        """Copy device array ``src`` into the device view ``dst`` (device arrays do not take
        ``dst[...] = src``)."""
        dst.copy_to_device(src)

    def take(self, x, idx):
        """Rows ``x[idx]`` (the mini-batch gather); ``idx`` is a host int64 array."""
        idx = np.asarray(idx, dtype=np.int64)
        n = x.shape[0]
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"take: index out of range for {n} rows")
        idx = np.where(idx < 0, idx + n, idx)   # numpy's negative indices
        return self._k.take(x, self._cuda.to_device(np.ascontiguousarray(idx)))

    # dropout ------------------------------------------------------------------
    def dropout_forward(self, x, p, rng):
        """Training-time dropout: ``(x * mask, mask)`` with mask 1 (kept) with probability
        ``1 − p``; the call's key is drawn from ``rng`` (a ``numpy.random.Generator``)."""
        return self._k.dropout_forward(x, p, int(rng.integers(2 ** 63)))

    def dropout_backward(self, dout, mask):
        return self._k.mul(dout, mask)

    def scale(self, x, c):
        return self._k.scale(x, c)

    # dense ---------------------------------------------------------------
    def dense_forward(self, x, w, b):
        return self._k.dense_forward(x, w, b)

    def activate(self, z, code):
        return self._k.activate(z, code)

    def act_backward(self, z, a, code, da):
        """∂C/∂z from ∂C/∂a for an elementwise activation."""
        return self._k.act_backward(z, a, code, da)

    def output_delta(self, z, a, y, loss, code):
        return self._k.output_delta(z, a, y, loss, code)

    def dense_backward(self, x, w, dz, need_dx, out=None):
        """(dx or None, Σ∇w, Σ∇b) for z = x @ w.T + b (``out`` is ignored: new arrays)."""
        return self._k.dense_backward(x, w, dz, need_dx)

    def loss_and_correct(self, z, a, y, loss):
        return self._k.loss_and_correct(z, a, y, loss)

    def sgd_apply(self, params, grads, decayed, decay, scale):
        """params ← decay·params − scale·grads where ``decayed`` (weights), else
        params − scale·grads (biases); in place on the device."""
        self._k.sgd_apply(params, grads, decayed, decay, scale)

