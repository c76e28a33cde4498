"""The sparse-input epoch on the CPU, and inference on that form of x: ``train_epoch`` (on
this thread), ``train_epoch_threaded`` (on at most two OS threads, one per part of the
inputs: the same result, bit for bit, for any thread count), ``epoch_threads``,
``evaluate`` and ``predict`` (ranges of whole chunks on OS threads). The step's maths:
``sparse_cpu``; the threads and barrier: ``sync_cpu``.

Shapes: as ``dense_epoch_cpu``'s epoch, with x as ``csr =
sparse_cpu.sparse_inputs(x, ...)`` (``order: int64[N]``, ``y: float[N, nL]``).

NumPy twin: ``fastnet.reference.dense.train_epoch``, ``evaluate`` (the same epoch on dense
x; sums in another order). Tests: ``tests/test_sparse.py``. Why two parts and two threads:
docs/kernels.md.
"""

import numpy as np
from numba import njit

from . import config
from . import dense_cpu as dense
from . import split_cpu
from . import sync_cpu as _sync
from .gather_cpu import gather_cols, prefetch_rows
from .simd import rows_of
from .sparse_cpu import (aligned_zeros, layer0_part, upper, upper_one, upper_update_one,
                         upper_workspaces, upper_write_back, workspaces, write_back)

_jit = njit(**config.CPU_JIT)
_lite = njit(**config.CPU_LITE)


# -------------------------------------------------------------------------------- the epoch
@_lite
def epoch_worker(tid, nthreads, sync, params, layout, acts, loss, csr, y, order, batch_size, lr,
                 decay, sp, ws, up, offs):
    """Thread ``tid`` of ``nthreads`` running one epoch (docs/kernels.md): thread t runs
    the forward and deltas above layer 0 for half t of each mini-batch's samples, then half t
    of the upper layers' rows and part t of layer 0 (one thread runs both halves and both
    parts, in the same order); ``sp, ws = workspaces(...)``, ``up = upper_workspaces(...)``,
    offs = ``dense_cpu.layer_offsets(layout, batch_size)``, then ``write_back`` and
    ``upper_write_back`` after every thread has returned."""
    N = order.shape[0]
    dec = params.dtype.type(decay)
    p_lo = 0 if tid == 0 else 1
    p_hi = 2 if nthreads == 1 else (1 if tid == 0 else (2 if tid == 1 else 1))
    no_rows = order[:0]
    gen = 0
    m = min(batch_size, N)
    h0 = layout[0, 1]
    T = params.dtype.type
    fused = up[0].shape[0] > 0
    for part in range(p_lo, p_hi):
        layer0_part(csr, no_rows, order[:m], sp, rows_of(ws[2], 0, 0, h0), T(0), dec, part)
    for k in range(0, N, batch_size):
        m = min(batch_size, N - k)
        gen = _sync.barrier(sync, nthreads, gen)  # both parts of z⁰ complete
        if _sync.aborted(sync):
            return
        h = (m + 1) // 2  # the halves of the mini-batch above layer 0: thread 0's, thread 1's
        for half in range(p_lo, p_hi):
            lo, hi = (0, h) if half == 0 else (h, m)
            if fused:
                upper_one(acts, loss, y, order[k + lo:k + hi], lo, sp[2], up, T(lr / m))
            else:
                upper(params, layout, acts, loss, y, order[k + lo:k + hi], lo, offs, sp[2],
                       ws, lr, dec)
        gen = _sync.barrier(sync, nthreads, gen)  # δ⁰ ready
        if _sync.aborted(sync):
            return
        kn = k + m
        mn = min(batch_size, N - kn) if kn < N else 0
        if tid == nthreads - 1:
            prefetch_rows(csr, y, order[kn + mn:kn + mn + batch_size])  # the step after next
        # δ⁰: padded rows (zero pads: zero coefficients) for the fused layer, else h0 wide
        d0 = rows_of(up[9], 0, m, up[9].shape[1]) if fused else rows_of(ws[2], 0,
                                                                                        m, h0)
        for part in range(p_lo, p_hi):
            # the layers above, half their rows each (no part of layer 0 reads them)
            if fused:
                upper_update_one(up, m, T(lr / m), dec, part, 2)
            else:
                dense.upper_updates(params, layout, offs, ws, m, lr, dec, part, 2)
            layer0_part(csr, order[k:k + m], order[kn:kn + mn], sp, d0, T(lr / m), dec, part)
        if tid == 0:
            _sync.advance(sync)


@_jit
def train_epoch(params, layout, acts, loss, csr, y, order, batch_size, lr, decay):
    """One epoch of mini-batch SGD in place on ``params``, on this thread, x given as ``csr =
    sparse_inputs(x)``: ``dense_epoch_cpu.train_epoch``'s epoch (mini-batches are consecutive
    slices of ``order``; the last one may be shorter)."""
    batch_size = max(1, min(batch_size, order.shape[0]))  # one batch of them all is the same
    sp, ws = workspaces(params, layout, batch_size)
    up = upper_workspaces(params, layout, acts, batch_size)
    epoch_worker(0, 1, np.zeros(_sync.SYNC_SIZE, dtype=np.int64), params, layout, acts, loss,
                 csr, y, order, batch_size, lr, decay, sp, ws, up,
                 dense.layer_offsets(layout, batch_size))
    write_back(params, layout, sp)
    upper_write_back(params, layout, up)


