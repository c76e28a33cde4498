"""Whole CNN training epochs on MNIST: the book's first convolutional network (chapter 6:
conv 20@5×5 + sigmoid + 2×2 max-pool → dense 2,880 → 100 sigmoid → softmax 10, log-likelihood,
lr 0.1) at mini-batch 10 and 100, float32.

Rows: ``cpu`` and ``numpy`` through ``fastnet.Model(...).fit(..., training_metrics=False)``
(the layer-by-layer path, training alone like the PyTorch rows; the numpy row is the
reference, timed on a subset and scaled, see ``NUMPY_IMAGES``); ``cuda``
through ``Model(device="cuda")`` (skipped with the model's own message until the CUDA conv path
exists); ``torch_cpu`` / ``torch_cuda``: PyTorch eager with autograd doing the same SGD.

``FASTNET_BENCH_ROUNDS=k`` times the compiled and PyTorch rows over k rounds (default 3 and 2)
instead of a few: on a shared machine the min of more rounds is likelier to include a quiet
moment. ``FASTNET_BENCH_CNN_IMAGES=k`` times every row on the first k images and scales the time to
50,000 (recorded as ``scale`` in extra_info and marked in the report) — for a first look on a
slow or shared machine. Each row is checked once: one epoch over the first ``CHECK_N`` images
in data order, compared with the same model in float64 on the numpy reference backend.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from bench.harness import (SEED, SMALL, check, label, require, rounds_from_env, run_timed,
                           synchronizer)
from bench.registry import to_host, to_torch, torch_env

LR = 0.1
BATCHES = (10, 100)
CHECK_N = 35                             # 4 steps at bs 10 (the last one short), 1 at bs 100
NUMPY_IMAGES = 1000                      # the numpy row's subset (scaled to the full epoch)
SMALL_IMAGES = {"numpy": 50, "other": 200}
IMAGES = int(os.environ.get("FASTNET_BENCH_CNN_IMAGES", "0")) or None
# timed rounds of the compiled and PyTorch rows (FASTNET_BENCH_ROUNDS sets both; the numpy row
# is one round)
ROUNDS, TORCH_ROUNDS = rounds_from_env(3), rounds_from_env(2)
# a few SGD steps in float32 against float64 (the conv weight gradient sums 576·m products)
CNN_RTOL = 1e-3
BACKENDS = ("numpy", "cpu", "cuda", "torch_cpu", "torch_cuda")


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


def _torch_trainer(backend, model, x, labels, batch):
    """PyTorch autograd training of the same network from ``model``'s parameters; returns
    ``(epoch(order), write_back())``."""
    torch, dev, _ = torch_env(backend)
    F = torch.nn.functional
    params = [to_torch(torch, model.params_of(i)[k], dev).requires_grad_()
              for i in (0, 3, 4) for k in ("w", "b")]
    X = to_torch(torch, x.reshape(-1, 1, 28, 28), dev)
    Y = to_torch(torch, np.eye(10, dtype=np.float32)[labels], dev)
    sync = synchronizer(backend)

    def epoch(order):
        O = to_torch(torch, order, dev)
        w1, b1, w2, b2, w3, b3 = params
        for k in range(0, len(order), batch):
            idx = O[k:k + batch]
            m = idx.shape[0]
            h = F.max_pool2d(torch.sigmoid(F.conv2d(X.index_select(0, idx), w1, b1)), 2)
            h = torch.sigmoid(F.linear(h.flatten(1), w2, b2))
            loss = -(F.log_softmax(F.linear(h, w3, b3), dim=1) * Y.index_select(0, idx)).sum()
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for p, g in zip(params, grads):
                    p.sub_(g, alpha=LR / m)
        sync()

    def write_back():
        for p, (i, k) in zip(params, [(i, k) for i in (0, 3, 4) for k in ("w", "b")]):
            model.params_of(i)[k][...] = to_host(p)

    return epoch, write_back


def _check(backend, x, labels, batch) -> float:
    n = min(CHECK_N, len(x))
    m = _model("cpu" if backend.startswith("torch") else backend)
    p0 = m.params.astype(np.float64)
    if backend.startswith("torch"):
        epoch, write_back = _torch_trainer(backend, m, x[:n], labels[:n], batch)
        epoch(np.arange(n))
        write_back()
    else:
        m.fit(x[:n], labels[:n], epochs=1, batch_size=batch, lr=LR, shuffle=False,
              verbose=False)
    oracle = _model("numpy", "float64")
    oracle.params[...] = p0
    oracle.fit(x[:n], labels[:n], epochs=1, batch_size=batch, lr=LR, shuffle=False,
               verbose=False)
    return check({"params_change": m.params.astype(np.float64) - p0},
                 {"params_change": oracle.params - p0}, np.float64,
                 name=f"CNN epoch {backend} bs{batch}", rtol=CNN_RTOL)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch", BATCHES, ids=[f"bs{b}" for b in BATCHES])
def test_cnn_epoch(benchmark, mnist, backend, batch):
    require(backend)
    x, labels, _ = mnist
    margin = _check(backend, x, labels, batch)

    n_full = len(x)
    if SMALL:
        cap = SMALL_IMAGES["numpy" if backend == "numpy" else "other"]
    else:
        cap = NUMPY_IMAGES if backend == "numpy" else n_full
    n = min(n_full, cap, IMAGES or n_full)
    xs, ls = x[:n], labels[:n]
    scale = n_full / n
    label(benchmark, family="cnn_epoch", case=f"MNIST conv20-pool-100-10 B={batch}",
          backend=backend, dtype="float32", batch=batch, flops=cnn_flops(n_full),
          images=n_full, timed_images=n, scale=scale, check_margin=margin,
          via="Model.fit" if not backend.startswith("torch") else "PyTorch eager (autograd)",
          note="fit(training_metrics=False): training alone, as in the torch rows"
          if not backend.startswith("torch") else "")
    if backend.startswith("torch"):
        epoch, _ = _torch_trainer(backend, _model("cpu"), xs, ls, batch)
        order = np.random.default_rng(SEED).permutation(n)
        call = lambda: epoch(order)   # noqa: E731
    else:
        m = _model(backend)
        call = lambda: m.fit(xs, ls, epochs=1, batch_size=batch, lr=LR,  # noqa: E731
                             verbose=False, training_metrics=False)
    # One untimed call first: a model's first fit (shuffled, this subset) still has one-time
    # costs after the check's; three rounds, as one round in two here can catch the other
    # vCPU busy (the minimum is reported). The NumPy row is one slow round.
    if backend == "numpy":
        run_timed(benchmark, call, rounds=1)
    else:
        run_timed(benchmark, call, rounds=TORCH_ROUNDS if backend.startswith("torch") else ROUNDS,
                  warmup=1)
