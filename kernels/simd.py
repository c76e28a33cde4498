"""Eight-lane float vectors for CPU kernels whose sums LLVM cannot keep in registers on its own:
``Lanes8(dtype)``, an LLVM ``<8 x float>`` or ``<8 x double>`` as a Numba value, and intrinsics
on it: ``splat``, ``ramp``, ``fma`` (one rounding), ``keep`` (a select), ``evens``/``odds``,
``pick_above`` (NaN ranks above every number); the unchecked ``load8``/``store8``/
``store8_int32``; and the masked, range-checked ``load``/``store``/``add_to``. Also the
scalar LLVM building blocks of the CPU kernels: ``rows_of`` (a 2-D view without Numba's
reshape), ``is_float32`` (a compile-time dtype test), ``pow2`` and ``exp_floor``.

Shapes: ``a`` is a 1-D C-contiguous float array, ``i`` an element index, ``n`` (0 <= n <= 8)
the lanes that touch memory. ``load``, ``store``, ``add_to`` and ``keep`` raise IndexError
unless 0 <= i and i + n <= a.size; ``load8``/``store8`` trust the caller's range (hot loops
check once and use them). Compiled only inside the kernels that call them (nothing at import).

NumPy twin: plain NumPy slicing and arithmetic. Tests: ``tests/test_simd.py``. Users and the
reasons for the checked/unchecked split: docs/kernels.md.
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic, models, register_model

LANES = 8


class Lanes8(types.Type):
    """Eight lanes of ``dtype`` (float32 or float64) as one LLVM vector value."""

    def __init__(self, dtype):
        self.dtype = dtype
        super().__init__(name=f"Lanes8({dtype})")


@register_model(Lanes8)
class _Lanes8Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        elem = dmm.lookup(fe_type.dtype).get_value_type()
        super().__init__(dmm, fe_type, ir.VectorType(elem, LANES))


_FLOATS = (types.float32, types.float64)
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)


def _vec(context, dtype):
    return ir.VectorType(context.get_value_type(dtype), LANES)


def _suffix(dtype):
    return "v8f32" if dtype == types.float32 else "v8f64"


def _splat(builder, value, vty):
    v = builder.insert_element(ir.Constant(vty, None), value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES))


def _flat_array(a):
    return isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C" and a.dtype in _FLOATS


def _pointer_and_mask(context, builder, sig, args, who):
    """(a, i, vector pointer to a[i], lane mask k < n), after the bounds check. The mask's
    lanes are as wide as the elements (i32 for float32), so comparing makes it directly."""
    aty, ity, nty = sig.args[0], sig.args[1], sig.args[2]
    arr = context.make_array(aty)(context, builder, args[0])
    i = context.cast(builder, args[1], ity, types.intp)
    n = context.cast(builder, args[2], nty, types.intp)
    zero = ir.Constant(_I64, 0)
    bad = builder.or_(builder.or_(builder.icmp_signed("<", i, zero),
                                  builder.icmp_signed("<", n, zero)),
                      builder.or_(builder.icmp_signed(">", n, ir.Constant(_I64, LANES)),
                                  builder.icmp_signed(">", builder.add(i, n), arr.nitems)))
    with cgutils.if_unlikely(builder, bad):
        context.call_conv.return_user_exc(builder, IndexError,
                                          (f"simd.{who}: lanes outside the array or n > 8",))
    vty = _vec(context, aty.dtype)
    ity = ir.IntType(8 * _align(aty.dtype))
    ptr = builder.bitcast(builder.gep(arr.data, [i]), vty.as_pointer())
    lanes = ir.Constant(ir.VectorType(ity, LANES), list(range(LANES)))
    mask = builder.icmp_signed("<", lanes, _splat(builder, builder.trunc(n, ity)
                                                   if ity.width < 64 else n,
                                                   ir.VectorType(ity, LANES)))
    return arr, i, ptr, mask, vty


def _masked_load(builder, ptr, mask, vty, align, suffix):
    fnty = ir.FunctionType(vty, [vty.as_pointer(), _I32, mask.type, vty])
    fn = cgutils.get_or_insert_function(builder.module, fnty, f"llvm.masked.load.{suffix}.p0")
    return builder.call(fn, [ptr, ir.Constant(_I32, align), mask, ir.Constant(vty, None)])


def _masked_store(builder, value, ptr, mask, align, suffix):
    fnty = ir.FunctionType(ir.VoidType(), [value.type, value.type.as_pointer(), _I32, mask.type])
    fn = cgutils.get_or_insert_function(builder.module, fnty, f"llvm.masked.store.{suffix}.p0")
    builder.call(fn, [value, ptr, ir.Constant(_I32, align), mask])


def _lanes_into(a, i, n, v):
    """Whether (a, i, n, v) type as a masked write of Lanes8 v into a 1-D float array a."""
    return (_flat_array(a) and isinstance(i, types.Integer) and isinstance(n, types.Integer)
            and isinstance(v, Lanes8) and v.dtype == a.dtype)


def _align(dtype):
    return 4 if dtype == types.float32 else 8


@intrinsic
def splat(typingctx, s):
    """A Lanes8 of s's float type with every lane s."""
    if s not in _FLOATS:
        return None

    def codegen(context, builder, sig, args):
        return _splat(builder, args[0], _vec(context, sig.args[0]))

    return Lanes8(s)(s), codegen


