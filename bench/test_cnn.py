"""Whole CNN training epochs on MNIST: the book's first convolutional network (chapter 6:
conv 20@5×5 + sigmoid + 2×2 max-pool → dense 2,880 → 100 sigmoid → softmax 10, log-likelihood,
lr 0.1) at mini-batch 10 and 100, float32, training alone (no evaluation).

Every row of a group trains on the same images, named in the group (no scaling): the first
``IMAGES`` (10,000; ``FASTNET_BENCH_CNN_IMAGES`` sets it) for ``cpu`` and ``cuda`` (through
``fastnet.Model(...).fit(..., training_metrics=False)``) and the peers of ``bench/peers.py``
(PyTorch eager with autograd at the default threads and at one, ``torch.compile`` of the loss,
JAX's jitted ``lax.scan`` epoch); the ``reference`` (the numpy device, the oracle: slow) is
timed beside ``cpu`` in a group of its own on the first ``REFERENCE_IMAGES`` (1,000).
``ROUNDS`` rounds after one untimed epoch. Each row is checked once: one epoch over the first
``CHECK_N`` images in data order, compared with the same model in float64 on the reference.

Augmentation on the fly (``test_cnn_augment``, mini-batch 10, ``cpu``): the plain epoch, the
epoch with ``AUGMENT`` (``Augment([Shift(2), Rotate(10), Elastic()])``, a new warped copy of
the images before it) and the augment call alone on the same images, in one group, so that its
cost against the epoch is read off one run (the aim: at most 25 % of the epoch). The augmented
epoch is checked as the others (the reference warps with the twins, from the same draws), the
augment call against the twins.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from bench import peers
from bench.harness import ROUNDS, SEED, SMALL, check, label, require, run_timed

LR = 0.1
BATCHES = (10, 100)
CHECK_N = 35                             # 4 steps at bs 10 (the last one short), 1 at bs 100
IMAGES = 200 if SMALL else int(os.environ.get("FASTNET_BENCH_CNN_IMAGES") or 10_000)
REFERENCE_IMAGES = 100 if SMALL else 1000
# a few SGD steps in float32 against float64 (the conv weight gradient sums 576·m products)
CNN_RTOL = 1e-3
BACKENDS = ("cpu", "cuda", "torch_cpu", "torch_cpu_1", "torch_compile", "jax", "torch_cuda")


def augmentation():
    from fastnet.augment import Augment, Elastic, Rotate, Shift
    return Augment([Shift(2), Rotate(10), Elastic()])


def cnn_layers():
    import fastnet
    return [fastnet.Conv2D(1, 20, 5, activation="sigmoid"), fastnet.MaxPool2D(2),
            fastnet.Flatten(), fastnet.Dense(2880, 100, activation="sigmoid"),
            fastnet.Dense(100, 10, activation="softmax")]


def cnn_flops(n: int) -> float:
    """FLOPs (2 per multiply-add) of one epoch over n images: the conv forward and its weight
    gradient (no input gradient: it is the first layer), and the dense layers' forward, input
    deltas (the conv layer needs them) and weight gradients."""
    conv = 2.0 * 20 * 24 * 24 * 25
    dense = 2.0 * (2880 * 100 + 100 * 10)
    return n * (2 * conv + 3 * dense)


def _model(device, dtype="float32"):
    import fastnet
    return fastnet.Model(cnn_layers(), loss="log_likelihood", input_shape=(1, 28, 28),
                         dtype=dtype, device=device, seed=SEED)


def _peer(backend, model, x, labels, batch):
    """``(epoch(order), params())`` of a peer from ``model``'s parameters."""
    layers = [(model.params_of(i)["w"].copy(), model.params_of(i)["b"].copy()) for i in (0, 3, 4)]
    return peers.cnn(backend, layers, x, labels, batch, LR)


def _is_peer(backend):
    return backend.startswith("torch") or backend == "jax"


def _check(backend, x, labels, batch, augment=None) -> float:
    n = min(CHECK_N, len(x))
    m = _model("cpu" if _is_peer(backend) else
               {"reference": "numpy"}.get(backend, backend))
    p0 = m.params.astype(np.float64)
    if _is_peer(backend):
        epoch, trained = _peer(backend, m, x[:n], labels[:n], batch)
        epoch(np.arange(n))
        for i, (w, b) in zip((0, 3, 4), trained()):
            m.params_of(i)["w"][...], m.params_of(i)["b"][...] = w, b
    else:
        m.fit(x[:n], labels[:n], epochs=1, batch_size=batch, lr=LR, shuffle=False,
              verbose=False, augment=augment)
    oracle = _model("numpy", "float64")     # the same seed: the same augmentation draws
    oracle.params[...] = p0
    oracle.fit(x[:n], labels[:n], epochs=1, batch_size=batch, lr=LR, shuffle=False,
               verbose=False, augment=augment)
    return check({"params_change": m.params.astype(np.float64) - p0},
                 {"params_change": oracle.params - p0}, np.float64,
                 name=f"CNN epoch {backend} bs{batch}", rtol=CNN_RTOL)


