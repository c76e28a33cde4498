"""Convolution-family kernels for the CPU (Numba): conv2d, max-pooling and the fused ConvPool
layer of the book's network3, forward and backward.

    conv2d    z[n, o, y, x] = b[o] + Σ_{c,i,j} w[o, c, i, j] · x[n, c, y + i, x + j]   (valid)
    maxpool   non-overlapping (ph, pw) windows, remainder dropped; argmax = flat index of the
              winner in the (h, w) plane of the pooled input (int32), first maximum on ties
    convpool  a = act(maxpool(conv(x, w)) + b)   (the book's ConvPoolLayer: bias after pooling)

Shapes: x ``float[n, c_in, h, w]``, w ``float[c_out, c_in, kh, kw]``, b ``float[c_out]``;
C-contiguous, one dtype, kh <= h, kw <= w: the kernels (``*_into``) do not check (the API layer
does) and write into arrays passed in. The plain-named wrappers allocate and call them.

NumPy twin: ``fastnet.reference.conv`` (same public names). Tests: ``tests/test_conv.py``.
Why the flat correlation and the backward from the pooling winners: docs/kernels.md.
"""

import math

import numpy as np
from numba import get_num_threads, njit, prange

from . import config
from . import dense_cpu as _dense
from . import simd
from .config import LINEAR, RELU, SIGMOID, SOFTPLUS, TANH

_jit = njit(**config.CPU_JIT)
# Only explicit prange loops run in parallel: np.zeros and array expressions stay serial
# (each would otherwise be a parallel region of its own).
_PRANGE_ONLY = {"comprehension": False, "reduction": False, "inplace_binop": False,
                "setitem": False, "numpy": False, "stencil": False, "fusion": False,
                "prange": True}
_pjit = njit(**config.CPU_JIT, parallel=_PRANGE_ONLY)


# ---------------------------------------------------------------------------- scalar helpers
@_jit
def _act(v, code):
    """act(v) for one scalar; sigmoid and softplus only ever exponentiate a value <= 0."""
    if code == SIGMOID:
        if v >= 0:
            return 1.0 / (1.0 + math.exp(-v))
        e = math.exp(v)
        return e / (1.0 + e)
    if code == TANH:
        return math.tanh(v)
    if code == RELU:
        return 0.0 if v <= 0 else v   # NaN stays NaN, as np.maximum(z, 0)
    if code == SOFTPLUS:
        return max(v, 0.0) + math.log1p(math.exp(-abs(v)))
    return v


@_jit
def _act_prime(z, a, code):
    """act'(z), from the stored activation a where that is cheaper."""
    if code == SIGMOID:
        return a * (1.0 - a)
    if code == TANH:
        return 1.0 - a * a
    if code == RELU:
        return 1.0 if z > 0 else 0.0
    if code == SOFTPLUS:
        return _act(z, SIGMOID)
    return 1.0


@_jit
def _tap_offsets(c_in, h, w, kh, kw):
    """int64[c_in·kh·kw]: offset of tap (c, i, j) in a flat (c_in, h, w) image."""
    offs = np.empty(c_in * kh * kw, np.int64)
    t = 0
    for c in range(c_in):
        for i in range(kh):
            for j in range(kw):
                offs[t] = c * h * w + i * w + j
                t += 1
    return offs


@_jit
def _chunk(k, nchunks, n):
    """Images [start, stop) of chunk k when n images are split into nchunks near-equal runs."""
    return k * n // nchunks, (k + 1) * n // nchunks


# ---------------------------------------------------------------------------- flat correlation
@_jit
def _corr_flat(xf, wm, offs, zf, length):
    """zf[o, p] (overwritten for p < length) = Σ_t wm[o, t] · xf[p + offs[t]].

    xf: float[N] one flat image; wm: float[c_out, T]; offs: int64[T], offs[t] + length <= N;
    zf: float[c_out, >= length].

    float32: four filters × sixteen positions per block, the eight 8-lane sums in registers
    over all T taps (``simd``): per tap two loads of x and four broadcasts feed eight FMAs,
    and z is stored once. The last positions go through masked lanes; a short last group of
    filters repeats its last filter in sums that are not stored. Faster than the two-filter ×
    four-tap passes (``_corr_flat_passes``, which load and store z every four taps), on both
    of the book's conv layers. float64 (sixteen registers of sums): ``_corr_flat_passes``.
    """
    if not _dense._is_float32(xf.dtype.type(0)):
        _corr_flat_passes(xf, wm, offs, zf, length)
        return
    c_out, n_taps = wm.shape
    L = simd.LANES
    zero = simd.splat(xf.dtype.type(0))
    o = 0
    while o < c_out:
        g = min(4, c_out - o)
        o1, o2, o3 = min(o + 1, c_out - 1), min(o + 2, c_out - 1), min(o + 3, c_out - 1)
        w0, w1, w2, w3 = wm[o], wm[o1], wm[o2], wm[o3]
        z0, z1, z2, z3 = zf[o], zf[o1], zf[o2], zf[o3]
        p = 0
        while p + 2 * L <= length:                    # whole blocks: loads inside xf
            a0 = a1 = b0 = b1 = c0 = c1 = d0 = d1 = zero
            for t in range(n_taps):
                q = p + offs[t]
                x0, x1 = simd.load8(xf, q), simd.load8(xf, q + L)
                a0, a1 = simd.fma(a0, x0, w0[t]), simd.fma(a1, x1, w0[t])
                b0, b1 = simd.fma(b0, x0, w1[t]), simd.fma(b1, x1, w1[t])
                c0, c1 = simd.fma(c0, x0, w2[t]), simd.fma(c1, x1, w2[t])
                d0, d1 = simd.fma(d0, x0, w3[t]), simd.fma(d1, x1, w3[t])
            # plain stores, inline: a call per row (``_put2``) cost as much as the 25 taps
            # of a 5×5 filter
            simd.store8(z0, p, a0)
            simd.store8(z0, p + L, a1)
            if g > 1:
                simd.store8(z1, p, b0)
                simd.store8(z1, p + L, b1)
            if g > 2:
                simd.store8(z2, p, c0)
                simd.store8(z2, p + L, c1)
            if g > 3:
                simd.store8(z3, p, d0)
                simd.store8(z3, p + L, d1)
            p += 2 * L
        if p < length:              # the last positions: lanes past length are not stored,
            n0, n1 = min(L, length - p), max(length - p - L, 0)    # so a tap whose sixteen
            a0 = a1 = b0 = b1 = c0 = c1 = d0 = d1 = zero           # lie inside xf reads them
            for t in range(n_taps):                                # plainly (masked loads
                q = p + offs[t]                                    # cost ~5×)
                if q + 2 * L <= xf.shape[0]:
                    x0, x1 = simd.load8(xf, q), simd.load8(xf, q + L)
                else:
                    x0, x1 = simd.load(xf, q, n0), simd.load(xf, q + n0, n1)
                a0, a1 = simd.fma(a0, x0, w0[t]), simd.fma(a1, x1, w0[t])
                b0, b1 = simd.fma(b0, x0, w1[t]), simd.fma(b1, x1, w1[t])
                c0, c1 = simd.fma(c0, x0, w2[t]), simd.fma(c1, x1, w2[t])
                d0, d1 = simd.fma(d0, x0, w3[t]), simd.fma(d1, x1, w3[t])
            _dense._put2(z0, p, n0, n1, False, a0, a1)
            if g > 1:
                _dense._put2(z1, p, n0, n1, False, b0, b1)
            if g > 2:
                _dense._put2(z2, p, n0, n1, False, c0, c1)
            if g > 3:
                _dense._put2(z3, p, n0, n1, False, d0, d1)
        o += g


