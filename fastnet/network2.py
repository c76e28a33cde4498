"""Drop-in replacement for ``network2.py`` (chapter 3) of Michael Nielsen's *Neural Networks and
Deep Learning*: ``from fastnet import mnist_loader, network2`` instead of
``import mnist_loader, network2``.

>>> net = network2.Network([784, 30, 10], cost=network2.CrossEntropyCost)    # doctest: +SKIP
>>> net.SGD(training_data, 30, 10, 0.5, lmbda=5.0, evaluation_data=validation_data,
...         monitor_evaluation_accuracy=True)                                  # doctest: +SKIP

Shapes and training as in ``fastnet.network``, with the book's L2-regularised update
``w ← (1 − η·λ/n)·w − (η/m)·Σ∇w``; the monitors run one compiled ``predict`` over a data set
and apply the book's formulas in NumPy. ``save``/``load``: the book's JSON, checked on load.

Twin: the book's per-sample algorithm, ``tests/book_reference.py``. Tests:
``tests/test_network2.py``. Where it differs from the book: docs/guide.md.
"""

from __future__ import annotations

import json
import os

import numpy as np

from fastnet import _checks
from fastnet.mnist_loader import vectorized_result
from fastnet.network import SigmoidNetwork, sigmoid, sigmoid_prime
from fastnet.savefile import write_atomic

__all__ = ["QuadraticCost", "CrossEntropyCost", "Network", "load", "vectorized_result",
           "sigmoid", "sigmoid_prime"]


# ---------------------------------------------------------------------------- costs
class QuadraticCost:
    """C = ½‖a − y‖², with output error δ = (a − y)⊙σ'(z)."""

    @staticmethod
    def fn(a, y):
        """The cost of output ``a`` for the desired output ``y``."""
        return 0.5 * np.linalg.norm(a - y) ** 2

    @staticmethod
    def delta(z, a, y):
        """The error δ of the output layer."""
        return (a - y) * sigmoid_prime(z)


class CrossEntropyCost:
    """C = Σ −y·ln a − (1 − y)·ln(1 − a), with output error δ = a − y."""

    @staticmethod
    def fn(a, y):
        """The cost of output ``a`` for the desired output ``y``. As in the book, ``nan_to_num``
        turns the ``0·log(0)`` of a saturated output into 0 (and ``log(0)`` into 1.8e308)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.sum(np.nan_to_num(-y * np.log(a) - (1 - y) * np.log(1 - a)))

    @staticmethod
    def delta(z, a, y):
        """The error δ of the output layer (``z`` is unused)."""
        return a - y


# Each cost is a Model loss; a cost is recognised by its class name, so the book's own
# QuadraticCost/CrossEntropyCost classes work too.
_COSTS = {"QuadraticCost": (QuadraticCost, "quadratic"),
          "CrossEntropyCost": (CrossEntropyCost, "cross_entropy")}


def _cost_name(cost) -> str:
    cls = cost if isinstance(cost, type) else type(cost)
    if cls.__name__ not in _COSTS:
        raise ValueError(f"cost must be QuadraticCost or CrossEntropyCost (the class or an "
                         f"instance), got {cost!r}")
    return cls.__name__


def _per_sample_cost(loss: str, a: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The book's ``cost.fn(a, y)`` for every row of ``a, y: float64[n, n_out]``."""
    if loss == "quadratic":
        return 0.5 * np.einsum("ij,ij->i", a - y, a - y)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.nan_to_num(-y * np.log(a) - (1 - y) * np.log(1 - a)).sum(axis=1)


