"""``fastnet.Model``: a network of layers trained by mini-batch SGD on a chosen device.

>>> model = Model([784, 30, 10], seed=1)            # doctest: +SKIP
>>> history = model.fit(x, y, epochs=3, batch_size=10, lr=3.0, validation_data=(xv, yv))

The model owns one flat parameter buffer (docs/design.md); each layer's ``w``/``b`` are views
into it (``model.params_of(i)``). ``fit`` checks every argument before anything changes, then
runs the epochs through a trainer of the chosen device (``fastnet.devices``), which decides how
the network trains there: a whole epoch per kernel call, or layer by layer.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

from fastnet import _checks, devices, fitting
from fastnet import augment as augment_
from fastnet import checkpoint as checkpoint_
from fastnet import metrics as metrics_
from fastnet import optimizers as optimizers_
from fastnet.callbacks import as_callbacks
from fastnet.data import Dataset, Source
from fastnet.devices import ACTIVATION_NAMES, LOSS_NAMES, NetSpec
from fastnet.layers import Dense, Layer, check_mini_batches, from_config
from fastnet.savefile import NpzReader, save_npz_atomic
from fastnet.schedules import as_schedule

DTYPES = {"float32": np.float32, "float64": np.float64}
FORMAT_VERSION = 1


@dataclass
class History:
    """Per-epoch metrics from ``Model.fit``. ``loss`` is the mean cost over the training data
    (without the L2 term), ``accuracy`` the fraction classified correctly (argmax of output vs
    argmax of target), both measured after the epoch (empty lists with
    ``training_metrics=False``); ``val_*`` the same on ``validation_data`` (empty lists when
    none was given); ``seconds`` the training time of each epoch (excluding the metrics);
    ``threads`` the CPU thread count that trained most of each epoch (None off the CPU's
    compiled epochs; chosen by timing unless ``fit(threads=...)``, see devices/threads.py);
    ``lr`` the learning rate of each epoch (``fit(lr=...)``'s schedule)."""

    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    threads: list = field(default_factory=list)
    lr: list[float] = field(default_factory=list)


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
    init: for a sizes list, how every layer's weights are drawn (``"default"``, ``"large"``,
        ``"glorot"``, ``"he"``: see ``fastnet.layers.init_weights``); with layers, each layer's
        own ``init``.
    input_shape: one sample's shape, e.g. ``(1, 28, 28)``; needed when the first layer is not
        ``Dense`` (then ``x`` may be given as ``(n, 1, 28, 28)`` or flat as ``(n, 784)``).
    """

    def __init__(self, sizes_or_layers, *, activation: str = "sigmoid",
                 loss: str = "quadratic", dtype="float32", device: str | None = "cpu",
                 seed: int | None = None, backend: str | None = None, input_shape=None,
                 init: str | None = None):
        self._configure(sizes_or_layers, activation, loss, dtype,
                        backend if backend is not None else device, input_shape, seed, init)
        self._allocate()
        for i, layer in enumerate(self.layers):
            layer.init_params(self.params_of(i), self._rng)

    # ------------------------------------------------------------------ construction
    def _configure(self, sizes_or_layers, activation, loss, dtype, device, input_shape, seed,
                   init=None):
        """Check the arguments and build the layers; allocates nothing."""
        self.loss = _checks.choice(loss, "loss", LOSS_NAMES)
        self.dtype = _resolve_dtype(dtype)
        self.device = devices.resolve(device)
        if seed is not None:
            _checks.positive_int(seed, "seed", minimum=0)
        self.layers = self._build_layers(sizes_or_layers, activation, input_shape, init)
        self._check_output()
        # one stream for initial weights and shuffling, an independent one for dropout masks
        # (so adding a dropout layer does not change the mini-batch order)
        self._rng = np.random.default_rng(seed)
        self._dropout_rng = np.random.default_rng(
            np.random.SeedSequence(seed).spawn(1)[0] if seed is not None else None)

    def _parameter_count(self, trained: bool = False) -> int:
        """The size of the flat parameter buffer (parameters and state; with ``trained``, the
        trained parameters alone, which come first), from the layers alone (nothing
        allocated)."""
        return sum(math.prod(shape) for layer in self.layers
                   for _, shape in layer.param_shapes() + ([] if trained else
                                                           layer.state_shapes()))

    def _build_layers(self, spec, activation, input_shape, init=None) -> list[Layer]:
        if isinstance(spec, (str, bytes)) or not hasattr(spec, "__len__") or len(spec) == 0:
            raise TypeError("sizes_or_layers must be a non-empty list of layer sizes like "
                            f"[784, 30, 10] or of layers, got {spec!r}")
        if all(isinstance(s, Layer) for s in spec):
            if init is not None:
                raise ValueError("init applies to a sizes list; with layers, give each layer "
                                 "its own (Dense(..., init='he'))")
            layers = list(spec)
        elif any(isinstance(s, Layer) for s in spec):
            raise TypeError("sizes_or_layers must be all sizes or all layers, not a mixture")
        else:
            _checks.choice(activation, "activation", ACTIVATION_NAMES)
            if activation == "softmax":
                raise ValueError("activation='softmax' is for the output layer only: use "
                                 "loss='log_likelihood', which makes the output a softmax")
            sizes = [_checks.positive_int(s, f"sizes_or_layers[{i}]")
                     for i, s in enumerate(spec)]
            if len(sizes) < 2:
                raise ValueError(f"a sizes list needs at least an input and an output size, "
                                 f"got {sizes}")
            out_act = "softmax" if self.loss == "log_likelihood" else activation
            layers = [Dense(a, b, activation if i < len(sizes) - 2 else out_act,
                            init="default" if init is None else init)
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
        """The network's description for the devices (``NetSpec``) and the flat parameter
        buffer: zeros, or ``params`` adopted as it is."""
        self._spec = NetSpec(self.layers, self.input_shape, self.loss, self.dtype)
        self.params = np.zeros(self._spec.size, dtype=self.dtype) if params is None else params
        #: the optimizer's state (``fastnet.optimizers.OptimizerState``) after a fit with an
        #: optimizer other than SGD, carried to the next such fit and saved with the model
        self.optimizer_state = None

    def params_of(self, i: int, params: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Views of layer ``i``'s parameters into the flat buffer (editing them edits the
        model), or into ``params``: another flat buffer of this network (e.g. a callback's
        ``EpochEnd.params``)."""
        if params is None:
            params = self.params
        elif getattr(params, "shape", None) != self.params.shape:
            raise ValueError(f"params must be a flat array of {self.params.size} values, got "
                             f"shape {getattr(params, 'shape', type(params).__name__)}")
        return self._spec.views(params, i)

    @property
    def n_in(self) -> int:
        """Number of input features (the product of ``input_shape``)."""
        return int(np.prod(self.input_shape))

    @property
    def n_out(self) -> int:
        return self.output_shape[0]

    # ------------------------------------------------------------------ training
    def fit(self, x, y=None, *, epochs: int, batch_size: int, lr=None, lmbda: float = 0.0,
            l1: float = 0.0, optimizer="sgd",
            validation_data=None, shuffle: bool = True, order=None, callbacks=None,
            overlap: bool | None = None, threads: int | None = None, verbose: bool = True,
            device: str | None = None, training_metrics: bool = True,
            checkpoint=None, augment=None, progress: bool | None = None) -> History:
        """Train by mini-batch SGD: ``w ← (1 − lr·lmbda/n)·w − (lr/m)·Σ∇w``, or by another
        optimizer.

        lr: a number, or a ``fastnet.schedules.Schedule`` giving each epoch's rate (which may
        also stop the fit, as the book's chapter-3 rule does; ``history.lr`` records them);
        None: the optimizer's default rate (SGD has none).
        optimizer: ``"sgd"`` (the book's, default), ``"momentum"``, ``"nesterov"``,
        ``"rmsprop"``, ``"adam"``, ``"adamw"``, or a ``fastnet.optimizers`` object with its
        hyper-parameters. lmbda is the book's L2 for each (``lmbda/n·w`` added to the weights'
        gradient). The optimizer's state (``model.optimizer_state``) carries over to the
        next fit with the same optimizer and is saved with the model; another optimizer
        starts afresh. Dense stacks on ``cuda`` train by SGD only. l1: the book's L1
        (chapter 3), ``l1/n·sgn(w)`` added to the weights' gradient, with any optimizer (SGD
        with L1 trains through the optimizers' compiled epochs, not the book's fused ones).
        x: ``(n, n_in)`` real array; y: ``(n,)`` integer labels in ``[0, n_out)`` or
        ``(n, n_out)`` targets; or x a ``fastnet.Dataset`` holding both (checked and
        prepared once, however many calls use it). validation_data: ``(x_val, y_val)`` of
        the same forms, or a ``Dataset``, scored after every epoch. Read-only arrays (``np.load(..., mmap_mode="r")``) are fine; any
        input that is not already a writable C-contiguous array of the model's dtype is
        copied once. The last mini-batch of an epoch may be shorter; a ``batch_size`` above n
        trains on all n samples at once. lmbda must leave the decay factor
        ``1 − lr·lmbda/n`` positive.

        Sample order: with ``shuffle`` (default) a new permutation every epoch from the
        model's seeded generator, else the data order; ``order``, a callable
        ``order(epoch) -> (n,) ints in [0, n)``, overrides both (epochs count from 1; the
        book's drop-ins pass ``random.shuffle``'s order through it).
        callbacks: ``fastnet.callbacks.Callback`` objects or callables ``cb(end)``, called
        after every epoch with a ``fastnet.callbacks.EpochEnd`` (the history so far,
        ``predict``/``evaluate`` on the epoch's parameters, ``stop()``).
        overlap: score epoch k (metrics and callbacks) while epoch k+1 trains in a worker
        thread, on a copy of epoch k's parameters; the epochs then run on one thread. It pays
        when the scoring costs about as much as an epoch (the book's network2 with all four
        monitors). None (default): only where the epoch runs on one thread anyway; False:
        never; True: wherever the device can (host devices, no mini-batch marks). Results are
        the same either way. threads: the CPU thread count of this fit's epochs and scoring (None: the
        device's choice; at most ``NUMBA_NUM_THREADS``) — e.g. 1 for several fits side by
        side. device: run this fit on another device than the model's (``"cpu"``,
        ``"cuda"``, ``"numpy"``). training_metrics: score the whole training set after every
        epoch (``history.loss``, ``history.accuracy``); False skips that pass, as the
        book's ``monitor_training_*=False`` does.

        augment: a ``fastnet.augment.Augment`` (or one ``Transform``): each epoch trains on
        a new transformed copy of the training images (shifts, rotations; drawn from the
        model's generator after the epoch's order); the metrics score the images as given.

        checkpoint: a file path (``.npz``). After every epoch the run — parameters, random
        generators, history, the callbacks' states — is saved there atomically; a fit that
        finds the file resumes after its last epoch (``epochs`` is the total: ``epochs=4``
        after 2 saved runs 2 more) and ends bit-identical to the uninterrupted run on the same
        device and thread count. The file must come from the same run (architecture, dtype,
        batch size, lr schedule, lmbda, sample order, data), else ValueError. See
        ``fastnet/checkpoint.py``.

        progress: bars on stderr when it is a terminal (tqdm; None: as ``verbose``): over
        the fit's epochs with the latest figures once the fit has run two seconds, and over
        each epoch's mini-batches once the epoch has run one. Ctrl-C stops a running
        epoch at once (within a mini-batch) and raises KeyboardInterrupt with the model as
        after the last completed epoch (below).

        Divergence: after every epoch the parameters (and the training and validation loss,
        when computed) must be finite. If not, or if an epoch or a callback raises (e.g.
        KeyboardInterrupt), the model is put back as it was after the last complete finite
        epoch — parameters and random generators — and the error is raised:
        ``FloatingPointError`` for divergence, naming the epoch; its ``history`` attribute
        holds the epochs that completed. Returns a ``History``.
        """
        epochs = _checks.positive_int(epochs, "epochs")
        batch_size = _checks.positive_int(batch_size, "batch_size")
        opt = optimizers_.as_optimizer(optimizer)
        if lr is None:
            if opt.lr is None:
                raise TypeError("fit() needs lr (a learning rate or a schedule) with "
                                "optimizer='sgd'")
            lr = opt.lr
        schedule = as_schedule(lr)
        lr = schedule.lr
        lmbda = _checks.finite_float(lmbda, "lmbda", nonnegative=True)
        l1 = _checks.finite_float(l1, "l1", nonnegative=True)
        for flag, name in ((shuffle, "shuffle"), (training_metrics, "training_metrics"),
                           (verbose, "verbose")):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False, got {flag!r}")
        if overlap is not None and not isinstance(overlap, bool):
            raise TypeError(f"overlap must be None, True or False, got {overlap!r}")
        if order is not None and not callable(order):
            raise TypeError(f"order must be a callable order(epoch) -> sample indices, got "
                            f"{type(order).__name__}")
        callbacks = as_callbacks(callbacks)
        src = Source(self, x, y, "x", "y", need_y=True)
        n = src.n
        decay = 1.0 - lr * lmbda / n
        if progress is not None and not isinstance(progress, bool):
            raise TypeError(f"progress must be None, True or False, got {progress!r}")
        if opt.name == "sgd" and not decay > 0:
            raise ValueError(f"lmbda={lmbda} is too large for lr={lr} and n={n} samples: the "
                             f"weight-decay factor 1 − lr·lmbda/n = {decay:.6g} must be > 0 "
                             f"(lmbda < {n / lr:.6g})")
        val = None
        if isinstance(validation_data, Dataset):
            val = Source(self, validation_data, None, "validation_data", "validation_data.y",
                         need_y=True)
        elif validation_data is not None:
            if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
                raise TypeError("validation_data must be a pair (x_val, y_val) or a "
                                "fastnet.Dataset")
            val = Source(self, *validation_data, "validation_data[0]", "validation_data[1]",
                         need_y=True)
        # One mini-batch of all n samples is the same step as any larger batch_size; the
        # kernels' buffers are sized by it.
        batch_size = min(batch_size, n)
        check_mini_batches(self.layers, self.input_shape, batch_size, n)
        devices.check_spec(devices.resolve(device) if device is not None else self.device,
                           self._spec)
        fitting.check_monitors([schedule, *callbacks], val is not None, training_metrics)
        augment = augment_.as_augment(augment)
        shape = augment_.image_shape(self.input_shape) if augment is not None else None
        state = None
        if opt.name != "sgd" or l1 > 0:
            where = devices.resolve(device) if device is not None else self.device
            if where == "cuda" and self._spec.dense:
                what = f"optimizer {opt.name!r}" if opt.name != "sgd" else f"l1={l1:g}"
                raise ValueError(f"{what}: a dense stack on 'cuda' trains by the book's SGD "
                                 f"only (its one-launch epoch); use optimizer='sgd' and l1=0 "
                                 f"there, or device 'cpu' or 'numpy'")
            state = optimizers_.OptimizerState.for_fit(self.optimizer_state, opt,
                                                       self.params[:self._spec.trainable])
        history, first, writer = History(), 1, None
        if checkpoint is not None:
            path = checkpoint_.checked_path(checkpoint)
            fingerprint = {
                "architecture": self.architecture(), "batch_size": batch_size,
                "schedule": repr(schedule), "lmbda": lmbda,
                "order": "custom" if order is not None else "shuffle" if shuffle else "data",
                "training_metrics": training_metrics, "augment": repr(augment),
                **({} if opt.name == "sgd" else {"optimizer": opt.config()}),
                **({"l1": l1} if l1 > 0 else {}),
                "data": checkpoint_.digest(src.xs, src.ys),
                "validation_data": checkpoint_.digest(val.xs, val.ys) if val else None}
            done, writer = checkpoint_.resume(self, path, fingerprint, epochs, callbacks,
                                              verbose, state)
            if done is not None:
                history, first = History(**done), len(done["seconds"]) + 1
                if first > epochs:
                    return history
        runner = self._runner(device, threads)
        train = src.prepared(self, runner)
        valid = val.prepared(self, runner) if val else None
        # what a callback's EpochEnd.predict/evaluate may ask again (arrays: by id)
        prepared = {}
        if src.ds is None:
            prepared[(id(x), id(None))] = (x, None, n, (train[0], None))
        if val and val.ds is None:
            prepared[tuple(map(id, validation_data))] = (*validation_data, val.n, valid)
        if state is not None:
            self.optimizer_state = state
        return fitting.run(self, runner, train, valid, prepared, opt=state,
                           n=n, n_valid=val.n if val else 0,
                           epochs=epochs, batch_size=batch_size, schedule=schedule,
                           lmbda=lmbda, l1=l1,
                           order_for=self._order_source(order, shuffle, n),
                           callbacks=callbacks + ([writer] if writer else []),
                           training_metrics=training_metrics, overlap=overlap,
                           verbose=verbose, history=history, first=first,
                           progress=verbose if progress is None else progress,
                           augment_for=None if augment is None else augment.epochs(
                               src.xs, src.ys, shape, self._rng, runner,
                               devices.get(self.device if device is None else device), threads))

    def _order_source(self, order, shuffle: bool, n: int):
        """``epoch -> int64[n]`` sample order: ``order``'s (checked), a permutation from the
        model's generator, or the data order."""
        if order is not None:
            def checked(epoch):
                got = np.asarray(order(epoch))
                if got.shape != (n,) or got.dtype.kind not in "iu":
                    raise ValueError(f"order({epoch}) must return {n} integer sample "
                                     f"indices, got {got.dtype} {got.shape}")
                if n and (got.min() < 0 or got.max() >= n):
                    raise ValueError(f"order({epoch}) returned indices outside [0, {n})")
                return got.astype(np.int64)
            return checked
        if shuffle:
            return lambda epoch: self._rng.permutation(n).astype(np.int64)
        return lambda epoch: np.arange(n, dtype=np.int64)

    @property
    def random_state(self) -> dict:
        """The states of the model's generators, ``{"shuffle": ..., "dropout": ...}`` (NumPy
        PCG64 state dicts): the mini-batch order and the dropout masks. Assign a dict of this
        form to put them back (e.g. when resuming)."""
        return {"shuffle": self._rng.bit_generator.state,
                "dropout": self._dropout_rng.bit_generator.state}

    @random_state.setter
    def random_state(self, state) -> None:
        if not isinstance(state, dict) or set(state) != {"shuffle", "dropout"}:
            raise TypeError("random_state must be a dict with keys 'shuffle' and 'dropout' "
                            "(Model.random_state's form)")
        before = self.random_state
        try:
            self._rng.bit_generator.state = state["shuffle"]
            self._dropout_rng.bit_generator.state = state["dropout"]
        except (TypeError, ValueError, KeyError) as exc:
            self._rng.bit_generator.state = before["shuffle"]
            self._dropout_rng.bit_generator.state = before["dropout"]
            raise ValueError(f"random_state is not a pair of PCG64 states: {exc}") from None

    def _samples(self, x, name: str, finite: bool = True) -> np.ndarray:
        """``x`` as a checked ``(n, n_in)`` array of the model's dtype; ``(n, *input_shape)``
        is accepted too. ``finite=False`` leaves the NaN/inf check to the caller."""
        if len(self.input_shape) > 1:
            form = f"(n, {self.n_in}) or (n, {', '.join(map(str, self.input_shape))})"
            arr = _checks.as_array(x, name, form)
            if arr.ndim >= 1 and arr.shape[1:] == self.input_shape:
                x = arr.reshape(len(arr), -1)
        return _checks.features(x, name, self.n_in, self.dtype, finite=finite)

    def _runner(self, device=None, threads=None):
        """A trainer of this model's network on ``device`` (None: the model's), over
        ``params``."""
        name = devices.resolve(device) if device is not None else self.device
        return devices.get(name).trainer(self._spec, self.params,
                                         dropout_rng=self._dropout_rng, threads=threads)

    # ------------------------------------------------------------------ inference
    def predict(self, x) -> np.ndarray:
        """Outputs ``(n, n_out)`` of the model's dtype for ``x: (n, n_in)`` (or
        ``(n, *input_shape)``, or a ``fastnet.Dataset``). Dropout layers scale by their keep
        probability."""
        src = Source(self, x, None, "x", "y", need_y=False)
        runner = self._runner(None)
        try:
            return runner.predict(src.prepared(self, runner))
        finally:
            runner.close(changed=False)

    def evaluate(self, x, y=None, *, metrics=None, k: int = 5) -> dict:
        """``{"loss": mean cost, "accuracy": fraction correct}`` on ``(x, y)`` (forms as in
        ``fit``; or x a ``fastnet.Dataset``) — the figures ``fit`` records for the same
        weights. ``metrics``: more of ``fastnet.metrics.NAMES`` to add — ``"top_k"`` (the true
        class among the ``k`` highest outputs), ``"confusion_matrix"`` (rows true, columns
        predicted), per-class ``"precision"``, ``"recall"``, ``"f1"``, and ``"roc_auc"`` for
        binary outputs (see ``fastnet/metrics.py``)."""
        names = [] if metrics is None else metrics_.check_names(metrics)
        k = _checks.positive_int(k, "k")
        src = Source(self, x, y, "x", "y", need_y=True)
        runner = self._runner(None)
        try:
            data = src.prepared(self, runner)
            total, correct = runner.evaluate(data)
            scores = runner.predict(data) if set(names) - {"accuracy"} else None
        finally:
            runner.close(changed=False)
        out = {"loss": total / src.n, "accuracy": correct / src.n}
        if scores is not None:
            labels = (src.ys[:, 0] > 0.5 if self.n_out == 1 else np.argmax(src.ys, axis=1))
            out.update(metrics_.compute([m for m in names if m != "accuracy"], labels,
                                        np.asarray(scores, np.float64), k))
        return out

    # ------------------------------------------------------------------ persistence
    def architecture(self) -> dict:
        return {"format": "fastnet", "version": FORMAT_VERSION,
                "layers": [layer.config() for layer in self.layers],
                "input_shape": list(self.input_shape), "loss": self.loss,
                "dtype": self.dtype.name}

    def save(self, path) -> None:
        """Write the model to ``path`` (an ``.npz``: the flat parameters plus the architecture
        as JSON text, and the optimizer's state when there is one; no pickle). The file is
        written atomically."""
        extra = {} if self.optimizer_state is None else self.optimizer_state.arrays()
        save_npz_atomic(path, params=self.params,
                        architecture=np.array(json.dumps(self.architecture())), **extra)

    # ------------------------------------------------------------------ inspection
    def __repr__(self) -> str:
        """The layers, each with its output shape and parameter count (``fastnet.summary``)."""
        from fastnet import summary
        return summary.describe(self)

    def summary(self) -> str:
        """A table of the layers: output shape, parameters and forward FLOPs per sample
        (``fastnet.summary.table``); ``print(model.summary())`` shows it."""
        from fastnet import summary
        return summary.table(self)


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
    device = devices.resolve(device)
    with NpzReader(path, _MODEL_FILE) as f:
        try:
            arch = json.loads(f.text("architecture", _ARCHITECTURE_LIMIT))
        except (ValueError, RecursionError) as exc:    # JSONDecodeError is a ValueError
            raise f.error(f"its architecture is not valid JSON ({exc})") from None
        model = _declared_model(arch, f, device)
        params = f.array("params", shape=(model._parameter_count(),), dtype=model.dtype)
        trained = params[:model._parameter_count(trained=True)]
        opt = optimizers_.OptimizerState.read(f, trained) if f.has("optimizer") else None
    model._allocate(params)
    model.optimizer_state = opt
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
