"""Time one epoch of ``fastnet.kernels.dense_cuda.train_epoch`` on MNIST (needs a CUDA GPU).

Workloads (Nielsen ch. 1): [784, 30, 10], sigmoid, quadratic cost, lr 3.0, 50,000 training
images; mini-batch 10 and 100 in float32, mini-batch 10 in float64, plus a sweep of the launch
tuning (layer-0 units per block × threads per block) at mini-batch 10. Each configuration is
checked before it is timed: one epoch over the first 1,005 images in a shuffled order against
``fastnet.reference.dense.train_epoch`` in float64 (``bench.harness.check``, the suite's epoch
tolerance). Then one warm-up epoch, then ``--reps`` epochs, each timed host-side around the
launch with ``cuda.synchronize()`` before the clock stops; the order array is already on the
device. Then a sanity run: 2 epochs from a fresh init, test accuracy must be >= 90%.

    FASTNET_DATA=<dir with the MNIST IDX files> python -m bench.cuda_mlp_epoch [--reps 5] [--json F]

The suite's GPU rows (``pytest bench/ -k cuda``) are the figures to quote; this script is for
tuning the launch.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

from fastnet.kernels.cuda_target import require_cuda

cuda = require_cuda()

from fastnet.kernels import dense_cuda as DC  # noqa: E402
from fastnet.kernels.config import QUADRATIC, SIGMOID  # noqa: E402
from fastnet.reference import dense as R  # noqa: E402
from bench.harness import check  # noqa: E402

CHECK_N = 1005
EPOCH_RTOL = {"float32": 1e-3, "float64": 1e-9}

SIZES = [784, 30, 10]
ACTS = np.array([SIGMOID, SIGMOID], dtype=np.int64)


def load():
    from fastnet.datasets import load_mnist
    path = os.environ.get("FASTNET_DATA")
    (x, y), _, (xt, yt) = load_mnist(path, verbose=False) if path else load_mnist(verbose=False)
    return x, y, xt, yt


def init_params(layout, sizes, seed, dtype):
    rng = np.random.default_rng(seed)
    p = np.empty(R.n_params(layout))
    for (w, b), n_in in zip(R.unpack(p, layout), sizes[:-1]):
        w[...] = rng.standard_normal(w.shape) / np.sqrt(n_in)
        b[...] = rng.standard_normal(b.shape)
    return p.astype(dtype)


def check_config(host, batch_size, dtype, sizes=SIZES, **tuning) -> float:
    """One epoch of this configuration over a shuffled prefix against the float64 reference's
    (the parameter change, normwise); returns the margin, raises when it is off."""
    x, y = (a[:CHECK_N].astype(dtype) for a in host)   # (fewer in a smoke run's --n)
    layout = R.layout_for(sizes)
    p0 = init_params(layout, sizes, 1, dtype)
    order = np.random.default_rng(5).permutation(len(x)).astype(np.int64)
    d_params = cuda.to_device(p0)
    DC.train_epoch(d_params, layout, ACTS, QUADRATIC, cuda.to_device(x), cuda.to_device(y),
                   cuda.to_device(order), batch_size, 3.0, 1.0, **tuning)
    want = p0.astype(np.float64)
    R.train_epoch(want, layout, ACTS, QUADRATIC, x.astype(np.float64), y.astype(np.float64),
                  order, batch_size, 3.0, 1.0)
    start = p0.astype(np.float64)
    name = np.dtype(dtype).name
    return check({"params_change": d_params.copy_to_host().astype(np.float64) - start},
                 {"params_change": want - start}, np.float64,
                 name=f"cuda epoch {sizes} bs{batch_size} {name} {tuning}",
                 rtol=EPOCH_RTOL[name])


def time_epochs(data, batch_size, dtype, reps, sizes=SIZES, **tuning):
    margin = check_config(data["host"], batch_size, dtype, sizes, **tuning)
    x, y = data[dtype]
    layout = R.layout_for(sizes)
    d_params = cuda.to_device(init_params(layout, sizes, 1, dtype))
    order = cuda.to_device(np.random.default_rng(2).permutation(len(x)).astype(np.int64))
    args = (layout, ACTS, QUADRATIC, x, y, order, batch_size, 3.0, 1.0)
    t0 = time.perf_counter()
    DC.train_epoch(d_params, *args, **tuning)   # warm-up: compiles
    cuda.synchronize()
    first = time.perf_counter() - t0
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        DC.train_epoch(d_params, *args, **tuning)
        cuda.synchronize()
        times.append(time.perf_counter() - t0)
    cfg = DC.epoch_config(layout, dtype, batch_size, **tuning)
    kernel = DC._epoch_kernel(dict(cfg))
    try:
        regs = list(kernel.get_regs_per_thread().values())
    except Exception:  # the simulator has no resource report
        regs = []
    return dict(sizes=sizes, batch_size=batch_size, dtype=np.dtype(dtype).name, tuning=tuning,
                blocks=cfg["blocks"], units_per_block=cfg["UPB"], threads=cfg["T"],
                storage="shared" if cfg["USE_SHARED"] else "global", regs=regs,
                first_s=first, median_s=statistics.median(times), min_s=min(times),
                times=times, check_margin=margin)


def accuracy_run(data, xt, yt, epochs=2):
    x, y = data[np.float32]
    layout = R.layout_for(SIZES)
    d_params = cuda.to_device(init_params(layout, SIZES, 7, np.float32))
    rng = np.random.default_rng(3)
    d_xt = cuda.to_device(xt)
    d_yt = cuda.to_device(np.eye(10, dtype=np.float32)[yt])
    accs = []
    for _ in range(epochs):
        order = cuda.to_device(rng.permutation(len(x)).astype(np.int64))
        DC.train_epoch(d_params, layout, ACTS, QUADRATIC, x, y, order, 10, 3.0, 1.0)
        cost, hits = DC.loss_and_correct(d_params, layout, ACTS, QUADRATIC, d_xt, d_yt)
        accs.append(dict(test_correct=hits, test_n=len(xt), mean_cost=cost / len(xt)))
    return accs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", default=None)
    ap.add_argument("--no-sweep", action="store_true")
    ap.add_argument("--n", type=int, default=50000, help="training images used (smoke runs)")
    ap.add_argument("--n-test", type=int, default=10000)
    opts = ap.parse_args()
    x, labels, xt, yt = load()
    x, labels, xt, yt = x[:opts.n], labels[:opts.n], xt[:opts.n_test], yt[:opts.n_test]
    y = np.eye(10, dtype=np.float32)[labels]
    data = {"host": (x, y), np.float32: (cuda.to_device(x), cuda.to_device(y)),
            np.float64: (cuda.to_device(x.astype(np.float64)),
                         cuda.to_device(y.astype(np.float64)))}
    dev = cuda.get_current_device()
    name = getattr(dev, "name", "simulator")
    name = name.decode() if isinstance(name, bytes) else name
    print(f"device: {name}; {len(x)} training images", flush=True)
    rows = [time_epochs(data, 10, np.float32, opts.reps),
            time_epochs(data, 100, np.float32, opts.reps),
            time_epochs(data, 10, np.float64, opts.reps)]
    if not opts.no_sweep:
        for upb, threads in [(1, 256), (2, 256), (3, 256), (5, 256), (10, 256), (30, 256),
                             (1, 128), (3, 128), (5, 128)]:
            rows.append(time_epochs(data, 10, np.float32, opts.reps,
                                    units_per_block=upb, threads=threads))
        rows.append(time_epochs(data, 100, np.float32, opts.reps, units_per_block=5))
        for upb in (None, 1, 2, 4):
            rows.append(time_epochs(data, 10, np.float32, opts.reps, sizes=[784, 100, 10],
                                    **({"units_per_block": upb} if upb else {})))
    accs = accuracy_run(data, xt, yt)
    print(f"{'sizes':>14} {'bs':>4} {'dtype':>8} {'blocks':>6} {'upb':>4} {'T':>4} {'regs':>5} "
          f"{'first s':>8} {'median s':>9} {'min s':>8}")
    for r in rows:
        print(f"{str(r['sizes']):>14} {r['batch_size']:>4} {r['dtype']:>8} {r['blocks']:>6} "
              f"{r['units_per_block']:>4} {r['threads']:>4} {str(r['regs'][:1]):>5} "
              f"{r['first_s']:8.3f} {r['median_s']:9.4f} {r['min_s']:8.4f}")
    for i, a in enumerate(accs):
        print(f"after epoch {i + 1}: test accuracy {a['test_correct']}/{a['test_n']} "
              f"({100 * a['test_correct'] / a['test_n']:.2f}%), mean cost {a['mean_cost']:.4f}")
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(dict(rows=rows, accuracy=accs,
                           date=time.strftime("%Y-%m-%d %H:%M:%S %Z")), f, indent=1)
    ok = accs[-1]["test_correct"] >= 0.9 * accs[-1]["test_n"]
    print("accuracy check:", "OK" if ok else "FAILED (< 90%)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
