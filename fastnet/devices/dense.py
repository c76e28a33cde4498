"""Dense stacks on the fused path: each epoch, evaluation or prediction is one kernel call over
the whole flat parameter buffer (docs/design.md) and a data set uploaded once.

A kernel set has these methods (``NumpyDense``: the reference, ``fastnet.reference.dense``;
``CpuDense``: Numba kernels, ``dense_cpu`` and ``sparse_cpu``; ``CudaDense`` in
``fastnet.devices.cuda``):

- ``upload(a)`` / ``download(a)``: an array to where the kernels compute, and back;
- ``inputs(x, threads)``: a data set's inputs in the form the kernels read best, made once per
  data set (``upload(x)``, or on the CPU a ``SparseInputs`` when most of x is zeros); with
  ``checks_finite`` it raises ``NonFiniteInput`` for NaN/inf in x;
- ``on_host``: True where the kernels compute on the host (an epoch may then train in a worker
  thread while the caller scores a snapshot);
- ``epoch_threads(layout, batch_size)``: how many threads an epoch uses when not told;
- ``train_epoch(params, layout, acts, loss, x, y, order, batch_size, lr, decay, threads,
  sync=None)``: one epoch of SGD in place on ``params`` (``sync``: an ``EpochControl``'s array,
  where the set can count and stop);
- ``train_epoch_opt(params, layout, acts, loss, x, y, order, batch_size, lr, l2, code, hyper,
  state, step, decayed, sync, threads=1)`` and ``opt_threads(x, layout, batch_size)`` (the
  most threads it can use on x) (optional): one epoch by another optimizer
  (``fastnet.optimizers``);
- ``evaluate(params, layout, acts, loss, x, y, threads) -> (summed cost, number correct)``;
- ``predict(params, layout, acts, x, threads) -> host array (n, n_out)``.

``DenseTrainer`` drives one of them for a ``fastnet.devices.Trainer``.
"""

from __future__ import annotations

import numpy as np

from fastnet.devices.threads import EpochThreads
from fastnet.devices.trainer import EpochControl, NonFiniteInput, Trainer, numba_threads

EVAL_CHUNK = 1024  # rows per forward pass when evaluating or predicting


class NumpyDense:
    """The pure-NumPy reference: slow, simple, the oracle. One thread."""

    def __init__(self):
        from fastnet.reference import dense
        self._ref = dense

    def upload(self, a):
        return a

    def download(self, a):
        return a

    on_host = True

    def inputs(self, x, threads):
        return x

    def epoch_threads(self, layout, batch_size) -> int:
        return 1

    def train_epoch(self, params, layout, acts, loss, x, y, order, batch_size, lr, decay,
                    threads, sync=None):
        """The reference's epoch, counting the mini-batches in and stopping at ``sync``
        (``EpochControl.array``)."""
        self._ref.train_epoch_threaded(params, layout, acts, loss, x, y, order, batch_size, lr,
                                       decay, 1, sync)

    def train_epoch_opt(self, *args, threads=1):
        from fastnet.reference import optim
        optim.train_epoch_opt(*args)

    def opt_threads(self, x, layout, batch_size) -> int:
        return 1

    def evaluate(self, params, layout, acts, loss, x, y, threads):
        return self._ref.evaluate(params, layout, acts, loss, x, y, EVAL_CHUNK, 1)

    def predict(self, params, layout, acts, x, threads):
        out = np.empty((len(x), int(layout[-1, 1])), x.dtype)
        self._ref.predict(params, layout, acts, x, out, EVAL_CHUNK, 1)
        return out


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


