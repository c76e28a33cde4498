"""MNIST and Fashion-MNIST loading: the four IDX files (gzipped or raw) and the book's
``mnist.pkl.gz``; and ``expand_by_shifts``, the book's ``expand_mnist.py``.

``load_mnist()`` returns ``(train, val, test)``, each a pair ``(x, y)`` with
``x: float32[n, 784]`` in [0, 1] (uint8 / 255) and ``y: int64[n]`` in 0..9: the first 50,000
training images for training, the last 10,000 for validation, the 10,000 t10k images for test.
Files are looked for in the ``path`` argument (only there, never downloading), else
``$FASTNET_DATA``, then the per-user cache (``default_data_dir()``), downloading what is missing
into the cache; every file's sha256 (of the uncompressed bytes) is checked on each load. Every
file is read as untrusted: a bad file raises ValueError naming it, before anything large is
allocated. Nothing happens at import time: no I/O, no network. ``load_fashion_mnist()`` is the
same for Fashion-MNIST (same file names and format; its own ``$FASTNET_FASHION_DATA``, cache
directory, mirrors and checksums, which are of the distributed ``.gz`` files).

IDX parsing (gzipped or raw, as untrusted input) lives in ``fastnet/idx.py``. Twin: none (I/O).
Tests: ``tests/test_datasets.py``, ``tests/test_hostile_data.py``. The
loading rules: docs/guide.md; why the checks are made as they are: docs/design.md.
"""

from __future__ import annotations

import hashlib
import numbers
import os
import sys
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np

from fastnet import _http
from fastnet.idx import _GZIP_MAGIC, _decode_idx, _gunzip, read_idx
from fastnet.savefile import write_atomic

__all__ = [
    "MNIST_SHA256",
    "MIRRORS",
    "MNISTNotFoundError",
    "default_data_dir",
    "read_idx",
    "load_mnist",
    "load_fashion_mnist",
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

# Fashion-MNIST (Xiao, Rasul, Vollgraf 2017): the same four file names as MNIST. Its checksums
# are of the distributed .gz files: the MD5s as published in the official README
# (https://github.com/zalandoresearch/fashion-mnist, "Get the Data"; torchvision's FashionMNIST
# lists the same), the SHA-256s as listed by two independent loaders (batchup's
# datasets/fashion_mnist.py and an EMNIST/MNIST hash table) — both are checked.
FASHION_MNIST_GZ_MD5: dict[str, str] = {
    "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
}
FASHION_MNIST_GZ_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
    "train-labels-idx1-ubyte": "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
    "t10k-images-idx3-ubyte": "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
    "t10k-labels-idx1-ubyte": "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf",
}
#: The official locations (the README's download links): the repository, then the S3 site.
FASHION_MIRRORS: tuple[str, ...] = (
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
)

_TRAIN_IMAGES, _TRAIN_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
_TEST_IMAGES, _TEST_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"
_N_TRAIN_FILE = 60000  # images in the standard training file: bounds `validation`
# urllib has one timeout for connecting and for each read; they are split (see _opener) so that
# a mirror behind a firewall that drops packets costs a few seconds, not a minute, while a slow
# but live transfer still gets time.
_HOW_TO_POINT = ("point fastnet at a directory holding the four IDX files (gzipped or raw): "
                 "load_mnist(path='/dir'), FASTNET_DATA=/dir, or on the command line --data DIR")



class MNISTNotFoundError(FileNotFoundError):
    """The MNIST files are neither where fastnet looked nor downloadable.

    Besides the message: ``missing`` (file names), ``looked`` (``(directory, why)`` pairs, in
    the order searched) and ``failures`` (one line per failed download), for a caller that
    words its own message (the command line prints one line).
    """

    missing: tuple[str, ...] = ()
    looked: tuple[tuple[Path, str], ...] = ()
    failures: tuple[str, ...] = ()


def default_data_dir(dataset: str = "mnist") -> Path:
    """The per-user cache directory for MNIST (``dataset="fashion-mnist"``: Fashion-MNIST's;
    not created here).

    ``$FASTNET_CACHE`` if set (Fashion-MNIST: its ``fashion-mnist`` subdirectory); on Windows
    ``%LOCALAPPDATA%\\fastnet\\<dataset>``; elsewhere ``$XDG_CACHE_HOME/fastnet/<dataset>``,
    else ``~/.cache/fastnet/<dataset>``.
    """
    if dataset not in ("mnist", "fashion-mnist"):
        raise ValueError(f"dataset must be 'mnist' or 'fashion-mnist', got {dataset!r}")
    if os.environ.get("FASTNET_CACHE"):
        cache = Path(os.environ["FASTNET_CACHE"]).expanduser()
        return cache if dataset == "mnist" else cache / dataset
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "fastnet" / dataset
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "fastnet" / dataset


