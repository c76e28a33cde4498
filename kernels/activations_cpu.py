"""The activations on the CPU (Numba ``@njit``), one module for every kernel that applies one:
a[B, n] = act(z) row by row (``activate``; softmax row-wise) or as one run (``activate_flat``),
out *= act'(z) (``activation_prime``), one element (``act``, ``act_prime``) and a conv plane
(``act_plane``, float[m]). The code (``config``: linear, sigmoid, tanh, relu, softplus,
softmax) is tested outside the loops so each loop is branch-free and vectorises. The sigmoid
is a branch-free polynomial (``sigmoid``); a float32 plane's, one in vector passes through a
scratch (``act_plane``). Used by ``dense_cpu`` (and the epochs through it), ``pool_cpu`` and
``conv_cpu``; the CUDA activations: ``layers_cuda``.

NumPy twin: ``fastnet.reference.dense`` (``activate``, ``activate_flat``,
``activation_prime``, ``act_plane``; ``activation``/``derivative`` for whole arrays).
Tests: ``tests/test_twins.py`` (activations), ``tests/test_dense.py`` (NaN, the sigmoid's range).
"""

import math

import numpy as np
from numba import njit

from . import config
from .config import RELU, SIGMOID, SOFTMAX, SOFTPLUS, TANH
from .simd import exp_floor, is_float32, pow2, rows_of

_jit = njit(**config.CPU_JIT)
_lite = njit(**config.CPU_LITE)  # no reference counting (config.CPU_LITE)


# --------------------------------------------------------------------------- scalar helpers
@njit(**config.CPU_JIT, inline="always")
def _sigmoid_body(z):
    """σ(z) = 1/(1 + e^−z) without branches or libm calls, so loops over it vectorise.

    e = exp(−|z|) ∈ (0, 1] (no overflow for any z) by range reduction t = n·ln2 + r, |r| ≤ ln2/2,
    and a Taylor polynomial, scaled by 2**n built from bits: degree 12 in float64 (relative
    error < 2e-16), degree 7 in float32 (< 6e-9, below float32's rounding; 5 fewer FMAs per
    element); −|z| is clamped where e^t would leave the normal range (σ there is < 1e-38 or
    1 − 1e-38). σ = 1/(1 + e) for z ≥ 0, e/(1 + e) otherwise. NaN stays NaN.

    Inlined (Numba IR) into ``_sigmoid32`` and ``_sigmoid64``, which differ only in their
    fastmath flags."""
    T = type(z)
    t = -abs(z)
    lo = exp_floor(z)
    t = lo if t < lo else t  # NaN passes through to the final select
    n = np.floor(t * T(1.4426950408889634) + T(0.5))
    r = t - n * T(0.6931471803691238) - n * T(1.9082149292705877e-10)
    if is_float32(z):
        p = T(1.0 / 5040.0)
    else:
        p = T(1.0 / 479001600.0)
        p = p * r + T(1.0 / 39916800.0)
        p = p * r + T(1.0 / 3628800.0)
        p = p * r + T(1.0 / 362880.0)
        p = p * r + T(1.0 / 40320.0)
        p = p * r + T(1.0 / 5040.0)
    p = p * r + T(1.0 / 720.0)
    p = p * r + T(1.0 / 120.0)
    p = p * r + T(1.0 / 24.0)
    p = p * r + T(1.0 / 6.0)
    p = p * r + T(0.5)
    p = p * r + T(1.0)
    p = p * r + T(1.0)
    e = p * pow2(n)
    s = T(1.0) / (T(1.0) + e)
    out = s if z >= 0 else e * s
    return z if z != z else out


@_jit
def _sigmoid32(z):
    return _sigmoid_body(z)


# Without "reassoc": it let LLVM merge the two-part ln2 (Cody-Waite) subtraction, r = t − n·ln2_hi
# − n·ln2_lo, into one product, so r lost ~|n| ulps and σ's float64 relative error grew with
# |z| (2.4e-14 near z = −700, 30 ulps at −100; 5e-16 at most so). float32 keeps it: its
# error (~3e-7, a few float32 ulps) is the same either way, and the sigmoid runs faster.
@njit(**dict(config.CPU_JIT, fastmath=config.FASTMATH - {"reassoc"}))
def _sigmoid64(z):
    return _sigmoid_body(z)


@_jit
def sigmoid(z):
    """σ(z) = 1/(1 + e^−z) for a float32 or float64 z: see ``_sigmoid_body``."""
    if is_float32(z):
        return _sigmoid32(z)
    return _sigmoid64(z)


@_jit
def softplus(z):
    """log(1 + e^z) without overflow: exp is only taken of −|z|."""
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))


