"""Layers a ``fastnet.Model`` is built from.

A layer describes its parameters (names and shapes) and how to initialise them; the ``Model``
owns one flat parameter buffer and hands each layer views into it, so a whole network moves
between host and device (and to and from disk) as one array. ``config()`` / ``from_config()``
round-trip a layer through JSON for ``Model.save``.

For the layer-by-layer training path each layer also has ``forward(ops, p, x, train, rng)``,
returning its output and a context holding what its backward needs, and
``backward(ops, p, g, ctx, dout, need_dx)`` (writing its summed gradients into the views ``g``
and returning ∂C/∂x); ``ops`` is an op set from ``fastnet.devices.ops``. Layers keep no
per-call state: the context belongs to the caller, so a ``predict`` in one thread can run
beside a ``fit`` in another. A ``Conv2D`` directly followed by a ``MaxPool2D`` runs as one fused ConvPool
stage (``fuse``): act(maxpool(conv(x) + b)) equals maxpool(act(conv(x) + b)) because every
activation here is monotone and the bias is constant over a pooling window.
"""

from __future__ import annotations

import abc
import inspect
import math
import numbers

import numpy as np

from fastnet import _checks
from fastnet.kernels.config import ACTIVATIONS, LINEAR


class Layer(abc.ABC):
    """Base class. Subclasses set ``kind`` and implement the abstract methods."""

    kind = "layer"

    def param_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """``[(name, shape), ...]`` of the trained parameters, in the order they are laid out
        in the flat buffer."""
        return []

    def state_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """``[(name, shape), ...]`` of state the layer keeps in the flat buffer but no
        optimizer trains (batch norm's running averages): laid out after every layer's
        parameters, saved and restored with them."""
        return []

    def init_params(self, views: dict[str, np.ndarray], rng: np.random.Generator) -> None:
        """Fill the parameter (and state) views in place."""

    @abc.abstractmethod
    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of one sample's output given one sample's input shape; raises ``ValueError``
        naming the layer when the input does not fit."""

    @abc.abstractmethod
    def config(self) -> dict:
        """JSON-serialisable description with a ``"kind"`` key (see ``from_config``)."""

    @abc.abstractmethod
    def forward(self, ops, p: dict, x: np.ndarray, train: bool, rng):
        """``(output, ctx)`` for the batch ``x``: ``ctx`` is what ``backward`` needs (None
        when not ``train``)."""

    @abc.abstractmethod
    def backward(self, ops, p: dict, g: dict, ctx, dout: np.ndarray, need_dx: bool):
        """Write Σ-over-batch gradients into ``g`` from ``forward``'s ``ctx``; return ∂C/∂x
        (or None if not ``need_dx``)."""


INITS = ("default", "large", "glorot", "he")


def init_weights(init: str, w: np.ndarray, b: np.ndarray, fan_in: int, fan_out: int,
                 activation: str, rng: np.random.Generator) -> None:
    """Fill a layer's ``w`` and ``b`` from ``rng``. ``default``: w ~ N(0, 1/fan_in), b ~ N(0, 1)
    (the book's ``default_weight_initializer``, chapter 3); ``large``: both ~ N(0, 1) (chapter
    1); ``glorot``: w ~ U(±√(6/(fan_in + fan_out))), ×4 for a sigmoid layer (Glorot and Bengio
    2010, as in the seed lectures' MLP), b = 0; ``he``: w ~ N(0, 2/fan_in), b = 0 (He et al.
    2015, for relu)."""
    if init == "glorot":
        bound = np.sqrt(6.0 / (fan_in + fan_out)) * (4.0 if activation == "sigmoid" else 1.0)
        w[...] = rng.uniform(-bound, bound, w.shape)
    else:
        scale = {"default": 1.0 / np.sqrt(fan_in), "large": 1.0, "he": np.sqrt(2.0 / fan_in)}
        w[...] = rng.standard_normal(w.shape) * scale[init]
    b[...] = rng.standard_normal(b.shape) if init in ("default", "large") else 0.0


class Dense(Layer):
    """Fully connected layer: ``a = act(x @ w.T + b)`` with ``w: (n_out, n_in)``, ``b: (n_out,)``.

    ``init``: how the weights are drawn (``init_weights``): ``"default"`` (w ~ N(0, 1/n_in),
    b ~ N(0, 1), the book's ``default_weight_initializer``), ``"large"`` (both N(0, 1), chapter
    1), ``"glorot"`` (uniform, ×4 for sigmoid; b = 0) or ``"he"`` (N(0, 2/n_in); b = 0).
    """

    kind = "dense"
    INITS = INITS

    def __init__(self, n_in: int, n_out: int, activation: str = "sigmoid", *,
                 init: str = "default"):
        self.n_in = _checks.positive_int(n_in, "n_in")
        self.n_out = _checks.positive_int(n_out, "n_out")
        self.activation = _checks.choice(activation, "activation", ACTIVATIONS)
        self.init = _checks.choice(init, "init", self.INITS)

    def param_shapes(self):
        return [("w", (self.n_out, self.n_in)), ("b", (self.n_out,))]

    def init_params(self, views, rng):
        init_weights(self.init, views["w"], views["b"], self.n_in, self.n_out, self.activation,
                     rng)

    def output_shape(self, input_shape):
        if input_shape != (self.n_in,):
            raise ValueError(f"Dense({self.n_in}, {self.n_out}) expects inputs of shape "
                             f"({self.n_in},), but the layer before it gives {input_shape}")
        return (self.n_out,)

    def config(self):
        return {"kind": self.kind, "n_in": self.n_in, "n_out": self.n_out,
                "activation": self.activation, "init": self.init}

    def forward(self, ops, p, x, train, rng):
        """``(a, ctx)`` with ``ctx = (x, z, a)``; a model's output layer reads its ``z`` for
        the loss."""
        z = ops.dense_forward(x, p["w"], p["b"])
        a = ops.activate(z, ACTIVATIONS[self.activation])
        return a, (x, z, a)

    def backward(self, ops, p, g, ctx, dout, need_dx, *, is_dz=False, sgd=None):
        """``dout`` is ∂C/∂a, or ∂C/∂z when ``is_dz`` (the output layer's delta). With
        ``sgd=(scale, decay)`` the layer takes its SGD step here (``ops.dense_backward_sgd``)
        and writes no gradient into ``g``."""
        x, z, a = ctx
        dz = dout if is_dz else ops.act_backward(z, a, ACTIVATIONS[self.activation], dout)
        if sgd is not None:
            return ops.dense_backward_sgd(x, p["w"], p["b"], dz, need_dx, *sgd)
        dx, gw, gb = ops.dense_backward(x, p["w"], dz, need_dx, out=(g["w"], g["b"]))
        if gw is not g["w"]:
            ops.assign(g["w"], gw)
            ops.assign(g["b"], gb)
        return dx

    def __repr__(self):
        return f"Dense({self.n_in}, {self.n_out}, activation={self.activation!r})"


def _pair(value, name):
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return (_checks.positive_int(value[0], f"{name}[0]"),
                _checks.positive_int(value[1], f"{name}[1]"))
    v = _checks.positive_int(value, name)
    return (v, v)


def _padding(value):
    """``padding`` checked: "valid", "same", an int or a pair of ints >= 0 (rows, columns)."""
    if isinstance(value, str):
        if value not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid', 'same', an int or a pair of ints "
                             f">= 0, got {value!r}")
        return value
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return (_checks.positive_int(value[0], "padding[0]", minimum=0),
                _checks.positive_int(value[1], "padding[1]", minimum=0))
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"padding must be 'valid', 'same', an int or a pair of ints >= 0, got "
                        f"{type(value).__name__} {value!r}")
    v = _checks.positive_int(value, "padding", minimum=0)
    return (v, v)


class Conv2D(Layer):
    """2-D cross-correlation: ``x (n, c_in, h, w)`` → ``act(z) (n, c_out, oh, ow)``,
    ``w: (c_out, c_in, kh, kw)``, ``b: (c_out,)``. ``init`` as for ``Dense`` with fan_in =
    c_in·kh·kw and fan_out = c_out·kh·kw (default: weights from ``N(0, 1/(c_in·kh·kw))``,
    biases from ``N(0, 1)``). (The book's Theano layer computes a true convolution: its weights
    are these flipped.)

    ``stride``: an int or (rows, columns). ``padding``: ``"valid"`` (none, the default),
    ``"same"`` (Keras's rule: oh = ⌈h/stride⌉, the zeros split evenly, any odd one at the
    bottom and right), an int or (rows, columns) of zeros on each side. Then
    oh = (h + pad_top + pad_bottom − kh) // stride + 1. A padded or strided layer computes the
    stride-1 correlation of the padded input and keeps every stride-th value (its cost is the
    stride-1 layer's on the padded input), on numpy and cpu; the cuda device refuses it."""

    kind = "conv2d"

    def __init__(self, in_channels: int, out_channels: int, kernel_size, activation=None, *,
                 stride=1, padding="valid", init: str = "default"):
        self.in_channels = _checks.positive_int(in_channels, "in_channels")
        self.out_channels = _checks.positive_int(out_channels, "out_channels")
        self.kernel_size = _pair(kernel_size, "kernel_size")
        activation = "linear" if activation is None else activation
        self.activation = _checks.choice(activation, "activation", ACTIVATIONS)
        if self.activation == "softmax":
            raise ValueError("Conv2D activation cannot be softmax")
        self.stride = _pair(stride, "stride")
        self.padding = _padding(padding)
        self.init = _checks.choice(init, "init", INITS)

    @property
    def plain(self) -> bool:
        """Stride 1 and no padding: the form every conv kernel computes directly."""
        return self.stride == (1, 1) and self.padding in ("valid", (0, 0))

    def pads(self, h: int, w: int) -> tuple[int, int, int, int]:
        """Zeros (top, bottom, left, right) around an (h, w) input."""
        if self.padding == "valid":
            return (0, 0, 0, 0)
        if self.padding != "same":
            (ph, pw) = self.padding
            return (ph, ph, pw, pw)
        out = []
        for size, k, s in ((h, self.kernel_size[0], self.stride[0]),
                           (w, self.kernel_size[1], self.stride[1])):
            total = max((-(-size // s) - 1) * s + k - size, 0)
            out += [total // 2, total - total // 2]
        return tuple(out)

    def param_shapes(self):
        return [("w", (self.out_channels, self.in_channels) + self.kernel_size),
                ("b", (self.out_channels,))]

    def init_params(self, views, rng):
        taps = self.kernel_size[0] * self.kernel_size[1]
        init_weights(self.init, views["w"], views["b"], self.in_channels * taps,
                     self.out_channels * taps, self.activation, rng)

    def output_shape(self, input_shape):
        kh, kw = self.kernel_size
        if len(input_shape) == 3 and input_shape[0] == self.in_channels:
            top, bottom, left, right = self.pads(*input_shape[1:])
            hp, wp = input_shape[1] + top + bottom, input_shape[2] + left + right
            if hp >= kh and wp >= kw:
                return (self.out_channels, (hp - kh) // self.stride[0] + 1,
                        (wp - kw) // self.stride[1] + 1)
        raise ValueError(f"{self!r} expects inputs of shape ({self.in_channels}, h, w) with "
                         f"h >= {kh}, w >= {kw} after padding, but the layer before it gives "
                         f"{input_shape}")

    def config(self):
        # "init", "stride" and "padding" only when not the default: files (and network3
        # checkpoints, whose run fingerprint holds the architecture) written before Conv2D
        # had them stay valid
        extra = {"init": self.init} if self.init != "default" else {}
        if self.stride != (1, 1):
            extra["stride"] = list(self.stride)
        if self.padding != "valid":
            extra["padding"] = self.padding if isinstance(self.padding, str) else \
                list(self.padding)
        return {"kind": self.kind, "in_channels": self.in_channels,
                "out_channels": self.out_channels, "kernel_size": list(self.kernel_size),
                "activation": self.activation, **extra}

    def forward(self, ops, p, x, train, rng):
        """``(a, ctx)`` with ``ctx = (x padded, z, a, pads)``."""
        pads = self.pads(*x.shape[2:])
        if any(pads):
            x = ops.pad2d(x, pads)
        z = ops.conv2d_forward(x, p["w"], p["b"])
        if self.stride != (1, 1):
            z = ops.stride2d(z, self.stride)
        a = ops.activate(z, ACTIVATIONS[self.activation]) if self.activation != "linear" else z
        return a, ((x, z, a, pads) if train else None)

    def backward(self, ops, p, g, ctx, dout, need_dx):
        x, z, a, pads = ctx
        code = ACTIVATIONS[self.activation]
        dz = dout if code == LINEAR else ops.act_backward(z, a, code, dout)
        if self.stride != (1, 1):   # the stride-1 output's gradient: 0 where the stride skips
            kh, kw = self.kernel_size
            dz = ops.unstride2d(dz, self.stride, (x.shape[2] - kh + 1, x.shape[3] - kw + 1))
        dx, gw, gb = ops.conv2d_backward(x, p["w"], dz, need_dx)
        ops.assign(g["w"], gw)
        ops.assign(g["b"], gb)
        return ops.crop2d(dx, pads) if need_dx and any(pads) else dx

    def __repr__(self):
        extra = "".join(f", {k}={v!r}" for k, v, default in (
            ("stride", self.stride, (1, 1)), ("padding", self.padding, "valid")) if v != default)
        return (f"Conv2D({self.in_channels}, {self.out_channels}, "
                f"kernel_size={self.kernel_size}, activation={self.activation!r}{extra})")


class MaxPool2D(Layer):
    """Non-overlapping max-pooling over ``size = (ph, pw)`` windows; remainder rows and columns
    are dropped (the book's ``ignore_border=True``)."""

    kind = "maxpool2d"

    def __init__(self, size=(2, 2)):
        self.size = _pair(size, "size")

    def output_shape(self, input_shape):
        ph, pw = self.size
        if len(input_shape) != 3 or input_shape[1] < ph or input_shape[2] < pw:
            raise ValueError(f"{self!r} expects inputs of shape (c, h, w) with h >= {ph}, "
                             f"w >= {pw}, but the layer before it gives {input_shape}")
        return (input_shape[0], input_shape[1] // ph, input_shape[2] // pw)

    def config(self):
        return {"kind": self.kind, "size": list(self.size)}

    def forward(self, ops, p, x, train, rng):
        y, argmax = ops.maxpool_forward(x, self.size)
        return y, ((x.shape, argmax) if train else None)

    def backward(self, ops, p, g, ctx, dout, need_dx):
        shape, argmax = ctx
        return ops.maxpool_backward(dout, argmax, shape)

    def __repr__(self):
        return f"MaxPool2D({self.size})"


class Flatten(Layer):
    """``(n, c, h, w)`` → ``(n, c·h·w)`` in C order."""

    kind = "flatten"

    def output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def config(self):
        return {"kind": self.kind}

    def forward(self, ops, p, x, train, rng):
        return x.reshape(x.shape[0], -1), x.shape

    def backward(self, ops, p, g, ctx, dout, need_dx):
        return dout.reshape(ctx)

    def __repr__(self):
        return "Flatten()"


class Dropout(Layer):
    """Dropout as in the book's network3: in training each input is kept with probability
    ``1 − p`` (a 0/1 mask, no rescaling); at inference the input is scaled by ``1 − p``."""

    kind = "dropout"

    def __init__(self, p: float):
        self.p = _checks.finite_float(p, "p", nonnegative=True)
        if self.p >= 1:
            raise ValueError(f"p must be a probability in [0, 1), got {p}")

    def output_shape(self, input_shape):
        return input_shape

    def config(self):
        return {"kind": self.kind, "p": self.p}

    def forward(self, ops, p, x, train, rng):
        if not train:
            return ops.scale(x, 1 - self.p), None
        return ops.dropout_forward(x, self.p, rng)      # (x·mask, mask)

    def backward(self, ops, p, g, ctx, dout, need_dx):
        return ops.dropout_backward(dout, ctx)

    def __repr__(self):
        return f"Dropout({self.p})"


class BatchNorm(Layer):
    """Batch normalization (Ioffe and Szegedy 2015) of each feature, then an activation:
    ``a = act(gamma·(x − μ)/√(σ² + eps) + beta)``. ``features``: the width of a dense layer's
    output, or the channels of a conv layer's (each channel normalised over its samples and
    positions). Training uses the mini-batch's μ and σ² and moves the running averages
    ``running_mean``, ``running_var`` by ``momentum`` (PyTorch's convention: 0.1, unbiased
    σ²; a mini-batch needs 2 values per feature); inference uses the running averages
    (kernels: ``norm_cpu``, ``norm_cuda``). Place it between a layer with a linear activation
    and the activation: ``Dense(784, 100, "linear"), BatchNorm(100, "relu")``.
    Parameters ``gamma`` (starts at 1) and ``beta`` (0) train and do not decay under L2; the
    running averages are state (``state_shapes``) that no optimizer touches."""

    kind = "batchnorm"

    def __init__(self, features: int, activation: str = "linear", *, momentum: float = 0.1,
                 eps: float = 1e-5):
        self.features = _checks.positive_int(features, "features")
        self.activation = _checks.choice(activation, "activation", ACTIVATIONS)
        if self.activation == "softmax":
            raise ValueError("activation must be elementwise for BatchNorm, got 'softmax' "
                             "(put the softmax on the Dense layer after it)")
        self.momentum = _checks.finite_float(momentum, "momentum", nonnegative=True)
        if self.momentum > 1:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        self.eps = _checks.finite_float(eps, "eps", positive=True)
        self.code = ACTIVATIONS[self.activation]

    def param_shapes(self):
        return [("gamma", (self.features,)), ("beta", (self.features,))]

    def state_shapes(self):
        return [("running_mean", (self.features,)), ("running_var", (self.features,))]

    def init_params(self, views, rng):
        views["gamma"][...] = 1
        views["beta"][...] = 0
        views["running_mean"][...] = 0
        views["running_var"][...] = 1

    def output_shape(self, input_shape):
        if len(input_shape) not in (1, 3) or input_shape[0] != self.features:
            raise ValueError(f"BatchNorm({self.features}) expects inputs of shape "
                             f"({self.features},) or ({self.features}, h, w), but the layer "
                             f"before it gives {input_shape}")
        return input_shape

    def config(self):
        return {"kind": self.kind, "features": self.features, "activation": self.activation,
                "momentum": self.momentum, "eps": self.eps}

    def forward(self, ops, p, x, train, rng):
        """``(a, ctx)`` with ``ctx = (x, z, a, xhat, invstd)`` (z before the activation).
        In training the running averages in ``p`` move."""
        z, xhat, invstd = ops.batchnorm_forward(x, p["gamma"], p["beta"], p["running_mean"],
                                                p["running_var"], train, self.momentum,
                                                self.eps)
        a = ops.activate(z, self.code)
        return a, (x, z, a, xhat, invstd)

    def backward(self, ops, p, g, ctx, dout, need_dx, *, is_dz=False):
        x, z, a, xhat, invstd = ctx
        dz = dout if is_dz else ops.act_backward(z, a, self.code, dout)
        dx, dgamma, dbeta = ops.batchnorm_backward(xhat, invstd, p["gamma"], dz, need_dx)
        ops.assign(g["gamma"], dgamma)
        ops.assign(g["beta"], dbeta)
        return dx

    def __repr__(self):
        extra = "" if self.activation == "linear" else f", activation={self.activation!r}"
        return f"BatchNorm({self.features}{extra})"


def check_mini_batches(layers, input_shape, batch_size: int, n: int) -> None:
    """ValueError when a BatchNorm layer would normalise a feature over one value in a
    training mini-batch (a dense layer's output with a mini-batch of one sample): its
    variance is 0 and would pull the running variance to 0 (PyTorch refuses it too)."""
    shape = tuple(input_shape)
    for layer in layers:
        if layer.kind == "batchnorm" and math.prod(shape[1:]) == 1 and \
                (batch_size == 1 or n % batch_size == 1):
            raise ValueError(f"{layer!r} needs at least 2 samples in every training "
                             f"mini-batch; batch_size={batch_size} with n={n} leaves one of "
                             f"1 sample: choose another batch_size")
        shape = tuple(layer.output_shape(shape))


class ConvPool:
    """A ``Conv2D`` followed by a ``MaxPool2D``, run as one fused kernel per direction. Uses the
    conv layer's parameters."""

    def __init__(self, conv: Conv2D, pool: MaxPool2D):
        self.conv, self.pool = conv, pool
        self.code = ACTIVATIONS[conv.activation]

    def forward(self, ops, p, x, train, rng):
        a, z, argmax = ops.convpool_forward(x, p["w"], p["b"], self.pool.size, self.code)
        return a, ((x, z, a, argmax) if train else None)

    def backward(self, ops, p, g, ctx, dout, need_dx):
        x, z, a, argmax = ctx
        dx, gw, gb = ops.convpool_backward(x, p["w"], z, a, argmax, dout, self.code, need_dx)
        ops.assign(g["w"], gw)
        ops.assign(g["b"], gb)
        return dx


def fuse(layers: list[Layer]) -> list[tuple[object, int]]:
    """The stages of the layer-by-layer path: ``[(stage, index of the layer whose parameters
    it uses), ...]``, with each Conv2D → MaxPool2D pair fused into one ConvPool stage (a
    stride-1, unpadded Conv2D: ``Conv2D.plain``)."""
    stages, i = [], 0
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, Conv2D) and layer.plain and i + 1 < len(layers) and \
                isinstance(layers[i + 1], MaxPool2D):
            stages.append((ConvPool(layer, layers[i + 1]), i))
            i += 2
        else:
            stages.append((layer, i))
            i += 1
    return stages


LAYER_KINDS = {cls.kind: cls for cls in (Dense, Conv2D, MaxPool2D, Flatten, Dropout,
                                          BatchNorm)}


def from_config(cfg: dict) -> Layer:
    """Rebuild a layer from ``Layer.config()`` output (as read back from JSON). Raises
    ValueError for an unknown kind or key, and the layer's own TypeError/ValueError for a bad
    value."""
    kind = cfg.get("kind") if isinstance(cfg, dict) else None
    if not isinstance(kind, str) or kind not in LAYER_KINDS:
        raise ValueError(f"unknown layer description {cfg!r:.120}; known kinds: "
                         f"{sorted(LAYER_KINDS)}")
    cls = LAYER_KINDS[kind]
    known = [name for name in inspect.signature(cls.__init__).parameters if name != "self"]
    unknown = sorted(str(k) for k in cfg if k != "kind" and k not in known)
    if unknown:
        raise ValueError(f"a {kind} layer has no {', '.join(map(repr, unknown))}; its keys "
                         f"are {', '.join(known) or 'none'}")
    return cls(**{k: v for k, v in cfg.items() if k != "kind"})
