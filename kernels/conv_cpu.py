"""Convolution-family kernels for the CPU (Numba): conv2d and the fused ConvPool layer of the
book's network3, forward and backward (max-pooling: ``pool_cpu``, re-exported here).

    conv2d    z[n, o, y, x] = b[o] + Σ_{c,i,j} w[o, c, i, j] · x[n, c, y + i, x + j]   (valid)
    convpool  a = act(maxpool(conv(x, w)) + b)   (the book's ConvPoolLayer: bias after pooling)

Shapes: x ``float[n, c_in, h, w]``, w ``float[c_out, c_in, kh, kw]``, b ``float[c_out]``;
C-contiguous, one dtype, kh <= h, kw <= w: the kernels (``*_into``) do not check (the API layer
does) and write into arrays passed in. The plain-named wrappers allocate and call them.
Per image: ``conv_simd`` (vector loops), ``pool_cpu`` (pooling stage); threads and scratch:
``conv_plan``. NumPy twin: ``fastnet.reference.conv`` (same public names).
Tests: ``tests/test_conv.py``. Why the flat correlation and the backward from the pooling
winners: docs/kernels.md.
"""

import numpy as np
from numba import get_num_threads, njit, prange

from . import activations_cpu
from . import config
from . import conv_plan
from . import conv_simd
from . import dense_cpu as _dense
from . import pool_cpu
from . import simd
from .config import LINEAR, SIGMOID
from .pool_cpu import (maxpool_backward, maxpool_backward_into,  # noqa: F401 (the op set's
                       maxpool_forward, maxpool_forward_into)    # conv interface)

_jit = njit(**config.CPU_JIT)
# Only explicit prange loops run in parallel: np.zeros and array expressions stay serial
# (each would otherwise be a parallel region of its own).
_PRANGE_ONLY = {"comprehension": False, "reduction": False, "inplace_binop": False,
                "setitem": False, "numpy": False, "stencil": False, "fusion": False,
                "prange": True}
_pjit = njit(**config.CPU_JIT, parallel=_PRANGE_ONLY)


@_jit
def forward_images(x, w, offs, b, pool, act, out, start, stop, work):
    """convpool_forward_into for images start..stop-1; out = (a, z, argmax); work = (zf,
    pooling scratch, activation scratch, the row chunks) of this chunk (see
    ``conv_plan.forward_scratch``). The conv: ``corr_rows`` over the row chunks (float32, rows of
    at least 8), else ``conv_simd.corr_flat``."""
    _, c_in, h, wd = x.shape
    c_out, _, kh, kw = w.shape
    ch, cw = h - kh + 1, wd - kw + 1
    wm = w.reshape(c_out, c_in * kh * kw)
    a, z, argmax = out
    zf, pool_work, act_buf, starts = work
    for s in range(start, stop):
        xf = x[s].reshape(c_in * h * wd)
        if starts.shape[0] > 0:
            conv_simd.corr_rows(xf, wm, offs, starts, zf)
        else:
            conv_simd.corr_flat(xf, wm, offs, zf, (ch - 1) * wd + cw)
        pool_cpu.pool(zf, wd, cw, b, pool[0], pool[1], z[s], argmax[s], pool_work)
        activations_cpu.act_plane(z[s].reshape(z[s].size), a[s].reshape(a[s].size), act,
                                  act_buf)


