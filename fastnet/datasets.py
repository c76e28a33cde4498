"""MNIST loading: the four IDX files (gzipped or raw) and the book's ``mnist.pkl.gz``.

``load_mnist()`` returns ``(train, val, test)``, each a pair ``(x, y)`` with
``x: float32[n, 784]`` in [0, 1] (uint8 / 255) and ``y: int64[n]`` in 0..9. As in Nielsen's book
the 60,000 training images are split into the first 50,000 for training and the last 10,000 for
validation; the 10,000 test images come from the t10k files.

Where the files are looked for, in order: the ``path`` argument (only there, never downloading);
else ``$FASTNET_DATA`` and then the per-user cache (``default_data_dir()``), downloading what is
missing into the cache from a list of mirrors. Every file's sha256 (of the uncompressed bytes) is
checked on each load: hashing the 47 MB training images takes ~0.03 s against ~0.2 s to gunzip
them, so a memo of verified files would not pay for itself.

Nothing happens at import time: no I/O, no network.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import numbers
import os
import pickle
import struct
import sys
import tempfile
import zlib
from pathlib import Path
from typing import IO, Any, Sequence, Union

import numpy as np

__all__ = [
    "MNIST_SHA256",
    "MIRRORS",
    "MNISTNotFoundError",
    "default_data_dir",
    "read_idx",
    "load_mnist",
    "load_mnist_pickle",
]

PathLike = Union[str, "os.PathLike[str]"]
Split = tuple[np.ndarray, np.ndarray]

#: sha256 of the *uncompressed* bytes of each standard MNIST file (stable across gzip re-makes).
MNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

#: Base URLs serving ``<name>.gz`` for each file, tried in order.
MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

_TRAIN_IMAGES, _TRAIN_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
_TEST_IMAGES, _TEST_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"
_N_TRAIN_FILE = 60000  # images in the standard training file: bounds `validation`
_DOWNLOAD_TIMEOUT_S = 60
_MAX_DOWNLOAD_BYTES = 64 << 20  # the largest file is ~9.9 MB gzipped; refuse runaway responses
_GZIP_MAGIC = b"\x1f\x8b"

# IDX type byte -> big-endian numpy dtype.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class MNISTNotFoundError(FileNotFoundError):
    """The MNIST files are neither where fastnet looked nor downloadable."""


def default_data_dir() -> Path:
    """The per-user cache directory for MNIST (not created here).

    ``$FASTNET_CACHE`` if set; on Windows ``%LOCALAPPDATA%\\fastnet\\mnist``; elsewhere
    ``$XDG_CACHE_HOME/fastnet/mnist``, else ``~/.cache/fastnet/mnist``.
    """
    if os.environ.get("FASTNET_CACHE"):
        return Path(os.environ["FASTNET_CACHE"]).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "fastnet" / "mnist"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "fastnet" / "mnist"


# --------------------------------------------------------------------------- IDX parsing


def _decompress_if_gzip(raw: bytes, name: str) -> bytes:
    """Gunzip ``raw`` if it starts with the gzip magic; a broken stream becomes a ValueError."""
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise ValueError(f"{name}: gzip stream is truncated or corrupt ({e})") from e


def _parse_idx(data: bytes, name: str) -> np.ndarray:
    """A read-only native-endian array viewing/copying the IDX payload of ``data``."""
    if len(data) < 4:
        raise ValueError(f"{name}: truncated or corrupt IDX file ({len(data)} bytes, no header)")
    if data[0] != 0 or data[1] != 0:
        raise ValueError(f"{name}: not an IDX file (magic {data[:2].hex()}, expected 0000)")
    type_byte, ndim = data[2], data[3]
    if type_byte not in _IDX_DTYPES:
        raise ValueError(f"{name}: unsupported IDX element type 0x{type_byte:02x}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{name}: truncated or corrupt IDX header ({ndim} dims declared)")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_DTYPES[type_byte])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header
    if actual != expected:
        what = "truncated" if actual < expected else "corrupt (trailing bytes)"
        raise ValueError(
            f"{name}: IDX file is {what}: header declares shape {dims} = {expected} payload "
            f"bytes, file holds {actual}"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr if dtype.isnative or dtype.itemsize == 1 else arr.astype(dtype.newbyteorder("="))


def read_idx(file: PathLike | IO[bytes]) -> np.ndarray:
    """Read one IDX file (gzipped or raw, detected by content) into a writable array.

    ``file``: a path or a binary file object. Returns an array of the file's declared shape, e.g.
    ``uint8[n, 28, 28]`` for MNIST images or ``uint8[n]`` for labels, in native byte order.
    Raises ValueError, naming the file, if it is truncated or corrupt. No checksum is checked.
    """
    if hasattr(file, "read"):
        name = str(getattr(file, "name", "<file object>"))
        raw = file.read()  # type: ignore[union-attr]
    else:
        name = os.fspath(file)  # type: ignore[arg-type]
        raw = Path(name).read_bytes()
    return _parse_idx(_decompress_if_gzip(raw, name), name).copy()


# --------------------------------------------------------------------------- locating files


def _find_local(name: str, dirs: Sequence[Path]) -> Path | None:
    """The first existing ``<dir>/<name>`` or ``<dir>/<name>.gz`` (raw preferred: faster)."""
    for d in dirs:
        for fname in (name, name + ".gz"):
            if (d / fname).is_file():
                return d / fname
    return None


def _atomic_write(dest: Path, data: bytes) -> None:
    """Write ``data`` to ``dest`` via a temp file in the same directory and ``os.replace``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _download(name: str, dest_dir: Path, mirrors: Sequence[str], verbose: bool) -> Path:
    """Fetch ``<name>.gz`` from the first mirror serving bytes with the right sha256.

    The whole response is held in memory and verified before anything is written, so a failed
    or wrong download leaves nothing behind. Raises ValueError if some mirror served bytes with
    the wrong hash and none served good ones; OSError if no mirror could be reached.
    """
    import http.client  # lazy: keeps `import fastnet.datasets` cheap
    import urllib.request

    fname = name + ".gz"
    errors: list[str] = []
    bad_hash: str | None = None
    for base in mirrors:
        url = base.rstrip("/") + "/" + fname
        if verbose:
            print(f"fastnet: downloading {fname} from {url}", file=sys.stderr)
        try:
            with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as resp:
                blob = resp.read(_MAX_DOWNLOAD_BYTES + 1)
        except (OSError, ValueError, http.client.HTTPException) as e:
            errors.append(f"{url}: {type(e).__name__}: {e}")
            continue
        if len(blob) > _MAX_DOWNLOAD_BYTES:
            errors.append(f"{url}: response larger than {_MAX_DOWNLOAD_BYTES} bytes")
            continue
        try:
            data = _decompress_if_gzip(blob, url)
        except ValueError as e:
            errors.append(str(e))
            continue
        actual = hashlib.sha256(data).hexdigest()
        if actual != MNIST_SHA256[name]:
            bad_hash = f"{url}: sha256 mismatch: expected {MNIST_SHA256[name]}, got {actual}"
            errors.append(bad_hash)
            continue
        dest = dest_dir / fname
        _atomic_write(dest, blob)
        return dest
    detail = "\n  ".join(errors) or "no mirrors given"
    if bad_hash is not None:
        raise ValueError(f"download of {fname} failed checksum verification:\n  {detail}")
    raise OSError(f"could not download {fname}:\n  {detail}")