class _Kind:
    """What differs between MNIST and Fashion-MNIST: the environment variable and cache
    directory searched, the mirrors, and how a file's bytes are verified."""

    def __init__(self, title: str, dataset: str, env: str) -> None:
        self.title, self.dataset, self.env = title, dataset, env
        self.gz_only = dataset != "mnist"   # Fashion-MNIST's checksums are of the .gz files

    def cache(self) -> Path:
        return default_data_dir(self.dataset)

    def mirrors(self) -> tuple[str, ...]:
        return MIRRORS if self.dataset == "mnist" else FASHION_MIRRORS

    def mismatch(self, name: str, raw: bytes, uncompressed_sha256: str | None) -> str | None:
        """Why ``raw`` (a file's bytes, as stored) is not the standard file ``name``, or None."""
        if not self.gz_only:
            if uncompressed_sha256 == MNIST_SHA256[name]:
                return None
            return f"sha256 mismatch: expected {MNIST_SHA256[name]}, got {uncompressed_sha256}"
        if raw[:2] != _GZIP_MAGIC:
            return (f"not gzipped: {self.title}'s published checksums are of the distributed "
                    f"{name}.gz files")
        for algo, table in (("sha256", FASHION_MNIST_GZ_SHA256), ("md5", FASHION_MNIST_GZ_MD5)):
            actual = hashlib.new(algo, raw).hexdigest()
            if actual != table[name]:
                return f"{algo} of the .gz file mismatch: expected {table[name]}, got {actual}"
        return None


_MNIST = _Kind("MNIST", "mnist", "FASTNET_DATA")
_FASHION = _Kind("Fashion-MNIST", "fashion-mnist", "FASTNET_FASHION_DATA")


# --------------------------------------------------------------------------- locating files


def _find_local(name: str, dirs: Sequence[Path], gz_only: bool = False) -> Path | None:
    """The first existing ``<dir>/<name>`` or ``<dir>/<name>.gz`` (raw preferred: faster;
    ``gz_only``: only the latter)."""
    for d in dirs:
        for fname in (name + ".gz",) if gz_only else (name, name + ".gz"):
            if (d / fname).is_file():
                return d / fname
    return None


def _download(name: str, dest_dir: Path, mirrors: Sequence[str], verbose: bool,
              dead: set[str], kind: _Kind = _MNIST) -> Path:
    """Fetch ``<name>.gz`` from the first mirror serving bytes with the right sha256.

    The whole response is held in memory and verified before anything is written, so a failed
    or wrong download leaves nothing behind. ``verbose``: one stderr line per mirror tried.
    Mirrors in ``dead`` are skipped, and a mirror that cannot be reached is added to it.
    Raises ValueError if some mirror served bytes with the wrong hash and none served good ones;
    OSError if no mirror could be reached.
    """
    import http.client

    fname = name + ".gz"
    errors: list[str] = []
    bad_hash: str | None = None
    opener = _http.opener()
    for base in mirrors:
        url = base.rstrip("/") + "/" + fname
        if base in dead:
            errors.append(f"{url}: not tried (the mirror was unreachable for an earlier file)")
            continue
        if verbose:
            print(f"fastnet: downloading {url} ... ", end="", file=sys.stderr, flush=True)
        try:
            blob = _http.fetch(opener, url)
            _, actual = _decode_idx(blob, url, digest=True)
        except (OSError, ValueError, http.client.HTTPException) as e:
            if _http.unreachable(e):
                dead.add(base)
            reason = (str(e).removeprefix(f"{url}: ") if isinstance(e, ValueError)
                      else f"{type(e).__name__}: {e}")
        else:
            reason = kind.mismatch(name, blob, actual)
            if reason is None:
                dest = dest_dir / fname
                dest_dir.mkdir(parents=True, exist_ok=True)
                write_atomic(dest, lambda f: f.write(blob))
                if verbose:
                    print(f"done ({len(blob) / 1e6:.1f} MB)", file=sys.stderr, flush=True)
                return dest
            bad_hash = reason
        errors.append(f"{url}: {reason}")
        if verbose:
            print(f"failed: {reason}", file=sys.stderr, flush=True)
    detail = "\n  ".join(errors) or "no mirrors given"
    if bad_hash is not None:
        raise ValueError(f"download of {fname} failed checksum verification:\n  {detail}")
    raise OSError(f"could not download {fname}:\n  {detail}")


