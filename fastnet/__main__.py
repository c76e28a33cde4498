"""Command line: ``fastnet <command>`` (or ``python -m fastnet <command>``). ``train`` trains a
network (default: the book's chapter-1 run; ``--preset`` for every run of the book's tables) on
MNIST or Fashion-MNIST and prints one line per epoch; ``evaluate``, ``predict``, ``bench``,
``info`` and ``warmup`` are in ``fastnet/cli_commands.py``, ``sweep`` (many runs at once) in
``fastnet/cli_sweep.py``, the training run in ``fastnet/cli_train.py``, the presets in
``fastnet/presets.py``.

Every argument, the CUDA device and the files to write are checked before the data are loaded;
a usage error is a short message on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import argparse
import math
import sys

from fastnet._cli import UsageError as _UsageError
from fastnet._cli import check_writable as _check_save
from fastnet._cli import load_data

# what a first `fastnet train` of the book's network spends compiling on a 2-core machine
_FIRST_COMPILE = "a minute or two"   # 65-80 s measured for the chapter-1 network


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


_SCHEDULES = "constant, inverse:DECAY, step:FACTOR:EVERY, cosine[:MIN_LR] or plateau:PATIENCE"


def _schedule(text: str):
    """``--schedule`` as a function of the first epoch's rate: ``lr -> Schedule``."""
    from fastnet import schedules
    name, *rest = text.split(":")
    kinds = {"constant": (schedules.Constant, 0), "inverse": (schedules.InverseTime, 1),
             "step": (schedules.StepDecay, 2), "cosine": (schedules.Cosine, 1),
             "plateau": (schedules.HalveOnPlateau, 1)}
    if name not in kinds or len(rest) > kinds[name][1] or \
            (name in ("inverse", "step", "plateau") and len(rest) != kinds[name][1]):
        raise argparse.ArgumentTypeError(f"expected {_SCHEDULES}, got {text!r}")
    try:
        values = [float(v) for v in rest]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {_SCHEDULES}, got {text!r}") from None
    cls = kinds[name][0]

    def make(lr: float, epochs: int):
        if name == "cosine":
            return cls(lr, epochs, *values)
        if name == "step":
            return cls(lr, values[0], int(values[1]))
        if name == "plateau":
            return cls(lr, int(values[0]))
        return cls(lr, *values)
    make.text = text
    return make


class _ShortParser(argparse.ArgumentParser):
    """An argparse parser whose errors are two lines: a short usage hint and the error."""

    def error(self, message):
        self.exit(2, f"usage: {self.prog} ... ({self.prog} -h lists the options)\n"
                     f"{self.prog}: error: {message}\n")


