"""``fastnet.plot``: every figure rendered headlessly (Agg) to a PNG file of the requested
pixel size; bad arguments are refused. Skipped without matplotlib (CI installs the plot extra)."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import fastnet  # noqa: E402
from fastnet import Conv2D, Dense, Flatten, MaxPool2D, Model, plot  # noqa: E402
from fastnet.model import History  # noqa: E402


def png_size(path) -> tuple[int, int]:
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def history(epochs=5):
    rng = np.random.default_rng(0)
    return History(loss=list(rng.random(epochs)), accuracy=list(rng.random(epochs)),
                   val_loss=list(rng.random(epochs)), val_accuracy=list(rng.random(epochs)),
                   seconds=[0.1] * epochs, threads=[1] * epochs, lr=[0.5] * epochs)


def test_every_plot_is_a_png_of_its_size(tmp_path):
    rng = np.random.default_rng(1)
    cnn = Model([Conv2D(1, 6, 5, activation="relu"), MaxPool2D(2), Flatten(),
                 Dense(6 * 12 * 12, 10, "softmax")], loss="log_likelihood",
                input_shape=(1, 28, 28), device="numpy")
    x = rng.random((50, 784))
    y, pred = rng.integers(0, 10, 50), rng.integers(0, 10, 50)
    bench_json = {"benchmarks": [
        {"name": "test_epoch[cpu]", "group": "epoch", "stats": {"median": 0.1},
         "extra_info": {"backend": "cpu", "scale": 2.0}},
        {"name": "test_epoch[numpy]", "group": "epoch", "stats": {"median": 0.5},
         "extra_info": {"backend": "numpy"}}]}
    (tmp_path / "b.json").write_text(json.dumps(bench_json))
    made = {
        "curves": plot.curves(history(), tmp_path / "curves.png", size=(640, 300)),
        "confusion": plot.confusion(rng.integers(0, 50, (10, 10)), tmp_path / "cm.png",
                                    size=(500, 480)),
        "dense": plot.first_layer(Model([784, 30, 10]), tmp_path / "w.png", size=(400, 400)),
        "conv": plot.first_layer(cnn, tmp_path / "f.png", size=(300, 300)),
        "wrong": plot.misclassified(x, y, pred, tmp_path / "m.png", size=(600, 600)),
        "none wrong": plot.misclassified(x, y, y, tmp_path / "m0.png", size=(200, 100)),
        "bench dict": plot.benchmark({"numpy": 0.5, "cpu": 0.1}, tmp_path / "b1.png",
                                     size=(700, 300)),
        "bench json": plot.benchmark(tmp_path / "b.json", tmp_path / "b2.png", size=(700, 300)),
    }
    sizes = {"curves": (640, 300), "confusion": (500, 480), "dense": (400, 400),
             "conv": (300, 300), "wrong": (600, 600), "none wrong": (200, 100),
             "bench dict": (700, 300), "bench json": (700, 300)}
    for key, path in made.items():
        assert png_size(path) == sizes[key], key
    assert not list(tmp_path.glob(".*.tmp"))                     # written atomically


@pytest.mark.parametrize("call, message", [
    (lambda p: plot.curves(History(), p), "history holds no epochs"),
    (lambda p: plot.confusion(np.zeros((3, 4)), p), "square"),
    (lambda p: plot.confusion(np.zeros((2, 2)), p, labels=["a"]), "labels must name"),
    (lambda p: plot.curves(history(), p, size=(10, 10)), "size must be"),
    (lambda p: plot.curves(history(), p.with_suffix(".jpg")), "must end in .png"),
    (lambda p: plot.benchmark({}, p), "non-empty dict"),
    (lambda p: plot.benchmark({"a": float("nan")}, p), "finite"),
    (lambda p: plot.misclassified(np.zeros((3, 784)), [1, 2], [1, 2, 3], p), "same length"),
    (lambda p: plot.first_layer(fastnet.Model([Flatten(), Dense(4, 2)], input_shape=(2, 2)),
                                p), None),
])
def test_bad_arguments(tmp_path, call, message):
    if message is None:                                          # a model without conv: fine
        assert png_size(call(tmp_path / "ok.png"))
        return
    with pytest.raises(ValueError, match=message):
        call(tmp_path / "x.png")


def test_nothing_heavy_is_imported_before_it_is_needed(tmp_path):
    """matplotlib and Pillow load when a figure or an image is made, not on import."""
    import subprocess
    import sys
    code = ("import sys, fastnet, fastnet.plot, fastnet.images, fastnet.cli_commands, "
            "fastnet.cli_train, fastnet.__main__; "
            "assert 'matplotlib' not in sys.modules and 'PIL' not in sys.modules")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
