"""The epoch loop of ``Model.fit`` (the only one: the drop-ins train through it).

``run`` trains a model's trainer (``fastnet.devices``) for a number of epochs: each epoch's
sample order, the epoch (in pieces where a callback marks mini-batches), the finiteness check,
the metrics, the printed line and the callbacks. With overlap, epoch k+1 trains in a worker
thread while the metrics and callbacks of epoch k run on a snapshot of its parameters; without,
the epoch trains in a worker thread while the calling (main) thread shows its progress (on a
terminal, tqdm bars over the fit's epochs with the latest figures and over the epoch's
mini-batches, from the kernels' counter) and takes Ctrl-C, which stops the epoch within a
mini-batch. On divergence, an exception (Ctrl-C included) or ``EpochEnd.stop``
during an overlapped epoch, the model is put back to the last good epoch (parameters, random
generators, optimizer state). Tests: ``tests/test_fit_hooks.py``,
``tests/test_model_safety.py``, ``tests/test_progress.py``.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait

import numpy as np

from fastnet import _checks
from fastnet.callbacks import Callback, EpochEnd
from fastnet.devices.trainer import EpochControl

#: seconds an epoch runs before its progress bar appears (short epochs show none)
PROGRESS_DELAY = 1.0


class Snapshot:
    """A model's trainable state at one moment: a host copy of its parameters, the states of
    its random generators and a copy of ``opt`` (the optimizer's state, None for SGD).
    ``restore`` puts them back."""

    def __init__(self, model, params=None, random_state=None, initial=False, opt=None):
        self.params = model.params.copy() if params is None else params
        self.random_state = model.random_state if random_state is None else random_state
        self.opt = None if opt is None else opt.copy()
        self.initial = initial

    def describe(self) -> str:
        return ("its state before this fit" if self.initial else
                "its state after the last epoch with finite parameters")

    def restore(self, model) -> None:
        model.params[...] = self.params
        model.random_state = self.random_state
        if self.opt is not None:
            model.optimizer_state.restore(self.opt)


class _Inline:
    """``ThreadPoolExecutor``'s ``submit``, run at once in the calling thread."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, *args) -> Future:
        future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as exc:      # re-raised by future.result(), as from a thread
            future.set_exception(exc)
        return future


def check_monitors(users, validation: bool, training_metrics: bool) -> None:
    """A schedule or callback that monitors a history list fit will not fill is an error
    before training, not after the first epoch."""
    for obj in users:
        monitor = getattr(obj, "monitor", None)
        if not isinstance(monitor, str):
            continue
        if monitor.startswith("val_") and not validation:
            raise ValueError(f"{type(obj).__name__} monitors {monitor}: pass validation_data")
        if not monitor.startswith("val_") and not training_metrics:
            raise ValueError(f"{type(obj).__name__} monitors {monitor}, which "
                             f"training_metrics=False does not record")


def _marks(callbacks, epoch: int, batches: int) -> list[set[int]]:
    """Each callback's marked mini-batches of this epoch (those in range)."""
    return [{int(b) for b in cb.batch_marks(epoch, batches) if 0 <= int(b) < batches}
            for cb in callbacks]


def run(model, runner, train, valid, prepared, *, n, n_valid, epochs, batch_size, schedule,
        lmbda, order_for, callbacks, training_metrics, overlap, verbose, history, first=1,
        augment_for=None, opt=None, progress=False, l1=0.0):
    """Train epochs ``first`` to ``epochs`` (``first`` > 1: a resumed run, ``history`` holding
    the epochs before); returns ``history`` (filled in). ``schedule``: a
    ``fastnet.schedules.Schedule``, the rate of each epoch (None: stop before it);
    ``order_for(epoch)``: the int64 sample order of an epoch; ``overlap``: True/False/None as
    ``Model.fit`` takes it; ``prepared``: the data sets ``EpochEnd`` may be asked about, by id
    (see ``EpochEnd``); ``augment_for(epoch)``: the epoch's training data (augmented), made
    after its order, instead of ``train``; ``opt``: the model's ``OptimizerState`` to train by
    instead of SGD (None: SGD); ``progress``: show each epoch's bar on a terminal."""
    marked = any(type(cb).batch_marks is not Callback.batch_marks for cb in callbacks)
    scored = (n if training_metrics else 0) + n_valid
    overlapping = not marked and not schedule.uses_history and \
        runner.plan_overlap(batch_size, n, scored, overlap)

    def start(epoch):
        """Submit ``epoch`` with its rate; None when the schedule stops before it."""
        lr = schedule.rate(epoch, history)
        if lr is None:
            return None
        lr = _checks.finite_float(lr, f"the schedule's rate of epoch {epoch}", positive=True)
        decay = 1.0 - lr * lmbda / n
        if opt is None and not decay > 0:
            raise ValueError(f"lmbda={lmbda} is too large for epoch {epoch}'s lr={lr} and "
                             f"n={n}: the weight-decay factor 1 − lr·lmbda/n = {decay:.6g} "
                             f"must be > 0")
        history.lr.append(lr)
        order = order_for(epoch)
        data = augment_for(epoch) if augment_for is not None else train
        control = current["control"] = EpochControl()
        current["label"] = f"Epoch {epoch}/{epochs}"
        current["batches"] = -(-len(order) // batch_size)
        return pool.submit(watched, epoch, order, lr, decay, data, control)

    def epoch_of(epoch, order, lr, decay, data, control):
        t0 = time.perf_counter()
        batches = -(-len(order) // batch_size)
        marks = _marks(callbacks, epoch, batches) if marked else []
        cuts = sorted(set().union({0, batches}, *marks))
        for lo, hi in zip(cuts[:-1], cuts[1:]):
            for cb, its in zip(callbacks, marks):
                if lo in its:
                    cb.on_batch(epoch, lo)
            runner.train_epoch(data, order[lo * batch_size:hi * batch_size], batch_size, lr,
                               decay, continues=lo > 0, control=control, **opt_args)
        return time.perf_counter() - t0

    def watched(epoch, order, lr, decay, data, control):
        """``epoch_of``; from the main thread, in a worker thread while this one shows the
        progress and waits, so that Ctrl-C (KeyboardInterrupt) stops the epoch at once."""
        if threading.current_thread() is not threading.main_thread():
            return epoch_of(epoch, order, lr, decay, data, control)
        batches = -(-len(order) // batch_size)
        return run_watched(lambda: epoch_of(epoch, order, lr, decay, data, control), control,
                           f"Epoch {epoch}/{epochs}", batches, progress)

    current = {"control": None}

    opt_args = {} if opt is None else {"opt": opt, "l2": lmbda / n, "l1": l1 / n}
    good = Snapshot(model, initial=True, opt=opt)
    pending = None
    pool = ThreadPoolExecutor(1, thread_name_prefix="fastnet-epoch") if overlapping \
        else _Inline()
    over = _epochs_bar(first, epochs) if progress and _terminal() else None
    with pool, (over if over is not None else contextlib.nullcontext()):
        try:
            pending = start(first)
            for epoch in range(first, epochs + 1):
                if pending is None:                    # the schedule stopped the fit
                    break
                seconds = awaited(pending, current["control"], current["label"],
                                  current["batches"], progress)
                pending = None
                params = runner.host_params()
                state = model.random_state
                opt_now = None if opt is None else opt.copy()
                bad = None if np.isfinite(params).all() else "the parameters are not finite"
                scorer = runner
                if overlapping and bad is None and epoch < epochs:
                    scorer = runner.fork(params)
                    pending = start(epoch + 1)
                history.seconds.append(seconds)
                history.threads.append(runner.threads_used)
                for data, size, losses, accuracies, what in (
                        (train if training_metrics else None, n, history.loss,
                         history.accuracy, "training"),
                        (valid, n_valid, history.val_loss, history.val_accuracy,
                         "validation")):
                    if data is None:
                        continue
                    total, correct = scorer.evaluate(data)
                    losses.append(total / size)
                    accuracies.append(correct / size)
                    if bad is None and not np.isfinite(losses[-1]):
                        bad = f"the {what} loss is {losses[-1]}"
                if bad is not None:
                    err = FloatingPointError(
                        f"training diverged in epoch {epoch} of {epochs}: {bad}. The model "
                        f"was restored to {good.describe()}; lower lr (now "
                        f"{history.lr[epoch - 1]:g})"
                        + (f" or lmbda (now {lmbda:g})" if lmbda else ""))
                    err.history = history
                    raise err
                good = Snapshot(model, params, state, opt=opt_now)
                if over is not None:
                    over.set_postfix_str(metrics_text(history), refresh=False)
                    over.update(1)
                if verbose:
                    line = epoch_line(epoch, epochs, history)
                    if over is not None:
                        over.write(line, file=sys.stdout)    # above the bars, which stay
                        sys.stdout.flush()
                    else:
                        print(line, flush=True)
                end = EpochEnd(model, scorer, epoch, epochs, history, params, state, prepared,
                               opt_now)
                for cb in callbacks:
                    cb.on_epoch_end(end)
                if end.stopped:
                    if pending is not None:            # the next epoch ran: undo it
                        pending.result()
                        pending = None
                        del history.lr[epoch:]
                        runner.close(changed=False)
                        good.restore(model)
                        _fit_end(callbacks, model, history)
                        return history
                    break
                if not overlapping and epoch < epochs:
                    pending = start(epoch + 1)
        except BaseException:
            if pending is not None:
                current["control"].stop()              # an epoch beside: end it now
                wait([pending])
            runner.close(changed=False)
            good.restore(model)
            del history.lr[len(history.seconds):]
            raise
    runner.close()
    _fit_end(callbacks, model, history)
    return history


def _fit_end(callbacks, model, history) -> None:
    for cb in callbacks:
        cb.on_fit_end(model, history)


def epoch_line(epoch: int, epochs: int, h) -> str:
    """``Epoch 3/10: loss … - accuracy … - val_loss … - val_accuracy … (0.046 s)``."""
    parts = []
    if h.loss:
        parts.append(f"loss {h.loss[-1]:.4f} - accuracy {h.accuracy[-1]:.4f}")
    if h.val_loss:
        parts.append(f"val_loss {h.val_loss[-1]:.4f} - val_accuracy {h.val_accuracy[-1]:.4f}")
    line = f"Epoch {epoch}/{epochs}:" + (" " + " - ".join(parts) if parts else "")
    return f"{line} ({h.seconds[-1]:.3f} s)"


def run_watched(work, control: EpochControl, label: str, total: int, show: bool):
    """``work()`` in a worker thread (Numba's thread count carried over) while this thread
    waits, updating a progress bar from ``control.done`` when ``show`` and stderr is a
    terminal (after ``PROGRESS_DELAY`` s); on an exception here (Ctrl-C) the epoch is stopped
    and joined before it propagates, so no thread is left running."""
    numba = sys.modules.get("numba")
    numba_threads = numba.get_num_threads() if numba is not None else None
    out, finished = {}, threading.Event()

    def run():
        try:
            if numba_threads is not None:
                numba.set_num_threads(numba_threads)
            out["value"] = work()
        except BaseException as exc:                   # re-raised in the caller
            out["error"] = exc
        finally:
            finished.set()

    # Waited for on an Event, not Thread.join: a join interrupted by Ctrl-C can mark the
    # thread stopped while it still runs (CPython), and the parameters would then change
    # under the caller's restore.
    worker = threading.Thread(target=run, name="fastnet-watched-epoch", daemon=True)
    bar = _bar(label, total) if show and _terminal() else None   # drawn after the delay
    worker.start()
    try:
        while not finished.wait(0.1):
            if bar is not None:
                bar.update(min(control.done, total) - bar.n)
    except BaseException:
        control.stop()
        finished.wait()
        raise
    finally:
        if bar is not None:
            bar.close()
    if "error" in out:
        raise out["error"]
    return out["value"]


def awaited(future, control: EpochControl, label: str, total: int, show: bool):
    """``future.result()``, for an epoch training in a worker thread (overlap): waited for in
    short turns with its progress bar, as ``run_watched`` does."""
    if future.done():
        return future.result()
    bar = _bar(label, total) if show and _terminal() else None
    try:
        while not wait([future], timeout=0.1).done:
            if bar is not None:
                bar.update(min(control.done, total) - bar.n)
    finally:
        if bar is not None:
            bar.close()
    return future.result()


def _terminal() -> bool:
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def metrics_text(h) -> str:
    """The latest epoch's figures, short: ``loss 0.0312, val_accuracy 0.9521``."""
    names = [k for k in ("loss", "accuracy", "val_loss", "val_accuracy") if getattr(h, k)]
    return ", ".join(f"{k} {getattr(h, k)[-1]:.4f}" for k in names)


def _epochs_bar(first: int, epochs: int):
    """A tqdm bar over a fit's epochs with the latest figures, shown when the fit has run
    ``2·PROGRESS_DELAY`` seconds (each epoch's own bar appears below it)."""
    from tqdm import tqdm
    return tqdm(total=epochs, initial=first - 1, desc="fit", unit="epoch", leave=False,
                delay=2 * PROGRESS_DELAY, file=sys.stderr, dynamic_ncols=True)


def _bar(label: str, total: int):
    """A tqdm bar over an epoch's mini-batches, shown after ``PROGRESS_DELAY`` seconds and
    cleared when it closes (the epoch's line follows)."""
    from tqdm import tqdm
    return tqdm(total=total, desc=label, unit="batch", leave=False, delay=PROGRESS_DELAY,
                file=sys.stderr, dynamic_ncols=True)
