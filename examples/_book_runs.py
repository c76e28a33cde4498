"""Shared driver for the book-run examples: options, seeding, timing and the best-of-N
summary. Each example script defines one training run and calls ``main``.

Every run is seeded like a book session started with ``random.seed(s)`` and
``np.random.seed(s)`` (seeds ``--seed``, ``--seed + 1``, ...), so run ``s`` of a script gives
the same mini-batches and initial weights as the book's own code seeded the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
import re
import sys
import time

import numpy as np

from fastnet import mnist_loader, network2


class _Tee(io.TextIOBase):
    """Writes to the real stdout and keeps a copy (to read the book's printed lines back)."""

    def __init__(self, out):
        self.out, self.copy = out, io.StringIO()

    def write(self, s):
        self.copy.write(s)
        return self.out.write(s)

    def flush(self):
        self.out.flush()


def sgd_counts(net, *args, **kwargs) -> list[int]:
    """Run network.py's ``net.SGD(*args, **kwargs)`` and return the per-epoch test counts it
    prints (``Epoch j: c / n``); the lines still reach stdout."""
    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        net.SGD(*args, **kwargs)
    text = tee.copy.getvalue()
    return [int(c) for c in re.findall(r"^Epoch \d+: (\d+) / \d+$", text, flags=re.M)]


def _warm_up(data) -> None:
    """Compile (or load from Numba's cache) the kernels before any run is timed."""
    training_data, _, test_data = data
    with contextlib.redirect_stdout(io.StringIO()):
        network2.Network([784, 10]).SGD(training_data[:20], 1, 10, 0.1,
                                        evaluation_data=test_data[:20],
                                        monitor_evaluation_accuracy=True)


def add_init_option(parser) -> None:
    """``--init large|default``: the chapter-3 runs' initial weights."""
    parser.add_argument("--init", choices=("large", "default"), default="large",
                        help="initial weights (default: large, as in the book's run)")


def cross_entropy_network(sizes, init: str):
    """network2's ``Network(sizes, cost=CrossEntropyCost)``, after
    ``large_weight_initializer()`` when ``init == "large"`` (the book's chapter-3 runs)."""
    net = network2.Network(sizes, cost=network2.CrossEntropyCost)
    if init == "large":
        net.large_weight_initializer()
    return net


def main(doc: str, book_figure, run, *, default_epochs: int, add_options=None) -> None:
    """Parse ``--runs --seed --epochs --data --quiet`` (plus the script's own options, added by
    ``add_options(parser)``), load MNIST, compile the kernels, then for each seed: seed both
    generators and time ``run(data, args) -> per-epoch accuracy in percent`` (``data`` is
    ``load_data_wrapper()``'s triple). Prints each run's peak and final figure, then the best
    of the runs and the spread. ``book_figure``: the book's figure, or ``f(args)`` giving it."""
    summary = " ".join(doc.split("\n\n")[0].split())
    parser = argparse.ArgumentParser(description=summary)
    parser.add_argument("--runs", type=int, default=3, help="number of runs (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first run (default 0)")
    parser.add_argument("--epochs", type=int, default=default_epochs,
                        help=f"epochs per run (default {default_epochs}, the book's)")
    parser.add_argument("--data", default=None,
                        help="directory of the MNIST IDX files or the book's mnist.pkl.gz "
                             "(default: $FASTNET_DATA, then the fastnet cache)")
    parser.add_argument("--quiet", action="store_true", help="hide the per-epoch lines")
    if add_options is not None:
        add_options(parser)
    args = parser.parse_args()
    book = book_figure(args) if callable(book_figure) else book_figure
    options = " ".join(f"--{k}={v}" for k, v in vars(args).items() if k not in ("data",))

    data = mnist_loader.load_data_wrapper(args.data)
    print(f"{summary}\nbook: {book}\noptions: {options}", flush=True)
    _warm_up(data)
    peaks, finals, walls = [], [], []
    for seed in range(args.seed, args.seed + args.runs):
        random.seed(seed)
        np.random.seed(seed)
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO() if args.quiet else sys.stdout):
            percents = run(data, args)
        walls.append(time.perf_counter() - t0)
        peak = max(percents)
        peaks.append(peak)
        finals.append(percents[-1])
        print(f"seed {seed}: peak {peak:.2f}% (epoch {percents.index(peak)}), "
              f"final {percents[-1]:.2f}%, wall {walls[-1]:.1f} s", flush=True)
    print(f"best of {args.runs}: peak {max(peaks):.2f}% "
          f"(spread {min(peaks):.2f}–{max(peaks):.2f}%), final {max(finals):.2f}% "
          f"(spread {min(finals):.2f}–{max(finals):.2f}%); wall per run "
          f"{min(walls):.1f}–{max(walls):.1f} s")
