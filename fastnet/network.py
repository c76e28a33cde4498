"""Drop-in replacement for ``network.py`` (chapters 1–2) of Michael Nielsen's *Neural Networks
and Deep Learning*: ``from fastnet import mnist_loader, network`` instead of
``import mnist_loader, network``, and the book's scripts run unchanged on the compiled kernels.

>>> net = network.Network([784, 30, 10])                                          # doctest: +SKIP
>>> net.SGD(training_data, 30, 10, 3.0, test_data=test_data)                      # doctest: +SKIP

Shapes: the book's. ``weights[l]: float64[n_out, n_in]``, ``biases[l]: float64[n_out, 1]``;
data are lists of ``(x, y)`` pairs, ``x: (n_in, 1)``. ``SGD`` trains a float64 ``fastnet.Model``
on a copy (``Model.fit`` with the book's ``random.shuffle`` mini-batches and printed lines) and
replaces ``weights``/``biases`` by new arrays after every epoch.

Twin: the book's per-sample algorithm, ``tests/book_reference.py``. Tests:
``tests/test_network.py``. What stays the book's and what changes: docs/guide.md.
"""

from __future__ import annotations

import numbers
import random

import numpy as np

from fastnet import _checks, devices
from fastnet.model import Model

__all__ = ["Network", "sigmoid", "sigmoid_prime"]


# ---------------------------------------------------------------------------- activations
def sigmoid(z):
    """The sigmoid function 1/(1 + e^−z), elementwise, without overflow warnings (e^x is only
    taken of x ≤ 0). Float arrays keep their dtype; anything else becomes float64."""
    z = np.asarray(z)
    if z.dtype.kind != "f":
        z = z.astype(np.float64)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(z.dtype, copy=False)


def _activate(z):
    """sigmoid(z) for the float arrays ``feedforward`` makes, through the kernels' compiled
    sigmoid (``fastnet.devices.activate``: one pass, no temporaries; float64 within 5e-16
    relative of the exact σ, a few ulps from ``sigmoid``; faster than ``sigmoid``'s six NumPy
    calls on a column). As in the compiled ``predict`` the monitors use, e^z is
    floored at e^−708 (float32: e^−87), so below that an output is ~1e-308 (~1.6e-38) where
    ``sigmoid`` gives 0 or a subnormal. Anything else (integers, other ranks): ``sigmoid``."""
    if z.ndim == 2 and z.dtype in (np.float32, np.float64) and z.flags.c_contiguous:
        return devices.activate(z, "sigmoid")
    return sigmoid(z)


def sigmoid_prime(z):
    """Derivative of the sigmoid function: σ(z)·(1 − σ(z))."""
    s = sigmoid(z)
    return s * (1 - s)


# ---------------------------------------------------------------------------- data
class _Arrays:
    """A data set of ``(x, y)`` pairs as arrays: ``x: float64[n, n_in]``, ``labels: int64[n]``
    and, for vector targets (or when asked), ``targets: float64[n, n_out]``."""

    __slots__ = ("x", "targets", "labels")

    def __init__(self, x, targets, labels):
        self.x, self.targets, self.labels = x, targets, labels

    def __len__(self):
        return len(self.x)

    def one_hot(self, n_out: int) -> np.ndarray:
        if self.targets is None:
            self.targets = np.eye(n_out)[self.labels]
        return self.targets


def _as_array(v, where: str, what: str, expected: str) -> np.ndarray:
    if isinstance(v, np.ndarray):
        arr = v
    else:
        try:
            arr = np.asarray(v)
        except (TypeError, ValueError):
            arr = None
    if arr is None or arr.dtype.kind not in "fiub":
        raise TypeError(f"{where}: {what} must be a real array of shape {expected}, got "
                        f"{type(v).__name__}")
    return arr


def _is_label(y, n_out: int) -> bool:
    """An int (Python or NumPy, or a 0-d integer array; not a bool) in ``[0, n_out)``."""
    if isinstance(y, np.ndarray):
        if y.ndim != 0 or y.dtype.kind not in "iu":
            return False
    elif isinstance(y, (bool, np.bool_)) or not isinstance(y, numbers.Integral):
        return False
    return 0 <= int(y) < n_out


