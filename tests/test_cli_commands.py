"""The command line as a user runs it: ``python -m fastnet`` (and the ``fastnet`` script) in a
subprocess — train with a preset, flags, --save/--log/--plot/--checkpoint (and resuming),
evaluate, predict, bench, info, warmup — checking exit codes, printed lines and the files
written. Usage errors run in-process (``main``): exit status 2, no traceback, at most three
stderr lines. Training runs on the ch3-overfit-1000 preset's 1,000 images (``--limit`` cuts
the validation and test sets too), so every run takes seconds."""

from __future__ import annotations

import csv
import gzip
import hashlib
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import MNIST_DIR, skip_or_fail_without_mnist
from fastnet import datasets
from helpers import run_cli as run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG file, checking its signature and IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR", path
    return struct.unpack(">II", data[16:24])


def cli(*args, cwd, check=True, script=False) -> subprocess.CompletedProcess:
    env = dict(os.environ, FASTNET_DATA=str(MNIST_DIR), FASTNET_CACHE=str(cwd / "cache"))
    env.pop("FASTNET_DEVICE", None)
    exe = [str(Path(sys.executable).parent / "fastnet")] if script else \
        [sys.executable, "-m", "fastnet"]
    proc = subprocess.run([*exe, *args], capture_output=True, text=True, timeout=600, cwd=cwd,
                          env=env)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One run of ``fastnet train`` writing every file it can: (directory, stdout lines)."""
    if not (MNIST_DIR / "train-images-idx3-ubyte.gz").exists() and \
            not (MNIST_DIR / "train-images-idx3-ubyte").exists():
        skip_or_fail_without_mnist(f"MNIST not found in {MNIST_DIR}")
    d = tmp_path_factory.mktemp("train")
    out = cli("train", "--preset", "ch3-overfit-1000", "--epochs", "2", "--limit", "500",
              "--seed", "1", "--save", "m.npz", "--log", "h.csv", "--plot", "plots",
              "--checkpoint", "run.npz", cwd=d).stdout.splitlines()
    return d, out


def test_train_prints_numbered_epochs_and_writes_files(trained):
    d, lines = trained
    assert lines[0].startswith("Training [Dense(784, 30, activation='sigmoid')")
    assert "cross_entropy cost on 500 MNIST images: 2 epochs, mini-batch 10, sgd, lr 0.5, " \
           "lmbda 0.1" in lines[0] and "preset ch3-overfit-1000, book: 87.1% test" in lines[0]
    epochs = [line for line in lines if line.startswith("Epoch ")]
    assert [e.split(":")[0] for e in epochs] == ["Epoch 1/2", "Epoch 2/2"]
    assert " / 500 test accuracy" in epochs[1] and "validation" in epochs[1]
    assert any(line.startswith("Test accuracy ") and "after 2 epochs" in line
               for line in lines)
    assert "saved to m.npz" in lines
    with open(d / "h.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"] and float(rows[0]["lr"]) == 0.5
    assert 0 <= float(rows[1]["val_accuracy"]) <= 1
    for name in ("curves", "confusion", "weights", "misclassified"):
        w, h = png_size(d / "plots" / f"{name}.png")
        assert w >= 400 and h >= 400, name
    assert (d / "run.npz").is_file()


def test_checkpoint_resumes_where_it_stopped(trained):
    d, _ = trained
    lines = cli("train", "--preset", "ch3-overfit-1000", "--epochs", "3", "--limit", "500",
                "--seed", "1", "--checkpoint", "run.npz", "--log", "h.csv",
                cwd=d).stdout.splitlines()
    assert [line.split(":")[0] for line in lines if line.startswith("Epoch ")] == ["Epoch 3/3"]
    assert "after 3 epochs" in lines[-1]
    with open(d / "h.csv") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2", "3"]
    # the run's flags are part of the checkpoint: without --log it is another run
    proc = cli("train", "--preset", "ch3-overfit-1000", "--epochs", "4", "--limit", "500",
               "--seed", "1", "--checkpoint", "run.npz", cwd=d, check=False)
    assert proc.returncode == 2 and "checkpoint run.npz was written with 2 callbacks" in \
        proc.stderr and "Traceback" not in proc.stderr


def test_evaluate_prints_accuracy_confusion_and_per_class(trained):
    d, lines = trained
    test_line = next(line for line in lines if line.startswith("Test accuracy "))
    out = cli("evaluate", "m.npz", cwd=d).stdout.splitlines()
    assert out[0].startswith("m.npz: ") and "/ 10000 test images correct" in out[0]
    assert out[1].startswith("confusion matrix (rows: true class")
    matrix = np.array([[int(v) for v in line.split()[1:]] for line in out[3:13]])
    assert matrix.shape == (10, 10) and matrix.sum() == 10000
    assert int(out[0].split()[1]) == np.trace(matrix)
    assert out[13].split() == ["class", "precision", "recall", "f1", "support"]
    assert [int(line.split()[-1]) for line in out[14:24]] == list(matrix.sum(axis=1))
    assert test_line  # the train run scored 500 test images; evaluate scores all 10,000


def test_predict_reads_a_drawn_digit(trained, tmp_path):
    Image = pytest.importorskip("PIL.Image")
    d, _ = trained
    (_, _), _, (xt, yt) = datasets.load_mnist(MNIST_DIR)
    paths = []
    for i, mode in ((0, "L"), (1, "RGB"), (2, "RGBA")):
        paper = (255 - xt[i].reshape(28, 28) * 255).astype(np.uint8)   # dark ink on paper
        img = Image.fromarray(paper).resize((96, 120)).convert(mode)
        paths.append(tmp_path / f"digit{i}.png")
        img.save(paths[-1])
    model = __import__("fastnet").load(d / "m.npz")
    expected = np.argmax(model.predict(xt[:3]), axis=1)
    out = cli("predict", "m.npz", *map(str, paths), cwd=d).stdout.splitlines()
    assert len(out) == 6
    for k, path in enumerate(paths):
        assert out[2 * k].startswith(f"{path}: ")
        probs = [float(t) for t in out[2 * k + 1].split()[1::2]]
        assert len(probs) == 10 and abs(sum(probs) - 1) < 1e-3
        assert int(out[2 * k].split()[-1]) == int(np.argmax(probs))
    # the preprocessing recovers the digit well enough for the same answer as on MNIST's
    assert sum(int(out[2 * k].split()[-1]) == expected[k] for k in range(3)) >= 2


def test_info_and_the_fastnet_script(tmp_path):
    out = cli("info", cwd=tmp_path, script=True).stdout
    import numba
    assert out.startswith(f"fastnet {__import__('fastnet').__version__}, numba "
                          f"{numba.__version__}, numpy {np.__version__}, python ")
    for key in ("threading layer: ", "CPU: ", "threads: ", "kernel cache: ", "CUDA: "):
        assert key in out, key


def test_bench_prints_a_table(tmp_path):
    lines = cli("bench", "--images", "200", "--batch-sizes", "10", "--presets", "ch1",
                "--devices", "numpy,cpu", cwd=tmp_path).stdout.splitlines()
    assert lines[0].startswith("Seconds per training epoch of 200 ")
    assert lines[1].split()[:4] == ["network", "batch", "numpy", "cpu"]
    row = lines[2].split()
    assert row[:2] == ["ch1", "10"] and float(row[2]) > 0 and float(row[3]) > 0
    assert "numpy" in lines[2].split("  ")[-1]                        # numpy's time over cpu's
    from fastnet import peers
    for peer in peers.PEERS:          # a column when installed, else a line saying so
        assert (peer in lines[1].split()) == (peers.unavailable(peer) is None)
        if peers.unavailable(peer):
            assert f"{peer}: not run ({peer} is not installed)" in lines
    assert lines[-1].startswith("The full comparison")


def test_warmup_says_how_long(tmp_path):
    lines = cli("warmup", cwd=tmp_path).stdout.splitlines()
    assert lines[0].startswith("float32: ") and lines[0].endswith(" s")
    assert lines[-1].startswith("warm-up of a default fastnet train (float32) took ")


# --------------------------------------------------------------------------- usage errors


def short_error(rc, out, err, message):
    assert rc == 2, (rc, out, err)
    assert "Traceback" not in err and out == ""
    assert 1 <= len(err.splitlines()) <= 3, err
    assert message in err, err


@pytest.mark.parametrize("argv, message", [
    (["train", "--schedule", "bogus"], "expected constant, inverse:DECAY"),
    (["train", "--schedule", "step:0.5"], "expected constant, inverse:DECAY"),
    (["train", "--preset", "ch7"], "invalid choice: 'ch7'"),
    (["train", "--preset", "ch6-conv1", "--activation", "tanh"],
     "--activation applies to dense networks"),
    (["train", "--log", "h.txt"], "path must end in .csv or .json"),
    (["train", "--early-stopping", "0"], "expected an integer >= 1"),
    (["train", "--threads", "0"], "expected an integer >= 1"),
    (["train", "--threads", "100000"], "--threads: threads must be at most"),
    (["train", "--dataset", "cifar"], "invalid choice: 'cifar'"),
    (["evaluate", "missing.npz"], "missing.npz: no such file"),
    (["bench", "--presets", "nope"], "--presets: unknown 'nope'"),
    (["bench", "--batch-sizes", "0"], "--batch-sizes and --images must be integers >= 1"),
    (["predict", "missing.npz"], "the following arguments are required: images"),
    (["bogus"], "invalid choice: 'bogus'"),
])
def test_usage_errors(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    short_error(*run(argv, capsys), message)


def test_missing_extras_name_the_extra(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "PIL", None)
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    short_error(*run(["predict", "m.npz", "x.png"], capsys),
                "fastnet predict needs PIL, which is not installed: pip install "
                "'fastnet[image]'")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    short_error(*run(["train", "--plot", "plots"], capsys),
                "--plot needs matplotlib, which is not installed: pip install 'fastnet[plot]'")


def test_predict_refuses_a_model_of_another_shape_and_a_non_image(tmp_path, capsys,
                                                                  monkeypatch):
    pytest.importorskip("PIL.Image")
    import fastnet
    monkeypatch.chdir(tmp_path)
    fastnet.Model([20, 10]).save("small.npz")
    short_error(*run(["predict", "small.npz", "x.png"], capsys),
                "small.npz: the model takes 20 inputs and gives 10 outputs; MNIST needs 784")
    fastnet.Model([784, 10]).save("m.npz")
    Path("x.png").write_text("not an image")
    short_error(*run(["predict", "m.npz", "x.png"], capsys), "x.png: not an image Pillow")


def test_early_stopping_keeps_the_best_epoch(tmp_path, capsys, monkeypatch):
    """Labels that cannot be learnt: validation accuracy stalls, the run stops early and
    says which epoch it kept."""
    rng = np.random.default_rng(0)
    monkeypatch.setattr(datasets, "load_mnist", lambda path=None, **kw: tuple(
        (rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n)) for n in (30, 30, 10)))
    rc, out, err = run(["train", "--sizes", "784,10", "--epochs", "40", "--device", "numpy",
                        "--early-stopping", "2", "--seed", "0", "--lr", "0.1"], capsys)
    assert rc == 0, err
    lines = out.splitlines()
    last = lines[-1]
    assert "stopped early after epoch " in last, last
    stopped = int(last.split("stopped early after epoch ")[1].split(",")[0])
    kept = int(last.split("kept epoch ")[1])
    assert kept == stopped - 2 and len([x for x in lines if x.startswith("Epoch ")]) == stopped


def test_another_runs_checkpoint_is_a_usage_error(tmp_path, capsys, monkeypatch):
    """A checkpoint of another run is refused before the first epoch: exit 2."""
    rng = np.random.default_rng(0)
    monkeypatch.setattr(datasets, "load_mnist", lambda path=None, **kw: tuple(
        (rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n)) for n in (30, 10, 10)))
    monkeypatch.chdir(tmp_path)
    base = ["train", "--sizes", "784,10", "--epochs", "1", "--device", "numpy",
            "--checkpoint", "c.npz", "--quiet"]
    rc, out, err = run(base, capsys)
    assert rc == 0 and out.startswith("Test accuracy ") and err == "", err
    short_error(*run([*base, "--lr", "0.5"], capsys), "c.npz")


def test_optimizer_flag_trains_at_the_optimizers_own_rate(tmp_path, capsys, monkeypatch):
    """--optimizer adam without --lr: Adam's 0.001, not the preset's SGD rate of 3.0; the
    saved model holds Adam's state."""
    rng = np.random.default_rng(0)
    monkeypatch.setattr(datasets, "load_mnist", lambda path=None, **kw: tuple(
        (rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n)) for n in (30, 10, 10)))
    monkeypatch.chdir(tmp_path)
    rc, out, err = run(["train", "--sizes", "784,10", "--epochs", "2", "--device", "numpy",
                        "--optimizer", "adam", "--save", "m.npz"], capsys)
    assert rc == 0, err
    assert "mini-batch 10, adam, lr 0.001," in out.splitlines()[0]
    import fastnet
    state = fastnet.load(tmp_path / "m.npz").optimizer_state
    assert state.optimizer.name == "adam" and state.step[0] == 2 * 3


