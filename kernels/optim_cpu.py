"""Optimizers other than the book's SGD on the CPU: ``optimizer_step`` (one update of a flat
parameter buffer from its summed gradient: momentum, Nesterov, RMSprop, Adam, AdamW, in
PyTorch's form; ``apply_range``: one range of it, for epochs on threads), ``train_epoch_opt``
(a whole dense epoch per compiled call on this thread: forward, deltas, the gradient into a
buffer, then the update, every mini-batch) and ``train_epoch_opt_sparse`` (the same with x in
``sparse_cpu``'s form, on one or two threads; no twin: another input form, tested against
``train_epoch_opt``).

Shapes: flat ``params[P]``, ``grads[P]`` (Σ over the mini-batch), ``decayed[P]`` (bool: the
weights, which take the book's L2 ``l2·w`` and L1 ``l1·sgn(w)`` in their gradient),
``state[S, P]`` (S = ``config.OPTIMIZER_SLOTS``), ``step: int64[1]`` (updates taken so far;
incremented here), ``hyper: float64[5]`` (β1 or momentum, β2 or α, eps, AdamW's weight decay,
the L1 coefficient l1 = λ₁/n). The epoch's arrays: ``dense_epoch_cpu``'s.

NumPy twins: ``fastnet.reference.optim``. Tests: ``tests/test_optimizers.py``.
"""

import math

import numpy as np
from numba import njit

from . import config
from . import sync_cpu as _sync
from .blocks_cpu import rows_forward, rows_update
from .config import ADAM, ADAMW, MOMENTUM, NESTEROV, RMSPROP
from .dense_cpu import activate, layer_offsets, step_upper
from .dense_epoch_cpu import workspaces
from .gather_cpu import gather_cols, scatter_cols
from .simd import rows_of
from .sparse_cpu import aligned_zeros, padded_width
from .split_cpu import split

_jit = njit(**config.CPU_JIT)


@njit(**config.CPU_JIT, inline="always")
def _penalty(w, decayed, l2, l1, zero):
    """The regularisers' gradient of one entry: l2·w + l1·sgn(w) for a weight, 0 else."""
    if not decayed:
        return zero
    return l2 * w + (l1 if w > zero else -l1 if w < zero else zero)


@_jit
def optimizer_step(params, grads, decayed, gscale, l2, lr, code, hyper, state, step):
    """params ← one update by optimizer ``code`` from the gradient g = gscale·grads + l2·params
    (l2 where ``decayed``), in place on params, state and step (``apply_range`` over all)."""
    step[0] += 1
    apply_range(params, grads, decayed, gscale, l2, lr, code, hyper, state, step[0], 0,
                params.shape[0])


@_jit
def apply_range(params, grads, decayed, gscale, l2, lr, code, hyper, state, t, lo, hi):
    """Update number ``t`` (from 1) of entries [lo, hi) (disjoint ranges can run on different
    threads). One loop per rule, over slices (each vectorises); the constants (1 − β, the
    bias corrections) in float64, then in params' dtype. The gradient of a weight is
    gscale·grads + l2·w + l1·sgn(w)."""
    T = params.dtype.type
    b1, b2, eps = T(hyper[0]), T(hyper[1]), T(hyper[2])
    c1, c2 = T(1.0 - hyper[0]), T(1.0 - hyper[1])  # from float64: no cancellation in dtype
    gs, lw, l1, lrt = T(gscale), T(l2), T(hyper[4]), T(lr)
    zero = T(0)
    p, g, d = params[lo:hi], grads[lo:hi], decayed[lo:hi]
    n = p.shape[0]
    if code == MOMENTUM or code == NESTEROV:
        v = state[0][lo:hi]
        nest = code == NESTEROV
        for i in range(n):
            gi = gs * g[i] + _penalty(p[i], d[i], lw, l1, zero)
            vi = b1 * v[i] + gi
            v[i] = vi
            p[i] -= lrt * (gi + b1 * vi if nest else vi)
    elif code == RMSPROP:
        s = state[0][lo:hi]
        for i in range(n):
            gi = gs * g[i] + _penalty(p[i], d[i], lw, l1, zero)
            si = b2 * s[i] + c2 * gi * gi
            s[i] = si
            p[i] -= lrt * gi / (math.sqrt(si) + eps)
    elif code == ADAM or code == ADAMW:
        m, v = state[0][lo:hi], state[1][lo:hi]
        # 1 − βᵗ as −expm1(t·log1p(β − 1)): no cancellation (1 − 0.999⁶ in plain float64
        # arithmetic keeps only two thirds of its digits)
        size = T(lr / -math.expm1(t * math.log1p(hyper[0] - 1.0)))       # lr / (1 − β1ᵗ)
        root2 = T(math.sqrt(-math.expm1(t * math.log1p(hyper[1] - 1.0))))  # √(1 − β2ᵗ)
        keep = T(1.0 - lr * hyper[3]) if code == ADAMW else T(1)  # decoupled decay (AdamW)
        for i in range(n):
            gi = gs * g[i] + _penalty(p[i], d[i], lw, l1, zero)
            mi = b1 * m[i] + c1 * gi
            vi = b2 * v[i] + c2 * gi * gi
            m[i] = mi
            v[i] = vi
            p[i] = keep * p[i] - size * mi / (math.sqrt(vi) / root2 + eps)
    else:                                                    # plain SGD
        for i in range(n):
            p[i] -= lrt * (gs * g[i] + _penalty(p[i], d[i], lw, l1, zero))