def _not_found(missing: list[str], looked: list[tuple[Path, str]], failures: list[str],
               kind: _Kind = _MNIST) -> str:
    lines = [f"{kind.title} files not found: " + ", ".join(f"{m}[.gz]" for m in missing),
             "Looked in:"]
    for d, why in looked:
        state = "" if d.is_dir() else " (no such directory)"
        lines.append(f"  {d}  [{why}]{state}")
    if failures:
        lines.append("Download failed:")
        lines += [f"  {line}" for f in failures for line in f.splitlines()]
    how = _HOW_TO_POINT.replace("FASTNET_DATA", kind.env)
    lines.append(how[0].upper() + how[1:] + ".")
    return "\n".join(lines)


def _locate(
    path: PathLike | None, download: bool, mirrors: Sequence[str], verbose: bool,
    kind: _Kind = _MNIST,
) -> dict[str, Path]:
    """Map each MNIST file name to an existing local file, downloading into the cache if allowed."""
    looked: list[tuple[Path, str]] = []
    if path is not None:
        looked.append((Path(path).expanduser(), "path argument"))
        download = False  # an explicit path is a promise that the files are there
    else:
        if os.environ.get(kind.env):
            looked.append((Path(os.environ[kind.env]).expanduser(), f"${kind.env}"))
        cache = kind.cache()
        if cache not in [d for d, _ in looked]:
            looked.append((cache, "cache"))
    dirs = [d for d, _ in looked]
    found = {name: _find_local(name, dirs, kind.gz_only) for name in MNIST_SHA256}
    missing = [name for name, f in found.items() if f is None]
    failures: list[str] = []
    if missing and download:
        dead: set[str] = set()
        for name in missing:
            try:
                found[name] = _download(name, kind.cache(), mirrors, verbose, dead, kind)
            except OSError as e:
                failures.append(f"{name}: {e}")
        missing = [name for name, f in found.items() if f is None]
    if missing:
        if not download and path is None:
            failures.append("download disabled (download=False)")
        err = MNISTNotFoundError(_not_found(missing, looked, failures, kind))
        err.missing, err.looked, err.failures = tuple(missing), tuple(looked), tuple(failures)
        raise err
    return found  # type: ignore[return-value]


# --------------------------------------------------------------------------- loading


def _load_verified(file: Path, name: str, kind: _Kind = _MNIST) -> np.ndarray:
    """Read, parse and check one MNIST file: shape, label range, then its checksum."""
    raw = file.read_bytes()
    arr, actual = _decode_idx(raw, str(file), digest=not kind.gz_only)
    if arr.dtype != np.uint8:
        raise ValueError(f"{file}: expected uint8 elements, got {arr.dtype}")
    if "images" in name and (arr.ndim != 3 or arr.shape[1:] != (28, 28)):
        raise ValueError(f"{file}: expected images of shape (n, 28, 28), got {arr.shape}")
    if "labels" in name:
        if arr.ndim != 1:
            raise ValueError(f"{file}: expected labels of shape (n,), got {arr.shape}")
        if arr.size and arr.max() > 9:
            raise ValueError(f"{file}: labels must be in 0..9, found {int(arr.max())}")
    if kind.gz_only:
        reason = kind.mismatch(name, raw, None)
        if reason is not None:
            raise ValueError(f"{file}: {reason}. The file is corrupt or not the standard "
                             f"{kind.title}; delete it (a cached copy is then downloaded again).")
    elif actual != MNIST_SHA256[name]:
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
    mirrors: Sequence[str] | None = None,
    verbose: bool = True,
) -> tuple[Split, Split, Split]:
    """Load MNIST as ``(train, val, test)``, each ``(x: float32[n, 784] in [0, 1], y: int64[n])``.

    ``validation``: how many of the *last* training-file images form the validation set (the
    book's 10,000; 0 gives empty ``(0, 784)`` / ``(0,)`` arrays); the rest are ``train``.
    ``path``: a directory holding the four IDX files (``.gz`` or raw); if given, nothing else is
    searched and nothing downloaded. Otherwise ``$FASTNET_DATA`` then ``default_data_dir()`` are
    searched and missing files downloaded into the latter (unless ``download=False``) from
    ``mirrors`` (base URLs; default ``MIRRORS``), one stderr line per URL tried if ``verbose``.
    A mirror that cannot be reached within a few seconds is not asked again for the other files.
    Raises MNISTNotFoundError (a FileNotFoundError) listing where it looked, what failed and how
    to point fastnet at local files, or ValueError for a truncated/corrupt file or a checksum
    mismatch.
    """
    return _load(_MNIST, path, validation, download, mirrors, verbose)


