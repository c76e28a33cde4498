"""``Trainer``: one network's parameters on one device, and what ``Model`` asks of them.

    trainer = fastnet.devices.get("cpu").trainer(spec, params, threads=None)
    data = trainer.data(x, y)                    # a data set prepared once (upload, CSR form)
    trainer.train_epoch(data, order, batch_size, lr, decay)   # in place on the parameters
    total, correct = trainer.evaluate(data)      # summed cost, number classified right
    outputs = trainer.predict(trainer.data(x))   # host array (n, n_out)
    trainer.close()                              # the trained parameters back into ``params``

On the host devices the trainer works on ``params`` itself; on a GPU on a device copy that
``close`` (or ``host_params``) brings back. Made by a device (``fastnet.devices``), which picks
the subclass: ``DenseTrainer`` (fused dense epochs), ``LayerwiseTrainer`` (one kernel per layer
per mini-batch) or the CPU's ``CnnTrainer``.
"""

from __future__ import annotations

import abc
import contextlib

import numpy as np

from fastnet.kernels.config import SYNC_ABORT, SYNC_PROGRESS, SYNC_SIZE


class EpochControl:
    """One epoch's progress and stop flag, shared with its kernels (a ``sync_cpu`` array):
    ``done`` mini-batches trained so far (read while the epoch runs in another thread);
    ``stop()`` ends the epoch after the mini-batch in progress (the parameters are then part
    way through it: the caller restores them)."""

    def __init__(self):
        self.array = np.zeros(SYNC_SIZE, dtype=np.int64)

    @property
    def done(self) -> int:
        return int(self.array[SYNC_PROGRESS])

    def stop(self) -> None:
        self.array[SYNC_ABORT] = 1

    @property
    def stopped(self) -> bool:
        return bool(self.array[SYNC_ABORT])


class NonFiniteInput(ValueError):
    """Raised by ``Trainer.data`` where ``checks_finite``: x holds NaN or inf."""


class Trainer(abc.ABC):
    """Base class: ``spec`` (a ``NetSpec``), the host parameter buffer ``params`` and the
    device's kernel set (``upload``/``download`` and the kernels the subclass calls)."""

    #: the host thread count the last epoch mostly trained on (None: not a CPU thread count)
    threads_used = None
    #: True where ``data`` reads all of x anyway and raises ``NonFiniteInput`` for NaN/inf in
    #: it (the caller then need not check x itself)
    checks_finite = False

    def __init__(self, spec, params: np.ndarray, kernels):
        self.spec, self.host, self.kernels = spec, params, kernels
        self.params = kernels.upload(params)

    @abc.abstractmethod
    def data(self, x, y=None):
        """``(x, y)`` where the kernels read them, in the form they read best (made once per
        data set, read by every epoch and score)."""

    #: True where ``train_epoch`` takes an ``opt`` (optimizers other than SGD)
    trains_optimizers = False

    @abc.abstractmethod
    def train_epoch(self, data, order: np.ndarray, batch_size: int, lr: float,
                    decay: float, *, continues: bool = False, opt=None,
                    l2: float = 0.0, l1: float = 0.0,
                    control: EpochControl | None = None) -> None:
        """One epoch of SGD over ``data`` in the sample order ``order`` (int64), in place.
        ``continues``: this call trains the next piece of the epoch the previous call began
        (after a mini-batch mark), on the same thread count. ``opt``: a
        ``fastnet.optimizers.OptimizerState`` (updated in place) to train by instead of the
        fused SGD, with ``l2·w + l1·sgn(w)`` (λ/n, λ₁/n) added to the weights' gradient
        (``decay`` is then unused); only where ``trains_optimizers``. ``control``: counts
        the mini-batches done and may stop the epoch between two (where the device can: not
        the CUDA dense epoch, one launch)."""

    @abc.abstractmethod
    def evaluate(self, data) -> tuple[float, int]:
        """(summed cost, number classified correctly) over ``data``."""

    @abc.abstractmethod
    def predict(self, data) -> np.ndarray:
        """The outputs (n, n_out) for ``data``'s inputs, on the host."""

    def targets(self, y: np.ndarray):
        """The targets ``y`` (n, n_out) where the kernels read them."""
        return self.kernels.upload(y)

    @property
    def data_key(self) -> tuple:
        """Equal for trainers whose ``data`` gives the same form (a prepared data set made by
        one serves the other)."""
        return (type(self).__name__, type(self.kernels).__name__, self.spec.dtype.str,
                self.spec.input_shape)

    def plan_overlap(self, batch_size: int, n: int, scored: int, asked) -> bool:
        """Whether epochs train in a worker thread while the caller scores a snapshot
        (``fork``): ``asked`` is ``Model.fit``'s ``overlap``; ``scored`` the samples scored per
        epoch of ``n``. May change the thread counts this trainer uses. Default: never."""
        return False

    def fork(self, params: np.ndarray) -> "Trainer":
        """A trainer over the host copy ``params`` for scoring beside training (only asked of
        trainers whose ``plan_overlap`` said yes)."""
        raise NotImplementedError(f"{type(self).__name__} does not score beside training")

    def host_params(self) -> np.ndarray:
        """A host copy of the parameters being trained."""
        return np.array(self.kernels.download(self.params))

    def close(self, changed: bool = True) -> None:
        """Write the trained parameters back into the host buffer (if they live elsewhere)."""
        if changed and self.params is not self.host:
            self.host[...] = self.kernels.download(self.params)


@contextlib.contextmanager
def numba_threads(n: int):
    """Numba's thread count for the calling thread set to ``n`` inside the block: a compiled
    parallel region then starts ``n`` threads, not the process's default (on two cores, a
    region of one sample loop beside an epoch in another thread would otherwise wake a
    third)."""
    import numba
    before = numba.get_num_threads()
    if before == n:
        yield
        return
    numba.set_num_threads(n)
    try:
        yield
    finally:
        numba.set_num_threads(before)
