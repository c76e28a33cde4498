"""Figures of a training run as PNG files (the ``plot`` extra: matplotlib, imported when a
function is called, never at import time).

``curves`` (training and validation accuracy and cost per epoch, the book's overfitting
figures), ``confusion`` (a confusion matrix), ``first_layer`` (the first layer's weights, or
conv filters, as images), ``misclassified`` (a grid of test images with predicted and true
labels), ``benchmark`` (seconds per row, from a dict or a pytest-benchmark JSON file) and
``sweep``/``sweep_curves`` (test accuracy against a swept value; per value, a curve over the
epochs: ``fastnet sweep --plot``). Each
draws on its own ``matplotlib.figure.Figure`` with the Agg canvas (no pyplot, no display
needed), writes ``path`` atomically and returns it; the image is ``size`` pixels (width, height).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from fastnet.savefile import write_atomic

DPI = 100


def _figure(size: tuple[int, int]):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("fastnet.plot needs matplotlib: pip install 'fastnet[plot]'") from None
    w, h = _size(size)
    fig = Figure(figsize=(w / DPI, h / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _size(size) -> tuple[int, int]:
    if not (isinstance(size, (tuple, list)) and len(size) == 2 and
            all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 50 <= v <= 8000
                for v in size)):
        raise ValueError(f"size must be (width, height) in pixels, each an int in [50, 8000], "
                         f"got {size!r}")
    return int(size[0]), int(size[1])


def _save(fig, path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"path must end in .png, got {str(path)!r}")
    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=DPI))
    return path


def curves(history, path, *, size=(1000, 400)) -> Path:
    """Accuracy (left) and cost (right) per epoch (from 1) of a ``History``: training and,
    when recorded, validation."""
    epochs = len(history.seconds)
    if epochs == 0:
        raise ValueError("history holds no epochs")
    fig = _figure(size)
    x = np.arange(1, epochs + 1)
    for ax, (what, train, val) in zip(fig.subplots(1, 2), (
            ("accuracy", history.accuracy, history.val_accuracy),
            ("cost", history.loss, history.val_loss))):
        for values, label in ((train, "training"), (val, "validation")):
            if len(values) == epochs:
                ax.plot(x, values, marker="o" if epochs < 30 else None, label=label)
        ax.set_xlabel("epoch")
        ax.set_title(what)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def confusion(cm, path, *, labels=None, size=(600, 560)) -> Path:
    """A confusion matrix ``cm[true, predicted]`` (``int[c, c]``) with its counts."""
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] < 1:
        raise ValueError(f"cm must be a square (c, c) matrix, got shape {cm.shape}")
    c = cm.shape[0]
    labels = [str(i) for i in range(c)] if labels is None else [str(v) for v in labels]
    if len(labels) != c:
        raise ValueError(f"labels must name the {c} classes, got {len(labels)}")
    fig = _figure(size)
    ax = fig.subplots()
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax)
    ax.set_xticks(range(c), labels)
    ax.set_yticks(range(c), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if c <= 20:
        top = cm.max() if cm.size else 0
        for i in range(c):
            for j in range(c):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > top / 2 else "black")
    fig.tight_layout()
    return _save(fig, path)


def _grid(n: int) -> tuple[int, int]:
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def first_layer(model, path, *, limit: int = 100, size=(800, 800)) -> Path:
    """The first layer's weights as images: each hidden unit's incoming weights as the input
    image (a ``Dense`` layer on 28×28 or other square inputs), or each conv filter
    (``Conv2D``, its first input channel); at most ``limit`` of them."""
    from fastnet.layers import Conv2D, Dense
    i, layer = next(((i, la) for i, la in enumerate(model.layers)
                     if isinstance(la, (Dense, Conv2D))), (None, None))
    if layer is None:
        raise ValueError("the model has no Dense or Conv2D layer")
    w = np.asarray(model.params_of(i)["w"], np.float64)
    if isinstance(layer, Conv2D):
        images = w[:, 0]
    else:
        shape = model.input_shape
        side = math.isqrt(w.shape[1])
        if len(shape) == 3:
            images = w.reshape(len(w), *shape)[:, 0]
        elif side * side == w.shape[1]:
            images = w.reshape(len(w), side, side)
        else:
            images = w[:, None, :]       # one row of weights per unit
    images = images[:limit]
    rows, cols = _grid(len(images))
    fig = _figure(size)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, img in zip(axes, images):
        bound = float(np.abs(img).max()) or 1.0
        ax.imshow(img, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
    fig.suptitle(f"first layer: {layer!r}", fontsize=9)
    return _save(fig, path)


def misclassified(x, y, pred, path, *, limit: int = 36, shape=(28, 28),
                  size=(800, 800)) -> Path:
    """The first ``limit`` images of ``x`` (``(n, 784)`` or ``(n, 28, 28)``) whose prediction
    ``pred`` differs from the label ``y``, each titled "predicted (true)"."""
    x = np.asarray(x)
    y, pred = np.asarray(y).ravel(), np.asarray(pred).ravel()
    if not (len(x) == len(y) == len(pred)):
        raise ValueError(f"x, y and pred must have the same length, got {len(x)}, {len(y)}, "
                         f"{len(pred)}")
    wrong = np.flatnonzero(pred != y)[:limit]
    fig = _figure(size)
    if len(wrong) == 0:
        fig.text(0.5, 0.5, "no misclassified images", ha="center", va="center")
        return _save(fig, path)
    rows, cols = _grid(len(wrong))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, k in zip(axes, wrong):
        ax.imshow(x[k].reshape(shape), cmap="gray_r")
        ax.set_title(f"{pred[k]} ({y[k]})", fontsize=8, color="crimson")
    fig.suptitle("misclassified: predicted (true)", fontsize=10)
    return _save(fig, path)


def benchmark(rows, path, *, title: str = "seconds per epoch", size=(900, 500)) -> Path:
    """A horizontal bar chart of seconds per row: ``rows`` a dict ``{label: seconds}``, or a
    pytest-benchmark JSON file (a path or its parsed dict; each benchmark's median times
    ``extra_info["scale"]``, labelled by its group and row, as ``bench/report.py`` reads it)."""
    if isinstance(rows, (str, Path)):
        rows = json.loads(Path(rows).read_text())
    if isinstance(rows, dict) and "benchmarks" in rows:
        table = {}
        for b in rows["benchmarks"]:
            info = b.get("extra_info") or {}
            row = info.get("row") or info.get("backend") or b["name"]
            table[f"{b.get('group') or b['name']}: {row}"] = b["stats"]["median"] * float(info.get("scale") or 1.0)
        rows = table
    if not isinstance(rows, dict) or not rows:
        raise ValueError("rows must be a non-empty dict {label: seconds} or a pytest-benchmark "
                         "JSON file")
    labels = [str(k) for k in rows]
    seconds = [float(v) for v in rows.values()]
    if not all(math.isfinite(s) and s >= 0 for s in seconds):
        raise ValueError("rows' seconds must be finite numbers >= 0")
    fig = _figure(size)
    ax = fig.subplots()
    y = np.arange(len(labels))
    ax.barh(y, seconds, color="tab:blue")
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    ax.set_title(title)
    for yi, s in zip(y, seconds):
        ax.text(s, yi, f" {s:.3g} s", va="center", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def sweep(points, path, *, name: str, size=(700, 450)) -> Path:
    """Test accuracy against one swept value (``fastnet sweep --plot``): ``points`` a list of
    ``(value, accuracy)``, one per run; numbers on a log axis when they span more than a
    factor of 20 (the book's η ∈ {0.025, 0.25, 2.5}), other values (names, lists) as
    categories in order of appearance. The best run of each value is joined by a line."""
    if not points:
        raise ValueError(f"no runs to plot for {name}")
    values = [v for v, _ in points]
    acc = [float(a) for _, a in points]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    fig = _figure(size)
    ax = fig.subplots()
    if numeric:
        xs = [float(v) for v in values]
        if min(xs) > 0 and max(xs) / min(xs) > 20:
            ax.set_xscale("log")
    else:
        labels = list(dict.fromkeys(json.dumps(v) if isinstance(v, list) else str(v)
                                    for v in values))
        xs = [labels.index(json.dumps(v) if isinstance(v, list) else str(v)) for v in values]
        ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.scatter(xs, acc, color="tab:blue", alpha=0.6, label="runs")
    best: dict = {}
    for x, a in zip(xs, acc):
        best[x] = max(a, best.get(x, -1.0))
    bx = sorted(best)
    ax.plot(bx, [best[x] for x in bx], color="tab:orange", marker="o", label="best")
    ax.set_xlabel(name)
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def sweep_curves(series, path, *, name: str, ylabel: str, size=(700, 450)) -> Path:
    """One line per value of a swept parameter over the epochs (``fastnet sweep --plot``;
    the book's chapter-3 learning-rate figure): ``series`` a dict ``{value label: [per-epoch
    values]}`` (epochs from 1)."""
    if not series or not all(len(v) for v in series.values()):
        raise ValueError(f"no per-epoch values to plot for {name}")
    fig = _figure(size)
    ax = fig.subplots()
    for label, values in series.items():
        ax.plot(np.arange(1, len(values) + 1), values, label=f"{name} = {label}")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return _save(fig, path)