@_pjit
def convpool_forward_into(x, w, b, ph, pw, act, a, z, argmax, nthreads):
    """The book's ConvPoolLayer forward.

    x: float[n, c_in, h, w]; w: float[c_out, c_in, kh, kw]; b: float[c_out]; pool (ph, pw);
    act: activation code. Overwritten, all [n, c_out, oh, ow] with oh = (h-kh+1)//ph and
    ow = (w-kw+1)//pw: a = act(z); z = window max of the conv + b[o]; argmax: int32, flat
    index y·(w-kw+1) + x of each winner in the conv output's plane.
    """
    n, c_in, h, wd = x.shape
    c_out, _, kh, kw = w.shape
    offs = conv_plan.tap_offsets(c_in, h, wd, kh, kw)
    nchunks = max(1, min(n, nthreads))
    zf, fbuf, ibuf, act_buf, starts = conv_plan.forward_scratch(x, w, z.shape[2], z.shape[3],
                                                                nchunks)
    out = (a, z, argmax)
    for k in prange(nchunks):
        start, stop = conv_plan.chunk(k, nchunks, n)
        work = (zf[k], (fbuf[k], ibuf[k]), act_buf[k], starts)
        forward_images(x, w, offs, b, (ph, pw), act, out, start, stop, work)


@_jit
def _zero(v):
    """v[:] = 0 for a 1-D array, as a loop LLVM turns into a memset."""
    zero = v.dtype.type(0)
    for i in range(v.size):
        v[i] = zero


@_jit
def _dw_flat(xf, dzf, offs, dwm, length):
    """dwm[o, t] += Σ_{p < length} dzf[o, p] · xf[p + offs[t]]  (accumulated).

    xf: float[N] one flat image; dzf: float[c_out, >= length]; offs: int64[T];
    dwm: float[c_out, T]. Two filters × four taps per pass over p, sums kept in registers.
    """
    c_out, n_taps = dwm.shape
    zero = xf.dtype.type(0)
    for o in range(0, c_out - 1, 2):
        d0, d1 = dzf[o], dzf[o + 1]
        t = 0
        while t + 4 <= n_taps:
            s0, s1, s2, s3 = xf[offs[t]:], xf[offs[t + 1]:], xf[offs[t + 2]:], xf[offs[t + 3]:]
            a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = zero
            for p in range(length):
                e0, e1 = d0[p], d1[p]
                x0, x1, x2, x3 = s0[p], s1[p], s2[p], s3[p]
                a0 += e0 * x0
                a1 += e0 * x1
                a2 += e0 * x2
                a3 += e0 * x3
                b0 += e1 * x0
                b1 += e1 * x1
                b2 += e1 * x2
                b3 += e1 * x3
            dwm[o, t] += a0
            dwm[o, t + 1] += a1
            dwm[o, t + 2] += a2
            dwm[o, t + 3] += a3
            dwm[o + 1, t] += b0
            dwm[o + 1, t + 1] += b1
            dwm[o + 1, t + 2] += b2
            dwm[o + 1, t + 3] += b3
            t += 4
        for t in range(t, n_taps):
            s0 = xf[offs[t]:]
            a0 = b0 = zero
            for p in range(length):
                a0 += d0[p] * s0[p]
                b0 += d1[p] * s0[p]
            dwm[o, t] += a0
            dwm[o + 1, t] += b0
    if c_out % 2:
        o = c_out - 1
        d0 = dzf[o]
        for t in range(n_taps):
            s0 = xf[offs[t]:]
            a0 = zero
            for p in range(length):
                a0 += d0[p] * s0[p]
            dwm[o, t] += a0


@_jit
def _dx_image(dzp, wt, offs_dx, dxf, wp, dx_n):
    """dx_n[c, y, x] (overwritten) from one image's padded dz.

    dzp: float[c_out·(h+kh-1)·wp] dz of the image at offset (kh-1, kw-1) in a zero frame of
    row stride wp = w + kw - 1; wt, offs_dx: the flipped filters and their tap offsets in dzp;
    dxf: float[c_in, h·wp] scratch; dx_n: float[c_in, h, w].
    """
    c_in, h, w = dx_n.shape
    conv_simd.corr_flat(dzp, wt, offs_dx, dxf, (h - 1) * wp + w)
    for c in range(c_in):
        for y in range(h):
            for x in range(w):
                dx_n[c, y, x] = dxf[c, y * wp + x]


