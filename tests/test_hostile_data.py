"""Hostile input for the data loaders: the IDX parser (``read_idx``, ``load_mnist``) and the
book-pickle loader (``load_mnist_pickle``, ``mnist_loader.load_data``), fuzzed and with known
attacks. Each case runs in a child under a memory limit (``hostile.py``). A loader may accept a
file (the result is then checked) or refuse it with a documented error that names the file:
ValueError (``pickle.UnpicklingError`` for refused pickles, a ValueError too) or
FileNotFoundError.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest

import hostile
from hostile import budget, run_limited

if hostile.SKIP_REASON:
    pytest.skip(hostile.SKIP_REASON, allow_module_level=True)

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from fastnet import datasets, mnist_loader  # noqa: E402
from fastnet.datasets import MNIST_SHA256, load_mnist, load_mnist_pickle, read_idx  # noqa: E402

FUZZ = hostile.fuzz_settings()
DOCUMENTED = (ValueError, FileNotFoundError, pickle.UnpicklingError)
worker = hostile.worker_fixture(__name__)


def warm() -> None:
    """In the worker, before any child: the loaders' lazy imports."""
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "warm.pkl").write_bytes(PICKLE_SEEDS[0])
        load_mnist_pickle(Path(d) / "warm.pkl")


# --------------------------------------------------------------------------- valid seeds