@_jit
def _row_chunks(ch, cw, wd):
    """int64[ch·⌈cw/8⌉]: where ``_corr_rows``' eight-position chunks start in a flat conv output
    of row stride wd — each output row (y, 0..cw-1) in chunks at x = 0, 8, ..; the last one
    of a row starts at cw - 8 (cw >= 8), overlapping the one before when 8 does not divide cw."""
    per = (cw + simd.LANES - 1) // simd.LANES
    out = np.empty(ch * per, np.int64)
    for y in range(ch):
        for c in range(per):
            out[y * per + c] = y * wd + min(c * simd.LANES, cw - simd.LANES)
    return out


@_jit
def _corr_rows(xf, wm, offs, starts, zf):
    """zf[o, s + j] (overwritten) = Σ_t wm[o, t] · xf[s + j + offs[t]] for every chunk start s
    in starts (``_row_chunks``) and j < 8: ``_corr_flat``'s four filters × sixteen positions
    in registers, float32, but the sixteen positions are two chunks of eight of the conv
    output's rows, so the w - cw columns between rows are never computed (the book's second
    layer, 8-wide output rows of 12-wide images: 64 positions instead of 92 flat ones; its
    first, 24-wide rows of 28-wide images: 24 of 28). A last odd chunk pairs with
    itself (stored twice, the same values). Every load is inside xf: a chunk ends inside
    its output row, and its last tap's eight values end there in the image."""
    c_out, n_taps = wm.shape
    zero = simd.splat(xf.dtype.type(0))
    nb = starts.shape[0]
    o = 0
    while o < c_out:
        g = min(4, c_out - o)
        o1, o2, o3 = min(o + 1, c_out - 1), min(o + 2, c_out - 1), min(o + 3, c_out - 1)
        w0, w1, w2, w3 = wm[o], wm[o1], wm[o2], wm[o3]
        z0, z1, z2, z3 = zf[o], zf[o1], zf[o2], zf[o3]
        for k in range(0, nb, 2):
            s0, s1 = starts[k], starts[min(k + 1, nb - 1)]
            a0 = a1 = b0 = b1 = c0 = c1 = d0 = d1 = zero
            for t in range(n_taps):
                x0, x1 = simd.load8(xf, s0 + offs[t]), simd.load8(xf, s1 + offs[t])
                a0, a1 = simd.fma(a0, x0, w0[t]), simd.fma(a1, x1, w0[t])
                b0, b1 = simd.fma(b0, x0, w1[t]), simd.fma(b1, x1, w1[t])
                c0, c1 = simd.fma(c0, x0, w2[t]), simd.fma(c1, x1, w2[t])
                d0, d1 = simd.fma(d0, x0, w3[t]), simd.fma(d1, x1, w3[t])
            simd.store8(z0, s0, a0)
            simd.store8(z0, s1, a1)
            if g > 1:
                simd.store8(z1, s0, b0)
                simd.store8(z1, s1, b1)
            if g > 2:
                simd.store8(z2, s0, c0)
                simd.store8(z2, s1, c1)
            if g > 3:
                simd.store8(z3, s0, d0)
                simd.store8(z3, s1, d1)
        o += g


