"""Callbacks of ``Model.fit``: code run at the end of every epoch, and before chosen mini-batches.

A callback is a plain callable ``cb(end)``, called at the end of every epoch with an
``EpochEnd``, or a ``Callback`` overriding any of its methods. ``fit`` calls them in the order
given, after its own checks and printed line. Tests: ``tests/test_fit_hooks.py``.
"""

from __future__ import annotations

import numpy as np

from fastnet.data import Source


class Callback:
    """Base class: every method does nothing.

    ``batch_marks(epoch, batches)``: the mini-batches (0-based, of ``batches`` in this epoch)
    before which ``on_batch(epoch, batch)`` is to be called; the epoch is then trained in
    pieces between the marks (the result is the same as in one piece). Epochs count from 1.
    ``on_epoch_end(end)``: after each epoch, with an ``EpochEnd``.
    """

    def batch_marks(self, epoch: int, batches: int):
        return ()

    def on_batch(self, epoch: int, batch: int) -> None:
        pass

    def on_epoch_end(self, end: "EpochEnd") -> None:
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
    random_state: the model's generators' states after it (``Model.random_state``'s form).
    ``predict(x)`` and ``evaluate(x, y)`` are ``Model.predict``/``Model.evaluate`` on these
    parameters (while ``fit(overlap=...)`` trains the next epoch beside them; an array passed
    again is checked and prepared only once per ``fit``). ``stop()`` ends ``fit`` after this
    epoch, with the model as it is here.
    """

    def __init__(self, model, scorer, epoch, epochs, history, params, random_state, prepared):
        self.epoch, self.epochs, self.history = epoch, epochs, history
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
