"""Model.fit's hooks, which the drop-ins train through: the ``order`` hook, callbacks
(``EpochEnd``: predict/evaluate on the epoch's parameters, ``stop``), mini-batch marks, scoring
beside training (``overlap``), ``threads``, ``random_state`` and ``params_of(i, params)``."""

import threading

import numpy as np
import pytest

from fastnet import Conv2D, Dense, Flatten, MaxPool2D, Model
from fastnet.callbacks import Callback, EpochEnd
from fastnet.devices.dense import DenseTrainer
from helpers import fit_orders

CNN = [Conv2D(1, 2, 3, activation="relu"), MaxPool2D(2), Flatten(), Dense(8, 3, "softmax")]


def data(n=60, n_in=36, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, n_in))
    x[x < 0.6] = 0.0                     # mostly zeros: the CPU takes its sparse epoch
    return x, rng.integers(0, 3, n)


def build(kind="dense", device="cpu", seed=3):
    if kind == "dense":
        return Model([36, 7, 3], loss="cross_entropy", dtype="float64", device=device,
                     seed=seed)
    return Model(CNN, loss="log_likelihood", dtype="float64", device=device, seed=seed,
                 input_shape=(1, 6, 6))


FIT = dict(batch_size=7, lr=0.5, lmbda=0.1, verbose=False)


# ---------------------------------------------------------------------------- order
@pytest.mark.parametrize("kind", ["dense", "cnn"])
def test_order_hook_gives_the_epochs_that_order(kind):
    """An ``order`` returning the permutations shuffle would draw trains the same model bit for
    bit; the hook is asked once per epoch, in order, counting from 1."""
    x, y = data()
    a, b = build(kind), build(kind)
    orders, asked = fit_orders(b, len(x), 3), []
    a.fit(x, y, epochs=3, **FIT)
    b.fit(x, y, epochs=3, order=lambda e: asked.append(e) or orders[e - 1], **FIT)
    assert asked == [1, 2, 3]
    assert np.array_equal(a.params, b.params)


@pytest.mark.parametrize("bad,error,match", [
    (lambda e: np.arange(59), ValueError, r"order\(1\) must return 60 integer"),
    (lambda e: np.arange(60.0), ValueError, r"order\(1\) must return 60 integer .*float64"),
    (lambda e: np.arange(60) + 1, ValueError, r"order\(1\) returned indices outside \[0, 60\)"),
    ([0, 1, 2], TypeError, r"order must be a callable"),
])
def test_bad_order_is_refused_and_changes_nothing(bad, error, match):
    x, y = data()
    m = build()
    before, state = m.params.copy(), m.random_state
    with pytest.raises(error, match=match):
        m.fit(x, y, epochs=2, order=bad, **FIT)
    assert np.array_equal(m.params, before) and m.random_state == state


# ---------------------------------------------------------------------------- callbacks
@pytest.mark.parametrize("overlap", [False, True])
@pytest.mark.parametrize("device", ["cpu", "numpy"])
def test_epoch_end_sees_each_epochs_model(device, overlap):
    """Each EpochEnd holds that epoch's parameters, history and generator states;
    ``predict``/``evaluate`` on it equal what a model stopped there gives — also while the next
    epoch trains beside it."""
    x, y = data()
    xv, yv = data(20, seed=1)
    seen = []

    def record(end: EpochEnd):
        seen.append((end.epoch, end.epochs, end.params.copy(), end.random_state,
                     end.predict(xv), end.evaluate(xv, yv), len(end.history.seconds),
                     end.history.val_accuracy[-1]))
        assert not end.params.flags.writeable

    m = build(device=device)
    m.fit(x, y, epochs=3, validation_data=(xv, yv), callbacks=[record], overlap=overlap, **FIT)
    assert [s[:2] for s in seen] == [(1, 3), (2, 3), (3, 3)]
    for k, (epoch, _, params, state, out, scores, n_hist, val_acc) in enumerate(seen):
        ref = build(device=device)
        ref.fit(x, y, epochs=epoch, validation_data=(xv, yv), **FIT)
        assert np.array_equal(params, ref.params)
        assert state == ref.random_state
        assert np.array_equal(out, ref.predict(xv))
        assert scores == ref.evaluate(xv, yv)
        assert n_hist == epoch and val_acc == scores["accuracy"]
    assert np.array_equal(seen[-1][2], m.params)


@pytest.mark.parametrize("overlap", [False, True])
def test_stop_ends_fit_with_that_epochs_model(overlap):
    """``stop()`` after epoch 2 of 5: the model is exactly a 2-epoch fit's, generators
    included, even when epoch 3 already trained beside the callback (it is undone)."""
    x, y = data()
    m, ref = build(), build()
    h = m.fit(x, y, epochs=5, overlap=overlap, training_metrics=True,
              callbacks=[lambda end: end.epoch == 2 and end.stop()], **FIT)
    ref.fit(x, y, epochs=2, **FIT)
    assert len(h.seconds) == len(h.loss) == 2
    assert np.array_equal(m.params, ref.params) and m.random_state == ref.random_state


@pytest.mark.parametrize("overlap", [False, True])
def test_a_failing_callback_leaves_the_last_epoch(overlap):
    x, y = data()
    m, ref = build(), build()

    def fail(end):
        if end.epoch == 2:
            raise RuntimeError("callback failed")

    with pytest.raises(RuntimeError, match="callback failed"):
        m.fit(x, y, epochs=4, overlap=overlap, callbacks=[fail], **FIT)
    ref.fit(x, y, epochs=2, **FIT)
    assert np.array_equal(m.params, ref.params) and m.random_state == ref.random_state


