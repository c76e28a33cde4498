"""``fastnet train``'s run: the network and ``fit`` settings from a preset and the flags that
override it, the data it trains on, one printed line per epoch (numbered from 1), and what it
writes (``--log``, ``--plot``). ``fastnet/__main__.py`` parses the flags and drives it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from fastnet._cli import UsageError, check_writable, needs
from fastnet.callbacks import Callback, EarlyStopping, HistoryLogger
from fastnet.presets import PRESETS


class _Lines(Callback):
    """Prints each epoch's line with the test accuracy (unless quiet); counts the epochs."""

    def __init__(self, test, epochs: int, quiet: bool):
        self.test, self.epochs, self.quiet, self.done = test, epochs, quiet, 0
        self.last = None

    def on_epoch_end(self, end) -> None:
        self.done += 1
        n = len(self.test[1])
        score = end.evaluate(*self.test)
        self.last = (round(score["accuracy"] * n), n, end.epoch)
        if self.quiet:
            return
        h = end.history
        val = (f", validation {h.val_accuracy[-1]:.2%}" if h.val_accuracy else "")
        from tqdm import tqdm             # written above fit's progress bars, if shown
        tqdm.write(f"Epoch {end.epoch}/{self.epochs}: {self.last[0]} / {n} test accuracy "
                   f"({score['accuracy']:.2%}{val}, training loss {h.loss[-1]:.4f}, "
                   f"epoch {h.seconds[-1]:.3f} s)", file=sys.stdout)