def _not_found(missing: list[str], looked: list[tuple[Path, str]], failures: list[str]) -> str:
    lines = ["MNIST files not found: " + ", ".join(f"{m}[.gz]" for m in missing), "Looked in:"]
    for d, why in looked:
        state = "" if d.is_dir() else " (no such directory)"
        lines.append(f"  {d}  [{why}]{state}")
    if failures:
        lines.append("Download failed:")
        lines += [f"  {line}" for f in failures for line in f.splitlines()]
    lines.append(
        "Point fastnet at a directory holding the four IDX files (gzipped or raw): "
        "load_mnist(path='/dir') or set FASTNET_DATA=/dir."
    )
    return "\n".join(lines)


def _locate(
    path: PathLike | None, download: bool, mirrors: Sequence[str], verbose: bool
) -> dict[str, Path]:
    """Map each MNIST file name to an existing local file, downloading into the cache if allowed."""
    looked: list[tuple[Path, str]] = []
    if path is not None:
        looked.append((Path(path).expanduser(), "path argument"))
        download = False  # an explicit path is a promise that the files are there
    else:
        if os.environ.get("FASTNET_DATA"):
            looked.append((Path(os.environ["FASTNET_DATA"]).expanduser(), "$FASTNET_DATA"))
        cache = default_data_dir()
        if cache not in [d for d, _ in looked]:
            looked.append((cache, "cache"))
    dirs = [d for d, _ in looked]
    found = {name: _find_local(name, dirs) for name in MNIST_SHA256}
    missing = [name for name, f in found.items() if f is None]
    failures: list[str] = []
    if missing and download:
        for name in missing:
            try:
                found[name] = _download(name, default_data_dir(), mirrors, verbose)
            except OSError as e:
                failures.append(f"{name}: {e}")
        missing = [name for name, f in found.items() if f is None]
    if missing:
        if not download and path is None:
            failures.append("download disabled (download=False)")
        raise MNISTNotFoundError(_not_found(missing, looked, failures))
    return found  # type: ignore[return-value]