class _Defaults(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each option's default, except where it is None (the preset's value,
    which the option's help names)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _parser() -> argparse.ArgumentParser:
    from fastnet import cli_commands as commands
    from fastnet.presets import PRESETS

    parser = _ShortParser(prog="fastnet", description="Train the networks of Nielsen's book "
                          "(and your own) on MNIST or Fashion-MNIST, evaluate them, try them on "
                          "your images. fastnet COMMAND -h lists a command's options.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_ShortParser)
    defaults = _Defaults
    presets = "\n".join(f"  {name:<17} {p.summary()}" for name, p in PRESETS.items())
    train = sub.add_parser("train", formatter_class=defaults,
                           help="train a network (default: the book's chapter-1 network "
                                "[784,30,10], sigmoid, quadratic cost, mini-batch 10, lr 3.0)",
                           description="Train a network and print one line per epoch. A flag "
                                       "given explicitly overrides the preset's value.",
                           epilog=f"presets (the book's runs, docs/book_results.md):\n{presets}")
    train.add_argument("--preset", choices=list(PRESETS), default="ch1", metavar="NAME",
                       help="the book's run to start from (listed below)")
    train.add_argument("--sizes", type=_sizes, default=None,
                       help="dense layer sizes like 784,30,10 (replaces the preset's network)")
    train.add_argument("--activation", default=None, help="hidden activation with --sizes "
                       "(sigmoid, tanh, relu, softplus, linear; preset's: sigmoid)")
    train.add_argument("--loss", default=None,
                       choices=["quadratic", "cross_entropy", "log_likelihood"],
                       help="cost with --sizes (preset's: ch1 quadratic)")
    train.add_argument("--init", default=None, choices=["default", "large", "glorot", "he"],
                       help="initial weights with --sizes (preset's: large)")
    train.add_argument("--epochs", type=_int_at_least(1), default=None,
                       help="epochs (preset's: ch1 30)")
    train.add_argument("--batch-size", type=_int_at_least(1), default=None,
                       help="mini-batch size (preset's: 10)")
    train.add_argument("--lr", type=_finite_float(positive=True), default=None,
                       help="learning rate η of the first epoch (preset's: ch1 3.0)")
    train.add_argument("--lmbda", type=_finite_float(positive=False), default=None,
                       help="L2 regularisation as fit's: w ← (1 − lr·lmbda/n)·w "
                            "(preset's: ch1 0)")
    train.add_argument("--l1", type=_finite_float(positive=False), default=None,
                       help="L1 regularisation as fit's: l1/n·sgn(w) added to the weights' "
                            "gradient (default 0)")
    train.add_argument("--optimizer", default=None,
                       choices=["sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw"],
                       help="optimizer (fastnet.optimizers; default sgd, the book's); without "
                            "--lr, another optimizer trains at its own default rate")
    train.add_argument("--schedule", type=_schedule, default=None,
                       help=f"learning-rate schedule (fastnet.schedules): {_SCHEDULES}")
    train.add_argument("--early-stopping", type=_int_at_least(1), default=None,
                       metavar="PATIENCE", help="stop after PATIENCE epochs without a better "
                       "validation accuracy, keeping the best epoch's weights")
    train.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                       help="the parameters' and computation's floating-point type")
    train.add_argument("--device", default=None,
                       help="cpu (default, or $FASTNET_DEVICE), cuda or numpy")
    train.add_argument("--seed", type=_int_at_least(0), default=None,
                       help="seed of the initial weights and the sample order")
    train.add_argument("--threads", type=_int_at_least(1), default=None,
                       help="CPU threads (default: fastnet's choice)")
    _data_arguments(train)
    train.add_argument("--save", default=None, help="write the trained model to this .npz")
    train.add_argument("--checkpoint", default=None,
                       help="save the run after every epoch to this .npz and resume from it")
    train.add_argument("--log", default=None, help="write the history to this .csv or .json")
    train.add_argument("--plot", default=None, metavar="DIR",
                       help="write curves, confusion matrix, first-layer weights and "
                            "misclassified digits as PNG files into DIR (fastnet[plot])")
    train.add_argument("--quiet", action="store_true", help="print only the final line")
    train.add_argument("--limit", type=_int_at_least(1), default=None, help=argparse.SUPPRESS)
    commands.add_parsers(sub, _data_arguments, _Defaults)
    from fastnet import cli_sweep
    cli_sweep.add_parser(sub, _data_arguments, _Defaults)
    return parser


def _data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", choices=["mnist", "fashion-mnist"], default="mnist",
                   help="the data set (same format and sizes)")
    p.add_argument("--data", default=None,
                   help="directory with the IDX files (default: $FASTNET_DATA for MNIST, "
                        "$FASTNET_FASHION_DATA for Fashion-MNIST, else the download cache)")


def _train(args: argparse.Namespace) -> int:
    from fastnet import cli_train, devices

    run = cli_train.Run.from_args(args)
    model = run.model
    try:
        device = devices.get(model.device)  # one that cannot run here (no GPU) says why, now
    except (ValueError, TypeError, RuntimeError) as exc:
        raise _UsageError(str(exc)) from None
    for flag in ("save", "checkpoint"):
        if getattr(args, flag):
            _check_save(getattr(args, flag), f"--{flag}")
    run.check_outputs()
    (x, y), (xv, yv), (xt, yt) = load_data(args.dataset, args.data)
    x, y, xv, yv, xt, yt = run.data(x, y, xv, yv, xt, yt)
    if not args.quiet:
        print(run.header(len(x)), flush=True)
    if not device.compiled():
        print(f"Compiling the kernels for this machine first: once per install, about "
              f"{_FIRST_COMPILE} on 2 cores; later runs load them from the cache.", flush=True)
    status = run.fit((x, y), (xv, yv), (xt, yt))
    if status != 0:
        return status
    if args.save:
        try:
            model.save(args.save)
        except OSError as exc:
            print(f"fastnet: error: could not save the model to {args.save}: {exc}",
                  file=sys.stderr)
            return 1
        print(f"saved to {args.save}")
    return run.plot((xt, yt))


def main(argv: list[str] | None = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``); returns the exit status.
    argparse's own usage errors exit via SystemExit(2)."""
    from fastnet import cli_commands as commands

    args = _parser().parse_args(argv)
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "sweep":
            from fastnet import cli_sweep
            return cli_sweep.run(args)
        return commands.run(args)
    except _UsageError as exc:
        print(f"fastnet: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