@_jit
def _corr_flat_passes(xf, wm, offs, zf, length):
    """zf[o, p] (overwritten for p < length) = Σ_t wm[o, t] · xf[p + offs[t]].

    xf: float[N] one flat image; wm: float[c_out, T]; offs: int64[T], offs[t] + length <= N;
    zf: float[c_out, >= length]. Two filters × four taps per pass over p. The float64 path of
    ``_corr_flat``.
    """
    c_out, n_taps = wm.shape
    zero = xf.dtype.type(0)
    for o in range(0, c_out - 1, 2):
        z0, z1 = zf[o], zf[o + 1]
        for p in range(length):
            z0[p] = zero
            z1[p] = zero
        t = 0
        while t + 4 <= n_taps:
            # Slices start at each tap's offset, so the inner loop indexes with p >= 0 only
            # (an arbitrary offset in the index would defeat vectorisation).
            s0, s1, s2, s3 = xf[offs[t]:], xf[offs[t + 1]:], xf[offs[t + 2]:], xf[offs[t + 3]:]
            u0, u1, u2, u3 = wm[o, t], wm[o, t + 1], wm[o, t + 2], wm[o, t + 3]
            v0, v1, v2, v3 = wm[o + 1, t], wm[o + 1, t + 1], wm[o + 1, t + 2], wm[o + 1, t + 3]
            for p in range(length):
                x0, x1, x2, x3 = s0[p], s1[p], s2[p], s3[p]
                z0[p] += u0 * x0 + u1 * x1 + u2 * x2 + u3 * x3
                z1[p] += v0 * x0 + v1 * x1 + v2 * x2 + v3 * x3
            t += 4
        for t in range(t, n_taps):
            s0, u0, v0 = xf[offs[t]:], wm[o, t], wm[o + 1, t]
            for p in range(length):
                z0[p] += u0 * s0[p]
                z1[p] += v0 * s0[p]
    if c_out % 2:
        o = c_out - 1
        z0 = zf[o]
        for p in range(length):
            z0[p] = zero
        for t in range(n_taps):
            s0, u0 = xf[offs[t]:], wm[o, t]
            for p in range(length):
                z0[p] += u0 * s0[p]


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
def _flipped_transpose(w):
    """float[c_in, c_out·kh·kw]: wt[c, (o, i, j)] = w[o, c, kh-1-i, kw-1-j] — the filters that
    map dz back to dx."""
    c_out, c_in, kh, kw = w.shape
    wt = np.empty((c_in, c_out * kh * kw), w.dtype)
    for c in range(c_in):
        t = 0
        for o in range(c_out):
            for i in range(kh):
                for j in range(kw):
                    wt[c, t] = w[o, c, kh - 1 - i, kw - 1 - j]
                    t += 1
    return wt


@_jit
def _dx_image(dzp, wt, offs_dx, dxf, wp, dx_n):
    """dx_n[c, y, x] (overwritten) from one image's padded dz.

    dzp: float[c_out·(h+kh-1)·wp] dz of the image at offset (kh-1, kw-1) in a zero frame of
    row stride wp = w + kw - 1; wt, offs_dx: the flipped filters and their tap offsets in dzp;
    dxf: float[c_in, h·wp] scratch; dx_n: float[c_in, h, w].
    """
    c_in, h, w = dx_n.shape
    _corr_flat(dzp, wt, offs_dx, dxf, (h - 1) * wp + w)
    for c in range(c_in):
        for y in range(h):
            for x in range(w):
                dx_n[c, y, x] = dxf[c, y * wp + x]


# ---------------------------------------------------------------------------- max-pooling
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


# ---------------------------------------------------------------------------- fused ConvPool
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
def _act_plane(z, a, act, buf):
    """a = act(z) over flat z, a: float[m] (a overwritten); buf: float32[2, >= m] scratch."""
    if act == SIGMOID:
        _sigmoid_plane(z, a, buf)
    else:
        for i in range(z.size):
            a[i] = _act(z[i], act)


@_jit
def _pool2_lanes(zo, wd, cw, bo, z_o, argmax_o):
    """``_pool`` of one plane for 2×2 windows, eight windows at a time: z_o[py, px] = the
    window's max + bo, argmax_o[py, px] its winner's y·cw + x, for z_o: [oh, ow >= 8].

    Per row pair and eight windows: two 8-lane loads of each row split into the windows'
    left and right columns (``simd.evens``, ``odds``), then the scalar path's strict
    comparisons as selects (``pick_above``: the first maximum wins, or the first NaN) — the
    winner's index computed in floats (exact: the plane has < 2^24 positions) and stored as
    int32. A row's last block starts at ow - 8 (windows computed twice, the same values).
    """
    L = simd.LANES
    oh, ow = z_o.shape
    f = zo.dtype.type
    one, zero = simd.splat(f(1)), simd.splat(f(0))
    below = simd.splat(f(cw))
    for py in range(oh):
        top, bottom = 2 * py * wd, (2 * py + 1) * wd
        z_row, a_row = z_o[py], argmax_o[py]
        px = 0
        while px < ow:
            px = min(px, ow - L)
            t0, t1 = simd.load8(zo, top + 2 * px), simd.load8(zo, top + 2 * px + L)
            u0, u1 = simd.load8(zo, bottom + 2 * px), simd.load8(zo, bottom + 2 * px + L)
            p, q = simd.evens(t0, t1), simd.odds(t0, t1)          # window order p, q / r, s
            r, s = simd.evens(u0, u1), simd.odds(u0, u1)
            upper = simd.pick_above(q, p, q, p)
            lower = simd.pick_above(s, r, s, r)
            # the winner's offset from the window's corner: cw·row + column
            offset = simd.pick_above(lower, upper, simd.fma(below, simd.pick_above(s, r, one, zero),
                                                         f(1)),
                                  simd.pick_above(q, p, one, zero))
            best = simd.pick_above(lower, upper, lower, upper)
            simd.store8(z_row, px, simd.fma(simd.splat(bo), best, f(1)))
            corner = simd.fma(zero, simd.ramp(f(py * cw + px)), f(2))   # 2·(py·cw + px + k)
            simd.store8_int32(a_row, px, simd.fma(corner, offset, f(1)))
            px += L