@_jit
def _fold_rows(dwp, kw, stride, dwm):
    """dwm[o, r·kw + j] += dwp[o, r·stride + j] for j < kw: ``dw_sparse``'s lanes (stride 8)
    or ``_dw_patches``' rows (stride kw) into dw."""
    c_out, n_rows = dwm.shape[0], dwm.shape[1] // kw
    for o in range(c_out):
        for r in range(n_rows):
            for j in range(kw):
                dwm[o, r * kw + j] += dwp[o, r * stride + j]


@_jit
def _dw_patches(cols, dq, winners, dwc):
    """dwc[o, :] += Σ_q dq[o, q] · cols[winners[o, q], :] (accumulated): the weight gradient
    from the pooling winners' patch rows (``conv_simd.patches``); winners: the argmax, int32[c_out,
    nq] (positions in the conv output: cols' rows); dwc: float[c_out, width] (columns past
    the taps collect the padding, unused)."""
    for o in range(dq.shape[0]):
        conv_simd.accumulate_rows(cols, winners[o], dq[o], 0, dq.shape[1], dwc[o], False)


@_jit
def _dx_patches(dq, winners, wrows, offs, kw, cw, wd, work, dxf):
    """dxf[y·wd + x + offs[t]] += Σ_{o, q: winner at (y, x)} dq[o, q] · w[o, t] (accumulated):
    the input gradient from the pooling winners, grouped by position — each position's
    winners' filter rows summed in registers (``conv_simd.accumulate_rows``), then added into its
    patch of dxf (a col2im), 8 lanes per filter row with the spill lanes zeroed.

    dq, winners: as for ``_dw_patches``; wrows: float[c_out, width] the filters flat, zeros
    past the taps; offs: the tap offsets (kw per filter row); cw: the conv output's row
    length; work = (order: int32[c_out·nq], coef: float[c_out·nq], starts: int64[positions +
    2], drow: float[width]) scratch; dxf: float[c_in·h·w] one image, flat. The winners are
    counting-sorted by position into order/coef; positions without one are skipped.
    """
    order, coef, starts, drow = work
    c_out, nq = dq.shape
    npos = starts.shape[0] - 2
    n_rows = offs.shape[0] // kw
    hi = dxf.shape[0] - simd.LANES
    one = dxf.dtype.type(1)
    for p in range(npos + 2):
        starts[p] = 0
    for o in range(c_out):
        for q in range(nq):
            starts[winners[o, q] + 2] += 1
    for p in range(1, npos + 2):
        starts[p] += starts[p - 1]       # starts[p + 1]: the first slot of position p
    for o in range(c_out):
        for q in range(nq):
            p = winners[o, q] + 1
            k = starts[p]
            order[k], coef[k] = o, dq[o, q]
            starts[p] = k + 1            # ends as position p's end: starts[p] is its start
    for p in range(npos):
        if starts[p] == starts[p + 1]:
            continue
        conv_simd.accumulate_rows(wrows, order, coef, starts[p], starts[p + 1], drow, True)
        y = p // cw
        origin = y * wd + p - y * cw
        for r in range(n_rows):
            i = origin + offs[r * kw]
            v = simd.keep(simd.load8(drow, r * kw), kw)
            if i <= hi:
                simd.store8(dxf, i, simd.fma(simd.load8(dxf, i), v, one))
            else:
                simd.add_to(dxf, i, kw, v)


