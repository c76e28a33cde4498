"""Reading numeric NumPy arrays out of an untrusted pickle (the book's ``mnist.pkl.gz``) without
running it and without letting NumPy rebuild them from the file's state.

``load_arrays(data, name)`` returns the pickled structure with tuples and lists kept and
arrays built as ``np.frombuffer(data, dtype).reshape(shape)`` from an allow-listed dtype (bool,
int/uint 8-64, float 32/64, either byte order), after checking every length, index and byte
count against the bytes that are there. Anything else in the file (other globals; object,
void, structured, string or subarray dtypes) raises ``ForbiddenPickleError`` (a ValueError and
a ``pickle.UnpicklingError``) naming the file, before any array exists.

Twin: none. Tests: ``tests/test_datasets.py``, ``tests/test_hostile_data.py``. Why each step:
docs/design.md.
"""

from __future__ import annotations

import io
import math
import pickle
from typing import Any

import numpy as np

__all__ = ["ForbiddenPickleError", "load_arrays"]

#: dtype codes numpy writes in a pickled dtype (``dtype.__reduce__``) that may be rebuilt.
_DTYPE_CODES = frozenset({"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f4", "f8"})
_BYTE_ORDERS = frozenset({"<", ">", "="})  # "|" (not applicable) only for one-byte types
_MAX_NDIM = 32  # numpy 1.x's limit; more than any real data set needs
# A pickle of a few arrays in tuples has under a hundred opcodes; the cap bounds the objects
# (and memo entries) the unpickler can make at ~100 bytes each.
_MAX_OPCODES = 10_000

# The opcodes a pickle of tuples/lists of numpy arrays uses, protocols 0-5; anything else
# (dicts, sets, floats, INST/OBJ/NEWOBJ, extension codes, persistent ids, out-of-band
# buffers) is refused. Without dicts, BUILD can only reach a stand-in's ``__setstate__``.
_ALLOWED_OPCODES = frozenset(
    "PROTO FRAME STOP MARK POP POP_MARK DUP "
    "NONE NEWTRUE NEWFALSE INT BININT BININT1 BININT2 LONG LONG1 LONG4 "
    "STRING BINSTRING SHORT_BINSTRING BINBYTES SHORT_BINBYTES BINBYTES8 BYTEARRAY8 "
    "UNICODE SHORT_BINUNICODE BINUNICODE BINUNICODE8 "
    "EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3 EMPTY_LIST APPEND APPENDS LIST "
    "GET BINGET LONG_BINGET PUT BINPUT LONG_BINPUT MEMOIZE "
    "GLOBAL STACK_GLOBAL REDUCE BUILD".split()
)


class ForbiddenPickleError(pickle.UnpicklingError, ValueError):
    """The pickle names a global, an encoding or a dtype outside the allow-list.

    Both a ``pickle.UnpicklingError`` (what a restricted unpickler traditionally raises) and a
    ``ValueError`` (what every other refusal of the file raises)."""


# --------------------------------------------------------------------------- opcode scan