def test_callbacks_are_checked_first():
    x, y = data()
    m = build()
    with pytest.raises(TypeError, match=r"callbacks\[1\] must be a fastnet.callbacks.Callback"):
        m.fit(x, y, epochs=1, callbacks=[print, 3], **FIT)
    with pytest.raises(TypeError, match="callbacks must be a list"):
        m.fit(x, y, epochs=1, callbacks=3, **FIT)
    with pytest.raises(TypeError, match="overlap must be None, True or False"):
        m.fit(x, y, epochs=1, overlap="yes", **FIT)


class Marks(Callback):
    def __init__(self, every):
        self.every, self.calls = every, []

    def batch_marks(self, epoch, batches):
        return range(0, batches, self.every)

    def on_batch(self, epoch, batch):
        self.calls.append((epoch, batch))


@pytest.mark.parametrize("kind", ["dense", "cnn"])
def test_batch_marks_cut_epochs_without_changing_them(kind):
    """Marked mini-batches get ``on_batch`` before they train; the epoch trained in pieces
    ends bit-identical to the epoch in one piece (9 mini-batches, the last one short)."""
    x, y = data()
    a, b = build(kind), build(kind)
    marks = Marks(4)
    a.fit(x, y, epochs=2, **FIT)
    b.fit(x, y, epochs=2, callbacks=[marks], **FIT)
    assert marks.calls == [(1, 0), (1, 4), (1, 8), (2, 0), (2, 4), (2, 8)]
    assert np.array_equal(a.params, b.params)


# ---------------------------------------------------------------------------- overlap, threads
def test_overlap_trains_in_a_worker_thread(monkeypatch):
    """With overlap the epochs after the first train in the worker while epoch k is scored;
    the parameters and history are those of a sequential fit."""
    threads = []
    real = DenseTrainer.train_epoch

    def recording(self, *args, **kwargs):
        threads.append(threading.current_thread().name)
        real(self, *args, **kwargs)

    monkeypatch.setattr(DenseTrainer, "train_epoch", recording)
    x, y = data()
    a, b = build(), build()
    ha = a.fit(x, y, epochs=3, overlap=True, validation_data=(x, y), **FIT)
    hb = b.fit(x, y, epochs=3, overlap=False, validation_data=(x, y), **FIT)
    assert all(t.startswith("fastnet-epoch") for t in threads[:3])
    # without overlap each epoch trains in a thread of its own while this one waits (and
    # takes Ctrl-C): one at a time
    assert threads[3:] == ["fastnet-watched-epoch"] * 3
    assert np.array_equal(a.params, b.params)
    assert (ha.loss, ha.val_accuracy) == (hb.loss, hb.val_accuracy)


def test_layerwise_models_score_in_sequence():
    """A layer-by-layer model cannot overlap (its steps hold the GIL): overlap=True is
    honoured as far as the device can, and the result is the same."""
    x, y = data()
    a, b = build("cnn"), build("cnn")
    a.fit(x, y, epochs=2, overlap=True, **FIT)
    b.fit(x, y, epochs=2, overlap=False, **FIT)
    assert np.array_equal(a.params, b.params)


def test_threads_override():
    """``threads`` fixes the thread count; the dense epochs give the same parameters on one
    thread and on two (the CNN epoch's sums depend on the count: tests/test_threads.py)."""
    rng = np.random.default_rng(0)
    x, y = rng.random((60, 200)), rng.integers(0, 3, 60)
    x[x < 0.6] = 0.0
    a, b = (Model([200, 100, 3], dtype="float64", seed=3) for _ in range(2))
    ha = a.fit(x, y, epochs=2, threads=1, **FIT)
    hb = b.fit(x, y, epochs=2, threads=2, **FIT)
    assert np.array_equal(a.params, b.params)
    assert ha.threads == [1, 1] and hb.threads == [2, 2]


@pytest.mark.parametrize("threads,error,match", [
    (0, ValueError, "threads must be"), (1.5, TypeError, "threads must be"),
    (10**6, ValueError, r"threads must be at most \d+ \(NUMBA_NUM_THREADS\)"),
])
def test_bad_threads(threads, error, match):
    x, y = data()
    m = build()
    before = m.params.copy()
    with pytest.raises(error, match=match):
        m.fit(x, y, epochs=1, threads=threads, **FIT)
    assert np.array_equal(m.params, before)


# ---------------------------------------------------------------------------- state
def test_random_state_round_trip():
    x, y = data()
    m = build()
    state = m.random_state
    m.fit(x, y, epochs=1, **FIT)
    assert m.random_state != state
    m.random_state = state
    assert m.random_state == state
    with pytest.raises(TypeError, match="random_state must be a dict"):
        m.random_state = {"shuffle": state["shuffle"]}
    with pytest.raises(ValueError, match="random_state is not a pair of PCG64 states"):
        m.random_state = {"shuffle": state["shuffle"], "dropout": {"bit_generator": "MT"}}
    assert m.random_state == state


def test_params_of_another_buffer():
    m = build()
    other = np.arange(m.params.size, dtype=m.params.dtype)
    w = m.params_of(1, other)["w"]
    assert w.shape == (3, 7) and np.shares_memory(w, other)
    with pytest.raises(ValueError, match=r"params must be a flat array of \d+ values"):
        m.params_of(0, other[:-1])
