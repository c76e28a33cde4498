"""The fused dense-network epoch for inputs that are mostly zeros (MNIST's), on the CPU: layer
0's forward and update touch only the weights of each sample's nonzero inputs. Also
``evaluate`` and ``predict`` on that form of x. The inputs split at ``k_split`` into two parts
holding half the nonzeros each, one per thread: at most two threads, and the same result, bit
for bit, for any thread count.

Shapes: as ``dense_cpu``'s epoch (flat ``params``, ``layout[L, 4]``, ``y: float[N, n_out]``,
``order: int64[N]``), with x as ``csr = sparse_inputs(x, ...)`` = ``(indptr int64[N + 1],
indices int32[nnz], values[nnz], mid int64[N], k_split)``, built once per data set; layer 0 is
held transposed during an epoch (``wt: float[n_in, h_pad]``, ``workspaces``).

NumPy twin: ``fastnet.reference.dense.train_epoch`` (the same epoch on dense x; sums in another
order). Tests: ``tests/test_sparse.py``. Why this split, the transposed weights and the LLVM
intrinsics: docs/kernels.md.
"""

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from . import config
from . import dense_cpu as _dense
from . import sync_cpu as _sync

_jit = njit(**config.CPU_JIT)
_lite = _dense._lite  # no reference counting (dense_cpu): the per-step kernels
_pjit = njit(**config.CPU_JIT, parallel={"comprehension": False, "reduction": False,
                                         "inplace_binop": False, "setitem": False,
                                         "numpy": False, "stencil": False, "fusion": False,
                                         "prange": True})

# Inputs with more nonzeros than this fraction train on the dense path: one-thread epochs of
# [784, 30, 10] at mini-batch 10 cross over a little above it.
SPARSE_MAX_DENSITY = 0.4
_VBYTES = 32  # one AVX vector
_PART0_SHARE = 0.5  # of the nonzeros (module doc)
_LINE = 64


@_pjit
def scan_rows(x, nthreads):
    """One read of x[N, n]: ``(indptr[N+1], col_counts[n], nonfinite)`` — the CSR row
    pointers (indptr[i + 1] − indptr[i] = row i's nonzeros, NaN counting as nonzero), each
    column's number of nonzeros, and how many entries are NaN or ±inf. Rows split over
    ``nthreads`` threads; every test is a compare, so the loop vectorises."""
    N, n = x.shape
    indptr = np.zeros(N + 1, dtype=np.int64)
    per_col = np.zeros((nthreads, n), dtype=np.int64)
    bad = np.zeros(nthreads, dtype=np.int64)
    big = np.finfo(x.dtype).max
    for t in prange(nthreads):
        lo, hi = _dense._split(N, nthreads, t, 1)
        pc = per_col[t]
        nb = 0
        for i in range(lo, hi):
            xi = x[i]
            c = 0
            for k in range(n):
                v = xi[k]
                nz = np.int64(v != 0)
                c += nz
                pc[k] += nz
                nb += np.int64(not (abs(v) <= big))
            indptr[i + 1] = c
        bad[t] = nb
    for i in range(N):
        indptr[i + 1] += indptr[i]
    col_counts = np.zeros(n, dtype=np.int64)
    for t in range(nthreads):
        col_counts += per_col[t]
    return indptr, col_counts, bad.sum()


@_pjit
def _fill(x, indptr, k_split, nthreads):
    """``(indices int32[nnz], values[nnz], mid[N])``: row i's nonzero columns, ascending, in
    ``indices[indptr[i]:indptr[i + 1]]``, their values (x's dtype) beside them, and mid[i] the
    first position of a column ≥ k_split. The fill branches on each element: faster for MNIST
    than a branch-free fill, which writes every element."""
    N, n = x.shape
    indices = np.empty(indptr[N], dtype=np.int32)
    values = np.empty(indptr[N], dtype=x.dtype)
    mid = np.empty(N, dtype=np.int64)
    for t in prange(nthreads):
        lo, hi = _dense._split(N, nthreads, t, 1)
        for i in range(lo, hi):
            p = indptr[i]
            xi = x[i]
            for k in range(k_split):
                if xi[k] != 0:
                    indices[p] = k
                    values[p] = xi[k]
                    p += 1
            mid[i] = p
            for k in range(k_split, n):
                if xi[k] != 0:
                    indices[p] = k
                    values[p] = xi[k]
                    p += 1
    return indices, values, mid


