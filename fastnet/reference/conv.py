"""Pure-NumPy reference for the convolution family: conv2d, max-pooling, dropout and the fused
ConvPool layer of the book's network3, forward and backward; the oracle for
``fastnet.kernels.conv_cpu``/``pool_cpu``/``conv_cuda`` and the ``device="numpy"`` path
(float64 inside, arrays of the input's dtype out). Images ``(n, c, h, w)``, weights
``w: (c_out, c_in, kh, kw)``, bias ``b: (c_out,)`` (docs/design.md); ``conv2d`` is a "valid"
cross-correlation, ``z[n, o, y, x] = b[o] + Σ_{c,i,j} w[o, c, i, j] · x[n, c, y + i, x + j]``
(the book's Theano conv2d is a true convolution: its weights load as ``w[..., ::-1, ::-1]``).
Max-pooling takes non-overlapping ``(ph, pw)`` windows, remainder dropped; its ``argmax``
(int32) is the flat index ``y * w + x``, in the pooled input's plane, of the first maximum.
Twins: the kernels' public maths functions under their names and signatures (the ``*_into``
forms write their out-parameters; ``nthreads`` and scratch are accepted and unused).
Tests: ``tests/test_twins.py`` (numpy | cpu | cuda-sim), ``tests/test_conv.py``.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from fastnet.kernels.config import SIGMOID
from fastnet.reference.dense import activation, derivative

F64 = np.float64


# ---------------------------------------------------------------------------- conv2d
def _conv64(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """float64 valid cross-correlation without bias: (n, c_in, h, w) → (n, c_out, oh, ow)."""
    kh, kw = w.shape[2:]
    patches = sliding_window_view(x.astype(F64), (kh, kw), axis=(2, 3))  # (n, c, oh, ow, kh, kw)
    return np.einsum("ncyxij,ocij->noyx", patches, w.astype(F64), optimize=True)


def _conv_backward64(x, w, dz, need_dx):
    """float64 gradients of the bias-free conv: (dx or None, dw, db) for dz (n, c_out, oh, ow)."""
    kh, kw = w.shape[2:]
    dz = dz.astype(F64)
    patches = sliding_window_view(x.astype(F64), (kh, kw), axis=(2, 3))
    dw = np.einsum("ncyxij,noyx->ocij", patches, dz, optimize=True)
    db = dz.sum(axis=(0, 2, 3))
    dx = None
    if need_dx:
        # dx is the "full" correlation of dz with the flipped filters: pad dz by (kh-1, kw-1).
        dz_pad = np.pad(dz, ((0, 0), (0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1)))
        windows = sliding_window_view(dz_pad, (kh, kw), axis=(2, 3))  # (n, c_out, h, w, kh, kw)
        dx = np.einsum("noyxij,ocij->ncyx", windows, w.astype(F64)[:, :, ::-1, ::-1],
                       optimize=True)
    return dx, dw, db


def conv2d_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Valid cross-correlation plus bias.

    x: (n, c_in, h, w); w: (c_out, c_in, kh, kw); b: (c_out,)
    → z: (n, c_out, h - kh + 1, w - kw + 1), x's dtype.
    """
    return (_conv64(x, w) + b.astype(F64)[:, None, None]).astype(x.dtype)


def conv2d_backward(x: np.ndarray, w: np.ndarray, dz: np.ndarray, need_dx: bool = True):
    """Gradients of ``conv2d_forward`` given ``dz = ∂C/∂z``.

    x: (n, c_in, h, w); w: (c_out, c_in, kh, kw); dz: (n, c_out, oh, ow)
    → (dx: (n, c_in, h, w) or None when ``need_dx`` is false, dw: like w, db: (c_out,)),
    all summed over the batch, x's dtype.
    """
    dx, dw, db = _conv_backward64(x, w, dz, need_dx)
    dt = x.dtype
    return (None if dx is None else dx.astype(dt)), dw.astype(dt), db.astype(dt)


# ---------------------------------------------------------------------------- max-pooling
def _windows(x: np.ndarray, size) -> np.ndarray:
    """(n, c, h, w) → (n, c, h//ph, w//pw, ph*pw): the pooling windows, remainder dropped."""
    ph, pw = size
    n, c, h, w = x.shape
    oh, ow = h // ph, w // pw
    t = x[:, :, :oh * ph, :ow * pw].reshape(n, c, oh, ph, ow, pw)
    return t.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, oh, ow, ph * pw)


def maxpool_forward(x: np.ndarray, size=(2, 2)):
    """Non-overlapping max-pooling, remainder rows/columns dropped.

    x: (n, c, h, w); size: (ph, pw)
    → y: (n, c, h // ph, w // pw), x's dtype;
      argmax: int32 (n, c, h // ph, w // pw), flat index ``yy * w + xx`` of each maximum in the
      (h, w) plane of x (first maximum in row-major window order on ties).
    """
    ph, pw = size
    win = _windows(x, size)
    k = win.argmax(axis=-1)                                    # index inside the window
    y = np.take_along_axis(win, k[..., None], axis=-1)[..., 0]
    oh, ow = k.shape[2:]
    rows = np.arange(oh)[:, None] * ph + k // pw               # input row of each maximum
    cols = np.arange(ow)[None, :] * pw + k % pw
    return y, (rows * x.shape[3] + cols).astype(np.int32)