@_jit
def train_epoch_opt(params, layout, acts, loss, x, y, order, batch_size, lr, l2, code, hyper,
                    state, step, decayed, sync):
    """One epoch of mini-batch training by optimizer ``code``, in place on params, state and
    step: mini-batches are consecutive slices of ``order`` (the last may be shorter), x[N, n0]
    and y[N, nL] read through it. Each mini-batch: the forward pass and every layer's δ
    (``dense_cpu.step_upper`` without its update), Σ-gradients into a buffer
    (``rows_update`` with decay 0 writes −scale·δᵀa, so scale −1 gives +δᵀa), then
    ``optimizer_step`` with gscale 1/m. ``sync``: a ``sync_cpu`` array: a mini-batch done
    advances its progress; its abort flag stops the epoch before the next."""
    N = order.shape[0]
    batch_size = max(1, min(batch_size, N))
    ws = workspaces(layout, batch_size, x)
    zs, acts_buf, deltas = ws[0], ws[1], ws[2]
    offs = layer_offsets(layout, batch_size)
    grads = np.zeros_like(params)
    T = params.dtype.type
    no_rows = order[:0]
    L = layout.shape[0]
    n0, h0, w0_off, b0_off = layout[0, 0], layout[0, 1], layout[0, 2], layout[0, 3]
    for k in range(0, N, batch_size):
        m = min(batch_size, N - k)
        rows = order[k:k + m]
        z0 = rows_of(zs, 0, m, h0)
        rows_forward(x, rows, m, rows_of(params, w0_off, h0, n0),
                     params[b0_off:b0_off + h0], z0, 0, h0)
        activate(z0, rows_of(acts_buf, 0, m, h0), acts[0])
        step_upper(params, layout, acts, loss, y, rows, offs, ws, lr, T(1), False, 0)
        for l in range(L):
            n_in, n_out, w_off, b_off = layout[l, 0], layout[l, 1], layout[l, 2], layout[l, 3]
            gb = grads[b_off:b_off + n_out]
            gb[:] = 0
            d = rows_of(deltas, offs[l], m, n_out)
            gw = rows_of(grads, w_off, n_out, n_in)
            if l == 0:
                rows_update(x, rows, m, d, gw, gb, T(-1), T(0), 0, n_out)
            else:
                rows_update(rows_of(acts_buf, offs[l - 1], m, n_in), no_rows, m, d, gw, gb,
                            T(-1), T(0), 0, n_out)
        optimizer_step(params, grads, decayed, 1.0 / m, l2, lr, code, hyper, state, step)
        _sync.advance(sync)
        if _sync.aborted(sync):
            return