def _scan(data: bytes, name: str) -> None:
    """Walk the opcodes of ``data`` up to STOP; raise ValueError if any is refused or truncated.

    Runs nothing and allocates nothing: arguments are skipped by their declared length, which
    must fit in what is left of ``data``.
    """
    import pickletools  # lazy: only reading a pickle needs its opcode table

    ops = {op.code.encode("latin1"): op for op in pickletools.opcodes}
    end, pos = len(data), 0
    for _ in range(_MAX_OPCODES + 1):
        if pos >= end:
            raise ValueError(f"{name}: pickle is truncated (no STOP opcode)")
        op = ops.get(data[pos:pos + 1])
        if op is None:
            raise ValueError(f"{name}: not a pickle (byte 0x{data[pos]:02x} at offset {pos} "
                             "is no opcode)")
        if op.name not in _ALLOWED_OPCODES:
            raise ForbiddenPickleError(f"{name}: forbidden opcode in pickle: {op.name} at "
                                       f"offset {pos} (only arrays in tuples and lists are read)")
        start, pos = pos, pos + 1
        arg = op.arg
        if arg is None:
            pass
        elif arg.n >= 0:  # fixed size
            if pos + arg.n > end:
                break
            value = int.from_bytes(data[pos:pos + arg.n], "little")
            pos += arg.n
            if op.name in ("BINPUT", "LONG_BINPUT") and value >= _MAX_OPCODES:
                raise ValueError(f"{name}: pickle memo index {value} at offset {start} is out "
                                 "of range")
            if op.name == "FRAME" and pos + value > end:
                break
        elif arg.n == pickletools.UP_TO_NEWLINE:
            lines = []
            for _ in range(2 if op.name == "GLOBAL" else 1):
                newline = data.find(b"\n", pos)
                if newline < 0:
                    pos = end + 1
                    break
                if op.name in ("GLOBAL", "PUT"):  # the only lines read; others are skipped
                    lines.append(data[pos:newline])
                pos = newline + 1
            if pos > end:
                break
            if op.name == "PUT" and not (lines[0].strip().isdigit()
                                         and int(lines[0]) < _MAX_OPCODES):
                raise ValueError(f"{name}: pickle memo index at offset {start} is out of range")
            if op.name == "GLOBAL":  # refused here already, before anything runs
                try:
                    _find_global(*(line.decode("utf-8", "replace") for line in lines))
                except ForbiddenPickleError as e:
                    raise ForbiddenPickleError(f"{name}: {e}") from None
        else:  # a length field, then that many bytes
            width = {pickletools.TAKEN_FROM_ARGUMENT1: 1, pickletools.TAKEN_FROM_ARGUMENT4: 4,
                     pickletools.TAKEN_FROM_ARGUMENT4U: 4,
                     pickletools.TAKEN_FROM_ARGUMENT8U: 8}[arg.n]
            if pos + width > end:
                break
            size = int.from_bytes(data[pos:pos + width], "little",
                                  signed=arg.n == pickletools.TAKEN_FROM_ARGUMENT4)
            pos += width
            if size < 0:
                raise ValueError(f"{name}: negative length {size} in pickle at offset {start}")
            if pos + size > end:
                break
            pos += size
        if op.name == "STOP":
            return
    else:
        raise ValueError(f"{name}: pickle has more than {_MAX_OPCODES} opcodes (a pickle of a "
                         "few arrays has under a hundred)")
    raise ValueError(f"{name}: pickle is truncated: {op.name} at offset {start} runs past the "
                     f"end of the data ({end} bytes)")


# --------------------------------------------------------------------------- stand-ins


class _Marker:
    """Stands for ``numpy.ndarray`` (an argument of ``_reconstruct``); not callable."""

    __slots__ = ()


_NDARRAY = _Marker()


class _DtypeSpec:
    """What the pickle said about a dtype: ``numpy.dtype(*args)``, then ``__setstate__``."""

    __slots__ = ("args", "state")

    def __init__(self, *args: Any) -> None:
        self.args, self.state = args, None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _ArraySpec:
    """What the pickle said about an array: its ``__setstate__`` state, nothing built."""

    __slots__ = ("state",)

    def __init__(self, state: Any = None) -> None:
        self.state = state

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _reconstruct(cls: Any, shape: Any, typecode: Any) -> _ArraySpec:
    """Stand-in for ``numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b'b')``."""
    if cls is not _NDARRAY:
        raise ForbiddenPickleError("_reconstruct may only make a numpy.ndarray")
    return _ArraySpec()


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> _ArraySpec:
    """Stand-in for ``numpy.core.numeric._frombuffer`` (protocol 5 arrays)."""
    return _ArraySpec((1, shape, dtype, order in ("F", b"F"), buf))


def _latin1_encode(obj: Any, encoding: Any = "latin1") -> bytes:
    """``_codecs.encode`` restricted to latin-1: how Python 3 protocol-2 pickles store bytes."""
    if not isinstance(obj, str) or not isinstance(encoding, str) or \
            encoding.lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1"):
        raise ForbiddenPickleError(f"forbidden encoding in pickle: _codecs.encode(..., "
                                   f"{encoding!r:.40})")
    return obj.encode("latin1")


def _empty_bytes() -> bytes:
    """``bytes()``: how protocols 0-2 write ``b''`` (an empty array's data)."""
    return b""


_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _DtypeSpec,
    ("_codecs", "encode"): _latin1_encode,
    ("builtins", "bytes"): _empty_bytes,
    ("__builtin__", "bytes"): _empty_bytes,
}
for _core in ("numpy.core", "numpy._core"):
    _GLOBALS[(f"{_core}.multiarray", "_reconstruct")] = _reconstruct
    _GLOBALS[(f"{_core}.numeric", "_frombuffer")] = _frombuffer
del _core


def _find_global(module: str, name: str) -> Any:
    """The stand-in for global ``module.name``, or ForbiddenPickleError."""
    try:
        return _GLOBALS[(module, name)]
    except KeyError:
        raise ForbiddenPickleError(
            f"forbidden global in pickle: {module:.100}.{name:.100} (only numpy arrays are "
            "allowed)") from None


class _RecordingUnpickler(pickle.Unpickler):
    """Resolves only the globals in ``_GLOBALS``, to their stand-ins."""

    def find_class(self, module: str, name: str) -> Any:
        return _find_global(module, name)


