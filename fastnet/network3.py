"""A Theano-free drop-in for the book's chapter-6 ``network3.py``: ``Network``,
``ConvPoolLayer``, ``FullyConnectedLayer``, ``SoftmaxLayer``, ``load_data_shared``, with the
book's layers, initialisation (``np.random``, the book's order), cost, SGD and printed lines.
Inside, the network is a ``fastnet.Model`` trained by the compiled kernels.

Shapes: data sets are ``(x: float32[n, 784], y: int64[n])`` pairs (no Theano shared variables);
``ConvPoolLayer(image_shape=(mini_batch, c, h, w), filter_shape=(c_out, c, kh, kw),
poolsize=(ph, pw))``, its ``w`` in the book's (true-convolution) orientation;
``FullyConnectedLayer.w: (n_in, n_out)``. ``SGD(..., checkpoint=path)`` saves the run after
every epoch and resumes it from there; results are attributes of the network
(``best_validation_accuracy``, ``best_iteration``, ``test_accuracy``).

Twin: ``tests/network3_reference.py`` (the book's algorithm in NumPy). Tests:
``tests/test_network3.py``. Differences from the book (dropout draws, orientation): docs/guide.md.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os

import numpy as np

from fastnet import _checks
from fastnet.layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D
from fastnet.callbacks import Callback
from fastnet.model import Model
from fastnet.network import sigmoid as _sigmoid
from fastnet.savefile import NpzReader, save_npz_atomic

__all__ = ["Network", "ConvPoolLayer", "FullyConnectedLayer", "SoftmaxLayer",
           "load_data_shared", "linear", "ReLU", "sigmoid", "tanh", "size"]


# ---------------------------------------------------------------------------- activations
def linear(z):
    return z


def ReLU(z):  # noqa: N802 (the book's name)
    return np.maximum(0.0, z)


def sigmoid(z):
    return _sigmoid(np.asarray(z, dtype=float))


def tanh(z):
    return np.tanh(z)


_ACTIVATION_NAMES = {linear: "linear", ReLU: "relu", sigmoid: "sigmoid", tanh: "tanh"}


def _activation_name(fn, layer: str) -> str:
    for known, name in _ACTIVATION_NAMES.items():  # by identity: fn may be unhashable
        if fn is known:
            return name
    raise ValueError(f"{layer}: activation_fn must be one of network3.linear, ReLU, sigmoid, "
                     f"tanh, got {fn!r}")


def size(data) -> int:
    """Number of samples in a data set ``(x, y)``."""
    return len(data[0])


def load_data_shared(filename=None):
    """``[(x, y), (x, y), (x, y)]`` for training (50,000), validation (10,000) and test
    (10,000): x float32 ``(n, 784)`` in [0, 1], y int64. ``filename``: a ``mnist.pkl.gz`` in the
    book's format or a directory of IDX files (default: ``fastnet.datasets`` search order)."""
    from fastnet.datasets import load_mnist, load_mnist_pickle
    if filename is not None and os.path.isfile(filename):
        return list(load_mnist_pickle(filename))
    return list(load_mnist(filename))


