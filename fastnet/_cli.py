"""What the command line's modules share: the usage error (exit status 2, one short message),
checks of the files a command will write, loading a data set, and optional extras."""

from __future__ import annotations

import importlib
import os
import tempfile
from pathlib import Path

_DATA_HINT = ("point --data DIR (or {env}=DIR) at a directory holding the four {title} "
              "IDX files (train-images-idx3-ubyte.gz etc.{raw})")


class UsageError(Exception):
    """An argument or the environment is wrong: printed as one ``fastnet: error:`` line."""


def needs(module: str, extra: str, what: str):
    """``import module``, or a UsageError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(f"{what} needs {module.split('.')[0]}, which is not installed: "
                         f"pip install 'fastnet[{extra}]'") from None


def check_writable(path: str, flag: str = "--save") -> None:
    """Refuse a destination that cannot be written, before hours of training."""
    dest = Path(path).expanduser()
    if dest.is_dir():
        raise UsageError(f"{flag} {path}: is a directory; give a file name like model.npz")
    directory = dest.parent
    if not directory.is_dir():
        what = "is not a directory" if directory.exists() else "does not exist"
        raise UsageError(f"{flag} {path}: {directory} {what}")
    try:  # what saving does (a temporary file beside the destination), as root too
        fd, probe = tempfile.mkstemp(prefix=".fastnet-", suffix=".probe", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UsageError(f"{flag} {path}: cannot write in {directory} ({e.strerror})") from None


def not_found_message(err, dataset: str = "mnist") -> str:
    places = ", ".join(f"{d} ({'no such directory' if not d.is_dir() else 'files missing'})"
                       for d, _ in err.looked) or "nowhere"
    download = "; downloading failed (see above)" if err.failures else ""
    title, env, raw = (("MNIST", "FASTNET_DATA", ", gzipped or raw") if dataset == "mnist" else
                       ("Fashion-MNIST", "FASTNET_FASHION_DATA", ", gzipped"))
    hint = _DATA_HINT.format(env=env, title=title, raw=raw)
    return f"{title} not found in {places}{download}\nfastnet: {hint}"


def load_data(dataset: str, path):
    """``(train, val, test)`` of ``dataset`` from ``path``; missing or bad files are usage
    errors."""
    from fastnet import datasets
    load = datasets.load_mnist if dataset == "mnist" else datasets.load_fashion_mnist
    try:
        return load(path)
    except datasets.MNISTNotFoundError as exc:
        raise UsageError(not_found_message(exc, dataset)) from None
    except ValueError as exc:  # a corrupt or wrong file: the message names it
        raise UsageError(str(exc)) from None


