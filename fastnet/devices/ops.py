"""Per-layer operations of the layer-by-layer path (``fastnet.devices.layerwise``): what a
layer's ``forward``/``backward`` (``fastnet.layers``) call, on one device's arrays.

``Ops`` lists them; ``NumpyOps`` (the reference, ``fastnet.reference``) and ``CpuOps`` (Numba
kernels) implement every one, ``CudaOps`` (``fastnet.devices.cuda``) too; the padding and
striding around the conv kernels (``HostLayout``) only the host sets so far (the cuda device
refuses a padded or strided ``Conv2D``). Every method
allocates and returns its outputs; arrays are C-contiguous, of the model's dtype, and live where
the op set computes (``upload``/``download`` move them). The CPU and NumPy sets keep data on the
host as NumPy arrays (``HostData``) and draw dropout masks with NumPy's generator.
"""

from __future__ import annotations

import abc
import contextlib

import numpy as np


class Ops(abc.ABC):
    """The operations, each abstract: an op set that lacks one cannot be made."""

    @abc.abstractmethod
    def running(self):
        """A context for a run of many op calls (an epoch, an evaluation)."""

    @abc.abstractmethod
    def upload(self, a): ...

    @abc.abstractmethod
    def download(self, a): ...

    @abc.abstractmethod
    def assign(self, dst, src):
        """Copy ``src`` into the existing array ``dst`` (a view into the gradient buffer)."""

    @abc.abstractmethod
    def take(self, x, idx):
        """Rows ``x[idx]`` (the mini-batch gather); ``idx`` is a host int64 array."""

    @abc.abstractmethod
    def dropout_forward(self, x, p, rng):
        """Training-time dropout: ``(x * mask, mask)``, each mask entry 1 (kept) with
        probability ``1 − p``, drawn from ``rng`` (a ``numpy.random.Generator``); no
        rescaling."""

    @abc.abstractmethod
    def dropout_backward(self, dout, mask): ...

    @abc.abstractmethod
    def scale(self, x, c):
        """``x · c`` (dropout at inference)."""

    @abc.abstractmethod
    def dense_forward(self, x, w, b):
        """``z = x @ w.T + b`` for x (B, n_in), w (n_out, n_in), b (n_out,)."""

    @abc.abstractmethod
    def activate(self, z, code):
        """``act(z)`` elementwise (softmax by row) for an activation code."""

    @abc.abstractmethod
    def act_backward(self, z, a, code, da):
        """∂C/∂z from ∂C/∂a for an elementwise activation."""

    @abc.abstractmethod
    def output_delta(self, z, a, y, loss, code):
        """∂C/∂z of the output layer for targets y and a loss code."""

    @abc.abstractmethod
    def dense_backward(self, x, w, dz, need_dx, out=None):
        """(dx or None, Σ∇w, Σ∇b) for z = x @ w.T + b; ``out=(gw, gb)`` are arrays the set may
        write the gradients into (or it returns new ones)."""

    @abc.abstractmethod
    def loss_and_correct(self, z, a, y, loss):
        """(summed cost as a float, number of rows whose argmax matches y's)."""

    @abc.abstractmethod
    def sgd_apply(self, params, grads, decayed, decay, scale):
        """params ← decay·params − scale·grads where ``decayed`` (weights), else
        params − scale·grads (biases); in place."""

    @abc.abstractmethod
    def conv2d_forward(self, x, w, b): ...

    @abc.abstractmethod
    def conv2d_backward(self, x, w, dz, need_dx): ...

    @abc.abstractmethod
    def maxpool_forward(self, x, size): ...

    @abc.abstractmethod
    def maxpool_backward(self, dy, argmax, x_shape): ...

    @abc.abstractmethod
    def convpool_forward(self, x, w, b, pool, code): ...

    @abc.abstractmethod
    def convpool_backward(self, x, w, z, a, argmax, da, code, need_dx): ...


class ConvFamily:
    """The convolution family's ops, passed straight through to the op set's ``_conv`` module
    (``fastnet.reference.conv``, ``kernels/conv_cpu.py`` or ``kernels/conv_cuda.py``, which
    share these signatures)."""

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


