"""The pooling family for the CPU (Numba): max-pooling, and the pooling stage of the fused
ConvPool layer (pool and bias; backward: act' and routing to the winners).

    maxpool   non-overlapping (ph, pw) windows, remainder dropped; argmax = flat index of the
              winner in the (h, w) plane of the pooled input (int32), first maximum on ties
    pool      one image's flat conv output → window max + b[o] and the winners (ConvPool)
    route_deltas / pooled_deltas: da · act'(z) to the winners (the dense backward's dz / the
              sparse backward's (dq, pq)); the activations: ``activations_cpu``

Shapes: x ``float[n, c, h, w]``, y and argmax ``[n, c, h // ph, w // pw]``; C-contiguous, one
dtype; the ``*_into`` kernels write into arrays passed in, the plain-named wrappers allocate.
NumPy twin: ``fastnet.reference.conv``. Tests: ``tests/test_twins.py``, ``tests/test_conv.py``.
Why: docs/kernels.md.
"""

import numpy as np
from numba import njit

from . import config
from . import conv_simd
from . import simd
from .activations_cpu import act_prime, activation_prime

_jit = njit(**config.CPU_JIT)


@_jit
def _above(v, best):
    """Whether v takes a window's maximum from best, the maximum so far: v > best, or v is
    NaN and best is not — NaN ranks above every number, so a window with a NaN pools to its
    first NaN (as the reference's argmax) and the NaN is never dropped silently."""
    return v > best or (v != v and best == best)


@_jit
def maxpool_forward_into(x, ph, pw, y, argmax):
    """y[n, c, oh, ow] (overwritten) = window maxima of x[n, c, h, w] over (ph, pw) windows;
    argmax: int32[n, c, oh, ow] (overwritten) flat index of each winner in x's (h, w) plane."""
    n, c, h, w = x.shape
    oh, ow = y.shape[2], y.shape[3]
    for s in range(n):
        for ch in range(c):
            for py in range(oh):
                for px in range(ow):
                    best = x[s, ch, py * ph, px * pw]
                    idx = py * ph * w + px * pw
                    for r in range(ph):
                        for q in range(pw):
                            v = x[s, ch, py * ph + r, px * pw + q]
                            if _above(v, best):   # strict: the first maximum wins ties
                                best = v
                                idx = (py * ph + r) * w + px * pw + q
                    y[s, ch, py, px] = best
                    argmax[s, ch, py, px] = idx


@_jit
def maxpool_backward_into(dy, argmax, dx):
    """dx[n, c, h, w] (overwritten): dy[n, c, oh, ow] routed to the argmax of each window,
    zero elsewhere."""
    n, c, h, w = dx.shape
    dx[:] = 0
    for s in range(n):
        for ch in range(c):
            dxp = dx[s, ch].reshape(h * w)
            for py in range(dy.shape[2]):
                for px in range(dy.shape[3]):
                    dxp[argmax[s, ch, py, px]] = dy[s, ch, py, px]