@_jit
def backward_images(x, w, plan, fwd, da, act, dx, start, stop, scratch, dw_acc, db_acc):
    """convpool_backward_into for images start..stop-1, accumulating into this chunk's
    dw_acc[c_out, c_in·kh·kw] and db_acc[c_out]. fwd = (z, a, argmax); scratch = (dzf, dzp,
    dxf, pq, dwp, patch work) of this chunk (``chunk_scratch``), dzf and dzp zero on entry
    (and on exit) — except that with the sparse backward (``sparse_backward``) dzf's first
    c_out·oh·ow elements hold the pooled deltas [c_out, oh·ow], pq: int32[c_out, oh·ow] their
    patches' origins (both overwritten per image) and dwp the weight gradient's lanes
    (float[c_out, c_in·kh·8]) or, through the patches (``conv_plan.through_patches``), its rows
    (float[c_out, width]); cleared here, folded into dw_acc at the end. The patch work:
    (cols: float[ch·cw, width], the dx work of ``_dx_patches``)."""
    _, c_in, h, wd = x.shape
    c_out, _, kh, kw = w.shape
    ch, cw = h - kh + 1, wd - kw + 1
    wp = wd + kw - 1
    offs, offs_dx, wt, where = plan
    z, a, argmax = fwd
    dzf, dzp, dxf, pq, dwp, patch = scratch
    cols, dx_work = patch
    need_dx = dx.shape[0] > 0
    oh, ow = argmax.shape[2], argmax.shape[3]
    nq = oh * ow
    sparse = conv_plan.sparse_backward(kw, nq, ch, wd)     # as in the plan
    patches = sparse and conv_plan.through_patches(c_in, kh, kw, ch * cw)
    if sparse:
        _zero(dwp.reshape(dwp.size))
    for s in range(start, stop):
        xf = x[s].reshape(c_in * h * wd)
        if sparse:
            dq = _dense.rows_of(dzf, 0, c_out, nq)
            pool_cpu.pooled_deltas(da[s], z[s], a[s], argmax[s], act, cw, wd, dq, pq, db_acc)
            if patches:
                winners = argmax[s].reshape(c_out, nq)
                conv_simd.patches(xf, offs, kw, cw, wd, cols)
                _dw_patches(cols, dq, winners, dwp)
            else:
                conv_simd.dw_sparse(xf, dq, pq, offs, kw, dwp)
            if need_dx:
                dxs = dx[s].reshape(c_in * h * wd)
                _zero(dxs)
                if patches:
                    _dx_patches(dq, winners, wt, offs, kw, cw, wd, dx_work, dxs)
                else:
                    conv_simd.dx_sparse(dq, pq, wt, offs, kw, dxs)
        else:
            pool_cpu.route_deltas(da[s], z[s], a[s], argmax[s], act, where, dzf, dzp, db_acc)
            _dw_flat(xf, dzf, offs, dw_acc, (ch - 1) * wd + cw)
            _zero(dzf.reshape(dzf.size))       # a memset beats clearing the winners one by one
            if need_dx:
                _dx_image(dzp.reshape(dzp.size), wt, offs_dx, dxf, wp, dx[s])
                _zero(dzp.reshape(dzp.size))
    if sparse:
        _fold_rows(dwp, kw, kw if patches else simd.LANES, dw_acc)


@_pjit
def convpool_backward_into(x, w, z, a, argmax, da, act, dx, dw, db, nthreads):
    """ConvPool backward: dz = da · act'(z) is routed through the argmax to the conv output
    and back through the conv.

    x, w, act as given to convpool_forward_into; z, a, argmax its outputs; da: float[n, c_out,
    oh, ow]. dw: float[c_out, c_in, kh, kw] and db: float[c_out] are overwritten with sums over
    the batch; dx: float[n, c_in, h, w] is overwritten, or skipped when dx.shape[0] == 0 (a
    first layer needs no dx).
    """
    n, c_in, h, wd = x.shape
    c_out, _, kh, kw = w.shape
    need_dx = dx.shape[0] > 0
    nq = z.shape[2] * z.shape[3]
    sparse = conv_plan.sparse_backward(kw, nq, h - kh + 1, wd)
    plan = conv_plan.backward_plan(x, w, need_dx, sparse)
    nchunks = max(1, min(n, nthreads))
    # the scratch's arrays one by one: a parallel loop takes no tuples of arrays
    dzf, dzp, dxf, pq, dwp, patch = conv_plan.backward_scratch(x, w, nq, need_dx, nchunks)
    cols, order, coef, starts, drow = patch
    dw_part = np.zeros((nchunks, c_out, c_in * kh * kw), x.dtype)
    db_part = np.zeros((nchunks, c_out), x.dtype)
    for k in prange(nchunks):
        start, stop = conv_plan.chunk(k, nchunks, n)
        backward_images(x, w, plan, (z, a, argmax), da, act, dx, start, stop,
                         (dzf[k], dzp[k], dxf[k], pq[k], dwp[k],
                          (cols[k], (order[k], coef[k], starts[k], drow[k]))),
                         dw_part[k], db_part[k])
    _sum_partials(dw_part, db_part, dw.reshape(c_out, c_in * kh * kw), db)


