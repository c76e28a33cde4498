"""Shared fixtures. MNIST is found via $FASTNET_DATA, else <repo>/../shared/data/mnist; tests
that need it are skipped (with the reason) when neither holds it."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MNIST_DIR = Path(os.environ.get("FASTNET_DATA") or REPO.parent / "shared" / "data" / "mnist")


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    if not (MNIST_DIR / "train-images-idx3-ubyte.gz").exists() and \
            not (MNIST_DIR / "train-images-idx3-ubyte").exists():
        pytest.skip(f"MNIST not found in {MNIST_DIR} (set FASTNET_DATA to its directory)")
    return MNIST_DIR


@pytest.fixture(scope="session")
def mnist(mnist_dir):
    """``(train, val, test)`` as returned by ``fastnet.datasets.load_mnist``."""
    from fastnet.datasets import load_mnist
    return load_mnist(mnist_dir)