# ---------------------------------------------------------------------------- layers
class ConvPoolLayer:
    """Convolution (``filter_shape = (n_filters, n_in_maps, fh, fw)``) over images of
    ``image_shape = (mini_batch, n_in_maps, h, w)``, then max-pooling over ``poolsize``, plus
    bias, then ``activation_fn``. Weights ~ N(0, 1/n_out), n_out = n_filters·fh·fw/prod(pool);
    biases ~ N(0, 1)."""

    def __init__(self, filter_shape, image_shape, poolsize=(2, 2), activation_fn=sigmoid):
        self.filter_shape = _shape(filter_shape, "ConvPoolLayer filter_shape",
                                   ("filters", "input maps", "height", "width"))
        self.image_shape = _shape(image_shape, "ConvPoolLayer image_shape",
                                  ("mini-batch size", "input maps", "height", "width"))
        self.poolsize = _shape(poolsize, "ConvPoolLayer poolsize", ("height", "width"))
        self.activation_fn = activation_fn
        self._act = _activation_name(activation_fn, "ConvPoolLayer")
        nf, c, fh, fw = self.filter_shape
        _, ci, h, w = self.image_shape
        if c != ci:
            raise ValueError(f"ConvPoolLayer: filter_shape {self.filter_shape} takes {c} input "
                             f"maps but image_shape {self.image_shape} has {ci}")
        if h < fh or w < fw or (h - fh + 1) < self.poolsize[0] or \
                (w - fw + 1) < self.poolsize[1]:
            raise ValueError(f"ConvPoolLayer: filters {fh}×{fw} and pool {self.poolsize} do "
                             f"not fit images {h}×{w}")
        n_out = nf * np.prod(self.filter_shape[2:]) / np.prod(self.poolsize)
        self.w = np.random.normal(loc=0, scale=np.sqrt(1.0 / n_out), size=self.filter_shape)
        self.b = np.random.normal(loc=0, scale=1.0, size=(nf,))

    @property
    def out_shape(self):
        nf, _, fh, fw = self.filter_shape
        _, _, h, w = self.image_shape
        return (nf, (h - fh + 1) // self.poolsize[0], (w - fw + 1) // self.poolsize[1])

    def _fastnet_layers(self):
        nf, c, fh, fw = self.filter_shape
        return [Conv2D(c, nf, (fh, fw), activation=self._act), MaxPool2D(self.poolsize)]

    def _get(self, views):
        self.w = views[0]["w"][..., ::-1, ::-1].astype(np.float64)  # cross-corr → convolution
        self.b = views[0]["b"].astype(np.float64)

    def _put(self, views):
        views[0]["w"][...] = np.asarray(self.w)[..., ::-1, ::-1]
        views[0]["b"][...] = self.b


class FullyConnectedLayer:
    """Dense layer ``activation_fn(x @ w + b)``, ``w: (n_in, n_out)`` ~ N(0, 1/n_out),
    ``b ~ N(0, 1)``; with ``p_dropout`` its inputs are dropped in training and scaled by
    ``1 − p_dropout`` at inference."""

    def __init__(self, n_in, n_out, activation_fn=sigmoid, p_dropout=0.0):
        self.n_in = _checks.positive_int(n_in, "FullyConnectedLayer n_in")
        self.n_out = _checks.positive_int(n_out, "FullyConnectedLayer n_out")
        self.activation_fn = activation_fn
        self._act = _activation_name(activation_fn, "FullyConnectedLayer")
        self.p_dropout = _dropout(p_dropout, "FullyConnectedLayer")
        self.w = np.random.normal(loc=0.0, scale=np.sqrt(1.0 / n_out), size=(n_in, n_out))
        self.b = np.random.normal(loc=0.0, scale=1.0, size=(n_out,))

    out_shape = property(lambda self: (self.n_out,))

    def _fastnet_layers(self):
        drop = [Dropout(self.p_dropout)] if self.p_dropout > 0 else []
        return drop + [Dense(self.n_in, self.n_out, self._act)]

    def _get(self, views):
        self.w = views[-1]["w"].T.astype(np.float64)
        self.b = views[-1]["b"].astype(np.float64)

    def _put(self, views):
        views[-1]["w"][...] = np.asarray(self.w).T
        views[-1]["b"][...] = self.b


class SoftmaxLayer(FullyConnectedLayer):
    """Softmax output layer, zero-initialised; cost: mean log-likelihood."""

    def __init__(self, n_in, n_out, p_dropout=0.0):
        self.n_in = _checks.positive_int(n_in, "SoftmaxLayer n_in")
        self.n_out = _checks.positive_int(n_out, "SoftmaxLayer n_out")
        self.activation_fn = None
        self._act = "softmax"
        self.p_dropout = _dropout(p_dropout, "SoftmaxLayer")
        self.w = np.zeros((n_in, n_out))
        self.b = np.zeros((n_out,))


def _shape(value, name: str, fields: tuple[str, ...]) -> tuple[int, ...]:
    """``value`` as a tuple of ``len(fields)`` ints >= 1. Each entry must be an int (Python or
    NumPy; not bool, not a float such as 28.5 or 28.0, which ``int()`` would truncate)."""
    form = f"a tuple of {len(fields)} ints >= 1 ({', '.join(fields)})"
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{name} must be {form}, got {value!r}")
    t = tuple(value)
    if len(t) != len(fields):
        raise ValueError(f"{name} must be {form}, got {len(t)} entries: {value!r}")
    for field, v in zip(fields, t):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{name} must be {form}; its {field} is {type(v).__name__} {v!r}")
        if v < 1:
            raise ValueError(f"{name} must be {form}; its {field} is {v}")
    return tuple(int(v) for v in t)


def _dropout(p, layer):
    p = _checks.finite_float(p, f"{layer} p_dropout", nonnegative=True)
    if p >= 1:
        raise ValueError(f"{layer}: p_dropout must be in [0, 1), got {p}")
    return p


# ---------------------------------------------------------------------------- checkpoints
_STATE_LIMIT = 1 << 20     # characters of a checkpoint's JSON state (a few hundred in practice)

class _Checkpoint:
    """One run's checkpoint file: an ``.npz`` of the flat parameters and a JSON ``state``
    (format, version, the run's fingerprint, epochs done, best figures, dropout generator)."""

    FORMAT, VERSION = "fastnet-network3-checkpoint", 1

    def __init__(self, path, fingerprint: dict):
        try:
            self.path = os.fspath(path)
        except TypeError:
            raise TypeError(f"checkpoint must be a file path, got {path!r}") from None
        if not isinstance(self.path, str):
            raise TypeError(f"checkpoint must be a str or os.PathLike path, got {path!r}")
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
            raise ValueError(f"checkpoint {self.path}: its directory {directory} does not "
                             f"exist or is not writable")
        self.fingerprint = json.loads(json.dumps(fingerprint))   # as it reads back

    def load(self, params_like: np.ndarray, epochs: int):
        """The saved state (params, epochs_done, best, dropout_rng), or None when there is no
        file yet; ValueError when the file is not a checkpoint of this run (its parameters must
        match ``params_like`` in shape and dtype) or has more epochs done than ``epochs``.
        Everything is checked before the caller applies any of it."""
        if not os.path.exists(self.path):
            return None
        bad = f"checkpoint {self.path} is not a network3 checkpoint"
        with NpzReader(self.path, "a network3 checkpoint") as f:
            try:
                state = json.loads(f.text("state", _STATE_LIMIT))
            except (ValueError, RecursionError) as exc:    # JSONDecodeError is a ValueError
                raise f.error(f"its state is not valid JSON ({exc})") from None
            # the parameters' header is checked against the network before any data is read
            params = f.array("params", shape=params_like.shape, dtype=params_like.dtype)
        if not isinstance(state, dict) or state.get("format") != self.FORMAT:
            raise ValueError(bad)
        version = state.get("version")
        if not isinstance(version, int) or version > self.VERSION:
            raise ValueError(f"checkpoint {self.path} has version {version!r}; this fastnet "
                             f"reads up to {self.VERSION}")
        saved = state.get("fingerprint")
        if not isinstance(saved, dict):
            raise ValueError(f"{bad}: no run fingerprint")
        if saved != self.fingerprint:
            differ = sorted(k for k in set(saved) | set(self.fingerprint)
                            if saved.get(k) != self.fingerprint.get(k))
            raise ValueError(f"checkpoint {self.path} is from another run (differs in: "
                             f"{', '.join(differ)}); remove it or pass another path")
        done, best, rng = state.get("epochs_done"), state.get("best"), state.get("dropout_rng")
        if not (isinstance(done, int) and not isinstance(done, bool) and done >= 0):
            raise ValueError(f"{bad}: epochs_done is {done!r}")
        if done > epochs:
            raise ValueError(f"checkpoint {self.path} has {done} epochs done, more than the "
                             f"{epochs} asked for; ask for at least {done} or pass another path")
        if not (isinstance(best, list) and len(best) == 3 and
                all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in best)):
            raise ValueError(f"{bad}: best is {best!r}")
        if not (isinstance(rng, dict) and rng.get("bit_generator") == "PCG64"):
            raise ValueError(f"{bad}: dropout_rng is not a PCG64 state")
        try:
            np.random.PCG64().state = rng
        except (TypeError, ValueError, KeyError) as exc:
            raise ValueError(f"{bad}: dropout_rng: {exc}") from exc
        state["params"] = params
        return state

    def save(self, params, epochs_done, best, rng_state):
        state = {"format": self.FORMAT, "version": self.VERSION,
                 "fingerprint": self.fingerprint, "epochs_done": epochs_done,
                 "best": list(best), "dropout_rng": rng_state}
        save_npz_atomic(self.path, params=params, state=np.array(json.dumps(state)))


