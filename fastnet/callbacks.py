"""Callbacks of ``Model.fit``: code run at the end of every epoch, and before chosen mini-batches.

A callback is a plain callable ``cb(end)``, called at the end of every epoch with an
``EpochEnd``, or a ``Callback`` overriding any of its methods. ``fit`` calls them in the order
given, after its own checks and printed line. Two are provided: ``EarlyStopping`` and
``HistoryLogger`` (CSV or JSON). Tests: ``tests/test_fit_hooks.py``, ``tests/test_callbacks.py``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from fastnet import _checks
from fastnet.data import Source
from fastnet.savefile import write_atomic
from fastnet.schedules import MONITORS


class Callback:
    """Base class: every method does nothing.

    ``batch_marks(epoch, batches)``: the mini-batches (0-based, of ``batches`` in this epoch)
    before which ``on_batch(epoch, batch)`` is to be called; the epoch is then trained in
    pieces between the marks (the result is the same as in one piece). Epochs count from 1.
    ``on_epoch_end(end)``: after each epoch, with an ``EpochEnd``.
    ``on_fit_end(model, history)``: once when ``fit`` ends without an error (after its last
    epoch, or a stop), with the model as ``fit`` leaves it.
    ``checkpoint_state()`` / ``restore_state(state)``: what ``fit(checkpoint=...)`` saves of
    the callback after each epoch (a dict of JSON values and NumPy arrays) and gives back to
    the same callback of a resumed fit.
    """

    def batch_marks(self, epoch: int, batches: int):
        return ()

    def on_batch(self, epoch: int, batch: int) -> None:
        pass

    def on_epoch_end(self, end: "EpochEnd") -> None:
        pass

    def on_fit_end(self, model, history) -> None:
        pass

    def checkpoint_state(self) -> dict:
        return {}

    def restore_state(self, state: dict) -> None:
        pass


class _Plain(Callback):
    """A callable used as a callback: called at the end of every epoch."""

    def __init__(self, fn):
        self.on_epoch_end = fn


def as_callbacks(callbacks) -> list[Callback]:
    """``callbacks`` checked: an iterable of ``Callback`` objects or callables."""
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback) or callable(callbacks):
        callbacks = [callbacks]
    try:
        items = list(callbacks)
    except TypeError:
        raise TypeError(f"callbacks must be a list of fastnet.callbacks.Callback objects or "
                        f"callables, got {type(callbacks).__name__}") from None
    out = []
    for i, cb in enumerate(items):
        if isinstance(cb, Callback):
            out.append(cb)
        elif callable(cb):
            out.append(_Plain(cb))
        else:
            raise TypeError(f"callbacks[{i}] must be a fastnet.callbacks.Callback or a "
                            f"callable, got {type(cb).__name__}")
    return out


class EpochEnd:
    """What a callback sees at the end of an epoch.

    epoch: the epoch just trained (from 1) of ``epochs``; history: the ``History`` so far,
    this epoch included; params: a read-only host copy of the parameters after it;
    random_state: the model's generators' states after it (``Model.random_state``'s form);
    optimizer_state: a copy of the optimizer's state after it (None for SGD).
    ``predict(x)`` and ``evaluate(x, y)`` are ``Model.predict``/``Model.evaluate`` on these
    parameters (while ``fit(overlap=...)`` trains the next epoch beside them; an array passed
    again is checked and prepared only once per ``fit``). ``stop()`` ends ``fit`` after this
    epoch, with the model as it is here.
    """

    def __init__(self, model, scorer, epoch, epochs, history, params, random_state, prepared,
                 optimizer_state=None):
        self.epoch, self.epochs, self.history = epoch, epochs, history
        self.optimizer_state = optimizer_state
        self.params = params.view()
        self.params.flags.writeable = False
        self.random_state = random_state
        self._model, self._scorer, self._prepared = model, scorer, prepared
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True

    def _data(self, x, y, need_y):
        key = (id(x), id(y))
        hit = self._prepared.get(key)
        if hit is None:
            src = Source(self._model, x, y, "x", "y", need_y)
            if src.ds is not None:                  # a Dataset keeps its prepared forms
                return src.n, src.prepared(self._model, self._scorer)
            hit = self._prepared[key] = (x, y, src.n, src.prepared(self._model, self._scorer))
        return hit[2], hit[3]

    def predict(self, x) -> np.ndarray:
        return self._scorer.predict(self._data(x, None, False)[1])

    def evaluate(self, x, y=None) -> dict[str, float]:
        n, data = self._data(x, y, True)
        total, correct = self._scorer.evaluate(data)
        return {"loss": total / n, "accuracy": correct / n}


class EarlyStopping(Callback):
    """Stop ``fit`` when ``monitor`` (a ``History`` list: val_accuracy, accuracy, val_loss,
    loss) has not improved by more than ``min_delta`` for ``patience`` epochs. With
    ``restore_best`` the model ends with the parameters of its best epoch (whether or not it
    stopped early); ``best_epoch`` and ``best`` say which epoch and value that was (epochs count
    from 1 within the fit), ``stopped_epoch`` the epoch after which it stopped (None if not)."""

    def __init__(self, monitor: str = "val_accuracy", patience: int = 5, *,
                 min_delta: float = 0.0, restore_best: bool = True):
        if monitor not in MONITORS:
            raise ValueError(f"monitor must be one of {sorted(MONITORS)}, got {monitor!r}")
        if not isinstance(restore_best, bool):
            raise TypeError(f"restore_best must be True or False, got {restore_best!r}")
        self.monitor, self.restore_best = monitor, restore_best
        self.patience = _checks.positive_int(patience, "patience")
        self.min_delta = _checks.finite_float(min_delta, "min_delta", nonnegative=True)
        self._reset()

    def _reset(self):
        self.best = self.best_epoch = self.stopped_epoch = None
        self._params = None
        self._waited = 0

    def checkpoint_state(self) -> dict:
        state = {"best": self.best, "best_epoch": self.best_epoch,
                 "stopped_epoch": self.stopped_epoch, "waited": self._waited}
        if self._params is not None:
            state["params"] = self._params
        return state

    def restore_state(self, state: dict) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        self.stopped_epoch, self._waited = state["stopped_epoch"], state["waited"]
        self._params = state.get("params")

    def on_epoch_end(self, end: EpochEnd) -> None:
        if end.epoch == 1:
            self._reset()                    # a new fit
        values = getattr(end.history, self.monitor)
        if len(values) < end.epoch:
            raise ValueError(f"EarlyStopping monitors {self.monitor}, which fit does not "
                             f"record here: pass validation_data (val_*) or keep "
                             f"training_metrics=True")
        value = values[-1]
        if self.best is None or MONITORS[self.monitor] * (value - self.best) > self.min_delta:
            self.best, self.best_epoch, self._waited = value, end.epoch, 0
            if self.restore_best:
                self._params = np.array(end.params)
            return
        self._waited += 1
        if self._waited >= self.patience:
            self.stopped_epoch = end.epoch
            end.stop()

    def on_fit_end(self, model, history) -> None:
        if self.restore_best and self._params is not None:
            model.params[...] = self._params


class HistoryLogger(Callback):
    """Write the history to ``path`` after every epoch — CSV (``.csv``: a header line, then one
    line per epoch) or JSON (``.json``: ``{"epoch": [...], "loss": [...], ...}``) — replacing
    the file atomically, so an interrupted run leaves the epochs that completed. Columns: epoch,
    lr, seconds, threads, and the metrics fit records (loss, accuracy, val_loss,
    val_accuracy)."""

    COLUMNS = ("epoch", "lr", "seconds", "threads", "loss", "accuracy", "val_loss",
               "val_accuracy")

    def __init__(self, path):
        self.path = Path(path)
        self.format = self.path.suffix.lower().lstrip(".")
        if self.format not in ("csv", "json"):
            raise ValueError(f"path must end in .csv or .json, got {str(path)!r}")

    def on_epoch_end(self, end: EpochEnd) -> None:
        h = end.history
        cols = {"epoch": list(range(1, end.epoch + 1))}
        for name in self.COLUMNS[1:]:
            values = getattr(h, name)[:end.epoch]
            if len(values) == end.epoch:
                cols[name] = [None if v is None else float(v) if name != "threads" else v
                              for v in values]
        if self.format == "json":
            text = json.dumps({k: [_json_number(v) for v in vs] for k, vs in cols.items()},
                              indent=1)
        else:
            buf = io.StringIO()
            out = csv.writer(buf, lineterminator="\n")
            out.writerow(cols)
            out.writerows(zip(*(["" if v is None else v for v in vs]
                                for vs in cols.values())))
            text = buf.getvalue()
        write_atomic(self.path, lambda f: f.write(text.encode()))


def _json_number(v):
    """JSON has no NaN or infinity: those are written as null."""
    return None if isinstance(v, float) and not math.isfinite(v) else v