# ---------------------------------------------------------------------------- the network
class Network(SigmoidNetwork):
    """A feed-forward network of sigmoid neurons, as in the book's chapter 3.

    sizes: neurons per layer, e.g. ``[784, 30, 10]``; the weights are drawn by
        ``default_weight_initializer`` (the book's order of ``np.random.randn`` calls).
    cost: ``CrossEntropyCost`` (default) or ``QuadraticCost``, the class or an instance.
    device: where training and the monitors run: ``"cpu"`` (Numba kernels) or another
        ``fastnet.devices`` name; ``None`` reads ``$FASTNET_DEVICE`` (default ``"cpu"``).
    """

    def __init__(self, sizes, cost=CrossEntropyCost, device: str | None = None):
        _cost_name(cost)  # reject an unknown cost before drawing any weights
        self._setup(sizes, device)
        self.default_weight_initializer()
        self.cost = cost

    @property
    def _loss(self) -> str:
        return _COSTS[_cost_name(self.cost)][1]  # follows a cost assigned after construction

    def __repr__(self):
        return (f"network2.Network({self.sizes}, cost={_cost_name(self.cost)}, "
                f"device={self.device!r})")

    def default_weight_initializer(self):
        """Biases ~ N(0, 1); weights ~ N(0, 1/n_in) (divided by √n_in of their neuron)."""
        self.biases = [np.random.randn(y, 1) for y in self.sizes[1:]]
        self.weights = [np.random.randn(y, x) / np.sqrt(x)
                        for x, y in zip(self.sizes[:-1], self.sizes[1:])]

    def large_weight_initializer(self):
        """Biases and weights ~ N(0, 1), as in chapter 1 (for comparison)."""
        self.biases = [np.random.randn(y, 1) for y in self.sizes[1:]]
        self.weights = [np.random.randn(y, x)
                        for x, y in zip(self.sizes[:-1], self.sizes[1:])]

    # ------------------------------------------------------------------ training
    def SGD(self, training_data, epochs, mini_batch_size, eta, lmbda=0.0, evaluation_data=None,
            monitor_evaluation_cost=False, monitor_evaluation_accuracy=False,
            monitor_training_cost=False, monitor_training_accuracy=False):
        """Train by mini-batch stochastic gradient descent with L2 regularisation ``lmbda``.

        training_data: pairs ``(x, y)``, ``x`` a ``(n_in, 1)`` column and ``y`` the desired
            ``(n_out, 1)`` output; evaluation_data: optional pairs ``(x, label)`` (int labels),
            usually the validation or test data. Lists or ``zip`` objects.
        The ``monitor_*`` flags print and record, after each epoch, the cost (with the L2 term)
        and the number classified correctly on either data set. Returns the per-epoch lists
        ``(evaluation_cost, evaluation_accuracy, training_cost, training_accuracy)``; a list is
        empty when its flag is off.
        """
        epochs = _checks.positive_int(epochs, "epochs", minimum=0)
        mini_batch_size = _checks.positive_int(mini_batch_size, "mini_batch_size")
        eta = _checks.finite_float(eta, "eta", positive=True)
        lmbda = _checks.finite_float(lmbda, "lmbda", nonnegative=True)
        train = self._arrays(self._materialize(training_data, "training_data"),
                             "training_data", vectors=True)
        evaluation_data = self._materialize(evaluation_data, "evaluation_data")
        if (monitor_evaluation_cost or monitor_evaluation_accuracy) and not evaluation_data:
            raise ValueError("monitor_evaluation_cost/monitor_evaluation_accuracy need "
                             "evaluation_data (pairs (x, label))")
        evaluation = (self._arrays(evaluation_data, "evaluation_data", vectors=False)
                      if evaluation_data else None)
        n = len(train)
        evaluation_cost, evaluation_accuracy = [], []
        training_cost, training_accuracy = [], []

        def after_epoch(j, outputs):
            print("Epoch %s training complete" % j)
            if monitor_training_cost or monitor_training_accuracy:
                out = outputs(train)
                if monitor_training_cost:
                    cost = self._cost_of(out, train.targets, lmbda)
                    training_cost.append(cost)
                    print("Cost on training data: {}".format(cost))
                if monitor_training_accuracy:
                    accuracy = int(np.count_nonzero(out.argmax(axis=1) == train.labels))
                    training_accuracy.append(accuracy)
                    print("Accuracy on training data: {} / {}".format(accuracy, n))
            if monitor_evaluation_cost or monitor_evaluation_accuracy:
                out = outputs(evaluation)
                if monitor_evaluation_cost:
                    cost = self._cost_of(out, evaluation.one_hot(self.sizes[-1]), lmbda)
                    evaluation_cost.append(cost)
                    print("Cost on evaluation data: {}".format(cost))
                if monitor_evaluation_accuracy:
                    accuracy = int(np.count_nonzero(out.argmax(axis=1) == evaluation.labels))
                    evaluation_accuracy.append(accuracy)
                    print("Accuracy on evaluation data: {} / {}".format(accuracy,
                                                                        len(evaluation)))
            print()

        monitored = (n if monitor_training_cost or monitor_training_accuracy else 0) + \
            (len(evaluation) if monitor_evaluation_cost or monitor_evaluation_accuracy else 0)
        self._fit(train, epochs, mini_batch_size, eta, lmbda, after_epoch, monitored=monitored)
        return evaluation_cost, evaluation_accuracy, training_cost, training_accuracy

    def update_mini_batch(self, mini_batch, eta, lmbda, n):
        """One step on ``mini_batch`` (pairs ``(x, y)``) out of a training set of ``n``:
        ``w ← (1 − eta·lmbda/n)·w − (eta/len(mini_batch))·Σ∇w``; compiled."""
        lmbda = _checks.finite_float(lmbda, "lmbda", nonnegative=True)
        n = _checks.positive_int(n, "n")
        self._update(mini_batch, eta, lmbda, n)

    def _output_delta(self, z, a, y):
        return self.cost.delta(z, a, y)

    # ------------------------------------------------------------------ monitors
    def _cost_of(self, out: np.ndarray, targets: np.ndarray, lmbda: float) -> float:
        """The book's ``total_cost`` from the outputs ``out`` for ``targets``, both
        ``float64[n, n_out]``: Σ cost/n + ½·(λ/n)·Σ‖w‖²."""
        n = len(out)
        with np.errstate(over="ignore"):  # saturated terms may sum to inf, as in the book
            cost = float(np.sum(_per_sample_cost(self._loss, out, targets) / n))
        return cost + 0.5 * (lmbda / n) * sum(np.linalg.norm(w) ** 2 for w in self.weights)

    def accuracy(self, data, convert=False):
        """The number of pairs in ``data`` for which the output neuron with the highest
        activation is the right digit. ``convert=False``: ``y`` are int labels (validation or
        test data); ``convert=True``: ``y`` are one-hot vectors (training data)."""
        return self._count_correct(data, "data", vectors=bool(convert))

    def total_cost(self, data, lmbda, convert=False):
        """The mean cost over ``data`` plus the L2 term ``½·(lmbda/len(data))·Σ‖w‖²``.
        ``convert=False``: ``y`` are one-hot vectors (training data); ``convert=True``: ``y``
        are int labels (validation or test data)."""
        lmbda = _checks.finite_float(lmbda, "lmbda")
        arrays = self._arrays(self._materialize(data, "data"), "data", vectors=not convert)
        return self._cost_of(self._outputs(arrays), arrays.one_hot(self.sizes[-1]), lmbda)

    # ------------------------------------------------------------------ persistence
    def save(self, filename):
        """Write the network to ``filename`` as the book's JSON: ``{"sizes", "weights",
        "biases", "cost"}`` with nested lists and the cost's class name. The file is replaced
        atomically (written to a temporary file beside it, then renamed)."""
        self._model()  # checks the shapes against sizes
        data = {"sizes": self.sizes,
                "weights": [np.asarray(w, dtype=np.float64).tolist() for w in self.weights],
                "biases": [np.asarray(b, dtype=np.float64).reshape(-1, 1).tolist()
                           for b in self.biases],
                "cost": _cost_name(self.cost)}
        write_atomic(filename, lambda f: f.write(json.dumps(data).encode()))


