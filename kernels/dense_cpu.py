"""Dense-layer kernels for the CPU (Numba ``@njit``): batched feedforward, activations, output
and hidden deltas, the fused gradient + SGD update, softmax, the layer-by-layer kernels
(``*_par``), inference (``evaluate``, ``predict``) and the fused training epoch
(``train_epoch``, and ``train_epoch_threaded`` on OS threads: a whole epoch per compiled call).

Shapes: ``x: float[B, n_in]``, ``w: float[n_out, n_in]``, ``b: float[n_out]``,
``z, a, delta: float[B, n_out]``; a stack is the flat ``params`` buffer with ``layout[L, 4]``
rows ``(n_in, n_out, w_offset, b_offset)``, ``acts[L]`` and a loss code (docs/design.md).
Kernels write into arrays passed in, allocate nothing in their loops and do not validate (the
Python layer does).

NumPy twin: ``fastnet.reference.dense`` (same names). Tests: ``tests/test_dense.py``.
Why the register blocks, the ``simd`` update, the threads and the sigmoid: docs/kernels.md.
"""

import math

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic

from . import config
from . import simd
from . import sync_cpu as _sync
from .config import CROSS_ENTROPY, QUADRATIC, RELU, SIGMOID, SOFTMAX, SOFTPLUS, TANH

_jit = njit(**config.CPU_JIT)
# Kernels that allocate nothing and return no array (nor a tuple holding one) are compiled
# without Numba's reference counting: each array view a function makes or passes otherwise
# costs two atomic updates of a reference count, and a fused step makes
# dozens of views per sample. A ``_lite`` function may call ``_jit`` ones (``config.CPU_JIT``
# asks for counting explicitly, so they count their own references whoever calls them; the
# views passed in are borrowed). Numba refuses a call that returns a new array inside a
# ``_lite`` function: the helpers that return a view are an intrinsic (``rows_of``) or
# inlined (``_xrow``).
# tests/test_sparse.py checks that no ``_lite`` function returns an array.
_lite = njit(**dict(config.CPU_JIT, _nrt=False))
_NO_ROWS = np.empty(0, dtype=np.int64)
_PAR_MIN_WORK = 100_000  # batch·n_in·n_out of layer 0 from which an epoch uses threads


# ---------------------------------------------------------------------------- scalar helpers
@intrinsic
def _pow2(typingctx, n):
    """2**n for a float n holding an integer in the normal exponent range, by building the
    exponent bits (vectorisable, unlike ``math.ldexp``)."""
    if n == types.float64:
        ity, bias, shift = ir.IntType(64), 1023, 52
    elif n == types.float32:
        ity, bias, shift = ir.IntType(32), 127, 23
    else:
        return None

    def codegen(context, builder, signature, args):
        i = builder.fptosi(args[0], ity)
        i = builder.shl(builder.add(i, ir.Constant(ity, bias)), ir.Constant(ity, shift))
        return builder.bitcast(i, args[0].type)

    return n(n), codegen


@intrinsic
def _exp_floor(typingctx, z):
    """The most negative t (of z's type) for which exp(t) is still a normal number."""
    if z not in (types.float64, types.float32):
        return None
    lo = -708.0 if z == types.float64 else -87.0

    def codegen(context, builder, signature, args):
        return ir.Constant(args[0].type, lo)

    return z(z), codegen


@intrinsic
def _is_float32(typingctx, z):
    """True (a compile-time constant) when z is a float32: lets a kernel pick a cheaper
    formula for float32 with the branch folded away."""
    if z not in (types.float64, types.float32):
        return None
    flag = z == types.float32

    def codegen(context, builder, signature, args):
        return ir.Constant(ir.IntType(1), int(flag))

    return types.boolean(z), codegen


@intrinsic
def rows_of(typingctx, a, start, m, n):
    """``a.reshape(-1)[start:start + m * n].reshape((m, n))`` for a C-contiguous a (1-D or
    2-D), sharing a's memory (read-only stays read-only); IndexError when the rows run outside
    a. ``reshape`` without Numba's helper call (the fused epochs make many of these a step).
    An intrinsic, so ``_lite`` functions can use it (they cannot call a function that returns
    a new view) and it costs no compile time of its own (an ``inline="always"`` function is
    typed again at every call site, which adds seconds to a cold-cache compile)."""
    if not (isinstance(a, types.Array) and a.layout == "C" and a.ndim in (1, 2)
            and all(isinstance(t, types.Integer) for t in (start, m, n))):
        return None
    ret = a.copy(ndim=2, layout="C")

    def codegen(context, builder, sig, args):
        src = context.make_array(sig.args[0])(context, builder, args[0])
        start, m, n = (context.cast(builder, v, t, types.intp)
                       for v, t in zip(args[1:], sig.args[1:]))
        zero = context.get_constant(types.intp, 0)
        bad = builder.or_(builder.or_(builder.icmp_signed("<", start, zero),
                                      builder.icmp_signed("<", m, zero)),
                          builder.or_(builder.icmp_signed("<", n, zero),
                                      builder.icmp_signed(">", builder.add(start,
                                                                           builder.mul(m, n)),
                                                          src.nitems)))
        with cgutils.if_unlikely(builder, bad):
            context.call_conv.return_user_exc(builder, IndexError,
                                              ("rows_of: the rows run outside the array",))
        out = context.make_array(ret)(context, builder)
        item = context.get_constant(types.intp,
                                    context.get_abi_sizeof(context.get_data_type(a.dtype)))
        context.populate_array(out, data=builder.gep(src.data, [start]),
                               shape=cgutils.pack_array(builder, [m, n]),
                               strides=cgutils.pack_array(builder, [builder.mul(n, item), item]),
                               itemsize=item, meminfo=src.meminfo, parent=src.parent)
        return impl_ret_borrowed(context, builder, ret, out._getvalue())

    return ret(a, start, m, n), codegen


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
    lo = _exp_floor(z)
    t = lo if t < lo else t  # NaN passes through to the final select
    n = np.floor(t * T(1.4426950408889634) + T(0.5))
    r = t - n * T(0.6931471803691238) - n * T(1.9082149292705877e-10)
    if _is_float32(z):
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
    e = p * _pow2(n)
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
def _sigmoid(z):
    """σ(z) = 1/(1 + e^−z) for a float32 or float64 z: see ``_sigmoid_body``."""
    if _is_float32(z):
        return _sigmoid32(z)
    return _sigmoid64(z)