def maxpool_backward(dy: np.ndarray, argmax: np.ndarray, x_shape) -> np.ndarray:
    """Route each ``dy`` to the input element that won its window; zeros elsewhere.

    dy: (n, c, oh, ow); argmax: int (n, c, oh, ow) as from ``maxpool_forward``;
    x_shape: (n, c, h, w) → dx: x_shape, dy's dtype.
    """
    n, c, h, w = x_shape
    dx = np.zeros((n, c, h * w), dy.dtype)
    np.put_along_axis(dx, argmax.reshape(n, c, -1).astype(np.intp), dy.reshape(n, c, -1), axis=2)
    return dx.reshape(x_shape)


# ---------------------------------------------------------------------------- dropout
def dropout_mask(shape, p: float, rng: np.random.Generator, dtype=np.float64) -> np.ndarray:
    """0/1 mask of ``shape``: each entry is 1 (kept) with probability ``1 - p``."""
    return (rng.random(shape) >= p).astype(dtype)


def dropout_forward(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Training-time dropout as in the book's network3: ``x * mask``, no rescaling."""
    return x * mask.astype(x.dtype, copy=False)


def dropout_backward(dy: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Gradient of ``dropout_forward``: ``dy * mask``."""
    return dy * mask.astype(dy.dtype, copy=False)


def dropout_inference(x: np.ndarray, p: float) -> np.ndarray:
    """Inference-time dropout layer: scale by the keep probability, ``(1 - p) * x``."""
    return (x * (1.0 - p)).astype(x.dtype, copy=False)


# ---------------------------------------------------------------------------- fused ConvPool
def convpool_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, pool=(2, 2),
                     act: int = SIGMOID):
    """The book's ConvPoolLayer: ``a = act(maxpool(conv(x, w)) + b)`` — bias AFTER pooling.

    x: (n, c_in, h, w); w: (c_out, c_in, kh, kw); b: (c_out,); pool: (ph, pw); act: an
    activation code from ``fastnet.kernels.config`` (linear, sigmoid, tanh, relu, softplus).
    With oh = (h - kh + 1) // ph and ow = (w - kw + 1) // pw, returns
    a: (n, c_out, oh, ow) the activation; z: (n, c_out, oh, ow) the pre-activation
    (pooled conv + bias); argmax: int32 (n, c_out, oh, ow) flat index into the conv output's
    (h - kh + 1, w - kw + 1) plane, as ``maxpool_forward`` gives it. z and argmax are what
    ``convpool_backward`` needs.
    """
    pooled, argmax = maxpool_forward(_conv64(x, w), pool)
    z = pooled + b.astype(F64)[:, None, None]
    a = activation(z, act)
    return a.astype(x.dtype), z.astype(x.dtype), argmax


def convpool_backward(x: np.ndarray, w: np.ndarray, z: np.ndarray, a: np.ndarray,
                      argmax: np.ndarray, da: np.ndarray, act: int = SIGMOID,
                      need_dx: bool = True):
    """Gradients of ``convpool_forward`` given ``da = ∂C/∂a``.

    x, w: as given to the forward; z, a, argmax: its outputs; da: (n, c_out, oh, ow).
    ``a`` is part of the signature so the kernels can use it (σ' = a(1 - a)); here σ' is taken
    from z. Returns (dx: like x, or None when ``need_dx`` is false — a first layer needs no dx;
    dw: like w; db: (c_out,)), summed over the batch, x's dtype.
    """
    kh, kw = w.shape[2:]
    n, _, h, wd = x.shape
    dz = da.astype(F64) * derivative(z.astype(F64), act)
    db = dz.sum(axis=(0, 2, 3))
    dconv = maxpool_backward(dz, argmax, (n, w.shape[0], h - kh + 1, wd - kw + 1))
    dx, dw, _ = _conv_backward64(x, w, dconv, need_dx)
    dt = x.dtype
    return (None if dx is None else dx.astype(dt)), dw.astype(dt), db.astype(dt)


# ---------------------------------------------------------------------------- kernel twins
def maxpool_forward_into(x, ph, pw, y, argmax):
    """y, argmax (n, c, h // ph, w // pw) (overwritten) = ``maxpool_forward(x, (ph, pw))``."""
    y[...], argmax[...] = maxpool_forward(x, (ph, pw))


def maxpool_backward_into(dy, argmax, dx):
    """dx (n, c, h, w) (overwritten) = ``maxpool_backward(dy, argmax, dx.shape)``."""
    dx[...] = maxpool_backward(dy, argmax, dx.shape)


def convpool_forward_into(x, w, b, ph, pw, act, a, z, argmax, nthreads):
    """a, z, argmax (n, c_out, oh, ow) (overwritten) = ``convpool_forward(x, w, b, (ph, pw),
    act)``."""
    a[...], z[...], argmax[...] = convpool_forward(x, w, b, (ph, pw), act)


def convpool_backward_into(x, w, z, a, argmax, da, act, dx, dw, db, nthreads):
    """dw, db and dx (overwritten) = ``convpool_backward``; dx is skipped when dx.shape[0] is 0
    (a first layer needs no dx)."""
    need_dx = dx.shape[0] > 0
    gx, dw[...], db[...] = convpool_backward(x, w, z, a, argmax, da, act, need_dx)
    if need_dx:
        dx[...] = gx