@_jit
def _pool(zf, wd, cw, b, ph, pw, z_n, argmax_n, work):
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
            _pool2_lanes(zf[o], wd, cw, b[o], z_n[o], argmax_n[o])
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
def _forward_images(x, w, offs, b, pool, act, out, start, stop, work):
    """convpool_forward_into for images start..stop-1; out = (a, z, argmax); work = (zf,
    pooling scratch, activation scratch, the row chunks) of this chunk (see
    ``_forward_scratch``). The conv: ``_corr_rows`` over the row chunks (float32, rows of
    at least 8), else ``_corr_flat``."""
    _, c_in, h, wd = x.shape
    c_out, _, kh, kw = w.shape
    ch, cw = h - kh + 1, wd - kw + 1
    wm = w.reshape(c_out, c_in * kh * kw)
    a, z, argmax = out
    zf, pool_work, act_buf, starts = work
    for s in range(start, stop):
        xf = x[s].reshape(c_in * h * wd)
        if starts.shape[0] > 0:
            _corr_rows(xf, wm, offs, starts, zf)
        else:
            _corr_flat(xf, wm, offs, zf, (ch - 1) * wd + cw)
        _pool(zf, wd, cw, b, pool[0], pool[1], z[s], argmax[s], pool_work)
        _act_plane(z[s].reshape(z[s].size), a[s].reshape(a[s].size), act, act_buf)


@_jit
def _forward_scratch(x, w, oh, ow, nchunks):
    """The forward's scratch: per chunk the flat conv output, the pooling passes' buffers and
    the activation buffer (see _pool, _act_plane); shared, ``_corr_rows``' row chunks
    (empty: ``_corr_flat``, for float64 or output rows narrower than 8)."""
    _, _, h, wd = x.shape
    c_out, _, kh, kw = w.shape
    ch, cw = h - kh + 1, wd - kw + 1
    plane = ch * wd
    rows = _dense._is_float32(x.dtype.type(0)) and cw >= simd.LANES
    return (np.empty((nchunks, c_out, plane), x.dtype), np.empty((nchunks, plane), x.dtype),
            np.empty((nchunks, plane), np.int32),
            np.empty((nchunks, 2, c_out * oh * ow), np.float32),
            _row_chunks(ch, cw, wd) if rows else np.empty(0, np.int64))


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
    offs = _tap_offsets(c_in, h, wd, kh, kw)
    nchunks = max(1, min(n, nthreads))
    zf, fbuf, ibuf, act_buf, starts = _forward_scratch(x, w, z.shape[2], z.shape[3], nchunks)
    out = (a, z, argmax)
    for k in prange(nchunks):
        start, stop = _chunk(k, nchunks, n)
        work = (zf[k], (fbuf[k], ibuf[k]), act_buf[k], starts)
        _forward_images(x, w, offs, b, (ph, pw), act, out, start, stop, work)


@_jit
def _zero(v):
    """v[:] = 0 for a 1-D array, as a loop LLVM turns into a memset."""
    zero = v.dtype.type(0)
    for i in range(v.size):
        v[i] = zero


@_jit
def _route_deltas(da_n, z_n, a_n, argmax_n, act, where, dzf, dzp, db_acc):
    """Scatter one image's pooled deltas d = da_n · act'(z_n) to the winners of their windows.

    da_n, z_n, a_n, argmax_n: [c_out, oh, ow]; where: int64[3, ·] (see _backward_plan);
    dzf: float[c_out, ch·w] at row stride w, written at the winners; dzp: float[c_out, hp·wp]
    padded, the same (skipped if empty); db_acc: float[c_out] += Σ d (accumulated).
    """
    c_out, oh, ow = da_n.shape
    pad = dzp.shape[1] > 0
    for o in range(c_out):
        acc = db_acc[o]
        for py in range(oh):
            for px in range(ow):
                d = da_n[o, py, px] * _act_prime(z_n[o, py, px], a_n[o, py, px], act)
                acc += d
                idx = argmax_n[o, py, px]
                y = where[2, idx]
                dzf[o, idx + where[0, y]] = d
                if pad:
                    dzp[o, idx + where[1, y]] = d
        db_acc[o] = acc


@_jit
def _pooled_deltas(da_n, z_n, a_n, argmax_n, act, cw, wd, dq, pq, db_acc):
    """One image's pooled deltas and their winners, for ``_dw_sparse``.

    da_n, z_n, a_n, argmax_n: [c_out, oh, ow]; cw: the conv output's row length, wd: the
    input's. Overwritten, [c_out, oh·ow], for window q = py·ow + px: dq[o, q] = da_n ·
    act'(z_n) and pq (int32) = y·wd + x, the origin in the flat image of the patch under the
    window's winner (y, x) (argmax = y·cw + x); db_acc[o] += Σ_q dq[o, q]. Every loop
    vectorises: act' is ``dense_cpu.activation_prime``'s, and y is (argmax + ½)·(1/cw)
    truncated in float32 (exact while argmax + ½ < 2^22, which ``_sparse_backward`` ensures) — no
    division, no lookup.
    """
    c_out, oh, ow = da_n.shape
    nq = oh * ow
    g2, z2 = da_n.reshape(c_out, nq), z_n.reshape(c_out, nq)
    a2, w2 = a_n.reshape(c_out, nq), argmax_n.reshape(c_out, nq)
    for o in range(c_out):
        for q in range(nq):
            dq[o, q] = g2[o, q]
    _dense.activation_prime(z2, a2, act, dq)
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