@_jit
def _softplus(z):
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))


# ---------------------------------------------------------------------------- activations
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
                a[i, j] = _sigmoid(z[i, j])
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
                a[i, j] = _softplus(z[i, j])
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
                out[i, j] *= _sigmoid(z[i, j])


# ---------------------------------------------------------------------------- micro-kernels
# Register blocks over two weight rows × five samples: per element of n_in, 7 loads feed
# 10 FMAs. LLVM vectorises the dot products' loops (k over n_in, contiguous in both operands;
# reductions under fastmath); the update's loops, which store, are on ``simd`` vectors.
@_jit
def _dot_2x5(w0, w1, x0, x1, x2, x3, x4, n):
    """The 10 dot products of rows w0, w1 with rows x0..x4 over their first n elements."""
    zero = w0.dtype.type(0)
    s00 = s01 = s02 = s03 = s04 = zero
    s10 = s11 = s12 = s13 = s14 = zero
    for k in range(n):
        a, c = w0[k], w1[k]
        s00 += a * x0[k]
        s01 += a * x1[k]
        s02 += a * x2[k]
        s03 += a * x3[k]
        s04 += a * x4[k]
        s10 += c * x0[k]
        s11 += c * x1[k]
        s12 += c * x2[k]
        s13 += c * x3[k]
        s14 += c * x4[k]
    return s00, s01, s02, s03, s04, s10, s11, s12, s13, s14


@_jit
def _dot_2x1(w0, w1, x0, n):
    zero = w0.dtype.type(0)
    s0 = s1 = zero
    for k in range(n):
        s0 += w0[k] * x0[k]
        s1 += w1[k] * x0[k]
    return s0, s1


@_jit
def _dot_1x5(w0, x0, x1, x2, x3, x4, n):
    zero = w0.dtype.type(0)
    s0 = s1 = s2 = s3 = s4 = zero
    for k in range(n):
        a = w0[k]
        s0 += a * x0[k]
        s1 += a * x1[k]
        s2 += a * x2[k]
        s3 += a * x3[k]
        s4 += a * x4[k]
    return s0, s1, s2, s3, s4


@_jit
def _dot_1x1(w0, x0, n):
    s = w0.dtype.type(0)
    for k in range(n):
        s += w0[k] * x0[k]
    return s


@_jit
def _axpy_2x5(w0, w1, c0, c1, x0, x1, x2, x3, x4, n, d):
    """w0 ← d·w0 − Σ_i c0[i]·x_i, w1 ← d·w1 − Σ_i c1[i]·x_i over five rows x0..x4 (c0, c1:
    5-tuples); d is the weight decay on the first pass over a row, else 1 (d·w − s is one FMA,
    so the decay costs no pass of its own). Eight elements per step on ``simd`` vectors, the
    last step on masked lanes with the same FMA chain, so every element gets the same
    arithmetic whatever the compile (a scalar tail came out differently fresh and from the
    cache) and wherever a row range starts. Written as plain loops over k these did not
    vectorise with a run-time n."""
    k = 0
    while k + simd.LANES <= n:
        v = _x5(x0, x1, x2, x3, x4, k, simd.LANES, True)
        _axpy_step(w0, c0, v, k, simd.LANES, True, d)
        _axpy_step(w1, c1, v, k, simd.LANES, True, d)
        k += simd.LANES
    if k < n:
        v = _x5(x0, x1, x2, x3, x4, k, n - k, False)
        _axpy_step(w0, c0, v, k, n - k, False, d)
        _axpy_step(w1, c1, v, k, n - k, False, d)


@_jit
def _axpy_1x5(w0, c0, x0, x1, x2, x3, x4, n, d):
    """``_axpy_2x5`` for one row."""
    k = 0
    while k + simd.LANES <= n:
        _axpy_step(w0, c0, _x5(x0, x1, x2, x3, x4, k, simd.LANES, True), k, simd.LANES, True,
                   d)
        k += simd.LANES
    if k < n:
        _axpy_step(w0, c0, _x5(x0, x1, x2, x3, x4, k, n - k, False), k, n - k, False, d)


@_lite
def _x5(x0, x1, x2, x3, x4, k, r, full):
    """Elements k..k + r of five rows as eight-lane vectors (``_get1``)."""
    return (_get1(x0, k, r, full), _get1(x1, k, r, full), _get1(x2, k, r, full),
            _get1(x3, k, r, full), _get1(x4, k, r, full))


@_lite
def _axpy_step(w0, c, v, k, r, full, d):
    """w0[k:k + r] ← d·w0 − Σ_i c[i]·v[i] (five vectors v, their sum one FMA chain)."""
    a0, a1, a2, a3, a4 = c
    v0, v1, v2, v3, v4 = v
    t = simd.fma(simd.fma(simd.fma(simd.fma(simd.fma(
        simd.splat(w0.dtype.type(0)), v0, -a0), v1, -a1), v2, -a2), v3, -a3), v4, -a4)
    _put1(w0, k, r, full, simd.fma(t, _get1(w0, k, r, full), d))


@_jit
def _axpy_1x1(w0, c0, x0, n, d):
    for k in range(n):
        w0[k] = d * w0[k] - c0 * x0[k]


@njit(**config.CPU_JIT, inline="always")
def _xrow(x, rows, i):
    """Sample i of a mini-batch: row rows[i] of x, or row i when rows is empty (no gather)."""
    r = rows[i] if rows.shape[0] > 0 else i
    return x[r]