# --------------------------------------------------------------------------- loading


def _load_verified(file: Path, name: str) -> np.ndarray:
    """Read, parse and check one MNIST file: shape, label range, then sha256."""
    data = _decompress_if_gzip(file.read_bytes(), str(file))
    arr = _parse_idx(data, str(file))
    if arr.dtype != np.uint8:
        raise ValueError(f"{file}: expected uint8 elements, got {arr.dtype}")
    if "images" in name and (arr.ndim != 3 or arr.shape[1:] != (28, 28)):
        raise ValueError(f"{file}: expected images of shape (n, 28, 28), got {arr.shape}")
    if "labels" in name:
        if arr.ndim != 1:
            raise ValueError(f"{file}: expected labels of shape (n,), got {arr.shape}")
        if arr.size and arr.max() > 9:
            raise ValueError(f"{file}: labels must be in 0..9, found {int(arr.max())}")
    actual = hashlib.sha256(data).hexdigest()
    if actual != MNIST_SHA256[name]:
        raise ValueError(
            f"{file}: sha256 of the uncompressed bytes does not match: expected "
            f"{MNIST_SHA256[name]}, got {actual}. The file is corrupt or not the standard "
            "MNIST; delete it (a cached copy is then downloaded again)."
        )
    return arr


def _check_validation(validation: Any) -> int:
    if (
        isinstance(validation, bool)
        or not isinstance(validation, numbers.Integral)
        or not 0 <= validation < _N_TRAIN_FILE
    ):
        raise ValueError(
            f"validation must be an int in [0, {_N_TRAIN_FILE}), got {validation!r}"
        )
    return int(validation)


def _to_split(images: np.ndarray, labels: np.ndarray) -> Split:
    x = images.reshape(len(images), 28 * 28).astype(np.float32)
    x /= np.float32(255)
    return x, labels.astype(np.int64)


def load_mnist(
    path: PathLike | None = None,
    *,
    validation: int = 10000,
    download: bool = True,
    mirrors: Sequence[str] = MIRRORS,
    verbose: bool = True,
) -> tuple[Split, Split, Split]:
    """Load MNIST as ``(train, val, test)``, each ``(x: float32[n, 784] in [0, 1], y: int64[n])``.

    ``validation``: how many of the *last* training-file images form the validation set (the
    book's 10,000; 0 gives empty ``(0, 784)`` / ``(0,)`` arrays); the rest are ``train``.
    ``path``: a directory holding the four IDX files (``.gz`` or raw); if given, nothing else is
    searched and nothing downloaded. Otherwise ``$FASTNET_DATA`` then ``default_data_dir()`` are
    searched and missing files downloaded into the latter (unless ``download=False``), one
    stderr line per file if ``verbose``. Raises MNISTNotFoundError (a FileNotFoundError) listing
    where it looked, or ValueError for a truncated/corrupt file or a checksum mismatch.
    """
    validation = _check_validation(validation)
    files = _locate(path, download, mirrors, verbose)
    # Small files first, so a bad label file is reported before 47 MB are decompressed.
    order = (_TEST_LABELS, _TRAIN_LABELS, _TEST_IMAGES, _TRAIN_IMAGES)
    raw = {name: _load_verified(files[name], name) for name in order}
    for images, labels in ((_TRAIN_IMAGES, _TRAIN_LABELS), (_TEST_IMAGES, _TEST_LABELS)):
        if len(raw[images]) != len(raw[labels]):
            raise ValueError(
                f"{files[images]} holds {len(raw[images])} images but {files[labels]} holds "
                f"{len(raw[labels])} labels"
            )
    n_train = len(raw[_TRAIN_IMAGES])
    if validation >= n_train:
        raise ValueError(f"validation={validation} leaves no training images (file has {n_train})")
    cut = n_train - validation
    images, labels = raw[_TRAIN_IMAGES], raw[_TRAIN_LABELS]
    train = _to_split(images[:cut], labels[:cut])
    val = _to_split(images[cut:], labels[cut:])
    return train, val, _to_split(raw[_TEST_IMAGES], raw[_TEST_LABELS])


# --------------------------------------------------------------------------- book pickle


