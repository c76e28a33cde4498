"""LLVM vector micro-kernels over the nonzeros of CSR rows, for the sparse-input epoch:
``gather_cols`` (out[lo:hi] += Σ_p vals[p]·wt[indices[p], lo:hi]: a row of z from a sample's
nonzeros) and ``scatter_cols`` (wt[indices[p], lo:hi] += vals[p]·coef[lo:hi]: the update of
the weight rows a sample touches), written as LLVM intrinsics on 32-byte vectors with the
sums in registers; ``prefetch_rows`` asks for the CSR data and targets of samples ahead.

Shapes: ``vals: float[nnz]``, ``indices: int32[nnz]`` (a CSR row's range [s, e)), ``wt:
float[n_rows, width]`` C-contiguous, hi − lo whole vectors (rows padded to cache lines).

NumPy twin: ``out[lo:hi] += vals[s:e] @ wt[indices[s:e], lo:hi]`` and its transpose. Tests:
``tests/test_sparse.py``. Why intrinsics and the scatter's unroll: docs/kernels.md.
"""

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from . import config
from .split_cpu import LINE

_lite = njit(**config.CPU_LITE)


_VBYTES = 32  # one AVX vector


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


# --------------------------------------------------------------------------------- prefetch
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
def prefetch_rows(csr, y, rows):
    """Prefetch the CSR data (indices and values) and the targets y of the samples ``rows``:
    in random order each sample's nonzeros are a fresh stretch of memory, a DRAM round trip if
    not asked for ahead."""
    indptr, indices, values = csr[0], csr[1], csr[2]
    for i in range(rows.shape[0]):
        r = rows[i]
        _prefetch(y[r], 0)
        s, e = indptr[r], indptr[r + 1]
        for p in range(s, e, LINE // 4):
            _prefetch(indices, p)
        for p in range(s, e, LINE // values.itemsize):
            _prefetch(values, p)
