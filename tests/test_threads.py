"""The CPU epochs' thread count chosen by timing (fastnet/devices/threads.py): the faster count
wins, every sample is trained once and in order, the choice is probed again when the pace
drops, and whatever is chosen the parameters are those of a one-thread fit."""

import time

import numpy as np
import pytest

from fastnet import Conv2D, Dense, Flatten, MaxPool2D, Model
from fastnet.devices import threads as T


@pytest.fixture(autouse=True)
def fresh_choices(monkeypatch):
    """Each test starts with no timing knowledge (the process shares it between fits)."""
    monkeypatch.setattr(T, "_shared", {})


class FakeEpoch:
    """A step that takes ``cost[threads]`` seconds per mini-batch of a simulated clock."""

    def __init__(self, monkeypatch, cost):
        self.cost, self.now, self.parts = cost, 0.0, []
        monkeypatch.setattr(T.time, "perf_counter", lambda: self.now)

    def __call__(self, part, threads):
        self.parts.append((part.copy(), threads))
        self.now += self.cost[threads] * -(-len(part) // 10)


@pytest.mark.parametrize("cost,expected", [({2: 1.0, 1: 1.6}, 2),   # a quiet machine
                                           ({2: 3.0, 1: 1.6}, 1)])  # a core busy elsewhere
def test_the_faster_count_trains_the_epoch(monkeypatch, cost, expected):
    step, order = FakeEpoch(monkeypatch, cost), np.random.default_rng(0).permutation(50_000)
    chooser = T.Chooser()
    assert chooser.run(step, order, 10, 2) == expected == chooser.chosen
    assert [t for _, t in step.parts] == [1, 2, 2, expected]
    # 1/40 of 5,000 mini-batches on one thread, 1/10 on two: a short piece, then the rest
    assert [len(p) for p, _ in step.parts[:3]] == [125 * 10, 128 * 10, 372 * 10]
    assert np.array_equal(np.concatenate([p for p, _ in step.parts]), order)
    assert all(len(p) % 10 == 0 for p, _ in step.parts[:-1])      # whole mini-batches


def test_a_probe_far_slower_on_more_threads_stops_early(monkeypatch):
    step, order = FakeEpoch(monkeypatch, {2: 5.0, 1: 1.6}), np.arange(50_000)
    assert T.Chooser().run(step, order, 10, 2) == 1
    assert [(len(p), t) for p, t in step.parts] == [(1250, 1), (1280, 2), (50_000 - 2530, 1)]


def test_a_scratch_probe_leaves_the_epoch_whole(monkeypatch):
    """With ``scratch`` (a count that changes the results) the probes train the copy and the
    epoch runs whole on the chosen count."""
    step, order = FakeEpoch(monkeypatch, {2: 3.0, 1: 1.6}), np.arange(50_000)
    probes = []

    def scratch(part, threads):
        probes.append(threads)
        step.now += step.cost[threads] * len(part) // 10
    assert T.Chooser().run(step, order, 10, 2, scratch=scratch) == 1
    assert probes == [1, 2]
    assert len(step.parts) == 1 and step.parts[0][1] == 1
    assert np.array_equal(step.parts[0][0], order)


def test_probes_again_after_a_while_or_when_the_pace_drops(monkeypatch):
    step, order = FakeEpoch(monkeypatch, {2: 1.0, 1: 1.6}), np.arange(50_000)
    chooser = T.Chooser()
    counts = []
    for epoch in range(T.EVERY + 2):
        chooser.run(step, order, 10, 2)
        counts.append(len(step.parts))
    calls = np.diff([0] + counts).tolist()
    assert calls == [4] + [1] * (T.EVERY - 1) + [4, 1]               # probe, then every EVERY
    step.cost[2] = 3.0                                                # the other core is taken
    chooser.run(step, order, 10, 2)                                   # slower: noticed ...
    assert chooser.run(step, order, 10, 2) == 1                       # ... and probed


def test_small_epochs_and_one_thread_are_not_probed(monkeypatch):
    step = FakeEpoch(monkeypatch, {2: 1.0, 1: 1.6})
    assert T.Chooser().run(step, np.arange(100), 10, 2) == 2
    assert T.Chooser().run(step, np.arange(50_000), 10, 1) == 1
    assert [len(p) for p, _ in step.parts] == [100, 50_000]


@pytest.mark.parametrize("kind", ["dense", "cnn"])
def test_fit_records_the_count_and_matches_one_thread(kind, monkeypatch):
    """A fit long enough to probe, of networks the CPU trains on two threads, each count made
    to win once: the count is in History.threads, and the parameters are bit for bit those of
    a fit on one thread (dense: any count gives them) or on the winning count (CNN: the probe
    trained a scratch copy, and the count changes the sums' rounding)."""
    import numba
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one thread: nothing to choose")
    monkeypatch.setattr(T, "MIN_PROBE", 8)
    monkeypatch.setattr(T, "MIN_SCRATCH_PROBE", 4)
    rng = np.random.default_rng(1)
    n_in = 200 if kind == "dense" else 144
    x, y = rng.random((400, n_in)), rng.integers(0, 3, 400)
    x[x < 0.6] = 0

    def build():
        if kind == "dense":
            return Model([200, 100, 3], dtype="float64", seed=2)
        return Model([Conv2D(1, 20, 5, activation="relu"), MaxPool2D(2), Flatten(),
                      Dense(320, 3, "softmax")], loss="log_likelihood", dtype="float64",
                     seed=2, input_shape=(1, 12, 12))
    fits = dict(epochs=2, batch_size=10, lr=0.3, verbose=False, training_metrics=False)
    fixed = {}
    for threads in (1, 2):
        fixed[threads] = build()
        fixed[threads].fit(x, y, threads=threads, **fits)
    assert build()._runner(None).epoch_threads(10) == 2
    real = T.Chooser.run
    for winner in (1, 2):
        def rigged(self, step, order, batch_size, most, scratch=None, winner=winner, **kw):
            def slowed(fn):                  # the other count is made slow
                def run(part, threads):
                    if threads != winner:
                        time.sleep(0.2)    # far above a scheduling stall
                    fn(part, threads)
                return run
            return real(self, slowed(step), order, batch_size, most,
                        scratch=scratch and slowed(scratch), **kw)
        monkeypatch.setattr(T.Chooser, "run", rigged)
        monkeypatch.setattr(T, "_shared", {})          # what the last fit's timing showed
        m = build()
        h = m.fit(x, y, **fits)
        assert h.threads == [winner, winner]
        assert np.array_equal(m.params, fixed[1 if kind == "dense" else winner].params)


def test_pieces_of_one_epoch_keep_its_count(monkeypatch):
    """An epoch trained in pieces (after mini-batch marks) probes once, on its first piece;
    the later pieces train on the count chosen there."""
    step = FakeEpoch(monkeypatch, {2: 3.0, 1: 1.6})
    choice = T.EpochThreads(("net",))
    assert choice.run(step, np.arange(20_000), 10, 2) == 1
    step.cost[1] = 9.0                            # even if one thread became slow meanwhile
    assert choice.run(step, np.arange(20_000, 30_000), 10, 2, continues=True) == 1
    assert [t for _, t in step.parts] == [1, 2, 1, 1]      # a short probe: one piece


def test_fits_of_a_process_share_what_timing_showed(monkeypatch):
    """A second fit of the same workload (a new trainer) does not probe again until its turn:
    a run of one-epoch fits (the command line's) probes every few epochs, not every fit."""
    step = FakeEpoch(monkeypatch, {2: 1.0, 1: 1.6})
    calls = []
    for fit in range(T.EVERY + 1):
        T.EpochThreads(("net",)).run(step, np.arange(50_000), 10, 2)
        calls.append(len(step.parts))
    assert np.diff([0] + calls).tolist() == [4] + [1] * (T.EVERY - 1) + [4]
    T.EpochThreads(("another net",)).run(step, np.arange(50_000), 10, 2)
    assert len(step.parts) - calls[-1] == 4                          # its own probe
