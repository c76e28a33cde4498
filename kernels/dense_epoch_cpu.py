"""The fused dense training epoch on the CPU, and inference over a data set: ``train_epoch``
(a whole epoch per compiled call, on this thread), ``train_epoch_threaded`` (the same on
``epoch_threads`` OS threads, two barriers per mini-batch, the same result bit for bit),
``evaluate`` and ``predict`` (ranges of whole chunks under ``prange``). The maths they run:
``dense_cpu``; the thread split: ``split_cpu``; the threads and barrier: ``sync_cpu``.

Shapes: flat ``params``, ``layout[L, 4]``, ``acts[L]``, a loss code (``dense_cpu``),
``x: float[N, n0]``, ``y: float[N, nL]``, ``order: int64[N]`` (mini-batches are consecutive
slices of it; x and y are read in place through it).

NumPy twin: ``fastnet.reference.dense.train_epoch``, ``evaluate``. Tests:
``tests/test_dense.py``. Why one compiled epoch, layer 0's row split and the barriers:
docs/kernels.md.
"""

import numpy as np
from numba import njit, prange

from . import config
from . import sync_cpu as _sync
from .blocks_cpu import rows_forward, rows_update
from .config import SOFTMAX
from .dense_cpu import (activate, activate_flat, copy_cols, forward, layer_offsets,
                        loss_and_correct, step_upper)
from .simd import rows_of
from .split_cpu import LINE, epoch_threads, split

_jit = njit(**config.CPU_JIT)
_pjit = njit(**config.CPU_PARALLEL)

__all__ = ["workspaces", "upper_phase", "train_epoch", "train_epoch_threaded", "epoch_threads",
           "evaluate", "predict"]


# ------------------------------------------------------------------------------ fused epoch
@_jit
def workspaces(layout, batch_size, x):
    """The scratch arrays of an epoch, of x's dtype: ``(zs, activations, deltas)``, flat, with
    layer l's (batch, n_out) rows at ``layer_offsets(...)[l]``, and ``l0: (3, batch, stride)``,
    layer 0's z, a and δ again with rows padded to whole cache lines and 64-byte aligned, where
    threads write their own columns (so that two threads never write to one cache line)."""
    size = layer_offsets(layout, batch_size)[-1]
    zs = np.empty(size, dtype=x.dtype)
    acts_buf = np.empty(size, dtype=x.dtype)
    deltas = np.empty(size, dtype=x.dtype)
    per_line = LINE // x.itemsize
    stride = (layout[0, 1] + per_line - 1) // per_line * per_line
    n = 3 * batch_size * stride
    raw = np.zeros(n + per_line, dtype=x.dtype)
    skip = ((-raw.ctypes.data) % LINE) // x.itemsize
    l0 = raw[skip:skip + n].reshape((3, batch_size, stride))
    return zs, acts_buf, deltas, l0


@_jit
def _layer0_part(x, rows_u, delta, rows_f, z, a, w, b, scale, decay, act, j_lo, j_hi):
    """Layer 0, rows [j_lo, j_hi) of w (columns of z, a, delta): the SGD update with mini-batch
    t (samples x[rows_u], its deltas), then mini-batch t+1's forward (samples x[rows_f], into z)
    and activation (into a). Rows are independent, so this is step t's update followed by step
    t+1's forward, exactly, and disjoint row ranges can run on different threads. Either part
    is skipped when its rows are empty."""
    if rows_u.shape[0] > 0:
        rows_update(x, rows_u, rows_u.shape[0], delta, w, b, scale, decay, j_lo, j_hi)
    if rows_f.shape[0] > 0 and j_hi > j_lo:
        rows_forward(x, rows_f, rows_f.shape[0], w, b, z, j_lo, j_hi)
        if act != SOFTMAX:  # softmax needs whole rows: the caller applies it
            # the last range runs on into the rows' padding (zeros): whole vectors, no tail
            a_hi = z.shape[1] if j_hi == w.shape[0] else j_hi
            if j_lo == 0 and a_hi == z.shape[1]:
                activate_flat(z, a, act)
            else:
                activate(z[:, j_lo:a_hi], a[:, j_lo:a_hi], act)


