"""The issue's speed check of ``fastnet sweep``: N runs of the chapter-1 network (seeds 0..N-1)
as one ``fastnet.sweep`` on local worker processes, against the same runs as ``Model.fit``
calls one after another in one process (each fit on fastnet's own thread choice) and, with
``--train``, as separate ``fastnet train`` commands. Each way is timed as a new Python process
doing everything a user's script would: import, load MNIST, load the compiled kernels, train.
The sweep and the fits do the same work per run: train on the 50,000 images, score the
validation set after each epoch, the test set at the end (``fastnet train`` also scores the
training and test sets after every epoch, as it prints them).

    python examples/sweep_speed.py --runs 8 --epochs 10 --workers 2 [--train]

Prints the seconds of each way and the sweep's ratio to each. Run it once before timing, so
that the kernels are compiled and cached.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import fastnet
from fastnet.datasets import load_mnist
from fastnet.presets import PRESETS


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--train", action="store_true", help="also time fastnet train commands")
    ap.add_argument("--way", choices=["fits", "sweep"], default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    seeds = list(range(args.runs))
    if args.way == "fits":
        (x, y), val, (xt, yt) = load_mnist(verbose=False)
        for seed in seeds:
            model = PRESETS["ch1"].model(seed=seed)
            model.fit(x, y, epochs=args.epochs, batch_size=10, lr=3.0, validation_data=val,
                      training_metrics=False, verbose=False, progress=False)
            model.evaluate(xt, yt)
        return
    if args.way == "sweep":
        spec = {"preset": "ch1", "seeds": seeds, "fit": {"epochs": args.epochs}}
        with tempfile.TemporaryDirectory() as tmp:
            rows = fastnet.sweep(spec, db=os.path.join(tmp, "s.db"), workers=args.workers)
        assert all(r["status"] == "done" for r in rows), [r["error"] for r in rows]
        print(rows[0]["threads"])
        return
    times = {}
    common = [sys.executable, __file__, "--runs", str(args.runs), "--epochs", str(args.epochs)]
    t = time.perf_counter()
    out = subprocess.run(common + ["--way", "sweep"] + (
        ["--workers", str(args.workers)] if args.workers else []),
        check=True, capture_output=True, text=True).stdout
    times["fastnet.sweep"] = time.perf_counter() - t
    threads = int(out.split()[-1])
    t = time.perf_counter()
    subprocess.run(common + ["--way", "fits"], check=True)
    times["Model.fit one after another"] = time.perf_counter() - t
    if args.train:
        t = time.perf_counter()
        for seed in seeds:
            subprocess.run([sys.executable, "-m", "fastnet", "train", "--epochs",
                            str(args.epochs), "--seed", str(seed), "--quiet"], check=True,
                           stdout=subprocess.DEVNULL)
        times["fastnet train commands"] = time.perf_counter() - t
    print(f"{args.runs} runs of ch1, {args.epochs} epochs each, {os.cpu_count()} cores; sweep "
          f"runs with {threads} thread(s) each")
    base = times["fastnet.sweep"]
    for name, secs in times.items():
        print(f"  {name:<30} {secs:8.1f} s   sweep / this = {base / secs:.2f}")


if __name__ == "__main__":
    main()
