"""Learning-rate schedules for ``Model.fit(lr=...)``: the rate of each epoch (epochs count from 1).

A schedule's ``rate(epoch, history)`` is the learning rate of that epoch, or None to stop
before it; ``history`` is the ``History`` of the epochs before it in this fit. A schedule keeps
no state between calls (the rate is worked out from the epoch and the history), so a resumed fit
gets the same rates. Tests: ``tests/test_schedules.py``.

    Constant(0.5)                       η₀
    InverseTime(0.5, decay=0.1)         η₀ / (1 + d·t), t = epoch − 1 (the seed lectures' rule)
    StepDecay(0.5, factor=0.5, every=10)
    Cosine(0.5, epochs=30, min_lr=0.0)
    HalveOnPlateau(0.5, patience=10)    the book's chapter-3 rule: halve η when validation
                                        accuracy has not improved for 10 epochs; stop when η has
                                        fallen to η₀/128
"""

from __future__ import annotations

import math
import numbers

from fastnet import _checks


class Schedule:
    """Base class. ``lr``: the first epoch's rate, which is also the largest (fit checks the
    weight-decay factor against it). ``uses_history``: the rate depends on metrics of earlier
    epochs, so an epoch cannot start before the one before it has been scored."""

    uses_history = False

    def __init__(self, lr: float):
        self.lr = _checks.finite_float(lr, "lr", positive=True)

    def rate(self, epoch: int, history) -> float | None:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Constant(Schedule):
    """The same rate every epoch (what a plain float ``lr`` means)."""

    def rate(self, epoch, history):
        return self.lr


class InverseTime(Schedule):
    """η₀ / (1 + decay·(epoch − 1))."""

    def __init__(self, lr: float, decay: float):
        super().__init__(lr)
        self.decay = _checks.finite_float(decay, "decay", nonnegative=True)

    def rate(self, epoch, history):
        return self.lr / (1.0 + self.decay * (epoch - 1))


class StepDecay(Schedule):
    """η₀ · factor^⌊(epoch − 1) / every⌋: multiplied by ``factor`` every ``every`` epochs."""

    def __init__(self, lr: float, factor: float = 0.5, every: int = 10):
        super().__init__(lr)
        self.factor = _checks.finite_float(factor, "factor", positive=True)
        if self.factor > 1:
            raise ValueError(f"factor must be in (0, 1], got {factor!r}")
        self.every = _checks.positive_int(every, "every")

    def rate(self, epoch, history):
        return self.lr * self.factor ** ((epoch - 1) // self.every)


class Cosine(Schedule):
    """min_lr + (η₀ − min_lr)·(1 + cos(π·(epoch − 1)/epochs))/2 over ``epochs`` epochs, then
    min_lr."""

    def __init__(self, lr: float, epochs: int, min_lr: float = 0.0):
        super().__init__(lr)
        self.epochs = _checks.positive_int(epochs, "epochs")
        self.min_lr = _checks.finite_float(min_lr, "min_lr", nonnegative=True)
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr ({min_lr!r}) must not exceed lr ({lr!r})")

    def rate(self, epoch, history):
        t = min(epoch - 1, self.epochs) / self.epochs
        return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))


class HalveOnPlateau(Schedule):
    """The book's chapter-3 rule ("no improvement in ``patience`` epochs"): multiply the rate by
    ``factor`` each time ``monitor`` (a ``History`` list: val_accuracy, accuracy, val_loss,
    loss) has gone ``patience`` epochs without a new best since the last change; stop before
    the epoch whose rate would be at or below ``lr · min_fraction``. Needs the monitored list
    filled (validation_data for val_*, training_metrics for the others)."""

    uses_history = True

    def __init__(self, lr: float, patience: int = 10, monitor: str = "val_accuracy",
                 factor: float = 0.5, min_fraction: float = 1 / 128):
        super().__init__(lr)
        self.patience = _checks.positive_int(patience, "patience")
        if monitor not in MONITORS:
            raise ValueError(f"monitor must be one of {sorted(MONITORS)}, got {monitor!r}")
        self.monitor = monitor
        self.factor = _checks.finite_float(factor, "factor", positive=True)
        if self.factor >= 1:
            raise ValueError(f"factor must be in (0, 1), got {factor!r}")
        self.min_fraction = _checks.finite_float(min_fraction, "min_fraction", positive=True)

    def rate(self, epoch, history):
        values = getattr(history, self.monitor)
        if len(values) < epoch - 1:
            raise ValueError(f"HalveOnPlateau monitors {self.monitor}, which fit does not "
                             f"record here: pass validation_data (val_*) or keep "
                             f"training_metrics=True")
        rate, best, since = self.lr, None, 0
        for v in values[:epoch - 1]:
            if best is None or MONITORS[self.monitor] * (v - best) > 0:
                best, since = v, 0
            else:
                since += 1
                if since >= self.patience:
                    rate, since = rate * self.factor, 0
        return None if rate <= self.lr * self.min_fraction * (1 + 1e-12) else rate


# the History lists a schedule or callback may monitor, and which way is better (+1: larger)
MONITORS = {"val_accuracy": 1, "accuracy": 1, "val_loss": -1, "loss": -1}


def as_schedule(lr) -> Schedule:
    """``lr`` as a Schedule: a Schedule as it is, a number as ``Constant``."""
    if isinstance(lr, Schedule):
        return lr
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
        raise TypeError(f"lr must be a number > 0 or a fastnet.schedules.Schedule, got "
                        f"{type(lr).__name__} {lr!r}")
    return Constant(lr)