def load_fashion_mnist(
    path: PathLike | None = None,
    *,
    validation: int = 10000,
    download: bool = True,
    mirrors: Sequence[str] | None = None,
    verbose: bool = True,
) -> tuple[Split, Split, Split]:
    """Load Fashion-MNIST as ``load_mnist`` loads MNIST (same splits, forms and errors; labels
    0..9 are T-shirt/top, trouser, pullover, dress, coat, sandal, shirt, sneaker, bag, ankle
    boot). Searched: ``path``, else ``$FASTNET_FASHION_DATA`` then
    ``default_data_dir("fashion-mnist")``, downloading into the latter from ``FASHION_MIRRORS``.
    The files must be the distributed ``<name>.gz`` files: their published MD5 and SHA-256 are
    of the compressed bytes, and both are checked on every load."""
    return _load(_FASHION, path, validation, download, mirrors, verbose)


def _load(kind: _Kind, path, validation, download, mirrors, verbose) -> tuple[Split, Split, Split]:
    validation = _check_validation(validation)
    files = _locate(path, download, kind.mirrors() if mirrors is None else mirrors, verbose, kind)
    # Small files first, so a bad label file is reported before 47 MB are decompressed.
    order = (_TEST_LABELS, _TRAIN_LABELS, _TEST_IMAGES, _TRAIN_IMAGES)
    raw = {name: _load_verified(files[name], name, kind) for name in order}
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


def load_mnist_pickle(path: PathLike) -> tuple[Split, Split, Split]:
    """Load the book's ``mnist.pkl.gz`` (gzipped or raw) as ``(train, val, test)``.

    The file is a Python 2 pickle of ``((tr_x, tr_y), (va_x, va_y), (te_x, te_y))``. It is read
    without running it: only numpy arrays of plain numeric dtypes in tuples and lists are rebuilt
    (``fastnet._safe_pickle``), so a malicious file raises ``pickle.UnpicklingError`` instead of
    running code. Returns ``x: float32[n, 784]`` (values as stored, the book's are in [0, 1))
    and ``y: int64[n]`` (digits 0..9). Every refusal names the file and is a ValueError
    (refused globals and dtypes are also ``pickle.UnpicklingError``); a missing file raises
    FileNotFoundError. A gzipped file may expand to at most 100 times its size (or 4 MiB).
    """
    from fastnet._safe_pickle import load_arrays  # lazy: pickletools and friends

    name = os.fspath(path)
    raw = Path(name).read_bytes()
    data = _gunzip(raw, name) if raw[:2] == _GZIP_MAGIC else raw
    del raw
    obj = load_arrays(data, name)
    del data  # the arrays view the unpickler's copies of their bytes, not these
    if not (isinstance(obj, (tuple, list)) and len(obj) == 3 and all(
            isinstance(s, (tuple, list)) and len(s) == 2
            and all(isinstance(a, np.ndarray) for a in s) for s in obj)):
        raise ValueError(f"{name}: expected ((tr_x, tr_y), (va_x, va_y), (te_x, te_y)), a tuple "
                         "of three pairs of arrays")
    # Every shape and dtype first: the conversions below allocate only for a consistent file.
    for label, (x, y) in zip(("train", "val", "test"), obj):
        if x.ndim != 2 or x.shape[1] != 784 or y.shape != (len(x),):
            raise ValueError(f"{name}: {label} split has shapes {x.shape}, {y.shape}; expected "
                             "(n, 784) images and (n,) labels")
        if y.dtype.kind not in "iu":
            raise ValueError(f"{name}: {label} labels are {y.dtype}, expected integers 0..9")
    out = []
    for label, (x, y) in zip(("train", "val", "test"), obj):
        if y.size and (y.min() < 0 or y.max() > 9):
            raise ValueError(f"{name}: {label} labels must be integers in 0..9")
        with np.errstate(over="ignore", invalid="ignore"):  # checked just below
            x32 = np.array(x, dtype=np.float32)  # a writable copy, also of float32 input
        if not np.isfinite(x32).all():
            raise ValueError(f"{name}: {label} images hold NaN or infinite values (or values "
                             "beyond float32's range)")
        out.append((x32, np.array(y, dtype=np.int64)))
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