@_jit
def upper_phase(params, layout, acts, loss, y, rows, offs, ws, lr, decay, zp, ap, dp):
    """The one-thread part of a threaded step: layer 0's z and a, computed by the threads in
    the padded rows zp, ap[m, stride], go into the workspaces (softmax on layer 0 needs whole
    rows, so it is applied here), ``step_upper`` runs, and layer 0's δ comes back in dp."""
    zs, acts_buf, deltas, _ = ws
    m, h0 = rows.shape[0], layout[0, 1]
    z0 = rows_of(zs, 0, m, h0)
    a0 = rows_of(acts_buf, 0, m, h0)
    copy_cols(zp, z0)
    if acts[0] == SOFTMAX:
        activate(z0, a0, SOFTMAX)
    else:
        copy_cols(ap, a0)
    step_upper(params, layout, acts, loss, y, rows, offs, ws, lr, decay)
    copy_cols(rows_of(deltas, 0, m, h0), dp)


@_jit
def _epoch_worker(tid, nthreads, sync, params, layout, acts, loss, x, y, order, batch_size, lr,
                  decay, ws):
    """Thread ``tid`` of ``nthreads`` running one epoch together (``train_epoch`` is the case
    nthreads = 1). Thread t owns an even-sized range of layer 0's rows (the wide layer: its
    update and forward are most of the work) and runs ``_layer0_part`` on it; thread 0 alone
    runs ``step_upper``. Two barriers per mini-batch: after layer 0's forward (thread 0 needs
    all of a⁰) and after the deltas (every thread needs its columns of δ⁰)."""
    N = order.shape[0]
    T = params.dtype.type
    dec = T(decay)
    offs = layer_offsets(layout, batch_size)
    l0 = ws[3]
    z0p, a0p, d0p = l0[0], l0[1], l0[2]  # layer 0 in padded rows: threads write columns here
    n0, h0, w0_off, b0_off = layout[0, 0], layout[0, 1], layout[0, 2], layout[0, 3]
    w0 = rows_of(params, w0_off, h0, n0)
    b0 = params[b0_off:b0_off + h0]
    per = (h0 + nthreads - 1) // nthreads
    if nthreads > 1:  # whole cache lines of the padded rows, else the micro-kernels' 2-row blocks
        per_line = LINE // x.itemsize
        per = (per + per_line - 1) // per_line * per_line
    per = (per + 1) // 2 * 2
    lo = min(tid * per, h0)
    hi = min(lo + per, h0)
    no_rows = order[:0]
    gen = 0
    m = min(batch_size, N)  # step 0's layer-0 forward; later ones follow the previous update
    _layer0_part(x, no_rows, d0p[:m], order[:m], z0p[:m], a0p[:m], w0, b0, T(0), dec, acts[0],
                 lo, hi)
    for k in range(0, N, batch_size):
        m = min(batch_size, N - k)
        gen = _sync.barrier(sync, nthreads, gen)  # a⁰ of this step complete
        if _sync.aborted(sync):
            return
        if tid == 0:
            upper_phase(params, layout, acts, loss, y, order[k:k + m], offs, ws, lr, dec,
                        z0p[:m], a0p[:m], d0p[:m])
        gen = _sync.barrier(sync, nthreads, gen)  # δ⁰ complete, layers 1.. updated
        if _sync.aborted(sync):
            return
        kn = k + m
        mn = min(batch_size, N - kn) if kn < N else 0
        _layer0_part(x, order[k:k + m], d0p[:m], order[kn:kn + mn], z0p[:mn], a0p[:mn], w0, b0,
                     T(lr / m), dec, acts[0], lo, hi)
        if tid == 0:
            _sync.advance(sync)