def epoch_threads(layout, batch_size):
    """How many threads ``train_epoch_threaded`` should use: 2 (one per part) where
    ``split_cpu.epoch_threads`` would use threads, else 1."""
    return min(2, split_cpu.epoch_threads(layout, batch_size))


def train_epoch_threaded(params, layout, acts, loss, csr, y, order, batch_size, lr, decay,
                         nthreads, sync=None):
    """``train_epoch`` on ``min(nthreads, 2)`` OS threads (``sync_cpu.run_threads``); the same
    result, bit for bit, for any thread count. ``sync``: as ``dense_epoch_cpu``'s."""
    nthreads = min(nthreads, 2)
    if sync is None:
        sync = np.zeros(_sync.SYNC_SIZE, dtype=np.int64)
    batch_size = max(1, min(batch_size, len(order)))  # scratch for no more rows than exist
    sp, ws = workspaces(params, layout, batch_size)
    up = upper_workspaces(params, layout, acts, batch_size)
    offs = dense.layer_offsets(layout, batch_size)
    if nthreads <= 1:
        epoch_worker(0, 1, sync, params, layout, acts, loss, csr, y, order, batch_size, lr,
                     decay, sp, ws, up, offs)
    else:
        _sync.run_threads(lambda tid: epoch_worker(tid, nthreads, sync, params, layout, acts,
                                                   loss, csr, y, order, batch_size, lr, decay,
                                                   sp, ws, up, offs),
                          nthreads, sync)
    write_back(params, layout, sp)
    upper_write_back(params, layout, up)


# -------------------------------------------------------------------------------- inference
@_jit
def _forward_rows(params, layout, acts, loss, csr, wt, bt, y, out, lo, hi, batch_size):
    """``dense_epoch_cpu``'s forward with layer 0 gathered over the nonzeros (``wt, bt``: layer
    0 transposed and padded, as in ``workspaces``): the outputs for rows [lo, hi) go to
    out[lo:hi] unless out is empty; with y not empty, returns their summed cost and number
    correct."""
    indptr, indices, values = csr[0], csr[1], csr[2]
    L, h0, hp = layout.shape[0], layout[0, 1], wt.shape[1]
    nL = layout[L - 1, 1]
    size = dense.layer_offsets(layout, batch_size)[-1]
    zs = np.empty(size, dtype=params.dtype)
    acts_buf = np.empty(size, dtype=params.dtype)
    zp = aligned_zeros((batch_size, hp), params)
    total = 0.0
    correct = 0
    for k in range(lo, hi, batch_size):
        m = min(batch_size, hi - k)
        for i in range(m):
            zi = zp[i]
            zi[:] = bt
            gather_cols(values, indices, indptr[k + i], indptr[k + i + 1], wt, 0, hp, zi)
        z0 = rows_of(zs, 0, m, h0)
        a0 = rows_of(acts_buf, 0, m, h0)
        dense.copy_cols(zp[:m], z0)
        dense.activate(z0, a0, acts[0])
        off = dense.forward_from(params, layout, acts, a0, zs, acts_buf, 1)
        a = rows_of(acts_buf, off, m, nL)
        if out.shape[0] > 0:
            dense.copy_cols(a, out[k:k + m])
        if y.shape[0] > 0:
            t, n_ok = dense.loss_and_correct(rows_of(zs, off, m, nL), a,
                                              y[k:k + m], loss)
            total += t
            correct += n_ok
    return total, correct


def _on_threads(params, layout, acts, loss, csr, y, out, batch_size, nthreads):
    """``_forward_rows`` over all rows, in ``nthreads`` ranges of whole ``batch_size`` chunks on
    OS threads (one compiled function for evaluate and predict: a ``prange`` kernel each
    took long to compile); returns the ranges' (cost, correct) added in range order. The
    chunks do not depend on the thread count, so neither do the outputs (the summed cost's
    last bits do: it is added range by range)."""
    sp = workspaces(params, layout, 1)[0]
    N = csr[0].shape[0] - 1
    chunks = -(-N // batch_size)
    nthreads = max(1, min(nthreads, chunks))
    per = -(-chunks // nthreads) * batch_size  # whole chunks: the same sums for any count
    results = [(0.0, 0)] * nthreads

    def work(t):
        lo, hi = min(t * per, N), min((t + 1) * per, N)
        results[t] = _forward_rows(params, layout, acts, loss, csr, sp[0], sp[1], y, out, lo,
                                   hi, batch_size)

    _sync.run_threads(work, nthreads, np.zeros(_sync.SYNC_SIZE, dtype=np.int64))
    total, correct = 0.0, 0
    for t, c in results:
        total += t
        correct += c
    return total, correct


def evaluate(params, layout, acts, loss, csr, y, batch_size, nthreads):
    """``dense_epoch_cpu.evaluate`` on x given as ``sparse_inputs(x)``: (Σ cost, number correct)."""
    return _on_threads(params, layout, acts, loss, csr, y, y[:0], batch_size, nthreads)


def predict(params, layout, acts, csr, out, batch_size, nthreads):
    """``dense_epoch_cpu.predict`` on x given as ``sparse_inputs(x)``: out[N, nL] (overwritten)."""
    _on_threads(params, layout, acts, 0, csr, out[:0], out, batch_size, nthreads)
