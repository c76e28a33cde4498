"""Files of arrays: ``.npz`` archives written atomically and read as untrusted input.

``write_atomic(path, write)`` writes a file through a temporary file that replaces ``path`` only
when complete, with the mode a new file gets under the process umask; ``save_npz_atomic(path,
**arrays)`` writes an uncompressed ``.npz`` (NumPy's format: a zip of ``.npy`` members) so.

``NpzReader(path, what)`` reads one back without pickle and without trusting it: each member's
``.npy`` header (shape, dtype) can be checked before its data is read, only plain numeric and
text dtypes are accepted, and data are read in chunks, so a file that declares more than it
holds costs no more memory than it holds. Everything wrong with the file's contents raises one
``ValueError`` naming the file and ``what`` it should have been; a missing or unreadable file
raises the ``OSError`` that ``open`` gives.

Used by ``Model.save`` / ``fastnet.load`` (``fastnet.model``), network2's ``save`` and
network3's checkpoints.
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from typing import BinaryIO, Callable

import numpy as np

# Kinds of dtype a member may have: bool, integers, floats and (for JSON text) unicode.
_KINDS = "biufU"
_CHUNK = 1 << 20


def write_atomic(path, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(f)`` on a new temporary file beside ``path``, flush it to disk and rename
    it over ``path``: a reader never sees a half-written file, and an interrupted write leaves
    the old one. The new file's mode is ``0o666`` less the umask, as for any file a program
    creates (``tempfile.mkstemp`` would give ``0o600``)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.urandom(6).hex()}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 100 random names taken
        raise FileExistsError(f"no free temporary file name in {directory}")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_npz_atomic(path, **arrays) -> None:
    """``np.savez(path, **arrays)`` through ``write_atomic``."""
    write_atomic(path, lambda f: np.savez(f, **arrays))


class NpzReader:
    """An ``.npz`` file opened for checked reading (a context manager).

    ``header(name) -> (shape, dtype)`` reads a member's ``.npy`` header only;
    ``array(name, shape=None, dtype=None)`` reads the member (checking its header against
    ``shape``/``dtype`` when given, before any data); ``text(name, limit)`` reads a 0-d
    unicode member of at most ``limit`` characters as a ``str``.
    """

    def __init__(self, path, what: str):
        self.path, self.what = os.fspath(path), what
        self._file = open(self.path, "rb")    # OSError (missing, unreadable) passes through
        try:
            self._zip = zipfile.ZipFile(self._file)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError,
                NotImplementedError, RuntimeError, OverflowError) as exc:
            self._file.close()
            raise self.error(f"not an .npz archive ({exc})") from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self) -> None:
        self._zip.close()
        self._file.close()

    def has(self, name: str) -> bool:
        """Whether the archive holds the member ``name``."""
        return name + ".npy" in self._zip.namelist()

    def error(self, detail: str) -> ValueError:
        return ValueError(f"{self.path} is not {self.what}: {detail}")

    def _open(self, name: str):
        """The member ``name.npy`` opened, positioned after its header, with the header."""
        try:
            info = self._zip.getinfo(name + ".npy")
        except KeyError:
            raise self.error(f"it has no {name!r} array") from None
        try:
            f = self._zip.open(info)
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unknown .npy version {version}")
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, TypeError,
                SyntaxError, NotImplementedError, RuntimeError, OverflowError) as exc:
            raise self.error(f"its {name!r} array has a broken header ({exc})") from None
        if dtype.kind not in _KINDS or dtype.fields is not None or \
                dtype.subdtype is not None or dtype.itemsize == 0:
            f.close()
            raise self.error(f"its {name!r} array has dtype {dtype}, not a plain number or "
                             f"text type")
        if any(d < 0 for d in shape):
            f.close()
            raise self.error(f"its {name!r} array has shape {shape}")
        return f, shape, dtype, fortran

    def header(self, name: str) -> tuple[tuple[int, ...], np.dtype]:
        f, shape, dtype, _ = self._open(name)
        f.close()
        return shape, dtype

    def array(self, name: str, *, shape=None, dtype=None) -> np.ndarray:
        f, got_shape, got_dtype, fortran = self._open(name)
        with f:
            if shape is not None and tuple(got_shape) != tuple(shape):
                raise self.error(f"its {name!r} array has shape {got_shape}, expected "
                                 f"{tuple(shape)}")
            if dtype is not None and got_dtype.newbyteorder("=") != np.dtype(dtype):
                raise self.error(f"its {name!r} array has dtype {got_dtype}, expected "
                                 f"{np.dtype(dtype)}")
            nbytes = math.prod(got_shape) * got_dtype.itemsize
            buf = bytearray()
            try:
                while len(buf) < nbytes:      # never more than the member really holds
                    chunk = f.read(min(_CHUNK, nbytes - len(buf)))
                    if not chunk:
                        break
                    buf += chunk
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError,
                    NotImplementedError, RuntimeError, OverflowError) as exc:
                raise self.error(f"its {name!r} array cannot be read ({exc})") from None
            if len(buf) < nbytes:
                raise self.error(f"its {name!r} array is truncated ({len(buf)} of {nbytes} "
                                 f"bytes)")
        arr = np.frombuffer(buf, dtype=got_dtype)
        arr = arr.reshape(got_shape, order="F" if fortran else "C")
        arr = arr.astype(got_dtype.newbyteorder("="), copy=False)
        return arr if arr.flags.c_contiguous else arr.copy(order="C")

    def text(self, name: str, limit: int) -> str:
        shape, dtype = self.header(name)
        if shape != () or dtype.kind != "U":
            raise self.error(f"its {name!r} entry is {dtype} {shape}, not a text string")
        if dtype.itemsize // 4 > limit:
            raise self.error(f"its {name!r} text is longer than {limit} characters")
        return str(self.array(name)[()])
