"""Per-layer CUDA kernels (numba.cuda) for the layer-by-layer training path: mini-batch gather,
dropout, elementwise activations and their derivatives, output deltas, the dense layer's
forward and backward products, the summed cost, the SGD update and the other optimizers' update. ``fastnet.devices.cuda``'s
``CudaOps`` calls these; the convolution family is in ``conv_cuda``, and dense stacks train in
one launch per epoch instead (``dense_cuda``).

Shapes: as the NumPy ops (``x: float[B, n_in]``, ``w: float[n_out, n_in]``, ...); every function
allocates and returns C-contiguous device arrays of the input's dtype.

NumPy twin: ``fastnet.devices.ops.NumpyOps`` over ``fastnet.reference.dense`` (same arguments and
results). Tests: ``tests/test_layers_cuda.py``: under Numba's CUDA simulator in a subprocess
(``tests/cuda_sim/sim_layers_cuda.py``, CI), compiled for sm_90 by
``tests/cuda_sim/compile_ptx.py``, and on a GPU with ``pytest -m cuda`` (the recorded GPU runs:
docs/performance.md). Why one launch per op, and the dropout hash: docs/kernels.md.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from . import config
from .config import QUADRATIC, RELU, SIGMOID, SOFTMAX, SOFTPLUS, TANH
from .infer_cuda import infer_kernels
from .scalar_cuda import SIM, device_fn, quiet_launch, scalar_fns

TPB = config.THREADS_PER_BLOCK          # threads per block of the 1-D kernels
TILE = 4 if SIM else 16                # dense product tiles are TILE × TILE threads
_TILE_PAD = TILE + 1                    # padded shared rows: no bank conflicts on column reads
# Blocks of a grid-stride launch at most. The simulator runs every thread as a Python thread
# (slow), so it gets two blocks: enough to exercise the block stride.
MAX_BLOCKS = 2 if SIM else 1024
_M32 = 0xFFFFFFFF

__all__ = ["take", "scale", "mul", "dropout_forward", "dense_forward", "activate",
           "act_backward", "output_delta", "dense_backward", "loss_and_correct", "sgd_apply",
           "optimizer_step",
           "blocks_for", "empty_like"]


def blocks_for(n: int) -> int:
    """Blocks of TPB threads for a grid-stride loop over n items."""
    return max(1, min(-(-int(n) // TPB), MAX_BLOCKS))


def empty_like(a):
    return cuda.device_array(a.shape, dtype=a.dtype)


def _flat(a):
    """1-D view of a C-contiguous device array."""
    return a.reshape(a.size)


@device_fn
def mix32(h):
    """lowbias32 (C. Wellons): a 32-bit bijection with good avalanche. h: int64 in [0, 2³²)."""
    h ^= h >> 16
    h = (h * 0x7FEB352D) & _M32
    h ^= h >> 15
    h = (h * 0x846CA68B) & _M32
    h ^= h >> 16
    return h


_kernel_cache: dict = {}


def kernels(dtype):
    """The kernels for ``dtype`` (float32 or float64), compiled on first launch."""
    dtype = np.dtype(dtype)
    if dtype in _kernel_cache:
        return _kernel_cache[dtype]
    DT = dtype.type
    ZERO, ONE = DT(0), DT(1)
    act, _, _ = scalar_fns(dtype)

    @device_fn
    def act_prime(z, a, code):
        """σ'(z) as the reference takes it (from a where that is exact, else from z)."""
        if code == SIGMOID:
            return a * (ONE - a)
        if code == TANH:
            return ONE - a * a
        if code == RELU:
            return ONE if z > ZERO else ZERO
        if code == SOFTPLUS:
            return act(z, SIGMOID)
        return ONE

    # ------------------------------------------------------------ elementwise (flat arrays)
    @cuda.jit
    def gather(x, idx, row, out):
        """x: DT[N·row]; idx: int64[B]; out: DT[B·row] = rows idx of x (overwritten)."""
        for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
            r = e // row
            out[e] = x[idx[r] * row + e - r * row]

    @cuda.jit
    def scale(x, c, out):
        """out = x · DT(c); x, out: DT[n]."""
        cc = DT(c)
        for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
            out[e] = x[e] * cc

    @cuda.jit
    def mul(u, v, out):
        """out = u ⊙ v; all DT[n]."""
        for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
            out[e] = u[e] * v[e]

    @cuda.jit
    def dropout(x, k0, k1, thresh, out, mask):
        """mask[e] = 1 if mix32(mix32(e ^ k0) ^ k1) >= thresh else 0; out = x ⊙ mask.
        x, out, mask: DT[n] (n < 2³²); k0, k1: the call's key halves; thresh = ⌈p·2³²⌉."""
        for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
            h = mix32(mix32((e & _M32) ^ k0) ^ k1)
            if h >= thresh:
                mask[e] = ONE
                out[e] = x[e]
            else:
                mask[e] = ZERO
                out[e] = ZERO

    @cuda.jit
    def activate(z, code, out):
        """out = act(z) elementwise (not softmax); DT[n]."""
        for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
            out[e] = act(z[e], code)

    @cuda.jit
    def softmax_rows(z, out):
        """z, out: DT[B, n]; out = row-wise softmax of z, the row max subtracted first."""
        for r in range(cuda.grid(1), z.shape[0], cuda.gridsize(1)):
            n = z.shape[1]
            zmax = z[r, 0]
            for i in range(1, n):
                zmax = max(zmax, z[r, i])
            total = ZERO
            for i in range(n):
                ex = math.exp(z[r, i] - zmax)
                out[r, i] = ex
                total += ex
            for i in range(n):
                out[r, i] = out[r, i] / total

    @cuda.jit
    def act_backward(z, a, code, da, out):
        """out = da ⊙ σ'(z); all DT[n]."""
        for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
            out[e] = da[e] * act_prime(z[e], a[e], code)

    @cuda.jit
    def output_delta(z, a, y, loss, code, out):
        """δᴸ: (a − y) ⊙ σ'(z) for the quadratic cost, else a − y; all DT[n]."""
        for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
            d = a[e] - y[e]
            out[e] = d * act_prime(z[e], a[e], code) if loss == QUADRATIC else d

    @cuda.jit
    def sgd(params, grads, decayed, decay, scl):
        """params (updated) ← decay·params − scl·grads where decayed, else params − scl·grads.
        params, grads: DT[P]; decayed: bool[P]; decay, scl: float (rounded to DT first)."""
        d = DT(decay)
        s = DT(scl)
        for e in range(cuda.grid(1), params.size, cuda.gridsize(1)):
            p = params[e]
            if decayed[e]:
                p = p * d
            params[e] = p - s * grads[e]

    @cuda.jit
    def opt_step(params, grads, decayed, k, code, s0, s1):
        """One update by optimizer ``code`` (``optim_cpu.apply_range``'s rules), in place on
        params and the state rows s0, s1 (DT[P]; s1 only for Adam/AdamW). k: float64[12] =
        gscale, l2, lr, β1, β2, eps, 1 − β1, 1 − β2 and (Adam) lr/(1 − β1ᵗ), √(1 − β2ᵗ),
        AdamW's keep factor, l1 — the constants worked out on the host in float64."""
        gs, lw, lr, b1, b2 = DT(k[0]), DT(k[1]), DT(k[2]), DT(k[3]), DT(k[4])
        eps, c1, c2, size, root2, keep = DT(k[5]), DT(k[6]), DT(k[7]), DT(k[8]), DT(k[9]), \
            DT(k[10])
        l1 = DT(k[11])
        for e in range(cuda.grid(1), params.size, cuda.gridsize(1)):
            p = params[e]
            g = gs * grads[e]
            if decayed[e]:
                g += lw * p + (l1 if p > ZERO else -l1 if p < ZERO else ZERO)
            if code == 1 or code == 2:                       # momentum, Nesterov
                v = b1 * s0[e] + g
                s0[e] = v
                p -= lr * (g + b1 * v if code == 2 else v)
            elif code == 3:                                  # RMSprop
                sq = b2 * s0[e] + c2 * g * g
                s0[e] = sq
                p -= lr * g / (math.sqrt(sq) + eps)
            elif code == 4 or code == 5:                     # Adam, AdamW
                m = b1 * s0[e] + c1 * g
                v = b2 * s1[e] + c2 * g * g
                s0[e] = m
                s1[e] = v
                p = keep * p - size * m / (math.sqrt(v) / root2 + eps)
            else:
                p -= lr * g
            params[e] = p

    # ------------------------------------------------------------ dense products
    @device_fn
    def tile_product(a, b, trans_a, trans_b, row0, col0, As, Bs):
        """Element (row0 + ty, col0 + tx) of C = A·B, where A = a (M × K) or aᵀ (trans_a) and
        B = b (K × N) or bᵀ (trans_b); zero outside C. All threads of the block must call it
        (it synchronises). As, Bs: shared DT[TILE, TILE + 1]."""
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        if trans_a:
            m = a.shape[1]
            k_len = a.shape[0]
        else:
            m = a.shape[0]
            k_len = a.shape[1]
        n = b.shape[0] if trans_b else b.shape[1]
        acc = ZERO
        for k0 in range(0, k_len, TILE):
            # As[i, k] holds A[row0 + i, k0 + k]; Bs[k, j] holds B[k0 + k, col0 + j]. tx runs
            # along each source array's contiguous axis.
            if trans_a:
                i, k = row0 + tx, k0 + ty
                As[tx, ty] = a[k, i] if (i < m and k < k_len) else ZERO
            else:
                i, k = row0 + ty, k0 + tx
                As[ty, tx] = a[i, k] if (i < m and k < k_len) else ZERO
            if trans_b:
                j, k = col0 + ty, k0 + tx
                Bs[tx, ty] = b[j, k] if (j < n and k < k_len) else ZERO
            else:
                j, k = col0 + tx, k0 + ty
                Bs[ty, tx] = b[k, j] if (j < n and k < k_len) else ZERO
            cuda.syncthreads()
            for kk in range(TILE):
                acc += As[ty, kk] * Bs[kk, tx]
            cuda.syncthreads()
        return acc

    @cuda.jit
    def dense_fwd(x, w, b, z):
        """x: DT[B, n_in]; w: DT[n_out, n_in]; b: DT[n_out]; z: DT[B, n_out] = x wᵀ + b.
        Grid (⌈n_out/TILE⌉, ⌈B/TILE⌉) of (TILE, TILE) blocks."""
        As = cuda.shared.array((TILE, _TILE_PAD), DT)
        Bs = cuda.shared.array((TILE, _TILE_PAD), DT)
        row0 = cuda.blockIdx.y * TILE
        col0 = cuda.blockIdx.x * TILE
        acc = tile_product(x, w, False, True, row0, col0, As, Bs)
        r = row0 + cuda.threadIdx.y
        c = col0 + cuda.threadIdx.x
        if r < z.shape[0] and c < z.shape[1]:
            z[r, c] = acc + b[c]

    @cuda.jit
    def dense_bwd(x, w, dz, dx, dw, db, n_dw_tiles, n_dx_tiles):
        """One launch, three jobs by block: blocks [0, n_dw_tiles) form dw = dzᵀ x, the next
        n_dx_tiles form dx = dz w, the rest db = Σ_rows dz.
        x: DT[B, n_in]; w: DT[n_out, n_in]; dz: DT[B, n_out]; dx: DT[B, n_in], dw: like w,
        db: DT[n_out] (all overwritten). Blocks are (TILE, TILE); 1-D grid."""
        As = cuda.shared.array((TILE, _TILE_PAD), DT)
        Bs = cuda.shared.array((TILE, _TILE_PAD), DT)
        blk = cuda.blockIdx.x
        ty = cuda.threadIdx.y
        tx = cuda.threadIdx.x
        n_in = x.shape[1]
        tiles_in = (n_in + TILE - 1) // TILE
        if blk < n_dw_tiles:
            row0 = (blk // tiles_in) * TILE
            col0 = (blk % tiles_in) * TILE
            acc = tile_product(dz, x, True, False, row0, col0, As, Bs)
            if row0 + ty < dw.shape[0] and col0 + tx < n_in:
                dw[row0 + ty, col0 + tx] = acc
        elif blk < n_dw_tiles + n_dx_tiles:
            t = blk - n_dw_tiles
            row0 = (t // tiles_in) * TILE
            col0 = (t % tiles_in) * TILE
            acc = tile_product(dz, w, False, False, row0, col0, As, Bs)
            if row0 + ty < dx.shape[0] and col0 + tx < n_in:
                dx[row0 + ty, col0 + tx] = acc
        else:
            o = (blk - n_dw_tiles - n_dx_tiles) * TILE * TILE + ty * TILE + tx
            if o < db.shape[0]:
                acc = ZERO
                for s in range(dz.shape[0]):
                    acc += dz[s, o]
                db[o] = acc

    ns = dict(gather=gather, scale=scale, mul=mul, dropout=dropout, activate=activate,
              softmax_rows=softmax_rows, act_backward=act_backward, output_delta=output_delta,
              sgd=sgd, opt_step=opt_step, dense_fwd=dense_fwd, dense_bwd=dense_bwd, act=act, act_prime=act_prime)
    _kernel_cache[dtype] = ns
    return ns


# ---------------------------------------------------------------------------- host wrappers
def _launch_flat(kernel, n, *args):
    if n:
        quiet_launch(kernel, blocks_for(n), TPB, *args)


def take(x, d_idx):
    """x: device DT[N, ...]; d_idx: device int64[B] → device DT[B, ...] = x[idx]."""
    out = cuda.device_array((d_idx.shape[0],) + tuple(x.shape[1:]), dtype=x.dtype)
    row = x.size // x.shape[0] if x.shape[0] else 0
    _launch_flat(kernels(x.dtype)["gather"], out.size, _flat(x), d_idx, row, _flat(out))
    return out


def scale(x, c: float):
    out = empty_like(x)
    _launch_flat(kernels(x.dtype)["scale"], x.size, _flat(x), float(c), _flat(out))
    return out


def mul(u, v):
    out = empty_like(u)
    _launch_flat(kernels(u.dtype)["mul"], u.size, _flat(u), _flat(v), _flat(out))
    return out


def dropout_forward(x, p: float, key: int):
    """Training-time dropout: (x ⊙ mask, mask), mask 1 with probability 1 − p, a function of
    (key, element index) only. key: int in [0, 2⁶³)."""
    if x.size >= 2 ** 32:
        raise ValueError("dropout_forward: more than 2**32 elements in one call")
    out, mask = empty_like(x), empty_like(x)
    thresh = min(2 ** 32, math.ceil(float(p) * 2.0 ** 32))
    key = int(key)
    _launch_flat(kernels(x.dtype)["dropout"], x.size, _flat(x), key & _M32, (key >> 32) & _M32,
                 thresh, _flat(out), _flat(mask))
    return out, mask


def dense_forward(x, w, b):
    """x: DT[B, n_in]; w: DT[n_out, n_in]; b: DT[n_out] → z = x wᵀ + b: DT[B, n_out]."""
    z = cuda.device_array((x.shape[0], w.shape[0]), dtype=x.dtype)
    if z.size:
        grid = (-(-w.shape[0] // TILE), -(-x.shape[0] // TILE))
        quiet_launch(kernels(x.dtype)["dense_fwd"], grid, (TILE, TILE), x, w, b, z)
    return z


def activate(z, code: int):
    """act(z) elementwise (any shape); softmax (code 5) row-wise for z: DT[B, n]."""
    k = kernels(z.dtype)
    out = empty_like(z)
    if code == SOFTMAX:
        if len(z.shape) != 2:
            raise ValueError(f"softmax needs a 2-D (batch, n) array, got shape {z.shape}")
        _launch_flat(k["softmax_rows"], z.shape[0], z, out)
    else:
        _launch_flat(k["activate"], z.size, _flat(z), int(code), _flat(out))
    return out


def act_backward(z, a, code: int, da):
    out = empty_like(z)
    _launch_flat(kernels(z.dtype)["act_backward"], z.size, _flat(z), _flat(a), int(code),
                 _flat(da), _flat(out))
    return out


def output_delta(z, a, y, loss: int, code: int):
    out = empty_like(z)
    _launch_flat(kernels(z.dtype)["output_delta"], z.size, _flat(z), _flat(a), _flat(y),
                 int(loss), int(code), _flat(out))
    return out


def dense_backward(x, w, dz, need_dx: bool):
    """(dx: DT[B, n_in] or None, dw = Σ∇w: like w, db = Σ∇b: DT[n_out]) in one launch."""
    n_b, n_in = x.shape
    n_out = w.shape[0]
    dw = cuda.device_array(w.shape, dtype=x.dtype)
    db = cuda.device_array(n_out, dtype=x.dtype)
    dx = cuda.device_array(x.shape, dtype=x.dtype) if need_dx else \
        cuda.device_array((1, 1), dtype=x.dtype)
    tiles_in = -(-n_in // TILE)
    n_dw = -(-n_out // TILE) * tiles_in
    n_dx = -(-n_b // TILE) * tiles_in if need_dx else 0
    n_db = -(-n_out // (TILE * TILE))
    quiet_launch(kernels(x.dtype)["dense_bwd"], n_dw + n_dx + n_db, (TILE, TILE), x, w, dz,
                  dx, dw, db, n_dw, n_dx)
    return (dx if need_dx else None), dw, db


def loss_and_correct(z, a, y, loss: int):
    """(Σ cost over the rows: float, rows whose argmax a equals argmax y: int); z, a, y:
    DT[B, n] (the output layer's pre-activations, activations and targets)."""
    if z.shape[0] == 0:
        return 0.0, 0
    cost_and_hits = infer_kernels(z.dtype)[2]
    out = cuda.to_device(np.zeros(2, dtype=np.float64))
    quiet_launch(cost_and_hits, -(-z.shape[0] // TPB), TPB, z, a, y, int(loss), out)
    total, hits = out.copy_to_host()
    return float(total), int(round(hits))


def sgd_apply(params, grads, decayed, decay: float, scl: float):
    """In place: params ← decay·params − scl·grads where ``decayed`` (bool), else
    params − scl·grads."""
    _launch_flat(kernels(params.dtype)["sgd"], params.size, params, grads, decayed,
                 float(decay), float(scl))


def optimizer_step(params, grads, decayed, gscale, l2, lr, code, hyper, state, step):
    """``optim_cpu.optimizer_step`` on the device: params, grads, state[S, P] device arrays,
    decayed a device bool array; ``step`` a host int64[1], advanced here."""
    step[0] += 1
    t = int(step[0])
    b1, b2, eps, wd, l1 = (float(h) for h in hyper)
    size = root2 = keep = 1.0
    if code in (config.ADAM, config.ADAMW):
        size = lr / -math.expm1(t * math.log1p(b1 - 1.0))
        root2 = math.sqrt(-math.expm1(t * math.log1p(b2 - 1.0)))
        keep = 1.0 - lr * wd if code == config.ADAMW else 1.0
    k = cuda.to_device(np.array([gscale, l2, lr, b1, b2, eps, 1.0 - b1, 1.0 - b2, size, root2,
                                 keep, l1], dtype=np.float64))
    s0 = state[0] if state.shape[0] > 0 else params
    s1 = state[1] if state.shape[0] > 1 else s0
    _launch_flat(kernels(params.dtype)["opt_step"], params.size, params, grads, decayed, k,
                 int(code), s0, s1)
