"""kernels/sync_cpu.py: the spin barrier that keeps OS threads in step inside one compiled
loop (the threaded dense epoch), and its abort flag."""

import threading

import numpy as np
from numba import njit

from fastnet.kernels import sync_cpu as S


@njit(nogil=True)
def _lockstep(tid, nthreads, sync, counts, seen, rounds):
    """Each round: bump our counter, barrier, record the smallest counter of all threads,
    barrier. With a working barrier every thread sees every counter at the round number."""
    gen = 0
    for r in range(rounds):
        counts[tid * 8] += 1
        gen = S.barrier(sync, nthreads, gen)
        lo = counts[0]
        for t in range(1, nthreads):
            lo = min(lo, counts[t * 8])
        seen[tid, r] = lo
        gen = S.barrier(sync, nthreads, gen)
        if S.aborted(sync):
            return r
    return rounds


def _run(nthreads, rounds, fn=_lockstep):
    sync = np.zeros(S.SYNC_SIZE, np.int64)
    counts = np.zeros(8 * nthreads, np.int64)
    seen = np.zeros((nthreads, rounds), np.int64)
    threads = [threading.Thread(target=fn, args=(t, nthreads, sync, counts, seen, rounds))
               for t in range(nthreads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a thread is stuck at a barrier"
    return seen, sync


def test_barrier_keeps_threads_in_step():
    for nthreads in (1, 2, 3):  # 3 on 2 cores: a waiter must yield its core to make progress
        seen, sync = _run(nthreads, 2000)
        expected = np.arange(1, 2001)
        for t in range(nthreads):
            np.testing.assert_array_equal(seen[t], expected)
        assert sync[S.COUNT] == 0 and sync[S.GENERATION] == (2 * 2000 if nthreads > 1 else 0)


def test_abort_releases_waiters():
    """A thread that aborts instead of arriving frees the others from the barrier."""
    sync = np.zeros(S.SYNC_SIZE, np.int64)
    out = []
    waiter = threading.Thread(target=lambda: out.append(S.barrier(sync, 2, 0)))
    waiter.start()
    waiter.join(timeout=0.2)
    assert waiter.is_alive()  # still waiting for the second thread
    S.abort(sync)
    waiter.join(timeout=30)
    assert not waiter.is_alive() and out == [1] and S.aborted(sync)