class NormFamily:
    """Batch normalization's ops over the op set's ``_norm`` module (``fastnet.reference.norm``,
    ``kernels/norm_cpu.py`` or ``kernels/norm_cuda.py``, which share their signatures, with
    out-parameters) and its ``_empty(shape, dtype)`` (where the arrays live): x is (B, C) or
    (B, C, h, w), seen as (B, C, S)."""

    def batchnorm_forward(self, x, gamma, beta, running_mean, running_var, train, momentum,
                          eps):
        """``(y, xhat, invstd)``: y in x's shape, xhat (B, C, S), invstd (C,); in training the
        running averages (views of the parameter buffer) move in place."""
        B, C = x.shape[:2]
        x3 = x.reshape(B, C, x.size // (B * C) if B * C else 1)
        y, xhat = self._empty(x3.shape, x.dtype), self._empty(x3.shape, x.dtype)
        invstd = self._empty((C,), x.dtype)
        self._norm.batchnorm_forward(x3, gamma, beta, running_mean, running_var, bool(train),
                                     float(momentum), float(eps), y, xhat, invstd)
        return y.reshape(x.shape), xhat, invstd

    def batchnorm_backward(self, xhat, invstd, gamma, dy, need_dx):
        """``(dx or None, Σ∂C/∂gamma, Σ∂C/∂beta)``; dy and dx in the layer's shape."""
        dy3 = dy.reshape(xhat.shape)
        dx = self._empty(xhat.shape, dy.dtype) if need_dx else dy3[:0]
        dgamma, dbeta = self._empty(gamma.shape, gamma.dtype), \
            self._empty(gamma.shape, gamma.dtype)
        self._norm.batchnorm_backward(xhat, invstd, gamma, dy3, bool(need_dx), dx, dgamma,
                                      dbeta)
        return (dx.reshape(dy.shape) if need_dx else None), dgamma, dbeta

    @staticmethod
    def _empty(shape, dtype):
        return np.empty(shape, dtype=dtype)


class HostLayout:
    """Padding and striding around the conv kernels (``Conv2D(stride=, padding=)``), by NumPy
    on host arrays x (n, c, h, w): every result a new C-contiguous array."""

    def pad2d(self, x, pads):
        """x with ``pads = (top, bottom, left, right)`` zeros around each plane."""
        top, bottom, left, right = pads
        out = np.zeros(x.shape[:2] + (x.shape[2] + top + bottom, x.shape[3] + left + right),
                       dtype=x.dtype)
        out[:, :, top:top + x.shape[2], left:left + x.shape[3]] = x
        return out

    def crop2d(self, x, pads):
        """The inverse of ``pad2d``: the planes without their ``pads``."""
        top, bottom, left, right = pads
        return np.ascontiguousarray(x[:, :, top:x.shape[2] - bottom, left:x.shape[3] - right])

    def stride2d(self, z, stride):
        """Every stride-th value of each plane, from the first: ``z[:, :, ::sh, ::sw]``."""
        return np.ascontiguousarray(z[:, :, ::stride[0], ::stride[1]])

    def unstride2d(self, dz, stride, hw):
        """The adjoint of ``stride2d``: planes of size ``hw``, dz at every stride-th value,
        zero elsewhere."""
        out = np.zeros(dz.shape[:2] + tuple(hw), dtype=dz.dtype)
        out[:, :, ::stride[0], ::stride[1]] = dz
        return out


class HostData:
    """Data movement, gathers and dropout for op sets whose arrays are host NumPy arrays."""

    def upload(self, a):
        return a

    def download(self, a):
        return a

    def assign(self, dst, src):
        dst[...] = src

    def take(self, x, idx):
        return x[idx]

    def dropout_forward(self, x, p, rng):
        from fastnet.reference.conv import dropout_mask
        mask = dropout_mask(x.shape, p, rng, dtype=x.dtype)
        return x * mask, mask

    def dropout_backward(self, dout, mask):
        return dout * mask

    def scale(self, x, c):
        return x * x.dtype.type(c)


class NumpyOps(HostData, HostLayout, ConvFamily, NormFamily, Ops):
    """The reference: ``fastnet.reference.dense``, ``.conv`` and ``.norm`` in NumPy."""

    def __init__(self):
        from fastnet.reference import conv, dense, norm
        self._dense, self._conv, self._norm = dense, conv, norm

    def running(self):
        return contextlib.nullcontext()

    def dense_forward(self, x, w, b):
        return (x @ w.T + b).astype(x.dtype, copy=False)

    def activate(self, z, code):
        return self._dense.activation(z, code).astype(z.dtype, copy=False)

    def act_backward(self, z, a, code, da):
        return (da * self._dense.derivative(z, code)).astype(z.dtype, copy=False)

    def output_delta(self, z, a, y, loss, code):
        return self._dense.output_delta(z, a, y, loss, code).astype(z.dtype, copy=False)

    def dense_backward(self, x, w, dz, need_dx, out=None):
        dx = (dz @ w) if need_dx else None
        return dx, dz.T @ x, dz.sum(axis=0)

    def loss_and_correct(self, z, a, y, loss):
        c = self._dense.cost(z, a, y, loss).sum()
        return float(c), int((a.argmax(axis=1) == y.argmax(axis=1)).sum())

    def sgd_apply(self, params, grads, decayed, decay, scale):
        if decay != 1.0:
            params[decayed] *= decay
        params -= scale * grads

    def optimizer_step(self, params, grads, decayed, gscale, l2, lr, code, hyper, state, step):
        """``fastnet.reference.optim.optimizer_step`` (an optimizer other than SGD)."""
        from fastnet.reference import optim
        optim.optimizer_step(params, grads, decayed, gscale, l2, lr, code, hyper, state, step)


class CpuOps(HostData, HostLayout, ConvFamily, NormFamily, Ops):
    """Numba kernels (``dense_cpu``, ``conv_cpu``, ``norm_cpu``, ``sgd_cpu``) on Numba's
    threads (``numba.get_num_threads()`` of the calling thread)."""

    def __init__(self):
        from fastnet.kernels import conv_cpu, dense_cpu, norm_cpu, sgd_cpu
        self._k, self._conv, self._norm, self._sgd = dense_cpu, conv_cpu, norm_cpu, sgd_cpu

    def running(self):
        """NumPy's BLAS at one thread while a layer-by-layer epoch alternates BLAS products
        with the Numba kernels: a BLAS pool spinning after each product starves Numba's
        threads (docs/kernels.md). threadpoolctl finds whichever BLAS NumPy loaded."""
        import threadpoolctl
        return threadpoolctl.threadpool_limits(limits=1, user_api="blas")

    @staticmethod
    def _threads() -> int:
        import numba
        return numba.get_num_threads()

    def dense_forward(self, x, w, b):
        z = np.empty((x.shape[0], w.shape[0]), dtype=x.dtype)
        self._k.dense_forward_par(x, w, b, z, self._threads())
        return z

    def dense_backward(self, x, w, dz, need_dx, out=None):
        """Writes the gradients into ``out`` when given (no copy into the gradient buffer)."""
        gw, gb = out if out is not None else (np.empty_like(w), np.empty(w.shape[0], w.dtype))
        dx = np.empty_like(x) if need_dx else x[:0]
        self._k.dense_backward_par(x, w, dz, dx, gw, gb, need_dx, self._threads())
        return (dx if need_dx else None), gw, gb

    def dense_backward_sgd(self, x, w, b, dz, need_dx, scale, decay):
        """``dense_backward`` and this layer's SGD step in one kernel
        (``dense_cpu.dense_backward_sgd_par``): returns dx (from the weights before the step)
        and updates w ← decay·w − scale·gw, b ← b − scale·gb in place (views of the parameter
        buffer): no gradient buffer and no separate update pass over the layer."""
        dx = np.empty_like(x) if need_dx else x[:0]
        self._k.dense_backward_sgd_par(x, w, b, dz, dx, need_dx, w.dtype.type(scale),
                                       w.dtype.type(decay), self._threads())
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
                            params.dtype.type(scale), self._threads())

    def optimizer_step(self, params, grads, decayed, gscale, l2, lr, code, hyper, state, step):
        """``kernels/optim_cpu.optimizer_step`` (an optimizer other than SGD; one thread)."""
        from fastnet.kernels import optim_cpu
        optim_cpu.optimizer_step(params, grads, decayed, gscale, l2, lr, code, hyper, state,
                                 step)