def _digest(*arrays) -> str:
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(np.ascontiguousarray(a).data)
    return h.hexdigest()


# ---------------------------------------------------------------------------- network
class _Progress(Callback):
    """The book's lines while ``SGD`` trains through ``Model.fit``: "Training mini-batch
    number i" before every 1000th mini-batch of the run (``batch_marks``), then per epoch the
    validation accuracy, the test accuracy at a new best, and the checkpoint."""

    def __init__(self, start, batches, best, test, ckpt):
        self.start, self.batches, self.best, self.test, self.ckpt = start, batches, best, test, \
            ckpt

    def _first(self, epoch):
        """The run's index of this fit epoch's first mini-batch."""
        return self.batches * (self.start + epoch - 1)

    def batch_marks(self, epoch, batches):
        return range((-self._first(epoch)) % 1000, batches, 1000)

    def on_batch(self, epoch, batch):
        print(f"Training mini-batch number {self._first(epoch) + batch}")

    def on_epoch_end(self, end):
        epoch = self.start + end.epoch - 1
        best_validation_accuracy, best_iteration, test_accuracy = self.best
        validation_accuracy = end.history.val_accuracy[-1]
        print(f"Epoch {epoch}: validation accuracy {validation_accuracy:.2%}")
        if validation_accuracy >= best_validation_accuracy:
            print("This is the best validation accuracy to date.")
            best_validation_accuracy = validation_accuracy
            best_iteration = self.batches * (epoch + 1) - 1
            if self.test is not None:
                test_accuracy = end.evaluate(*self.test)["accuracy"]
                print(f"The corresponding test accuracy is {test_accuracy:.2%}")
        self.best = (best_validation_accuracy, best_iteration, test_accuracy)
        if self.ckpt is not None:
            self.ckpt.save(end.params, epoch + 1, self.best, end.random_state["dropout"])


