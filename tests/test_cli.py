"""The command line's ``fastnet train``, tried as a new user would: every usage error is a
short message and exit status 2, found before MNIST is loaded; missing data says where it
looked and how to point at the files. ``load_mnist`` is replaced by a small random look-alike
(``fake_mnist``) except in one end-to-end run on the real files."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from fastnet import datasets
from fastnet.kernels import cuda_target as _cuda
from helpers import run_cli as run
from offline import closed_port_url, isolate

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("FASTNET_DATA") or REPO.parent / "shared" / "data" / "mnist")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """Every test offline, with a private cache (``offline.isolate``)."""
    isolate(monkeypatch, tmp_path)


@pytest.fixture
def fake_mnist(monkeypatch):
    """``load_mnist`` replaced by 40 train / 10 val / 20 test random images; returns the list
    of the ``path`` arguments it was called with."""
    calls: list = []
    rng = np.random.default_rng(0)

    def fake_load_mnist(path=None, **kwargs):
        calls.append(path)
        return tuple((rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n))
                     for n in (40, 10, 20))

    monkeypatch.setattr(datasets, "load_mnist", fake_load_mnist)
    return calls


def _short_error(rc: int, out: str, err: str) -> None:
    assert rc == 2, (rc, out, err)
    assert "Traceback" not in err and out == ""
    assert 1 <= len(err.splitlines()) <= 3, err


# --------------------------------------------------------------------------- missing data


def test_missing_data_dir_is_one_short_error(tmp_path, capsys):
    where = tmp_path / "nonexistent"
    rc, out, err = run(["train", "--data", str(where)], capsys)
    _short_error(rc, out, err)
    first = err.splitlines()[0]
    assert first.startswith("fastnet: error: MNIST not found in ") and str(where) in first
    assert "no such directory" in first
    assert "--data DIR" in err and "FASTNET_DATA=DIR" in err


def test_missing_data_without_network(capsys):
    """Nothing local, the mirror unreachable: one stderr line for the mirror tried (the other
    three files do not ask it again), then the error and how to point at the files."""
    rc, out, err = run(["train", "--epochs", "1"], capsys)
    assert rc == 2 and out == "" and "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 3, err
    assert lines[0].startswith("fastnet: downloading ") and "refused" in lines[0]
    assert lines[1].startswith("fastnet: error: MNIST not found in ")
    assert "downloading failed" in lines[1]
    assert "--data DIR" in lines[2] and "FASTNET_DATA=DIR" in lines[2]


# --------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize("args, message", [
    (["--epochs", "-1"], "--epochs: expected an integer >= 1"),
    (["--epochs", "0"], "--epochs: expected an integer >= 1"),
    (["--epochs", "two"], "--epochs: expected an integer >= 1"),
    (["--batch-size", "0"], "--batch-size: expected an integer >= 1"),
    (["--lr", "0"], "--lr: expected a finite number > 0"),
    (["--lr", "-3"], "--lr: expected a finite number > 0"),
    (["--lr", "nan"], "--lr: expected a finite number > 0"),
    (["--lr", "inf"], "--lr: expected a finite number > 0"),
    (["--lmbda", "-1"], "--lmbda: expected a finite number >= 0"),
    (["--seed", "-1"], "--seed: expected an integer >= 0"),
    (["--sizes", "10,10"], "sizes must start with 784"),
    (["--activation", "bogus"], "activation must be one of"),
    (["--loss", "bogus"], "invalid choice"),
    (["--dtype", "float16"], "invalid choice"),
    (["--device", "tpu"], "device must be one of"),
    (["--save", "/nonexistent/m.npz"], "--save /nonexistent/m.npz: /nonexistent does not exist"),
])
def test_usage_errors_come_before_loading_mnist(fake_mnist, capsys, args, message):
    rc, out, err = run(["train", *args], capsys)
    _short_error(rc, out, err)
    assert message in err
    assert fake_mnist == []  # refused before MNIST was loaded (and no header printed)


def test_save_destination_checked_before_training(tmp_path, fake_mnist, capsys):
    rc, out, err = run(["train", "--save", str(tmp_path)], capsys)
    _short_error(rc, out, err)
    assert "is a directory" in err and fake_mnist == []
    not_a_dir = tmp_path / "file.txt"
    not_a_dir.write_text("x")
    rc, out, err = run(["train", "--save", str(not_a_dir / "m.npz")], capsys)
    _short_error(rc, out, err)
    assert f"{not_a_dir} is not a directory" in err and fake_mnist == []


def test_train_and_save(tmp_path, fake_mnist, capsys):
    dest = tmp_path / "m.npz"
    rc, out, err = run(["train", "--epochs", "2", "--sizes", "784,10", "--device", "numpy",
                        "--seed", "0", "--data", str(tmp_path), "--save", str(dest)], capsys)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("Training ") and "on 40 MNIST images: 2 epochs" in lines[0]
    assert lines[1].startswith("Epoch 1/2: ") and lines[2].startswith("Epoch 2/2: ")
    assert "/ 20 test accuracy" in lines[2] and lines[3].startswith("Test accuracy ")
    assert lines[4] == f"saved to {dest}"
    assert fake_mnist == [str(tmp_path)]
    with np.load(dest) as f:
        assert f["params"].size == 784 * 10 + 10


@pytest.mark.skipif(not (DATA_DIR / "train-images-idx3-ubyte.gz").exists(),
                    reason=f"MNIST not found in {DATA_DIR}")
def test_end_to_end_on_mnist(monkeypatch, capsys):
    monkeypatch.setenv("FASTNET_DATA", str(DATA_DIR))
    # --init default: N(0, 1/n_in) weights (the ch1 preset's own are the book's N(0, 1))
    rc, out, err = run(["train", "--epochs", "1", "--sizes", "784,10", "--device", "numpy",
                        "--seed", "0", "--init", "default"], capsys)
    assert rc == 0, err
    lines = out.splitlines()
    assert "on 50000 MNIST images" in lines[0] and lines[1].startswith("Epoch 1/1: ")
    correct = int(lines[1].split()[2])
    assert 8000 < correct <= 10000  # a linear sigmoid net: ~90% after one epoch


# --------------------------------------------------------------------------- CUDA missing


def _fake_cuda(monkeypatch, implementation: str, driver_problem: str | None) -> None:
    fake = types.SimpleNamespace(implementation=implementation, is_available=lambda: False)
    monkeypatch.setattr(_cuda, "_import_numba_cuda", lambda: fake)
    monkeypatch.setattr(_cuda, "simulator_enabled", lambda: False)
    monkeypatch.setattr(_cuda, "_driver_problem", lambda: driver_problem, raising=False)


def test_device_cuda_with_only_numbas_builtin_target(monkeypatch, fake_mnist, capsys):
    _fake_cuda(monkeypatch, "Built-in", "CUDA driver library cannot be found")
    rc, out, err = run(["train", "--device", "cuda"], capsys)
    _short_error(rc, out, err)
    assert "needs numba-cuda, which is not installed (only numba's built-in CUDA target is)" in err
    assert "could not be loaded (CUDA driver library cannot be found)" in err
    assert "pip install 'fastnet[cuda]'" in err
    assert "device='cpu' (command line: --device cpu)" in err
    assert "numba-cuda is installed" not in err and fake_mnist == []


def test_device_cuda_with_numba_cuda_but_no_gpu(monkeypatch, fake_mnist, capsys):
    _fake_cuda(monkeypatch, "NVIDIA", None)
    rc, out, err = run(["train", "--device", "cuda"], capsys)
    _short_error(rc, out, err)
    assert "numba-cuda is installed, but no CUDA GPU was found" in err
    assert "device='cpu' (command line: --device cpu)" in err and fake_mnist == []


def test_cuda_message_when_numba_cuda_cannot_be_imported(monkeypatch):
    import numba

    monkeypatch.delattr(numba, "cuda", raising=False)
    monkeypatch.setitem(sys.modules, "numba.cuda", None)  # makes `from numba import cuda` fail
    with pytest.raises(RuntimeError) as exc:
        _cuda.require_cuda()
    msg = str(exc.value)
    assert "needs numba-cuda, which could not be imported" in msg
    assert "pip install 'fastnet[cuda]'" in msg and "--device cpu" in msg


def test_cuda_message_with_the_real_builtin_target():
    """numba's own built-in ``numba.cuda`` (numba-cuda's import redirect removed), for real."""
    code = (
        "import sys\n"
        "sys.meta_path = [f for f in sys.meta_path if type(f).__name__ != 'NumbaCudaFinder']\n"
        "import warnings; warnings.simplefilter('ignore')\n"
        "from numba import cuda\n"
        "if getattr(cuda, 'implementation', 'Built-in') != 'Built-in' or cuda.is_available():\n"
        "    print('SKIP'); raise SystemExit\n"
        "from fastnet.kernels import cuda_target as _cuda\n"
        "try:\n"
        "    _cuda.require_cuda()\n"
        "except RuntimeError as e:\n"
        "    print(e)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    if proc.stdout.strip() == "SKIP":
        pytest.skip("numba has no built-in CUDA target here, or it found a GPU")
    assert "numba-cuda, which is not installed (only numba's built-in CUDA target is)" in \
        proc.stdout
    assert "--device cpu" in proc.stdout


@pytest.mark.parametrize("compiled", [True, False])
def test_first_run_says_it_compiles(tmp_path, fake_mnist, capsys, monkeypatch, compiled):
    """Before the first epoch on a fresh kernel cache the CLI says that it compiles, once."""
    from fastnet.devices import CpuDevice
    monkeypatch.setattr(CpuDevice, "compiled", lambda self: compiled)
    rc, out, err = run(["train", "--epochs", "1", "--sizes", "784,10", "--seed", "0",
                        "--data", str(tmp_path)], capsys)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[1].startswith("Compiling the kernels") != compiled
    assert lines[-2].startswith("Epoch 1/1: ") and lines[-1].startswith("Test accuracy ")


def test_cpu_device_knows_whether_its_kernels_are_built(tmp_path, monkeypatch):
    from fastnet import devices
    from fastnet.kernels import config
    cache = tmp_path / "cache"
    monkeypatch.setattr(config, "kernel_cache_dir", lambda: str(cache))
    monkeypatch.setattr(config, "CACHE", True)
    cpu = devices.get("cpu")
    assert not cpu.compiled()                         # no directory yet
    cache.mkdir()
    (cache / "dense_cpu.forward-10.py311.nbc").write_bytes(b"")
    assert not cpu.compiled()                         # data without an index
    (cache / "dense_cpu.forward-10.py311.nbi").write_bytes(b"")
    assert cpu.compiled()
    assert devices.get("numpy").compiled()            # nothing to compile
