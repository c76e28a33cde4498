"""Convolution-family kernels for CUDA (numba.cuda): conv2d, max-pooling and the fused ConvPool
layer of the book's network3, forward and backward, on device arrays; one launch per op and
direction, deterministic (fixed-order reductions, no atomics).

Shapes and formulas as ``conv_cpu``: x ``float[n, c_in, h, w]``, w ``float[c_out, c_in, kh,
kw]``, b ``float[c_out]``; conv2d is a valid, stride-1 cross-correlation; argmax (int32) is the
flat index y·w + x of each window's first maximum in the pooled plane. Threads per block:
``config.THREADS_PER_BLOCK`` (``FASTNET_CUDA_TPB``).

NumPy twin: ``fastnet.reference.conv`` (same public names and signatures); CPU twin
``conv_cpu``. Tests: ``tests/test_layers_cuda.py``: under Numba's CUDA simulator in a
subprocess (``tests/cuda_sim/sim_layers_cuda.py``, CI), compiled for sm_90 by
``tests/cuda_sim/compile_ptx.py``, and on a GPU with ``pytest -m cuda`` (the recorded GPU runs:
docs/performance.md). How the kernels divide the work: docs/kernels.md.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from .scalar_cuda import device_fn, quiet_launch
from .layers_cuda import TPB, blocks_for, kernels as layer_kernels

_RED_LANES = max(1, min(TPB, round(TPB ** 0.5)))   # first-level lanes of block_sum

__all__ = ["conv2d_forward", "conv2d_backward", "maxpool_forward", "maxpool_backward",
           "convpool_forward", "convpool_backward"]

_kernel_cache: dict = {}


def kernels(dtype):
    """The conv-family kernels for ``dtype`` (float32 or float64), compiled on first launch."""
    dtype = np.dtype(dtype)
    if dtype in _kernel_cache:
        return _kernel_cache[dtype]
    DT = dtype.type
    ZERO = DT(0)
    lk = layer_kernels(dtype)
    act, act_prime = lk["act"], lk["act_prime"]

    @device_fn
    def conv_at(x, w, n, o, y, xx):
        """Σ_{c,i,j} w[o, c, i, j] · x[n, c, y + i, xx + j] (no bias)."""
        c_in, kh, kw = w.shape[1], w.shape[2], w.shape[3]
        acc = ZERO
        for c in range(c_in):
            for i in range(kh):
                for j in range(kw):
                    acc += w[o, c, i, j] * x[n, c, y + i, xx + j]
        return acc

    @device_fn
    def block_sum(v, red, red2):
        """Sum of v over the block's TPB threads, valid in thread 0 (every thread must call
        it). red: shared DT[TPB]; red2: shared DT[_RED_LANES]. Two barriers: lane r < R sums
        red[r], red[r + R], … (consecutive lanes read consecutive words), then thread 0 sums
        the R lane totals — a fixed order, so the result is the same every run (and fewer
        barriers than a log2(TPB)-level tree, which the simulator pays for dearly)."""
        tid = cuda.threadIdx.x
        red[tid] = v
        cuda.syncthreads()
        if tid < _RED_LANES:
            acc = ZERO
            for k in range(tid, TPB, _RED_LANES):
                acc += red[k]
            red2[tid] = acc
        cuda.syncthreads()
        total = ZERO
        if tid == 0:
            for k in range(_RED_LANES):
                total += red2[k]
        return total

    @device_fn
    def window_of(argmax, n, ch, yy, xx, row_len, bounds):
        """Flat index py·ow + px of the pooling window of plane (n, ch) whose argmax is the
        element (yy, xx) of a plane with rows of ``row_len``, or -1 if none is (yy, xx >= 0).
        bounds = (ph_lo, ph_hi, pw_lo, pw_hi): the pooling size is not passed to the backward
        ops, only implied by the shapes, and may be ambiguous (rows 8 → 2 windows: ph 3 or
        4); every candidate window is checked — windows do not overlap, so at most one has
        (yy, xx) as its argmax. Usually ph_lo == ph_hi and there is one candidate."""
        oh, ow = argmax.shape[2], argmax.shape[3]
        k = yy * row_len + xx
        for py in range(yy // bounds[1], min(oh - 1, yy // bounds[0]) + 1):
            for px in range(xx // bounds[3], min(ow - 1, xx // bounds[2]) + 1):
                if argmax[n, ch, py, px] == k:
                    return py * ow + px
        return -1

    @cuda.jit
    def conv_fwd(x, w, b, z):
        """x: DT[N, c_in, h, w]; w: DT[c_out, c_in, kh, kw]; b: DT[c_out];
        z: DT[N, c_out, oh, ow] (overwritten)."""
        c_out, oh, ow = z.shape[1], z.shape[2], z.shape[3]
        for e in range(cuda.grid(1), z.size, cuda.gridsize(1)):
            t = e // ow
            px = e - t * ow
            py = t % oh
            t //= oh
            o = t % c_out
            n = t // c_out
            z[n, o, py, px] = conv_at(x, w, n, o, py, px) + b[o]

    @cuda.jit
    def pool_fwd(x, ph, pw, y, argmax):
        """x: DT[N, C, h, w]; y: DT[N, C, h//ph, w//pw], argmax: int32 like y (overwritten)."""
        c, oh, ow = y.shape[1], y.shape[2], y.shape[3]
        wd = x.shape[3]
        for e in range(cuda.grid(1), y.size, cuda.gridsize(1)):
            t = e // ow
            px = e - t * ow
            py = t % oh
            t //= oh
            ch = t % c
            n = t // c
            best = x[n, ch, py * ph, px * pw]
            arg = py * ph * wd + px * pw
            for i in range(ph):
                for j in range(pw):
                    v = x[n, ch, py * ph + i, px * pw + j]
                    if v > best or (v != v and best == best):   # NaN ranks highest
                        best = v
                        arg = (py * ph + i) * wd + px * pw + j
            y[n, ch, py, px] = best
            argmax[n, ch, py, px] = arg

    @cuda.jit
    def pool_bwd(dy, argmax, bounds, dx):
        """dy: DT[N, C, oh, ow]; argmax: int32 like dy; bounds: see ``window_of``;
        dx: DT[N, C, h, w] (overwritten): dy routed to each window's argmax, zero elsewhere."""
        c, h, wd = dx.shape[1], dx.shape[2], dx.shape[3]
        ow = dy.shape[3]
        for e in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
            t = e // wd
            xx = e - t * wd
            yy = t % h
            t //= h
            ch = t % c
            n = t // c
            q = window_of(argmax, n, ch, yy, xx, wd, bounds)
            g = ZERO
            if q >= 0:
                py = q // ow
                g = dy[n, ch, py, q - py * ow]
            dx[n, ch, yy, xx] = g

    @cuda.jit
    def convpool_fwd(x, w, b, ph, pw, code, a, z, argmax):
        """x: DT[N, c_in, h, w]; w: DT[c_out, c_in, kh, kw]; b: DT[c_out]; a, z: DT[N, c_out,
        oh, ow] and argmax: int32 like a (overwritten); oh = (h - kh + 1)//ph, ow likewise."""
        c_out, oh, ow = z.shape[1], z.shape[2], z.shape[3]
        cw = x.shape[3] - w.shape[3] + 1
        for e in range(cuda.grid(1), z.size, cuda.gridsize(1)):
            t = e // ow
            px = e - t * ow
            py = t % oh
            t //= oh
            o = t % c_out
            n = t // c_out
            best = conv_at(x, w, n, o, py * ph, px * pw)
            arg = py * ph * cw + px * pw
            for i in range(ph):
                for j in range(pw):
                    if i + j > 0:
                        v = conv_at(x, w, n, o, py * ph + i, px * pw + j)
                        if v > best or (v != v and best == best):   # NaN ranks highest
                            best = v
                            arg = (py * ph + i) * cw + px * pw + j
            zz = best + b[o]
            z[n, o, py, px] = zz
            a[n, o, py, px] = act(zz, code)
            argmax[n, o, py, px] = arg

    @cuda.jit
    def conv_bwd(x, w, dz, dx, dw, db, n_dx_blocks):
        """x: DT[N, c_in, h, w]; w: DT[c_out, c_in, kh, kw]; dz: DT[N, c_out, oh, ow];
        dx: like x (if n_dx_blocks > 0), dw: like w, db: DT[c_out] (overwritten), all summed
        over the batch. Grid: c_out·c_in·kh·kw + c_out + n_dx_blocks blocks of TPB."""
        red = cuda.shared.array(TPB, DT)
        red2 = cuda.shared.array(_RED_LANES, DT)
        blk = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        n_b, c_in, h, wd = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
        c_out, kh, kw = w.shape[0], w.shape[2], w.shape[3]
        oh, ow = dz.shape[2], dz.shape[3]
        n_w = c_out * c_in * kh * kw
        n_pos = n_b * oh * ow
        if blk < n_w + c_out:
            i = j = c = 0
            if blk < n_w:
                j = blk % kw
                t = blk // kw
                i = t % kh
                t //= kh
                c = t % c_in
                o = t // c_in
            else:
                o = blk - n_w
            part = ZERO
            for p in range(tid, n_pos, TPB):
                t = p // ow
                px = p - t * ow
                py = t % oh
                n = t // oh
                if blk < n_w:
                    part += dz[n, o, py, px] * x[n, c, py + i, px + j]
                else:
                    part += dz[n, o, py, px]
            total = block_sum(part, red, red2)
            if tid == 0:
                if blk < n_w:
                    dw[o, c, i, j] = total
                else:
                    db[o] = total
        else:
            for e in range((blk - n_w - c_out) * TPB + tid, dx.size, n_dx_blocks * TPB):
                t = e // wd
                xx = e - t * wd
                yy = t % h
                t //= h
                c = t % c_in
                n = t // c_in
                acc = ZERO
                for o in range(c_out):
                    for i in range(kh):
                        py = yy - i
                        if 0 <= py < oh:
                            for j in range(kw):
                                px = xx - j
                                if 0 <= px < ow:
                                    acc += dz[n, o, py, px] * w[o, c, i, j]
                dx[n, c, yy, xx] = acc

    @cuda.jit
    def convpool_bwd(x, w, z, a, argmax, da, code, bounds, dx, dw, db, n_dx_blocks):
        """x, w: as given to the forward; z, a, argmax: its outputs (DT/int32[N, c_out, oh,
        ow]); da: ∂C/∂a like a. dx: like x (if n_dx_blocks > 0), dw: like w, db: DT[c_out]
        (overwritten), all summed over the batch. Grid as ``conv_bwd``."""
        red = cuda.shared.array(TPB, DT)
        red2 = cuda.shared.array(_RED_LANES, DT)
        blk = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        n_b, c_in, h, wd = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
        c_out, kh, kw = w.shape[0], w.shape[2], w.shape[3]
        oh, ow = z.shape[2], z.shape[3]
        ch, cw = h - kh + 1, wd - kw + 1
        n_w = c_out * c_in * kh * kw
        n_pos = n_b * oh * ow
        if blk < n_w + c_out:
            i = j = c = 0
            if blk < n_w:
                j = blk % kw
                t = blk // kw
                i = t % kh
                t //= kh
                c = t % c_in
                o = t // c_in
            else:
                o = blk - n_w
            part = ZERO
            for p in range(tid, n_pos, TPB):
                t = p // ow
                px = p - t * ow
                py = t % oh
                n = t // oh
                g = da[n, o, py, px] * act_prime(z[n, o, py, px], a[n, o, py, px], code)
                if blk < n_w:
                    k = argmax[n, o, py, px]
                    ry = k // cw
                    part += g * x[n, c, ry + i, k - ry * cw + j]
                else:
                    part += g
            total = block_sum(part, red, red2)
            if tid == 0:
                if blk < n_w:
                    dw[o, c, i, j] = total
                else:
                    db[o] = total
        else:
            for e in range((blk - n_w - c_out) * TPB + tid, dx.size, n_dx_blocks * TPB):
                t = e // wd
                xx = e - t * wd
                yy = t % h
                t //= h
                c = t % c_in
                n = t // c_in
                acc = ZERO
                for o in range(c_out):
                    for i in range(kh):
                        ry = yy - i
                        if 0 <= ry < ch:
                            for j in range(kw):
                                rx = xx - j
                                if 0 <= rx < cw:
                                    q = window_of(argmax, n, o, ry, rx, cw, bounds)
                                    if q >= 0:
                                        py = q // ow
                                        px = q - py * ow
                                        g = da[n, o, py, px] * act_prime(
                                            z[n, o, py, px], a[n, o, py, px], code)
                                        acc += g * w[o, c, i, j]
                dx[n, c, yy, xx] = acc

    ns = dict(conv_fwd=conv_fwd, pool_fwd=pool_fwd, pool_bwd=pool_bwd,
              convpool_fwd=convpool_fwd, conv_bwd=conv_bwd, convpool_bwd=convpool_bwd)
    _kernel_cache[dtype] = ns
    return ns


# ---------------------------------------------------------------------------- host wrappers
def _launch_flat(kernel, n, *args):
    if n:
        quiet_launch(kernel, blocks_for(n), TPB, *args)


def _out(shape, dtype):
    return cuda.device_array(tuple(int(s) for s in shape), dtype=dtype)


def _pool_bounds(plane, pooled):
    """(ph_lo, ph_hi, pw_lo, pw_hi): the pooling sizes consistent with pooling a ``plane``
    (h, w) down to ``pooled`` (oh, ow) = (h // ph, w // pw) (see ``window_of``)."""
    h, w = (int(v) for v in plane)
    oh, ow = (max(1, int(v)) for v in pooled)
    return (h // (oh + 1) + 1, h // oh, w // (ow + 1) + 1, w // ow)


def conv2d_forward(x, w, b):
    """x: DT[N, c_in, h, w]; w: DT[c_out, c_in, kh, kw]; b: DT[c_out]
    → z: DT[N, c_out, h - kh + 1, w - kw + 1] (device)."""
    n, _, h, wd = x.shape
    c_out, _, kh, kw = w.shape
    z = _out((n, c_out, h - kh + 1, wd - kw + 1), x.dtype)
    _launch_flat(kernels(x.dtype)["conv_fwd"], z.size, x, w, b, z)
    return z


def _backward_grid(kernel, x, w, need_dx, *args):
    """Launch a conv/convpool backward kernel: (dx or None, dw, db)."""
    c_out = w.shape[0]
    dw = _out(w.shape, x.dtype)
    db = _out((c_out,), x.dtype)
    dx = _out(x.shape, x.dtype) if need_dx else _out((1, 1, 1, 1), x.dtype)
    n_dx_blocks = blocks_for(dx.size) if need_dx else 0
    quiet_launch(kernel, w.size + c_out + n_dx_blocks, TPB, x, w, *args, dx, dw, db,
                  n_dx_blocks)
    return (dx if need_dx else None), dw, db


def conv2d_backward(x, w, dz, need_dx: bool = True):
    """dz: DT[N, c_out, oh, ow] → (dx like x or None, dw like w, db DT[c_out]), summed over
    the batch, in one launch."""
    return _backward_grid(kernels(x.dtype)["conv_bwd"], x, w, need_dx, dz)


def maxpool_forward(x, size=(2, 2)):
    """x: DT[N, C, h, w] → (y: DT[N, C, h//ph, w//pw], argmax: int32 like y)."""
    ph, pw = (int(s) for s in size)
    n, c, h, wd = x.shape
    y = _out((n, c, h // ph, wd // pw), x.dtype)
    argmax = _out(y.shape, np.int32)
    _launch_flat(kernels(x.dtype)["pool_fwd"], y.size, x, ph, pw, y, argmax)
    return y, argmax


def maxpool_backward(dy, argmax, x_shape):
    """dy: DT[N, C, oh, ow]; argmax: int32 like dy (from ``maxpool_forward``)
    → dx: DT[x_shape], dy routed to the argmax positions, zero elsewhere."""
    x_shape = tuple(int(s) for s in x_shape)
    dx = _out(x_shape, dy.dtype)
    bounds = _pool_bounds(x_shape[2:], dy.shape[2:])
    _launch_flat(kernels(dy.dtype)["pool_bwd"], dx.size, dy, argmax, bounds, dx)
    return dx


def convpool_forward(x, w, b, pool=(2, 2), act: int = 1):
    """a = act(maxpool(conv(x, w)) + b). x: DT[N, c_in, h, w]; w: DT[c_out, c_in, kh, kw];
    b: DT[c_out] → (a, z: DT[N, c_out, oh, ow], argmax: int32 like a), oh = (h - kh + 1)//ph,
    ow = (w - kw + 1)//pw; argmax indexes the conv output plane."""
    ph, pw = (int(s) for s in pool)
    n, _, h, wd = x.shape
    c_out, _, kh, kw = w.shape
    shape = (n, c_out, (h - kh + 1) // ph, (wd - kw + 1) // pw)
    a, z, argmax = _out(shape, x.dtype), _out(shape, x.dtype), _out(shape, np.int32)
    _launch_flat(kernels(x.dtype)["convpool_fwd"], z.size, x, w, b, ph, pw, int(act), a, z,
                 argmax)
    return a, z, argmax


def convpool_backward(x, w, z, a, argmax, da, act: int = 1, need_dx: bool = True):
    """Gradients of ``convpool_forward`` given da = ∂C/∂a: (dx like x or None, dw like w,
    db DT[c_out]), summed over the batch, in one launch."""
    kh, kw = w.shape[2], w.shape[3]
    bounds = _pool_bounds((x.shape[2] - kh + 1, x.shape[3] - kw + 1), z.shape[2:])
    return _backward_grid(kernels(x.dtype)["convpool_bwd"], x, w, need_dx, z, a, argmax, da,
                          int(act), bounds)
