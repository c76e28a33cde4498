"""How many threads a CPU epoch uses when the user did not say: chosen by timing, per epoch.

The multi-threaded CPU epochs (``dense_cpu``, ``sparse_cpu``, ``cnn_cpu``) meet at spin
barriers every mini-batch, so where another process holds one of the cores they run slower
than one thread. ``Chooser.run`` times the first mini-batches of an epoch on one thread, then on
the device's count, and trains on the faster (one thread by a margin). The dense epochs give bit-identical
parameters for any thread count, so they probe on the model itself; the CNN epoch's sums
depend on the count, so it probes on a scratch copy and trains the whole epoch on one count,
recorded in ``History.threads`` (``fit(threads=...)`` repeats it). It probes again after a few
epochs, or as soon as the chosen count's pace drops by a quarter. Tests: ``tests/test_threads.py``.
"""

from __future__ import annotations

import time

PROBE = 1 / 40          # of the epoch's mini-batches timed on one thread (at least MIN_PROBE)
PROBE_MOST = 1 / 10     # timed on the device's count when probing on the model itself: a call
                        # on several threads starts them, which a short piece would not amortise
MIN_PROBE = 64          # mini-batches
SCRATCH_PROBE = 1 / 250  # of the epoch's mini-batches timed on one thread when the probe trains
MIN_SCRATCH_PROBE = 16  # a scratch copy (work thrown away), and twice that on the device's count
EVERY = 4               # epochs between probes while the pace holds
SLOWER = 1.25           # a pace this much slower than at the probe calls for a probe
MARGIN = 0.95           # one thread must beat the device's count by this much (timing noise)


class Chooser:
    """``run(step, order, batch_size, most, scratch=None)``: one epoch through
    ``step(part, threads)`` (the trainer's epoch over the sample indices ``part``), on
    ``most`` threads or one. ``scratch``: a step that trains a throwaway copy, to probe with
    when the count changes the results; without it the probe trains the epoch's first
    mini-batches. ``continues``: ``order`` is a later piece of the epoch the last call began
    (trained on its count, not probed)."""

    def __init__(self):
        self.chosen = None
        self._pace = None        # seconds per mini-batch of the chosen count, when probed
        self._since = 0          # epochs since the probe

    def run(self, step, order, batch_size: int, most: int, scratch=None, *,
            continues: bool = False) -> int:
        if continues and self.chosen is not None:   # a later piece of the same epoch
            step(order, self.chosen)
            return self.chosen
        batches = -(-len(order) // batch_size)
        if scratch:
            p1 = max(MIN_SCRATCH_PROBE, int(batches * SCRATCH_PROBE))
            p_most = 2 * p1
        else:
            p1 = max(MIN_PROBE, int(batches * PROBE))
            p_most = max(p1, int(batches * PROBE_MOST))
        if most <= 1 or batches < 2 * (p_most + p1):
            step(order, most)
            self.chosen = most
            return most
        start = 0
        if self._pace is None or self._since >= EVERY:
            probe, pace = scratch or step, {}
            for threads, count in ((1, p1), (most, p_most)):   # the cold start on one
                t0 = time.perf_counter()
                probe(order[start:start + count * batch_size], threads)
                pace[threads] = (time.perf_counter() - t0) / count
                start += count * batch_size
            if scratch:
                start = 0
            self.chosen = 1 if pace[1] < MARGIN * pace[most] else most
            self._pace, self._since = pace[self.chosen], 0
        t0 = time.perf_counter()
        step(order[start:], self.chosen)
        pace = (time.perf_counter() - t0) / max(1, batches - start // batch_size)
        self._since += 1
        if pace > SLOWER * self._pace:
            self._since = EVERY                  # conditions changed: probe next epoch
        return self.chosen
