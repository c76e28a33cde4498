"""Batched dense inference on CUDA (numba.cuda): ``forward`` (a tiled product and the
activation per layer, softmax rows last) and ``loss_and_correct`` (the summed cost and argmax
hits, computed on the device; two numbers come back).
Shapes: the flat ``params`` buffer (device), ``layout[L, 4]`` rows ``(n_in, n_out, w_offset,
b_offset)``, activation and loss codes from ``config``, ``x: float[B, n_in]``,
``y: float[B, n_out]`` (device). NumPy twin: ``fastnet.reference.dense`` (same names).
Tests: ``tests/test_dense_cuda.py`` (simulator, and a GPU with ``pytest -m cuda``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from .config import CROSS_ENTROPY, QUADRATIC, SOFTMAX
from .scalar_cuda import SIM, quiet_launch, scalar_fns

_TILE = 8 if SIM else 16
_TILE_PAD = _TILE + 1   # padded rows: no shared-memory bank conflicts
_infer_cache: dict = {}


def infer_kernels(dtype):
    dtype = np.dtype(dtype)
    if dtype in _infer_cache:
        return _infer_cache[dtype]
    DT = dtype.type
    ZERO = DT(0)
    act, _, _ = scalar_fns(dtype)

    @cuda.jit
    def dense_layer(a_in, params, w_off, b_off, z_out, a_out, code):
        """a_in: DT[B, n_in]; W = params[w_off:].reshape(n_out, n_in), b = params[b_off:];
        z_out = a_in @ W.T + b and a_out = act(z_out): DT[B, n_out] (overwritten; a_out holds
        z for softmax, finished by softmax_rows). Block (TILE, TILE) of (unit, sample)."""
        As = cuda.shared.array((_TILE, _TILE), DT)
        Ws = cuda.shared.array((_TILE, _TILE_PAD), DT)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        n_b, n_in = a_in.shape
        n_out = z_out.shape[1]
        row = cuda.blockIdx.y * _TILE + ty       # sample
        col = cuda.blockIdx.x * _TILE + tx       # output unit
        w_row = cuda.blockIdx.x * _TILE + ty     # unit whose weights this thread stages
        acc = ZERO
        for i0 in range(0, n_in, _TILE):
            i = i0 + tx
            As[ty, tx] = a_in[row, i] if (row < n_b and i < n_in) else ZERO
            Ws[ty, tx] = params[w_off + w_row * n_in + i] if (w_row < n_out and i < n_in) \
                else ZERO
            cuda.syncthreads()
            for kk in range(_TILE):
                acc += As[ty, kk] * Ws[tx, kk]
            cuda.syncthreads()
        if row < n_b and col < n_out:
            z = acc + params[b_off + col]
            z_out[row, col] = z
            a_out[row, col] = z if code == SOFTMAX else act(z, code)

    @cuda.jit
    def softmax_rows(a):
        """a: DT[B, n], row-wise softmax in place (row max subtracted)."""
        r = cuda.grid(1)
        if r < a.shape[0]:
            n = a.shape[1]
            zmax = a[r, 0]
            for i in range(1, n):
                zmax = max(zmax, a[r, i])
            total = ZERO
            for i in range(n):
                e = math.exp(a[r, i] - zmax)
                a[r, i] = e
                total += e
            for i in range(n):
                a[r, i] = a[r, i] / total

    @cuda.jit
    def cost_and_hits(z, a, y, loss, out):
        """z, a, y: DT[B, n] (last layer); out: float64[2] accumulated: Σ cost, Σ hits.
        Cost as in the reference: ½‖a−y‖²; Σ softplus(z) − y·z; −Σ y·log_softmax(z)."""
        r = cuda.grid(1)
        if r < z.shape[0]:
            n = z.shape[1]
            c = 0.0
            if loss == QUADRATIC:
                for i in range(n):
                    d = np.float64(a[r, i]) - np.float64(y[r, i])
                    c += 0.5 * d * d
            elif loss == CROSS_ENTROPY:
                for i in range(n):
                    zz = np.float64(z[r, i])
                    c += max(zz, 0.0) + math.log1p(math.exp(-abs(zz))) - np.float64(y[r, i]) * zz
            else:
                zmax = np.float64(z[r, 0])
                for i in range(1, n):
                    zmax = max(zmax, np.float64(z[r, i]))
                total = 0.0
                for i in range(n):
                    total += math.exp(np.float64(z[r, i]) - zmax)
                lse = zmax + math.log(total)
                for i in range(n):
                    c -= np.float64(y[r, i]) * (np.float64(z[r, i]) - lse)
            best_a = 0
            best_y = 0
            for i in range(1, n):
                if a[r, i] > a[r, best_a]:
                    best_a = i
                if y[r, i] > y[r, best_y]:
                    best_y = i
            cuda.atomic.add(out, 0, c)
            if best_a == best_y:
                cuda.atomic.add(out, 1, 1.0)

    _infer_cache[dtype] = (dense_layer, softmax_rows, cost_and_hits)
    return _infer_cache[dtype]


def _forward_last(d_params, layout, acts, d_x):
    """Run all layers; return the last layer's (z, a) device arrays."""
    layout = np.asarray(layout, dtype=np.int64).reshape(-1, 4)
    acts = np.asarray(acts, dtype=np.int64).reshape(-1)
    dtype = np.dtype(d_params.dtype)
    if np.dtype(d_x.dtype) != dtype:
        raise TypeError(f"x is {d_x.dtype}, params are {dtype}")
    dense_layer, softmax_rows, _ = infer_kernels(dtype)
    n_b = d_x.shape[0]
    a = d_x
    z = None
    for (n_in, n_out, w_off, b_off), code in zip(layout, acts):
        z = cuda.device_array((n_b, int(n_out)), dtype=dtype)
        a_next = cuda.device_array((n_b, int(n_out)), dtype=dtype)
        grid = (-(-int(n_out) // _TILE), -(-n_b // _TILE))
        quiet_launch(dense_layer, grid, (_TILE, _TILE), a, d_params, int(w_off), int(b_off),
                      z, a_next, int(code))
        if code == SOFTMAX:
            quiet_launch(softmax_rows, -(-n_b // 128), 128, a_next)
        a = a_next
    return z, a


def forward(d_params, layout, acts, d_x, d_out=None):
    """Batched inference. d_x: device DT[B, n0]; returns the output activations, device
    DT[B, nL] (copied into ``d_out`` if given). A few launches per layer."""
    if d_x.shape[0] == 0:
        raise ValueError("empty batch")
    _, a = _forward_last(d_params, layout, acts, d_x)
    if d_out is None:
        return a
    d_out.copy_to_device(a)
    return d_out


def loss_and_correct(d_params, layout, acts, loss, d_x, d_y):
    """Summed cost over the batch (float) and the number of rows whose argmax output equals
    argmax y (int), computed on the device; only two numbers come back.
    d_x: device DT[B, n0]; d_y: device DT[B, nL] dense targets."""
    if d_x.shape[0] == 0:
        return 0.0, 0
    z, a = _forward_last(d_params, layout, acts, d_x)
    _, _, cost_and_hits = infer_kernels(d_params.dtype)
    out = cuda.to_device(np.zeros(2, dtype=np.float64))
    quiet_launch(cost_and_hits, -(-d_x.shape[0] // 128), 128, z, a, d_y, int(loss), out)
    total, hits = out.copy_to_host()
    return float(total), int(round(hits))
