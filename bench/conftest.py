"""Fixtures of the benchmark suite: MNIST (skipped with the reason when missing — failed in CI,
$CI set, where the benchmarks' smoke run must not disappear as skips; 1,000 images under
``FASTNET_BENCH_SMALL=1``), and the machine facts written into the JSON's
``machine_info["fastnet"]`` (load averages, versions, and the measured matrix-product peak when
the ``peak`` rows were filtered out of a timed run)."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np
import pytest

from bench import harness

REPO = Path(__file__).resolve().parent.parent
MNIST_DIR = Path(os.environ.get("FASTNET_DATA") or REPO.parent / "shared" / "data" / "mnist")
N_SMALL = 1000
_LOAD_AT_START: list = []
_STARTED: list = []


def pytest_sessionstart(session):
    _LOAD_AT_START[:] = list(os.getloadavg())
    _STARTED[:] = [time.perf_counter()]


@pytest.fixture(scope="session")
def _mnist_splits():
    if not (MNIST_DIR / "train-images-idx3-ubyte.gz").exists() and \
            not (MNIST_DIR / "train-images-idx3-ubyte").exists():
        reason = f"MNIST not found in {MNIST_DIR} (set FASTNET_DATA to its directory)"
        ci = os.environ.get("CI", "").strip().lower()
        if ci not in ("", "0", "false", "no"):   # as tests/conftest.py's in_ci()
            pytest.fail(f"{reason}; CI={ci!r}: in CI a missing data set fails the run",
                        pytrace=False)
        pytest.skip(reason)
    from fastnet.datasets import load_mnist
    return load_mnist(MNIST_DIR)


@pytest.fixture(scope="session")
def mnist(_mnist_splits):
    """``(x float32[n, 784], labels int64[n], targets float32[n, 10])``: the book's 50,000
    training images (the first 1,000 when small)."""
    (x, labels), _, _ = _mnist_splits
    if harness.SMALL:
        x, labels = x[:N_SMALL], labels[:N_SMALL]
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x, labels, np.eye(10, dtype=np.float32)[labels]


@pytest.fixture(scope="session")
def mnist_test(_mnist_splits):
    """``(x float32[n, 784], labels int64[n])``: the 10,000 test images (1,000 when small)."""
    _, _, (x, labels) = _mnist_splits
    if harness.SMALL:
        x, labels = x[:N_SMALL], labels[:N_SMALL]
    return np.ascontiguousarray(x, dtype=np.float32), labels


def _versions() -> dict:
    import numba
    out = {"python": platform.python_version(), "numpy": np.__version__,
           "numba": numba.__version__}
    for name in ("torch", "jax"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            pass
    return out


def pytest_benchmark_update_machine_info(config, machine_info):
    """Called when a timed run writes its JSON: record the load (this suite is often run on a
    shared machine) and the peak GFLOP/s that ``bench/report.py`` divides by."""
    args = " ".join(config.invocation_params.args)
    info = {"small": harness.SMALL, "cpu_count": os.cpu_count(),
            "command": f"python -m pytest {args}".strip(),
            "suite_seconds": time.perf_counter() - _STARTED[0] if _STARTED else None,
            "loadavg_start": _LOAD_AT_START, "loadavg_end": list(os.getloadavg()),
            "versions": _versions()}
    peaks = dict(harness.PEAKS)
    if not peaks:   # the peak rows were filtered out: a quick stand-in measurement
        for dtype in ("float32", "float64"):
            peaks[f"cpu-{dtype}"] = harness.measure_peak("cpu", dtype)
        if harness.gpu_blas():
            peaks["gpu-float32"] = harness.measure_peak("gpu", "float32")
        info["peak_source"] = "quick measurement at the end of the run (best of 3)"
    else:
        info["peak_source"] = "the peak rows of this run (best round)"
    info["peak_gflops"] = peaks
    machine_info["fastnet"] = info
