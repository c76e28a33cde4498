"""The command line's other commands: ``evaluate`` (a saved model on the test set: accuracy,
confusion matrix, per-class precision/recall/F1), ``predict`` (digits in image files),
``bench`` (seconds per epoch of the book's networks on each device, side by side), ``info``
(versions, CPU, threads, kernel cache, CUDA) and ``warmup`` (compile the kernels ahead of time).
``add_parsers`` adds them to ``fastnet/__main__.py``'s parser; ``run`` runs one."""

from __future__ import annotations

import os
import platform
import sys
import time

import numpy as np

from fastnet._cli import UsageError, load_data, needs


def add_parsers(sub, data_arguments, _defaults_formatter) -> None:
    fmt = _defaults_formatter
    ev = sub.add_parser("evaluate", formatter_class=fmt, help="score a saved model on the test "
                        "set: accuracy, confusion matrix, per-class precision/recall/F1")
    ev.add_argument("model", help="a model file written by fastnet train --save / Model.save")
    ev.add_argument("--device", default=None, help="cpu (default), cuda or numpy")
    data_arguments(ev)
    pr = sub.add_parser("predict", formatter_class=fmt, help="the digit in each image file "
                        "(PNG/JPEG, gray or colour; needs fastnet[image])")
    pr.add_argument("model", help="a model file written by fastnet train --save / Model.save")
    pr.add_argument("images", nargs="+", help="image files")
    pr.add_argument("--device", default=None, help="cpu (default), cuda or numpy")
    be = sub.add_parser("bench", formatter_class=fmt, help="seconds per training epoch of the "
                        "book's networks on numpy, cpu and cuda — and PyTorch and JAX when "
                        "installed — side by side")
    be.add_argument("--images", type=int, default=10000, help="training images per epoch")
    be.add_argument("--batch-sizes", default="10,100", help="mini-batch sizes")
    be.add_argument("--presets", default="ch1,ch1-100",
                    help="the networks (fastnet train --preset names)")
    be.add_argument("--devices", default="numpy,cpu,cuda", help="devices to try")
    be.add_argument("--no-peers", dest="peers", action="store_false",
                    help="leave out PyTorch and JAX (run by default when installed, on dense "
                         "networks)")
    sub.add_parser("info", help="versions, CPU, threads, kernel cache and CUDA status")
    wu = sub.add_parser("warmup", formatter_class=fmt, help="compile the kernels a default "
                        "fastnet train needs, ahead of time, and say how long it took")
    wu.add_argument("--dtype", nargs="+", default=["float32"], choices=["float32", "float64"])


def run(args) -> int:
    return {"evaluate": evaluate, "predict": predict, "bench": bench, "info": info,
            "warmup": warmup}[args.command](args)


def _load_model(path, device):
    import fastnet
    try:
        return fastnet.load(path, device=device)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file (a model written by fastnet train --save)") \
            from None
    except (ValueError, TypeError, RuntimeError, OSError) as exc:
        raise UsageError(str(exc)) from None


def _check_mnist_shaped(model, path) -> None:
    if model.n_in != 784 or model.n_out != 10:
        raise UsageError(f"{path}: the model takes {model.n_in} inputs and gives {model.n_out} "
                         f"outputs; MNIST needs 784 and 10")


def evaluate(args) -> int:
    from fastnet import metrics
    model = _load_model(args.model, args.device)
    _check_mnist_shaped(model, args.model)
    _, _, (xt, yt) = load_data(args.dataset, args.data)
    scores = np.asarray(model.predict(xt), np.float64)
    res = metrics.compute(["accuracy", "confusion_matrix", "precision", "recall", "f1"], yt,
                          scores)
    n = len(yt)
    print(f"{args.model}: {round(res['accuracy'] * n)} / {n} test images correct "
          f"({res['accuracy']:.2%})")
    cm = res["confusion_matrix"]
    width = max(5, len(str(cm.max())) + 1)
    print("confusion matrix (rows: true class, columns: predicted)")
    print("     " + "".join(f"{j:>{width}}" for j in range(cm.shape[1])))
    for i, row in enumerate(cm):
        print(f"{i:>5}" + "".join(f"{v:>{width}}" for v in row))
    print(f"{'class':>5} {'precision':>10} {'recall':>8} {'f1':>8} {'support':>8}")
    for i in range(cm.shape[0]):
        print(f"{i:>5} {res['precision'][i]:>10.4f} {res['recall'][i]:>8.4f} "
              f"{res['f1'][i]:>8.4f} {cm[i].sum():>8}")
    return 0