class Run:
    """One ``fastnet train``: ``model``, ``fit_kwargs`` (for ``Model.fit``) and the options."""

    def __init__(self, args, preset, model, fit_kwargs, callbacks):
        self.args, self.preset, self.model = args, preset, model
        self.fit_kwargs, self.callbacks = fit_kwargs, callbacks

    @classmethod
    def from_args(cls, args) -> "Run":
        preset = PRESETS[args.preset]
        kw = preset.fit_kwargs()
        for name in ("epochs", "batch_size", "lr", "lmbda", "l1"):
            if getattr(args, name) is not None:
                kw[name] = getattr(args, name)
        if args.optimizer not in (None, "sgd"):
            from fastnet.optimizers import as_optimizer
            kw["optimizer"] = args.optimizer
            if args.lr is None:                  # the preset's rate is the book's SGD rate
                kw["lr"] = as_optimizer(args.optimizer).lr
        dense = preset.net.startswith("dense:")
        extra = [f for f in ("activation", "loss", "init") if getattr(args, f) is not None]
        if extra and not (dense or args.sizes):
            raise UsageError(f"--{extra[0]} applies to dense networks: give --sizes too, or a "
                             f"ch1/ch3 preset (ch6 presets are the book's own layers)")
        try:
            if args.sizes or extra:
                from fastnet.model import Model
                sizes = args.sizes or [int(s) for s in preset.net[6:].split(",")]
                loss = args.loss or (preset.loss if dense else "quadratic")
                model = Model(sizes, activation=args.activation or preset.activation,
                              loss=loss, init=args.init or (preset.init if dense else "large"),
                              dtype=args.dtype, device=args.device, seed=args.seed)
            else:
                model = preset.model(dtype=args.dtype, device=args.device, seed=args.seed)
            if args.schedule is not None:
                kw["lr"] = args.schedule(kw["lr"], kw["epochs"])
            callbacks = []
            if args.early_stopping is not None:
                callbacks.append(EarlyStopping("val_accuracy", args.early_stopping))
            if args.log is not None:
                callbacks.append(HistoryLogger(args.log))
        except (ValueError, TypeError, RuntimeError) as exc:
            raise UsageError(str(exc)) from None
        if args.threads is not None:
            from fastnet import devices
            try:      # more than Numba's threads: refused now, not after loading the data
                devices.get(model.device).check_threads(args.threads)
            except (ValueError, RuntimeError) as exc:
                raise UsageError(f"--threads: {exc}") from None
            kw["threads"] = args.threads
        return cls(args, preset, model, kw, callbacks)

    def check_outputs(self) -> None:
        """``--log`` and ``--plot``: writable, and matplotlib there, before any training."""
        if self.args.log is not None:
            check_writable(self.args.log, "--log")
        if self.args.plot is not None:
            needs("matplotlib", "plot", "--plot")
            where = Path(self.args.plot).expanduser()
            if where.exists() and not where.is_dir():
                raise UsageError(f"--plot {self.args.plot}: exists and is not a directory")
            try:
                where.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UsageError(f"--plot {self.args.plot}: cannot create it "
                                 f"({exc.strerror})") from None
            check_writable(str(where / "curves.png"), "--plot")

    def data(self, x, y, xv, yv, xt, yt):
        """The preset's training data (the first n, or expanded), ``--limit`` applied."""
        if self.preset.train_limit:
            x, y = x[:self.preset.train_limit], y[:self.preset.train_limit]
        limit = self.args.limit
        if limit:
            x, y, xv, yv, xt, yt = x[:limit], y[:limit], xv[:limit], yv[:limit], \
                xt[:limit], yt[:limit]
        if self.preset.expand and len(self.model.input_shape) == 3:
            from fastnet.datasets import expand_by_shifts
            x, y = expand_by_shifts(x, y, seed=self.args.seed)
        return x, y, xv, yv, xt, yt

    def header(self, n: int) -> str:
        kw, m = self.fit_kwargs, self.model
        lr = getattr(kw["lr"], "lr", kw["lr"])
        sched = f" ({self.args.schedule.text} schedule)" if self.args.schedule else ""
        name = "MNIST" if self.args.dataset == "mnist" else "Fashion-MNIST"
        return (f"Training {m.layers} with {m.loss} cost on {n} {name} images: "
                f"{kw['epochs']} epochs, mini-batch {kw['batch_size']}, "
                f"{kw.get('optimizer', 'sgd')}, lr {lr}{sched}, "
                f"lmbda {kw['lmbda']}" + (f", l1 {kw['l1']}" if kw.get("l1") else "") +
                f" ({m.dtype.name}, {m.device}; preset {self.preset.name}, "
                f"book: {self.preset.book})")

    def fit(self, train, val, test) -> int:
        """Train; the exit status (2: refused before the first epoch, 1: failed later)."""
        kw = dict(self.fit_kwargs)
        lines = _Lines(test, kw["epochs"], self.args.quiet)
        try:
            history = self.model.fit(*train, **kw, validation_data=val, verbose=False,
                                     progress=not self.args.quiet,
                                     callbacks=[*self.callbacks, lines],
                                     checkpoint=self.args.checkpoint)
        except KeyboardInterrupt:
            resume = (f"; run the same command again to resume from {self.args.checkpoint}"
                      if self.args.checkpoint else "")
            print(f"fastnet: interrupted after {lines.done} complete epochs{resume}",
                  file=sys.stderr)
            return 130
        except (ValueError, TypeError, RuntimeError, FloatingPointError) as exc:
            if lines.done == 0 and not isinstance(exc, FloatingPointError):
                raise UsageError(str(exc)) from None      # e.g. another run's checkpoint
            print(f"fastnet: error: training stopped: {exc}", file=sys.stderr)
            return 1
        self.history = history
        score = self.model.evaluate(*test)
        n = len(test[1])
        stopped = [cb for cb in self.callbacks if isinstance(cb, EarlyStopping)]
        early = stopped[0] if stopped else None
        best = (f"; stopped early after epoch {early.stopped_epoch}, kept epoch "
                f"{early.best_epoch}" if early and early.stopped_epoch and
                early.stopped_epoch < kw["epochs"] else
                f"; kept epoch {early.best_epoch}, the best" if early else "")
        print(f"Test accuracy {round(score['accuracy'] * n)} / {n} ({score['accuracy']:.2%}) "
              f"after {len(history.seconds)} epochs{best}", flush=True)
        return 0

    def plot(self, test) -> int:
        """``--plot DIR``: the curves, confusion matrix, first-layer weights and misclassified
        test images as PNG files."""
        if self.args.plot is None:
            return 0
        from fastnet import plot
        where = Path(self.args.plot).expanduser()
        xt, yt = test
        scores = self.model.predict(xt)
        pred = np.argmax(scores, axis=1)
        cm = self.model.evaluate(xt, yt, metrics=["confusion_matrix"])["confusion_matrix"]
        written = [plot.curves(self.history, where / "curves.png"),
                   plot.confusion(cm, where / "confusion.png"),
                   plot.first_layer(self.model, where / "weights.png"),
                   plot.misclassified(xt, yt, pred, where / "misclassified.png")]
        print("plots: " + ", ".join(str(p) for p in written))
        return 0