def _label_error(y, where: str, n_out: int) -> Exception:
    expected = f"an int label in [0, {n_out})"
    if isinstance(y, np.ndarray) and y.ndim == 0 and y.dtype.kind in "iu" or \
            isinstance(y, numbers.Integral) and not isinstance(y, (bool, np.bool_)):
        return ValueError(f"{where}: y must be {expected}, got {int(y)}")
    shape = f" of shape {y.shape}" if isinstance(y, np.ndarray) else ""
    return TypeError(f"{where}: y must be {expected} (test/validation data form), got "
                     f"{type(y).__name__}{shape}")


def to_arrays(data, name: str, n_in: int, n_out: int, *, vectors: bool) -> _Arrays:
    """Convert ``data`` (a list, tuple or one-shot iterator such as ``zip`` of ``(x, y)`` pairs)
    to arrays, checking every pair.

    x: a ``(n_in, 1)`` column or ``(n_in,)`` vector of reals (float32 is fine).
    y: with ``vectors=True`` a ``(n_out, 1)`` (or ``(n_out,)``) vector of reals, e.g.
    ``vectorized_result(j)``; else an int label in ``[0, n_out)``.
    Raises TypeError/ValueError naming the position of the first bad pair and the expected form;
    ValueError for empty data or NaN/inf.
    """
    items = data if isinstance(data, (list, tuple)) else list(data)
    n = len(items)
    if n == 0:
        raise ValueError(f"{name} is empty: expected a list of (x, y) pairs")
    x_col, x_flat = (n_in, 1), (n_in,)
    y_col, y_flat = (n_out, 1), (n_out,)
    x_rows = [None] * n
    ys = [None] * n
    for i, item in enumerate(items):
        if type(item) is not tuple or len(item) != 2:
            if isinstance(item, (str, bytes)) or not hasattr(item, "__len__") or len(item) != 2:
                raise TypeError(f"{name}[{i}] must be a pair (x, y) with x of shape {x_col}, "
                                f"got {type(item).__name__}")
        x, y = item
        if type(x) is not np.ndarray or x.dtype.kind not in "fiub":
            x = _as_array(x, f"{name}[{i}]", "x", str(x_col))
        if x.shape != x_col and x.shape != x_flat:
            raise ValueError(f"{name}[{i}]: x must have shape {x_col} (or {x_flat}), got "
                             f"{x.shape}")
        x_rows[i] = x.reshape(n_in)
        if vectors:
            if type(y) is not np.ndarray or y.dtype.kind not in "fiub":
                y = _as_array(y, f"{name}[{i}]", "y", f"{y_col} (a one-hot column like "
                              "vectorized_result(j))")
            if y.shape != y_col and y.shape != y_flat:
                raise ValueError(f"{name}[{i}]: y must have shape {y_col} (or {y_flat}), a "
                                 f"target vector like vectorized_result(j); got {y.shape}")
            ys[i] = y.reshape(n_out)
        else:
            ys[i] = y
    x = np.empty((n, n_in))
    np.concatenate(x_rows, out=x.reshape(-1))
    _check_finite(x, name, "x")
    if vectors:
        targets = np.empty((n, n_out))
        np.concatenate(ys, out=targets.reshape(-1))
        _check_finite(targets, name, "y")
        return _Arrays(x, targets, targets.argmax(axis=1))
    try:
        labels = np.array(ys)
    except (TypeError, ValueError):  # ragged: some y is not a scalar
        labels = None
    if labels is None or labels.shape != (n,) or labels.dtype.kind not in "iu" or \
            labels.min() < 0 or labels.max() >= n_out:
        for i, y in enumerate(ys):
            if not _is_label(y, n_out):
                raise _label_error(y, f"{name}[{i}]", n_out)
        labels = np.array([int(y) for y in ys])
    return _Arrays(x, None, labels.astype(np.int64, copy=False))


def _check_finite(a: np.ndarray, name: str, what: str) -> None:
    ok = _checks.finite_rows(a)
    if ok is not None:
        i = int(np.argmin(ok))
        raise ValueError(f"{name}[{i}]: {what} contains NaN or inf")


