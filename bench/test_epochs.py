"""Whole training epochs on MNIST: the book's chapter-1 network [784, 30, 10] (sigmoid,
quadratic cost, lr 3.0) at mini-batch 10 and 100, float32 (and float64 on the CPU).

Rows of a group (one batch size × dtype):
- ``numpy`` / ``cpu`` / ``cuda``: the device's dense kernel set's ``train_epoch``
  (``fastnet.devices.get(name).dense``), the data already where it computes (``inputs``: on
  the CPU, MNIST's inputs in sparse form, so the ``cpu`` row is the sparse epoch,
  ``kernels/sparse_epoch_cpu.py``): the kernel time of an epoch;
- ``cpu (1 thread)``: the same on one thread; ``cpu (dense epoch)``: the dense-input epoch
  (``kernels/dense_epoch_cpu.py``) on Numba's threads, what inputs with more than
  ``SPARSE_MAX_DENSITY`` nonzeros get;
- ``cuda_xfer``: the same plus moving params, data and order to the GPU and params back;
- ``torch_cpu`` / ``torch_cuda``: PyTorch eager doing the same SGD (no autograd; the update
  fused into ``addmm_``), one Python step per mini-batch;
- ``cpu (Model.fit, …)``: one epoch through ``fastnet.Model.fit`` end to end, from raw arrays
  (with and without the training-set metrics) and from a ``fastnet.Dataset``.
Plus the drop-in ``fastnet.network`` run of the book's chapter 1 (30 epochs with test data).

Each row is checked once before timing: one epoch over the first 1,005 images (so the last
mini-batch is short) in a shuffled order, compared with ``fastnet.reference.dense.train_epoch``
in float64 from the same start (the parameter change, normwise, ``EPOCH_RTOL``). The numpy
row is timed over one round (a full epoch takes seconds); the others over ``ROUNDS`` (3, or
``FASTNET_BENCH_ROUNDS``).

The CNN epoch rows are in ``bench/test_cnn.py``.
"""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

from bench.harness import (BACKENDS, SEED, SMALL, check, label, require, rounds_from_env,
                           run_timed, synchronizer)
from bench.registry import Runner, to_host, to_torch, torch_env
from fastnet.kernels.config import QUADRATIC, SIGMOID
from fastnet.reference import dense as ref

SIZES = [784, 30, 10]
LR = 3.0
BATCHES = (10, 100)
ROUNDS = rounds_from_env(3)
CHECK_N = 1005
# After ~100 SGD steps at lr 3.0 float32 trajectories drift from float64 by ~1e-5 of the
# parameter change (measured); a wrong kernel changes it by O(1).
EPOCH_RTOL = {"float32": 1e-3, "float64": 1e-9}
EPOCH_BACKENDS = ("numpy", "cpu", "cuda", "cuda_xfer", "torch_cpu", "torch_cuda")
FLOAT64_BACKENDS = ("numpy", "cpu")
SPARSE_NOTE = ("sparse epoch (MNIST's zeros skipped): GFLOP/s counts the dense epoch's work, "
               "so it can exceed the peak")


