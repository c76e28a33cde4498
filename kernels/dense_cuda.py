"""Dense-layer kernels for CUDA (numba.cuda): a whole SGD epoch in one cooperative launch
(``train_epoch``, configured by ``epoch_config``); batched inference (``forward``, and
``loss_and_correct``: the summed cost and argmax hits) is ``infer_cuda``'s, re-exported here.

Shapes: device arrays of the dense epoch's arguments (docs/design.md): the flat ``params``
buffer, ``layout[L, 4]`` rows ``(n_in, n_out, w_offset, b_offset)``, activation and loss codes
from ``config``, ``x: float[N, n_in]``, ``y: float[N, n_out]``, ``order: int64[N]``.

NumPy twin: ``fastnet.reference.dense`` (same names); CPU twin ``dense_cpu``.
Tests: ``tests/test_dense_cuda.py``: under Numba's CUDA simulator in a subprocess (CI), and on a
GPU with ``pytest -m cuda`` (the recorded GPU runs: docs/performance.md). Benchmark on a GPU:
``python bench/cuda_mlp_epoch.py``. How the epoch shares work between blocks: docs/kernels.md.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from . import config
from .config import SOFTMAX
from .infer_cuda import forward, infer_kernels, loss_and_correct  # noqa: F401 (re-exported)
from .scalar_cuda import SIM, device_fn, quiet_launch, scalar_fns

_FULL_MASK = 0xFFFFFFFF
# Blocks a cooperative grid may have under the simulator: it runs blocks one after another, so 1
# (all units in one block). tests/cuda_sim/grid_emulator.py raises it while it runs simulated
# grids with all blocks concurrently, to test the multi-block exchange.
_SIM_MAX_BLOCKS = 1
_SB_MAX = 16                 # samples per chunk of a mini-batch (registers per thread)
_SHARED_BUDGET = 96 * 1024   # bytes of static shared memory for a block's private workspace

# Columns of the per-layer plan array built by _plan().
N_IN, N_OUT, W_OFF, B_OFF, ACT, A_OFF, D_OFF, LW_OFF, LB_OFF = range(9)

__all__ = ["train_epoch", "forward", "loss_and_correct", "epoch_config"]


# ---------------------------------------------------------------------------- the epoch kernel
def _build_epoch_kernel(dtype, T, UPB, K, SB, NCH, MB, WS_SIZE, USE_SHARED, L):
    """Compile-time constants: T threads per block; UPB layer-0 units per block; K inputs per
    thread (ceil(n0 / T)); mini-batch MB processed as NCH chunks of SB samples; WS_SIZE words of
    private workspace (shared memory if USE_SHARED, else the block's row of ``scratch``);
    L layers."""
    DT = np.dtype(dtype).type
    ZERO = DT(0)
    MBP = NCH * SB                # mini-batch rows padded to whole chunks
    P = UPB * SB                  # partial sums per thread per chunk
    NW = T if SIM else T // 32   # partial sums per (unit, sample) left after the warp stage
    NRED = NW * P
    UPBK = UPB * K                # local-array sizes must be literal constants
    SBK = SB * K
    act, act_prime, out_delta = scalar_fns(dtype)
    # Registers are capped so that T threads always fit on one SM (the grid must be resident).
    kernel_jit = cuda.jit if SIM else cuda.jit(max_registers=min(255, 65536 // T))

    @device_fn
    def load_rows(xr, x, order, start, count, n0, tid):
        """xr[s*K + q] = x[order[start + s], tid + q*T], zero outside the batch or the row."""
        for s in range(SB):
            r = order[start + s] if s < count else 0
            for q in range(K):
                k = tid + q * T
                xr[s * K + q] = x[r, k] if (s < count and k < n0) else ZERO

    if SIM:
        @device_fn
        def stage_partials(part, red, tid):
            for p in range(P):           # no warp shuffles in the simulator
                red[tid * P + p] = part[p]

        @device_fn
        def load_exchange(xchg, i):
            return xchg[i]
    else:
        @device_fn
        def stage_partials(part, red, tid):
            lane = tid & 31
            warp = tid >> 5
            for p in range(P):
                v = part[p]
                v += cuda.shfl_down_sync(_FULL_MASK, v, 16)
                v += cuda.shfl_down_sync(_FULL_MASK, v, 8)
                v += cuda.shfl_down_sync(_FULL_MASK, v, 4)
                v += cuda.shfl_down_sync(_FULL_MASK, v, 2)
                v += cuda.shfl_down_sync(_FULL_MASK, v, 1)
                if lane == 0:
                    red[warp * P + p] = v

        @device_fn
        def load_exchange(xchg, i):
            return cuda.ldcg(xchg, i)    # other blocks wrote it: read through L2, not L1

    @device_fn
    def softmax_rows(ws, off, n, m, tid, d_out, y, order, i0):
        """Row softmax of ws[off + s*n + i] for s < m; if d_out >= 0 also δ = a − y there."""
        for s in range(tid, m, T):
            base = off + s * n
            zmax = ws[base]
            for i in range(1, n):
                zmax = max(zmax, ws[base + i])
            total = ZERO
            for i in range(n):
                e = math.exp(ws[base + i] - zmax)
                ws[base + i] = e
                total += e
            for i in range(n):
                a = ws[base + i] / total
                ws[base + i] = a
                if d_out >= 0:
                    ws[d_out + s * n + i] = a - y[order[i0 + s], i]

    @kernel_jit
    def epoch_kernel(params, plan, x, y, order, xchg, scratch, loss, lr, decay):
        """params: DT[P] (updated); plan: int64[L, 9] (see _plan); x: DT[N, n0]; y: DT[N, nL];
        order: int64[N]; xchg: DT[2*MB*n1] (exchange); scratch: DT[blocks, WS_SIZE] or dummy;
        loss: code; lr, decay: float64."""
        tid = cuda.threadIdx.x
        blk = cuda.blockIdx.x
        grid = cuda.cg.this_grid()
        if USE_SHARED:
            ws = cuda.shared.array(WS_SIZE, DT)
        else:
            ws = scratch[blk]
        red = cuda.shared.array(NRED, DT)
        b0s = cuda.shared.array(UPB, DT)
        wr = cuda.local.array(UPBK, DT)     # this thread's slice of the block's W0 rows
        grad = cuda.local.array(UPBK, DT)
        xr = cuda.local.array(SBK, DT)      # this step's inputs (this thread's columns)
        xn = cuda.local.array(SBK, DT)      # next step's, prefetched
        part = cuda.local.array(P, DT)

        n_samples = order.shape[0]
        n_steps = (n_samples + MB - 1) // MB
        n0 = plan[0, N_IN]
        n1 = plan[0, N_OUT]
        act0 = plan[0, ACT]
        a0 = plan[0, A_OFF]
        d0 = plan[0, D_OFF]      # δ⁰ of this block's units: ws[d0 + s*UPB + u]
        j0 = blk * UPB
        dec = DT(decay)

        # ---- load: own W0 rows to registers, own b0 to shared, upper layers to ws
        for u in range(UPB):
            for q in range(K):
                k = tid + q * T
                ok = j0 + u < n1 and k < n0
                wr[u * K + q] = params[plan[0, W_OFF] + (j0 + u) * n0 + k] if ok else ZERO
        for u in range(tid, UPB, T):
            b0s[u] = params[plan[0, B_OFF] + j0 + u] if j0 + u < n1 else ZERO
        for l in range(1, L):
            for i in range(tid, plan[l, N_IN] * plan[l, N_OUT], T):
                ws[plan[l, LW_OFF] + i] = params[plan[l, W_OFF] + i]
            for i in range(tid, plan[l, N_OUT], T):
                ws[plan[l, LB_OFF] + i] = params[plan[l, B_OFF] + i]
        cuda.syncthreads()
        if NCH == 1:
            load_rows(xr, x, order, 0, min(MB, n_samples), n0, tid)

        for t in range(n_steps):
            i0 = t * MB
            m = min(MB, n_samples - i0)
            xb = (t & 1) * MB * n1
            lrm = DT(lr / m)

            # ---- 1. this block's layer-0 units: z = W0 x + b0, reduced over the block
            for c in range(NCH):
                if NCH > 1:
                    load_rows(xr, x, order, i0 + c * SB, m - c * SB, n0, tid)
                for u in range(UPB):
                    for s in range(SB):
                        acc = ZERO
                        for q in range(K):
                            acc += wr[u * K + q] * xr[s * K + q]
                        part[u * SB + s] = acc
                stage_partials(part, red, tid)
                cuda.syncthreads()
                for p in range(tid, P, T):
                    u = p // SB
                    cs = c * SB + p - u * SB
                    if j0 + u < n1 and cs < m:
                        z = b0s[u]
                        for w in range(NW):
                            z += red[w * P + p]
                        xchg[xb + cs * n1 + j0 + u] = z if act0 == SOFTMAX else act(z, act0)
                if NCH > 1:
                    cuda.syncthreads()   # red is reused by the next chunk
            if NCH == 1 and t + 1 < n_steps:
                load_rows(xn, x, order, i0 + MB, min(MB, n_samples - i0 - MB), n0, tid)
            grid.sync()

            # ---- 2. every block: all of layer 0's outputs, then the upper layers' forward
            for i in range(tid, m * n1, T):
                ws[a0 + i] = load_exchange(xchg, xb + i)
            cuda.syncthreads()
            if act0 == SOFTMAX:
                softmax_rows(ws, a0, n1, m, tid, -1, y, order, i0)
                cuda.syncthreads()
            for l in range(1, L):
                n_in = plan[l, N_IN]
                n_out = plan[l, N_OUT]
                act_l = plan[l, ACT]
                a_in = plan[l - 1, A_OFF]
                a_out = plan[l, A_OFF]
                lw = plan[l, LW_OFF]
                d_out = plan[l, D_OFF] if l == L - 1 else -1
                for idx in range(tid, m * n_out, T):
                    s = idx // n_out
                    o = idx - s * n_out
                    z = ws[plan[l, LB_OFF] + o]
                    for i in range(n_in):
                        z += ws[lw + o * n_in + i] * ws[a_in + s * n_in + i]
                    if act_l == SOFTMAX:
                        ws[a_out + idx] = z
                    else:
                        a = act(z, act_l)
                        ws[a_out + idx] = a
                        if d_out >= 0:
                            ws[d_out + idx] = out_delta(a, y[order[i0 + s], o], loss, act_l)
                cuda.syncthreads()
                if act_l == SOFTMAX:
                    softmax_rows(ws, a_out, n_out, m, tid, d_out, y, order, i0)
                    cuda.syncthreads()

            # ---- 3. backprop; layer 0's δ only for this block's units (rows >= m are zero)
            if L == 1:
                for idx in range(tid, MBP * UPB, T):
                    s = idx // UPB
                    j = j0 + idx - s * UPB
                    d = ZERO
                    if s < m and j < n1:
                        d = out_delta(ws[a0 + s * n1 + j], y[order[i0 + s], j], loss, act0)
                    ws[d0 + idx] = d
                cuda.syncthreads()
            for l in range(L - 1, 0, -1):
                n_in = plan[l, N_IN]
                n_out = plan[l, N_OUT]
                lw = plan[l, LW_OFF]
                d_l = plan[l, D_OFF]
                a_in = plan[l - 1, A_OFF]
                act_in = plan[l - 1, ACT]
                if l > 1:
                    d_in = plan[l - 1, D_OFF]
                    for idx in range(tid, m * n_in, T):
                        s = idx // n_in
                        i = idx - s * n_in
                        g = ZERO
                        for o in range(n_out):
                            g += ws[lw + o * n_in + i] * ws[d_l + s * n_out + o]
                        ws[d_in + idx] = g * act_prime(ws[a_in + idx], act_in)
                else:
                    for idx in range(tid, MBP * UPB, T):
                        s = idx // UPB
                        i = j0 + idx - s * UPB
                        g = ZERO
                        if s < m and i < n1:
                            for o in range(n_out):
                                g += ws[lw + o * n_in + i] * ws[d_l + s * n_out + o]
                            g *= act_prime(ws[a_in + s * n_in + i], act_in)
                        ws[d0 + idx] = g
                cuda.syncthreads()

            # ---- 4. SGD: upper layers (private copy), then this block's W0 rows and b0
            for l in range(1, L):
                n_in = plan[l, N_IN]
                n_out = plan[l, N_OUT]
                lw = plan[l, LW_OFF]
                lb = plan[l, LB_OFF]
                d_l = plan[l, D_OFF]
                a_in = plan[l - 1, A_OFF]
                nw = n_in * n_out
                for idx in range(tid, nw + n_out, T):
                    g = ZERO
                    if idx < nw:
                        o = idx // n_in
                        i = idx - o * n_in
                        for s in range(m):
                            g += ws[d_l + s * n_out + o] * ws[a_in + s * n_in + i]
                        ws[lw + idx] = dec * ws[lw + idx] - lrm * g
                    else:
                        o = idx - nw
                        for s in range(m):
                            g += ws[d_l + s * n_out + o]
                        ws[lb + o] -= lrm * g
            for e in range(UPBK):
                grad[e] = ZERO
            for c in range(NCH):
                if NCH > 1:
                    load_rows(xr, x, order, i0 + c * SB, m - c * SB, n0, tid)
                for u in range(UPB):
                    for s in range(SB):
                        d = ws[d0 + (c * SB + s) * UPB + u]
                        for q in range(K):
                            grad[u * K + q] += d * xr[s * K + q]
            for e in range(UPBK):
                wr[e] = dec * wr[e] - lrm * grad[e]
            for u in range(tid, UPB, T):
                g = ZERO
                for s in range(m):
                    g += ws[d0 + s * UPB + u]
                b0s[u] -= lrm * g
            if NCH == 1:
                for e in range(SBK):
                    xr[e] = xn[e]
            # No barrier needed here: the next step's first shared-memory writes (red) are
            # not read in phase 4, and its reads of ws/b0s follow the reduction's barrier.

        # ---- store: own rows and biases; block 0 stores its copy of the upper layers
        for u in range(UPB):
            for q in range(K):
                k = tid + q * T
                if j0 + u < n1 and k < n0:
                    params[plan[0, W_OFF] + (j0 + u) * n0 + k] = wr[u * K + q]
        for u in range(tid, UPB, T):
            if j0 + u < n1:
                params[plan[0, B_OFF] + j0 + u] = b0s[u]
        cuda.syncthreads()
        if blk == 0:
            for l in range(1, L):
                for i in range(tid, plan[l, N_IN] * plan[l, N_OUT], T):
                    params[plan[l, W_OFF] + i] = ws[plan[l, LW_OFF] + i]
                for i in range(tid, plan[l, N_OUT], T):
                    params[plan[l, B_OFF] + i] = ws[plan[l, LB_OFF] + i]

    return epoch_kernel


_epoch_cache: dict = {}


def epoch_config(layout, dtype, batch_size, *, units_per_block=None, threads=None,
                 storage=None):
    """The launch plan ``train_epoch`` uses, as a dict (also handy to print in benchmarks).

    units_per_block: layer-0 units per block (default 1, i.e. one block per unit; at least
    ceil(n1 / SMs)); threads: per block (default ``config.THREADS_PER_BLOCK``, a multiple of 32);
    storage: ``"shared"`` / ``"global"`` to force where the private workspace lives.
    """
    layout = np.asarray(layout, dtype=np.int64).reshape(-1, 4)
    dtype = np.dtype(dtype)
    L = len(layout)
    widths = [int(layout[0, 0])] + [int(r[1]) for r in layout]
    n0, n1 = widths[0], widths[1]
    T = int(threads or config.THREADS_PER_BLOCK)
    if not SIM and T % 32:
        raise ValueError(f"threads per block must be a multiple of 32, got {T}")
    max_blocks = _SIM_MAX_BLOCKS if SIM else cuda.get_current_device().MULTIPROCESSOR_COUNT
    # one layer-0 unit per block measured fastest, for [784,30,10] and [784,100,10] alike
    # (docs/performance.md, launch tuning); more units than SMs raise it below
    upb = units_per_block or 1
    upb = max(int(upb), -(-n1 // max_blocks))     # one block per SM at most: co-resident
    upb = min(upb, n1)
    blocks = -(-n1 // upb)
    mb = int(batch_size)
    nch = -(-mb // _SB_MAX)
    sb = -(-mb // nch)
    k = -(-n0 // T)
    # Workspace: activations of every layer (MB rows), δ of layers >= 1, δ⁰ of own units
    # (MBP rows), then the private copy of layers >= 1.
    plan = np.zeros((L, 9), dtype=np.int64)
    off = 0
    for l in range(L):
        plan[l, :4] = layout[l]
        plan[l, A_OFF] = off
        off += mb * widths[l + 1]
    for l in range(1, L):
        plan[l, D_OFF] = off
        off += mb * widths[l + 1]
    plan[0, D_OFF] = off
    off += nch * sb * upb
    for l in range(1, L):
        plan[l, LW_OFF] = off
        off += widths[l] * widths[l + 1]
        plan[l, LB_OFF] = off
        off += widths[l + 1]
    ws_size = max(off, 1)
    if storage is None:
        storage = "shared" if ws_size * dtype.itemsize <= _SHARED_BUDGET else "global"
    if storage not in ("shared", "global"):
        raise ValueError(f"storage must be 'shared' or 'global', got {storage!r}")
    return dict(dtype=dtype, T=T, UPB=upb, K=k, SB=sb, NCH=nch, MB=mb, WS_SIZE=ws_size,
                USE_SHARED=storage == "shared", L=L, blocks=blocks, n1=n1, plan=plan)


def _epoch_kernel(cfg):
    key = tuple(cfg[name] for name in ("dtype", "T", "UPB", "K", "SB", "NCH", "MB", "WS_SIZE",
                                       "USE_SHARED", "L"))
    if key not in _epoch_cache:
        _epoch_cache[key] = _build_epoch_kernel(*key)
    return _epoch_cache[key]


def train_epoch(d_params, layout, acts, loss, d_x, d_y, d_order, batch_size, lr, decay=1.0,
                **tuning):
    """One epoch of mini-batch SGD in place, in a single cooperative launch.

    d_params: device float32/float64[P] (updated); layout: int64[L, 4] (host);
    acts: int64[L] activation codes (host; softmax only on the last layer); loss: loss code;
    d_x: device [N, n0]; d_y: device [N, nL] dense targets; d_order: device int64[N] (visit
    order); mini-batches are consecutive slices of ``order``, the last may be shorter.
    Update: w ← decay·w − (lr/m)·Σ∇w, b ← b − (lr/m)·Σ∇b. ``tuning``: see ``epoch_config``.
    Asynchronous like any launch: synchronise before timing or reading params.
    """
    layout = np.asarray(layout, dtype=np.int64).reshape(-1, 4)
    acts = np.asarray(acts, dtype=np.int64).reshape(-1)
    if len(acts) != len(layout):
        raise ValueError(f"{len(acts)} activation codes for {len(layout)} layers")
    if np.any(acts[:-1] == SOFTMAX):
        raise ValueError("softmax is supported on the output layer only")
    if np.any(layout[1:, 0] != layout[:-1, 1]):
        raise ValueError("layout: each layer's n_in must equal the previous layer's n_out")
    dtype = np.dtype(d_params.dtype)
    for name, arr in (("x", d_x), ("y", d_y)):
        if np.dtype(arr.dtype) != dtype:
            raise TypeError(f"{name} is {arr.dtype}, params are {dtype}")
    if d_x.ndim != 2 or d_x.shape[1] != layout[0, 0]:
        raise ValueError(f"x must be (N, {layout[0, 0]}), got {d_x.shape}")
    if d_y.shape != (d_x.shape[0], layout[-1, 1]):
        raise ValueError(f"y must be ({d_x.shape[0]}, {layout[-1, 1]}), got {d_y.shape}")
    if d_order.ndim != 1 or np.dtype(d_order.dtype) != np.int64:
        raise TypeError(f"order must be int64[N], got {d_order.dtype}{list(d_order.shape)}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = d_order.shape[0]
    if n == 0:
        return
    cfg = epoch_config(layout, dtype, min(int(batch_size), n), **tuning)
    cfg_plan = cfg.pop("plan")
    plan = np.ascontiguousarray(cfg_plan)
    plan[:, ACT] = acts
    kernel = _epoch_kernel(cfg)
    xchg = cuda.device_array(2 * cfg["MB"] * cfg["n1"], dtype=dtype)
    scratch_rows = 1 if cfg["USE_SHARED"] else cfg["blocks"]
    scratch = cuda.device_array((scratch_rows, 1 if cfg["USE_SHARED"] else cfg["WS_SIZE"]),
                                dtype=dtype)
    quiet_launch(kernel, cfg["blocks"], cfg["T"], d_params, cuda.to_device(plan), d_x, d_y,
                  d_order, xchg, scratch, int(loss), float(lr), float(decay))
