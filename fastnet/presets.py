"""The book's runs as ``Model`` presets: each is the network, cost, initialisation, η, λ, epochs,
mini-batch and training data of one row of docs/book_results.md (``fastnet train --preset``).

``PRESETS[name].model(dtype=..., device=..., seed=...)`` builds the network with the book's
initial weight distribution; ``fit_kwargs()`` are the book's ``Model.fit`` settings. Chapters 1
and 3 are network.py / network2.py runs (N(0, 1) weights and biases: "randn" / "large");
chapter 6 rows are network3.py runs: weights N(0, 1/n_out) (n_out of a conv-pool layer:
filters·kh·kw / pool size), biases N(0, 1), a zero softmax layer, mini-batches in data order,
and network3's L2 term η·λ/num_batches, which is fit's ``lmbda`` = λ·mini-batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastnet.layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D
from fastnet.model import Model


@dataclass(frozen=True)
class Preset:
    """One book run. ``lmbda`` is ``Model.fit``'s (``book_lmbda`` the book's own figure);
    ``train_limit``: train on the first n training images only; ``expand``: the training set
    expanded by 1-pixel shifts (``datasets.expand_by_shifts``); ``shuffle``: a new order every
    epoch (network.py, network2.py) or data order (network3.py)."""

    name: str
    description: str
    net: str                  # "dense:784,30,10" or a chapter-6 layout name
    loss: str
    init: str                 # "large" (N(0, 1)) or "network3"
    epochs: int
    lr: float
    lmbda: float
    book_lmbda: float
    batch_size: int = 10
    activation: str = "sigmoid"
    shuffle: bool = True
    train_limit: int | None = None
    expand: bool = False
    book: str = ""

    def model(self, *, dtype="float32", device=None, seed=None) -> Model:
        """The preset's network with the book's initial weight distribution, drawn from a
        generator seeded with ``seed``."""
        if self.net.startswith("dense:"):
            sizes = [int(s) for s in self.net[6:].split(",")]
            return Model(sizes, activation=self.activation, loss=self.loss, init=self.init,
                         dtype=dtype, device=device, seed=seed)
        layers = _ch6_layers(self.net, self.activation)
        model = Model(layers, loss=self.loss, dtype=dtype, device=device, seed=seed,
                      input_shape=None if isinstance(layers[0], Dense) else (1, 28, 28))
        network3_init(model, np.random.default_rng(seed))
        return model

    def fit_kwargs(self) -> dict:
        return {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                "lmbda": self.lmbda, "shuffle": self.shuffle}

    def summary(self) -> str:
        lam = (f"λ {self.book_lmbda:g}" if self.lmbda == self.book_lmbda else
               f"λ {self.book_lmbda:g} (fit lmbda {self.lmbda:g})")
        data = ("first 1,000 training images" if self.train_limit == 1000 else
                "training set expanded to 250,000" if self.expand else "50,000 training images")
        return (f"{self.description}; {self.epochs} epochs, mini-batch {self.batch_size}, "
                f"η {self.lr:g}, {lam}, {data}; book: {self.book}")


def _ch6_layers(net: str, act: str) -> list:
    """network3's layers for the chapter-6 rows (examples/ch6_table.py), as fastnet layers."""
    conv1 = [Conv2D(1, 20, 5, activation=act), MaxPool2D(2)]
    if net == "fc":
        return [Dense(784, 100, act), Dense(100, 10, "softmax")]
    if net == "conv1":
        return conv1 + [Flatten(), Dense(20 * 12 * 12, 100, act), Dense(100, 10, "softmax")]
    conv2 = [Conv2D(20, 40, 5, activation=act), MaxPool2D(2), Flatten()]
    if net == "dropout":
        return conv1 + conv2 + [Dropout(0.5), Dense(640, 1000, "relu"), Dropout(0.5),
                                Dense(1000, 1000, "relu"), Dropout(0.5),
                                Dense(1000, 10, "softmax")]
    return conv1 + conv2 + [Dense(640, 100, act), Dense(100, 10, "softmax")]