@_jit
def _dw_sparse(xf, dq, pq, offs, kw, dwp):
    """dwp[o, 8·r + j] += Σ_q dq[o, q] · xf[pq[o, q] + offs[r·kw] + j]  (accumulated) for the
    filter rows r = (c, i) and j < 8, kw <= 8: the weight gradient from the pooling winners
    alone (the other three quarters of a 2×2-pooled dz are zeros), in lanes; j < kw are the
    gradient's (``_fold_rows`` adds them into dw), the others sums of whatever follows the
    patch rows, never used.

    xf: float[N] one flat image; dq: float[c_out, nq] the pooled deltas, window q; pq:
    int32[c_out, nq] the origin of window q's winner's patch in xf (both from
    ``_pooled_deltas``); offs: the tap offsets; dwp: float[c_out, 8·rows]. A winner's patch
    row is one 8-lane load (``simd``); five rows per pass over the winners, their five sums in
    vector registers, loaded from and stored back to dwp unmasked (masked stores are slow).
    A patch whose eight-wide rows would run past xf's end (the image's last rows: xf is one
    image) takes masked loads; a filter none of whose winners' patches does runs a tight
    loop without the check (fewer registers spilled).
    """
    c_out, nq = dq.shape
    n_rows = offs.shape[0] // kw
    L = simd.LANES
    for o in range(c_out):
        d_o, p_o, dw_o = dq[o], pq[o], dwp[o]
        r = 0
        while r < n_rows:
            g = min(5, n_rows - r)                    # rows this pass; a short last pass
            r1, r2 = min(r + 1, n_rows - 1), min(r + 2, n_rows - 1)   # repeats its last row
            r3, r4 = min(r + 3, n_rows - 1), min(r + 4, n_rows - 1)   # in sums not stored
            o0, o1, o2 = offs[r * kw], offs[r1 * kw], offs[r2 * kw]
            o3, o4 = offs[r3 * kw], offs[r4 * kw]
            hi = xf.shape[0] - L - o4                 # p <= hi: all five rows' loads inside
            s0, s1 = simd.load8(dw_o, r * L), simd.load8(dw_o, r1 * L)
            s2, s3, s4 = simd.load8(dw_o, r2 * L), simd.load8(dw_o, r3 * L), \
                simd.load8(dw_o, r4 * L)
            inside = True
            for q in range(nq):
                inside &= p_o[q] <= hi
            if inside:                               # the common case: a tight loop
                for q in range(nq):
                    e, p = d_o[q], p_o[q]
                    s0 = simd.fma(s0, simd.load8(xf, p + o0), e)
                    s1 = simd.fma(s1, simd.load8(xf, p + o1), e)
                    s2 = simd.fma(s2, simd.load8(xf, p + o2), e)
                    s3 = simd.fma(s3, simd.load8(xf, p + o3), e)
                    s4 = simd.fma(s4, simd.load8(xf, p + o4), e)
            for q in range(0 if inside else nq):
                e, p = d_o[q], p_o[q]
                if p <= hi:
                    s0 = simd.fma(s0, simd.load8(xf, p + o0), e)
                    s1 = simd.fma(s1, simd.load8(xf, p + o1), e)
                    s2 = simd.fma(s2, simd.load8(xf, p + o2), e)
                    s3 = simd.fma(s3, simd.load8(xf, p + o3), e)
                    s4 = simd.fma(s4, simd.load8(xf, p + o4), e)
                else:
                    s0 = simd.fma(s0, simd.load(xf, p + o0, kw), e)
                    s1 = simd.fma(s1, simd.load(xf, p + o1, kw), e)
                    s2 = simd.fma(s2, simd.load(xf, p + o2, kw), e)
                    s3 = simd.fma(s3, simd.load(xf, p + o3, kw), e)
                    s4 = simd.fma(s4, simd.load(xf, p + o4, kw), e)
            simd.store8(dw_o, r * L, s0)
            if g > 1:
                simd.store8(dw_o, r1 * L, s1)
            if g > 2:
                simd.store8(dw_o, r2 * L, s2)
            if g > 3:
                simd.store8(dw_o, r3 * L, s3)
            if g > 4:
                simd.store8(dw_o, r4 * L, s4)
            r += g


@_jit
def _fold_rows(dwp, kw, stride, dwm):
    """dwm[o, r·kw + j] += dwp[o, r·stride + j] for j < kw: ``_dw_sparse``'s lanes (stride 8)
    or ``_dw_patches``' rows (stride kw) into dw."""
    c_out, n_rows = dwm.shape[0], dwm.shape[1] // kw
    for o in range(c_out):
        for r in range(n_rows):
            for j in range(kw):
                dwm[o, r * kw + j] += dwp[o, r * stride + j]


@_jit
def _backward_plan(x, w, need_dx, sparse):
    """What every chunk of the backward shares: tap offsets into x and into the padded dz, the
    filters dx needs (if it is needed: for the sparse backward ``_flat_rows`` through the
    patches, else ``_padded_rows``; for the dense one the flipped filters,
    ``_flipped_transpose``), and where[3, ·]: where[0, y] / where[1, y] shift a
    winner's idx = y·cw + x to its place in dzf (row stride w; also the origin of its patch in
    the flat image) / in the padded dzp (row stride wp = w + kw - 1, offset (kh-1, kw-1));
    where[2, idx] = y, a lookup instead of an integer division."""
    _, c_in, h, wd = x.shape
    c_out, _, kh, kw = w.shape
    ch, cw = h - kh + 1, wd - kw + 1
    hp, wp = h + kh - 1, wd + kw - 1
    where = np.empty((3, ch * cw), np.int64)
    for y in range(ch):
        where[0, y] = y * (kw - 1)
        where[1, y] = (y + kh - 1) * wp + kw - 1 - y * cw
        for x in range(cw):
            where[2, y * cw + x] = y
    offs_dx = _tap_offsets(c_out, hp, wp, kh, kw)
    if not need_dx:
        wt = np.empty((c_in, 0), w.dtype)
    elif sparse and _through_patches(c_in, kh, kw, ch * cw):
        wt = _flat_rows(w, _patch_width(c_in * kh * kw, kw))
    elif sparse:
        wt = _padded_rows(w)
    else:
        wt = _flipped_transpose(w)
    return _tap_offsets(c_in, h, wd, kh, kw), offs_dx, wt, where


