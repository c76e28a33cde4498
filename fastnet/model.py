"""``fastnet.Model``: a network of layers trained by mini-batch SGD on a chosen backend.

>>> model = Model([784, 30, 10], seed=1)            # doctest: +SKIP
>>> history = model.fit(x, y, epochs=3, batch_size=10, lr=3.0, validation_data=(xv, yv))

The model owns one flat parameter buffer (docs/design.md); each layer's ``w``/``b`` are views
into it (``model.params_of(i)``). ``fit`` checks every argument before anything changes. A stack
of dense layers trains through the fused path: the data moves to the backend once and each epoch
is one backend call. Models with other layers (convolution, pooling, dropout, flatten) train
layer by layer, one Python step per mini-batch calling a kernel per layer (``fastnet.ops``),
except on the CPU a ConvPool → Flatten → Dense… model, whose epoch is one compiled call too
(``kernels/cnn_cpu.py``).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from fastnet import _checks
from fastnet.backends import BACKENDS, get_backend
from fastnet.kernels.config import ACTIVATIONS, LOSSES
from fastnet.layers import Dense, Layer, from_config, fuse
from fastnet.ops import get_ops
from fastnet.savefile import NpzReader, save_npz_atomic

DTYPES = {"float32": np.float32, "float64": np.float64}
FORMAT_VERSION = 1


@dataclass
class History:
    """Per-epoch metrics from ``Model.fit``. ``loss`` is the mean cost over the training data
    (without the L2 term), ``accuracy`` the fraction classified correctly (argmax of output vs
    argmax of target), both measured after the epoch (empty lists with
    ``training_metrics=False``); ``val_*`` the same on ``validation_data`` (empty lists when
    none was given); ``seconds`` the training time of each epoch (excluding the metrics)."""

    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def _resolve_dtype(dtype) -> np.dtype:
    """``"float32"``/``"float64"`` or the NumPy type; ``None`` is an error (NumPy would read
    it as float64)."""
    if dtype is None:
        raise TypeError("dtype must be 'float32' or 'float64', got None")
    try:
        name = np.dtype(dtype).name
    except (TypeError, ValueError):
        name = None
    if name not in DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return np.dtype(DTYPES[name])


def _resolve_device(device) -> str:
    if device is None:
        device = os.environ.get("FASTNET_DEVICE", "cpu") or "cpu"
    return _checks.choice(device, "device", BACKENDS)


class Model:
    """A feed-forward network.

    sizes_or_layers: a sizes list like ``[784, 30, 10]`` (dense layers, each with
        ``activation``; with ``loss="log_likelihood"`` the output layer is a softmax), or a list
        of layers (``fastnet.Dense(n_in, n_out, activation=...)``).
    activation: hidden (and, for a sizes list, output) activation: one of sigmoid, tanh, relu,
        softplus, linear.
    loss: ``"quadratic"`` (½‖a−y‖²), ``"cross_entropy"`` (sigmoid outputs) or
        ``"log_likelihood"`` (softmax outputs).
    dtype: ``"float32"`` or ``"float64"``; all parameters and computation use it.
    device: ``"cpu"`` (Numba kernels), ``"cuda"`` (Numba CUDA) or ``"numpy"`` (the pure-NumPy
        reference, for comparisons). ``None`` reads ``$FASTNET_DEVICE`` (default ``"cpu"``).
    backend: the same choice under another name (``backend="numpy"`` reads better for the
        reference); when given it wins over ``device``.
    seed: seeds the initial weights, the shuffling in ``fit`` and dropout masks.
    input_shape: one sample's shape, e.g. ``(1, 28, 28)``; needed when the first layer is not
        ``Dense`` (then ``x`` may be given as ``(n, 1, 28, 28)`` or flat as ``(n, 784)``).
    """

    def __init__(self, sizes_or_layers, *, activation: str = "sigmoid",
                 loss: str = "quadratic", dtype="float32", device: str | None = "cpu",
                 seed: int | None = None, backend: str | None = None, input_shape=None):
        self._configure(sizes_or_layers, activation, loss, dtype,
                        backend if backend is not None else device, input_shape, seed)
        self._allocate()
        for i, layer in enumerate(self.layers):
            layer.init_params(self.params_of(i), self._rng)

    # ------------------------------------------------------------------ construction
    def _configure(self, sizes_or_layers, activation, loss, dtype, device, input_shape, seed):
        """Check the arguments and build the layers; allocates nothing."""
        self.loss = _checks.choice(loss, "loss", LOSSES)
        self.dtype = _resolve_dtype(dtype)
        self.device = _resolve_device(device)
        if seed is not None:
            _checks.positive_int(seed, "seed", minimum=0)
        self.layers = self._build_layers(sizes_or_layers, activation, input_shape)
        self._check_output()
        # one stream for initial weights and shuffling, an independent one for dropout masks
        # (so adding a dropout layer does not change the mini-batch order)
        self._rng = np.random.default_rng(seed)
        self._dropout_rng = np.random.default_rng(
            np.random.SeedSequence(seed).spawn(1)[0] if seed is not None else None)

    def _parameter_count(self) -> int:
        """The size of the flat parameter buffer, from the layers alone."""
        return sum(math.prod(shape) for layer in self.layers
                   for _, shape in layer.param_shapes())

    def _build_layers(self, spec, activation, input_shape) -> list[Layer]:
        if isinstance(spec, (str, bytes)) or not hasattr(spec, "__len__") or len(spec) == 0:
            raise TypeError("sizes_or_layers must be a non-empty list of layer sizes like "
                            f"[784, 30, 10] or of layers, got {spec!r}")
        if all(isinstance(s, Layer) for s in spec):
            layers = list(spec)
        elif any(isinstance(s, Layer) for s in spec):
            raise TypeError("sizes_or_layers must be all sizes or all layers, not a mixture")
        else:
            _checks.choice(activation, "activation", ACTIVATIONS)
            if activation == "softmax":
                raise ValueError("activation='softmax' is for the output layer only: use "
                                 "loss='log_likelihood', which makes the output a softmax")
            sizes = [_checks.positive_int(s, f"sizes_or_layers[{i}]")
                     for i, s in enumerate(spec)]
            if len(sizes) < 2:
                raise ValueError(f"a sizes list needs at least an input and an output size, "
                                 f"got {sizes}")
            out_act = "softmax" if self.loss == "log_likelihood" else activation
            layers = [Dense(a, b, activation if i < len(sizes) - 2 else out_act)
                      for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))]
        if input_shape is None:
            if not isinstance(layers[0], Dense):
                raise ValueError(f"input_shape is needed when the first layer is "
                                 f"{layers[0]!r}, e.g. input_shape=(1, 28, 28)")
            input_shape = (layers[0].n_in,)
        if isinstance(input_shape, int) or not hasattr(input_shape, "__len__"):
            input_shape = (input_shape,)
        shape = self.input_shape = tuple(_checks.positive_int(s, "input_shape")
                                         for s in input_shape)
        for layer in layers:
            shape = layer.output_shape(shape)
        self.output_shape = shape
        if not isinstance(layers[-1], Dense):
            raise ValueError(f"the last layer must be Dense (the output layer), got "
                             f"{layers[-1]!r}")
        return layers

    def _check_output(self):
        acts = [layer.activation for layer in self.layers if hasattr(layer, "activation")]
        if "softmax" in acts[:-1]:
            raise ValueError("softmax is supported as the output activation only")
        out = acts[-1]
        if self.loss == "log_likelihood" and out != "softmax":
            raise ValueError(f"loss='log_likelihood' needs a softmax output layer, got {out!r}")
        if out == "softmax" and self.loss != "log_likelihood":
            raise ValueError("a softmax output layer needs loss='log_likelihood', "
                             f"got loss={self.loss!r}")
        if self.loss == "cross_entropy" and out != "sigmoid":
            raise ValueError(f"loss='cross_entropy' needs a sigmoid output layer, got {out!r}")

    def _allocate(self, params: np.ndarray | None = None):
        """The flat parameter buffer (zeros, or ``params`` adopted as it is) and the layout
        derived from the layers."""
        self._slices = []
        off = 0
        for layer in self.layers:
            entry = {}
            for name, shape in layer.param_shapes():
                size = int(np.prod(shape))
                entry[name] = (off, shape)
                off += size
            self._slices.append(entry)
        self.params = np.zeros(off, dtype=self.dtype) if params is None else params
        self._decayed = np.zeros(off, dtype=np.bool_)  # weights decay under L2, biases don't
        for entry in self._slices:
            if "w" in entry:
                w_off, shape = entry["w"]
                self._decayed[w_off:w_off + int(np.prod(shape))] = True
        self._loss_code = LOSSES[self.loss]
        self._fused = all(isinstance(layer, Dense) for layer in self.layers)
        if self._fused:  # the flat layout of docs/design.md, for the fused epoch kernels
            self._layout = np.array([(l.n_in, l.n_out, e["w"][0], e["b"][0])
                                     for l, e in zip(self.layers, self._slices)],
                                    dtype=np.int64).reshape(-1, 4)
            self._acts = np.array([ACTIVATIONS[l.activation] for l in self.layers],
                                  dtype=np.int64)
        self._stages = fuse(self.layers)

    def params_of(self, i: int) -> dict[str, np.ndarray]:
        """Views of layer ``i``'s parameters into the flat buffer (editing them edits the
        model)."""
        return {name: self.params[off:off + int(np.prod(shape))].reshape(shape)
                for name, (off, shape) in self._slices[i].items()}

    @property
    def n_in(self) -> int:
        """Number of input features (the product of ``input_shape``)."""
        return int(np.prod(self.input_shape))

    @property
    def n_out(self) -> int:
        return self.output_shape[0]

    def __repr__(self):
        inner = ",\n".join(f"  {layer!r}" for layer in self.layers)
        return (f"Model([\n{inner}\n], loss={self.loss!r}, dtype={self.dtype.name!r}, "
                f"device={self.device!r}, params={self.params.size})")

    # ------------------------------------------------------------------ training
    def fit(self, x, y, *, epochs: int, batch_size: int, lr: float, lmbda: float = 0.0,
            validation_data=None, shuffle: bool = True, verbose: bool = True,
            device: str | None = None, training_metrics: bool = True) -> History:
        """Train by mini-batch SGD: ``w ← (1 − lr·lmbda/n)·w − (lr/m)·Σ∇w``.

        x: ``(n, n_in)`` real array; y: ``(n,)`` integer labels in ``[0, n_out)`` or
        ``(n, n_out)`` targets. validation_data: ``(x_val, y_val)`` of the same forms, scored
        after every epoch. Read-only arrays (``np.load(..., mmap_mode="r")``) are fine; any
        input that is not already a writable C-contiguous array of the model's dtype is
        copied once. shuffle: draw a new order every epoch from the model's seeded
        generator (else the data order). The last mini-batch of an epoch may be shorter; a
        ``batch_size`` above n trains on all n samples at once. lmbda must leave the decay
        factor ``1 − lr·lmbda/n`` positive.
        device: run this fit on another backend than the model's (``"cpu"``, ``"cuda"``,
        ``"numpy"``). training_metrics: score the whole training set after every epoch
        (``history.loss``, ``history.accuracy``); False skips that pass, as the book's
        ``monitor_training_*=False`` does (for the book's first CNN it costs a quarter to a
        third of an epoch).

        Divergence: after every epoch the parameters (and the training and validation loss,
        when computed) must be finite. If not, or if an epoch raises (e.g. KeyboardInterrupt),
        the model is put back as it was after the last complete finite epoch — parameters and
        random generators — and the error is raised: ``FloatingPointError`` for divergence,
        naming the epoch; its ``history`` attribute holds the epochs that completed.
        Returns a ``History``.
        """
        epochs = _checks.positive_int(epochs, "epochs")
        batch_size = _checks.positive_int(batch_size, "batch_size")
        lr = _checks.finite_float(lr, "lr", positive=True)
        lmbda = _checks.finite_float(lmbda, "lmbda", nonnegative=True)
        if not isinstance(shuffle, bool):
            raise TypeError(f"shuffle must be True or False, got {shuffle!r}")
        if not isinstance(training_metrics, bool):
            raise TypeError(f"training_metrics must be True or False, got "
                            f"{training_metrics!r}")
        xs = self._samples(x, "x")
        n = len(xs)
        ys = _checks.targets(y, "y", n, self.n_out, self.dtype)
        decay = 1.0 - lr * lmbda / n
        if not decay > 0:
            raise ValueError(f"lmbda={lmbda} is too large for lr={lr} and n={n} samples: the "
                             f"weight-decay factor 1 − lr·lmbda/n = {decay:.6g} must be > 0 "
                             f"(lmbda < {n / lr:.6g})")
        val = None
        if validation_data is not None:
            if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
                raise TypeError("validation_data must be a pair (x_val, y_val)")
            xv = self._samples(validation_data[0], "validation_data[0]")
            val = (xv, _checks.targets(validation_data[1], "validation_data[1]", len(xv),
                                       self.n_out, self.dtype))
        # One mini-batch of all n samples is the same step as any larger batch_size; the
        # kernels' buffers are sized by it.
        batch_size = min(batch_size, n)
        runner = self._runner(device)

        history = History()
        train = runner.data(xs, ys, training=True)
        valid = runner.data(*val, training=True) if val else None  # read every epoch
        good = _Snapshot(self)                                      # the last finite state
        try:
            for epoch in range(1, epochs + 1):
                order = self._rng.permutation(n) if shuffle else np.arange(n)
                t0 = time.perf_counter()
                runner.train_epoch(train, order.astype(np.int64), batch_size, lr, decay)
                history.seconds.append(time.perf_counter() - t0)
                params = runner.host_params()
                bad = None if np.isfinite(params).all() else "the parameters are not finite"
                if training_metrics:
                    total, correct = runner.evaluate(train)
                    history.loss.append(total / n)
                    history.accuracy.append(correct / n)
                    if bad is None and not np.isfinite(history.loss[-1]):
                        bad = f"the training loss is {history.loss[-1]}"
                if valid is not None:
                    total, correct = runner.evaluate(valid)
                    history.val_loss.append(total / len(val[0]))
                    history.val_accuracy.append(correct / len(val[0]))
                    if bad is None and not np.isfinite(history.val_loss[-1]):
                        bad = f"the validation loss is {history.val_loss[-1]}"
                if bad is not None:
                    err = FloatingPointError(
                        f"training diverged in epoch {epoch} of {epochs}: {bad}. The model "
                        f"was restored to {good.describe()}; lower lr (now {lr:g})"
                        + (f" or lmbda (now {lmbda:g})" if lmbda else ""))
                    err.history = history
                    raise err
                good = _Snapshot(self, params)
                if verbose:
                    print(self._epoch_line(epoch - 1, epochs, history), flush=True)
        except BaseException:
            runner.close(changed=False)
            good.restore(self)
            raise
        runner.close()
        return history

    def _samples(self, x, name: str) -> np.ndarray:
        """``x`` as a checked ``(n, n_in)`` array of the model's dtype; ``(n, *input_shape)``
        is accepted too."""
        if len(self.input_shape) > 1:
            form = f"(n, {self.n_in}) or (n, {', '.join(map(str, self.input_shape))})"
            arr = _checks.as_array(x, name, form)
            if arr.ndim >= 1 and arr.shape[1:] == self.input_shape:
                x = arr.reshape(len(arr), -1)
        return _checks.features(x, name, self.n_in, self.dtype)

    def _runner(self, device):
        name = _resolve_device(device) if device is not None else self.device
        return _FusedRunner(self, name) if self._fused else _LayerwiseRunner(self, name)

    @staticmethod
    def _epoch_line(epoch, epochs, h: History) -> str:
        parts = []
        if h.loss:
            parts.append(f"loss {h.loss[-1]:.4f} - accuracy {h.accuracy[-1]:.4f}")
        if h.val_loss:
            parts.append(f"val_loss {h.val_loss[-1]:.4f} - val_accuracy "
                         f"{h.val_accuracy[-1]:.4f}")
        line = f"Epoch {epoch + 1}/{epochs}:" + (" " + " - ".join(parts) if parts else "")
        return f"{line} ({h.seconds[-1]:.3f} s)"

    # ------------------------------------------------------------------ inference
    def predict(self, x) -> np.ndarray:
        """Outputs ``(n, n_out)`` of the model's dtype for ``x: (n, n_in)`` (or
        ``(n, *input_shape)``). Dropout layers scale by their keep probability."""
        xs = self._samples(x, "x")
        runner = self._runner(None)
        try:
            return runner.predict(runner.data(xs, None)[0])
        finally:
            runner.close(changed=False)

    def evaluate(self, x, y) -> dict[str, float]:
        """``{"loss": mean cost, "accuracy": fraction correct}`` on ``(x, y)`` (forms as in
        ``fit``)."""
        xs = self._samples(x, "x")
        ys = _checks.targets(y, "y", len(xs), self.n_out, self.dtype)
        runner = self._runner(None)
        try:
            total, correct = runner.evaluate(runner.data(xs, ys))
        finally:
            runner.close(changed=False)
        return {"loss": total / len(xs), "accuracy": correct / len(xs)}

    # ------------------------------------------------------------------ persistence
    def architecture(self) -> dict:
        return {"format": "fastnet", "version": FORMAT_VERSION,
                "layers": [layer.config() for layer in self.layers],
                "input_shape": list(self.input_shape), "loss": self.loss,
                "dtype": self.dtype.name}

    def save(self, path) -> None:
        """Write the model to ``path`` (an ``.npz``: the flat parameters plus the architecture
        as JSON text; no pickle). The file is written atomically."""
        save_npz_atomic(path, params=self.params,
                        architecture=np.array(json.dumps(self.architecture())))


class _Snapshot:
    """A model's trainable state at one moment of ``fit``: its parameters (a host copy) and the
    states of its random generators (shuffling, dropout). ``restore`` puts them back."""

    def __init__(self, model: Model, params: np.ndarray | None = None):
        self.params = model.params.copy() if params is None else params
        self.initial = params is None
        self.rngs = (model._rng.bit_generator.state, model._dropout_rng.bit_generator.state)

    def describe(self) -> str:
        return ("its state before this fit" if self.initial else
                "its state after the last epoch with finite parameters")

    def restore(self, model: Model) -> None:
        model.params[...] = self.params
        model._rng.bit_generator.state, model._dropout_rng.bit_generator.state = self.rngs


_EVAL_CHUNK = 1000  # samples per forward pass when scoring or predicting layer by layer


class _FusedRunner:
    """Runs a dense stack through a backend's fused kernels: parameters and data are uploaded
    once, each epoch is one backend call, parameters come back on ``close``."""

    def __init__(self, model: Model, device: str):
        self.model, self.backend = model, get_backend(device)
        self.params = self.backend.upload(model.params)
        self.args = (model._layout, model._acts)

    def data(self, x, y, training=False):
        """x and y on the backend; ``training``: data read every epoch, in the form the
        backend reads best (``backend.inputs``)."""
        x = self.backend.inputs(x) if training else self.backend.upload(x)
        return (x, None if y is None else self.backend.upload(y))

    def train_epoch(self, data, order, batch_size, lr, decay):
        self.backend.train_epoch(self.params, *self.args, self.model._loss_code, *data,
                                 self.backend.upload(order), batch_size, lr, decay)

    def evaluate(self, data):
        return self.backend.evaluate(self.params, *self.args, self.model._loss_code, *data)

    def predict(self, x):
        return np.asarray(self.backend.predict(self.params, *self.args, x))

    def host_params(self):
        """A host copy of the parameters being trained."""
        return np.array(self.backend.download(self.params))

    def close(self, changed=True):
        if changed and self.params is not self.model.params:
            self.model.params[...] = self.backend.download(self.params)


class _LayerwiseRunner:
    """Trains layer by layer on the host: one Python step per mini-batch, one kernel call per
    stage (``fastnet.layers.fuse``), gradients into one flat buffer, one SGD update pass. On
    the CPU a ConvPool → Flatten → Dense… model (the book's first CNN) trains instead through
    ``kernels/cnn_cpu.py``: the whole epoch in one compiled call on OS threads."""

    def __init__(self, model: Model, device: str):
        self.model, self.ops = model, get_ops(device)
        self.params = self.ops.upload(model.params)
        self.views = [self._views(self.params, e) for e in model._slices]
        # On the CPU each dense layer takes its SGD step inside its backward kernel
        # (``ops.dense_backward_sgd``); the one update pass then covers the other layers'
        # parameters only: ``rest``, ranges of the flat buffer.
        self.fused_sgd = self.ops.name == "cpu"

    # What only training needs is built on first use: ``predict`` and ``evaluate`` make a
    # runner per call, and zeroing a gradient buffer the size of the parameters, with its
    # views, cost more than a small batch's forward pass.
    @cached_property
    def grads(self):
        return self.ops.upload(np.zeros_like(self.model.params))

    @cached_property
    def gviews(self):
        return [self._views(self.grads, e) for e in self.model._slices]

    @cached_property
    def decayed(self):
        return self.ops.upload(self.model._decayed)

    @cached_property
    def cnn(self):
        return self._cnn_plan(self.model) if self.ops.name == "cpu" else None

    @cached_property
    def rest(self):
        return self._rest_ranges(self.model) if self.fused_sgd else [(0, len(self.model.params))]

    @staticmethod
    def _cnn_plan(model):
        """(layout, acts, cg) for ``cnn_cpu.train_epoch`` when the model is one ConvPool, a
        Flatten and dense layers, else None."""
        from fastnet.layers import ConvPool, Flatten
        stages = model._stages
        if len(stages) < 3 or not isinstance(stages[0][0], ConvPool) or \
                not isinstance(stages[1][0], Flatten) or \
                not all(isinstance(st, Dense) for st, _ in stages[2:]):
            return None
        cp = stages[0][0]
        conv, slices = cp.conv, model._slices
        c_in, h, w = model.input_shape
        c_out, oh, ow = cp.pool.output_shape(conv.output_shape(model.input_shape))
        kh, kw = conv.kernel_size
        ph, pw = cp.pool.size
        rows = [(c_in * h * w, c_out * oh * ow, slices[0]["w"][0], slices[0]["b"][0])]
        rows += [(st.n_in, st.n_out, slices[i]["w"][0], slices[i]["b"][0])
                 for st, i in stages[2:]]
        acts = [cp.code] + [ACTIVATIONS[st.activation] for st, _ in stages[2:]]
        cg = [c_in, h, w, c_out, kh, kw, ph, pw, slices[0]["w"][0], slices[0]["b"][0]]
        return (np.array(rows, dtype=np.int64), np.array(acts, dtype=np.int64),
                np.array(cg, dtype=np.int64))

    @staticmethod
    def _rest_ranges(model):
        """[lo, hi) ranges of the flat buffer holding the parameters of the stages that are
        not Dense (adjacent ones merged)."""
        ranges = []
        for stage, i in model._stages:
            if isinstance(stage, Dense):
                continue
            for off, shape in model._slices[i].values():
                lo, hi = off, off + int(np.prod(shape))
                if ranges and ranges[-1][1] == lo:
                    ranges[-1] = (ranges[-1][0], hi)
                else:
                    ranges.append((lo, hi))
        return ranges

    @staticmethod
    def _views(flat, entry):
        return {k: flat[o:o + math.prod(s)].reshape(s) for k, (o, s) in entry.items()}

    def data(self, x, y, training=False):
        """x (in the model's input shape) and y on the backend; ``training`` changes nothing
        here: the layer-by-layer kernels read arrays."""
        x = self.ops.upload(x.reshape((len(x),) + self.model.input_shape))
        return (x, None if y is None else self.ops.upload(y))

    def _forward(self, x, train):
        """``(output, ctxs)``: the last stage's output and each stage's context for the
        backward pass (the output layer's ``ctxs[-1] = (x, z, a)`` gives the loss its ``z``).
        Everything lives in this call's frame, nothing in the layers."""
        a, ctxs = x, []
        for stage, i in self.model._stages:
            a, ctx = stage.forward(self.ops, self.views[i], a, train, self.model._dropout_rng)
            ctxs.append(ctx)
        return a, ctxs

    def train_epoch(self, data, order, batch_size, lr, decay):
        x, y = data
        if self.cnn is not None:
            import numba

            from fastnet.kernels import cnn_cpu
            layout, acts, cg = self.cnn
            nthreads = cnn_cpu.epoch_threads(layout, cg, batch_size, numba.get_num_threads())
            cnn_cpu.train_epoch(self.params, layout, acts, self.model._loss_code, cg, x, y,
                                order, batch_size, lr, decay, nthreads)
            return
        with self.ops.running():
            for k in range(0, len(order), batch_size):
                self._step(x, y, order[k:k + batch_size], lr, decay)

    def _step(self, x, y, idx, lr, decay):
        """One SGD step on the mini-batch ``x[idx]``: forward through every stage, the output
        delta, backward (the first stage computes no input gradient; on the CPU each dense
        layer updates itself there, after computing its input gradient), one update pass over
        the other parameters."""
        ops, model = self.ops, self.model
        out = model.layers[-1]
        scale = lr / len(idx)
        a, ctxs = self._forward(ops.take(x, idx), True)
        delta = ops.output_delta(ctxs[-1][1], a, ops.take(y, idx), model._loss_code,
                                 ACTIVATIONS[out.activation])
        last = len(model._stages) - 1
        for s in range(last, -1, -1):
            stage, i = model._stages[s]
            extra = {"is_dz": True} if s == last else {}
            if self.fused_sgd and isinstance(stage, Dense):
                extra["sgd"] = (scale, decay)
            delta = stage.backward(ops, self.views[i], self.gviews[i], ctxs[s], delta, s > 0,
                                   **extra)
        for lo, hi in self.rest:
            ops.sgd_apply(self.params[lo:hi], self.grads[lo:hi], self.decayed[lo:hi], decay,
                          scale)

    def evaluate(self, data):
        x, y = data
        total, correct = 0.0, 0
        with self.ops.running():
            for k in range(0, len(x), _EVAL_CHUNK):
                a, ctxs = self._forward(x[k:k + _EVAL_CHUNK], False)
                t, c = self.ops.loss_and_correct(ctxs[-1][1], a, y[k:k + _EVAL_CHUNK],
                                                 self.model._loss_code)
                total += t
                correct += c
        return total, correct

    def predict(self, x):
        return np.concatenate([self.ops.download(self._forward(x[k:k + _EVAL_CHUNK], False)[0])
                               for k in range(0, len(x), _EVAL_CHUNK)])

    def host_params(self):
        """A host copy of the parameters being trained."""
        return np.array(self.ops.download(self.params))

    def close(self, changed=True):
        if changed and self.params is not self.model.params:
            self.model.params[...] = self.ops.download(self.params)


_ARCHITECTURE_LIMIT = 1 << 20   # characters of JSON; a model of thousands of layers needs far less
_MODEL_FILE = "a fastnet model file (Model.save)"


def load(path, *, device: str | None = "cpu") -> Model:
    """Read a model written by ``Model.save``.

    No pickle is ever loaded, and the file is checked before anything is built from it: the
    architecture must be well formed and the stored parameters must have exactly the size and
    dtype it declares (so a small file cannot make ``load`` allocate more than it holds). Any
    problem with the file's contents raises one ``ValueError`` naming the file and what is
    wrong; a missing file raises ``FileNotFoundError``.
    """
    device = _resolve_device(device)
    with NpzReader(path, _MODEL_FILE) as f:
        try:
            arch = json.loads(f.text("architecture", _ARCHITECTURE_LIMIT))
        except (ValueError, RecursionError) as exc:    # JSONDecodeError is a ValueError
            raise f.error(f"its architecture is not valid JSON ({exc})") from None
        model = _declared_model(arch, f, device)
        params = f.array("params", shape=(model._parameter_count(),), dtype=model.dtype)
    model._allocate(params)
    return model


def _declared_model(arch, f: NpzReader, device) -> Model:
    """The model ``arch`` (an architecture read from ``f``) describes, checked and with no
    parameter buffer yet."""
    if not isinstance(arch, dict) or arch.get("format") != "fastnet":
        raise f.error("no fastnet architecture in it")
    version = arch.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise f.error(f"its format version is {version!r}, not a positive int")
    if version > FORMAT_VERSION:
        raise ValueError(f"{f.path} was written by a newer fastnet (format {version}); this "
                         f"one reads up to {FORMAT_VERSION}")
    missing = [k for k in ("layers", "loss", "dtype") if k not in arch]
    if missing:
        raise f.error(f"its architecture has no {', '.join(missing)}")
    configs = arch["layers"]
    if not isinstance(configs, list) or not configs:
        raise f.error(f"its layers are {type(configs).__name__} {configs!r:.80}, not a "
                      f"non-empty list")
    layers = []
    for i, cfg in enumerate(configs):
        try:
            layers.append(from_config(cfg))
        except (TypeError, ValueError) as exc:
            raise f.error(f"layers[{i}]: {exc}") from None
    input_shape = arch.get("input_shape")
    if input_shape is not None and not isinstance(input_shape, list):
        raise f.error(f"its input_shape is {input_shape!r:.80}, not a list")
    if not isinstance(arch["dtype"], str):
        raise f.error(f"its dtype is {arch['dtype']!r:.80}, not 'float32' or 'float64'")
    model = Model.__new__(Model)
    try:
        model._configure(layers, "sigmoid", arch["loss"], arch["dtype"], device, input_shape,
                         None)
    except (TypeError, ValueError) as exc:
        raise f.error(str(exc)) from None
    return model