class CpuDense:
    """Numba ``@njit`` kernels (the dense epoch ``dense_epoch_cpu``, and ``sparse_cpu``'s
    inputs with ``sparse_epoch_cpu`` for inputs that are mostly zeros), compiled on first use
    and cached on disk."""

    def __init__(self):
        from fastnet.kernels import dense_epoch_cpu, sparse_cpu, sparse_epoch_cpu
        self._k, self._sparse = dense_epoch_cpu, sparse_cpu
        self._sparse_epoch = sparse_epoch_cpu

    def upload(self, a):
        return a

    def download(self, a):
        return a

    on_host = True
    checks_finite = True

    def inputs(self, x, threads):
        """x, or a ``SparseInputs`` when x is a 2-D batch with at most
        ``sparse_cpu.SPARSE_MAX_DENSITY`` of its entries nonzero (where the sparse epoch
        overtakes the dense one). The one read of x that decides also finds NaN/inf:
        ``NonFiniteInput``."""
        if isinstance(x, np.ndarray) and x.ndim == 2 and x.size:
            with numba_threads(threads):
                indptr, col_counts, bad = self._sparse.scan_rows(x, threads)
                if bad:
                    raise NonFiniteInput("x contains NaN or inf")
                if indptr[-1] <= self._sparse.SPARSE_MAX_DENSITY * x.size:
                    return SparseInputs(x, self._sparse.sparse_inputs(x, indptr, col_counts,
                                                                      threads))
        return x

    def epoch_threads(self, layout, batch_size) -> int:
        """``dense_epoch_cpu.epoch_threads``: 2 on a 2-core machine for the book's networks; 1
        for small layers or with ``NUMBA_NUM_THREADS=1``. (The sparse epoch uses at most 2.)"""
        return self._k.epoch_threads(layout, batch_size)

    def train_epoch(self, params, layout, acts, loss, x, y, order, batch_size, lr, decay,
                    threads, sync=None):
        """x: an array, or ``inputs(x)``'s ``SparseInputs`` for the sparse epoch."""
        csr = _sparse_for(x, layout)
        with numba_threads(threads):
            if csr is not None:
                self._sparse_epoch.train_epoch_threaded(params, layout, acts, loss, csr, y,
                                                        order, batch_size, lr, decay, threads,
                                                        sync)
            else:
                self._k.train_epoch_threaded(params, layout, acts, loss, _dense(x), y, order,
                                             batch_size, lr, decay, threads, sync)

    def opt_threads(self, x, layout, batch_size) -> int:
        """The most threads ``train_epoch_opt`` can use on x: 2 on the sparse-input epoch where
        the SGD epoch would use threads, else 1."""
        if _sparse_for(x, layout) is None:
            return 1
        return min(2, self.epoch_threads(layout, batch_size))

    def train_epoch_opt(self, params, layout, acts, loss, x, *args, threads=1):
        """x: an array (one thread), or a ``SparseInputs`` for the sparse-input epoch (on
        ``threads``, at most 2)."""
        from fastnet.kernels import optim_cpu
        csr = _sparse_for(x, layout)
        if csr is not None:
            optim_cpu.train_epoch_opt_sparse(params, layout, acts, loss, csr, *args,
                                             nthreads=threads)
        else:
            optim_cpu.train_epoch_opt(params, layout, acts, loss, _dense(x), *args)

    def evaluate(self, params, layout, acts, loss, x, y, threads):
        csr = _sparse_for(x, layout)
        with numba_threads(threads):
            if csr is not None:
                total, correct = self._sparse_epoch.evaluate(params, layout, acts, loss, csr,
                                                             y, EVAL_CHUNK, threads)
            else:
                total, correct = self._k.evaluate(params, layout, acts, loss, _dense(x), y,
                                                  EVAL_CHUNK, threads)
        return float(total), int(correct)

    def predict(self, params, layout, acts, x, threads):
        csr = _sparse_for(x, layout)
        x = _dense(x)
        out = np.empty((x.shape[0], int(layout[-1, 1])), dtype=x.dtype)
        with numba_threads(threads):
            if csr is not None:
                self._sparse_epoch.predict(params, layout, acts, csr, out, EVAL_CHUNK, threads)
            else:
                self._k.predict(params, layout, acts, x, out, EVAL_CHUNK, threads)
        return out


