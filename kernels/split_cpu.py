"""The work split of the CPU kernels across threads: ``split`` (range c of n items cut into
even ranges, each a multiple of ``align``: rows or columns of a layer, rows of a data set, as
``prange`` chunks or OS threads), ``epoch_threads`` (how many OS threads a fused dense epoch
uses), ``PAR_MIN_WORK`` (the work from which an epoch uses threads, also cnn_cpu's) and
``LINE`` (a cache line: threads write whole lines, never one another's). The threads
themselves and their barrier: ``sync_cpu``.

NumPy twin: none (the split does not change results). Tests: ``tests/test_dense.py``
(``test_epoch_threads_choice``, the thread-split tests), ``tests/test_sparse.py``.
"""

import numba
from numba import njit

from . import config

_jit = njit(**config.CPU_JIT)
PAR_MIN_WORK = 100_000  # batch·n_in·n_out of layer 0 from which an epoch uses threads
LINE = 64  # bytes per cache line


@_jit
def split(n, nthreads, c, align):
    """Range c of n items cut into nthreads ranges, each a multiple of ``align`` long."""
    per = ((n + nthreads - 1) // nthreads + align - 1) // align * align
    lo = min(c * per, n)
    return lo, min(lo + per, n)


def epoch_threads(layout, batch_size):
    """How many threads ``dense_epoch_cpu.train_epoch_threaded`` should use: Numba's thread
    count (the cores, or ``NUMBA_NUM_THREADS``), at most one per 16 rows of layer 0 (a
    thread's share must be whole cache lines of the padded rows and worth two barriers:
    [784, 30, 10] gets 2), and 1 when a mini-batch's layer-0 work is too small to pay for
    the barriers."""
    n0, h0 = int(layout[0, 0]), int(layout[0, 1])
    if batch_size * n0 * h0 < PAR_MIN_WORK:
        return 1
    return max(1, min(numba.get_num_threads(), -(-h0 // 16)))