def epoch_flops(n: int, batch: int, sizes=SIZES) -> float:
    """Multiply-adds ×2 of one epoch: forward (2·n·Σ n_in·n_out), deltas of the hidden layers
    (2·n·Σ_{l≥1} n_in·n_out), gradients (2·n·Σ n_in·n_out), and the update (2·P per step)."""
    mats = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    steps = -(-n // batch)
    return 2.0 * n * (2 * sum(mats) + sum(mats[1:])) + 2.0 * steps * sum(mats)


def _init(dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat params (the book's N(0, 1) init), layout and activation codes."""
    layout = ref.layout_for(SIZES)
    params = np.random.default_rng(SEED).standard_normal(ref.n_params(layout)).astype(dtype)
    return params, layout, np.full(len(SIZES) - 1, SIGMOID, np.int64)


# ---------------------------------------------------------------------------- runners
def _backend_runner(name, params, layout, acts, x, y, order, batch):
    """``fastnet.devices.get(name).dense.train_epoch`` on resident data, on the threads the
    device chooses (``cuda_xfer``: the transfers inside the call)."""
    from fastnet import devices
    try:
        be = devices.get("cuda" if name == "cuda_xfer" else name).dense
    except (ImportError, RuntimeError) as exc:
        pytest.skip(f"{name}: no device: {exc}")
    host = params.copy()
    sync = synchronizer(name)
    threads = be.epoch_threads(layout, batch)
    if name == "cuda_xfer":
        def call():
            d = be.upload(host)
            be.train_epoch(d, layout, acts, QUADRATIC, be.inputs(x, threads), be.upload(y),
                           be.upload(order), batch, LR, 1.0, threads)
            host[...] = be.download(d)
        return Runner(call, lambda: host)
    d_params, dy, d_order = (be.upload(a) for a in (host, y, order))
    dx = be.inputs(x, threads)

    def call():
        be.train_epoch(d_params, layout, acts, QUADRATIC, dx, dy, d_order, batch, LR, 1.0,
                       threads)
        sync()
    return Runner(call, lambda: np.asarray(be.download(d_params)))


def _torch_runner(name, params, layout, acts, x, y, order, batch):
    """PyTorch eager, the same SGD as the reference; parameters are views into one flat
    tensor (the model's layout), updated in place."""
    torch, dev, _ = torch_env(name)
    flat, X, Y = (to_torch(torch, a, dev) for a in (params, x, y))
    O = to_torch(torch, order, dev)
    ws = [(flat[w:w + o * i].view(o, i), flat[b:b + o]) for i, o, w, b in layout]
    sync = synchronizer(name)

    def call():
        for k in range(0, O.shape[0], batch):
            idx = O[k:k + batch]
            m = idx.shape[0]
            acts_ = [X.index_select(0, idx)]
            for w, b in ws:
                acts_.append(torch.sigmoid(torch.addmm(b, acts_[-1], w.t())))
            a = acts_[-1]
            delta = (a - Y.index_select(0, idx)) * a * (1 - a)
            for l in range(len(ws) - 1, -1, -1):
                w, b = ws[l]
                prev = acts_[l]
                d_prev = (delta @ w) * prev * (1 - prev) if l > 0 else None
                w.addmm_(delta.t(), prev, alpha=-LR / m)
                b.sub_(delta.sum(dim=0), alpha=LR / m)
                delta = d_prev
        sync()
    return Runner(call, lambda: to_host(flat))


def _runner(name, *args):
    return (_torch_runner if name.startswith("torch") else _backend_runner)(name, *args)


def _check_epoch(build, dtype, batch, x, y, name) -> float:
    """One epoch over a shuffled prefix through ``build``; compare the parameter change with
    the float64 reference's. Returns the check margin."""
    n = min(CHECK_N, len(x) - 5)
    order = np.random.default_rng(SEED + 1).permutation(n).astype(np.int64)
    params, layout, acts = _init(dtype)
    runner = build(params, layout, acts, np.ascontiguousarray(x[:n]),
                   np.ascontiguousarray(y[:n]), order, batch)
    runner.call()
    got = runner.result().astype(dtype, copy=False)
    want = params.astype(np.float64)
    ref.train_epoch(want, layout, acts, QUADRATIC, x[:n].astype(np.float64),
                    y[:n].astype(np.float64), order, batch, LR, 1.0)
    p0 = params.astype(np.float64)
    return check({"params_change": got.astype(np.float64) - p0},
                 {"params_change": want - p0}, np.float64,
                 name=f"epoch {name} {np.dtype(dtype).name} bs{batch}",
                 rtol=EPOCH_RTOL[np.dtype(dtype).name])


def _label_epoch(benchmark, backend, dtype, batch, n, margin, **extra):
    label(benchmark, family="epoch", case=f"MNIST {'-'.join(map(str, SIZES))} B={batch}",
          backend=backend, dtype=dtype, batch=batch, flops=epoch_flops(n, batch),
          images=n, check_margin=margin, **extra)


def _epoch_params():
    out = []
    for batch in BATCHES:
        for dtype in ("float32", "float64"):
            for b in BACKENDS:
                if b in EPOCH_BACKENDS and (dtype == "float32" or b in FLOAT64_BACKENDS):
                    out.append(pytest.param(b, dtype, batch, id=f"{b}-{dtype}-bs{batch}"))
    return out


# ---------------------------------------------------------------------------- rows
@pytest.mark.parametrize("backend, dtype, batch", _epoch_params())
def test_epoch(benchmark, mnist, backend, dtype, batch):
    require(backend)
    x, _, targets = mnist
    dt = np.dtype(dtype)
    x, y = x.astype(dt), targets.astype(dt)
    margin = _check_epoch(lambda *a: _runner(backend, *a), dt, batch, x, y, backend)
    params, layout, acts = _init(dt)
    order = np.random.default_rng(SEED + 2).permutation(len(x)).astype(np.int64)
    runner = _runner(backend, params, layout, acts, x, y, order, batch)
    _label_epoch(benchmark, backend, dtype, batch, len(x), margin,
                 via="backend.train_epoch" if not backend.startswith("torch") else
                 "PyTorch eager", **({"note": SPARSE_NOTE} if backend == "cpu" else {}))
    run_timed(benchmark, runner.call, rounds=1 if backend == "numpy" else ROUNDS)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch", BATCHES, ids=[f"bs{b}" for b in BATCHES])
@pytest.mark.parametrize("variant", ["1 thread", "dense epoch"])
def test_epoch_cpu_variant(benchmark, mnist, batch, dtype, variant):
    """Beside the ``cpu`` row: the CPU backend's epoch on this thread only
    (``train_epoch(..., threads=1)``: what the second core buys), and the dense-input epoch
    on x as an array (what the sparse form buys)."""
    from fastnet import devices
    be = devices.get("cpu").dense
    x, _, targets = mnist
    dt = np.dtype(dtype)
    x, y = x.astype(dt), targets.astype(dt)
    threads = 1 if variant == "1 thread" else None

    def build(params, layout, acts, xs, ys, order, batch):
        host = params.copy()
        data = be.inputs(xs, 1) if variant == "1 thread" else xs
        n = threads or be.epoch_threads(layout, batch)

        def call():
            be.train_epoch(host, layout, acts, QUADRATIC, data, ys, order, batch, LR, 1.0, n)
        return Runner(call, lambda: host)

    margin = _check_epoch(build, dt, batch, x, y, f"cpu, {variant}")
    params, layout, acts = _init(dt)
    order = np.random.default_rng(SEED + 2).permutation(len(x)).astype(np.int64)
    runner = build(params, layout, acts, x, y, order, batch)
    _label_epoch(benchmark, "cpu", dtype, batch, len(x), margin, via="backend.train_epoch",
                 row=f"cpu ({variant})", **({"note": SPARSE_NOTE} if threads else {}))
    if threads:
        benchmark.extra_info["threads"] = threads
    run_timed(benchmark, runner.call, rounds=ROUNDS)


FIT_FORMS = {
    "arrays, metrics": "fit(x, y, epochs=1): checks, the sparse form, the epoch, and fit's "
                       "evaluation of the training set",
    "arrays": "fit(x, y, epochs=1, training_metrics=False): checks, the sparse form (built "
              "in the same read that checks x), the epoch",
    "Dataset": "fit(fastnet.Dataset(x, y), epochs=1, training_metrics=False): the Dataset "
               "made once outside the timing, as a user reusing it would",
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("form", list(FIT_FORMS))
@pytest.mark.parametrize("batch", BATCHES, ids=[f"bs{b}" for b in BATCHES])
def test_epoch_model_fit(benchmark, mnist, batch, dtype, form):
    """One epoch through ``fastnet.Model(...).fit`` on the CPU device, end to end, from raw
    arrays (with and without the training-set metrics) and from a prepared Dataset: the
    one-off costs a user pays per call, against the ``cpu`` row's epoch."""
    import fastnet
    x, labels, targets = mnist
    dt = np.dtype(dtype)

    def model():
        return fastnet.Model(SIZES, activation="sigmoid", loss="quadratic", dtype=dtype,
                             device="cpu", seed=SEED)

    # check: fit over the prefix in data order == the reference's epoch from the same start
    n = min(CHECK_N, len(x) - 5)
    m = model()
    layout = ref.layout_for(SIZES)
    p0 = np.empty(ref.n_params(layout))
    for (w, b), i in zip(ref.unpack(p0, layout), range(len(SIZES) - 1)):
        w[...], b[...] = m.params_of(i)["w"], m.params_of(i)["b"]
    m.fit(x[:n], labels[:n], epochs=1, batch_size=batch, lr=LR, shuffle=False, verbose=False)
    got = np.concatenate([np.concatenate([m.params_of(i)["w"].ravel(), m.params_of(i)["b"]])
                          for i in range(len(SIZES) - 1)])
    want = p0.copy()
    ref.train_epoch(want, layout, np.full(2, SIGMOID, np.int64), QUADRATIC,
                    x[:n].astype(np.float64), targets[:n].astype(np.float64),
                    np.arange(n), batch, LR, 1.0)
    margin = check({"params_change": got.astype(np.float64) - p0}, {"params_change": want - p0},
                   np.float64, name=f"Model.fit cpu {dtype} bs{batch}", rtol=EPOCH_RTOL[dtype])

    m = model()
    xs = x.astype(dt)
    args = (fastnet.Dataset(xs, labels),) if form == "Dataset" else (xs, labels)
    _label_epoch(benchmark, "cpu", dtype, batch, len(x), margin, via="Model.fit",
                 row=f"cpu (Model.fit, {form})", note=FIT_FORMS[form])
    run_timed(benchmark, lambda: m.fit(*args, epochs=1, batch_size=batch, lr=LR,
                                       verbose=False,
                                       training_metrics=form == "arrays, metrics"),
              rounds=ROUNDS)


# ---------------------------------------------------------------------------- drop-in
def _book_pairs(x, labels, targets):
    """The book's data format: lists of ((784, 1) column, (10, 1) one-hot) and (column, int)."""
    cols = x.reshape(-1, 784, 1)
    return (list(zip(cols, targets.astype(np.float64).reshape(-1, 10, 1))),
            list(zip(cols, labels.tolist())))


def test_dropin_network_ch1(benchmark, mnist, mnist_test, capsys):
    """The book's chapter-1 run through the drop-in: ``Network([784, 30, 10]).SGD(training_data,
    30, 10, 3.0, test_data=test_data)``, its per-epoch test evaluation and printing included
    (the data conversion from the book's lists of pairs too). Small: 1 epoch. Checked first:
    one epoch over a prefix equals the reference's epoch in the order the book's
    ``random.shuffle`` gives."""
    try:
        from fastnet import network
    except ImportError as exc:
        pytest.skip(f"fastnet.network (the chapter-1 drop-in) is not available: {exc}")
    x, labels, targets = mnist
    layout = ref.layout_for(SIZES)

    def flat(net):
        p = np.empty(ref.n_params(layout))
        for (w, b), nw, nb in zip(ref.unpack(p, layout), net.weights, net.biases):
            w[...], b[...] = nw, nb.ravel()
        return p

    n = min(CHECK_N, len(x) - 5)
    np.random.seed(SEED)
    net = network.Network(SIZES)
    p0 = flat(net)
    random.seed(SEED)
    net.SGD(_book_pairs(x[:n], labels[:n], targets[:n])[0], 1, 10, LR)
    random.seed(SEED)
    order = list(range(n))
    random.shuffle(order)
    want = p0.copy()
    ref.train_epoch(want, layout, np.full(2, SIGMOID, np.int64), QUADRATIC,
                    x[:n].astype(np.float64), targets[:n].astype(np.float64),
                    np.array(order, np.int64), 10, LR, 1.0)
    margin = check({"params_change": flat(net) - p0}, {"params_change": want - p0},
                   np.float64, name="network.Network.SGD", rtol=EPOCH_RTOL["float64"])

    epochs = 1 if SMALL else 30
    train = _book_pairs(x, labels, targets)[0]
    xt, lt = mnist_test
    test = _book_pairs(xt, lt, np.eye(10, dtype=np.float32)[lt])[1]
    np.random.seed(SEED)
    net = network.Network(SIZES)
    capsys.readouterr()
    label(benchmark, family="dropin", case=f"network.py ch1 {epochs} epochs B=10",
          backend="cpu", dtype="float64", batch=10, flops=epochs * epoch_flops(len(x), 10),
          images=len(x), epochs=epochs, via="fastnet.network.Network.SGD",
          row="cpu (network.SGD)",
          check_margin=margin)
    run_timed(benchmark, lambda: net.SGD(train, epochs, 10, LR, test_data=test), rounds=1)
    lines = re.findall(r"Epoch (\d+): (\d+) / (\d+)", capsys.readouterr().out)
    assert lines, "SGD printed no 'Epoch j: c / n' line"
    benchmark.extra_info["last_epoch_accuracy"] = int(lines[-1][1]) / int(lines[-1][2])
