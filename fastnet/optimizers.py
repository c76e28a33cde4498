"""Optimizers for ``Model.fit(..., optimizer=...)``: the book's SGD (the default, its fused
epochs unchanged), momentum, Nesterov, RMSprop, Adam and AdamW, with PyTorch's update rules
and defaults. ``fit``'s ``lmbda`` is the book's L2 for every one of them (``lmbda/n · w`` added
to the weights' gradient; with SGD exactly the book's update), ``l1`` the book's L1
(``l1/n · sgn(w)``; SGD with L1 trains through the optimizers' epochs); AdamW's decoupled
decay is its own ``weight_decay``, applied to every parameter as PyTorch does.

    model.fit(x, y, epochs=10, batch_size=10, optimizer="adam")           # lr 1e-3
    model.fit(x, y, epochs=10, batch_size=10, lr=0.01, optimizer=Momentum(0.95))

An optimizer object holds hyper-parameters only; the state it updates (moments, step count)
belongs to the model (``OptimizerState``), is saved with it and carried over between ``fit``
calls with the same optimizer. Kernels: ``kernels/optim_cpu.py``; twin:
``fastnet.reference.optim``; tests: ``tests/test_optimizers.py``.
"""

from __future__ import annotations

import json
import math

import numpy as np

from fastnet.kernels.config import OPTIMIZER_SLOTS, OPTIMIZERS

__all__ = ["Optimizer", "SGD", "Momentum", "Nesterov", "RMSprop", "Adam", "AdamW",
           "OptimizerState", "as_optimizer", "from_config", "NAMES"]

NAMES = tuple(OPTIMIZERS)


def _number(value, name, lo, hi, lo_open=False, hi_open=True) -> float:
    """``value`` as a float in the interval, else ValueError/TypeError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    ok = math.isfinite(v) and (v > lo if lo_open else v >= lo) and \
        (hi is None or (v < hi if hi_open else v <= hi))
    if not ok:
        interval = f"{'(' if lo_open else '['}{lo}, {hi if hi is not None else '∞'}" \
                   f"{')' if hi_open or hi is None else ']'}"
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")
    return v


class Optimizer:
    """Base class: ``name`` (one of ``NAMES``), ``lr`` (the default rate when ``fit`` gets
    none; None: ``fit`` must be given one), ``hyper(l1)`` (the kernels' float64[5]: β1 or
    momentum, β2 or α, eps, weight decay, L1) and ``config()`` (JSON-able, for files)."""

    name = ""
    lr: float | None = None

    @property
    def code(self) -> int:
        return OPTIMIZERS[self.name]

    @property
    def slots(self) -> int:
        """State arrays, each the size of the parameters."""
        return OPTIMIZER_SLOTS[self.code]

    def hyper(self, l1: float = 0.0) -> np.ndarray:
        """The kernels' float64[5]: the rule's four coefficients and ``fit``'s L1
        coefficient l1 = λ₁/n."""
        return np.array([*self._rule(), float(l1)], dtype=np.float64)

    def _rule(self) -> tuple:
        return (0.0, 0.0, 0.0, 0.0)

    def config(self) -> dict:
        return {"name": self.name}

    def __eq__(self, other):
        return isinstance(other, Optimizer) and self.config() == other.config()

    def __hash__(self):
        return hash(repr(self))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """The book's mini-batch SGD: w ← (1 − lr·λ/n)·w − (lr/m)·Σ∇w. No default rate."""

    name = "sgd"


class Momentum(Optimizer):
    """v ← μ·v + g; w ← w − lr·v (PyTorch's SGD with momentum, no dampening)."""

    name = "momentum"
    lr = 1e-3

    def __init__(self, momentum: float = 0.9):
        self.momentum = _number(momentum, "momentum", 0.0, 1.0)

    def _rule(self):
        return (self.momentum, 0.0, 0.0, 0.0)

    def config(self):
        return {"name": self.name, "momentum": self.momentum}


class Nesterov(Momentum):
    """v ← μ·v + g; w ← w − lr·(g + μ·v) (PyTorch's ``nesterov=True``)."""

    name = "nesterov"


class RMSprop(Optimizer):
    """s ← α·s + (1 − α)·g²; w ← w − lr·g / (√s + eps) (PyTorch's defaults: lr 0.01)."""

    name = "rmsprop"
    lr = 0.01

    def __init__(self, alpha: float = 0.99, eps: float = 1e-8):
        self.alpha = _number(alpha, "alpha", 0.0, 1.0)
        self.eps = _number(eps, "eps", 0.0, None, lo_open=True)

    def _rule(self):
        return (0.0, self.alpha, self.eps, 0.0)

    def config(self):
        return {"name": self.name, "alpha": self.alpha, "eps": self.eps}