@_jit
def train_epoch(params, layout, acts, loss, x, y, order, batch_size, lr, decay):
    """One epoch of mini-batch SGD in place on ``params`` (see docs/design.md), on this thread:
    mini-batches are consecutive slices of ``order``; the last one may be shorter. x[N, n0],
    y[N, nL]. Samples are read from x through ``order`` (no gather); layer 0's update of step
    t and forward of step t+1 run as one pass (``_layer0_part``)."""
    ws = workspaces(layout, batch_size, x)
    _epoch_worker(0, 1, np.zeros(_sync.SYNC_SIZE, dtype=np.int64), params, layout, acts, loss,
                  x, y, order, batch_size, lr, decay, ws)


def train_epoch_threaded(params, layout, acts, loss, x, y, order, batch_size, lr, decay,
                         nthreads, sync=None):
    """``train_epoch`` on ``nthreads`` OS threads (this one and nthreads − 1 started here),
    synchronised by ``sync_cpu.barrier``; the same arithmetic in the same order, so the same
    result as ``train_epoch`` bit for bit (tests/test_dense.py). The kernels release the GIL.
    An exception in any thread stops the others and is raised here. ``sync``: the epoch's
    ``sync_cpu`` array (progress counted in it; its abort flag stops the epoch between
    mini-batches), else a new one."""
    if sync is None:
        sync = np.zeros(_sync.SYNC_SIZE, dtype=np.int64)
    ws = workspaces(layout, batch_size, x)
    if nthreads <= 1:
        _epoch_worker(0, 1, sync, params, layout, acts, loss, x, y, order, batch_size, lr,
                      decay, ws)
        return
    _sync.run_threads(lambda tid: _epoch_worker(tid, nthreads, sync, params, layout, acts, loss,
                                                x, y, order, batch_size, lr, decay, ws),
                      nthreads, sync)


# -------------------------------------------------------------------------------- inference
@_jit
def _forward_rows(params, layout, acts, loss, x, y, out, lo, hi, batch_size):
    """The forward pass over rows [lo, hi) of x, in chunks of ``batch_size`` rows: the network's
    outputs go to out[lo:hi] unless out is empty; when y is not empty, returns the rows' summed
    cost and number correct (else zeros)."""
    nL = layout[layout.shape[0] - 1, 1]
    size = layer_offsets(layout, batch_size)[-1]
    zs = np.empty(size, dtype=x.dtype)
    acts_buf = np.empty(size, dtype=x.dtype)
    total = 0.0
    correct = 0
    for k in range(lo, hi, batch_size):
        m = min(batch_size, hi - k)
        off = forward(params, layout, acts, x[k:k + m], zs, acts_buf)
        a = rows_of(acts_buf, off, m, nL)
        if out.shape[0] > 0:
            copy_cols(a, out[k:k + m])
        if y.shape[0] > 0:
            t, n_ok = loss_and_correct(rows_of(zs, off, m, nL), a, y[k:k + m],
                                       loss)
            total += t
            correct += n_ok
    return total, correct


@_pjit
def evaluate(params, layout, acts, loss, x, y, batch_size, nthreads):
    """Σ cost and the number correct over a whole data set: ``nthreads`` ranges of rows in
    parallel, each in chunks of ``batch_size`` rows (the sums are added in range order)."""
    totals = np.zeros(nthreads)
    counts = np.zeros(nthreads, dtype=np.int64)
    for c in prange(nthreads):  # ranges of whole chunks: the same sums for any thread count
        lo, hi = split(x.shape[0], nthreads, c, batch_size)
        totals[c], counts[c] = _forward_rows(params, layout, acts, loss, x, y, x[:0], lo, hi,
                                             batch_size)
    total = 0.0
    correct = 0
    for c in range(nthreads):
        total += totals[c]
        correct += counts[c]
    return total, correct


@_pjit
def predict(params, layout, acts, x, out, batch_size, nthreads):
    """out[N, nL] (overwritten) = the network's output for x[N, n0]: ``nthreads`` ranges of
    rows in parallel, each in chunks of ``batch_size`` rows."""
    for c in prange(nthreads):  # ranges of whole chunks: the same outputs for any thread count
        lo, hi = split(x.shape[0], nthreads, c, batch_size)
        _forward_rows(params, layout, acts, 0, x, x[:0], out, lo, hi, batch_size)