@_jit
def sparse_inputs(x, indptr, col_counts, nthreads):
    """x[N, n] for the sparse epoch, from ``scan_rows``' indptr and col_counts:
    ``(indptr, indices, values, mid, k_split)``, where each row's nonzeros split into two
    parts: inputs k < k_split (``indices[indptr[i]:mid[i]]``) and the rest. k_split is the
    first column at which the nonzeros before it and in it exceed ``_PART0_SHARE`` of all
    (thread 0's part)."""
    n = x.shape[1]
    k_split, acc = 0, 0
    while k_split < n and acc + col_counts[k_split] <= _PART0_SHARE * indptr[-1]:
        acc += col_counts[k_split]
        k_split += 1
    indices, values, mid = _fill(x, indptr, k_split, nthreads)
    return indptr, indices, values, mid, k_split


def _fma(builder, a, b, c):
    """a·b + c on LLVM vectors (llvm.fma; llvmlite's ``builder.fma`` takes scalars only)."""
    t = a.type
    name = f"llvm.fma.v{t.count}f{32 if t.element == ir.FloatType() else 64}"
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(t, [t, t, t]), name)
    return builder.call(fn, [a, b, c])


def _typing_ok(vals, indices, wt, vec):
    return (isinstance(vals, types.Array) and vals.ndim == 1 and vals.layout == "C"
            and vals.dtype in (types.float32, types.float64)
            and isinstance(indices, types.Array) and indices.dtype == types.int32
            and indices.layout == "C" and isinstance(wt, types.Array) and wt.ndim == 2
            and wt.layout == "C" and wt.dtype in (types.float32, types.float64)
            and isinstance(vec, types.Array) and vec.ndim == 1 and vec.dtype == wt.dtype
            and vec.layout == "C")


