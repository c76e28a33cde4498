"""The convolution family's vector micro-kernels for the CPU (Numba, LLVM vectors through
``simd``): the register-blocked inner loops the conv and pooling kernels call per image.

    corr_flat / corr_rows   zf[o, p] = Σ_t wm[o, t] · xf[p + offs[t]]   (the conv, flat or by rows)
    dw_sparse / dx_sparse   dw, dx from the pooling winners' patches, 8 lanes per filter row
    patches                 the im2col of one image (position-major); accumulate_rows sums
                            weighted gathered rows of it (or of the filters)
    pool2_lanes             2×2 max-pooling of one plane, eight windows at a time

Shapes: one image at a time, flat (``xf: float[c_in·h·w]``), filters as ``wm[c_out, T]`` with
tap offsets ``offs: int64[T]`` (``conv_plan.tap_offsets``); outputs written in place.
NumPy twin: ``fastnet.reference.conv`` (through ``conv_cpu``'s entry points).
Tests: ``tests/test_conv.py``. Why these loop shapes: docs/kernels.md.
"""

import math

from numba import njit

from . import config
from . import blocks_cpu as blocks
from . import simd

_jit = njit(**config.CPU_JIT)
_lite = njit(**config.CPU_LITE)  # no reference counting (config.CPU_LITE)


@_jit
def corr_flat(xf, wm, offs, zf, length):
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
    if not simd.is_float32(xf.dtype.type(0)):
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
            blocks.put2(z0, p, n0, n1, False, a0, a1)
            if g > 1:
                blocks.put2(z1, p, n0, n1, False, b0, b1)
            if g > 2:
                blocks.put2(z2, p, n0, n1, False, c0, c1)
            if g > 3:
                blocks.put2(z3, p, n0, n1, False, d0, d1)
        o += g


@_jit
def corr_rows(xf, wm, offs, starts, zf):
    """zf[o, s + j] (overwritten) = Σ_t wm[o, t] · xf[s + j + offs[t]] for every chunk start s
    in starts (``conv_plan``) and j < 8: ``corr_flat``'s four filters × sixteen positions
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
    ``corr_flat``.
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
def dw_sparse(xf, dq, pq, offs, kw, dwp):
    """dwp[o, 8·r + j] += Σ_q dq[o, q] · xf[pq[o, q] + offs[r·kw] + j]  (accumulated) for the
    filter rows r = (c, i) and j < 8, kw <= 8: the weight gradient from the pooling winners
    alone (the other three quarters of a 2×2-pooled dz are zeros), in lanes; j < kw are the
    gradient's (``_fold_rows`` adds them into dw), the others sums of whatever follows the
    patch rows, never used.

    xf: float[N] one flat image; dq: float[c_out, nq] the pooled deltas, window q; pq:
    int32[c_out, nq] the origin of window q's winner's patch in xf (both from
    ``pool_cpu.pooled_deltas``); offs: the tap offsets; dwp: float[c_out, 8·rows]. A winner's patch
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
def dx_sparse(dq, pq, wrows, offs, kw, dxf):
    """dxf[pq[o, q] + offs[r·kw] + j] += dq[o, q] · w[o, r, j] for every window q of every
    filter o, filter row r = (c, i), j < kw <= 8 (accumulated): the input gradient from the
    pooling winners alone, each spreading its delta over its patch.

    dq, pq: as for ``dw_sparse``; wrows: ``_padded_rows(w)``; offs: the tap offsets; dxf:
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
def patches(xf, offs, kw, cw, wd, cols):
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


@_lite
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


@_lite
def accumulate_rows(rows, idx, coef, start, stop, out, fresh):
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
def pool2_lanes(zo, wd, cw, bo, z_o, argmax_o):
    """``pool_cpu.pool`` of one plane for 2×2 windows, eight windows at a time: z_o[py, px] = the
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