VIA = {"torch_cpu": "PyTorch eager (autograd)", "torch_cpu_1": "PyTorch eager, 1 thread",
       "torch_compile": "torch.compile of the loss (autograd)", "jax": "jax.jit of a lax.scan epoch",
       "torch_cuda": "PyTorch eager (autograd)"}


def _row(benchmark, backend, batch, x, labels, n, margin):
    """Label and time one epoch of ``backend`` over the first n images."""
    assert n >= batch, f"{n} images: fewer than one mini-batch of {batch}"
    xs, ls = x[:n], labels[:n]
    label(benchmark, family="cnn_epoch", case=f"MNIST conv20-pool-100-10 B={batch}, {n:,} images",
          backend=backend, dtype="float32", batch=batch, flops=cnn_flops(n), images=n,
          check_margin=margin, via=VIA.get(backend, "Model.fit(training_metrics=False)"))
    if _is_peer(backend):
        epoch, _ = _peer(backend, _model("cpu"), xs, ls, batch)
        order = np.random.default_rng(SEED).permutation(n)
        call = lambda: epoch(order)   # noqa: E731
    else:
        m = _model({"reference": "numpy"}.get(backend, backend))
        call = lambda: m.fit(xs, ls, epochs=1, batch_size=batch, lr=LR,  # noqa: E731
                             verbose=False, training_metrics=False)
    run_timed(benchmark, call, rounds=ROUNDS, warmup=1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch", BATCHES, ids=[f"bs{b}" for b in BATCHES])
def test_cnn_epoch(benchmark, mnist, backend, batch):
    require(backend)
    x, labels, _ = mnist
    margin = _check(backend, x, labels, batch)
    _row(benchmark, backend, batch, x, labels, min(len(x), IMAGES), margin)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("batch", BATCHES, ids=[f"bs{b}" for b in BATCHES])
def test_cnn_epoch_reference(benchmark, mnist, backend, batch):
    """The reference beside ``cpu`` on fewer images (the reference takes ~10 ms an image)."""
    x, labels, _ = mnist
    margin = _check(backend, x, labels, batch)
    _row(benchmark, backend, batch, x, labels, min(len(x), REFERENCE_IMAGES), margin)


AUGMENT_ROWS = {"plain": "cpu", "augmented": "cpu (augmented)", "augment": "cpu (augment alone)"}


@pytest.mark.parametrize("row", AUGMENT_ROWS)
def test_cnn_augment(benchmark, mnist, row):
    """One row of the augmentation group: the plain epoch, the augmented epoch, or the augment
    call alone (``AUGMENT_ROWS``), over the first ``IMAGES`` images at mini-batch 10."""
    from fastnet import devices
    x, labels, _ = mnist
    n, batch, augment = min(len(x), IMAGES), 10, augmentation()
    xs, ls = x[:n], labels[:n]
    if row == "augment":
        m = min(CHECK_N, n)
        cpu = augment(xs[:m], (28, 28), np.random.default_rng(SEED), devices.get("cpu"))
        want = augment(xs[:m].astype(np.float64), (28, 28), np.random.default_rng(SEED),
                       devices.get("numpy"))
        margin = check({"images": cpu}, {"images": want}, np.float32, name="augment")
        rng, device = np.random.default_rng(SEED), devices.get("cpu")
        call = lambda: augment(xs, (28, 28), rng, device)   # noqa: E731
    else:
        margin = _check("cpu", x, labels, batch, augment if row == "augmented" else None)
        model = _model("cpu")
        kw = dict(augment=augment) if row == "augmented" else {}
        call = lambda: model.fit(xs, ls, epochs=1, batch_size=batch, lr=LR,  # noqa: E731
                                 verbose=False, training_metrics=False, **kw)
    label(benchmark, family="cnn_augment",
          case=f"MNIST conv20-pool-100-10 B={batch}, {n:,} images, {augment!r}",
          backend="cpu", row=AUGMENT_ROWS[row], dtype="float32", batch=batch,
          flops=None if row == "augment" else cnn_flops(n), images=n, check_margin=margin,
          via="the augment call alone" if row == "augment" else "Model.fit(training_metrics=False)")
    run_timed(benchmark, call, rounds=ROUNDS, warmup=1)
