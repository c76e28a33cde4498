"""Scalar device functions and launch helpers shared by the CUDA kernels (numba.cuda):
``scalar_fns(dtype)`` gives the activation, its derivative from (z, a) and the per-row cost,
specialised to ``dtype``; ``device_fn`` is the device-function decorator (inlined on a GPU);
``quiet_launch`` launches without Numba's low-occupancy warning; ``SIM`` is True under Numba's
CUDA simulator. NumPy twin: the activations and costs of ``fastnet.reference.dense``.
Tests: ``tests/test_dense_cuda.py``, ``tests/test_layers_cuda.py`` (simulator, and a GPU).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from numba import cuda
from numba.core import config as numba_config
from numba.core.errors import NumbaPerformanceWarning

from .cuda_target import apply_numpy_shim

from .config import QUADRATIC, RELU, SIGMOID, SOFTPLUS, TANH

apply_numpy_shim()  # numba-cuda 0.30.4 calls np.row_stack while compiling (gone in numpy 2.5)

SIM = bool(numba_config.ENABLE_CUDASIM)
# The simulator has no forceinline option; on the GPU small helpers are inlined so the local
# arrays they touch stay in registers.
device_fn = cuda.jit(device=True) if SIM else cuda.jit(device=True, forceinline=True)

_scalar_cache: dict = {}


def scalar_fns(dtype):
    """Device functions specialised to ``dtype`` (their constants are typed, so float32 code
    never promotes to float64)."""
    dtype = np.dtype(dtype)
    if dtype in _scalar_cache:
        return _scalar_cache[dtype]
    DT = dtype.type
    ZERO, ONE = DT(0), DT(1)

    @device_fn
    def act(z, code):
        """Elementwise activation (softmax is applied row-wise elsewhere)."""
        if code == SIGMOID:
            if z >= ZERO:  # exp of a non-positive number only: no overflow
                return ONE / (ONE + math.exp(-z))
            e = math.exp(z)
            return e / (ONE + e)
        if code == TANH:
            return math.tanh(z)
        if code == RELU:
            return ZERO if z <= ZERO else z   # NaN stays NaN, as np.maximum(z, 0)
        if code == SOFTPLUS:
            return max(z, ZERO) + math.log1p(math.exp(-abs(z)))
        return z

    @device_fn
    def act_prime(a, code):
        """σ'(z) written in terms of a = σ(z), so no layer needs to keep its z."""
        if code == SIGMOID:
            return a * (ONE - a)
        if code == TANH:
            return ONE - a * a
        if code == RELU:
            return ONE if a > ZERO else ZERO
        if code == SOFTPLUS:  # σ(z) = 1 − e^(−a) for a = log(1 + e^z)
            return -math.expm1(-a)
        return ONE

    @device_fn
    def out_delta(a, y, loss, code):
        """δᴸ: (a − y)⊙σ'(z) for the quadratic cost, a − y for cross-entropy/log-likelihood."""
        if loss == QUADRATIC:
            return (a - y) * act_prime(a, code)
        return a - y

    _scalar_cache[dtype] = (act, act_prime, out_delta)
    return _scalar_cache[dtype]



def quiet_launch(kernel, griddim, blockdim, *args):
    """Launch without numba's low-occupancy warning (small grids are the design here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NumbaPerformanceWarning)
        kernel[griddim, blockdim](*args)