@_jit
def _rows_forward(x, rows, m, w, b, z, j_lo, j_hi):
    """z[i, j] (overwritten) = x_i·w[j] + b[j] for j in [j_lo, j_hi), i < m, where x_i is
    ``_xrow(x, rows, i)``. Sample groups outside, rows inside: the five x rows of a group stay
    in L1 while the weight rows stream past (x traffic, not w, is what limits this loop); a
    last sample on its own takes two rows of w at a time. The first n_in = w.shape[1] elements
    of each x row are read (rows may be longer)."""
    n = w.shape[1]
    i = 0
    while i < m:
        if i + 1 < m:
            # five samples; a group past the last sample repeats it (summed, not stored):
            # 2-4 samples cost one group, not 2-4 single-sample passes over w (a sample
            # alone costs more than twice its share of a whole group)
            g = min(5, m - i)
            i1, i2, i3, i4 = _next4(i, m - 1)
            x0, x1, x2 = _xrow(x, rows, i), _xrow(x, rows, i1), _xrow(x, rows, i2)
            x3, x4 = _xrow(x, rows, i3), _xrow(x, rows, i4)
            j = j_lo
            while j + 2 <= j_hi:
                s = _dot_2x5(w[j], w[j + 1], x0, x1, x2, x3, x4, n)
                for q in range(g):
                    z[i + q, j] = s[q] + b[j]
                    z[i + q, j + 1] = s[5 + q] + b[j + 1]
                j += 2
            if j < j_hi:
                s5 = _dot_1x5(w[j], x0, x1, x2, x3, x4, n)
                for q in range(g):
                    z[i + q, j] = s5[q] + b[j]
            i += g
        else:
            x0 = _xrow(x, rows, i)
            j = j_lo
            while j + 2 <= j_hi:
                s0, s1 = _dot_2x1(w[j], w[j + 1], x0, n)
                z[i, j] = s0 + b[j]
                z[i, j + 1] = s1 + b[j + 1]
                j += 2
            if j < j_hi:
                z[i, j] = _dot_1x1(w[j], x0, n) + b[j]
            i += 1


@_jit
def _rows_update_passes(x, rows, m, delta, w, b, scale, decay, j_lo, j_hi):
    """w[j] ← decay·w[j] − scale·Σ_{i<m} δ[i, j]·x_i, b[j] −= scale·Σ_{i<m} δ[i, j], for j in
    [j_lo, j_hi), x_i = ``_xrow(x, rows, i)``; scale and decay are of w's dtype. Sample groups
    outside, rows inside, as in ``_rows_forward``; x rows may be longer than w's. The float64
    path of ``_rows_update``."""
    n = w.shape[1]
    for j in range(j_lo, j_hi):
        s = w.dtype.type(0)
        for i in range(m):
            s += delta[i, j]
        b[j] -= scale * s
        if m == 0:                   # no sample: no pass to carry the decay
            for k in range(n):
                w[j, k] *= decay
    one = w.dtype.type(1)
    i = 0
    while i < m:
        d = decay if i == 0 else one  # the decay rides on each row's first pass
        if i + 5 <= m:
            x0, x1, x2 = _xrow(x, rows, i), _xrow(x, rows, i + 1), _xrow(x, rows, i + 2)
            x3, x4 = _xrow(x, rows, i + 3), _xrow(x, rows, i + 4)
            j = j_lo
            while j < j_hi:
                c0 = (scale * delta[i, j], scale * delta[i + 1, j], scale * delta[i + 2, j],
                      scale * delta[i + 3, j], scale * delta[i + 4, j])
                if j + 1 < j_hi:
                    c1 = (scale * delta[i, j + 1], scale * delta[i + 1, j + 1],
                          scale * delta[i + 2, j + 1], scale * delta[i + 3, j + 1],
                          scale * delta[i + 4, j + 1])
                    _axpy_2x5(w[j], w[j + 1], c0, c1, x0, x1, x2, x3, x4, n, d)
                    j += 2
                else:
                    _axpy_1x5(w[j], c0, x0, x1, x2, x3, x4, n, d)
                    j += 1
            i += 5
        else:
            x0 = _xrow(x, rows, i)
            for j in range(j_lo, j_hi):
                _axpy_1x1(w[j], scale * delta[i, j], x0, n, d)
            i += 1


_UPDATE_TILE = 65536   # elements of x per column tile in ``_rows_update``