class Network:
    """``Network(layers, mini_batch_size)``: the layers must chain (image shapes, mini-batch
    size, n_in of each fully connected layer) and end in a ``SoftmaxLayer``. ``dtype``
    (default float32, as the book on a GPU) and ``device`` are fastnet's additions. The dropout
    generator is seeded with 0, so runs are repeatable."""

    def __init__(self, layers, mini_batch_size, *, device: str | None = None,
                 dtype: str = "float32"):
        if isinstance(layers, (str, bytes)) or not hasattr(layers, "__iter__"):
            raise TypeError(f"layers must be a list of ConvPoolLayer, FullyConnectedLayer and "
                            f"SoftmaxLayer objects, got {type(layers).__name__}")
        self.layers = list(layers)
        self.mini_batch_size = _checks.positive_int(mini_batch_size, "mini_batch_size")
        if not self.layers or not isinstance(self.layers[-1], SoftmaxLayer):
            raise ValueError("the last layer must be a SoftmaxLayer")
        shape = None
        fl_layers = []
        for i, layer in enumerate(self.layers):
            name = f"layer {i} ({type(layer).__name__})"
            if isinstance(layer, ConvPoolLayer):
                mb, c, h, w = layer.image_shape
                if mb != self.mini_batch_size:
                    raise ValueError(f"{name}: image_shape {layer.image_shape} is for "
                                     f"mini-batches of {mb}, the network's is "
                                     f"{self.mini_batch_size}")
                if shape is not None and shape != (c, h, w):
                    raise ValueError(f"{name}: image_shape {layer.image_shape} does not chain: "
                                     f"the layer before it outputs {shape}")
                if shape is None:
                    self.input_shape = (c, h, w)
            elif isinstance(layer, FullyConnectedLayer):
                n_prev = None if shape is None else int(np.prod(shape))
                if n_prev is not None and n_prev != layer.n_in:
                    raise ValueError(f"{name}: n_in={layer.n_in} does not chain: the layer "
                                     f"before it outputs {shape} = {n_prev} values")
                if shape is None:
                    self.input_shape = (layer.n_in,)
                if shape is not None and len(shape) > 1:
                    fl_layers.append(Flatten())
            else:
                raise TypeError(f"{name}: expected ConvPoolLayer, FullyConnectedLayer or "
                                f"SoftmaxLayer, got {type(layer).__name__}")
            fl_layers += layer._fastnet_layers()
            layer._span = (len(fl_layers) - len(layer._fastnet_layers()), len(fl_layers))
            shape = layer.out_shape
        self.model = Model(fl_layers, loss="log_likelihood", dtype=dtype, device=device,
                           input_shape=self.input_shape, seed=0)

    def _fingerprint(self, mbs, eta, lmbda, train, valid, test) -> dict:
        """What makes a checkpoint this run's: architecture, hyper-parameters, data digests."""
        return {"architecture": self.model.architecture(), "mini_batch_size": mbs,
                "eta": eta, "lmbda": lmbda, "training_data": _digest(*train),
                "validation_data": _digest(*valid),
                "test_data": _digest(*test) if test else None}

    def _views(self, layer):
        return [self.model.params_of(i) for i in range(*layer._span)]

    def _push(self):
        for layer in self.layers:
            layer._put(self._views(layer))

    def _pull(self):
        for layer in self.layers:
            layer._get(self._views(layer))

    def _data(self, data, name):
        n_in = int(np.prod(self.input_shape))
        x_form = f"(n, {n_in})" + (f" or (n, {', '.join(map(str, self.input_shape))})"
                                   if len(self.input_shape) > 1 else "")
        if not (isinstance(data, (tuple, list)) and len(data) == 2):
            raise TypeError(f"{name} must be a pair (x, y) with x of shape {x_form} and y "
                            f"(n,) integer labels, got {type(data).__name__}")
        x = _checks.as_array(data[0], f"{name}[0]", x_form) if len(self.input_shape) > 1 \
            else data[0]
        if getattr(x, "shape", ())[1:] == self.input_shape:
            x = x.reshape(len(x), -1)
        x = _checks.features(x, f"{name}[0]", n_in, self.model.dtype)
        y = np.asarray(data[1])
        if y.shape != (len(x),) or y.dtype.kind not in "iu":
            raise ValueError(f"{name}[1] must be integer labels of shape ({len(x)},), got "
                             f"{y.dtype} {y.shape}")
        n = (len(x) // self.mini_batch_size) * self.mini_batch_size
        if n == 0:
            raise ValueError(f"{name} has {len(x)} samples: fewer than one mini-batch of "
                             f"{self.mini_batch_size}")
        return x[:n], _checks.targets(y[:n], f"{name}[1]", n, self.model.n_out,
                                      self.model.dtype)

    def SGD(self, training_data, epochs, mini_batch_size, eta,  # noqa: N802 (the book's name)
            validation_data, test_data, lmbda=0.0, *, checkpoint=None):
        """Train with plain mini-batch SGD over whole mini-batches in data order and print the
        book's progress lines. Returns None, as the book's ``SGD`` does; the results are kept in
        ``best_validation_accuracy``, ``best_iteration`` (the book's count: the index of the
        last mini-batch of the best epoch, ``num_training_batches·(epoch + 1) − 1``) and
        ``test_accuracy`` (at that epoch; 0.0 without ``test_data``, where the book's final
        line fails).

        checkpoint (fastnet's addition): a file path. After every epoch the run's state (the
        parameters, the epochs done, the best validation accuracy with its iteration and test
        accuracy, the dropout generator) is written there atomically; a call that finds the
        file resumes after its last epoch, printing one extra line first, and ends exactly as
        the uninterrupted run would (same parameters, same lines) on the same device. The file
        must come from the same run: same layers, mini-batch size, eta, lmbda and data
        (checked by digest), else ValueError; ``epochs`` may grow, not shrink. A finished
        run's file just reprints its result. No pickle is written or read. The path's
        directory must exist (checked before training).
        """
        epochs = _checks.positive_int(epochs, "epochs")
        mbs = _checks.positive_int(mini_batch_size, "mini_batch_size")
        if mbs != self.mini_batch_size:
            raise ValueError(f"mini_batch_size {mbs} differs from the network's "
                             f"{self.mini_batch_size}")
        eta = _checks.finite_float(eta, "eta", positive=True)
        lmbda = _checks.finite_float(lmbda, "lmbda", nonnegative=True)
        train = self._data(training_data, "training_data")
        valid = self._data(validation_data, "validation_data")
        test = self._data(test_data, "test_data") if test_data else None

        num_training_batches = len(train[0]) // mbs
        # the book scales L2 by mini-batches: w ← (1 − η·λ/num_training_batches)·w, which is
        # fit's 1 − lr·lmbda/n with lmbda·mini_batch_size
        if not 1.0 - eta * lmbda / num_training_batches > 0:
            raise ValueError(f"lmbda={lmbda} is too large for eta={eta}: the weight-decay "
                             f"factor 1 − eta·lmbda/num_training_batches must be > 0 (lmbda < "
                             f"{num_training_batches / eta:.6g})")
        ckpt = None
        if checkpoint is not None:
            ckpt = _Checkpoint(checkpoint, self._fingerprint(mbs, eta, lmbda, train, valid, test))
        resumed = ckpt.load(self.model.params, epochs) if ckpt is not None else None
        self._push()
        start, best = 0, (0.0, 0, 0.0)
        if resumed is not None:
            start, best = resumed["epochs_done"], tuple(resumed["best"])
            self.model.params[...] = resumed["params"]
            self.model.random_state = {"shuffle": self.model.random_state["shuffle"],
                                       "dropout": resumed["dropout_rng"]}
            print(f"Resuming from {os.fspath(checkpoint)}: {start} epochs done")
        progress = _Progress(start, num_training_batches, best, test, ckpt)
        try:
            if start < epochs:
                self.model.fit(*train, epochs=epochs - start, batch_size=mbs, lr=eta,
                               lmbda=lmbda * mbs, shuffle=False, validation_data=valid,
                               training_metrics=False, callbacks=[progress], overlap=False,
                               verbose=False)
        finally:
            self._pull()
        best_validation_accuracy, best_iteration, test_accuracy = progress.best
        print("Finished training network.")
        print(f"Best validation accuracy of {best_validation_accuracy:.2%} obtained at "
              f"iteration {best_iteration}")
        print(f"Corresponding test accuracy of {test_accuracy:.2%}")
        self.best_validation_accuracy = best_validation_accuracy
        self.best_iteration = best_iteration
        self.test_accuracy = test_accuracy
