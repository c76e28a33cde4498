"""An epoch's progress and Ctrl-C (``fastnet/fitting.py``, ``EpochControl``): the kernels count
mini-batches and stop between two when asked; ``fit`` shows a bar on a terminal and, on
Ctrl-C, stops the epoch at once, keeps the last completed epoch and leaves no thread running."""

import _thread
import io
import threading
import time

import numpy as np
import pytest

import fastnet
from fastnet import fitting
from fastnet.devices.trainer import EpochControl
from helpers import assert_close


def _data(n, n_in, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, n_in)).astype(np.float32), rng.integers(0, 10, n)


@pytest.mark.parametrize("device", ["numpy", "cpu"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_the_kernels_count_mini_batches_and_stop(device, optimizer):
    """A whole epoch counts every mini-batch; a stopped one trains none past the flag."""
    x, y = _data(95, 20)
    m = fastnet.Model([20, 7, 10], device=device, seed=1)
    runner = m._runner()
    data = runner.data(x, np.eye(10, dtype=np.float32)[y])
    order = np.arange(95, dtype=np.int64)
    kw = {}
    if optimizer != "sgd":
        from fastnet.optimizers import OptimizerState, as_optimizer
        kw = {"opt": OptimizerState(as_optimizer(optimizer), m.params.size, m.dtype), "l2": 0.0}
    control = EpochControl()
    runner.train_epoch(data, order, 10, 0.1, 1.0, control=control, **kw)
    assert control.done == 10
    before = m.params.copy()
    stopped = EpochControl()
    stopped.stop()
    runner.train_epoch(data, order, 10, 0.1, 1.0, control=stopped, **kw)
    assert stopped.done <= 1
    if stopped.done == 0:
        assert_close(m.params, before, rtol=0, atol=0)


def test_cnn_epoch_counts_mini_batches():
    rng = np.random.default_rng(0)
    m = fastnet.Model([fastnet.Conv2D(1, 2, 3), fastnet.MaxPool2D(2), fastnet.Flatten(),
                       fastnet.Dense(18, 3)], input_shape=(1, 8, 8), seed=2)
    runner = m._runner()
    x = rng.random((23, 64)).astype(np.float32)
    data = runner.data(x, np.eye(3, dtype=np.float32)[rng.integers(0, 3, 23)])
    control = EpochControl()
    runner.train_epoch(data, np.arange(23, dtype=np.int64), 5, 0.1, 1.0, control=control)
    assert control.done == 5


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_bar_on_a_terminal_only(monkeypatch):
    """On a terminal (after PROGRESS_DELAY) a tqdm bar of the epoch's mini-batches; not
    elsewhere, and not with verbose=False."""
    x, y = _data(3000, 30)
    monkeypatch.setattr(fitting, "PROGRESS_DELAY", 0.0)
    for stream, verbose, shown in ((_Terminal(), True, True), (io.StringIO(), True, False),
                                   (_Terminal(), False, False)):
        monkeypatch.setattr("sys.stderr", stream)
        m = fastnet.Model([30, 10], device="numpy", seed=1)
        m.fit(x, y, epochs=1, batch_size=1, lr=0.1, verbose=verbose)
        text = stream.getvalue()
        assert ("Epoch 1/1" in text and "batch" in text) == shown, text[-300:]


def test_a_bar_over_the_epochs_with_the_latest_figures(monkeypatch, capsys):
    """On a terminal, a bar over the fit's epochs ("fit", unit epoch) with the latest
    validation figures beside each epoch's bar; the epoch lines still go to stdout."""
    x, y = _data(600, 30)
    monkeypatch.setattr(fitting, "PROGRESS_DELAY", 0.0)
    stream = _Terminal()
    monkeypatch.setattr("sys.stderr", stream)
    m = fastnet.Model([30, 10], device="numpy", seed=1)
    m.fit(x, y, epochs=3, batch_size=1, lr=0.1, validation_data=(x[:50], y[:50]),
          training_metrics=False)
    text = stream.getvalue()
    assert "fit:" in text and "3/3" in text and "epoch" in text, text[-500:]
    assert "val_accuracy 0." in text
    out = capsys.readouterr().out
    assert out.count("Epoch ") == 3 and "Epoch 3/3: val_loss" in out


def _interrupt_after(seconds):
    fired = []

    def interrupt():
        fired.append(time.perf_counter())
        _thread.interrupt_main()
    timer = threading.Timer(seconds, interrupt)
    timer.start()
    return timer, fired


def _no_epoch_thread_left():
    return not any(t.name.startswith("fastnet-") and t.is_alive()
                   for t in threading.enumerate())


def test_ctrl_c_stops_a_long_epoch_within_a_second():
    """One epoch of several seconds (the reference, mini-batch 1), Ctrl-C half a second in:
    fit raises KeyboardInterrupt within a second, the model is as before the fit, and no
    epoch thread is left running."""
    x, y = _data(60000, 300)
    m = fastnet.Model([300, 100, 10], device="numpy", seed=3)
    before = m.params.copy()
    timer, fired = _interrupt_after(0.5)
    try:
        with pytest.raises(KeyboardInterrupt):
            m.fit(x, y, epochs=1, batch_size=1, lr=0.01, verbose=False,
                  training_metrics=False)
    finally:
        timer.cancel()
    stopped = time.perf_counter()
    assert fired and stopped - fired[0] < 1.0, f"{stopped - fired[0]:.2f} s to stop"
    assert _no_epoch_thread_left()
    assert_close(m.params, before, rtol=0, atol=0)


@pytest.mark.parametrize("device", ["numpy", "cpu"])
def test_ctrl_c_keeps_the_last_completed_epoch(device):
    """Ctrl-C during a run of short epochs (0.2 s after the first one ends, whatever the
    machine's pace): the model holds the last completed epoch's parameters and no thread is
    left running."""
    x, y = _data(2000, 300)
    m = fastnet.Model([300, 100, 10], device=device, seed=3)
    after, timers = [], []

    def record(end):
        after.append(end.params.copy())
        if not timers:
            timers.append(_interrupt_after(0.2)[0])
    try:
        with pytest.raises(KeyboardInterrupt):
            m.fit(x, y, epochs=100000, batch_size=1, lr=0.01, verbose=False,
                  training_metrics=False, callbacks=[record])
    finally:
        for timer in timers:
            timer.cancel()
    assert _no_epoch_thread_left()
    assert after, "no epoch completed before the interrupt"
    assert_close(m.params, after[-1], rtol=0, atol=0)