@_jit
def _flat_rows(w, width):
    """float[c_out, width]: filter o flat (c_in·kh·kw taps), then zeros — what
    ``_dx_patches`` sums, eight lanes at a time."""
    c_out = w.shape[0]
    n_taps = w.size // c_out
    wm = w.reshape(c_out, n_taps)
    out = np.zeros((c_out, width), w.dtype)
    for o in range(c_out):
        for t in range(n_taps):
            out[o, t] = wm[o, t]
    return out


@_jit
def _padded_rows(w):
    """float[c_out, c_in·kh·8]: filter o's row r = (c, i) as eight lanes, w[o, c, i, :kw] then
    zeros (kw <= 8) — what ``_dx_sparse`` adds, eight lanes at a time, into dx."""
    c_out, c_in, kh, kw = w.shape
    out = np.zeros((c_out, c_in * kh * simd.LANES), w.dtype)
    for o in range(c_out):
        for c in range(c_in):
            for i in range(kh):
                r = (c * kh + i) * simd.LANES
                for j in range(kw):
                    out[o, r + j] = w[o, c, i, j]
    return out


@_jit
def _dx_sparse(dq, pq, wrows, offs, kw, dxf):
    """dxf[pq[o, q] + offs[r·kw] + j] += dq[o, q] · w[o, r, j] for every window q of every
    filter o, filter row r = (c, i), j < kw <= 8 (accumulated): the input gradient from the
    pooling winners alone, each spreading its delta over its patch.

    dq, pq: as for ``_dw_sparse``; wrows: ``_padded_rows(w)``; offs: the tap offsets; dxf:
    float[c_in·h·w] one image's dx, flat. Each patch row is one 8-lane load, FMA and store of
    dxf: the three lanes past a 5-wide row add δ·0 to the next row's first values (unchanged,
    and the same thread, in order). Winners outer, rows inner, so a store is long retired
    when an overlapping patch (the next window's) reads it back. Patches whose last row's
    eight lanes would pass dxf's end (the image's last rows), and non-finite deltas (whose
    0·δ in the padded lanes would be NaN), take masked loads and stores.
    """
    c_out, nq = dq.shape
    n_rows = offs.shape[0] // kw
    last = offs[(n_rows - 1) * kw]
    hi = dxf.shape[0] - simd.LANES - last          # p <= hi: every row's eight lanes inside
    zero = simd.splat(dxf.dtype.type(0))
    for o in range(c_out):
        w_o = wrows[o]
        for q in range(nq):
            e, p = dq[o, q], pq[o, q]
            # a non-finite δ would put 0·δ = NaN into the padded lanes' neighbours: masked
            if p <= hi and abs(e) < math.inf:
                for r in range(n_rows):
                    i = p + offs[r * kw]
                    simd.store8(dxf, i, simd.fma(simd.load8(dxf, i),
                                                 simd.load8(w_o, r * simd.LANES), e))
            else:
                for r in range(n_rows):
                    simd.add_to(dxf, p + offs[r * kw], kw,
                                simd.fma(zero, simd.load8(w_o, r * simd.LANES), e))


@_jit
def _through_patches(c_in, kh, kw, n_pos):
    """Whether the sparse backward goes through the image's patch matrix (``_patches``,
    ``_dw_patches``, ``_dx_patches``) instead of loading each winner's patch rows straight
    from the image (``_dw_sparse``, ``_dx_sparse``): when a filter has more than five rows,
    so the direct kernels' sums need several passes over the winners, each loading
    unaligned short rows — and the matrix (n_pos conv output positions × the patch width,
    one per thread chunk) has at most 2^22 elements (16 MB in float32), so that large
    images do not trade a little speed for a lot of memory. The book's second layer (20 → 40
    maps, 5×5 on 12×12: a 64 × 512 matrix) computes both gradients faster through the
    patches; its first layer (one map: five rows) is faster direct."""
    return c_in * kh > 5 and n_pos * _patch_width(c_in * kh * kw, kw) <= 2 ** 22


@_jit
def _patch_width(n_taps, kw):
    """The row length of the patch matrix and of the filters' rows that go with it: n_taps
    plus the spill of ``_patches``' last 8-lane store, rounded up to 16 (64-byte rows)."""
    return (n_taps - kw + simd.LANES + 15) // 16 * 16


@_jit
def _patches(xf, offs, kw, cw, wd, cols):
    """cols[p, t] (overwritten for t < n_taps) = xf[y·wd + x + offs[t]]: row p = y·cw + x is
    the patch under conv output position (y, x) — an im2col, position-major — for p <
    cols.shape[0]; xf: one image, flat, of row length wd.

    Each filter row of kw <= 8 taps is one 8-lane load and store; a store's spill past its
    row is overwritten by the next row's, the last one's lands in the padding (unused).
    Patches whose loads would pass xf's end (the image's last rows) take masked loads.
    """
    n_rows = offs.shape[0] // kw
    hi = xf.shape[0] - simd.LANES
    for p in range(cols.shape[0]):
        y = p // cw
        origin = y * wd + p - y * cw
        row = cols[p]
        for r in range(n_rows):
            i = origin + offs[r * kw]
            if i <= hi:
                simd.store8(row, r * kw, simd.load8(xf, i))
            else:
                simd.store8(row, r * kw, simd.load(xf, i, kw))


