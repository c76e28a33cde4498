"""The seed lectures' MLP exercise (seed 003, after the deeplearning.net MLP tutorial): one
hidden layer of 500 tanh units (Glorot-uniform weights), a softmax output, the log-likelihood
cost and L2, trained until the validation error is at most 2 % — with the lecture's SGD
(η 0.01, mini-batch 20, L2 0.0001·Σw², i.e. fit's ``lmbda`` = 2·n·0.0001 = 10) and with Adam
(the same mini-batch and L2; η from its default 0.001, halved after two epochs without a better
validation accuracy — at a constant 0.001 it settles near 2.1 %).

    python examples/seed003_mlp.py [--optimizer sgd|adam|both] [--max-epochs 400] [--data DIR]

Prints one line per epoch, then for each optimizer the epoch that reached the target, the
seconds of training up to it and per epoch, and the test error there. The lecture reports
1.9 % after about 265 epochs at about 18 s per epoch in NumPy.
"""

from __future__ import annotations

import argparse
import time

import fastnet
from fastnet.callbacks import Callback
from fastnet.datasets import load_mnist
from fastnet.schedules import HalveOnPlateau

RUNS = {"sgd": dict(optimizer="sgd", lr=0.01),
        "adam": dict(optimizer="adam", lr=HalveOnPlateau(0.001, patience=2))}


class StopAtError(Callback):
    """Stop the fit once the validation error is at most ``target``; remember the epoch and
    the training seconds up to it."""

    def __init__(self, target: float):
        self.target, self.epoch, self.seconds = target, None, 0.0

    def on_epoch_end(self, end):
        self.seconds += end.history.seconds[-1]
        if 1 - end.history.val_accuracy[-1] <= self.target:
            self.epoch = end.epoch
            end.stop()


def run(name, train, valid, test, max_epochs, seed, verbose=True) -> dict:
    model = fastnet.Model([784, 500, 10], activation="tanh",
                          loss="log_likelihood", init="glorot", seed=seed)
    stop = StopAtError(0.02)
    history = model.fit(train, epochs=max_epochs, batch_size=20, lmbda=10.0,
                        validation_data=valid, training_metrics=False, callbacks=[stop],
                        verbose=verbose, **RUNS[name])
    epochs = len(history.seconds)
    return {"optimizer": name, "epoch": stop.epoch, "epochs": epochs,
            "seconds": sum(history.seconds), "per_epoch": sum(history.seconds) / epochs,
            "val_error": 1 - history.val_accuracy[-1],
            "test_error": 1 - model.evaluate(test)["accuracy"]}


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--optimizer", choices=["sgd", "adam", "both"], default="both")
    ap.add_argument("--max-epochs", type=int, default=400)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data", default=None, help="MNIST directory (default: $FASTNET_DATA, "
                                                 "else the download cache)")
    args = ap.parse_args(argv)
    train, valid, test = (fastnet.Dataset(*part) for part in load_mnist(args.data))
    results = []
    for name in (["sgd", "adam"] if args.optimizer == "both" else [args.optimizer]):
        t0 = time.perf_counter()
        r = run(name, train, valid, test, args.max_epochs, args.seed)
        reached = (f"validation error {r['val_error']:.2%} at epoch {r['epoch']}"
                   if r["epoch"] else f"not reached in {r['epochs']} epochs "
                   f"(validation error {r['val_error']:.2%})")
        print(f"{name}: {reached}; {r['seconds']:.1f} s of training ({r['per_epoch']:.2f} s "
              f"per epoch, {time.perf_counter() - t0:.1f} s wall with scoring); test error "
              f"{r['test_error']:.2%}")
        results.append(r)
    return results


if __name__ == "__main__":
    main()