def network3_init(model: Model, rng: np.random.Generator) -> None:
    """Fill ``model``'s parameters as network3.py initialises its layers: a conv layer followed
    by a pool (or a dense layer) draws w ~ N(0, 1/n_out), b ~ N(0, 1); the softmax output layer
    starts at zero."""
    layers = model.layers
    for i, layer in enumerate(layers):
        if isinstance(layer, Conv2D):
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            pool = np.prod(nxt.size) if isinstance(nxt, MaxPool2D) else 1
            n_out = layer.out_channels * np.prod(layer.kernel_size) / pool
        elif isinstance(layer, Dense):
            n_out = layer.n_out
        else:
            continue
        p = model.params_of(i)
        if getattr(layer, "activation", None) == "softmax":
            p["w"][...] = 0
            p["b"][...] = 0
        else:
            p["w"][...] = rng.normal(0.0, np.sqrt(1.0 / n_out), p["w"].shape)
            p["b"][...] = rng.normal(0.0, 1.0, p["b"].shape)


def _ch6(name, net, description, epochs, lr, lam, book, *, act="sigmoid", expand=False):
    return Preset(name, description, net, "log_likelihood", "network3", epochs, lr, lam * 10,
                  lam, activation=act, shuffle=False, expand=expand, book=book)


PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("ch1", "[784, 30, 10] sigmoid, quadratic cost, N(0, 1) init (network.py)",
           "dense:784,30,10", "quadratic", "large", 30, 3.0, 0.0, 0.0, book="95.42% test"),
    Preset("ch1-100", "[784, 100, 10] sigmoid, quadratic cost, N(0, 1) init (network.py)",
           "dense:784,100,10", "quadratic", "large", 30, 3.0, 0.0, 0.0, book="96.59% test"),
    Preset("ch3", "[784, 30, 10] sigmoid, cross-entropy, large init (network2.py)",
           "dense:784,30,10", "cross_entropy", "large", 30, 0.5, 5.0, 5.0,
           book="96.49% test"),
    Preset("ch3-100-large", "[784, 100, 10] sigmoid, cross-entropy, large init (network2.py)",
           "dense:784,100,10", "cross_entropy", "large", 30, 0.5, 5.0, 5.0,
           book="97.92% validation"),
    Preset("ch3-overfit-1000", "[784, 30, 10] sigmoid, cross-entropy, large init (network2.py)",
           "dense:784,30,10", "cross_entropy", "large", 400, 0.5, 0.1, 0.1, train_limit=1000,
           book="87.1% test"),
    _ch6("ch6-fc", "fc", "FC 784→100 sigmoid + softmax (network3.py)", 60, 0.1, 0.0, "97.80%"),
    _ch6("ch6-conv1", "conv1", "conv 20@5×5 + pool 2×2, FC 100 sigmoid, softmax (network3.py)",
         60, 0.1, 0.0, "98.78%"),
    _ch6("ch6-conv2", "conv2", "two conv-pool layers (20, 40 @5×5), FC 100 sigmoid, softmax "
         "(network3.py)", 60, 0.1, 0.0, "99.06%"),
    _ch6("ch6-relu", "conv2", "ch6-conv2 with ReLU everywhere (network3.py)", 60, 0.03, 0.1,
         "99.23%", act="relu"),
    _ch6("ch6-expanded", "conv2", "ch6-relu on the expanded training set (network3.py)", 60,
         0.03, 0.1, "99.37%", act="relu", expand=True),
    _ch6("ch6-dropout", "dropout", "relu conv-pools, two FC 1000 ReLU, dropout 0.5 on both "
         "and the softmax (network3.py)", 40, 0.03, 0.0, "99.60%", act="relu", expand=True),
]}
