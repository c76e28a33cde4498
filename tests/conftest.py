"""Shared fixtures. MNIST is found via $FASTNET_DATA, else <repo>/../shared/data/mnist; tests
that need it are skipped (with the reason) when neither holds it — except in CI ($CI set, as CI
services set it), where a missing data set fails the run: the comparisons with the book must
run there, not disappear as skips."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MNIST_DIR = Path(os.environ.get("FASTNET_DATA") or REPO.parent / "shared" / "data" / "mnist")


def in_ci() -> bool:
    """Whether this run is CI's: $CI set to anything but "", "0", "false" or "no"."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _ci_failure(reason: str) -> str:
    return (f"{reason}; CI={os.environ.get('CI')!r}: in CI a missing data set fails the run "
            "instead of skipping the tests that need it")


def skip_or_fail_without_mnist(reason: str) -> None:
    """Skip the test for a missing MNIST — or, in CI, fail it."""
    if in_ci():
        pytest.fail(_ci_failure(reason), pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    if not (MNIST_DIR / "train-images-idx3-ubyte.gz").exists() and \
            not (MNIST_DIR / "train-images-idx3-ubyte").exists():
        skip_or_fail_without_mnist(f"MNIST not found in {MNIST_DIR} (set FASTNET_DATA to its "
                                   "directory)")
    return MNIST_DIR


@pytest.fixture(scope="session")
def mnist(mnist_dir):
    """``(train, val, test)`` as returned by ``fastnet.datasets.load_mnist``."""
    from fastnet.datasets import load_mnist
    return load_mnist(mnist_dir)


def pytest_xdist_auto_num_workers(config):
    """``pytest -n auto`` (the README's test command): one worker per core, at most four. The
    suite's time is mostly compiling kernels, one core per worker; each worker compiles what
    it needs unless another has already written it to the kernel cache."""
    return max(1, min(os.cpu_count() or 1, 4))


def pytest_configure(config):
    """With workers (``-n``) and no ``--dist`` of the caller's, whole files go to one worker
    (xdist's ``loadfile``): a file's tests share the kernels they compile."""
    if getattr(config.option, "numprocesses", None) and config.option.dist == "load" and \
            not any(a == "--dist" or a.startswith("--dist=") or a == "-d"
                    for a in config.invocation_params.args):
        config.option.dist = "loadfile"
