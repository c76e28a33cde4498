"""``fastnet.Dataset``: a data set checked once, then converted and prepared once per use.

    train = fastnet.Dataset(x, y)            # x: (n, n_in) or (n, *input_shape); y: labels
    model.fit(train, epochs=1, batch_size=10, lr=3.0, validation_data=fastnet.Dataset(xv, yv))

``fit``, ``evaluate`` and ``predict`` take a ``Dataset`` wherever they take ``x`` (with ``y``
inside it), and ``validation_data`` may be one. The checks (real, finite, labels) run when it is
made; the model's dtype, the one-hot targets and the form a device's kernels read (the CPU's
sparse rows, a GPU copy) are made on first use and kept with it, so repeated calls pay only for
their epochs. Tests: ``tests/test_dataset.py``.
"""

from __future__ import annotations

import numpy as np

from fastnet import _checks
from fastnet.devices.trainer import NonFiniteInput


class Dataset:
    """x: a real array ``(n, ...)`` (one sample per row; any sample shape); y: None (inputs
    only, for ``predict``), ``(n,)`` integer class labels, or ``(n, k)`` real targets. Raises
    TypeError/ValueError naming ``x`` or ``y`` for anything else, NaN or inf included. The
    arrays are kept as given (not copied; don't modify them while the Dataset is in use)."""

    def __init__(self, x, y=None):
        arr = _checks.as_array(x, "x", "(n, features...)")
        if arr.dtype.kind not in "fiub":
            raise TypeError(f"x must hold real numbers, got dtype {arr.dtype}")
        if arr.ndim < 2 or arr.shape[0] == 0 or arr.size == 0:
            raise ValueError(f"x must have shape (n, features...) with n >= 1 and at least "
                             f"one feature, got {arr.shape}")
        flat = arr.reshape(len(arr), -1)
        rows = _checks.finite_rows(flat)
        if rows is not None:
            i = int(np.argmin(rows))
            raise ValueError(f"x contains NaN or inf (first in row {i})")
        self.x, self.y = arr, None
        if y is not None:
            lab = _checks.as_array(y, "y", f"({len(arr)},) labels or ({len(arr)}, k) targets")
            if lab.ndim == 1:
                if lab.shape[0] != len(arr):
                    raise ValueError(f"y has {lab.shape[0]} labels but x has {len(arr)} rows")
                if lab.dtype.kind not in "iu":
                    raise TypeError(f"y must be integer class labels of shape ({len(arr)},) "
                                    f"or targets of shape ({len(arr)}, k), got dtype "
                                    f"{lab.dtype}")
                if lab.min() < 0:
                    raise ValueError(f"y labels must be >= 0, found {int(lab.min())}")
            elif lab.ndim == 2 and lab.shape[0] == len(arr):
                if lab.dtype.kind not in "fiub":
                    raise TypeError(f"y must hold real numbers, got dtype {lab.dtype}")
                if _checks.finite_rows(lab) is not None:
                    raise ValueError("y contains NaN or inf")
            else:
                raise ValueError(f"y must have shape ({len(arr)},) (labels) or "
                                 f"({len(arr)}, k) (targets), got {lab.shape}")
            self.y = lab
        self._made: dict = {}

    def __len__(self) -> int:
        return len(self.x)

    def __repr__(self) -> str:
        y = "no targets" if self.y is None else \
            f"labels" if self.y.ndim == 1 else f"targets {self.y.shape[1:]}"
        return f"Dataset({len(self)} samples of shape {self.x.shape[1:]}, {y})"

    def _once(self, key, make):
        if key not in self._made:
            self._made[key] = make()
        return self._made[key]

    def features(self, model, name: str = "x") -> np.ndarray:
        """x as ``model`` reads it: ``(n, n_in)`` of its dtype (converted once per dtype)."""
        if self.x.shape[1:] != model.input_shape and \
                (self.x.ndim != 2 or self.x.shape[1] != model.n_in):
            form = f"(n, {model.n_in})" + (
                f" or (n, {', '.join(map(str, model.input_shape))})"
                if len(model.input_shape) > 1 else "")
            raise ValueError(f"{name} must have shape {form} for this model, got a Dataset "
                             f"of {self.x.shape}")
        return self._once(("x", model.dtype.str), lambda: _checks.writable(
            self.x.reshape(len(self.x), -1), model.dtype))

    def targets(self, model, name: str = "y") -> np.ndarray:
        """y as ``model`` trains on it: ``(n, n_out)`` of its dtype (one-hot rows for labels)."""
        if self.y is None:
            raise ValueError(f"{name}: the Dataset has no targets (made without y)")
        return self._once(("y", model.n_out, model.dtype.str), lambda: _checks.targets(
            self.y, name, len(self.x), model.n_out, model.dtype))

    def prepared(self, model, trainer, with_y: bool, name: str = "x"):
        """``trainer.data(x, y)`` for this data set, made once per form (``trainer.data_key``)."""
        xs = self.features(model, name)
        form = self._once(("data", trainer.data_key), lambda: trainer.data(xs)[0])
        if not with_y:
            return form, None
        ys = self.targets(model)
        return form, self._once(("targets", trainer.data_key, model.n_out),
                                lambda: trainer.targets(ys))


class Source:
    """One data set of a ``Model`` call: a ``Dataset`` (checked and converted when first used
    with this model, kept), or arrays checked now. ``xs``/``ys``: the model's forms (``ys``
    None unless ``need_y``); ``prepared(trainer)``: the trainer's form of both."""

    def __init__(self, model, x, y, xname: str, yname: str, need_y: bool):
        if isinstance(x, Dataset):
            if y is not None:
                raise TypeError(f"{yname} must be left out when {xname} is a fastnet.Dataset "
                                f"(its targets are in it)")
            self.ds, self.xs = x, x.features(model, xname)
            self.ys = x.targets(model, yname) if need_y else None
        else:
            if need_y and y is None:
                raise TypeError(f"{yname} is required (or pass a fastnet.Dataset as {xname})")
            # NaN/inf in x: found by the trainer's own read of x where it makes one
            self.ds, self.xs = None, model._samples(x, xname, finite=False)
            self.ys = (_checks.targets(y, yname, len(self.xs), model.n_out, model.dtype)
                       if need_y else None)
        self.n, self._xname = len(self.xs), xname

    def prepared(self, model, trainer):
        if self.ds is not None:
            return self.ds.prepared(model, trainer, self.ys is not None)
        if not trainer.checks_finite:
            _checks.check_finite(self.xs, self._xname)
        try:
            return trainer.data(self.xs, self.ys)
        except NonFiniteInput:
            _checks.check_finite(self.xs, self._xname)      # the error, named and located
            raise