class Adam(Optimizer):
    """m ← β1·m + (1 − β1)·g; v ← β2·v + (1 − β2)·g²;
    w ← w − lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + eps) (PyTorch's defaults: lr 1e-3)."""

    name = "adam"
    lr = 1e-3

    def __init__(self, betas=(0.9, 0.999), eps: float = 1e-8):
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = (_number(betas[0], "betas[0]", 0.0, 1.0),
                      _number(betas[1], "betas[1]", 0.0, 1.0))
        self.eps = _number(eps, "eps", 0.0, None, lo_open=True)

    def _rule(self):
        return (*self.betas, self.eps, 0.0)

    def config(self):
        return {"name": self.name, "betas": list(self.betas), "eps": self.eps}


class AdamW(Adam):
    """Adam after w ← (1 − lr·weight_decay)·w (decoupled decay, every parameter; PyTorch's
    defaults: lr 1e-3, weight_decay 0.01)."""

    name = "adamw"

    def __init__(self, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01):
        super().__init__(betas, eps)
        self.weight_decay = _number(weight_decay, "weight_decay", 0.0, None)

    def _rule(self):
        return (*self.betas, self.eps, self.weight_decay)

    def config(self):
        return dict(super().config(), weight_decay=self.weight_decay)


_CLASSES = {c.name: c for c in (SGD, Momentum, Nesterov, RMSprop, Adam, AdamW)}


def as_optimizer(optimizer) -> Optimizer:
    """A name from ``NAMES`` (default hyper-parameters) or an ``Optimizer``, checked."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, str):
        if optimizer not in _CLASSES:
            raise ValueError(f"optimizer must be one of {list(NAMES)} or a "
                             f"fastnet.optimizers object, got {optimizer!r}")
        return _CLASSES[optimizer]()
    raise TypeError(f"optimizer must be one of {list(NAMES)} or a fastnet.optimizers object, "
                    f"got {type(optimizer).__name__}")


def from_config(config) -> Optimizer:
    """The optimizer ``config()`` describes (ValueError/TypeError if it is not one)."""
    if not isinstance(config, dict) or config.get("name") not in _CLASSES:
        raise ValueError(f"not an optimizer configuration: {config!r:.120}")
    args = {k: v for k, v in config.items() if k != "name"}
    try:
        return _CLASSES[config["name"]](**args)
    except TypeError as exc:
        raise ValueError(f"not an optimizer configuration: {config!r:.120} ({exc})") from None


class OptimizerState:
    """What an optimizer updates besides the parameters: ``state[slots, P]`` (the parameters'
    dtype; zeros at first) and ``step: int64[1]`` (updates taken), for ``optimizer``."""

    def __init__(self, optimizer: Optimizer, size: int, dtype, state=None, step=0):
        self.optimizer = optimizer
        shape = (optimizer.slots, size)
        self.state = np.zeros(shape, dtype) if state is None else state
        if self.state.shape != shape or self.state.dtype != np.dtype(dtype):
            raise ValueError(f"optimizer state must be {np.dtype(dtype).name} {shape}, got "
                             f"{self.state.dtype} {self.state.shape}")
        self.step = np.array([int(step)], dtype=np.int64)

    @classmethod
    def for_fit(cls, current, optimizer: Optimizer, params) -> "OptimizerState":
        """``current`` (a model's state, or None) when it is ``optimizer``'s for ``params``,
        else a fresh one."""
        if current is not None and optimizer == current.optimizer and \
                current.state.shape[1] == params.size and current.state.dtype == params.dtype:
            return current
        return cls(optimizer, params.size, params.dtype)

    def arrays(self) -> dict:
        """The state as ``Model.save`` writes it beside the parameters (JSON text, no pickle)."""
        return {"optimizer": np.array(json.dumps(self.optimizer.config())),
                "optimizer_state": self.state, "optimizer_step": self.step}

    @classmethod
    def read(cls, f, params) -> "OptimizerState":
        """The state ``arrays`` wrote into the model file ``f`` (a ``savefile.NpzReader``)
        beside ``params``, checked (``f.error`` for anything wrong)."""
        try:
            optimizer = from_config(json.loads(f.text("optimizer", 4096)))
        except (ValueError, TypeError, RecursionError) as exc:
            raise f.error(f"its optimizer is not one fastnet knows ({exc})") from None
        state = f.array("optimizer_state", shape=(optimizer.slots, params.size),
                        dtype=params.dtype)
        step = f.array("optimizer_step", shape=(1,), dtype=np.int64)
        if step[0] < 0:
            raise f.error(f"its optimizer_step is {step[0]}")
        return cls(optimizer, params.size, params.dtype, state, int(step[0]))

    def copy(self) -> "OptimizerState":
        return OptimizerState(self.optimizer, self.state.shape[1], self.state.dtype,
                              self.state.copy(), int(self.step[0]))

    def restore(self, other: "OptimizerState") -> None:
        """This state's arrays set to ``other``'s (in place: trainers hold them)."""
        self.state[...] = other.state
        self.step[...] = other.step
