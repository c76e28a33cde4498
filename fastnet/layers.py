"""Layers a ``fastnet.Model`` is built from.

A layer describes its parameters (names and shapes) and how to initialise them; the ``Model``
owns one flat parameter buffer and hands each layer views into it, so a whole network moves
between host and device (and to and from disk) as one array. ``config()`` / ``from_config()``
round-trip a layer through JSON for ``Model.save``.
"""

from __future__ import annotations

import abc

import numpy as np

from fastnet import _checks
from fastnet.kernels.config import ACTIVATIONS


class Layer(abc.ABC):
    """Base class. Subclasses set ``kind`` and implement the abstract methods."""

    kind = "layer"

    def param_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """``[(name, shape), ...]`` in the order they are laid out in the flat buffer."""
        return []

    def init_params(self, views: dict[str, np.ndarray], rng: np.random.Generator) -> None:
        """Fill the parameter views in place."""

    @abc.abstractmethod
    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of one sample's output given one sample's input shape; raises ``ValueError``
        naming the layer when the input does not fit."""

    @abc.abstractmethod
    def config(self) -> dict:
        """JSON-serialisable description with a ``"kind"`` key (see ``from_config``)."""


class Dense(Layer):
    """Fully connected layer: ``a = act(x @ w.T + b)`` with ``w: (n_out, n_in)``, ``b: (n_out,)``.

    ``init="default"`` draws ``w ~ N(0, 1/n_in)`` and ``b ~ N(0, 1)`` (the book's
    ``default_weight_initializer``); ``init="large"`` draws both from ``N(0, 1)`` (chapter 1).
    """

    kind = "dense"
    INITS = ("default", "large")

    def __init__(self, n_in: int, n_out: int, activation: str = "sigmoid", *,
                 init: str = "default"):
        self.n_in = _checks.positive_int(n_in, "n_in")
        self.n_out = _checks.positive_int(n_out, "n_out")
        self.activation = _checks.choice(activation, "activation", ACTIVATIONS)
        self.init = _checks.choice(init, "init", self.INITS)

    def param_shapes(self):
        return [("w", (self.n_out, self.n_in)), ("b", (self.n_out,))]

    def init_params(self, views, rng):
        scale = 1.0 / np.sqrt(self.n_in) if self.init == "default" else 1.0
        views["w"][...] = rng.standard_normal(views["w"].shape) * scale
        views["b"][...] = rng.standard_normal(views["b"].shape)

    def output_shape(self, input_shape):
        if input_shape != (self.n_in,):
            raise ValueError(f"Dense({self.n_in}, {self.n_out}) expects inputs of shape "
                             f"({self.n_in},), but the layer before it gives {input_shape}")
        return (self.n_out,)

    def config(self):
        return {"kind": self.kind, "n_in": self.n_in, "n_out": self.n_out,
                "activation": self.activation, "init": self.init}

    def __repr__(self):
        return f"Dense({self.n_in}, {self.n_out}, activation={self.activation!r})"


LAYER_KINDS = {Dense.kind: Dense}


def from_config(cfg: dict) -> Layer:
    """Rebuild a layer from ``Layer.config()`` output (as read back from JSON)."""
    if not isinstance(cfg, dict) or cfg.get("kind") not in LAYER_KINDS:
        raise ValueError(f"unknown layer description {cfg!r}; known kinds: {sorted(LAYER_KINDS)}")
    args = {k: v for k, v in cfg.items() if k != "kind"}
    cls = LAYER_KINDS[cfg["kind"]]
    if cls is Dense:
        return Dense(args.pop("n_in"), args.pop("n_out"), **args)
    return cls(**args)
