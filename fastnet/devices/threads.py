"""How many threads a CPU epoch uses when the user did not say: chosen by timing, per epoch.

The multi-threaded CPU epochs (``dense_cpu``, ``sparse_cpu``, ``cnn_cpu``) meet at spin
barriers every mini-batch, so where another process holds one of the cores they run slower
than one thread. ``Chooser.run`` times the first mini-batches of an epoch on one thread, then on
the device's count, and trains on the faster (one thread by a margin). The dense epochs give
bit-identical parameters for any thread count, so they probe on the model itself; the CNN epoch's sums
depend on the count, so it probes on a scratch copy and trains the whole epoch on one count,
recorded in ``History.threads`` (``fit(threads=...)`` repeats it). The probe on the device's
count starts with a short piece and stops there when that is already far slower than one
thread (a core busy elsewhere: the rest of the probe would cost a tenth of an epoch at several
times the pace). It probes again after a few epochs (counted across the fits of a process), or
as soon as the chosen count's pace drops by a quarter. Tests: ``tests/test_threads.py``;
why not change count within an epoch: docs/kernels.md.
"""

from __future__ import annotations

import threading
import time

PROBE = 1 / 40          # of the epoch's mini-batches timed on one thread (at least MIN_PROBE)
PROBE_MOST = 1 / 10     # timed on the device's count when probing on the model itself: a call
                        # on several threads starts them, which a short piece would not amortise
MIN_PROBE = 64          # mini-batches
FIRST_MOST = 128        # the first piece of the probe on the device's count (mini-batches) ...
ABANDON = 3.0           # ... which ends the probe when its pace is this many times one thread's
SCRATCH_PROBE = 1 / 250  # of the epoch's mini-batches timed on one thread when the probe trains
MIN_SCRATCH_PROBE = 16  # a scratch copy (work thrown away), and twice that on the device's count
EVERY = 4               # epochs between probes while the pace holds
SLOWER = 1.25           # a pace this much slower than at the probe calls for a probe
MARGIN = 0.95           # one thread must beat the device's count by this much (timing noise)


class Chooser:
    """What timing has shown for one workload (a network, its batch size and thread count):
    ``run(step, order, batch_size, most, scratch=None)`` trains one epoch through
    ``step(part, threads)`` (the trainer's epoch over the sample indices ``part``) on ``most``
    threads or one, probing when due. ``scratch``: a step that trains a throwaway copy, to
    probe with when the count changes the results; without it the probe trains the epoch's
    first mini-batches. Shared by the fits of a process (``shared``), so that a run of many
    short fits (the CLI's epochs, a drop-in's calls) probes every few epochs, not every fit."""

    def __init__(self):
        self.chosen = None
        self._pace = None        # seconds per mini-batch of the chosen count, when probed
        self._since = 0          # epochs since the probe
        self._lock = threading.Lock()

    def run(self, step, order, batch_size: int, most: int, scratch=None) -> int:
        batches = -(-len(order) // batch_size)
        if scratch:
            p1 = max(MIN_SCRATCH_PROBE, int(batches * SCRATCH_PROBE))
            p_most = 2 * p1
        else:
            p1 = max(MIN_PROBE, int(batches * PROBE))
            p_most = max(p1, int(batches * PROBE_MOST))
        if most <= 1 or batches < 2 * (p_most + p1):
            step(order, most)
            return most
        with self._lock:
            due = self._pace is None or self._since >= EVERY
            chosen, probed = self.chosen, self._pace
        start = 0
        if due:
            probe = scratch or step
            pace, start = self._probe(probe, order, batch_size, most, p1, p_most)
            if scratch:
                start = 0
            chosen = 1 if pace[1] < MARGIN * pace[most] else most
            probed = pace[chosen]
        t0 = time.perf_counter()
        step(order[start:], chosen)
        slow = (time.perf_counter() - t0) / max(1, batches - start // batch_size) > \
            SLOWER * probed
        with self._lock:
            self.chosen, self._pace = chosen, probed
            self._since = 1 if due else self._since + 1
            if slow:
                self._since = EVERY              # conditions changed: probe next epoch
        return chosen

    @staticmethod
    def _probe(probe, order, batch_size, most, p1, p_most):
        """Seconds per mini-batch on one thread (the cold start) and on ``most``; the second,
        when long, in two pieces: the first stops the probe when it is ``ABANDON`` times
        slower, else the second gives the pace. Returns them and where the probe ended."""
        pace, start = {}, 0

        def timed(count, threads):
            nonlocal start
            t0 = time.perf_counter()
            probe(order[start:start + count * batch_size], threads)
            start += count * batch_size
            return time.perf_counter() - t0

        pace[1] = timed(p1, 1) / p1
        first = p_most if p_most <= 2 * FIRST_MOST else FIRST_MOST
        pace[most] = timed(first, most) / first
        if pace[most] < ABANDON * pace[1] and p_most > first:
            # the steady pace: the first piece also paid for starting the threads
            pace[most] = timed(p_most - first, most) / (p_most - first)
        return pace, start


_shared: dict = {}
_shared_lock = threading.Lock()


def shared(key) -> Chooser:
    """The process's ``Chooser`` for the workload ``key`` (made on first use)."""
    with _shared_lock:
        if key not in _shared:
            _shared[key] = Chooser()
        return _shared[key]


class EpochThreads:
    """A trainer's thread choice: ``run(step, order, batch_size, most, scratch=None,
    continues=False)`` asks the shared ``Chooser`` of ``key`` + (batch size, most) for a new
    epoch; ``continues``: ``order`` is a later piece of the epoch the last call began, trained
    on its count. ``used``: the count of the current epoch."""

    def __init__(self, key):
        self.key, self.used = key, None

    def run(self, step, order, batch_size, most, scratch=None, *, continues=False) -> int:
        if continues and self.used is not None:
            step(order, self.used)
        else:
            self.used = shared(self.key + (batch_size, most)).run(step, order, batch_size,
                                                                  most, scratch)
        return self.used
