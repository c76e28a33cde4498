"""Command line: ``fastnet train`` (or ``python -m fastnet train``) trains the book's
chapter-1 network on MNIST and prints one line per epoch with the test accuracy.

Every argument, the CUDA device and the ``--save`` destination are checked before MNIST is
loaded; a usage error is a short message on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path

# what a first `fastnet train` of the book's network spends compiling on a 2-core machine
_FIRST_COMPILE = "half a minute"
_DATA_HINT = ("point --data DIR (or FASTNET_DATA=DIR) at a directory holding the four MNIST "
              "IDX files (train-images-idx3-ubyte.gz etc., gzipped or raw)")


class _UsageError(Exception):
    """An argument or the environment is wrong: printed as one ``fastnet: error:`` line."""


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated sizes like 784,30,10, "
                                         f"got {text!r}") from None
    if len(sizes) < 2 or sizes[0] != 784 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"sizes must start with 784 (MNIST) and be >= 1, "
                                         f"got {text!r}")
    return sizes


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value
    return parse


def _finite_float(positive: bool):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            raise argparse.ArgumentTypeError(
                f"expected a finite number {'> 0' if positive else '>= 0'}, got {text!r}")
        return value
    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastnet", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    # A short usage line: argparse's full one wraps over several lines above every error.
    train = sub.add_parser("train", usage="fastnet train [options]  (fastnet train -h lists them)",
                           help="train a network on MNIST (default: the book's chapter-1 network "
                                "[784,30,10], sigmoid, quadratic cost, mini-batch 10, lr 3.0)")
    train.add_argument("--sizes", type=_sizes, default=[784, 30, 10])
    train.add_argument("--epochs", type=_int_at_least(1), default=30)
    train.add_argument("--batch-size", type=_int_at_least(1), default=10)
    train.add_argument("--lr", type=_finite_float(positive=True), default=3.0)
    train.add_argument("--lmbda", type=_finite_float(positive=False), default=0.0,
                       help="L2 regularisation")
    train.add_argument("--activation", default="sigmoid")
    train.add_argument("--loss", default="quadratic",
                       choices=["quadratic", "cross_entropy", "log_likelihood"])
    train.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    train.add_argument("--device", default=None,
                       help="cpu (default, or $FASTNET_DEVICE), cuda or numpy")
    train.add_argument("--seed", type=_int_at_least(0), default=None)
    train.add_argument("--data", default=None,
                       help="directory with the MNIST IDX files (default: $FASTNET_DATA, "
                            "else the download cache)")
    train.add_argument("--save", default=None, help="write the trained model to this .npz")
    return parser


def _check_save(path: str) -> None:
    """Refuse a ``--save`` destination that cannot be written, before hours of training."""
    dest = Path(path).expanduser()
    if dest.is_dir():
        raise _UsageError(f"--save {path}: is a directory; give a file name like model.npz")
    directory = dest.parent
    if not directory.is_dir():
        what = "is not a directory" if directory.exists() else "does not exist"
        raise _UsageError(f"--save {path}: {directory} {what}")
    try:  # what saving does (a temporary file beside the destination), as root too
        fd, probe = tempfile.mkstemp(prefix=".fastnet-", suffix=".probe", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise _UsageError(f"--save {path}: cannot write in {directory} ({e.strerror})") from None


def _not_found_message(err) -> str:
    places = ", ".join(f"{d} ({'no such directory' if not d.is_dir() else 'files missing'})"
                       for d, _ in err.looked) or "nowhere"
    download = "; downloading failed (see above)" if err.failures else ""
    return f"MNIST not found in {places}{download}\nfastnet: {_DATA_HINT}"


def _train(args: argparse.Namespace) -> int:
    import time

    from fastnet import Dataset, Model, devices
    from fastnet.datasets import MNISTNotFoundError, load_mnist

    try:
        model = Model(args.sizes, activation=args.activation, loss=args.loss, dtype=args.dtype,
                      device=args.device, seed=args.seed)
        device = devices.get(model.device)  # one that cannot run here (no GPU) says why, now
    except (ValueError, TypeError, RuntimeError) as exc:
        raise _UsageError(str(exc)) from None
    if args.save:
        _check_save(args.save)
    try:
        (x, y), _, (xt, yt) = load_mnist(args.data)
    except MNISTNotFoundError as exc:
        raise _UsageError(_not_found_message(exc)) from None
    except ValueError as exc:  # a corrupt or wrong file: the message names it
        raise _UsageError(str(exc)) from None
    print(f"Training {model.layers} with {args.loss} cost on {len(x)} MNIST images: "
          f"{args.epochs} epochs, mini-batch {args.batch_size}, lr {args.lr} "
          f"({model.dtype.name}, {model.device})", flush=True)
    if not device.compiled():
        print(f"Compiling the kernels for this machine first: once per install, about "
              f"{_FIRST_COMPILE} on 2 cores; later runs load them from the cache.", flush=True)
    train, test = Dataset(x, y), Dataset(xt, yt)   # checked and prepared once, not per epoch
    try:
        for epoch in range(args.epochs):
            t0 = time.perf_counter()
            h = model.fit(train, epochs=1, batch_size=args.batch_size, lr=args.lr,
                          lmbda=args.lmbda, verbose=False)
            seconds = time.perf_counter() - t0
            score = model.evaluate(test)
            correct = round(score["accuracy"] * len(xt))
            print(f"Epoch {epoch}: {correct} / {len(xt)} test accuracy "
                  f"({score['accuracy']:.2%}, epoch {h.seconds[0]:.3f} s, with metrics "
                  f"{seconds:.2f} s)", flush=True)
    except (ValueError, TypeError, RuntimeError) as exc:  # e.g. the GPU failing mid-run
        print(f"fastnet: error: training stopped: {exc}", file=sys.stderr)
        return 1
    if args.save:
        try:
            model.save(args.save)
        except OSError as exc:
            print(f"fastnet: error: could not save the model to {args.save}: {exc}",
                  file=sys.stderr)
            return 1
        print(f"saved to {args.save}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``); returns the exit status.
    argparse's own usage errors exit via SystemExit(2)."""
    args = _parser().parse_args(argv)
    try:
        return _train(args)
    except _UsageError as exc:
        print(f"fastnet: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
