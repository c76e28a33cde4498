"""A test-only statement of the book's algorithms (Nielsen, *Neural Networks and Deep Learning*,
network.py and network2.py), per sample, in plain NumPy: the oracle for the drop-ins.

Written from the book's description, not copied: the same random draws in the same order
(biases, then weights, with ``np.random.randn``), ``random.shuffle`` of the list of pairs at the
start of every epoch (the list stays shuffled from epoch to epoch), mini-batches as consecutive
slices, per-sample backprop summed over the mini-batch, and the book's update and cost
formulas. Slow on purpose (~4 s per MNIST epoch).

The chapter-6 network3 (convolution, pooling, dropout, its own SGD loop and lines) is stated
separately, in tests/network3_reference.py.
"""

from __future__ import annotations

import json
import random

import numpy as np


def sigmoid(z):
    # The book's formula. For z < -709 exp(-z) overflows to inf (with NumPy's warning) and
    # σ = 0, as in the book; no np.errstate here, it would double the per-sample cost.
    return 1.0 / (1.0 + np.exp(-z))


def sigmoid_prime(z):
    return sigmoid(z) * (1 - sigmoid(z))


def vectorized_result(j):
    e = np.zeros((10, 1))
    e[j] = 1.0
    return e


class _BookBase:
    def feedforward(self, a):
        for b, w in zip(self.biases, self.weights):
            a = sigmoid(np.dot(w, a) + b)
        return a

    def backprop(self, x, y):
        activation, activations, zs = x, [x], []
        for b, w in zip(self.biases, self.weights):
            z = np.dot(w, activation) + b
            zs.append(z)
            activation = sigmoid(z)
            activations.append(activation)
        delta = self.output_delta(zs[-1], activations[-1], y)
        nabla_b = [np.zeros(b.shape) for b in self.biases]
        nabla_w = [np.zeros(w.shape) for w in self.weights]
        nabla_b[-1] = delta
        nabla_w[-1] = np.dot(delta, activations[-2].transpose())
        for l in range(2, self.num_layers):
            delta = np.dot(self.weights[-l + 1].transpose(), delta) * sigmoid_prime(zs[-l])
            nabla_b[-l] = delta
            nabla_w[-l] = np.dot(delta, activations[-l - 1].transpose())
        return nabla_b, nabla_w

    def summed_gradient(self, mini_batch):
        nabla_b = [np.zeros(b.shape) for b in self.biases]
        nabla_w = [np.zeros(w.shape) for w in self.weights]
        for x, y in mini_batch:
            dnb, dnw = self.backprop(x, y)
            nabla_b = [nb + d for nb, d in zip(nabla_b, dnb)]
            nabla_w = [nw + d for nw, d in zip(nabla_w, dnw)]
        return nabla_b, nabla_w


class BookNetwork(_BookBase):
    """network.py: sigmoid layers, quadratic cost, plain SGD."""

    def __init__(self, sizes):
        self.num_layers = len(sizes)
        self.sizes = sizes
        self.biases = [np.random.randn(y, 1) for y in sizes[1:]]
        self.weights = [np.random.randn(y, x) for x, y in zip(sizes[:-1], sizes[1:])]

    def output_delta(self, z, a, y):
        return (a - y) * sigmoid_prime(z)

    def SGD(self, training_data, epochs, mini_batch_size, eta, test_data=None):
        """Returns the per-epoch test counts (the book prints them)."""
        training_data = list(training_data)
        n = len(training_data)
        counts = []
        for _ in range(epochs):
            random.shuffle(training_data)
            for k in range(0, n, mini_batch_size):
                self.update_mini_batch(training_data[k:k + mini_batch_size], eta)
            if test_data:
                counts.append(self.evaluate(test_data))
        return counts

    def update_mini_batch(self, mini_batch, eta):
        nabla_b, nabla_w = self.summed_gradient(mini_batch)
        self.weights = [w - (eta / len(mini_batch)) * nw for w, nw in zip(self.weights, nabla_w)]
        self.biases = [b - (eta / len(mini_batch)) * nb for b, nb in zip(self.biases, nabla_b)]

    def evaluate(self, test_data):
        return sum(int(np.argmax(self.feedforward(x)) == y) for x, y in test_data)


class BookQuadraticCost:
    @staticmethod
    def fn(a, y):
        return 0.5 * np.linalg.norm(a - y) ** 2

    @staticmethod
    def delta(z, a, y):
        return (a - y) * sigmoid_prime(z)


class BookCrossEntropyCost:
    @staticmethod
    def fn(a, y):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.sum(np.nan_to_num(-y * np.log(a) - (1 - y) * np.log(1 - a)))

    @staticmethod
    def delta(z, a, y):
        return a - y