@_jit
def _sum_partials(dw_part, db_part, dwm, db):
    """dwm[c_out, T], db[c_out] (overwritten) = sums of the per-chunk partials
    dw_part[chunks, c_out, T], db_part[chunks, c_out]. (Plain loops: array expressions here
    cost seconds of compile time.)"""
    chunks, c_out, n_taps = dw_part.shape
    for o in range(c_out):
        db[o] = db_part[0, o]
        for k in range(1, chunks):
            db[o] += db_part[k, o]
        for t in range(n_taps):
            acc = dw_part[0, o, t]
            for k in range(1, chunks):
                acc += dw_part[k, o, t]
            dwm[o, t] = acc


def convpool_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, pool=(2, 2),
                     act: int = SIGMOID):
    """(a, z, argmax) of the fused ConvPool layer (see ``convpool_forward_into``)."""
    ph, pw = pool
    n, _, h, wd = x.shape
    c_out, _, kh, kw = w.shape
    shape = (n, c_out, (h - kh + 1) // ph, (wd - kw + 1) // pw)
    a, z, argmax = np.empty(shape, x.dtype), np.empty(shape, x.dtype), np.empty(shape, np.int32)
    convpool_forward_into(x, w, b, ph, pw, act, a, z, argmax, get_num_threads())
    return a, z, argmax


def convpool_backward(x: np.ndarray, w: np.ndarray, z: np.ndarray, a: np.ndarray,
                      argmax: np.ndarray, da: np.ndarray, act: int = SIGMOID,
                      need_dx: bool = True):
    """(dx or None, dw, db) of the fused ConvPool layer (see ``convpool_backward_into``)."""
    dx = np.empty_like(x) if need_dx else np.empty((0,) + x.shape[1:], x.dtype)
    dw, db = np.empty_like(w), np.empty(w.shape[0], w.dtype)
    convpool_backward_into(x, w, z, a, argmax, da, act, dx, dw, db, get_num_threads())
    return (dx if need_dx else None), dw, db


def conv2d_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """z: (n, c_out, h-kh+1, w-kw+1) = conv(x, w) + b: the ConvPool kernel with a 1×1 pool and
    a linear activation (a and z are the same array)."""
    n, _, h, wd = x.shape
    c_out, _, kh, kw = w.shape
    z = np.empty((n, c_out, h - kh + 1, wd - kw + 1), x.dtype)
    argmax = np.empty(z.shape, np.int32)
    convpool_forward_into(x, w, b, 1, 1, LINEAR, z, z, argmax, get_num_threads())
    return z


def conv2d_backward(x: np.ndarray, w: np.ndarray, dz: np.ndarray, need_dx: bool = True):
    """(dx or None, dw, db) of conv2d given dz: the ConvPool backward with a 1×1 pool (every
    position its own winner) and a linear activation."""
    identity = np.empty(dz.shape, np.int32)        # writeable: a read-only view would compile anew
    identity[...] = np.arange(dz.shape[2] * dz.shape[3], dtype=np.int32).reshape(dz.shape[2:])
    return convpool_backward(x, w, dz, dz, identity, dz, LINEAR, need_dx)