@_jit
def sparse_setup(params, layout, state, batch_size):
    """The sparse epoch's arrays: ``(ws, offs, grads, wt, gt, st, on, zp, cp)`` —
    ``dense_epoch_cpu.workspaces``, the layer offsets, the gradient buffer, layer 0's weights,
    gradient and state rows transposed and padded (wt, gt[n_in, h_pad], st[S, n_in·h_pad]), an
    all-true mask for them, z rows zp[batch, h_pad] and per input part the padded δ⁰ rows
    cp[2, batch, h_pad]."""
    n0, h0, w0_off = layout[0, 0], layout[0, 1], layout[0, 2]
    S = state.shape[0]
    hp = padded_width(h0, params.itemsize)
    wt = aligned_zeros((n0, hp), params)
    st = aligned_zeros((max(S, 1), n0 * hp), params)
    for j in range(h0):
        for kk in range(n0):
            wt[kk, j] = params[w0_off + j * n0 + kk]
            for q in range(S):
                st[q, kk * hp + j] = state[q, w0_off + j * n0 + kk]
    return (workspaces(layout, batch_size, params), layer_offsets(layout, batch_size),
            np.zeros_like(params), wt, aligned_zeros((n0, hp), params), st,
            np.ones(n0 * hp, dtype=np.bool_), aligned_zeros((batch_size, hp), params),
            aligned_zeros((2, batch_size, hp), params))


@_jit
def sparse_write_back(params, layout, state, wt, st):
    """Layer 0's weights and state rows from the epoch's transposed copies into the buffer."""
    n0, h0, w0_off = layout[0, 0], layout[0, 1], layout[0, 2]
    hp = wt.shape[1]
    for j in range(h0):
        for kk in range(n0):
            params[w0_off + j * n0 + kk] = wt[kk, j]
            for q in range(state.shape[0]):
                state[q, w0_off + j * n0 + kk] = st[q, kk * hp + j]