def _numpy_core(attr: str) -> Any:
    """``numpy._core.multiarray.<attr>`` (numpy >= 2), else ``numpy.core.multiarray.<attr>``.

    Resolving ``numpy.core`` names to ``numpy._core`` avoids numpy 2's deprecation warning.
    """
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray  # type: ignore[no-redef]
    return getattr(multiarray, attr)


def _latin1_encode(obj: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` restricted to latin-1: how Python 3 protocol-2 pickles store bytes."""
    if encoding.lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1"):
        raise pickle.UnpicklingError(f"forbidden encoding in pickle: _codecs.encode({encoding!r})")
    return obj.encode("latin1")


_PICKLE_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: _latin1_encode,
}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    for _attr in ("_reconstruct", "scalar"):
        _PICKLE_ALLOWED[(_mod, _attr)] = lambda _attr=_attr: _numpy_core(_attr)
for _mod in ("builtins", "__builtin__"):  # Python 2 pickles name the module __builtin__
    for _attr, _obj in (("tuple", tuple), ("list", list)):
        _PICKLE_ALLOWED[(_mod, _attr)] = lambda _obj=_obj: _obj
del _mod, _attr, _obj


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays, tuples and lists, and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _PICKLE_ALLOWED[(module, name)]()
        except KeyError:
            raise pickle.UnpicklingError(
                f"forbidden global in pickle: {module}.{name} (only numpy arrays are allowed)"
            ) from None


def load_mnist_pickle(path: PathLike) -> tuple[Split, Split, Split]:
    """Load the book's ``mnist.pkl.gz`` (gzipped or raw) as ``(train, val, test)``.

    The file is a Python 2 pickle of ``((tr_x, tr_y), (va_x, va_y), (te_x, te_y))``. It is read
    with a restricted unpickler that only rebuilds numpy arrays, so a malicious file raises
    ``pickle.UnpicklingError`` instead of running code. Returns ``x: float32[n, 784]`` (values
    as stored, the book's are in [0, 1)) and ``y: int64[n]``.
    """
    name = os.fspath(path)
    raw = _decompress_if_gzip(Path(name).read_bytes(), name)
    try:
        obj = _ArrayOnlyUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except EOFError as e:
        raise ValueError(f"{name}: pickle is truncated ({e})") from e
    try:
        splits = tuple((x, y) for x, y in obj)
        if len(splits) != 3:
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected ((tr_x, tr_y), (va_x, va_y), (te_x, te_y))") from None
    out = []
    for label, (x, y) in zip(("train", "val", "test"), splits):
        if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray)):
            raise ValueError(f"{name}: {label} split does not hold numpy arrays")
        if x.ndim != 2 or x.shape[1] != 784 or y.shape != (len(x),):
            raise ValueError(f"{name}: {label} split has shapes {x.shape}, {y.shape}")
        if y.dtype.kind not in "iu" or (y.size and (y.min() < 0 or y.max() > 9)):
            raise ValueError(f"{name}: {label} labels must be integers in 0..9")
        out.append((np.ascontiguousarray(x, np.float32), np.ascontiguousarray(y, np.int64)))
    return out[0], out[1], out[2]


def expand_by_shifts(x, y, *, seed: int | None = 0) -> Split:
    """The book's ``expand_mnist.py``: each 28×28 image, then its four copies shifted by one
    pixel (down, up, right, left; the pixels shifted in are 0), all the pairs shuffled once.

    ``x``: float (n, 784) images, ``y``: (n,) labels. Returns ``(x5, y5)`` with 5n rows, the
    same dtypes. ``seed`` seeds the shuffle (NumPy's generator; ``None``: fresh entropy). The
    book shuffles with Python's ``random``, so the order differs from a book run; the set of
    images is the same."""
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 2 or x.shape[1] != 784:
        raise ValueError(f"x must be MNIST images of shape (n, 784), got {x.shape}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"y must be labels of shape ({x.shape[0]},), got {y.shape}")
    img = x.reshape(-1, 28, 28)
    out = np.zeros((x.shape[0], 5, 28, 28), dtype=x.dtype)
    out[:, 0] = img
    out[:, 1, 1:, :] = img[:, :-1, :]  # down: row 0 is new
    out[:, 2, :-1, :] = img[:, 1:, :]  # up: row 27 is new
    out[:, 3, :, 1:] = img[:, :, :-1]  # right: column 0 is new
    out[:, 4, :, :-1] = img[:, :, 1:]  # left: column 27 is new
    x5 = out.reshape(-1, 784)
    y5 = np.repeat(y, 5)
    perm = np.random.default_rng(seed).permutation(len(y5))
    return x5[perm], y5[perm]
