"""The ``"cuda"`` device's kernel sets, on numba.cuda device arrays: ``CudaDense`` (a dense
stack's whole epoch in one cooperative launch, ``kernels/dense_cuda.py``) and ``CudaOps`` (the
layer-by-layer ops, ``kernels/layers_cuda.py``, ``conv_cuda.py`` and ``norm_cuda.py``).

Same methods, arguments and results as ``fastnet.devices.dense.NumpyDense`` and
``fastnet.devices.ops.NumpyOps``; every kernel returns new C-contiguous device arrays of the
input's dtype. Only ``download``, ``evaluate``/``loss_and_correct`` (two numbers) and ``take``'s
index upload move data between host and device. Dropout masks come from a counter-based hash on
the device, keyed per call from the caller's seeded generator (``rng.integers(2**63)``): a seeded
model repeats its masks, which differ from ``NumpyOps``'.

Made only when a model asks for ``device="cuda"``; ``require_cuda()`` raises a clear error when
numba-cuda or a GPU is missing (Numba's CUDA simulator counts as present).
"""

from __future__ import annotations

import contextlib

import numpy as np

from fastnet.devices.ops import ConvFamily, NormFamily, Ops
from fastnet.kernels.cuda_target import require_cuda, to_device, to_host


class CudaDense:
    """``kernels/dense_cuda.py``: each epoch one cooperative launch; evaluation brings back
    two numbers (summed cost, number correct)."""

    def __init__(self):
        self._cuda = require_cuda()
        from fastnet.kernels import dense_cuda
        self._k = dense_cuda

    def upload(self, a):
        return to_device(a)

    def download(self, a):
        return to_host(a)

    on_host = False

    def inputs(self, x, threads):
        return to_device(x)

    def epoch_threads(self, layout, batch_size) -> int:
        return 1                          # host threads: the GPU runs the epoch

    def train_epoch(self, params, layout, acts, loss, x, y, order, batch_size, lr, decay,
                    threads, sync=None):
        """One cooperative launch: ``sync`` (progress, stop) cannot reach it."""
        self._k.train_epoch(params, layout, acts, loss, x, y, order, batch_size, lr, decay)

    def evaluate(self, params, layout, acts, loss, x, y, threads):
        return self._k.loss_and_correct(params, layout, acts, loss, x, y)

    def predict(self, params, layout, acts, x, threads):
        return self._k.forward(params, layout, acts, x).copy_to_host()


class CudaOps(ConvFamily, NormFamily, Ops):
    def __init__(self):
        self._cuda = require_cuda()
        from fastnet.kernels import conv_cuda, layers_cuda, norm_cuda
        self._k, self._conv, self._norm = layers_cuda, conv_cuda, norm_cuda

    def _empty(self, shape, dtype):
        """A device array (NormFamily's outputs live on the device)."""
        return self._cuda.device_array(tuple(shape), dtype=dtype)

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

    def optimizer_step(self, params, grads, decayed, gscale, l2, lr, code, hyper, state, step):
        """``optim_cpu.optimizer_step`` on the device (``state`` a device array)."""
        self._k.optimizer_step(params, grads, decayed, gscale, l2, lr, code, hyper, state, step)