@_jit
def sparse_worker(tid, nthreads, sync, params, layout, acts, loss, csr, y, order, batch_size,
                  lr, l2, code, hyper, state, decayed, t0, arrays):
    """Thread ``tid`` of ``nthreads`` (1 or 2) of ``train_epoch_opt_sparse``, updates t0 + 1,
    t0 + 2, …. Per mini-batch: its half of the samples' forward and deltas; a barrier; its part
    of the inputs (``sparse_cpu``'s k_split) for layer 0's gradient and update, and its rows of
    the upper layers' gradients; a barrier; the last thread updates the rest of the buffer; a
    barrier. One thread runs both halves and both parts in the same order: the same result
    for 1 and 2 threads, bit for bit."""
    indptr, indices, values, mid, k_split = csr
    ws, offs, grads, wt, gt, st, on, zp, cp = arrays
    zs, acts_buf, deltas = ws[0], ws[1], ws[2]
    N, P, L = order.shape[0], params.shape[0], layout.shape[0]
    T = params.dtype.type
    n0, h0, w0_off, b0_off = layout[0, 0], layout[0, 1], layout[0, 2], layout[0, 3]
    hp = wt.shape[1]
    w_flat, g_flat = wt.reshape(n0 * hp), gt.reshape(n0 * hp)
    b0 = params[b0_off:b0_off + h0]
    p_lo = 0 if tid == 0 else 1
    p_hi = 2 if nthreads == 1 else tid + 1
    no_rows = order[:0]
    gen = 0
    t = t0
    for k in range(0, N, batch_size):
        m = min(batch_size, N - k)
        rows = order[k:k + m]
        t += 1
        h = (m + 1) // 2
        s_lo, s_hi = (0, m) if nthreads == 1 else ((0, h) if tid == 0 else (h, m))
        for i in range(s_lo, s_hi):
            zi = zp[i]
            zi[:h0] = b0
            r = rows[i]
            gather_cols(values, indices, indptr[r], indptr[r + 1], wt, 0, hp, zi)
            for j in range(h0):
                zs[i * h0 + j] = zi[j]
        if s_hi > s_lo:
            activate(rows_of(zs, s_lo * h0, s_hi - s_lo, h0),
                     rows_of(acts_buf, s_lo * h0, s_hi - s_lo, h0), acts[0])
            step_upper(params, layout, acts, loss, y, rows[s_lo:s_hi], offs, ws, lr, T(1),
                       False, s_lo)
        gen = _sync.barrier(sync, nthreads, gen)        # every δ of the mini-batch ready
        if _sync.aborted(sync):
            return
        for part in range(p_lo, p_hi):                  # layer 0: this part's weight rows
            r_lo, r_hi = (0, k_split) if part == 0 else (k_split, n0)
            g_flat[r_lo * hp:r_hi * hp] = 0
            for i in range(m):
                ci = cp[part, i]
                for j in range(h0):
                    ci[j] = deltas[i * h0 + j]
                r = rows[i]
                s, e = (indptr[r], mid[r]) if part == 0 else (mid[r], indptr[r + 1])
                scatter_cols(values, indices, s, e, gt, 0, hp, ci)
            apply_range(w_flat, g_flat, on, 1.0 / m, l2, lr, code, hyper, st, t, r_lo * hp,
                        r_hi * hp)
        if tid == 0:
            gb = grads[b0_off:b0_off + h0]
            gb[:] = 0
            for i in range(m):
                for j in range(h0):
                    gb[j] += deltas[i * h0 + j]
        for l in range(1, L):                           # upper layers: this thread's rows
            n_in, n_out, w_off, b_off = layout[l, 0], layout[l, 1], layout[l, 2], layout[l, 3]
            lo, hi = split(n_out, nthreads, tid, 2)
            if lo < hi:
                gbl = grads[b_off:b_off + n_out]
                gbl[lo:hi] = 0
                rows_update(rows_of(acts_buf, offs[l - 1], m, n_in), no_rows, m,
                            rows_of(deltas, offs[l], m, n_out),
                            rows_of(grads, w_off, n_out, n_in), gbl, T(-1), T(0), lo, hi)
        gen = _sync.barrier(sync, nthreads, gen)        # the whole gradient ready
        if _sync.aborted(sync):
            return
        if tid == nthreads - 1:                         # the rest of the buffer
            apply_range(params, grads, decayed, 1.0 / m, l2, lr, code, hyper, state, t, 0,
                        w0_off)
            apply_range(params, grads, decayed, 1.0 / m, l2, lr, code, hyper, state, t,
                        w0_off + n0 * h0, P)
        gen = _sync.barrier(sync, nthreads, gen)        # every parameter updated
        if _sync.aborted(sync):
            return
        if tid == 0:
            _sync.advance(sync)


def train_epoch_opt_sparse(params, layout, acts, loss, csr, y, order, batch_size, lr, l2,
                           code, hyper, state, step, decayed, sync, nthreads=1):
    """``train_epoch_opt`` with x given as ``sparse_cpu.sparse_inputs(x)``, on ``nthreads``
    (1 or 2) OS threads: layer 0's z and gradient over each sample's nonzeros only
    (``gather_cpu``'s vector gathers and scatters). For the epoch, layer 0's weights, their
    gradient and state rows are held transposed and padded to whole cache lines (a nonzero's
    weights are one row; the pads stay zero: zero gradient, zero update), updated by
    ``apply_range`` apart from the rest of the buffer and written back at the end
    (``sparse_setup``, ``sparse_worker``, ``sparse_write_back``). ``step`` advances by the
    mini-batches trained. Sums run in another order than the dense epoch's."""
    nthreads = max(1, min(nthreads, 2))
    batch_size = max(1, min(batch_size, len(order)))
    arrays = sparse_setup(params, layout, state, batch_size)
    t0, done0 = int(step[0]), int(sync[_sync.PROGRESS])
    if nthreads == 1:
        sparse_worker(0, 1, sync, params, layout, acts, loss, csr, y, order, batch_size, lr, l2,
                      code, hyper, state, decayed, t0, arrays)
    else:
        _sync.run_threads(lambda tid: sparse_worker(tid, nthreads, sync, params, layout, acts,
                                                    loss, csr, y, order, batch_size, lr, l2,
                                                    code, hyper, state, decayed, t0, arrays),
                          nthreads, sync)
    step[0] = t0 + int(sync[_sync.PROGRESS]) - done0
    sparse_write_back(params, layout, state, arrays[3], arrays[5])