# ------------------------------------------------------------------------------ activations
@_lite
def activate(z, a, code):
    """a[B, n] (overwritten) = act(z[B, n]); softmax is row-wise with the row max subtracted.
    The code is tested outside the loops so each loop is branch-free and vectorises."""
    B, n = z.shape
    if code == SOFTMAX:
        for i in range(B):
            zmax = z[i, 0]
            for j in range(1, n):
                zmax = max(zmax, z[i, j])
            s = 0.0
            for j in range(n):
                e = math.exp(z[i, j] - zmax)
                a[i, j] = e
                s += e
            inv = 1.0 / s
            for j in range(n):
                a[i, j] *= inv
    elif code == SIGMOID:
        for i in range(B):
            for j in range(n):
                a[i, j] = sigmoid(z[i, j])
    elif code == TANH:
        for i in range(B):
            for j in range(n):
                a[i, j] = math.tanh(z[i, j])
    elif code == RELU:
        for i in range(B):
            for j in range(n):
                v = z[i, j]
                a[i, j] = 0.0 if v <= 0 else v   # NaN stays NaN, as np.maximum(z, 0)
    elif code == SOFTPLUS:
        for i in range(B):
            for j in range(n):
                a[i, j] = softplus(z[i, j])
    else:
        for i in range(B):
            for j in range(n):
                a[i, j] = z[i, j]


@_lite
def activate_flat(z, a, code):
    """``activate`` for C-contiguous z, a[B, n] and an element-wise code (not softmax), as one
    run of B·n elements: short rows (n = 10) otherwise leave the vector loop mostly idle."""
    B, n = z.shape
    activate(rows_of(z, 0, 1, B * n), rows_of(a, 0, 1, B * n), code)


@_lite
def activation_prime(z, a, code, out):
    """out[B, n] (multiplied in place) *= σ'(z), using the stored activation a where cheaper."""
    B, n = z.shape
    one = out.dtype.type(1)
    if code == SIGMOID:
        for i in range(B):
            for j in range(n):
                out[i, j] *= a[i, j] * (one - a[i, j])
    elif code == TANH:
        for i in range(B):
            for j in range(n):
                out[i, j] *= one - a[i, j] * a[i, j]
    elif code == RELU:
        for i in range(B):
            for j in range(n):
                if not z[i, j] > 0:   # relu'(NaN) = 0, as the reference's (z > 0)
                    out[i, j] = 0.0
    elif code == SOFTPLUS:
        for i in range(B):
            for j in range(n):
                out[i, j] *= sigmoid(z[i, j])

# ------------------------------------------------------------------------- one element at a time
@_jit
def act(v, code):
    """act(v) for one scalar (an elementwise code)."""
    if code == SIGMOID:
        return sigmoid(v)
    if code == TANH:
        return math.tanh(v)
    if code == RELU:
        return 0.0 if v <= 0 else v   # NaN stays NaN, as np.maximum(z, 0)
    if code == SOFTPLUS:
        return softplus(v)
    return v


@_jit
def act_prime(z, a, code):
    """act'(z) for one scalar, from the stored activation a = act(z) where that is cheaper."""
    if code == SIGMOID:
        return a * (1.0 - a)
    if code == TANH:
        return 1.0 - a * a
    if code == RELU:
        return 1.0 if z > 0 else 0.0
    if code == SOFTPLUS:
        return sigmoid(z)
    return 1.0


# ---------------------------------------------------------------------------- a flat plane
@_jit
def _sigmoid_plane(z, a, buf):
    """a[i] = σ(z[i]) for flat z, a: float[m] (a overwritten); buf: float32[2, >= m] scratch.

    float32: exp(-|z|) is built in vectorisable loops — range reduction, a degree-7
    polynomial (relative error ~2e-7) and the exponent bits 2^k — instead of m scalar libm
    calls (faster); the sign and the underflow below -87 are branch-free ramps.
    float64: one branch-free libm exp per element (accuracy first).
    """
    m = z.size
    if z.itemsize != 4:
        for i in range(m):
            v = z[i]
            e = math.exp(-abs(v))
            a[i] = (1.0 if v >= 0 else e) / (1.0 + e)
        return
    f32 = np.float32
    poly, scale = buf[0], buf[1]
    bits = scale.view(np.int32)
    for i in range(m):
        x = max(-abs(f32(z[i])), f32(-87.0))
        k = np.floor(x * f32(1.442695041) + f32(0.5))      # x = k·ln2 + r, |r| <= ln2/2
        r = (x - k * f32(0.693359375)) - k * f32(-2.12194440e-4)
        p = f32(1.0 / 5040.0)
        p = p * r + f32(1.0 / 720.0)
        p = p * r + f32(1.0 / 120.0)
        p = p * r + f32(1.0 / 24.0)
        p = p * r + f32(1.0 / 6.0)
        p = p * r + f32(0.5)
        p = p * r + f32(1.0)
        poly[i] = p * r + f32(1.0)
        scale[i] = k + f32(8388735.0)            # 2^23 + 127 + k: k + 127 in the low bits
    for i in range(m):
        bits[i] = bits[i] << 23                  # → the bits of the float 2^k
    for i in range(m):
        v = f32(z[i])
        e = poly[i] * scale[i]                                       # exp(-|v|)
        positive = min(max(v * f32(1e30), f32(0.0)), f32(1.0))       # 1 for v > 0, else 0
        alive = min(max((v + f32(87.0)) * f32(1e30), f32(0.0)), f32(1.0))  # σ underflows
        a[i] = alive * (e + (f32(1.0) - e) * positive) / (f32(1.0) + e)


@_jit
def act_plane(z, a, code, buf):
    """a = act(z) over flat z, a: float[m] (a overwritten); buf: float32[2, >= m] scratch."""
    if code == SIGMOID:
        _sigmoid_plane(z, a, buf)
    else:
        for i in range(z.size):
            a[i] = act(z[i], code)