@_lite
def _rows_update(x, rows, m, delta, w, b, scale, decay, j_lo, j_hi):
    """w[j] ← decay·w[j] − scale·Σ_{i<m} δ[i, j]·x_i, b[j] −= scale·Σ_{i<m} δ[i, j], for j in
    [j_lo, j_hi), x_i = ``_xrow(x, rows, i)``; scale and decay are of w's dtype; x rows may
    be longer than w's.

    float32: blocks of five w rows × sixteen columns whose gradient sums stay in ten 8-lane
    registers (``simd``) over all m samples — per sample two loads of x_i and five broadcasts
    feed ten FMAs — then w = decay·w − scale·sum, one load and store of w per element (the
    ``_rows_update_passes`` it replaces reads and writes each row once per five samples). A
    block past the last row repeats that row (summed, not stored), so a range of 50 or 100
    rows is whole blocks and a short one costs one block, not one per row; the last columns go
    through masked lanes with the same per-lane arithmetic. The columns run in tiles of
    ~``_UPDATE_TILE``/m so the m x rows of a tile stay in L2 while every block of rows rereads
    them (at 100 samples x is 1.15 MB: untiled, each block streamed it from L3). Each
    element's sum runs over i in order whatever the blocks and tiles, so results do not depend
    on them. Below three samples, at exactly five (one pass of the five-sample groups) and for
    float64: ``_rows_update_passes`` (at exactly five samples the passes are the faster).
    """
    if not _is_float32(w.dtype.type(0)) or m < 3 or m == 5:
        _rows_update_passes(x, rows, m, delta, w, b, scale, decay, j_lo, j_hi)
        return
    for j in range(j_lo, j_hi):
        s = w.dtype.type(0)
        for i in range(m):
            s += delta[i, j]
        b[j] -= scale * s
    n = w.shape[1]
    zero = simd.splat(w.dtype.type(0))
    last = j_hi - 1
    # columns in tiles whose m x rows fit in L2 next to the weights (~256 KB), so the rows
    # of every block of w rows reread them from there, not from L3
    tile = max(16, min(n, (_UPDATE_TILE // max(m, 1)) // 16 * 16))
    for t in range(0, n, tile):
        te = min(t + tile, n)
        for j in range(j_lo, j_hi, 5):
            # rows j..j + 4; past the last row the block repeats it (summed, not stored)
            j1, j2, j3, j4 = _next4(j, last)
            k = t
            while k < te:
                n0 = min(simd.LANES, te - k)
                n1 = min(simd.LANES, max(te - k - simd.LANES, 0))
                full = n1 == simd.LANES
                s00 = s01 = s10 = s11 = s20 = s21 = s30 = s31 = s40 = s41 = zero
                for i in range(m):
                    v0, v1 = _get2(_xrow(x, rows, i), k, n0, n1, full)
                    s00, s01, s10, s11, s20, s21, s30, s31, s40, s41 = _fma_5x2(
                        (s00, s01, s10, s11, s20, s21, s30, s31, s40, s41), v0, v1,
                        delta[i, j], delta[i, j1], delta[i, j2], delta[i, j3], delta[i, j4])
                _step2(w[j], k, n0, n1, full, s00, s01, scale, decay)
                if j + 1 <= last:
                    _step2(w[j1], k, n0, n1, full, s10, s11, scale, decay)
                if j + 2 <= last:
                    _step2(w[j2], k, n0, n1, full, s20, s21, scale, decay)
                if j + 3 <= last:
                    _step2(w[j3], k, n0, n1, full, s30, s31, scale, decay)
                if j + 4 <= last:
                    _step2(w[j4], k, n0, n1, full, s40, s41, scale, decay)
                k += n0 + n1


@_lite
def _step2(row, k, n0, n1, full, s0, s1, scale, decay):
    """row[k:k + n0 + n1] ← decay·row − scale·(s0, s1) over the lanes in use."""
    zero = simd.splat(row.dtype.type(0))
    w0, w1 = _get2(row, k, n0, n1, full)
    w0 = simd.fma(simd.fma(zero, w0, decay), s0, -scale)
    w1 = simd.fma(simd.fma(zero, w1, decay), s1, -scale)
    _put2(row, k, n0, n1, full, w0, w1)


# ---------------------------------------------------------------------------- feedforward
@_jit
def dense_forward(x, w, b, z):
    """z[B, n_out] (overwritten) = x[B, n_in] @ w[n_out, n_in]ᵀ + b[n_out]."""
    _rows_forward(x, _NO_ROWS, x.shape[0], w, b, z, 0, w.shape[0])


@_jit
def forward(params, layout, acts, x, zs, activations):
    """Forward pass through all layers. ``zs``/``activations`` are flat workspaces of at least
    B·Σn_out elements; layer l's arrays start at B·(Σ_{k<l} n_out_k). Returns the offset of the
    last layer's outputs in them."""
    return forward_from(params, layout, acts, x, zs, activations, 0)


@_jit
def forward_from(params, layout, acts, inp, zs, activations, first):
    """``forward`` from layer ``first`` on, ``inp[B, n_in of first]`` being its input (layer
    first − 1's activations, or x); earlier layers' workspace rows are left as they are."""
    B = inp.shape[0]
    off = 0
    for l in range(layout.shape[0]):
        n_in, n_out, w_off, b_off = layout[l, 0], layout[l, 1], layout[l, 2], layout[l, 3]
        if l >= first:
            w = rows_of(params, w_off, n_out, n_in)
            b = params[b_off:b_off + n_out]
            z = rows_of(zs, off, B, n_out)
            a = rows_of(activations, off, B, n_out)
            dense_forward(inp, w, b, z)
            activate(z, a, acts[l])
            inp = a
        if l < layout.shape[0] - 1:
            off += B * n_out
    return off


# ---------------------------------------------------------------------------- deltas
@_jit
def output_delta(z, a, y, loss, act, delta):
    """delta[B, n] (overwritten) = ∂C/∂z: (a − y)⊙σ'(z) (quadratic), a − y (cross-entropy
    with sigmoid, log-likelihood with softmax)."""
    B, n = z.shape
    for i in range(B):
        for j in range(n):
            delta[i, j] = a[i, j] - y[i, j]
    if loss == QUADRATIC:
        activation_prime(z, a, act, delta)


@_jit
def hidden_delta(delta_next, w_next, z, a, act, delta):
    """delta[B, n] (overwritten) = (delta_next[B, n_next] @ w_next[n_next, n]) ⊙ σ'(z)."""
    B, n = z.shape
    n_next = w_next.shape[0]
    for i in range(B):
        for k in range(n):
            delta[i, k] = 0
        for j in range(n_next):
            d = delta_next[i, j]
            for k in range(n):
                delta[i, k] += d * w_next[j, k]
    activation_prime(z, a, act, delta)


# ---------------------------------------------------------------------------- update
@_jit
def dense_update(x, delta, w, b, scale, decay):
    """SGD step fused with the gradient: w[n_out, n_in] ← decay·w − scale·δᵀx,
    b ← b − scale·Σ_b δ, for x[B, n_in], delta[B, n_out]; scale = lr/m."""
    _rows_update(x, _NO_ROWS, x.shape[0], delta, w, b, w.dtype.type(scale),
                 w.dtype.type(decay), 0, w.shape[0])


# ---------------------------------------------------------------------------- layer by layer
# The layer-by-layer path (models with conv layers) calls these once per layer and step; they
# split the work into ``nthreads`` row or column ranges under ``prange`` (one parallel region
# per call, cheap against the work of a wide layer such as the book's 2880→100).
_pjit = njit(**config.CPU_JIT, parallel={"comprehension": False, "reduction": False,
                                         "inplace_binop": False, "setitem": False,
                                         "numpy": False, "stencil": False, "fusion": False,
                                         "prange": True})


@_jit
def _split(n, nthreads, c, align):
    """Range c of n items cut into nthreads ranges, each a multiple of ``align`` long."""
    per = ((n + nthreads - 1) // nthreads + align - 1) // align * align
    lo = min(c * per, n)
    return lo, min(lo + per, n)


@_lite
def _rows_backprop_one(dz, w, dx, k_lo, k_hi):
    """``_rows_backprop`` for float64: the same five-row blocks, one eight-lane vector (two
    256-bit registers) per row, so the five sums, the row of w and a broadcast fit the sixteen
    registers. Faster than the tiled loop it replaced (LLVM's vectorised
    ``d += a0·w0 + … + a3·w3`` over slices, loading and storing dx every four rows of w)."""
    m, n_out = dz.shape
    zero = simd.splat(dx.dtype.type(0))
    k = k_lo
    while k < k_hi:
        n0 = min(simd.LANES, k_hi - k)
        full = n0 == simd.LANES
        for i in range(0, m, 5):
            if i + 1 == m:                               # one row left: one sum
                s0 = zero
                for j in range(n_out):
                    v = _get1(w[j], k, n0, full)
                    s0 = simd.fma(s0, v, dz[i, j])
                _put1(dx[i], k, n0, full, s0)
                continue
            i1, i2, i3, i4 = _next4(i, m - 1)
            s0 = s1 = s2 = s3 = s4 = zero
            for j in range(n_out):
                v = _get1(w[j], k, n0, full)
                s0 = simd.fma(s0, v, dz[i, j])
                s1 = simd.fma(s1, v, dz[i1, j])
                s2 = simd.fma(s2, v, dz[i2, j])
                s3 = simd.fma(s3, v, dz[i3, j])
                s4 = simd.fma(s4, v, dz[i4, j])
            _put1(dx[i], k, n0, full, s0)
            if i + 1 < m:
                _put1(dx[i1], k, n0, full, s1)
            if i + 2 < m:
                _put1(dx[i2], k, n0, full, s2)
            if i + 3 < m:
                _put1(dx[i3], k, n0, full, s3)
            if i + 4 < m:
                _put1(dx[i4], k, n0, full, s4)
        k += n0


@_lite
def _get1(row, k, n0, full):
    """row[k:k + n0] as eight lanes, lanes past n0 zero (a plain load when n0 is a whole
    vector, else masked)."""
    if full:
        return simd.load8(row, k)
    return simd.load(row, k, n0)


@_lite
def _put1(row, k, n0, full, s):
    """row[k:k + n0] = s[:n0] (a plain store when n0 is a whole vector)."""
    if full:
        simd.store8(row, k, s)
    else:
        simd.store(row, k, n0, s)


@_lite
def _rows_backprop(dz, w, dx, k_lo, k_hi):
    """dx[i, k] (overwritten) = Σ_j dz[i, j]·w[j, k] for k in [k_lo, k_hi) and every row i of
    dz: dx = dz @ w on a column range.

    float32: blocks of five dx rows × sixteen columns held in ten 8-lane sums (``simd``)
    over all of j: per j two loads of w's row and five broadcasts feed ten FMAs (the
    tiled slice loop it replaced loaded and stored dx every four j: 6 memory
    operations per 4 FMAs). A block past the last row repeats row m − 1 (summed, not stored):
    five samples (a thread's share of a mini-batch of 10) are one block, where blocks of four
    left one row on its own, whose two FMA chains wait on each other's latency. A single last
    row still goes alone (two sums). The last columns go through masked lanes with the same
    per-lane FMA chain, so an element's value does not depend on where a thread's column range
    begins or ends. float64 (the sums would need 20 registers of their own):
    ``_rows_backprop_one``.
    """
    if not _is_float32(w.dtype.type(0)):
        _rows_backprop_one(dz, w, dx, k_lo, k_hi)
        return
    m, n_out = dz.shape
    zero = simd.splat(dx.dtype.type(0))
    k = k_lo
    while k < k_hi:
        n0 = min(simd.LANES, k_hi - k)                   # lanes in the first vector
        n1 = min(simd.LANES, max(k_hi - k - simd.LANES, 0))   # and in the second
        full = n1 == simd.LANES
        for i in range(0, m, 5):
            if i + 1 == m:                               # one row left: two sums
                s00 = s01 = zero
                for j in range(n_out):
                    v0, v1 = _get2(w[j], k, n0, n1, full)
                    s00, s01 = simd.fma(s00, v0, dz[i, j]), simd.fma(s01, v1, dz[i, j])
                _put2(dx[i], k, n0, n1, full, s00, s01)
                continue
            # rows i..i + 4; past the last row the block repeats row m − 1 (summed, not stored)
            i1, i2, i3, i4 = _next4(i, m - 1)
            s00 = s01 = s10 = s11 = s20 = s21 = s30 = s31 = s40 = s41 = zero
            for j in range(n_out):
                v0, v1 = _get2(w[j], k, n0, n1, full)
                s00, s01, s10, s11, s20, s21, s30, s31, s40, s41 = _fma_5x2(
                    (s00, s01, s10, s11, s20, s21, s30, s31, s40, s41), v0, v1,
                    dz[i, j], dz[i1, j], dz[i2, j], dz[i3, j], dz[i4, j])
            _put2(dx[i], k, n0, n1, full, s00, s01)
            if i + 1 < m:
                _put2(dx[i1], k, n0, n1, full, s10, s11)
            if i + 2 < m:
                _put2(dx[i2], k, n0, n1, full, s20, s21)
            if i + 3 < m:
                _put2(dx[i3], k, n0, n1, full, s30, s31)
            if i + 4 < m:
                _put2(dx[i4], k, n0, n1, full, s40, s41)
        k += n0 + n1


@_lite
def _next4(r, last):
    """Rows r + 1 .. r + 4 of a five-row block, each at most ``last``: a block past the last
    row repeats it (its sums are computed and not stored)."""
    return min(r + 1, last), min(r + 2, last), min(r + 3, last), min(r + 4, last)


@_lite
def _fma_5x2(s, v0, v1, e0, e1, e2, e3, e4):
    """One step of a five-row block's ten sums s = (s00, s01, s10, …, s41): row r's pair
    (s_r0, s_r1) += (v0, v1)·e_r."""
    s00, s01, s10, s11, s20, s21, s30, s31, s40, s41 = s
    return (simd.fma(s00, v0, e0), simd.fma(s01, v1, e0), simd.fma(s10, v0, e1),
            simd.fma(s11, v1, e1), simd.fma(s20, v0, e2), simd.fma(s21, v1, e2),
            simd.fma(s30, v0, e3), simd.fma(s31, v1, e3), simd.fma(s40, v0, e4),
            simd.fma(s41, v1, e4))


@_lite
def _get2(row, k, n0, n1, full):
    """(row[k:k + n0], row[k + n0:k + n0 + n1]) as two 8-lane vectors, lanes past n0, n1
    zero (plain loads when both are whole vectors, else masked)."""
    if full:
        return simd.load8(row, k), simd.load8(row, k + simd.LANES)
    return simd.load(row, k, n0), simd.load(row, k + n0, n1)


@_lite
def _put2(row, k, n0, n1, full, s0, s1):
    """row[k:k + n0] = s0[:n0], row[k + n0:k + n0 + n1] = s1[:n1] (plain stores when both
    are whole vectors, else masked)."""
    if full:
        simd.store8(row, k, s0)
        simd.store8(row, k + simd.LANES, s1)
    else:
        simd.store(row, k, n0, s0)
        simd.store(row, k + n0, n1, s1)


@_pjit
def dense_forward_par(x, w, b, z, nthreads):
    """``dense_forward`` with w's rows split over ``nthreads`` threads."""
    for c in prange(nthreads):
        lo, hi = _split(w.shape[0], nthreads, c, 2)
        if hi > lo:
            _rows_forward(x, _NO_ROWS, x.shape[0], w, b, z, lo, hi)


@_pjit
def dense_backward_par(x, w, dz, dx, gw, gb, need_dx, nthreads):
    """The gradients of z = x @ w.T + b: gw[n_out, n_in] (overwritten) = dzᵀ @ x, gb[n_out]
    (overwritten) = Σ_i dz[i], and, when ``need_dx``, dx[B, n_in] (overwritten) = dz @ w.
    Thread c takes a range of w's rows for gw, gb and a range of its columns for dx."""
    m = x.shape[0]
    zero, minus_one = gw.dtype.type(0), gw.dtype.type(-1)
    for c in prange(nthreads):
        lo, hi = _split(w.shape[0], nthreads, c, 2)
        for j in range(lo, hi):
            gb[j] = zero
            gj = gw[j]
            for k in range(gj.shape[0]):
                gj[k] = zero
        if hi > lo:  # g ← 1·g − (−1)·Σ dz·x: the update kernel, accumulating the gradient
            _rows_update(x, _NO_ROWS, m, dz, gw, gb, minus_one, gw.dtype.type(1), lo, hi)
        if need_dx:
            k_lo, k_hi = _split(w.shape[1], nthreads, c, 16)
            if k_hi > k_lo:
                _rows_backprop(dz, w, dx, k_lo, k_hi)


@_pjit
def dense_backward_sgd_par(x, w, b, dz, dx, need_dx, scale, decay, nthreads):
    """``dense_backward_par`` fused with the SGD step: dx[B, n_in] (overwritten, when
    ``need_dx``) = dz @ w with the weights as they were, then w ← decay·w − scale·dzᵀ @ x and
    b ← b − scale·Σ_i dz[i] in place — the gradient never goes to memory, and w is read and
    written once instead of three arrays in a separate SGD pass. Two parallel regions (dx's
    columns, then w's rows): dx must read every row before any is updated."""
    m = x.shape[0]
    if need_dx:
        for c in prange(nthreads):
            k_lo, k_hi = _split(w.shape[1], nthreads, c, 16)
            if k_hi > k_lo:
                _rows_backprop(dz, w, dx, k_lo, k_hi)
    for c in prange(nthreads):
        lo, hi = _split(w.shape[0], nthreads, c, 2)
        if hi > lo:
            _rows_update(x, _NO_ROWS, m, dz, w, b, scale, decay, lo, hi)


# ---------------------------------------------------------------------------- costs
@_jit
def loss_and_correct(z, a, y, loss):
    """(Σ per-sample cost as float64, number of rows with argmax a == argmax y) for one batch;
    the same formulas as ``fastnet.reference.dense.cost``."""
    B, n = z.shape
    total = 0.0
    correct = 0
    for i in range(B):
        c = 0.0
        if loss == QUADRATIC:
            for j in range(n):
                d = float(a[i, j]) - float(y[i, j])
                c += 0.5 * d * d
        elif loss == CROSS_ENTROPY:
            for j in range(n):
                zz = float(z[i, j])
                c += _softplus(zz) - float(y[i, j]) * zz
        else:  # LOG_LIKELIHOOD: −Σ y·log_softmax(z)
            zmax = float(z[i, 0])
            for j in range(1, n):
                zmax = max(zmax, float(z[i, j]))
            s = 0.0
            for j in range(n):
                s += math.exp(float(z[i, j]) - zmax)
            lse = zmax + math.log(s)
            for j in range(n):
                c -= float(y[i, j]) * (float(z[i, j]) - lse)
        total += c
        ja, jy = 0, 0
        for j in range(1, n):
            if a[i, j] > a[i, ja]:
                ja = j
            if y[i, j] > y[i, jy]:
                jy = j
        correct += ja == jy
    return total, correct


@_jit
def _forward_rows(params, layout, acts, loss, x, y, out, lo, hi, batch_size):
    """The forward pass over rows [lo, hi) of x, in chunks of ``batch_size`` rows: the network's
    outputs go to out[lo:hi] unless out is empty; when y is not empty, returns the rows' summed
    cost and number correct (else zeros)."""
    nL = layout[layout.shape[0] - 1, 1]
    size = _layer_offsets(layout, batch_size)[-1]
    zs = np.empty(size, dtype=x.dtype)
    acts_buf = np.empty(size, dtype=x.dtype)
    total = 0.0
    correct = 0
    for k in range(lo, hi, batch_size):
        m = min(batch_size, hi - k)
        off = forward(params, layout, acts, x[k:k + m], zs, acts_buf)
        a = rows_of(acts_buf, off, m, nL)
        if out.shape[0] > 0:
            _copy_cols(a, out[k:k + m])
        if y.shape[0] > 0:
            t, n_ok = loss_and_correct(rows_of(zs, off, m, nL), a, y[k:k + m],
                                       loss)
            total += t
            correct += n_ok
    return total, correct


@_pjit
def evaluate(params, layout, acts, loss, x, y, batch_size, nthreads):
    """Σ cost and the number correct over a whole data set: ``nthreads`` ranges of rows in
    parallel, each in chunks of ``batch_size`` rows (the sums are added in range order)."""
    totals = np.zeros(nthreads)
    counts = np.zeros(nthreads, dtype=np.int64)
    for c in prange(nthreads):  # ranges of whole chunks: the same sums for any thread count
        lo, hi = _split(x.shape[0], nthreads, c, batch_size)
        totals[c], counts[c] = _forward_rows(params, layout, acts, loss, x, y, x[:0], lo, hi,
                                             batch_size)
    total = 0.0
    correct = 0
    for c in range(nthreads):
        total += totals[c]
        correct += counts[c]
    return total, correct


@_pjit
def predict(params, layout, acts, x, out, batch_size, nthreads):
    """out[N, nL] (overwritten) = the network's output for x[N, n0]: ``nthreads`` ranges of
    rows in parallel, each in chunks of ``batch_size`` rows."""
    for c in prange(nthreads):  # ranges of whole chunks: the same outputs for any thread count
        lo, hi = _split(x.shape[0], nthreads, c, batch_size)
        _forward_rows(params, layout, acts, 0, x, x[:0], out, lo, hi, batch_size)


# ---------------------------------------------------------------------------- fused epoch
@_lite
def _output_delta_rows(z, a, y, rows, loss, act, delta):
    """output_delta with targets y[rows[i]] read in place."""
    B, n = z.shape
    for i in range(B):
        yi = y[rows[i]]
        for j in range(n):
            delta[i, j] = a[i, j] - yi[j]
    if loss == QUADRATIC:
        activation_prime(z, a, act, delta)


@_jit
def _layer0_part(x, rows_u, delta, rows_f, z, a, w, b, scale, decay, act, j_lo, j_hi):
    """Layer 0, rows [j_lo, j_hi) of w (columns of z, a, delta): the SGD update with mini-batch
    t (samples x[rows_u], its deltas), then mini-batch t+1's forward (samples x[rows_f], into z)
    and activation (into a). Rows are independent, so this is step t's update followed by step
    t+1's forward, exactly, and disjoint row ranges can run on different threads. Either part
    is skipped when its rows are empty."""
    if rows_u.shape[0] > 0:
        _rows_update(x, rows_u, rows_u.shape[0], delta, w, b, scale, decay, j_lo, j_hi)
    if rows_f.shape[0] > 0 and j_hi > j_lo:
        _rows_forward(x, rows_f, rows_f.shape[0], w, b, z, j_lo, j_hi)
        if act != SOFTMAX:  # softmax needs whole rows: the caller applies it
            # the last range runs on into the rows' padding (zeros): whole vectors, no tail
            a_hi = z.shape[1] if j_hi == w.shape[0] else j_hi
            if j_lo == 0 and a_hi == z.shape[1]:
                activate_flat(z, a, act)
            else:
                activate(z[:, j_lo:a_hi], a[:, j_lo:a_hi], act)


@_jit
def _layer_offsets(layout, batch_size):
    """offs[L+1]: layer l's rows in the flat workspaces start at offs[l]; offs[L] is their size."""
    L = layout.shape[0]
    offs = np.zeros(L + 1, dtype=np.int64)
    for l in range(L):
        offs[l + 1] = offs[l] + batch_size * layout[l, 1]
    return offs


_LINE = 64  # bytes per cache line


@_jit
def workspaces(layout, batch_size, x):
    """The scratch arrays of an epoch, of x's dtype: ``(zs, activations, deltas)``, flat, with
    layer l's (batch, n_out) rows at ``_layer_offsets(...)[l]``, and ``l0: (3, batch, stride)``,
    layer 0's z, a and δ again with rows padded to whole cache lines and 64-byte aligned, where
    threads write their own columns (so that two threads never write to one cache line)."""
    size = _layer_offsets(layout, batch_size)[-1]
    zs = np.empty(size, dtype=x.dtype)
    acts_buf = np.empty(size, dtype=x.dtype)
    deltas = np.empty(size, dtype=x.dtype)
    per_line = _LINE // x.itemsize
    stride = (layout[0, 1] + per_line - 1) // per_line * per_line
    n = 3 * batch_size * stride
    raw = np.zeros(n + per_line, dtype=x.dtype)
    skip = ((-raw.ctypes.data) % _LINE) // x.itemsize
    l0 = raw[skip:skip + n].reshape((3, batch_size, stride))
    return zs, acts_buf, deltas, l0


@_jit
def _copy_cols(src, dst):
    """dst[i, j] = src[i, j] for the rows of dst and the columns of the narrower of the two."""
    n = min(src.shape[1], dst.shape[1])
    for i in range(dst.shape[0]):
        for j in range(n):
            dst[i, j] = src[i, j]


@_jit
def _step_upper(params, layout, acts, loss, y, rows, offs, ws, lr, decay, update=True,
                first=0):
    """One mini-batch (samples ``rows``) above layer 0, whose z and a are already in the
    workspaces ``ws = (zs, activations, deltas)``: the forward of layers 1.., every layer's delta
    (layer 0's included), each taken before any weight changes, then (``update``) the SGD
    updates of layers 1.. (``upper_updates``; layer 0's update is ``_layer0_part``'s).
    ``first``: the samples are rows first.. of the mini-batch's workspace rows (a part of the
    mini-batch; the forward and the deltas are row by row, so parts can run on different
    threads; not with ``update``, which needs all rows)."""
    zs, acts_buf, deltas, _ = ws
    L = layout.shape[0]
    m = rows.shape[0]
    no_rows = rows[:0]
    for l in range(1, L):
        n_in, n_out, w_off, b_off = layout[l, 0], layout[l, 1], layout[l, 2], layout[l, 3]
        o, op = offs[l] + first * n_out, offs[l - 1] + first * n_in
        z = rows_of(zs, o, m, n_out)
        ap = rows_of(acts_buf, op, m, n_in)
        w = rows_of(params, w_off, n_out, n_in)
        _rows_forward(ap, no_rows, m, w, params[b_off:b_off + n_out], z, 0, n_out)
        a = rows_of(acts_buf, o, m, n_out)
        if acts[l] == SOFTMAX:
            activate(z, a, SOFTMAX)
        else:
            activate_flat(z, a, acts[l])
    for l in range(L - 1, -1, -1):
        n_in, n_out, w_off = layout[l, 0], layout[l, 1], layout[l, 2]
        o = offs[l] + first * n_out
        z = rows_of(zs, o, m, n_out)
        a = rows_of(acts_buf, o, m, n_out)
        d = rows_of(deltas, o, m, n_out)
        if l == L - 1:
            _output_delta_rows(z, a, y, rows, loss, acts[l], d)
        if l > 0:
            op = offs[l - 1] + first * n_in
            w = rows_of(params, w_off, n_out, n_in)
            hidden_delta(d, w, rows_of(zs, op, m, n_in),
                         rows_of(acts_buf, op, m, n_in), acts[l - 1],
                         rows_of(deltas, op, m, n_in))
    if update:
        upper_updates(params, layout, offs, ws, m, lr, decay)


@_jit
def upper_updates(params, layout, offs, ws, m, lr, decay, part=0, nparts=1):
    """The SGD updates of layers 1.. for a mini-batch of m samples whose activations and
    deltas are in the workspaces (``_step_upper``'s last part; nothing of layer 0). With
    ``nparts`` > 1 only range ``part`` of each layer's rows (ranges of even size; the rows are
    independent, so the parts can run on different threads)."""
    acts_buf, deltas = ws[1], ws[2]
    scale = params.dtype.type(lr / m)
    for l in range(1, layout.shape[0]):
        n_in, n_out, w_off, b_off = layout[l, 0], layout[l, 1], layout[l, 2], layout[l, 3]
        lo, hi = _split(n_out, nparts, part, 2)
        if lo >= hi:
            continue
        op, o = offs[l - 1], offs[l]
        _rows_update(rows_of(acts_buf, op, m, n_in), _NO_ROWS, m,
                     rows_of(deltas, o, m, n_out),
                     rows_of(params, w_off, n_out, n_in),
                     params[b_off:b_off + n_out], scale, decay, lo, hi)


@_jit
def upper_phase(params, layout, acts, loss, y, rows, offs, ws, lr, decay, zp, ap, dp):
    """The one-thread part of a threaded step: layer 0's z and a, computed by the threads in
    the padded rows zp, ap[m, stride], go into the workspaces (softmax on layer 0 needs whole
    rows, so it is applied here), ``_step_upper`` runs, and layer 0's δ comes back in dp."""
    zs, acts_buf, deltas, _ = ws
    m, h0 = rows.shape[0], layout[0, 1]
    z0 = rows_of(zs, 0, m, h0)
    a0 = rows_of(acts_buf, 0, m, h0)
    _copy_cols(zp, z0)
    if acts[0] == SOFTMAX:
        activate(z0, a0, SOFTMAX)
    else:
        _copy_cols(ap, a0)
    _step_upper(params, layout, acts, loss, y, rows, offs, ws, lr, decay)
    _copy_cols(rows_of(deltas, 0, m, h0), dp)


@_jit
def _epoch_worker(tid, nthreads, sync, params, layout, acts, loss, x, y, order, batch_size, lr,
                  decay, ws):
    """Thread ``tid`` of ``nthreads`` running one epoch together (``train_epoch`` is the case
    nthreads = 1). Thread t owns an even-sized range of layer 0's rows (the wide layer: its
    update and forward are most of the work) and runs ``_layer0_part`` on it; thread 0 alone
    runs ``_step_upper``. Two barriers per mini-batch: after layer 0's forward (thread 0 needs
    all of a⁰) and after the deltas (every thread needs its columns of δ⁰)."""
    N = order.shape[0]
    T = params.dtype.type
    dec = T(decay)
    offs = _layer_offsets(layout, batch_size)
    l0 = ws[3]
    z0p, a0p, d0p = l0[0], l0[1], l0[2]  # layer 0 in padded rows: threads write columns here
    n0, h0, w0_off, b0_off = layout[0, 0], layout[0, 1], layout[0, 2], layout[0, 3]
    w0 = rows_of(params, w0_off, h0, n0)
    b0 = params[b0_off:b0_off + h0]
    per = (h0 + nthreads - 1) // nthreads
    if nthreads > 1:  # whole cache lines of the padded rows, else the micro-kernels' 2-row blocks
        per_line = _LINE // x.itemsize
        per = (per + per_line - 1) // per_line * per_line
    per = (per + 1) // 2 * 2
    lo = min(tid * per, h0)
    hi = min(lo + per, h0)
    no_rows = order[:0]
    gen = 0
    m = min(batch_size, N)  # step 0's layer-0 forward; later ones follow the previous update
    _layer0_part(x, no_rows, d0p[:m], order[:m], z0p[:m], a0p[:m], w0, b0, T(0), dec, acts[0],
                 lo, hi)
    for k in range(0, N, batch_size):
        m = min(batch_size, N - k)
        gen = _sync.barrier(sync, nthreads, gen)  # a⁰ of this step complete
        if _sync.aborted(sync):
            return
        if tid == 0:
            upper_phase(params, layout, acts, loss, y, order[k:k + m], offs, ws, lr, dec,
                        z0p[:m], a0p[:m], d0p[:m])
        gen = _sync.barrier(sync, nthreads, gen)  # δ⁰ complete, layers 1.. updated
        if _sync.aborted(sync):
            return
        kn = k + m
        mn = min(batch_size, N - kn) if kn < N else 0
        _layer0_part(x, order[k:k + m], d0p[:m], order[kn:kn + mn], z0p[:mn], a0p[:mn], w0, b0,
                     T(lr / m), dec, acts[0], lo, hi)


@_jit
def train_epoch(params, layout, acts, loss, x, y, order, batch_size, lr, decay):
    """One epoch of mini-batch SGD in place on ``params`` (see docs/design.md), on this thread:
    mini-batches are consecutive slices of ``order``; the last one may be shorter. x[N, n0],
    y[N, nL]. Samples are read from x through ``order`` (no gather); layer 0's update of step
    t and forward of step t+1 run as one pass (``_layer0_part``)."""
    ws = workspaces(layout, batch_size, x)
    _epoch_worker(0, 1, np.zeros(_sync.SYNC_SIZE, dtype=np.int64), params, layout, acts, loss,
                  x, y, order, batch_size, lr, decay, ws)


def epoch_threads(layout, batch_size):
    """How many threads ``train_epoch_threaded`` should use: Numba's thread count (the cores,
    or ``NUMBA_NUM_THREADS``), at most one per 16 rows of layer 0 (a thread's share must be
    whole cache lines of the padded rows and worth two barriers: [784, 30, 10] gets 2), and 1
    when a mini-batch's layer-0 work is too small to pay for the barriers."""
    n0, h0 = int(layout[0, 0]), int(layout[0, 1])
    if batch_size * n0 * h0 < _PAR_MIN_WORK:
        return 1
    return max(1, min(numba.get_num_threads(), -(-h0 // 16)))


def train_epoch_threaded(params, layout, acts, loss, x, y, order, batch_size, lr, decay,
                         nthreads):
    """``train_epoch`` on ``nthreads`` OS threads (this one and nthreads − 1 started here),
    synchronised by ``sync_cpu.barrier``; the same arithmetic in the same order, so the same
    result as ``train_epoch`` bit for bit (tests/test_dense.py). The kernels release the GIL.
    An exception in any thread stops the others and is raised here."""
    if nthreads <= 1:
        train_epoch(params, layout, acts, loss, x, y, order, batch_size, lr, decay)
        return
    ws = workspaces(layout, batch_size, x)
    sync = np.zeros(_sync.SYNC_SIZE, dtype=np.int64)
    _sync.run_threads(lambda tid: _epoch_worker(tid, nthreads, sync, params, layout, acts, loss,
                                                x, y, order, batch_size, lr, decay, ws),
                      nthreads, sync)
