"""Per-layer operations for the layer-by-layer training path (models with convolution, pooling,
dropout or flatten layers; pure dense stacks use the fused epoch kernels instead).

Op sets with the same methods: ``NumpyOps`` (the reference, ``fastnet.reference``), ``CpuOps``
(Numba kernels from ``fastnet.kernels``) and, for device "cuda", ``fastnet._cuda_ops.CudaOps``
(numba.cuda kernels on device arrays). Every method allocates and returns its outputs; arrays
are C-contiguous and of the model's dtype, and live where the op set computes (``upload`` /
``download`` move them).
"""

from __future__ import annotations

import contextlib

import numba
import numpy as np
import threadpoolctl


class ConvFamilyOps:
    """The convolution family's ops, shared by every op set: each passes straight through to
    the op set's ``_conv`` module (``fastnet.reference.conv``, ``kernels/conv_cpu.py`` or
    ``kernels/conv_cuda.py``, which share these signatures)."""

    def conv2d_forward(self, x, w, b):
        return self._conv.conv2d_forward(x, w, b)

    def conv2d_backward(self, x, w, dz, need_dx):
        return self._conv.conv2d_backward(x, w, dz, need_dx)

    def maxpool_forward(self, x, size):
        return self._conv.maxpool_forward(x, size)

    def maxpool_backward(self, dy, argmax, x_shape):
        return self._conv.maxpool_backward(dy, argmax, x_shape)

    def convpool_forward(self, x, w, b, pool, code):
        return self._conv.convpool_forward(x, w, b, pool, code)

    def convpool_backward(self, x, w, z, a, argmax, da, code, need_dx):
        return self._conv.convpool_backward(x, w, z, a, argmax, da, code, need_dx)


class NumpyOps(ConvFamilyOps):
    name = "numpy"

    def __init__(self):
        from fastnet.reference import conv, dense
        self._dense, self._conv = dense, conv

    # data movement ----------------------------------------------------------
    def running(self):
        """Context for a run of many op calls (an epoch, an evaluation)."""
        return contextlib.nullcontext()

    def upload(self, a):
        return a

    def download(self, a):
        return a

    def assign(self, dst, src):
        """Copy ``src`` into the existing array ``dst`` (a view into the gradient buffer)."""
        dst[...] = src

    def take(self, x, idx):
        """Rows ``x[idx]`` (the mini-batch gather); ``idx`` is a host int64 array."""
        return x[idx]

    # dropout ------------------------------------------------------------------
    def dropout_forward(self, x, p, rng):
        """Training-time dropout: ``(x * mask, mask)`` with mask 1 (kept) with probability
        ``1 − p``, drawn from ``rng`` (a ``numpy.random.Generator``); no rescaling."""
        from fastnet.reference.conv import dropout_mask
        mask = dropout_mask(x.shape, p, rng, dtype=x.dtype)
        return x * mask, mask

    def dropout_backward(self, dout, mask):
        return dout * mask

    def scale(self, x, c):
        return x * x.dtype.type(c)

    # dense ---------------------------------------------------------------
    def dense_forward(self, x, w, b):
        return (x @ w.T + b).astype(x.dtype, copy=False)

    def activate(self, z, code):
        return self._dense.activation(z, code).astype(z.dtype, copy=False)

    def act_backward(self, z, a, code, da):
        """∂C/∂z from ∂C/∂a for an elementwise activation."""
        return (da * self._dense.activation_prime(z, code)).astype(z.dtype, copy=False)

    def output_delta(self, z, a, y, loss, code):
        return self._dense.output_delta(z, a, y, loss, code).astype(z.dtype, copy=False)

    def dense_backward(self, x, w, dz, need_dx, out=None):
        """(dx or None, Σ∇w, Σ∇b) for z = x @ w.T + b; ``out=(gw, gb)`` are arrays to write
        the gradients into (an op set may ignore it and return new arrays)."""
        dx = (dz @ w) if need_dx else None
        return dx, dz.T @ x, dz.sum(axis=0)

    def loss_and_correct(self, z, a, y, loss):
        c = self._dense.cost(z, a, y, loss).sum()
        return float(c), int((a.argmax(axis=1) == y.argmax(axis=1)).sum())

    def sgd_apply(self, params, grads, decayed, decay, scale):
        """params ← decay·params − scale·grads where ``decayed`` (weights), else
        params − scale·grads (biases)."""
        if decay != 1.0:
            params[decayed] *= decay
        params -= scale * grads