@_dense._lite
def _accumulate_window(rows, idx, coef, start, stop, out, fresh, base, first):
    """out[base + 8·j + i] (j < 8, i < 8, stored where base + 8·j >= first) = (out if not
    fresh, else 0) + Σ_{k=start..stop-1} coef[k] · rows[idx[k], base + 8·j + i]: eight
    vectors of a weighted sum of gathered rows, their sums in registers over k.

    The vectors sit at fixed offsets from one base, so the loop needs one address register
    per row: with eight clamped offsets of their own LLVM spilled them and reloaded 13 from
    the stack every two rows. Vectors before ``first`` (a window moved back to end at a row's
    end) are computed and not stored. ``_lite``: a row view per k costs no reference
    counting."""
    L = simd.LANES
    if fresh:
        s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = simd.splat(out.dtype.type(0))
    else:
        s0, s1 = simd.load8(out, base), simd.load8(out, base + L)
        s2, s3 = simd.load8(out, base + 2 * L), simd.load8(out, base + 3 * L)
        s4, s5 = simd.load8(out, base + 4 * L), simd.load8(out, base + 5 * L)
        s6, s7 = simd.load8(out, base + 6 * L), simd.load8(out, base + 7 * L)
    for k in range(start, stop):
        e, row = coef[k], rows[idx[k]]
        s0 = simd.fma(s0, simd.load8(row, base), e)
        s1 = simd.fma(s1, simd.load8(row, base + L), e)
        s2 = simd.fma(s2, simd.load8(row, base + 2 * L), e)
        s3 = simd.fma(s3, simd.load8(row, base + 3 * L), e)
        s4 = simd.fma(s4, simd.load8(row, base + 4 * L), e)
        s5 = simd.fma(s5, simd.load8(row, base + 5 * L), e)
        s6 = simd.fma(s6, simd.load8(row, base + 6 * L), e)
        s7 = simd.fma(s7, simd.load8(row, base + 7 * L), e)
    if base >= first:
        simd.store8(out, base, s0)
    if base + L >= first:
        simd.store8(out, base + L, s1)
    if base + 2 * L >= first:
        simd.store8(out, base + 2 * L, s2)
    if base + 3 * L >= first:
        simd.store8(out, base + 3 * L, s3)
    if base + 4 * L >= first:
        simd.store8(out, base + 4 * L, s4)
    if base + 5 * L >= first:
        simd.store8(out, base + 5 * L, s5)
    if base + 6 * L >= first:
        simd.store8(out, base + 6 * L, s6)
    simd.store8(out, base + 7 * L, s7)


@_dense._lite
def _accumulate_rows(rows, idx, coef, start, stop, out, fresh):
    """out[:8·nv] = (out if not fresh, else 0) + Σ_{k=start..stop-1} coef[k] · rows[idx[k],
    :8·nv], nv = out.size // 8: a weighted sum of gathered rows, in windows of eight vectors
    (``_accumulate_window``); a last window of fewer moves back over the previous one's
    vectors (computed again, not stored). Rows of fewer than eight vectors (patch widths
    under 64: small layers) take them one at a time, which for them is faster than a
    clamped eight-register pass."""
    L = simd.LANES
    nv = out.shape[0] // L
    if nv < 8:
        for u in range(0, nv * L, L):
            s = simd.splat(out.dtype.type(0)) if fresh else simd.load8(out, u)
            for k in range(start, stop):
                s = simd.fma(s, simd.load8(rows[idx[k]], u), coef[k])
            simd.store8(out, u, s)
        return
    for v in range(0, nv, 8):
        _accumulate_window(rows, idx, coef, start, stop, out, fresh, min(v, nv - 8) * L, v * L)


@_jit
def _dw_patches(cols, dq, winners, dwc):
    """dwc[o, :] += Σ_q dq[o, q] · cols[winners[o, q], :] (accumulated): the weight gradient
    from the pooling winners' patch rows (``_patches``); winners: the argmax, int32[c_out,
    nq] (positions in the conv output: cols' rows); dwc: float[c_out, width] (columns past
    the taps collect the padding, unused)."""
    for o in range(dq.shape[0]):
        _accumulate_rows(cols, winners[o], dq[o], 0, dq.shape[1], dwc[o], False)


