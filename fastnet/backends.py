"""The one seam between the API and the kernels.

A backend is an object with a small, fixed set of methods over the flat parameter buffer of a
dense stack (docs/design.md):

- ``upload(a)`` / ``download(a)``: move an array to where the backend computes, and back
  (identity on the CPU backends);
- ``inputs(x)``: a data set's inputs in the form its ``train_epoch``, ``evaluate`` and
  ``predict`` read best, made once per data set (``upload(x)``, or on the ``"cpu"`` backend a
  ``SparseInputs`` when most of x is zeros);
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

    def inputs(self, x):
        return self.upload(x)

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


class SparseInputs:
    """A data set's inputs kept twice: ``dense`` (the array) and ``csr``
    (``sparse_cpu.sparse_inputs``: the nonzeros by row) for the sparse epoch. About
    1.2× the dense array's memory at MNIST's density (19% nonzero, float32)."""

    def __init__(self, dense, csr):
        self.dense, self.csr = dense, csr

    def __len__(self):
        return len(self.dense)


def _sparse_for(x, layout):
    """x's CSR form when the sparse kernels can read it for this network, else None: x must be
    a ``SparseInputs`` exactly as wide as layer 0 (the dense kernels read only the first n_in
    columns of a wider x; the CSR form would index weight rows that do not exist)."""
    if isinstance(x, SparseInputs) and x.dense.shape[1] == int(layout[0, 0]):
        return x.csr
    return None


def _dense(x):
    return x.dense if isinstance(x, SparseInputs) else x


class CpuBackend(NumpyBackend):
    """Numba ``@njit`` kernels (``fastnet.kernels.dense_cpu``, and ``sparse_cpu`` for inputs
    that are mostly zeros), compiled on first use and cached on disk."""

    name = "cpu"

    def __init__(self):
        from fastnet.kernels import dense_cpu, sparse_cpu
        self._k, self._sparse = dense_cpu, sparse_cpu

    def inputs(self, x):
        """x, or a ``SparseInputs`` when x is a 2-D batch with at most
        ``sparse_cpu.SPARSE_MAX_DENSITY`` of its entries nonzero (measured crossover: there
        the sparse epoch overtakes the dense one)."""
        if isinstance(x, np.ndarray) and x.ndim == 2 and x.size:
            threads = numba.get_num_threads()
            indptr = self._sparse.row_pointers(x, threads)
            if indptr[-1] <= self._sparse.SPARSE_MAX_DENSITY * x.size:
                return SparseInputs(x, self._sparse.sparse_inputs(x, indptr, threads))
        return x

    def epoch_threads(self, layout, batch_size) -> int:
        """``dense_cpu.epoch_threads``: 2 on the 2-core machine for the book's networks; 1 for
        small layers or with ``NUMBA_NUM_THREADS=1``. (The sparse epoch uses at most 2.)"""
        return self._k.epoch_threads(layout, batch_size)

    def train_epoch(self, params, layout, acts, loss, x, y, order, batch_size, lr, decay,
                    threads=None):
        """``threads``: None for ``epoch_threads``' choice, or a count (1: this thread only).
        x: an array, or ``inputs(x)``'s ``SparseInputs`` for the sparse epoch."""
        if threads is None:
            threads = self._k.epoch_threads(layout, batch_size)
        csr = _sparse_for(x, layout)
        if csr is not None:
            self._sparse.train_epoch_threaded(params, layout, acts, loss, csr, y, order,
                                              batch_size, lr, decay, threads)
        else:
            self._k.train_epoch_threaded(params, layout, acts, loss, _dense(x), y, order,
                                         batch_size, lr, decay, threads)

    def evaluate(self, params, layout, acts, loss, x, y):
        csr = _sparse_for(x, layout)
        if csr is not None:
            total, correct = self._sparse.evaluate(params, layout, acts, loss, csr, y,
                                                   _EVAL_CHUNK, numba.get_num_threads())
        else:
            total, correct = self._k.evaluate(params, layout, acts, loss, _dense(x), y,
                                              _EVAL_CHUNK, numba.get_num_threads())
        return float(total), int(correct)

    def predict(self, params, layout, acts, x):
        csr = _sparse_for(x, layout)
        x = _dense(x)
        out = np.empty((x.shape[0], int(layout[-1, 1])), dtype=x.dtype)
        if csr is not None:
            self._sparse.predict(params, layout, acts, csr, out, _EVAL_CHUNK,
                                 numba.get_num_threads())
            return out
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