class CpuOps(NumpyOps):
    """Numba kernels, on Numba's threads where they pay (dense layers, convolutions)."""

    name = "cpu"

    def running(self):
        """OpenBLAS at one thread while a layer-by-layer epoch alternates BLAS products with
        the (two-thread) Numba kernels: OpenBLAS's threads spin after each product and starve
        Numba's (measured on the 2-core machine, book CNN at mini-batch 10: 13.6 ms per step
        with both pools at 2 threads, 2.2 ms with Numba's at 1, 1.6 ms with OpenBLAS's at 1;
        mini-batch 100: 13.3 and 11.8 ms for the last two). threadpoolctl finds the BLAS that
        NumPy loaded, whichever it is."""
        return threadpoolctl.threadpool_limits(limits=1, user_api="blas")

    def __init__(self):
        from fastnet.kernels import conv_cpu, dense_cpu, sgd_cpu
        self._k, self._conv, self._sgd = dense_cpu, conv_cpu, sgd_cpu

    def dense_forward(self, x, w, b):
        z = np.empty((x.shape[0], w.shape[0]), dtype=x.dtype)
        self._k.dense_forward_par(x, w, b, z, numba.get_num_threads())
        return z

    def dense_backward(self, x, w, dz, need_dx, out=None):
        """The Numba kernels on Numba's threads, writing the gradients into ``out`` when
        given (no copy into the gradient buffer). Faster than BLAS on one thread (which is what
        ``running`` leaves it) at every batch size here: book CNN's 2880→100 layer, float32,
        mini-batch 10: 287 µs vs 483 µs, mini-batch 100: 2.4 ms vs 3.8 ms (2 threads)."""
        gw, gb = out if out is not None else (np.empty_like(w), np.empty(w.shape[0], w.dtype))
        dx = np.empty_like(x) if need_dx else x[:0]
        self._k.dense_backward_par(x, w, dz, dx, gw, gb, need_dx, numba.get_num_threads())
        return (dx if need_dx else None), gw, gb

    def dense_backward_sgd(self, x, w, b, dz, need_dx, scale, decay):
        """``dense_backward`` and this layer's SGD step in one kernel
        (``dense_cpu.dense_backward_sgd_par``): returns dx (from the weights before the step)
        and updates w ← decay·w − scale·gw, b ← b − scale·gb in place (views of the parameter
        buffer). No gradient buffer and no separate SGD pass over the layer: the chapter-6
        dropout network's layer-by-layer step at mini-batch 10 goes from 7.3-8.0 to 6.0-6.7 ms.
        CPU only (the model uses it only here)."""
        dx = np.empty_like(x) if need_dx else x[:0]
        self._k.dense_backward_sgd_par(x, w, b, dz, dx, need_dx, w.dtype.type(scale),
                                       w.dtype.type(decay), numba.get_num_threads())
        return dx if need_dx else None

    def activate(self, z, code):
        """act(z) for z[B, ...] (a conv layer's output is 4-D: the kernel takes rows)."""
        a = np.empty_like(z)
        self._k.activate(z.reshape(z.shape[0], -1), a.reshape(a.shape[0], -1), code)
        return a

    def act_backward(self, z, a, code, da):
        dz = da.copy()
        self._k.activation_prime(z.reshape(z.shape[0], -1), a.reshape(a.shape[0], -1), code,
                                 dz.reshape(dz.shape[0], -1))
        return dz

    def output_delta(self, z, a, y, loss, code):
        d = np.empty_like(z)
        self._k.output_delta(z, a, y, loss, code, d)
        return d

    def loss_and_correct(self, z, a, y, loss):
        total, correct = self._k.loss_and_correct(z, a, y, loss)
        return float(total), int(correct)

    def sgd_apply(self, params, grads, decayed, decay, scale):
        self._sgd.sgd_apply(params, grads, decayed, params.dtype.type(decay),
                            params.dtype.type(scale), numba.get_num_threads())


_OPS: dict[str, NumpyOps] = {}


def get_ops(name: str) -> NumpyOps:
    """The op set for backend ``name`` ("numpy", "cpu" or "cuda"), created on first use."""
    if name not in _OPS:
        if name == "numpy":
            _OPS[name] = NumpyOps()
        elif name == "cpu":
            _OPS[name] = CpuOps()
        elif name == "cuda":
            from fastnet._cuda_ops import CudaOps
            _OPS[name] = CudaOps()
        else:
            raise ValueError(f"device must be 'cpu', 'cuda' or 'numpy', got {name!r}")
    return _OPS[name]