# --------------------------------------------------------------------------- building


def _text(value: Any) -> str | None:
    """``value`` as str if it is str or bytes (Python 2 pickles give bytes), else None."""
    if isinstance(value, bytes):
        return value.decode("latin1")
    return value if isinstance(value, str) else None


def _dtype(spec: Any) -> np.dtype:
    """The numeric dtype a recorded ``numpy.dtype`` stands for, or ForbiddenPickleError."""
    if not isinstance(spec, _DtypeSpec) or not spec.args:
        raise ForbiddenPickleError(f"array dtype is a {type(spec).__name__}, not a numpy dtype")
    code = _text(spec.args[0])
    if code not in _DTYPE_CODES:
        shown = repr(code)[:20] if code is not None else type(spec.args[0]).__name__
        raise ForbiddenPickleError(f"forbidden array dtype {shown} (only bool, int/uint 8-64 "
                                   "and float 32/64 are read)")
    order = "="
    if spec.state is not None:
        state = spec.state
        # (version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata])
        if not (isinstance(state, tuple) and len(state) in (8, 9)
                and all(s is None for s in state[2:5]) and state[5:7] == (-1, -1)
                and (len(state) == 8 or state[8] is None)):
            raise ForbiddenPickleError(f"dtype {code} has a state that is not a plain numeric "
                                       "dtype's (fields, subarray or metadata)")
        order = _text(state[1])
    if code.endswith("1"):  # one byte: no byte order
        return np.dtype("|" + code)
    if order not in _BYTE_ORDERS:
        raise ForbiddenPickleError(f"dtype {code} has no valid byte order")
    return np.dtype(order + code)


def _build(spec: _ArraySpec) -> np.ndarray:
    """``spec``'s array, read-only, viewing the pickle's bytes; ValueError if inconsistent."""
    state = spec.state
    if not isinstance(state, tuple) or len(state) not in (4, 5):
        raise ValueError("array has no (shape, dtype, fortran, data) state")
    shape, dtype_spec, fortran, data = state[-4:]
    dtype = _dtype(dtype_spec)
    if not (isinstance(shape, tuple) and len(shape) <= _MAX_NDIM
            and all(type(d) is int and d >= 0 for d in shape)):
        raise ValueError(f"array shape is not a tuple of at most {_MAX_NDIM} sizes >= 0")
    if not isinstance(fortran, (bool, int)):
        raise ValueError("array order flag is not a bool")
    if isinstance(data, str):  # a Python 2 str read with a text encoding
        data = data.encode("latin1")
    if not isinstance(data, (bytes, bytearray)):
        raise ValueError(f"array data is a {type(data).__name__}, not bytes")
    count = math.prod(shape)
    if count * dtype.itemsize != len(data):
        raise ValueError(f"array of shape {shape} and dtype {dtype} needs "
                         f"{count * dtype.itemsize} bytes, the pickle holds {len(data)}")
    flat = np.frombuffer(data, dtype=dtype, count=count)
    flat.flags.writeable = False
    return flat.reshape(shape, order="F" if fortran else "C")


def _resolve(obj: Any, depth: int = 0) -> Any:
    """``obj`` with every recorded array built; tuples and lists of them kept. Depth-bounded."""
    if isinstance(obj, _ArraySpec):
        return _build(obj)
    if type(obj) in (tuple, list) and depth < 8:
        return type(obj)(_resolve(o, depth + 1) for o in obj)
    raise ValueError(f"pickle holds a {type(obj).__name__} where arrays, tuples or lists of "
                     "them (nested at most 8 deep) were expected")


def load_arrays(data: bytes, name: str) -> Any:
    """The tuples/lists of numeric numpy arrays pickled in ``data`` (``name`` is for messages).

    Arrays come back read-only, viewing ``data``'s bytes (or the pickle's copy of them).
    Raises ForbiddenPickleError (a ValueError and a ``pickle.UnpicklingError``) for anything
    outside the allow-lists and ValueError for a truncated or inconsistent pickle, each naming
    ``name``.
    """
    _scan(data, name)
    try:
        # encoding="bytes": a Python 2 str (the arrays' payload) stays bytes, no text copy.
        obj = _RecordingUnpickler(io.BytesIO(data), encoding="bytes").load()
    except ForbiddenPickleError as e:
        raise ForbiddenPickleError(f"{name}: {e}") from None
    except MemoryError:
        raise
    except Exception as e:  # the scan bounds what can go wrong; any failure is a bad file
        raise ValueError(f"{name}: not a valid pickle ({type(e).__name__}: {e})"[:400]) from None
    try:
        return _resolve(obj)
    except ForbiddenPickleError as e:
        raise ForbiddenPickleError(f"{name}: {e}") from None
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None