@_jit
def _dx_patches(dq, winners, wrows, offs, kw, cw, wd, work, dxf):
    """dxf[y·wd + x + offs[t]] += Σ_{o, q: winner at (y, x)} dq[o, q] · w[o, t] (accumulated):
    the input gradient from the pooling winners, grouped by position — each position's
    winners' filter rows summed in registers (``_accumulate_rows``), then added into its
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
        _accumulate_rows(wrows, order, coef, starts[p], starts[p + 1], drow, True)
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
def _sparse_backward(kw, nq, ch, wd):
    """Whether the backward should work from the winners (``_dw_sparse``, ``_dx_sparse``:
    nq winners × filter rows, one 8-lane FMA each) instead of the dense flat correlations
    (``_dw_flat``: ch·w positions × kw taps per filter row, 8 per vector FMA; ``_dx_image``
    likewise): when the weight gradient does at most half the vector work — 2×2 pools of 5×5
    filters do 0.34× (first layer) and 0.53× (second) of it; a plain conv (no pooling) would
    do 1.6× — and the conv plane is small enough for ``_pooled_deltas``' float32 row
    arithmetic (< 2^22 positions)."""
    return kw <= simd.LANES and 2 * simd.LANES * nq <= kw * ch * wd and ch * wd < 2 ** 22


@_jit
def _backward_images(x, w, plan, fwd, da, act, dx, start, stop, scratch, dw_acc, db_acc):
    """convpool_backward_into for images start..stop-1, accumulating into this chunk's
    dw_acc[c_out, c_in·kh·kw] and db_acc[c_out]. fwd = (z, a, argmax); scratch = (dzf, dzp,
    dxf, pq, dwp, patch work) of this chunk (``_chunk_scratch``), dzf and dzp zero on entry
    (and on exit) — except that with the sparse backward (``_sparse_backward``) dzf's first
    c_out·oh·ow elements hold the pooled deltas [c_out, oh·ow], pq: int32[c_out, oh·ow] their
    patches' origins (both overwritten per image) and dwp the weight gradient's lanes
    (float[c_out, c_in·kh·8]) or, through the patches (``_through_patches``), its rows
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
    sparse = _sparse_backward(kw, nq, ch, wd)     # as in the plan
    patches = sparse and _through_patches(c_in, kh, kw, ch * cw)
    if sparse:
        _zero(dwp.reshape(dwp.size))
    for s in range(start, stop):
        xf = x[s].reshape(c_in * h * wd)
        if sparse:
            dq = _dense.rows_of(dzf, 0, c_out, nq)
            _pooled_deltas(da[s], z[s], a[s], argmax[s], act, cw, wd, dq, pq, db_acc)
            if patches:
                winners = argmax[s].reshape(c_out, nq)
                _patches(xf, offs, kw, cw, wd, cols)
                _dw_patches(cols, dq, winners, dwp)
            else:
                _dw_sparse(xf, dq, pq, offs, kw, dwp)
            if need_dx:
                dxs = dx[s].reshape(c_in * h * wd)
                _zero(dxs)
                if patches:
                    _dx_patches(dq, winners, wt, offs, kw, cw, wd, dx_work, dxs)
                else:
                    _dx_sparse(dq, pq, wt, offs, kw, dxs)
        else:
            _route_deltas(da[s], z[s], a[s], argmax[s], act, where, dzf, dzp, db_acc)
            _dw_flat(xf, dzf, offs, dw_acc, (ch - 1) * wd + cw)
            _zero(dzf.reshape(dzf.size))       # a memset beats clearing the winners one by one
            if need_dx:
                _dx_image(dzp.reshape(dzp.size), wt, offs_dx, dxf, wp, dx[s])
                _zero(dzp.reshape(dzp.size))
    if sparse:
        _fold_rows(dwp, kw, kw if patches else simd.LANES, dw_acc)


@_jit
def _backward_scratch(x, w, nq, need_dx, nchunks):
    """The backward's per-chunk scratch for images like x and filters w with nq pooled
    windows, each array with a leading chunk axis (``_chunk_scratch`` takes chunk k's): dzf
    (zero between images), dzp and dxf (the dense dx only; dzp zero between images), pq and
    dwp (the sparse backward), and the patch work (cols, order, coef, starts, drow: through
    the patches; the last four for dx) — see ``_backward_images``. What a mode does not use
    is empty."""
    _, c_in, h, wd = x.shape
    c_out, _, kh, kw = w.shape
    ch, cw = h - kh + 1, wd - kw + 1
    dt = x.dtype
    sparse = _sparse_backward(kw, nq, ch, wd)
    patches = sparse and _through_patches(c_in, kh, kw, ch * cw)
    dense_dx = need_dx and not sparse
    width = _patch_width(c_in * kh * kw, kw) if patches else 0
    lanes = width if patches else (c_in * kh * simd.LANES if sparse else 0)
    m = c_out * nq if patches and need_dx else 0
    return (np.zeros((nchunks, c_out, ch * wd), dt),
            np.zeros((nchunks, c_out, (h + kh - 1) * (wd + kw - 1) if dense_dx else 0), dt),
            np.empty((nchunks, c_in, h * (wd + kw - 1) if dense_dx else 0), dt),
            np.empty((nchunks, c_out, nq if sparse else 0), np.int32),
            np.empty((nchunks, c_out, lanes), dt),
            (np.zeros((nchunks, ch * cw if patches else 0, width), dt),
             np.empty((nchunks, m), np.int32), np.empty((nchunks, m), dt),
             np.empty((nchunks, ch * cw + 2 if m else 0), np.int64),
             np.empty((nchunks, width if m else 0), dt)))


@_jit
def _chunk_scratch(scratch, k):
    """Chunk k's part of ``_backward_scratch``'s arrays, as ``_backward_images`` takes it."""
    cols, order, coef, starts, drow = scratch[5]
    return (scratch[0][k], scratch[1][k], scratch[2][k], scratch[3][k], scratch[4][k],
            (cols[k], (order[k], coef[k], starts[k], drow[k])))


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
    sparse = _sparse_backward(kw, nq, h - kh + 1, wd)
    plan = _backward_plan(x, w, need_dx, sparse)
    nchunks = max(1, min(n, nthreads))
    # the scratch's arrays one by one: a parallel loop takes no tuples of arrays
    dzf, dzp, dxf, pq, dwp, patch = _backward_scratch(x, w, nq, need_dx, nchunks)
    cols, order, coef, starts, drow = patch
    dw_part = np.zeros((nchunks, c_out, c_in * kh * kw), x.dtype)
    db_part = np.zeros((nchunks, c_out), x.dtype)
    for k in prange(nchunks):
        start, stop = _chunk(k, nchunks, n)
        _backward_images(x, w, plan, (z, a, argmax), da, act, dx, start, stop,
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


# ---------------------------------------------------------------------------- wrappers
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
