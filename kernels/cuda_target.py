"""The CUDA target (numba-cuda), reached lazily: the one module that imports ``numba.cuda`` for
fastnet's own code (the CUDA kernel modules and the ``"cuda"`` device).

Importing ``fastnet`` never imports ``numba.cuda``. ``require_cuda()``, called the first time a
model asks for ``device="cuda"``, returns the ``numba.cuda`` module or raises one
``RuntimeError`` that says what is missing and how to fix it; ``is_available()`` answers without
raising; ``to_device``/``to_host`` move arrays. ``apply_numpy_shim()`` defines ``np.row_stack``
as ``np.vstack`` where NumPy (>= 2.5) no longer has it (numba-cuda 0.30.4 calls it while
compiling). Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1`` before numba is first imported)
counts as available: CI runs the CUDA kernels there.

NumPy twin: none. Tests: ``tests/test_cli.py`` and ``tests/test_dense_cuda.py`` (the errors
without numba-cuda or a GPU; ``import fastnet`` leaves ``numba.cuda`` alone).
"""

from __future__ import annotations

import os
from types import ModuleType

import numpy as np

_INSTALL_HINT = "pip install 'fastnet[cuda]'"  # the extra that installs numba-cuda
# For users of the API and of the command line alike.
_CPU_HINT = "use device='cpu' (command line: --device cpu)"


def apply_numpy_shim() -> None:
    """Define ``np.row_stack`` as ``np.vstack`` where numpy (>= 2.5) no longer has it."""
    if not hasattr(np, "row_stack"):
        np.row_stack = np.vstack


def simulator_enabled() -> bool:
    """True when Numba's CUDA simulator is (or will be) in use in this process."""
    try:
        from numba.core import config
        return bool(config.ENABLE_CUDASIM)
    except ImportError:  # no numba at all: fall back to what the environment asks for
        return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def _import_numba_cuda() -> ModuleType:
    apply_numpy_shim()
    try:
        from numba import cuda
    except ImportError as exc:  # numba-cuda, or its cuda-bindings, missing
        raise RuntimeError(
            "fastnet's CUDA backend needs numba-cuda, which could not be imported "
            f"({exc}). Install it with {_INSTALL_HINT}, or {_CPU_HINT}.") from exc
    return cuda


def _driver_problem() -> str | None:
    """Why the CUDA driver did not load (its first line), if numba recorded a reason."""
    try:
        from numba.cuda.cudadrv import driver
        error = driver.driver.initialization_error
    except Exception:  # a layout this does not know: no reason rather than a second error
        return None
    return str(error).strip().splitlines()[0].rstrip(".") if error else None


def _unavailable_message(cuda: ModuleType) -> str:
    """What is missing when ``cuda.is_available()`` is False: numba-cuda (only numba's
    built-in CUDA target, which fastnet does not use, is there) and/or a driver or GPU."""
    problem = _driver_problem()
    hardware = (f"the CUDA driver could not be loaded ({problem})" if problem else
                "no CUDA GPU was found, or the NVIDIA driver is too old")
    if getattr(cuda, "implementation", "Built-in") != "NVIDIA":
        return (f"fastnet's CUDA backend needs numba-cuda, which is not installed (only numba's "
                f"built-in CUDA target is), and {hardware}. On a machine with an NVIDIA GPU and "
                f"driver, install it: {_INSTALL_HINT}. Otherwise {_CPU_HINT}.")
    return (f"fastnet's CUDA backend found no usable CUDA GPU: numba-cuda is installed, but "
            f"{hardware} (`python -c \"from numba import cuda; cuda.detect()\"` says more). "
            f"{_CPU_HINT[0].upper() + _CPU_HINT[1:]}, or set NUMBA_ENABLE_CUDASIM=1 before numba "
            "is imported to run the kernels (slowly) in Numba's CUDA simulator.")


def require_cuda() -> ModuleType:
    """Return ``numba.cuda`` ready to compile fastnet's kernels, or raise RuntimeError.

    Raises when numba-cuda is not installed, or when no CUDA driver / GPU is usable (and the
    simulator is not enabled). The error names what is missing and the fix, for users of the
    API (``device='cpu'``) and of the command line (``--device cpu``).
    """
    cuda = _import_numba_cuda()
    if simulator_enabled():
        return cuda
    try:
        ok = bool(cuda.is_available())
    except Exception as exc:  # a broken driver install can raise instead of returning False
        raise RuntimeError(f"fastnet's CUDA backend: probing the CUDA driver failed: {exc}. "
                           f"{_CPU_HINT[0].upper() + _CPU_HINT[1:]}.") from exc
    if not ok:
        raise RuntimeError(_unavailable_message(cuda))
    return cuda


def is_available() -> bool:
    """True if ``require_cuda()`` would succeed (a GPU, or the simulator). Never raises."""
    try:
        require_cuda()
    except RuntimeError:
        return False
    return True


def on_device(a) -> bool:
    """True for numba device arrays, real or the simulator's (which lack
    ``__cuda_array_interface__``, so ``cuda.is_cuda_array`` does not see them)."""
    return bool(getattr(a, "__cuda_ndarray__", False))


def to_device(a):
    """A device copy of host array ``a`` (made C-contiguous); device arrays pass through."""
    if on_device(a):
        return a
    return require_cuda().to_device(np.ascontiguousarray(a))


def to_host(a) -> np.ndarray:
    return a.copy_to_host() if on_device(a) else np.asarray(a)
