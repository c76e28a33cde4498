"""Reading IDX files (MNIST's format), gzipped or raw, as untrusted input: ``read_idx`` and
``decode`` (with the SHA-256 of the uncompressed bytes), and ``gunzip`` for the book's pickle.
Nothing beyond what a header declares is decompressed, and a gzip stream may expand to at most
100 times its size (or 4 MiB), so a small file cannot make fastnet allocate gigabytes. Used by
``fastnet.datasets``; tests: ``tests/test_datasets.py``, ``tests/test_hostile_data.py``."""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import struct
import zlib
from pathlib import Path
from typing import IO, Any, Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]

_GZIP_MAGIC = b"\x1f\x8b"
# A gzip file may expand to 100x its size (MNIST's expand ~5x), or to 4 MiB whatever its size:
# a small file that claims or streams gigabytes is refused before they are allocated.
_MAX_GZIP_RATIO = 100
_GZIP_FREE_BYTES = 4 << 20
# IDX type byte -> big-endian numpy dtype.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class _RawReader:
    """``read(n)`` over in-memory bytes, returning views (no copies): the raw-file twin of
    ``gzip.GzipFile.read``."""

    def __init__(self, raw: bytes) -> None:
        self._view, self._pos = memoryview(raw), 0

    def read(self, n: int) -> memoryview:
        chunk = self._view[self._pos:self._pos + n]
        self._pos += len(chunk)
        return chunk

    def close(self) -> None:
        pass


def _gzip_limit(raw: bytes) -> int:
    """The most bytes the gzip file ``raw`` may decompress to (see ``_MAX_GZIP_RATIO``)."""
    return max(_GZIP_FREE_BYTES, _MAX_GZIP_RATIO * len(raw))


def _gzip_error(name: str, e: BaseException) -> ValueError:
    return ValueError(f"{name}: gzip stream is truncated or corrupt ({type(e).__name__}: {e})")


def _decode_idx(raw: bytes, name: str, *, digest: bool = False) -> tuple[np.ndarray, str | None]:
    """Parse the IDX file ``raw`` (gzipped or not, by content) into a native-endian array.

    Returns ``(array, sha256 hex of the uncompressed bytes or None unless digest)``; the array
    may be a read-only view of ``raw``. The header is read first and nothing beyond the payload
    it declares is decompressed, so a gzip stream that expands far beyond its declared or
    allowed size costs no memory. Raises ValueError naming ``name`` for anything malformed.
    """
    gzipped = raw[:2] == _GZIP_MAGIC
    stream: Any = (gzip.GzipFile(fileobj=io.BytesIO(raw), mode="rb") if gzipped
                   else _RawReader(raw))
    limit = _gzip_limit(raw) if gzipped else len(raw)
    try:
        head = bytes(stream.read(4))
        if len(head) < 4:
            raise ValueError(f"{name}: truncated or corrupt IDX file ({len(head)} bytes, "
                             "no header)")
        if head[0] != 0 or head[1] != 0:
            raise ValueError(f"{name}: not an IDX file (magic {head[:2].hex()}, expected 0000)")
        type_byte, ndim = head[2], head[3]
        if type_byte not in _IDX_DTYPES:
            raise ValueError(f"{name}: unsupported IDX element type 0x{type_byte:02x}")
        head += stream.read(4 * ndim)
        header = len(head)
        if header < 4 + 4 * ndim:
            raise ValueError(f"{name}: truncated or corrupt IDX header ({ndim} dims declared)")
        dims = struct.unpack(f">{ndim}I", head[4:])
        dtype = np.dtype(_IDX_DTYPES[type_byte])
        expected = math.prod(dims) * dtype.itemsize  # Python ints: no overflow
        if expected > limit - header:
            held = (f"file holds {len(raw) - header}" if not gzipped else
                    f"more than the {len(raw)}-byte gzip file may expand to here "
                    f"({_MAX_GZIP_RATIO}x its size)")
            raise ValueError(f"{name}: IDX file is truncated or corrupt: header declares shape "
                             f"{dims} = {expected} payload bytes, {held}")
        payload = stream.read(expected)
        if len(payload) < expected:
            raise ValueError(f"{name}: IDX file is truncated: header declares shape {dims} = "
                             f"{expected} payload bytes, file holds {len(payload)}")
        if len(stream.read(1)):  # for gzip, also reaches the end: checks the CRC
            raise ValueError(f"{name}: IDX file is corrupt (trailing bytes): header declares "
                             f"shape {dims} = {expected} payload bytes, file holds more")
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise _gzip_error(name, e) from None
    finally:
        stream.close()
    sha = None
    if digest:
        h = hashlib.sha256(head)
        h.update(payload)
        sha = h.hexdigest()
    try:
        arr = np.frombuffer(payload, dtype=dtype).reshape(dims)
    except ValueError as e:  # zero-size shapes numpy cannot represent, too many dims
        raise ValueError(f"{name}: IDX shape {dims} is not a valid array shape ({e})") from None
    if not (dtype.isnative or dtype.itemsize == 1):
        arr = arr.astype(dtype.newbyteorder("="))
    return arr, sha


def read_idx(file: PathLike | IO[bytes]) -> np.ndarray:
    """Read one IDX file (gzipped or raw, detected by content) into a writable array.

    ``file``: a path or a binary file object. Returns an array of the file's declared shape, e.g.
    ``uint8[n, 28, 28]`` for MNIST images or ``uint8[n]`` for labels, in native byte order.
    Raises ValueError, naming the file, if it is truncated or corrupt. No checksum is checked.
    A gzipped file may expand to at most 100 times its size (or 4 MiB).
    """
    if hasattr(file, "read"):
        name = str(getattr(file, "name", "<file object>"))
        raw = file.read()  # type: ignore[union-attr]
    else:
        name = os.fspath(file)  # type: ignore[arg-type]
        raw = Path(name).read_bytes()
    arr, _ = _decode_idx(bytes(raw), name)
    return arr if arr.flags.writeable and arr.flags.owndata else arr.copy()


def _gunzip(raw: bytes, name: str) -> bytes:
    """All members of the gzip file ``raw`` decompressed, refused (ValueError) beyond
    ``_gzip_limit(raw)`` bytes; read in one piece when the trailer's size field is honest."""
    limit = _gzip_limit(raw)
    hint = int.from_bytes(raw[-4:], "little") if len(raw) >= 18 else 0  # ISIZE: size mod 2**32
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw), mode="rb") as stream:
            first = stream.read(min(hint, limit))
            chunks = [first]
            total = len(first)
            while total <= limit:
                chunk = stream.read(min(1 << 20, limit + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise _gzip_error(name, e) from None
    if total > limit:
        raise ValueError(f"{name}: gzip stream expands beyond {limit} bytes ({_MAX_GZIP_RATIO}x "
                         "the file's size): refused")
    return first if len(chunks) == 1 else b"".join(chunks)