def _book_shuffle(order: np.ndarray) -> None:
    """``random.shuffle(order)`` for an int64 array, compiled (``kernels/shuffle_cpu.py``):
    the same permutation, and ``random``'s state moves on exactly as the call would move it."""
    from fastnet.kernels.shuffle_cpu import mt_shuffle
    version, state, gauss_next = random.getstate()
    mt = np.array(state[:-1], dtype=np.uint32)
    pos = mt_shuffle(order, mt, state[-1])
    random.setstate((version, tuple(mt.tolist()) + (int(pos),), gauss_next))


# ---------------------------------------------------------------------------- the network
class SigmoidNetwork:
    """What ``network.Network`` and ``network2.Network`` share: sigmoid layers whose
    ``weights``/``biases`` lists (the book's shapes) are copied into a float64
    ``fastnet.Model`` for each call that computes, and replaced from it afterwards."""

    _loss = "quadratic"

    def _setup(self, sizes, device) -> None:
        if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__"):
            raise TypeError(f"sizes must be a list of layer sizes like [784, 30, 10], got "
                            f"{sizes!r}")
        sizes = [_checks.positive_int(s, f"sizes[{i}]") for i, s in enumerate(sizes)]
        if len(sizes) < 2:
            raise ValueError(f"sizes needs an input and an output size at least, got {sizes}")
        self.num_layers = len(sizes)
        self.sizes = sizes
        self.device = devices.resolve(device)

    # ------------------------------------------------------------------ the Model
    def _model(self) -> Model:
        """A float64 ``Model`` holding the current ``weights``/``biases`` (checked against
        ``sizes``)."""
        n_layers = len(self.sizes) - 1
        if len(self.weights) != n_layers or len(self.biases) != n_layers:
            raise ValueError(f"the network has {n_layers} layers (sizes {self.sizes}) but "
                             f"{len(self.weights)} weight and {len(self.biases)} bias arrays")
        model = Model(self.sizes, activation="sigmoid", loss=self._loss, dtype="float64",
                      device=self.device, seed=0)
        for l, (n_in, n_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            w, b = np.asarray(self.weights[l]), np.asarray(self.biases[l])
            if w.shape != (n_out, n_in):
                raise ValueError(f"weights[{l}] has shape {w.shape}, expected {(n_out, n_in)} "
                                 f"for sizes {self.sizes}")
            if b.shape != (n_out, 1) and b.shape != (n_out,):
                raise ValueError(f"biases[{l}] has shape {b.shape}, expected {(n_out, 1)} "
                                 f"for sizes {self.sizes}")
            views = model.params_of(l)
            views["w"][...] = w
            views["b"][...] = b.reshape(-1)
        return model

    def _take(self, model: Model, params=None) -> None:
        """Replace ``weights``/``biases`` by new arrays holding ``model``'s parameters (or
        ``params``, a flat buffer of the same network)."""
        views = [model.params_of(l, params) for l in range(len(self.sizes) - 1)]
        self.weights = [v["w"].copy() for v in views]
        self.biases = [v["b"].reshape(-1, 1).copy() for v in views]

    # ------------------------------------------------------------------ data
    def _arrays(self, data, name: str, *, vectors: bool) -> _Arrays:
        return to_arrays(data, name, self.sizes[0], self.sizes[-1], vectors=vectors)

    @staticmethod
    def _materialize(data, name: str):
        """Training or test data as a list/tuple (``zip`` objects are consumed once)."""
        if data is None:
            return None
        if isinstance(data, np.ndarray) or isinstance(data, (str, bytes)):
            raise TypeError(f"{name} must be a list of (x, y) pairs, got {type(data).__name__}")
        return data if isinstance(data, (list, tuple)) else list(data)

    # ------------------------------------------------------------------ training
    def _fit(self, train: _Arrays, epochs: int, mini_batch_size: int, eta: float,
             lmbda: float, after_epoch, *, monitored: int = 0) -> None:
        """Train ``epochs`` epochs from the current ``weights``/``biases`` through
        ``Model.fit``, replacing them after each epoch, then calling
        ``after_epoch(j, outputs)`` (``j`` from 0, as the book counts) where
        ``outputs(arrays)`` gives the network's outputs ``float64[n, n_out]`` after epoch
        ``j`` for the ``_Arrays`` ``arrays``.

        Each epoch's order is the book's: ``random.shuffle`` of a list of ``n`` indices kept
        from epoch to epoch (the book shuffles its list of pairs in place), so the same
        ``random.seed`` gives the same mini-batches (``Model.fit``'s ``order`` hook).
        ``monitored``: how many samples ``after_epoch`` runs through the network; at least
        half the training set (network2 with the training-set monitors on) asks ``fit`` to
        score each epoch while the next one trains."""
        if epochs == 0:
            return
        model = self._model()
        order = np.arange(len(train), dtype=np.int64)

        def next_order(epoch):
            _book_shuffle(order)
            return order.copy()

        def epoch_end(end):
            self._take(model, end.params)
            after_epoch(end.epoch - 1, lambda arrays: end.predict(arrays.x))

        model.fit(train.x, train.targets, epochs=epochs, batch_size=mini_batch_size, lr=eta,
                  lmbda=lmbda, order=next_order, callbacks=[epoch_end],
                  overlap=True if 2 * monitored >= len(train) else None, verbose=False,
                  training_metrics=False)

    def _update(self, mini_batch, eta: float, lmbda: float = 0.0, n: int | None = None) -> None:
        """One SGD step on ``mini_batch``: ``w ← (1 − eta·lmbda/n)·w − (eta/m)·Σ∇w``."""
        batch = self._arrays(self._materialize(mini_batch, "mini_batch"), "mini_batch",
                             vectors=True)
        eta = _checks.finite_float(eta, "eta", positive=True)
        m = len(batch)
        model = self._model()
        # fit's decay is 1 − lr·lmbda/m for its m samples; the book's n is the training set's
        model.fit(batch.x, batch.targets, epochs=1, batch_size=m, lr=eta,
                  lmbda=lmbda * m / n if lmbda else 0.0, shuffle=False, verbose=False,
                  training_metrics=False)
        self._take(model)

    def _outputs(self, arrays: _Arrays) -> np.ndarray:
        """The network's outputs ``float64[n, n_out]`` for ``arrays`` (as ``SGD``'s monitors
        compute them)."""
        return self._model().predict(arrays.x)

    def _count_correct(self, data, name: str, *, vectors: bool) -> int:
        arrays = self._arrays(self._materialize(data, name), name, vectors=vectors)
        return int(np.count_nonzero(self._outputs(arrays).argmax(axis=1) == arrays.labels))

    # ------------------------------------------------------------------ the book's methods
    def feedforward(self, a):
        """Return the output of the network for the input ``a``: a ``(n_in, 1)`` column gives an
        ``(n_out, 1)`` column, a batch of columns ``(n_in, k)`` gives ``(n_out, k)``, and a
        vector ``(n_in,)`` gives ``(n_out,)``. Computed from ``weights``/``biases``: ``np.dot``,
        then ``_activate`` (the compiled sigmoid: ``sigmoid`` to a few ulps)."""
        a = np.asarray(a)
        flat = a.ndim == 1
        if flat:
            a = a.reshape(-1, 1)
        if a.ndim != 2 or a.shape[0] != self.sizes[0]:
            raise ValueError(f"feedforward expects a ({self.sizes[0]}, 1) column (or a batch "
                             f"of columns ({self.sizes[0]}, k)), got shape {np.shape(a)}")
        for b, w in zip(self.biases, self.weights):
            a = _activate(np.dot(w, a) + np.reshape(b, (-1, 1)))
        return a.reshape(-1) if flat else a

    def backprop(self, x, y):
        """Return ``(nabla_b, nabla_w)``, the gradient of the cost for the single sample
        ``(x, y)``: lists of arrays shaped like ``biases`` and ``weights``. The book's per-sample
        algorithm in NumPy (training itself runs in the compiled kernel)."""
        activation = np.asarray(x).reshape(-1, 1)
        activations, zs = [activation], []
        for b, w in zip(self.biases, self.weights):
            z = np.dot(w, activation) + np.reshape(b, (-1, 1))
            zs.append(z)
            activation = sigmoid(z)
            activations.append(activation)
        delta = self._output_delta(zs[-1], activations[-1], np.reshape(y, (-1, 1)))
        nabla_b = [None] * (self.num_layers - 1)
        nabla_w = [None] * (self.num_layers - 1)
        nabla_b[-1] = delta
        nabla_w[-1] = np.dot(delta, activations[-2].T)
        for l in range(2, self.num_layers):
            delta = np.dot(self.weights[-l + 1].T, delta) * sigmoid_prime(zs[-l])
            nabla_b[-l] = delta
            nabla_w[-l] = np.dot(delta, activations[-l - 1].T)
        return nabla_b, nabla_w

    def _output_delta(self, z, a, y):
        """δᴸ for one sample (the book's ``backprop``); each network class defines its own."""
        raise TypeError(f"{type(self).__name__} does not define its output delta")


class Network(SigmoidNetwork):
    """A feed-forward network of sigmoid neurons trained with the quadratic cost, as in the
    book's chapters 1–2.

    sizes: the number of neurons per layer, e.g. ``[784, 30, 10]``. Biases are drawn first, then
        weights, all with ``np.random.randn``, exactly as the book does.
    device: where ``SGD`` runs: ``"cpu"`` (Numba kernels), or another ``fastnet.devices``
        name; ``None`` reads ``$FASTNET_DEVICE`` (default ``"cpu"``).

    Attributes (the book's): ``num_layers``, ``sizes``, ``biases`` (list of ``(y, 1)``
    float64 arrays), ``weights`` (list of ``(y, x)`` arrays).
    """

    def __init__(self, sizes, device: str | None = None):
        self._setup(sizes, device)
        self.biases = [np.random.randn(y, 1) for y in self.sizes[1:]]
        self.weights = [np.random.randn(y, x) for x, y in zip(self.sizes[:-1], self.sizes[1:])]

    def __repr__(self):
        return f"network.Network({self.sizes}, device={self.device!r})"

    def SGD(self, training_data, epochs, mini_batch_size, eta, test_data=None):
        """Train by mini-batch stochastic gradient descent.

        training_data: a list (or ``zip``) of pairs ``(x, y)``, ``x`` a ``(n_in, 1)`` column
            and ``y`` the desired ``(n_out, 1)`` output (e.g. ``vectorized_result(j)``).
        epochs, mini_batch_size, eta: the number of epochs, the mini-batch size and the learning
            rate; each epoch shuffles the data (Python's ``random``) and updates
            ``w ← w − (eta/m)·Σ∇w`` per mini-batch of ``m`` samples.
        test_data: optional pairs ``(x, label)`` with int labels; when given, the number
            classified correctly is printed after each epoch (``Epoch 0: 9071 / 10000``), else
            ``Epoch 0 complete``.
        """
        epochs = _checks.positive_int(epochs, "epochs", minimum=0)
        mini_batch_size = _checks.positive_int(mini_batch_size, "mini_batch_size")
        eta = _checks.finite_float(eta, "eta", positive=True)
        train = self._arrays(self._materialize(training_data, "training_data"),
                             "training_data", vectors=True)
        test_data = self._materialize(test_data, "test_data")
        test = self._arrays(test_data, "test_data", vectors=False) if test_data else None

        def after_epoch(j, outputs):
            if test is None:
                print("Epoch {0} complete".format(j))
            else:
                correct = int(np.count_nonzero(outputs(test).argmax(axis=1) == test.labels))
                print("Epoch {0}: {1} / {2}".format(j, correct, len(test)))

        self._fit(train, epochs, mini_batch_size, eta, 0.0, after_epoch)

    def update_mini_batch(self, mini_batch, eta):
        """One gradient-descent step on ``mini_batch`` (pairs ``(x, y)`` as in ``SGD``):
        ``w ← w − (eta/len(mini_batch))·Σ∇w``, computed by the compiled kernel."""
        self._update(mini_batch, eta)

    def evaluate(self, test_data):
        """The number of pairs ``(x, label)`` in ``test_data`` for which the output neuron with
        the highest activation is ``label``."""
        return self._count_correct(test_data, "test_data", vectors=False)

    def cost_derivative(self, output_activations, y):
        """∂C_x/∂a for the quadratic cost: ``output_activations − y``."""
        return output_activations - y

    def _output_delta(self, z, a, y):
        return self.cost_derivative(a, y) * sigmoid_prime(z)
