"""Command line: ``fastnet train`` (or ``python -m fastnet train``) trains the book's
chapter-1 network on MNIST and prints one line per epoch with the test accuracy."""

from __future__ import annotations

import argparse
import sys


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fastnet", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a network on MNIST (default: the book's "
                                         "chapter-1 network [784,30,10], sigmoid, quadratic "
                                         "cost, mini-batch 10, lr 3.0)")
    train.add_argument("--sizes", type=_sizes, default=[784, 30, 10])
    train.add_argument("--epochs", type=int, default=30)
    train.add_argument("--batch-size", type=int, default=10)
    train.add_argument("--lr", type=float, default=3.0)
    train.add_argument("--lmbda", type=float, default=0.0, help="L2 regularisation")
    train.add_argument("--activation", default="sigmoid")
    train.add_argument("--loss", default="quadratic",
                       choices=["quadratic", "cross_entropy", "log_likelihood"])
    train.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    train.add_argument("--device", default=None, help="cpu (default), cuda or numpy")
    train.add_argument("--seed", type=int, default=None)
    train.add_argument("--data", default=None,
                       help="directory with the MNIST IDX files (default: $FASTNET_DATA, "
                            "else the download cache)")
    train.add_argument("--save", default=None, help="write the trained model to this .npz")
    args = parser.parse_args(argv)

    import time

    from fastnet import Model
    from fastnet.datasets import load_mnist

    (x, y), _, (xt, yt) = load_mnist(args.data)
    try:
        model = Model(args.sizes, activation=args.activation, loss=args.loss, dtype=args.dtype,
                      device=args.device, seed=args.seed)
        print(f"Training {model.layers} with {args.loss} cost on {len(x)} MNIST images: "
              f"{args.epochs} epochs, mini-batch {args.batch_size}, lr {args.lr} "
              f"({model.dtype.name}, {model.device})", flush=True)
        for epoch in range(args.epochs):
            t0 = time.perf_counter()
            h = model.fit(x, y, epochs=1, batch_size=args.batch_size, lr=args.lr,
                          lmbda=args.lmbda, verbose=False)
            seconds = time.perf_counter() - t0
            score = model.evaluate(xt, yt)
            correct = round(score["accuracy"] * len(xt))
            print(f"Epoch {epoch}: {correct} / {len(xt)} test accuracy "
                  f"({score['accuracy']:.2%}, epoch {h.seconds[0]:.3f} s, with metrics "
                  f"{seconds:.2f} s)", flush=True)
    except (ValueError, TypeError, RuntimeError) as exc:
        print(f"fastnet: error: {exc}", file=sys.stderr)
        return 2
    if args.save:
        model.save(args.save)
        print(f"saved to {args.save}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