# --------------------------------------------------------------------------- Fashion-MNIST


def test_train_on_fashion_mnist_files(tmp_path, capsys, monkeypatch):
    """--dataset fashion-mnist reads Fashion-MNIST's files (written here, their checksums
    patched in) and names the data set in its header."""
    rng = np.random.default_rng(2)
    d = tmp_path / "fashion"
    d.mkdir()
    for name, shape in (("train-images-idx3-ubyte", (30, 28, 28)),
                        ("train-labels-idx1-ubyte", (30,)),
                        ("t10k-images-idx3-ubyte", (12, 28, 28)),
                        ("t10k-labels-idx1-ubyte", (12,))):
        arr = rng.integers(0, 256 if len(shape) > 1 else 10, shape, dtype=np.uint8)
        blob = gzip.compress(bytes([0, 0, 8, arr.ndim]) + struct.pack(
            f">{arr.ndim}I", *arr.shape) + arr.tobytes())
        (d / f"{name}.gz").write_bytes(blob)
        monkeypatch.setitem(datasets.FASHION_MNIST_GZ_SHA256, name,
                            hashlib.sha256(blob).hexdigest())
        monkeypatch.setitem(datasets.FASHION_MNIST_GZ_MD5, name, hashlib.md5(blob).hexdigest())
    monkeypatch.setattr(datasets, "_check_validation", lambda v: 10)
    rc, out, err = run(["train", "--dataset", "fashion-mnist", "--data", str(d), "--sizes",
                        "784,10", "--epochs", "1", "--device", "numpy"], capsys)
    assert rc == 0, err
    lines = out.splitlines()
    assert "on 20 Fashion-MNIST images" in lines[0]
    assert lines[1].startswith("Epoch 1/1: ") and "/ 12 test accuracy" in lines[1]
    rc, out, err = run(["train", "--dataset", "fashion-mnist", "--data", str(tmp_path / "no")],
                       capsys)
    short_error(rc, out, err, "Fashion-MNIST not found in ")
    assert "FASTNET_FASHION_DATA=DIR" in err


def test_fastnet_script_is_installed():
    assert shutil.which("fastnet", path=str(Path(sys.executable).parent))