def predict(args) -> int:
    needs("PIL.Image", "image", "fastnet predict")
    from fastnet.images import mnist_like, read_image
    model = _load_model(args.model, args.device)
    _check_mnist_shaped(model, args.model)
    try:
        x = np.stack([mnist_like(read_image(p)) for p in args.images])
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    out = np.asarray(model.predict(x), np.float64)
    if model.layers[-1].activation != "softmax":      # sigmoid outputs: shares of their sum
        out = out / np.maximum(out.sum(axis=1, keepdims=True), 1e-300)
    for path, p in zip(args.images, out):
        print(f"{path}: {int(np.argmax(p))}")
        print("  " + "  ".join(f"{d}: {v:.4f}" for d, v in enumerate(p)))
    return 0


# --------------------------------------------------------------------------- bench


def _bench_data(n: int):
    """MNIST's first ``n`` training images when they are at hand (no download), else
    synthetic MNIST-shaped images (81 % zeros, as MNIST's pixels are)."""
    from fastnet import datasets
    try:
        (x, y), _, _ = datasets.load_mnist(download=False, validation=10000)
        return x[:n], y[:n], "MNIST"
    except (OSError, ValueError):
        rng = np.random.default_rng(0)
        x = rng.random((n, 784), dtype=np.float32) * (rng.random((n, 784)) > 0.81)
        return x, rng.integers(0, 10, n), "synthetic MNIST-shaped"


def _epoch_seconds(preset, device, x, y, batch, repeats=3) -> float:
    model = preset.model(device=device, seed=0)
    kw = dict(batch_size=batch, lr=preset.lr, verbose=False, training_metrics=False)
    model.fit(x[:max(batch, 20)], y[:max(batch, 20)], epochs=1, **kw)      # compile / warm
    return min(model.fit(x, y, epochs=1, **kw).seconds[0] for _ in range(repeats))


def _peer_seconds(peer, preset, x, y, batch, repeats=3) -> tuple[float, bool]:
    """(best of ``repeats`` epoch seconds, checked) of ``peer`` (``fastnet.peers``) on the
    preset's dense network from the model's own start, after one untimed epoch (JAX compiles
    its scan for the epoch's length there). Checked: one epoch on the first 300 images in data
    order changes the parameters as fastnet's float64 reference does (normwise, 1e-3)."""
    from fastnet import peers
    model = preset.model(device="numpy", dtype="float64", seed=0)
    acts = [layer.activation for layer in model.layers]
    start = [(model.params_of(i)["w"].astype(np.float32), model.params_of(i)["b"]
              .astype(np.float32)) for i in range(len(model.layers))]
    onehot = np.eye(model.n_out, dtype=np.float32)[y]
    k = min(300, len(x))
    epoch, params = peers.dense(peer, start, acts, model.loss, x[:k], onehot[:k], batch,
                                preset.lr, preset.lmbda)
    epoch(np.arange(k))
    p0 = model.params.copy()
    model.fit(x[:k].astype(np.float64), y[:k], epochs=1, batch_size=batch, lr=preset.lr,
              lmbda=preset.lmbda, shuffle=False, verbose=False, training_metrics=False)
    got = np.concatenate([np.concatenate([w.ravel(), b]) for w, b in params()])
    change, want = got - p0, model.params - p0
    checked = np.linalg.norm(change - want) <= 1e-3 * max(np.linalg.norm(want), 1e-12)
    epoch, _ = peers.dense(peer, start, acts, model.loss, x, onehot, batch, preset.lr,
                           preset.lmbda)
    rng = np.random.default_rng(0)
    epoch(rng.permutation(len(x)))
    times = []
    for _ in range(repeats):
        order = rng.permutation(len(x))
        t0 = time.perf_counter()
        epoch(order)
        times.append(time.perf_counter() - t0)
    return min(times), bool(checked)