@_jit
def pool(zf, wd, cw, b, ph, pw, z_n, argmax_n, work):
    """Max-pool one image's flat conv output zf[c_out, >= (ch-1)·wd + cw] (row stride wd) and
    add the bias. Overwritten, [c_out, oh, ow]: z_n = window max + b[o]; argmax_n = flat index
    y·cw + x of the winner in the (ch, cw) conv output — the first maximum in row-major window
    order on ties. work = (blockmax: float[ch·wd/2], blockcode: int32[ch·wd/2]) scratch.

    2×2 pools on an even row stride (the book's layers) take two passes whose comparisons
    vectorise instead of mispredicting branches: every 2×2 block starting on an even column of
    the plane (odd rows included, long contiguous loops), then one gather per window. Other
    pools scan each window with branch-free selects.
    """
    blockmax, blockcode = work
    c_out, oh, ow = z_n.shape
    if ph == 2 and pw == 2 and ow >= simd.LANES and (2 * oh) * cw < 2 ** 24:
        for o in range(c_out):
            conv_simd.pool2_lanes(zf[o], wd, cw, b[o], z_n[o], argmax_n[o])
        return
    for o in range(c_out):
        zo = zf[o]
        bo = b[o]
        if ph == 2 and pw == 2 and wd % 2 == 0:
            below = zo[wd:]
            for j in range(((2 * oh - 2) * wd + 2 * ow) // 2):
                p, q, r, s = zo[2 * j], zo[2 * j + 1], below[2 * j], below[2 * j + 1]
                # Window order p, q / r, s: strict comparisons keep the first maximum.
                top_right = _above(q, p)
                top = q if top_right else p
                bottom_right = _above(s, r)
                bottom = s if bottom_right else r
                lower = _above(bottom, top)
                blockmax[j] = bottom if lower else top
                blockcode[j] = (np.int32(lower) << 1) | np.int32(bottom_right if lower
                                                                 else top_right)
            for py in range(oh):
                for px in range(ow):
                    j = py * wd + px                    # block at row 2·py, column 2·px
                    code = blockcode[j]
                    z_n[o, py, px] = blockmax[j] + bo
                    argmax_n[o, py, px] = (2 * py + (code >> 1)) * cw + 2 * px + (code & 1)
        else:
            for py in range(oh):
                for px in range(ow):
                    base = py * ph * wd + px * pw
                    best, br, bc = zo[base], 0, 0
                    for r in range(ph):
                        for c in range(pw):
                            v = zo[base + r * wd + c]
                            take = _above(v, best)        # strict: the first maximum wins
                            best = v if take else best
                            br = r if take else br
                            bc = c if take else bc
                    z_n[o, py, px] = best + bo
                    argmax_n[o, py, px] = (py * ph + br) * cw + px * pw + bc


@_jit
def route_deltas(da_n, z_n, a_n, argmax_n, act, where, dzf, dzp, db_acc):
    """Scatter one image's pooled deltas d = da_n · act'(z_n) to the winners of their windows.

    da_n, z_n, a_n, argmax_n: [c_out, oh, ow]; where: int64[3, ·] (see conv_plan.backward_plan);
    dzf: float[c_out, ch·w] at row stride w, written at the winners; dzp: float[c_out, hp·wp]
    padded, the same (skipped if empty); db_acc: float[c_out] += Σ d (accumulated).
    """
    c_out, oh, ow = da_n.shape
    pad = dzp.shape[1] > 0
    for o in range(c_out):
        acc = db_acc[o]
        for py in range(oh):
            for px in range(ow):
                d = da_n[o, py, px] * act_prime(z_n[o, py, px], a_n[o, py, px], act)
                acc += d
                idx = argmax_n[o, py, px]
                y = where[2, idx]
                dzf[o, idx + where[0, y]] = d
                if pad:
                    dzp[o, idx + where[1, y]] = d
        db_acc[o] = acc


@_jit
def pooled_deltas(da_n, z_n, a_n, argmax_n, act, cw, wd, dq, pq, db_acc):
    """One image's pooled deltas and their winners, for ``conv_simd.dw_sparse``.

    da_n, z_n, a_n, argmax_n: [c_out, oh, ow]; cw: the conv output's row length, wd: the
    input's. Overwritten, [c_out, oh·ow], for window q = py·ow + px: dq[o, q] = da_n ·
    act'(z_n) and pq (int32) = y·wd + x, the origin in the flat image of the patch under the
    window's winner (y, x) (argmax = y·cw + x); db_acc[o] += Σ_q dq[o, q]. Every loop
    vectorises: act' is ``activations_cpu.activation_prime``'s, and y is (argmax + ½)·(1/cw)
    truncated in float32 (exact while argmax + ½ < 2^22, which ``sparse_backward`` ensures) — no
    division, no lookup.
    """
    c_out, oh, ow = da_n.shape
    nq = oh * ow
    g2, z2 = da_n.reshape(c_out, nq), z_n.reshape(c_out, nq)
    a2, w2 = a_n.reshape(c_out, nq), argmax_n.reshape(c_out, nq)
    for o in range(c_out):
        for q in range(nq):
            dq[o, q] = g2[o, q]
    activation_prime(z2, a2, act, dq)
    inv_cw, shift, half = np.float32(1.0 / cw), np.int32(wd - cw), np.float32(0.5)
    for o in range(c_out):
        acc = dq.dtype.type(0)
        for q in range(nq):
            acc += dq[o, q]
        db_acc[o] += acc
        w_o, p_o = w2[o], pq[o]
        for q in range(nq):
            idx = w_o[q]
            p_o[q] = idx + np.int32((np.float32(idx) + half) * inv_cw) * shift


def maxpool_forward(x: np.ndarray, size=(2, 2)):
    """(y, argmax) of non-overlapping max-pooling (see ``maxpool_forward_into``)."""
    ph, pw = size
    n, c, h, w = x.shape
    y = np.empty((n, c, h // ph, w // pw), x.dtype)
    argmax = np.empty(y.shape, np.int32)
    maxpool_forward_into(x, ph, pw, y, argmax)
    return y, argmax


def maxpool_backward(dy: np.ndarray, argmax: np.ndarray, x_shape) -> np.ndarray:
    """dx of max-pooling (see ``maxpool_backward_into``)."""
    dx = np.empty(tuple(x_shape), dy.dtype)
    maxpool_backward_into(dy, argmax, dx)
    return dx