class DenseTrainer(Trainer):
    """A dense stack on a kernel set: parameters and data are uploaded once, each epoch is one
    kernel call, parameters come back on ``close``. ``threads``: the epochs' thread count
    (None: the kernel set's choice for each batch size); evaluation and prediction use
    ``inference_threads``."""

    checks_finite = property(lambda self: getattr(self.kernels, "checks_finite", False))

    def __init__(self, spec, params, kernels, *, threads, inference_threads):
        super().__init__(spec, params, kernels)
        self._threads, self.inference_threads = threads, inference_threads
        self._args = (spec.layout, spec.acts)
        self._choice = EpochThreads(("dense", type(kernels).__name__, spec.dtype.str,
                                     spec.layout.tobytes(), spec.acts.tobytes()))
        self._opt_choice = EpochThreads(("dense-opt",) + self._choice.key[1:])

    def data(self, x, y=None):
        """x in ``inputs``' form (the same for training, scoring and prediction, so that
        ``predict`` after ``fit`` repeats what ``fit`` scored, bit for bit), and y."""
        x = self.kernels.inputs(x, self.inference_threads)
        return x, None if y is None else self.targets(y)

    def plan_overlap(self, batch_size, n, scored, asked):
        """Overlap on the host when asked, or (``asked`` None) when there is scoring and the
        epoch would use one thread anyway (then scoring beside it is free). Overlapped epochs
        use one thread unless ``threads`` was given: two epoch threads and a third that
        scores stall the epoch's barriers on two cores."""
        if asked is False or not self.kernels.on_host:
            return False
        if asked is None and not (scored and self.epoch_threads(batch_size) == 1):
            return False
        if self._threads is None:
            self._threads = 1
        self.inference_threads = 1
        return True

    def fork(self, params):
        """A trainer over ``params`` (a host copy) that scores what this one prepared."""
        return DenseTrainer(self.spec, params, self.kernels, threads=1,
                            inference_threads=self.inference_threads)

    def epoch_threads(self, batch_size: int) -> int:
        if self._threads is not None:
            return self._threads
        return self.kernels.epoch_threads(self.spec.layout, batch_size)

    trains_optimizers = property(lambda self: hasattr(self.kernels, "train_epoch_opt"))

    def train_epoch(self, data, order, batch_size, lr, decay, *, continues=False, opt=None,
                    l2=0.0, l1=0.0, control=None):
        """One epoch; on the host without a fixed ``threads``, on the count ``Chooser``
        finds faster (``threads_used``). With ``opt``, by ``_train_opt``."""
        control = control or EpochControl()
        if opt is not None:
            self._train_opt(data, order, batch_size, lr, l2, l1, opt, control, continues)
            return
        def step(part, threads):
            self.kernels.train_epoch(self.params, *self._args, self.spec.loss_code, *data,
                                     self.kernels.upload(part), batch_size, lr, decay, threads,
                                     sync=control.array)

        most = self.epoch_threads(batch_size)
        if self._threads is not None or not self.kernels.on_host:
            step(order, most)
            self.threads_used = most
        else:
            self.threads_used = self._choice.run(step, order, batch_size, most,
                                                 continues=continues)

    def _train_opt(self, data, order, batch_size, lr, l2, l1, opt, control, continues):
        """An epoch by another optimizer: on the sparse-input epoch's threads (at most 2, the
        same result for 1 and 2) as ``Chooser`` finds faster, else on one."""
        o = opt.optimizer

        def step(part, threads):
            self.kernels.train_epoch_opt(self.params, *self._args, self.spec.loss_code, *data,
                                         self.kernels.upload(part), batch_size, lr, l2,
                                         o.code, o.hyper(l1), opt.state, opt.step,
                                         self.spec.decayed, control.array, threads=threads)

        most = self.kernels.opt_threads(data[0], self.spec.layout, batch_size)
        if self._threads is not None:
            most = min(most, self._threads)
        if self._threads is not None or most == 1:
            step(order, most)
            self.threads_used = most
        else:
            self.threads_used = self._opt_choice.run(step, order, batch_size, most,
                                                     continues=continues)

    def evaluate(self, data):
        return self.kernels.evaluate(self.params, *self._args, self.spec.loss_code, *data,
                                     self.inference_threads)

    def predict(self, data):
        return np.asarray(self.kernels.predict(self.params, *self._args, data[0],
                                               self.inference_threads))