class _Rows:
    """What both intrinsics' code needs: the arrays' data, the vector type, and for nonzero
    number p the broadcast value and a pointer to the block of wt's row."""

    def __init__(self, context, builder, sig, args):
        self.builder = builder
        vals_t, idx_t, wt_t, vec_t = sig.args[0], sig.args[1], sig.args[4], sig.args[6]
        self.context, self.vals_dtype, self.dtype = context, vals_t.dtype, wt_t.dtype
        self.vals = context.make_array(vals_t)(context, builder, args[0])
        self.idx = context.make_array(idx_t)(context, builder, args[1])
        self.wt = context.make_array(wt_t)(context, builder, args[4])
        et = context.get_data_type(wt_t.dtype)
        self.size = context.get_abi_sizeof(et)
        self.vt = ir.VectorType(et, _VBYTES // self.size)
        self.ncols = cgutils.unpack_tuple(builder, self.wt.shape, 2)[1]
        self.c0 = args[5]
        vec = context.make_array(vec_t)(context, builder, args[6])
        self.vec = builder.bitcast(builder.gep(vec.data, [self.c0]), self.vt.as_pointer())

    def const(self, q):
        return ir.Constant(self.ncols.type, q)

    def nonzero(self, p):
        b = self.builder
        k = b.sext(b.load(b.gep(self.idx.data, [p])), self.ncols.type)
        v = self.context.cast(b, b.load(b.gep(self.vals.data, [p])), self.vals_dtype, self.dtype)
        v = b.insert_element(ir.Constant(self.vt, ir.Undefined), v, ir.Constant(ir.IntType(32), 0))
        v = b.shuffle_vector(v, ir.Constant(self.vt, ir.Undefined),
                             ir.Constant(ir.VectorType(ir.IntType(32), self.vt.count), None))
        row = b.add(b.mul(k, self.ncols), self.c0)
        return v, b.bitcast(b.gep(self.wt.data, [row]), self.vt.as_pointer())


def _make_gather(nvec):
    @intrinsic
    def gather(typingctx, vals, indices, s, e, wt, c0, out):
        """out[c0:c0+B] += Σ_{p ∈ [s, e)} vals[p]·wt[indices[p], c0:c0+B], B = nvec vectors."""
        if not _typing_ok(vals, indices, wt, out):
            return None

        def codegen(context, builder, sig, args):
            g = _Rows(context, builder, sig, args)
            slots = [cgutils.alloca_once_value(
                builder, builder.load(builder.gep(g.vec, [g.const(q)]), align=g.size))
                for q in range(nvec)]
            with cgutils.for_range_slice(builder, args[2], args[3], g.const(1)) as (p, _):
                v, row = g.nonzero(p)
                for q in range(nvec):
                    w = builder.load(builder.gep(row, [g.const(q)]), align=g.size)
                    builder.store(_fma(builder, v, w, builder.load(slots[q])), slots[q])
            for q in range(nvec):
                builder.store(builder.load(slots[q]), builder.gep(g.vec, [g.const(q)]),
                              align=g.size)
            return context.get_dummy_value()

        return types.void(vals, indices, s, e, wt, c0, out), codegen
    return gather


def _make_scatter(nvec):
    unroll = min(4, 8 // nvec)  # rows loaded before the first store: ≤ 8 vectors in flight

    @intrinsic
    def scatter(typingctx, vals, indices, s, e, wt, c0, coef):
        """wt[indices[p], c0:c0+B] += vals[p]·coef[c0:c0+B] for p in [s, e), B = nvec vectors
        (the indices distinct)."""
        if not _typing_ok(vals, indices, wt, coef):
            return None

        def codegen(context, builder, sig, args):
            g = _Rows(context, builder, sig, args)
            cs = [builder.load(builder.gep(g.vec, [g.const(q)]), align=g.size)
                  for q in range(nvec)]

            def rows(p, count):
                # all loads first: the stores of one row cannot delay the next row's loads
                got = [g.nonzero(builder.add(p, g.const(u))) for u in range(count)]
                ptrs = [[builder.gep(row, [g.const(q)]) for q in range(nvec)] for _, row in got]
                old = [[builder.load(ptr, align=g.size) for ptr in pu] for pu in ptrs]
                for (v, _), pu, ou in zip(got, ptrs, old):
                    for ptr, o, c in zip(pu, ou, cs):
                        builder.store(_fma(builder, v, c, o), ptr, align=g.size)

            s, e = args[2], args[3]
            n = builder.sub(e, s)
            with cgutils.for_range(builder, builder.sdiv(n, g.const(unroll))) as loop:
                rows(builder.add(s, builder.mul(loop.index, g.const(unroll))), unroll)
            rest = builder.sub(e, builder.srem(n, g.const(unroll)))
            with cgutils.for_range_slice(builder, rest, e, g.const(1)) as (p, _):
                rows(p, 1)
            return context.get_dummy_value()

        return types.void(vals, indices, s, e, wt, c0, coef), codegen
    return scatter


@intrinsic
def _prefetch(typingctx, arr, i):
    """A hint to bring the cache line of arr[i] towards L1 (llvm.prefetch: read, high
    locality); no effect on results."""
    if not (isinstance(arr, types.Array) and arr.ndim == 1 and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        a = context.make_array(sig.args[0])(context, builder, args[0])
        ptr = builder.bitcast(builder.gep(a.data, [args[1]]), ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32]),
            "llvm.prefetch.p0i8")
        builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.void(arr, i), codegen


@_lite
def _prefetch_rows(csr, y, rows):
    """Prefetch the CSR data (indices and values) and the targets y of the samples ``rows``:
    in random order each sample's nonzeros are a fresh stretch of memory, a DRAM round trip if
    not asked for ahead."""
    indptr, indices, values = csr[0], csr[1], csr[2]
    for i in range(rows.shape[0]):
        r = rows[i]
        _prefetch(y[r], 0)
        s, e = indptr[r], indptr[r + 1]
        for p in range(s, e, _LINE // 4):
            _prefetch(indices, p)
        for p in range(s, e, _LINE // values.itemsize):
            _prefetch(values, p)


_gather4, _gather2, _gather1 = _make_gather(4), _make_gather(2), _make_gather(1)
_scatter4, _scatter2, _scatter1 = _make_scatter(4), _make_scatter(2), _make_scatter(1)


@_lite
def gather_cols(vals, indices, s, e, wt, lo, hi, out):
    """out[lo:hi] += Σ_{p ∈ [s, e)} vals[p]·wt[indices[p], lo:hi]; hi − lo whole vectors."""
    v = _VBYTES // wt.itemsize
    c0 = lo
    while c0 + 4 * v <= hi:
        _gather4(vals, indices, s, e, wt, c0, out)
        c0 += 4 * v
    if c0 + 2 * v <= hi:
        _gather2(vals, indices, s, e, wt, c0, out)
        c0 += 2 * v
    if c0 + v <= hi:
        _gather1(vals, indices, s, e, wt, c0, out)


@_lite
def scatter_cols(vals, indices, s, e, wt, lo, hi, coef):
    """wt[indices[p], lo:hi] += vals[p]·coef[lo:hi] for p in [s, e); hi − lo whole vectors."""
    v = _VBYTES // wt.itemsize
    c0 = lo
    while c0 + 4 * v <= hi:
        _scatter4(vals, indices, s, e, wt, c0, coef)
        c0 += 4 * v
    if c0 + 2 * v <= hi:
        _scatter2(vals, indices, s, e, wt, c0, coef)
        c0 += 2 * v
    if c0 + v <= hi:
        _scatter1(vals, indices, s, e, wt, c0, coef)


# ---------------------------------------------------------------------------- the epoch
@_jit
def _aligned_zeros(shape, like):
    """zeros of ``shape`` (a tuple) and like's dtype, starting on a 64-byte boundary."""
    n = 1
    for s in shape:
        n *= s
    per_line = _LINE // like.itemsize
    raw = np.zeros(n + per_line, dtype=like.dtype)
    skip = ((-raw.ctypes.data) % _LINE) // like.itemsize
    return raw[skip:skip + n].reshape(shape)


@_jit
def padded_width(h, itemsize):
    """h rounded up to whole 64-byte cache lines of ``itemsize``-byte elements."""
    per = _LINE // itemsize
    return (h + per - 1) // per * per


@_jit
def workspaces(params, layout, batch_size):
    """The epoch's arrays: ``(wt, bt, zq, c)`` — layer 0's weights transposed and its biases,
    padded to whole cache lines; zq[2, batch, h_pad], the two parts' sums of layer 0's z;
    c[2, batch, h_pad], each part's copy of the update's coefficients −(η/m)·δ⁰ — and the
    dense epoch's ``dense_cpu.workspaces``.
    wt and bt start as layer 0's weights and biases."""
    n0, h0, w_off, b_off = layout[0, 0], layout[0, 1], layout[0, 2], layout[0, 3]
    hp = padded_width(h0, params.itemsize)
    w0 = _dense.rows_of(params, w_off, h0, n0)
    wt = _aligned_zeros((n0, hp), params)
    for j in range(h0):
        for k in range(n0):
            wt[k, j] = w0[j, k]
    bt = np.zeros(hp, dtype=params.dtype)
    bt[:h0] = params[b_off:b_off + h0]
    zq = _aligned_zeros((2, batch_size, hp), params)
    c = _aligned_zeros((2, batch_size, hp), params)
    return (wt, bt, zq, c), _dense.workspaces(layout, batch_size, bt)


@_jit
def write_back(params, layout, sp):
    """Layer 0's weights and biases from the epoch's wt, bt into params."""
    wt, bt = sp[0], sp[1]
    n0, h0, w_off, b_off = layout[0, 0], layout[0, 1], layout[0, 2], layout[0, 3]
    w0 = _dense.rows_of(params, w_off, h0, n0)
    for j in range(h0):
        for k in range(n0):
            w0[j, k] = wt[k, j]
    params[b_off:b_off + h0] = bt[:h0]


@_jit
def fused_upper(layout, acts):
    """True when one layer sits above layer 0 (the book's [n, h, c] networks) and layer 0's
    activation is element-wise: the epoch then runs that layer on padded copies of its weights
    (``upper_workspaces``, ``_upper_one``) instead of the generic ``dense_cpu._step_upper``."""
    return layout.shape[0] == 2 and acts[0] != config.SOFTMAX


@_jit
def upper_workspaces(params, layout, acts, batch_size):
    """For ``fused_upper`` networks (else all empty): ``(w1p, w1t, b1p, z0p, a0p, z1p, a1p,
    d1p, c1p, dtp, ar, c1T, a0T)``. Layer 1's weights W[n1, h0] twice, padded to whole cache lines:
    w1p[n1, hp] (rows of W: δ⁰ is a gather over them) and w1t[h0, n1p] (columns of W: z¹ is a
    gather over them); both take the same update, so they stay equal bit for bit. b1p[n1p]: its
    biases. Per sample of the mini-batch, rows padded the same way: layer 0's z and a (z0p,
    a0p[batch, hp]), layer 1's z, a and δ (z1p, a1p, d1p[batch, n1p]), −(η/m)·δ¹ (c1p) and
    the unscaled δ⁰ (dtp[batch, hp]). ar = 0, 1, 2, … (int32): the gather and scatter
    intrinsics' indices for dense rows. c1T[n1, batch_pad], a0T[h0, batch_pad]: c1p and a0p
    transposed, for the update. Every pad stays zero all epoch (while the values are
    finite)."""
    fused = fused_upper(layout, acts)
    h0, n1 = layout[0, 1], layout[layout.shape[0] - 1, 1]
    hp = padded_width(h0, params.itemsize) if fused else 0
    n1p = padded_width(n1, params.itemsize) if fused else 0
    rows = n1 if fused else 0
    w1p = _aligned_zeros((rows, hp), params)
    w1t = _aligned_zeros((h0 if fused else 0, n1p), params)
    b1p = _aligned_zeros((n1p,), params)
    if fused:
        w_off, b_off = layout[1, 2], layout[1, 3]
        w1 = _dense.rows_of(params, w_off, n1, h0)
        for j in range(n1):
            for k in range(h0):
                w1p[j, k] = w1[j, k]
                w1t[k, j] = w1[j, k]
            b1p[j] = params[b_off + j]
    b = batch_size if fused else 0
    ar = np.arange(max(h0, n1, b) if fused else 0).astype(np.int32)
    bp = padded_width(b, params.itemsize)
    return (w1p, w1t, b1p, _aligned_zeros((b, hp), params), _aligned_zeros((b, hp), params),
            _aligned_zeros((b, n1p), params), _aligned_zeros((b, n1p), params),
            _aligned_zeros((b, n1p), params), _aligned_zeros((b, n1p), params),
            _aligned_zeros((b, hp), params), ar, _aligned_zeros((rows, bp), params),
            _aligned_zeros((h0 if fused else 0, bp), params))


@_lite
def _upper_one(acts, loss, y, rows, first, zq, up, scale):
    """``_upper`` for ``fused_upper`` networks on the padded copies ``up``: for samples
    ``rows`` = rows first.. of the mini-batch, layer 0's z = the parts' sums and its a, layer
    1's z = b + a⁰·Wᵀ (a gather over w1t's rows: the row vectors scaled by a⁰ and summed, no
    dot products to reduce), a and δ¹, c1p = −scale·δ¹, and δ⁰ = δ¹·W ⊙ σ'(z⁰) (a gather
    over w1p's rows) into dtp (padded rows, so the two threads' halves never share a cache
    line). No shape-dependent set-up per call: the rows are whole vectors."""
    w1p, w1t, b1p, z0p, a0p, z1p, a1p, d1p, c1p, dtp, ar = up[:11]
    n1, hp = w1p.shape
    h0, n1p = w1t.shape
    for q in range(rows.shape[0]):
        i = first + q
        z0, a0, z1, c1, dt = z0p[i], a0p[i], z1p[i], c1p[i], dtp[i]
        for j in range(hp):
            z0[j] = zq[0, i, j] + zq[1, i, j]
        z0v, a0v = _dense.rows_of(z0p, i * hp, 1, hp), _dense.rows_of(a0p, i * hp, 1, hp)
        _dense.activate(z0v, a0v, acts[0])  # whole vectors; the pads are zeroed next
        for j in range(h0, hp):
            a0[j] = 0
        for j in range(n1p):
            z1[j] = b1p[j]
        gather_cols(a0, ar, 0, h0, w1t, 0, n1p, z1)
        z1v, a1v = _dense.rows_of(z1p, i * n1p, 1, n1), _dense.rows_of(a1p, i * n1p, 1, n1)
        d1v = _dense.rows_of(d1p, i * n1p, 1, n1)
        _dense.activate(z1v, a1v, acts[1])
        _dense._output_delta_rows(z1v, a1v, y, rows[q:q + 1], loss, acts[1], d1v)
        for j in range(n1):
            c1[j] = -scale * d1p[i, j]
        for j in range(hp):
            dt[j] = 0
        gather_cols(d1p[i], ar, 0, n1, w1p, 0, hp, dt)
        _dense.activation_prime(z0v, a0v, acts[0], _dense.rows_of(dtp, i * hp, 1, hp))


@_lite
def _upper_update_one(up, m, scale, decay, part, nparts):
    """Layer 1's SGD step for ``fused_upper`` networks, on both copies: range ``part`` of
    ``nparts`` of w1p's rows and of w1t's rows (whole cache lines each: the parts can run on
    different threads); part 0 also updates the biases. Row by row, the mini-batch's terms
    summed into the row in registers (a gather over the samples' rows: the next sample's
    load does not wait for this one's store). The same products in the same order reach
    W[j, k] in both copies (fma(c, a, w) = fma(a, c, w)), so they stay equal."""
    w1p, w1t, b1p, z0p, a0p, z1p, a1p, d1p, c1p, dtp, ar, c1T, a0T = up
    n1, h0 = w1p.shape[0], w1t.shape[0]
    j_lo, j_hi = _dense._split(n1, nparts, part, 1)
    k_lo, k_hi = _dense._split(h0, nparts, part, 1)
    if part == 0:
        _bias_step(b1p, d1p, m, n1, scale)
    _rows_update_from(w1p, j_lo, j_hi, c1p, a0p, c1T, ar, m, decay)
    _rows_update_from(w1t, k_lo, k_hi, a0p, c1p, a0T, ar, m, decay)


@_lite
def _bias_step(b, d, m, n, scale):
    """b[j] −= scale·Σ_{i<m} d[i, j] for j < n (the SGD step of a layer's biases)."""
    for j in range(n):
        s = b.dtype.type(0)
        for i in range(m):
            s += d[i, j]
        b[j] -= scale * s


@_lite
def _rows_update_from(w, lo, hi, src, coef, scratch, ar, m, decay):
    """w[r] ← decay·w[r] + Σ_{i<m} src[i, r]·coef[i] for rows r in [lo, hi) (whole vectors of
    w's width): column r of src goes to scratch[r], then one gather per row."""
    width = w.shape[1]
    for r in range(lo, hi):
        wr, vr = w[r], scratch[r]
        for i in range(m):
            vr[i] = src[i, r]
        if decay != 1:
            for k in range(width):
                wr[k] *= decay
        gather_cols(vr, ar, 0, m, coef, 0, width, wr)


@_jit
def upper_write_back(params, layout, up):
    """Layer 1's weights and biases from ``upper_workspaces``' copies into params (nothing for
    networks that are not ``fused_upper``)."""
    w1p, b1p = up[0], up[2]
    if w1p.shape[0] == 0:
        return
    n1, h0 = layout[1, 1], layout[1, 0]
    w1 = _dense.rows_of(params, layout[1, 2], n1, h0)
    for j in range(n1):
        for k in range(h0):
            w1[j, k] = w1p[j, k]
        params[layout[1, 3] + j] = b1p[j]


@_lite
def _layer0_part(csr, rows_u, rows_f, sp, d0, scale, decay, part):
    """Layer 0 over one part of the inputs (the weight rows k < k_split, or the rest): the SGD
    update with mini-batch t (samples rows_u, δ⁰ in d0[m, h] with h0 ≤ h ≤ h_pad, any columns
    past h0 zero; part 0 also updates the biases), then mini-batch t+1's sum over the part (samples rows_f, into zq[part]; part 0's
    starts from the biases). The parts touch disjoint rows of wt, so they can run on
    different threads."""
    indptr, indices, values, mid, k_split = csr
    wt, bt, zq, cq = sp
    hp = wt.shape[1]
    if rows_u.shape[0] > 0:
        m, h = d0.shape
        c = cq[part]
        for i in range(m):
            for j in range(h):
                c[i, j] = -scale * d0[i, j]  # columns from h0 on stay zero
        if part == 0:
            _bias_step(bt, d0, m, h, scale)
        if decay != 1:
            k_lo, k_hi = (0, k_split) if part == 0 else (k_split, wt.shape[0])
            for k in range(k_lo, k_hi):
                row = wt[k]
                for j in range(hp):
                    row[j] *= decay
        for i in range(m):
            r = rows_u[i]
            s, e = (indptr[r], mid[r]) if part == 0 else (mid[r], indptr[r + 1])
            scatter_cols(values, indices, s, e, wt, 0, hp, c[i])
    z = zq[part]
    for i in range(rows_f.shape[0]):
        zi = z[i]
        for j in range(hp):
            zi[j] = bt[j] if part == 0 else 0
        r = rows_f[i]
        s, e = (indptr[r], mid[r]) if part == 0 else (mid[r], indptr[r + 1])
        gather_cols(values, indices, s, e, wt, 0, hp, zi)


@_jit
def _upper(params, layout, acts, loss, y, rows, first, offs, zq, ws, lr, decay):
    """Samples ``rows`` = rows first.. of the mini-batch above layer 0: layer 0's z = the two
    parts' sums, its activation, and the forward and deltas of the layers above
    (``dense_cpu._step_upper`` without the updates, which ``epoch_worker`` splits by rows
    after the barrier); their δ⁰ is left in the workspaces. Row by row, so the two halves of a
    mini-batch run on the two threads."""
    m = rows.shape[0]
    if m == 0:
        return
    zs, acts_buf = ws[0], ws[1]
    h0 = layout[0, 1]
    z0 = _dense.rows_of(zs, first * h0, m, h0)
    for i in range(m):
        for j in range(h0):
            z0[i, j] = zq[0, first + i, j] + zq[1, first + i, j]
    a0 = _dense.rows_of(acts_buf, first * h0, m, h0)
    if acts[0] == config.SOFTMAX:
        _dense.activate(z0, a0, config.SOFTMAX)
    else:
        _dense.activate_flat(z0, a0, acts[0])
    _dense._step_upper(params, layout, acts, loss, y, rows, offs, ws, lr, decay, False, first)


@_lite
def epoch_worker(tid, nthreads, sync, params, layout, acts, loss, csr, y, order, batch_size, lr,
                 decay, sp, ws, up, offs):
    """Thread ``tid`` of ``nthreads`` running one epoch (docs/kernels.md): thread t runs
    the forward and deltas above layer 0 for half t of each mini-batch's samples, then half t
    of the upper layers' rows and part t of layer 0 (one thread runs both halves and both
    parts, in the same order); ``sp, ws = workspaces(...)``, ``up = upper_workspaces(...)``,
    offs = ``dense_cpu._layer_offsets(layout, batch_size)``, then ``write_back`` and
    ``upper_write_back`` after every thread has returned."""
    N = order.shape[0]
    dec = params.dtype.type(decay)
    p_lo = 0 if tid == 0 else 1
    p_hi = 2 if nthreads == 1 else (1 if tid == 0 else (2 if tid == 1 else 1))
    no_rows = order[:0]
    gen = 0
    m = min(batch_size, N)
    h0 = layout[0, 1]
    T = params.dtype.type
    fused = up[0].shape[0] > 0
    for part in range(p_lo, p_hi):
        _layer0_part(csr, no_rows, order[:m], sp, _dense.rows_of(ws[2], 0, 0, h0), T(0), dec, part)
    for k in range(0, N, batch_size):
        m = min(batch_size, N - k)
        gen = _sync.barrier(sync, nthreads, gen)  # both parts of z⁰ complete
        if _sync.aborted(sync):
            return
        h = (m + 1) // 2  # the halves of the mini-batch above layer 0: thread 0's, thread 1's
        for half in range(p_lo, p_hi):
            lo, hi = (0, h) if half == 0 else (h, m)
            if fused:
                _upper_one(acts, loss, y, order[k + lo:k + hi], lo, sp[2], up, T(lr / m))
            else:
                _upper(params, layout, acts, loss, y, order[k + lo:k + hi], lo, offs, sp[2],
                       ws, lr, dec)
        gen = _sync.barrier(sync, nthreads, gen)  # δ⁰ ready
        if _sync.aborted(sync):
            return
        kn = k + m
        mn = min(batch_size, N - kn) if kn < N else 0
        if tid == nthreads - 1:
            _prefetch_rows(csr, y, order[kn + mn:kn + mn + batch_size])  # the step after next
        # δ⁰: padded rows (zero pads: zero coefficients) for the fused layer, else h0 wide
        d0 = _dense.rows_of(up[9], 0, m, up[9].shape[1]) if fused else _dense.rows_of(ws[2], 0,
                                                                                        m, h0)
        for part in range(p_lo, p_hi):
            # the layers above, half their rows each (no part of layer 0 reads them)
            if fused:
                _upper_update_one(up, m, T(lr / m), dec, part, 2)
            else:
                _dense.upper_updates(params, layout, offs, ws, m, lr, dec, part, 2)
            _layer0_part(csr, order[k:k + m], order[kn:kn + mn], sp, d0, T(lr / m), dec, part)


@_jit
def train_epoch(params, layout, acts, loss, csr, y, order, batch_size, lr, decay):
    """One epoch of mini-batch SGD in place on ``params``, on this thread, x given as ``csr =
    sparse_inputs(x)``: ``dense_cpu.train_epoch``'s epoch (mini-batches are consecutive
    slices of ``order``; the last one may be shorter)."""
    batch_size = max(1, min(batch_size, order.shape[0]))  # one batch of them all is the same
    sp, ws = workspaces(params, layout, batch_size)
    up = upper_workspaces(params, layout, acts, batch_size)
    epoch_worker(0, 1, np.zeros(_sync.SYNC_SIZE, dtype=np.int64), params, layout, acts, loss,
                 csr, y, order, batch_size, lr, decay, sp, ws, up,
                 _dense._layer_offsets(layout, batch_size))
    write_back(params, layout, sp)
    upper_write_back(params, layout, up)


def epoch_threads(layout, batch_size):
    """How many threads ``train_epoch_threaded`` should use: 2 (one per part) where
    ``dense_cpu.epoch_threads`` would use threads, else 1."""
    return min(2, _dense.epoch_threads(layout, batch_size))


def train_epoch_threaded(params, layout, acts, loss, csr, y, order, batch_size, lr, decay,
                         nthreads):
    """``train_epoch`` on ``min(nthreads, 2)`` OS threads (``sync_cpu.run_threads``); the same
    result, bit for bit, for any thread count."""
    nthreads = min(nthreads, 2)
    if nthreads <= 1:
        train_epoch(params, layout, acts, loss, csr, y, order, batch_size, lr, decay)
        return
    batch_size = max(1, min(batch_size, len(order)))  # scratch for no more rows than exist
    sp, ws = workspaces(params, layout, batch_size)
    up = upper_workspaces(params, layout, acts, batch_size)
    offs = _dense._layer_offsets(layout, batch_size)
    sync = np.zeros(_sync.SYNC_SIZE, dtype=np.int64)
    _sync.run_threads(lambda tid: epoch_worker(tid, nthreads, sync, params, layout, acts, loss,
                                               csr, y, order, batch_size, lr, decay, sp, ws,
                                               up, offs),
                      nthreads, sync)
    write_back(params, layout, sp)
    upper_write_back(params, layout, up)


# ---------------------------------------------------------------------------- inference
@_jit
def _forward_rows(params, layout, acts, loss, csr, wt, bt, y, out, lo, hi, batch_size):
    """``dense_cpu._forward_rows`` with layer 0 gathered over the nonzeros (``wt, bt``: layer
    0 transposed and padded, as in ``workspaces``): the outputs for rows [lo, hi) go to
    out[lo:hi] unless out is empty; with y not empty, returns their summed cost and number
    correct."""
    indptr, indices, values = csr[0], csr[1], csr[2]
    L, h0, hp = layout.shape[0], layout[0, 1], wt.shape[1]
    nL = layout[L - 1, 1]
    size = _dense._layer_offsets(layout, batch_size)[-1]
    zs = np.empty(size, dtype=params.dtype)
    acts_buf = np.empty(size, dtype=params.dtype)
    zp = _aligned_zeros((batch_size, hp), params)
    total = 0.0
    correct = 0
    for k in range(lo, hi, batch_size):
        m = min(batch_size, hi - k)
        for i in range(m):
            zi = zp[i]
            zi[:] = bt
            gather_cols(values, indices, indptr[k + i], indptr[k + i + 1], wt, 0, hp, zi)
        z0 = _dense.rows_of(zs, 0, m, h0)
        a0 = _dense.rows_of(acts_buf, 0, m, h0)
        _dense._copy_cols(zp[:m], z0)
        _dense.activate(z0, a0, acts[0])
        off = _dense.forward_from(params, layout, acts, a0, zs, acts_buf, 1)
        a = _dense.rows_of(acts_buf, off, m, nL)
        if out.shape[0] > 0:
            _dense._copy_cols(a, out[k:k + m])
        if y.shape[0] > 0:
            t, n_ok = _dense.loss_and_correct(_dense.rows_of(zs, off, m, nL), a,
                                              y[k:k + m], loss)
            total += t
            correct += n_ok
    return total, correct


def _on_threads(params, layout, acts, loss, csr, y, out, batch_size, nthreads):
    """``_forward_rows`` over all rows, in ``nthreads`` ranges of whole ``batch_size`` chunks on
    OS threads (one compiled function for evaluate and predict: a ``prange`` kernel each
    took long to compile); returns the ranges' (cost, correct) added in range order. The
    chunks do not depend on the thread count, so neither do the outputs (the summed cost's
    last bits do: it is added range by range)."""
    sp = workspaces(params, layout, 1)[0]
    N = csr[0].shape[0] - 1
    chunks = -(-N // batch_size)
    nthreads = max(1, min(nthreads, chunks))
    per = -(-chunks // nthreads) * batch_size  # whole chunks: the same sums for any count
    results = [(0.0, 0)] * nthreads

    def work(t):
        lo, hi = min(t * per, N), min((t + 1) * per, N)
        results[t] = _forward_rows(params, layout, acts, loss, csr, sp[0], sp[1], y, out, lo,
                                   hi, batch_size)

    _sync.run_threads(work, nthreads, np.zeros(_sync.SYNC_SIZE, dtype=np.int64))
    total, correct = 0.0, 0
    for t, c in results:
        total += t
        correct += c
    return total, correct


def evaluate(params, layout, acts, loss, csr, y, batch_size, nthreads):
    """``dense_cpu.evaluate`` on x given as ``sparse_inputs(x)``: (Σ cost, number correct)."""
    return _on_threads(params, layout, acts, loss, csr, y, y[:0], batch_size, nthreads)


def predict(params, layout, acts, csr, out, batch_size, nthreads):
    """``dense_cpu.predict`` on x given as ``sparse_inputs(x)``: out[N, nL] (overwritten)."""
    _on_threads(params, layout, acts, 0, csr, out[:0], out, batch_size, nthreads)