def bench(args) -> int:
    from fastnet import devices
    from fastnet.presets import PRESETS
    try:
        batches = [int(b) for b in args.batch_sizes.split(",")]
        if min(batches) < 1 or args.images < 1:
            raise ValueError
    except ValueError:
        raise UsageError(f"--batch-sizes and --images must be integers >= 1, got "
                         f"{args.batch_sizes!r} and {args.images!r}") from None
    names = args.presets.split(",")
    bad = [p for p in names if p not in PRESETS]
    if bad:
        raise UsageError(f"--presets: unknown {bad[0]!r}; expected names from "
                         f"{', '.join(PRESETS)}")
    wanted, skipped = [], []
    for d in args.devices.split(","):
        try:
            devices.get(d)
            wanted.append(d)
        except ValueError as exc:
            raise UsageError(f"--devices: {exc}") from None
        except RuntimeError as exc:
            skipped.append(f"{d}: {str(exc).split('. ')[0]}")
    from fastnet import peers
    from fastnet.layers import Dense
    peer_names = [p for p in peers.PEERS if not peers.unavailable(p)] if args.peers else []
    x, y, what = _bench_data(args.images)
    print(f"Seconds per training epoch of {len(x)} {what} images (best of 3, compiled "
          f"beforehand), float32")
    columns = wanted + peer_names
    head = f"{'network':<18}{'batch':>6}" + "".join(f"{d:>10}" for d in columns)
    print(head + "  time over cpu's" * ("cpu" in wanted and len(columns) > 1))
    unchecked = []
    for name in names:
        preset = PRESETS[name]
        dense = all(isinstance(layer, Dense) for layer in preset.model().layers)
        for batch in batches:
            t = {d: _epoch_seconds(preset, d, x, y, batch) for d in wanted}
            marks = {}
            for peer in peer_names if dense else []:
                t[peer], ok = _peer_seconds(peer, preset, x, y, batch)
                marks[peer] = "" if ok else "!"
                if not ok:
                    unchecked.append(f"{peer} on {name}, batch {batch}")
            line = f"{name:<18}{batch:>6}" + "".join(
                f"{t[d]:>9.3f}{marks.get(d, ' ')}" if d in t else f"{'–':>9} "
                for d in columns)
            if "cpu" in wanted and len(columns) > 1:
                line += "  " + ", ".join(f"{d} {t[d] / t['cpu']:.1f}×" for d in columns
                                         if d != "cpu" and d in t)
            print(line, flush=True)
    for line in skipped:
        print(f"skipped {line}")
    if peer_names:
        print(f"{' and '.join(peer_names)}: the same SGD written in each (fastnet/peers.py), "
              f"dense networks only (–: not run)")
    for peer in peers.PEERS:
        if args.peers and peers.unavailable(peer):
            print(f"{peer}: not run ({peers.unavailable(peer)})")
    for what in unchecked:
        print(f"! {what}: its first epoch did not match fastnet's reference (1e-3)")
    print("The full comparison, with every peer checked: pytest bench --benchmark-only")
    return 0


# --------------------------------------------------------------------------- info, warmup


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _tree_size(path: str) -> tuple[int, int]:
    files = size = 0
    for root, _, names in os.walk(path):
        for n in names:
            try:
                size += os.path.getsize(os.path.join(root, n))
                files += 1
            except OSError:
                pass
    return files, size


def info(args) -> int:
    import llvmlite.binding as llvm
    import numba

    import fastnet
    from fastnet.kernels import config, cuda_target
    print(f"fastnet {fastnet.__version__}, numba {numba.__version__}, numpy {np.__version__}, "
          f"python {platform.python_version()} ({sys.executable})")
    try:
        layer = numba.threading_layer()
    except ValueError:
        layer = f"not chosen yet (by the first parallel kernel; configured: " \
                f"{numba.config.THREADING_LAYER})"
    print(f"threading layer: {layer}")
    features = llvm.get_host_cpu_features()
    simd = [f for f in ("avx2", "fma", "avx512f") if features.get(f)]
    no512 = "" if features.get("avx512f") else ", no AVX-512"
    print(f"CPU: {_cpu_name()} (LLVM target {llvm.get_host_cpu_name()}; "
          f"{', '.join(simd).upper() or 'no AVX2'}{no512})")
    print(f"threads: {numba.config.NUMBA_NUM_THREADS} (NUMBA_NUM_THREADS; {os.cpu_count()} "
          f"logical CPUs)")
    cache = config.kernel_cache_dir()
    if not config.CACHE:
        print("kernel cache: off (FASTNET_NO_CACHE is set)")
    elif os.path.isdir(cache):
        files, size = _tree_size(cache)
        print(f"kernel cache: {cache} ({files} files, {size / 1e6:.1f} MB)")
    else:
        print(f"kernel cache: {cache} (empty: the first run compiles; fastnet warmup does it "
              f"ahead of time)")
    try:
        cuda = cuda_target.require_cuda()
        where = "the simulator" if cuda_target.simulator_enabled() else \
            cuda.get_current_device().name
        if isinstance(where, bytes):
            where = where.decode()
        print(f"CUDA: usable ({where})")
    except RuntimeError as exc:
        print(f"CUDA: not usable: {exc}")
    return 0


def warmup(args) -> int:
    from fastnet import Model, devices
    rng = np.random.default_rng(0)
    x = (rng.random((40, 784)) * (rng.random((40, 784)) > 0.81)).astype(np.float32)
    y = rng.integers(0, 10, 40)
    cpu = devices.get("cpu")
    t0 = time.perf_counter()
    for dtype in args.dtype:
        t = time.perf_counter()
        model = Model([784, 30, 10], init="large", dtype=dtype, device="cpu", seed=0)
        model.fit(x[:20], y[:20], epochs=1, batch_size=10, lr=3.0, verbose=False,
                  validation_data=(x[20:], y[20:]))
        model.evaluate(x, y)
        print(f"{dtype}: {time.perf_counter() - t:.1f} s", flush=True)
    from fastnet.kernels import config
    where = (f"cached in {config.kernel_cache_dir()}" if config.CACHE and cpu.compiled() else
             "not cached (FASTNET_NO_CACHE is set)")
    print(f"warm-up of a default fastnet train ({', '.join(args.dtype)}) took "
          f"{time.perf_counter() - t0:.1f} s; kernels {where}")
    return 0
