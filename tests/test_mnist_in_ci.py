"""A missing MNIST skips the tests that need it — and fails them in CI ($CI set), so that the
comparisons with the book cannot silently drop out of a CI run: through the ``mnist_dir``
fixture (tests/conftest.py, which test_datasets.py uses too) and through the benchmarks' MNIST
fixture (bench/conftest.py). Each case runs pytest on
one test in a subprocess with FASTNET_DATA pointing at an empty directory."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import in_ci

REPO = Path(__file__).resolve().parent.parent

NEEDS_MNIST = [
    "tests/test_mnist_loader.py::test_load_data_is_the_books_split",      # the mnist_dir fixture
    "tests/test_datasets.py::test_shapes_and_dtypes",                     # the mnist fixture
    "bench/test_epochs.py::test_dropin_network_ch1",                      # bench/conftest.py
]


def run_without_mnist(tmp_path: Path, ci: str | None):
    """pytest on the NEEDS_MNIST tests in a subprocess, FASTNET_DATA an empty directory and $CI
    as given (unset for None): its exit status and output."""
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["FASTNET_DATA"] = str(tmp_path)
    if ci is not None:
        env["CI"] = ci
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider",
                        "--benchmark-disable", *NEEDS_MNIST], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
    return r.returncode, r.stdout + r.stderr


def test_missing_mnist_skips_outside_ci_and_fails_in_ci(tmp_path):
    rc, out = run_without_mnist(tmp_path, None)
    assert rc == 0 and "3 skipped" in out and "MNIST not found in" in out, out[-3000:]
    rc, out = run_without_mnist(tmp_path, "true")
    assert rc == 1 and "skipped" not in out.splitlines()[-1], out[-3000:]
    reported = [line.split(" - ")[0].split()[-1] for line in out.splitlines()
                if line.startswith(("FAILED ", "ERROR "))]
    assert sorted(reported) == sorted(NEEDS_MNIST), out[-3000:]
    assert out.count("in CI a missing data set fails the run") >= 3, out[-3000:]


@pytest.mark.parametrize("value,ci", [("true", True), ("1", True), ("yes", True),
                                      ("True", True), ("", False), ("0", False),
                                      ("false", False), ("no", False)])
def test_ci_is_any_value_but_off(value, ci, monkeypatch):
    monkeypatch.setenv("CI", value)
    assert in_ci() is ci
    monkeypatch.delenv("CI")
    assert not in_ci()