@intrinsic
def load(typingctx, a, i, n):
    """Lanes k < n: a[i + k]; the others 0. Nothing outside a[i:i + n] is read (a masked
    load, several times slower than ``load8``: for the edges)."""
    if not (_flat_array(a) and isinstance(i, types.Integer) and isinstance(n, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        dtype = sig.args[0].dtype
        _, _, ptr, mask, vty = _pointer_and_mask(context, builder, sig, args, "load")
        return _masked_load(builder, ptr, mask, vty, _align(dtype), _suffix(dtype))

    return Lanes8(a.dtype)(a, i, n), codegen


@intrinsic
def load8(typingctx, a, i):
    """a[i:i + 8] as eight lanes, unchecked: the caller guarantees 0 <= i and i + 8 <= a.size
    (one plain vector load; check a whole loop's range once, fall back to ``load``)."""
    if not (_flat_array(a) and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        arr = context.make_array(sig.args[0])(context, builder, args[0])
        i = context.cast(builder, args[1], sig.args[1], types.intp)
        vty = _vec(context, sig.args[0].dtype)
        ptr = builder.bitcast(builder.gep(arr.data, [i]), vty.as_pointer())
        return builder.load(ptr, align=_align(sig.args[0].dtype))

    return Lanes8(a.dtype)(a, i), codegen


@intrinsic
def store8(typingctx, a, i, v):
    """a[i:i + 8] = v, unchecked: the caller guarantees 0 <= i and i + 8 <= a.size."""
    if not (_flat_array(a) and isinstance(i, types.Integer) and isinstance(v, Lanes8)
            and v.dtype == a.dtype):
        return None

    def codegen(context, builder, sig, args):
        arr = context.make_array(sig.args[0])(context, builder, args[0])
        i = context.cast(builder, args[1], sig.args[1], types.intp)
        vty = _vec(context, sig.args[0].dtype)
        ptr = builder.bitcast(builder.gep(arr.data, [i]), vty.as_pointer())
        builder.store(args[2], ptr, align=_align(sig.args[0].dtype))
        return context.get_dummy_value()

    return types.none(a, i, v), codegen


@intrinsic
def fma(typingctx, acc, v, s):
    """acc + v·s lane by lane with one rounding (s: a scalar of the lanes' type)."""
    if not (isinstance(acc, Lanes8) and v == acc and s == acc.dtype):
        return None

    def codegen(context, builder, sig, args):
        vty = _vec(context, sig.args[0].dtype)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vty, [vty, vty, vty]),
            f"llvm.fma.{_suffix(sig.args[0].dtype)}")
        return builder.call(fn, [args[1], _splat(builder, args[2], vty), args[0]])

    return acc(acc, v, s), codegen


def _masked_write(who, accumulate):
    """The codegen of a masked write of v into a[i:i + n]: a[·] = v, or a[·] += v."""
    def codegen(context, builder, sig, args):
        dtype = sig.args[0].dtype
        _, _, ptr, mask, vty = _pointer_and_mask(context, builder, sig, args, who)
        v = args[3]
        if accumulate:
            v = builder.fadd(_masked_load(builder, ptr, mask, vty, _align(dtype),
                                          _suffix(dtype)), v)
        _masked_store(builder, v, ptr, mask, _align(dtype), _suffix(dtype))
        return context.get_dummy_value()

    return codegen


@intrinsic
def store(typingctx, a, i, n, v):
    """a[i + k] = v[k] for k < n; nothing outside a[i:i + n] is written (a masked store)."""
    if not _lanes_into(a, i, n, v):
        return None
    return types.none(a, i, n, v), _masked_write("store", False)


@intrinsic
def add_to(typingctx, a, i, n, v):
    """a[i + k] += v[k] for k < n; nothing outside a[i:i + n] is read or written."""
    if not _lanes_into(a, i, n, v):
        return None
    return types.none(a, i, n, v), _masked_write("add_to", True)


@intrinsic
def keep(typingctx, v, n):
    """Lanes k < n of v; the others +0 — a select, so whatever they held (NaN, inf) is gone. An
    unmasked 8-lane add of keep(v, n) changes only the first n elements it lands on (but for
    a -0.0 among the others, which becomes +0.0)."""
    if not (isinstance(v, Lanes8) and isinstance(n, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        n = context.cast(builder, args[1], sig.args[1], types.intp)
        bad = builder.or_(builder.icmp_signed("<", n, ir.Constant(_I64, 0)),
                          builder.icmp_signed(">", n, ir.Constant(_I64, LANES)))
        with cgutils.if_unlikely(builder, bad):
            context.call_conv.return_user_exc(builder, IndexError,
                                              ("simd.keep: n outside 0..8",))
        lanes = ir.Constant(ir.VectorType(_I64, LANES), list(range(LANES)))
        mask = builder.icmp_signed("<", lanes, _splat(builder, n, ir.VectorType(_I64, LANES)))
        vty = _vec(context, sig.args[0].dtype)
        return builder.select(mask, args[0], ir.Constant(vty, None))

    return v(v, n), codegen


def _halves(typingctx, u, v, first):
    if not (isinstance(u, Lanes8) and v == u):
        return None

    def codegen(context, builder, sig, args):
        idx = ir.Constant(ir.VectorType(_I32, LANES), list(range(first, 2 * LANES, 2)))
        return builder.shuffle_vector(args[0], args[1], idx)

    return u(u, v), codegen


@intrinsic
def evens(typingctx, u, v):
    """The even lanes of the sixteen (u, v): u[0], u[2], u[4], u[6], v[0], .., v[6] — with
    ``odds``, pairs of neighbours (x[2k], x[2k+1]) of a row split into two vectors."""
    return _halves(typingctx, u, v, 0)


@intrinsic
def odds(typingctx, u, v):
    """The odd lanes of the sixteen (u, v): u[1], u[3], .., v[7]."""
    return _halves(typingctx, u, v, 1)


@intrinsic
def pick_above(typingctx, x, y, u, v):
    """Lane by lane u if x ranks above y else v, where NaN ranks above every number: x > y,
    or x is NaN and y is not. A branch-free running maximum over x's in order keeps the
    first of equals, and the first NaN once there is one."""
    if not (isinstance(x, Lanes8) and y == x and u == x and v == x):
        return None

    def codegen(context, builder, sig, args):
        x, y = args[0], args[1]
        # x > y or x unordered, unless y is NaN
        above = builder.and_(builder.fcmp_unordered(">", x, y), builder.fcmp_ordered("ord", y, y))
        return builder.select(above, args[2], args[3])

    return x(x, y, u, v), codegen


@intrinsic
def store8_int32(typingctx, a, i, v):
    """a[i:i + 8] = v's lanes truncated to int32 (exact for integral values below 2^31 in
    magnitude), unchecked: the caller guarantees 0 <= i and i + 8 <= a.size."""
    if not (isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C"
            and a.dtype == types.int32 and isinstance(i, types.Integer)
            and isinstance(v, Lanes8)):
        return None

    def codegen(context, builder, sig, args):
        arr = context.make_array(sig.args[0])(context, builder, args[0])
        i = context.cast(builder, args[1], sig.args[1], types.intp)
        ivty = ir.VectorType(_I32, LANES)
        ptr = builder.bitcast(builder.gep(arr.data, [i]), ivty.as_pointer())
        builder.store(builder.fptosi(args[2], ivty), ptr, align=4)
        return context.get_dummy_value()

    return types.none(a, i, v), codegen


@intrinsic
def ramp(typingctx, s):
    """Lanes s, s + 1, .., s + 7 (s a float: each lane one rounding of s + k)."""
    if s not in _FLOATS:
        return None

    def codegen(context, builder, sig, args):
        vty = _vec(context, sig.args[0])
        steps = ir.Constant(vty, [float(k) for k in range(LANES)])
        return builder.fadd(_splat(builder, args[0], vty), steps)

    return Lanes8(s)(s), codegen


# --------------------------------------------------------------------- scalar building blocks
@intrinsic
def pow2(typingctx, n):
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
def exp_floor(typingctx, z):
    """The most negative t (of z's type) for which exp(t) is still a normal number."""
    if z not in (types.float64, types.float32):
        return None
    lo = -708.0 if z == types.float64 else -87.0

    def codegen(context, builder, signature, args):
        return ir.Constant(args[0].type, lo)

    return z(z), codegen


@intrinsic
def is_float32(typingctx, z):
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
