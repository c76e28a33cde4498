"""The one seam between the API and the kernels.

A backend is an object with a small, fixed set of methods over the flat parameter buffer of a
dense stack (docs/design.md):

- ``upload(a)`` / ``download(a)``: move an array to where the backend computes, and back
  (identity on the CPU backends);
- ``train_epoch(params, layout, acts, loss, x, y, order, batch_size, lr, decay)``: one epoch of
  SGD in place on ``params``;
- ``evaluate(params, layout, acts, loss, x, y) -> (summed cost, number correct)``;
- ``predict(params, layout, acts, x) -> host array (n, n_out)``.

``get_backend(name)`` returns one: ``"numpy"`` (the reference, ``fastnet.reference``), ``"cpu"``
(Numba ``@njit`` kernels) or ``"cuda"`` (Numba CUDA kernels; imported only when asked for).
Nothing here compiles or touches a GPU at import.
"""

from __future__ import annotations

import numba
import numpy as np

BACKENDS = ("numpy", "cpu", "cuda")
_EVAL_CHUNK = 1024  # rows per forward pass when evaluating or predicting


class NumpyBackend:
    """The pure-NumPy reference: slow, simple, the oracle."""

    name = "numpy"

    def __init__(self):
        from fastnet.reference import dense
        self._ref = dense

    def upload(self, a):
        return a

    def download(self, a):
        return a

    def epoch_threads(self, layout, batch_size) -> int:
        """How many cores ``train_epoch`` keeps busy."""
        return 1

    def train_epoch(self, params, layout, acts, loss, x, y, order, batch_size, lr, decay,
                    threads=None):
        self._ref.train_epoch(params, layout, acts, loss, x, y, order, batch_size, lr, decay)

    def evaluate(self, params, layout, acts, loss, x, y):
        total, correct = 0.0, 0
        for k in range(0, len(x), _EVAL_CHUNK):
            t, c = self._ref.loss_and_correct(params, layout, acts, loss,
                                              x[k:k + _EVAL_CHUNK], y[k:k + _EVAL_CHUNK])
            total += t
            correct += c
        return total, correct

    def predict(self, params, layout, acts, x):
        out = [self._ref.forward(params, layout, acts, x[k:k + _EVAL_CHUNK])[1][-1]
               for k in range(0, len(x), _EVAL_CHUNK)]
        return np.concatenate(out).astype(x.dtype, copy=False)


class CpuBackend(NumpyBackend):
    """Numba ``@njit`` kernels (``fastnet.kernels.dense_cpu``), compiled on first use and
    cached on disk."""

    name = "cpu"

    def __init__(self):
        from fastnet.kernels import dense_cpu
        self._k = dense_cpu

    def epoch_threads(self, layout, batch_size) -> int:
        """``dense_cpu.epoch_threads``: 2 on the 2-core machine for the book's networks; 1 for
        small layers or with ``NUMBA_NUM_THREADS=1``."""
        return self._k.epoch_threads(layout, batch_size)

    def train_epoch(self, params, layout, acts, loss, x, y, order, batch_size, lr, decay,
                    threads=None):
        """``threads``: None for ``epoch_threads``' choice, or a count (1: this thread only)."""
        if threads is None:
            threads = self._k.epoch_threads(layout, batch_size)
        self._k.train_epoch_threaded(params, layout, acts, loss, x, y, order, batch_size, lr,
                                     decay, threads)

    def evaluate(self, params, layout, acts, loss, x, y):
        total, correct = self._k.evaluate(params, layout, acts, loss, x, y, _EVAL_CHUNK,
                                          numba.get_num_threads())
        return float(total), int(correct)

    def predict(self, params, layout, acts, x):
        out = np.empty((x.shape[0], int(layout[-1, 1])), dtype=x.dtype)
        self._k.predict(params, layout, acts, x, out, _EVAL_CHUNK, numba.get_num_threads())
        return out


_instances: dict[str, object] = {}


def get_backend(name: str):
    """The backend called ``name`` (one of ``BACKENDS``), created on first use."""
    if name not in BACKENDS:
        raise ValueError(f"device/backend must be one of {list(BACKENDS)}, got {name!r}")
    if name not in _instances:
        if name == "numpy":
            _instances[name] = NumpyBackend()
        elif name == "cpu":
            _instances[name] = CpuBackend()
        else:
            from fastnet._cuda_backend import CudaBackend
            _instances[name] = CudaBackend()
    return _instances[name]