def load(filename, device: str | None = None) -> Network:
    """Read a network saved by ``Network.save`` here or by the book's ``network2.py``.

    As in the book, the network is first built with ``Network(sizes, cost)``, which draws its
    initial weights from ``np.random`` (so the random stream after ``load`` is the book's), and
    then given the weights in the file. Raises ValueError naming the file for a file that is
    not valid JSON (deeply nested or too large to parse included), an unknown cost name,
    weights/biases that are not arrays of numbers, whose shapes do not match ``sizes``, or that
    hold NaN or inf. Everything is checked before the network is built, so what a file makes
    ``load`` allocate is bounded by the file's own size, not by the ``sizes`` it declares.
    """
    path = os.fspath(filename)
    try:
        with open(path) as f:
            data = json.load(f)
    except (ValueError, UnicodeDecodeError) as exc:
        # ValueError: JSONDecodeError, and integers too long to convert (str → int limit)
        raise ValueError(f"{path}: not a network2 JSON file ({exc})") from exc
    except (RecursionError, MemoryError) as exc:
        raise ValueError(f"{path}: not a network2 JSON file (too deeply nested or too large "
                         f"to parse: {type(exc).__name__})") from None
    if not isinstance(data, dict) or not {"sizes", "weights", "biases", "cost"} <= data.keys():
        raise ValueError(f"{path}: expected a JSON object with keys sizes, weights, biases, "
                         "cost")
    sizes = data["sizes"]
    if not isinstance(sizes, list) or len(sizes) < 2 or \
            not all(type(s) is int and s >= 1 for s in sizes):
        raise ValueError(f"{path}: sizes must be a list of at least two positive ints, got "
                         f"{sizes!r}")
    if not isinstance(data["cost"], str) or data["cost"] not in _COSTS:
        raise ValueError(f"{path}: unknown cost {data['cost']!r}; expected one of "
                         f"{sorted(_COSTS)}")
    n_layers = len(sizes) - 1
    arrays = {}
    for key in ("weights", "biases"):
        if not isinstance(data[key], list) or len(data[key]) != n_layers:
            raise ValueError(f"{path}: {key} must be a list of {n_layers} arrays for sizes "
                             f"{sizes}")
        arrays[key] = []
        for l, value in enumerate(data[key]):
            expected = (sizes[l + 1], sizes[l]) if key == "weights" else (sizes[l + 1], 1)
            arr = _number_array(value, f"{path}: {key}[{l}]", expected)
            if arr.shape == (sizes[l + 1],) and key == "biases":
                arr = arr.reshape(expected)
            if arr.shape != expected:
                raise ValueError(f"{path}: {key}[{l}] has shape {arr.shape}, expected "
                                 f"{expected} for sizes {sizes}")
            if not np.isfinite(arr).all():
                row, col = np.argwhere(~np.isfinite(arr))[0]
                raise ValueError(f"{path}: {key}[{l}] contains NaN or inf (first at "
                                 f"[{row}][{col}]: {arr[row, col]})")
            arrays[key].append(arr)
    net = Network(sizes, cost=_COSTS[data["cost"]][0], device=device)
    net.weights = arrays["weights"]
    net.biases = arrays["biases"]
    return net


def _number_array(value, name: str, expected: tuple) -> np.ndarray:
    """``value`` (nested lists from JSON) as a float64 array; ValueError naming ``name`` when
    it is ragged or holds anything but numbers (strings, null, objects, true/false alone, ints
    too large for a float64)."""
    try:
        arr = np.array(value)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise ValueError(f"{name} is not an array of numbers of shape {expected} ({exc})") \
            from None
    # object: null, {}, or ints beyond int64; U: strings, which np.array(dtype=float) would parse
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} is not an array of numbers of shape {expected} (it holds "
                         f"{arr.dtype.name} values)")
    try:
        return arr.astype(np.float64)
    except OverflowError as exc:
        raise ValueError(f"{name} holds a number too large for float64 ({exc})") from None