def _idx(arr: np.ndarray, type_byte: int = 0x08) -> bytes:
    header = bytes([0, 0, type_byte, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


_rng = np.random.default_rng(0)
TINY = {  # a 4-train / 2-test MNIST look-alike
    "train-images-idx3-ubyte": _idx(_rng.integers(0, 256, (4, 28, 28), dtype=np.uint8)),
    "train-labels-idx1-ubyte": _idx(_rng.integers(0, 10, 4, dtype=np.uint8)),
    "t10k-images-idx3-ubyte": _idx(_rng.integers(0, 256, (2, 28, 28), dtype=np.uint8)),
    "t10k-labels-idx1-ubyte": _idx(_rng.integers(0, 10, 2, dtype=np.uint8)),
}
IDX_SEEDS = list(TINY.values()) + [
    _idx(np.arange(-3, 3, dtype=np.int32).reshape(2, 3), 0x0C),
    _idx(np.array([1.5, -2.0]), 0x0E),
    _idx(np.array([1, -1], np.int16), 0x0B),
]


def _splits(x_dtype=np.float32, y_dtype=np.int64):
    rng = np.random.default_rng(1)
    return tuple((rng.random((n, 784)).astype(x_dtype), rng.integers(0, 10, n).astype(y_dtype))
                 for n in (2, 1, 1))


class _Py2StylePickler(pickle.Pickler):
    """Arrays as Python 2's cPickle wrote them: numpy.core names, payloads as str."""

    def reducer_override(self, obj):
        if type(obj) is np.ndarray:
            func, _, (version, shape, dtype, fortran, data) = obj.__reduce__()
            return func, (np.ndarray, (0,), "b"), (version, shape, dtype, fortran,
                                                   data.decode("latin1"))
        return NotImplemented


def _py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    _Py2StylePickler(buf, protocol=2).dump(obj)
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


PICKLE_SEEDS = [pickle.dumps(_splits(), protocol=p) for p in range(6)] + [
    pickle.dumps(_splits(np.uint8, np.uint8), protocol=2),
    pickle.dumps(_splits(np.float64, np.int32), protocol=4),
    _py2_pickle(_splits()),
]
# dtype codes a mutation may put where a pickled dtype's code was: refused ones and allowed ones
DTYPE_CODES = [b"O8", b"V8", b"S8", b"U2", b"c8", b"M8", b"m8", b"f2", b"f4", b"i8", b"u1", b"b1"]


# --------------------------------------------------------------------------- strategies


@st.composite
def mutated(draw, seeds: list[bytes], header: bool) -> bytes:
    """A seed with a few random edits; maybe gzipped, maybe with its gzip stream damaged."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["flip", "set", "cut", "insert", "delete", "dims",
                                     "dtype"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 16))]
        elif kind == "dims" and header and len(data) >= 4:
            # an IDX header edit: type byte, dim count, or one dim set to an edge value
            field = draw(st.integers(2, 3 + data[3]))
            if field < 4:
                data[field] = draw(st.integers(0, 255))
            elif 4 * field + 4 <= len(data):
                value = draw(st.sampled_from([0, 1, 28, 2**16, 2**31 - 1, 2**32 - 1]))
                data[4 * field - 12:4 * field - 8] = struct.pack(">I", value)
        elif kind == "dtype" and not header:
            for code in (b"f4", b"i8", b"u1"):  # a pickled dtype's code, as SHORT_BINUNICODE etc.
                where = bytes(data).find(code)
                if where >= 0:
                    data[where:where + 2] = draw(st.sampled_from(DTYPE_CODES))
                    break
    blob = bytes(data)
    if draw(st.booleans()):
        blob = gzip.compress(blob, compresslevel=1)
        if draw(st.booleans()):
            damaged = bytearray(blob)
            at = draw(st.integers(0, len(damaged) - 1))
            damaged[at] ^= 1 << draw(st.integers(0, 7))
            blob = bytes(damaged[:draw(st.integers(1, len(damaged)))])
    return blob


any_bytes = st.binary(max_size=2048)


# --------------------------------------------------------------------------- child-side checks


def _read_idx(path: Path) -> None:
    arr = read_idx(path)
    assert isinstance(arr, np.ndarray) and arr.dtype.isnative and arr.flags.writeable


def _load_tiny_mnist(path: Path) -> None:
    """load_mnist on a directory whose other three files are TINY's (with their hashes)."""
    for name, data in TINY.items():
        MNIST_SHA256[name] = hashlib.sha256(data).hexdigest()  # in this child only
        if not (path.parent / name).exists():
            (path.parent / name).write_bytes(data)
    (tr_x, tr_y), _, (te_x, te_y) = load_mnist(path.parent, validation=1, download=False)
    assert tr_x.dtype == np.float32 and tr_y.dtype == np.int64 and len(te_x) == len(te_y)


def _load_pickle(path: Path) -> None:
    splits = load_mnist_pickle(path)
    for x, y in splits:
        assert x.dtype == np.float32 and x.ndim == 2 and x.shape[1] == 784
        assert y.dtype == np.int64 and y.shape == (len(x),)
        assert np.isfinite(x).all() and (y.size == 0 or (y.min() >= 0 and y.max() <= 9))
        assert x.flags.writeable and y.flags.writeable


def _load_data(path: Path) -> None:
    (x, y), _, _ = mnist_loader.load_data(path)
    assert x.dtype == np.float32 and y.dtype == np.int64


CHECKS = {
    "read_idx": _read_idx,
    "load_tiny_mnist": _load_tiny_mnist,
    "load_pickle": _load_pickle,
    "load_data": _load_data,
    # the harness's own checks
    "segfault": lambda path: os.kill(os.getpid(), 11),
    "allocate_twice_the_limit": lambda path: bytearray(2 * (hostile.MARGIN + budget(path))),
    "allocate_1_mib": lambda path: bytearray(1 << 20),
    "unnamed_error": lambda path: int("x"),
    "index_error": lambda path: [][0],
}


# --------------------------------------------------------------------------- the harness works


def test_harness_catches_crash_and_big_allocation(worker, tmp_path):
    """The harness itself fails on a signal, on an allocation beyond the budget, on an error
    that does not name the file and on an undocumented exception (else the tests below could
    not fail)."""
    f = tmp_path / "f"
    f.write_bytes(b"x" * 1000)
    with pytest.raises(pytest.fail.Exception, match="signal 11"):
        run_limited(worker, "segfault", f)
    with pytest.raises(pytest.fail.Exception, match="MemoryError"):
        run_limited(worker, "allocate_twice_the_limit", f)
    with pytest.raises(pytest.fail.Exception, match="does not name file"):
        run_limited(worker, "unnamed_error", f)
    with pytest.raises(pytest.fail.Exception, match="undocumented exception"):
        run_limited(worker, "index_error", f)
    assert run_limited(worker, "allocate_1_mib", f) == "accepted"


# --------------------------------------------------------------------------- known attacks


def _gzip_zeros(prefix: bytes, n_zeros: int) -> bytes:
    """gzip of ``prefix`` + ``n_zeros`` zero bytes, compressed piecewise (small memory)."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [z.compress(prefix)]
    chunk = bytes(1 << 20)
    for _ in range(n_zeros >> 20):
        out.append(z.compress(chunk))
    out.append(z.compress(bytes(n_zeros & ((1 << 20) - 1))))
    out.append(z.flush())
    return b"".join(out)


BOMB = 1 << 26  # 64 MiB of zeros: gzip makes ~65 kB of them, over MARGIN + budget unpacked


@pytest.fixture(scope="module")
def bombs(tmp_path_factory):
    d = tmp_path_factory.mktemp("bombs")
    header_small = bytes([0, 0, 8, 3]) + struct.pack(">3I", 1, 28, 28)
    header_honest = bytes([0, 0, 8, 2]) + struct.pack(">2I", 1 << 13, 1 << 13)  # 64 MiB
    cases = {
        # a header declaring one image, then 64 MiB of "trailing" zeros
        "small-header.gz": _gzip_zeros(header_small, BOMB),
        # a header honestly declaring 64 MiB: 1000x the file, refused before decompressing
        "honest-header.gz": _gzip_zeros(header_honest, BOMB),
        # a book pickle 64 MiB unpacked
        "pickle.pkl.gz": _gzip_zeros(pickle.dumps(_splits(), protocol=2)[:-1], BOMB),
    }
    for name, blob in cases.items():
        (d / name).write_bytes(blob)
    return d


@pytest.mark.parametrize("name", ["small-header.gz", "honest-header.gz"])
def test_gzip_bomb_idx_refused_cheaply(worker, bombs, name):
    text = run_limited(worker, "read_idx", bombs / name)
    assert "ValueError" in text


def test_gzip_bomb_pickle_refused_cheaply(worker, bombs):
    text = run_limited(worker, "load_pickle", bombs / "pickle.pkl.gz")
    assert "ValueError" in text and "expands beyond" in text


def _object_array_pickle() -> bytes:
    """The issue's file: an int64 array's dtype code changed to object: pointers 0x4141..."""
    x = np.full((2, 784), 0x4141414141414141, np.int64)
    y = np.zeros(2, np.uint8)
    d = pickle.dumps(((x, y), (x, y), (x, y)), protocol=2)
    return d.replace(b"X\x02\x00\x00\x00i8", b"X\x02\x00\x00\x00O8", 1)


def _structured_object_pickle() -> bytes:
    """A structured dtype whose one field is an object (via the field dtype's code): the
    images' pointers again come from the file."""
    x = np.zeros((1, 784), [("a", "<i8")])
    x["a"] = 0x4141414141414141
    y = np.zeros(1, np.uint8)
    d = pickle.dumps(((x, y), (x, y), (x, y)), protocol=2)
    return d.replace(b"X\x02\x00\x00\x00i8", b"X\x02\x00\x00\x00O8")


HOSTILE_PICKLES = {
    "object-dtype": _object_array_pickle(),
    "structured-object-field": _structured_object_pickle(),
    "memo-index-2**28": b"\x80\x02Nr\xff\xff\xff\x0f.",
    "binbytes8-1TB": b"\x80\x04\x8e" + (1 << 40).to_bytes(8, "little") + b"ab.",
    "bytearray8-1TB": b"\x80\x05\x96" + (1 << 40).to_bytes(8, "little") + b"ab.",
    "frame-1TB": b"\x80\x04\x95" + (1 << 40).to_bytes(8, "little") + b"N.",
    "deep-tuples": b"\x80\x02" + b"(" * 100000 + b")" + b"t" * 100000 + b".",
    "long-list": b"\x80\x02]" + b"(" + b"N" * 1000000 + b"e.",
    "string-arrays": pickle.dumps(tuple((np.array(["a"] * 784).reshape(1, 784),
                                         np.array([1])) for _ in range(3)), protocol=2),
    "shape-lies": pickle.dumps(_splits(), protocol=2).replace(b"M\x10\x03", b"M\x11\x03", 1),
    "os.system": b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueq\x00\x85R.",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_PICKLES))
@pytest.mark.parametrize("gzipped", [False, True])
def test_hostile_pickles_refused(worker, tmp_path, name, gzipped):
    data = HOSTILE_PICKLES[name]
    path = tmp_path / ("hostile.pkl.gz" if gzipped else "hostile.pkl")
    path.write_bytes(gzip.compress(data) if gzipped else data)
    text = run_limited(worker, "load_data", path)
    assert text.startswith(("ValueError", "ForbiddenPickleError")), text


def test_nan_and_inf_images_refused(tmp_path):
    splits = _splits()
    splits[1][0][0, 5] = np.nan
    path = tmp_path / "nan.pkl"
    path.write_bytes(pickle.dumps(splits, protocol=2))
    with pytest.raises(ValueError, match=rf"{path}: val images hold NaN"):
        load_mnist_pickle(path)
    big = _splits(np.float64)
    big[0][0][1, 1] = 1e300  # finite in float64, inf in float32
    path.write_bytes(pickle.dumps(big, protocol=2))
    with pytest.raises(ValueError, match=rf"{path}: train images hold NaN or infinite"):
        load_mnist_pickle(path)


def test_string_arrays_error_names_the_file(tmp_path):
    path = tmp_path / "strings.pkl"
    path.write_bytes(HOSTILE_PICKLES["string-arrays"])
    with pytest.raises(ValueError, match=rf"{path}: forbidden array dtype 'U1'"):
        load_mnist_pickle(path)


@pytest.mark.parametrize("dims", [(1 << 16,) * 4, (0, 2**32 - 1, 2**32 - 1, 2**32 - 1),
                                  (2**32 - 1,) * 3])
def test_idx_dims_overflow_names_the_file(worker, tmp_path, dims):
    """Dims whose product overflows int64 (2**64 wraps to 0 bytes: an empty payload matched)
    or that no array can have."""
    path = tmp_path / "dims.idx"
    path.write_bytes(bytes([0, 0, 8, len(dims)]) + struct.pack(f">{len(dims)}I", *dims))
    with pytest.raises(ValueError, match=str(path)):
        read_idx(path)
    assert "ValueError" in run_limited(worker, "read_idx", path)


# --------------------------------------------------------------------------- fuzzing


@FUZZ
@given(blob=st.one_of(mutated(IDX_SEEDS, header=True), any_bytes))
def test_fuzz_read_idx(worker, tmp_path, blob):
    path = tmp_path / "fuzz.idx"
    path.write_bytes(blob)
    run_limited(worker, "read_idx", path)


@FUZZ
@given(which=st.sampled_from(sorted(TINY)), blob=mutated(list(TINY.values()), header=True))
def test_fuzz_load_mnist(worker, tmp_path, which, blob):
    d = tmp_path / "mnist"
    d.mkdir(exist_ok=True)
    for f in d.iterdir():
        f.unlink()
    path = d / (which + ".gz" if blob[:2] == b"\x1f\x8b" else which)
    path.write_bytes(blob)
    run_limited(worker, "load_tiny_mnist", path)


@FUZZ
@given(blob=st.one_of(mutated(PICKLE_SEEDS, header=False), any_bytes))
def test_fuzz_load_mnist_pickle(worker, tmp_path, blob):
    path = tmp_path / "fuzz.pkl"
    path.write_bytes(blob)
    run_limited(worker, "load_pickle", path)


def test_fuzz_seeds_are_accepted(worker, tmp_path):
    """The unmutated seeds load: the fuzzing starts from files the loaders accept."""
    for i, blob in enumerate(PICKLE_SEEDS):
        path = tmp_path / f"seed{i}.pkl"
        path.write_bytes(blob)
        assert run_limited(worker, "load_pickle", path) == "accepted"
    for i, blob in enumerate(IDX_SEEDS):
        path = tmp_path / f"seed{i}.idx"
        path.write_bytes(gzip.compress(blob))
        assert run_limited(worker, "read_idx", path) == "accepted"
    d = tmp_path / "mnist"
    d.mkdir()
    path = d / "train-images-idx3-ubyte"
    path.write_bytes(TINY["train-images-idx3-ubyte"])
    assert run_limited(worker, "load_tiny_mnist", path) == "accepted"
    # the children's hash edits stayed in the children
    assert datasets.MNIST_SHA256["train-images-idx3-ubyte"].startswith("ba891046")
