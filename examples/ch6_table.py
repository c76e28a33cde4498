"""Chapter 6: the book's network3.py table, through fastnet.network3 (mini-batch 10). The figure
of a run is the test accuracy at the epoch of best validation accuracy, as network3 prints it
("Corresponding test accuracy"); the book reports the best of three runs.

    python examples/ch6_table.py --net fc|conv1|conv2|relu|expanded|dropout [--runs 3]
        [--epochs N] [--seed 0] [--data DIR] [--quiet] [--checkpoint-dir DIR]

| --net | network (sigmoid unless noted) | epochs, eta, lmbda | book |
| --- | --- | --- | --- |
| fc | FC 784→100 + softmax | 60, 0.1, 0 | 97.80% |
| conv1 | conv 20@5×5 + pool 2×2, FC 100, softmax | 60, 0.1, 0 | 98.78% |
| conv2 | + conv 40@5×5 + pool, FC 640→100 | 60, 0.1, 0 | 99.06% |
| relu | conv2 with ReLU everywhere | 60, 0.03, 0.1 | 99.23% |
| expanded | relu on the training set expanded to 250,000 by 1-pixel shifts | 60, 0.03, 0.1 | 99.37% |
| dropout | relu convs, two FC 1000 ReLU, dropout 0.5 on both and the softmax, expanded | 40, 0.03, 0 | 99.60% |

Each run seeds NumPy's global generator with its seed before building the network (the book's
initialisation draws come from it); the expanded set is shuffled with the run's seed
(``fastnet.datasets.expand_by_shifts``).

The longer rows take hours per run on two cores: with ``--checkpoint-dir DIR`` every run saves
itself after each epoch (``DIR/ch6-<net>-seed<seed>.npz``, ``Network.SGD(checkpoint=...)``), and
the same command, run again, resumes where it stopped and ends as the uninterrupted run would;
finished runs just report their figures.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time

import numpy as np

from fastnet import network3
from fastnet.datasets import expand_by_shifts
from fastnet.network3 import ConvPoolLayer, FullyConnectedLayer, Network, ReLU, SoftmaxLayer

MB = 10
BOOK = {"fc": (60, 0.1, 0.0, "97.80%"), "conv1": (60, 0.1, 0.0, "98.78%"),
        "conv2": (60, 0.1, 0.0, "99.06%"), "relu": (60, 0.03, 0.1, "99.23%"),
        "expanded": (60, 0.03, 0.1, "99.37%"), "dropout": (40, 0.03, 0.0, "99.60%")}


def layers(net: str):
    """The book's layer list for row ``net`` (build after seeding np.random)."""
    act = ReLU if net in ("relu", "expanded", "dropout") else network3.sigmoid
    if net == "fc":
        return [FullyConnectedLayer(n_in=784, n_out=100), SoftmaxLayer(n_in=100, n_out=10)]
    conv1 = ConvPoolLayer(image_shape=(MB, 1, 28, 28), filter_shape=(20, 1, 5, 5),
                          poolsize=(2, 2), activation_fn=act)
    if net == "conv1":
        return [conv1, FullyConnectedLayer(n_in=20 * 12 * 12, n_out=100),
                SoftmaxLayer(n_in=100, n_out=10)]
    conv2 = ConvPoolLayer(image_shape=(MB, 20, 12, 12), filter_shape=(40, 20, 5, 5),
                          poolsize=(2, 2), activation_fn=act)
    if net == "dropout":
        return [conv1, conv2,
                FullyConnectedLayer(n_in=40 * 4 * 4, n_out=1000, activation_fn=ReLU,
                                    p_dropout=0.5),
                FullyConnectedLayer(n_in=1000, n_out=1000, activation_fn=ReLU, p_dropout=0.5),
                SoftmaxLayer(n_in=1000, n_out=10, p_dropout=0.5)]
    return [conv1, conv2, FullyConnectedLayer(n_in=40 * 4 * 4, n_out=100, activation_fn=act),
            SoftmaxLayer(n_in=100, n_out=10)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--net", choices=list(BOOK), required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="seed of the first run")
    parser.add_argument("--epochs", type=int, default=None, help="default: the book's")
    parser.add_argument("--data", default=None, help="MNIST directory or mnist.pkl.gz")
    parser.add_argument("--quiet", action="store_true", help="hide network3's own lines")
    parser.add_argument("--checkpoint-dir", default=None,
                        help="save each run after every epoch there, and resume from it")
    args = parser.parse_args()
    epochs, eta, lmbda, book = BOOK[args.net]
    epochs = args.epochs or epochs
    training_data, validation_data, test_data = network3.load_data_shared(args.data)
    print(f"chapter 6, --net {args.net}: {epochs} epochs, eta {eta}, lmbda {lmbda}, "
          f"mini-batch {MB}; book: {book} (best of 3)", flush=True)
    figures, walls = [], []
    for seed in range(args.seed, args.seed + args.runs):
        train = training_data
        if args.net in ("expanded", "dropout"):
            train = expand_by_shifts(*training_data, seed=seed)
        np.random.seed(seed)
        net = Network(layers(args.net), MB)
        checkpoint = None
        if args.checkpoint_dir:
            os.makedirs(args.checkpoint_dir, exist_ok=True)
            checkpoint = os.path.join(args.checkpoint_dir, f"ch6-{args.net}-seed{seed}.npz")
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO() if args.quiet else sys.stdout):
            net.SGD(train, epochs, MB, eta, validation_data, test_data, lmbda=lmbda,
                    checkpoint=checkpoint)
        walls.append(time.perf_counter() - t0)
        figures.append(100 * net.test_accuracy)
        print(f"seed {seed}: test {figures[-1]:.2f}% at best validation "
              f"{100 * net.best_validation_accuracy:.2f}%, wall {walls[-1]:.0f} s (this process)",
              flush=True)
    print(f"--net {args.net}: best of {args.runs} {max(figures):.2f}% (spread "
          f"{min(figures):.2f}–{max(figures):.2f}%), book {book}; wall per run "
          f"{min(walls):.0f}–{max(walls):.0f} s")


if __name__ == "__main__":
    main()
