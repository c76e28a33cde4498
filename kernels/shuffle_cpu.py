"""Python's ``random.shuffle``, compiled: the same permutation from the same generator state,
for the drop-ins' per-epoch shuffle (the book's mini-batches come from ``random.shuffle``).

CPython's ``Random`` is MT19937; ``random.getstate()`` gives its 624 state words and position.
``shuffle(x)`` swaps ``x[i]`` with ``x[randbelow(i + 1)]`` for i from len(x) − 1 down to 1, and
``randbelow(n)`` draws ``getrandbits(k)``, k = n.bit_length(), until the value is below n;
``getrandbits(k)`` for k ≤ 32 is the next tempered 32-bit output shifted right by 32 − k. The
kernel does exactly that on a copy of the state and returns the new position; the caller puts
the state back with ``random.setstate``.

Twin: ``random.shuffle`` itself. Tests: ``tests/test_network.py`` (same permutation and the
same generator state afterwards, over seeds and lengths).
"""

import numpy as np
from numba import njit

from . import config

_N, _M = 624, 397


@njit(**config.CPU_JIT)
def _twist(mt):
    for k in range(_N):
        y = (mt[k] & np.uint32(0x80000000)) | (mt[(k + 1) % _N] & np.uint32(0x7FFFFFFF))
        v = mt[(k + _M) % _N] ^ (y >> np.uint32(1))
        if y & np.uint32(1):
            v ^= np.uint32(0x9908B0DF)
        mt[k] = v


@njit(**config.CPU_JIT)
def mt_shuffle(x, mt, pos):
    """Shuffle x[n] (any dtype) in place as ``random.shuffle`` would from the MT19937 state
    ``mt: uint32[624]`` (updated in place) at position ``pos``; returns the new position."""
    for i in range(x.shape[0] - 1, 0, -1):
        n = i + 1
        k = 0
        while (n >> k) > 0:  # n.bit_length()
            k += 1
        shift = np.uint32(32 - k)
        while True:
            if pos >= _N:
                _twist(mt)
                pos = 0
            y = mt[pos]
            pos += 1
            y ^= y >> np.uint32(11)
            y ^= (y << np.uint32(7)) & np.uint32(0x9D2C5680)
            y ^= (y << np.uint32(15)) & np.uint32(0xEFC60000)
            y ^= y >> np.uint32(18)
            r = np.int64(y >> shift)
            if r < n:
                break
        t = x[i]
        x[i] = x[r]
        x[r] = t
    return pos