BOOK_COSTS = {"QuadraticCost": BookQuadraticCost, "CrossEntropyCost": BookCrossEntropyCost}


class BookNetwork2(_BookBase):
    """network2.py: a cost class, scaled initial weights, L2-regularised SGD, monitors."""

    def __init__(self, sizes, cost=BookCrossEntropyCost):
        self.num_layers = len(sizes)
        self.sizes = sizes
        self.biases = [np.random.randn(y, 1) for y in sizes[1:]]
        self.weights = [np.random.randn(y, x) / np.sqrt(x)
                        for x, y in zip(sizes[:-1], sizes[1:])]
        self.cost = cost

    def output_delta(self, z, a, y):
        return self.cost.delta(z, a, y)

    def SGD(self, training_data, epochs, mini_batch_size, eta, lmbda=0.0,
            evaluation_data=None):
        """Returns the per-epoch evaluation accuracies."""
        training_data = list(training_data)
        n = len(training_data)
        accuracies = []
        for _ in range(epochs):
            random.shuffle(training_data)
            for k in range(0, n, mini_batch_size):
                self.update_mini_batch(training_data[k:k + mini_batch_size], eta, lmbda, n)
            if evaluation_data:
                accuracies.append(self.accuracy(evaluation_data))
        return accuracies

    def update_mini_batch(self, mini_batch, eta, lmbda, n):
        nabla_b, nabla_w = self.summed_gradient(mini_batch)
        self.weights = [(1 - eta * (lmbda / n)) * w - (eta / len(mini_batch)) * nw
                        for w, nw in zip(self.weights, nabla_w)]
        self.biases = [b - (eta / len(mini_batch)) * nb for b, nb in zip(self.biases, nabla_b)]

    def accuracy(self, data, convert=False):
        if convert:
            return sum(int(np.argmax(self.feedforward(x)) == np.argmax(y)) for x, y in data)
        return sum(int(np.argmax(self.feedforward(x)) == y) for x, y in data)

    def total_cost(self, data, lmbda, convert=False):
        cost = 0.0
        for x, y in data:
            a = self.feedforward(x)
            if convert:
                y = vectorized_result(y)
            cost += self.cost.fn(a, y) / len(data)
        return cost + 0.5 * (lmbda / len(data)) * sum(np.linalg.norm(w) ** 2
                                                      for w in self.weights)

    def save(self, filename):
        """The book's file: sizes, nested-list weights and biases, the cost's class name."""
        name = {BookQuadraticCost: "QuadraticCost",
                BookCrossEntropyCost: "CrossEntropyCost"}[self.cost]
        data = {"sizes": self.sizes, "weights": [w.tolist() for w in self.weights],
                "biases": [b.tolist() for b in self.biases], "cost": name}
        with open(filename, "w") as f:
            json.dump(data, f)


def book_load(filename):
    """The book's ``load``: build ``Network(sizes, cost)`` (drawing initial weights), then take
    the file's weights and biases as arrays."""
    with open(filename) as f:
        data = json.load(f)
    net = BookNetwork2(data["sizes"], cost=BOOK_COSTS[data["cost"]])
    net.weights = [np.array(w) for w in data["weights"]]
    net.biases = [np.array(b) for b in data["biases"]]
    return net


# ---------------------------------------------------------------------------- test helpers
def seeded(cls, seed, *args, **kwargs):
    """``cls(*args, **kwargs)`` built right after ``random.seed(seed)`` and
    ``np.random.seed(seed)``, as a book script would."""
    random.seed(seed)
    np.random.seed(seed)
    return cls(*args, **kwargs)


def assert_same_params(net, book, rtol):
    """Weights and biases elementwise relative, with an absolute floor far below the O(1)
    weights for the few entries that happen to sit near zero."""
    from helpers import assert_close
    for l in range(len(book.weights)):
        assert_close(net.weights[l], book.weights[l], rtol=rtol, atol=1e-12, name=f"weights[{l}]")
        assert_close(net.biases[l], book.biases[l], rtol=rtol, atol=1e-12, name=f"biases[{l}]")


def tiny_data(n=23, n_in=4, n_out=3, seed=0):
    """(training pairs with one-hot columns, test pairs with int labels) of random data."""
    rng = np.random.default_rng(seed)
    xs = rng.random((n, n_in, 1))
    labels = rng.integers(0, n_out, n)
    return list(zip(xs, np.eye(n_out)[labels].reshape(n, n_out, 1))), list(zip(xs, labels))
