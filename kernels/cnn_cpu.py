"""A whole training epoch of a convolutional network in one compiled call, on OS threads, on the
CPU: the book's first CNN shape, ConvPool → Flatten → Dense → … → Dense (any elementwise
activations, softmax output allowed, any loss). Each thread takes a share of every
mini-batch's samples through the forward and backward pass; two ``sync_cpu`` barriers per
mini-batch; results agree across thread counts to rounding (the conv gradient is summed per
thread).

Shapes: the conv layer is layer 0 of a dense-style ``layout[L, 4]`` (n_in = c·h·w, n_out =
c_out·oh·ow: its z and a are the pooled pre-activations and activations, a sample's row its
(c_out, oh, ow) block), rows 1.. the dense layers; ``cg`` the conv geometry;
``x: float[N, c, h, w]``, ``y: float[N, n_out]``, ``order: int64[N]``.

``train_epoch_opt``: the same epoch by another optimizer (``optim_cpu``): the gradients into a
buffer, then the update split over the threads by ranges (three barriers per mini-batch).

NumPy twin: ``fastnet.reference`` (``dense``, ``conv``, ``optim``) through
``Model(device="numpy")``. Tests: ``tests/test_cnn_epoch.py``, ``tests/test_optimizers.py``. Why one call per epoch: docs/kernels.md.
"""

import numpy as np

from . import blocks_cpu as blocks
from . import config
from . import conv_cpu as _conv
from . import conv_plan as _plan
from . import dense_cpu as _dense
from . import optim_cpu
from . import split_cpu
from . import sync_cpu as _sync
from .config import LINEAR, SOFTMAX
from numba import njit

_jit = njit(**config.CPU_JIT)

# cg (int64): the conv layer's geometry and where its parameters are in the flat buffer
C_IN, H, W, C_OUT, KH, KW, PH, PW, W_OFF, B_OFF = range(10)


@_jit
def workspaces(params, layout, cg, batch_size, nthreads):
    """Everything an epoch writes besides the parameters: the dense-style workspaces (zs,
    activations, deltas), the gathered mini-batch xb[batch, c, h, w], the winners' indices,
    per thread the conv scratch (forward; backward without dx: ``conv_plan.backward_scratch``)
    and the conv gradient's partial sums, and the conv backward's plan (tap offsets, winners'
    places: shapes only)."""
    L = layout.shape[0]
    offs = _dense.layer_offsets(layout, batch_size)
    dt = params.dtype
    zs, acts_buf, deltas = np.zeros(offs[L], dt), np.zeros(offs[L], dt), np.zeros(offs[L], dt)
    c_in, h, wd, c_out, kh, kw = cg[C_IN], cg[H], cg[W], cg[C_OUT], cg[KH], cg[KW]
    oh, ow = (h - kh + 1) // cg[PH], (wd - kw + 1) // cg[PW]
    xb = np.zeros((batch_size, c_in, h, wd), dt)
    argmax = np.zeros((batch_size, c_out, oh, ow), np.int32)
    wconv = params[cg[W_OFF]:cg[W_OFF] + c_out * c_in * kh * kw].reshape(c_out, c_in, kh, kw)
    fwd = _plan.forward_scratch(xb, wconv, oh, ow, nthreads)
    dw_part = np.zeros((nthreads, c_out, c_in * kh * kw), dt)
    db_part = np.zeros((nthreads, c_out), dt)
    bwd = _plan.backward_scratch(xb, wconv, oh * ow, False, nthreads)
    plan = _plan.backward_plan(xb, wconv, False, False)   # offsets only: no dx, no filters
    return (zs, acts_buf, deltas), offs, xb, argmax, fwd, bwd, dw_part, db_part, plan


@_jit
def _samples_pass(params, layout, acts, loss, cg, y, rows, s0, ws, offs, xb, argmax, fwd_k,
                  bwd_k, dw_k, db_k, plan):
    """One thread's samples s0.. (``rows``: their indices into y) of a mini-batch whose images
    are in xb: conv forward, the dense forward, every delta, and the conv layer's weight and
    bias gradients added into dw_k, db_k (zeroed here). Reads the weights, writes only these
    samples' workspace rows and this thread's scratch."""
    zs, acts_buf, deltas = ws
    L = layout.shape[0]
    m = rows.shape[0]
    s1 = s0 + m
    B = xb.shape[0]
    c_in, c_out, kh, kw = cg[C_IN], cg[C_OUT], cg[KH], cg[KW]
    oh, ow = argmax.shape[2], argmax.shape[3]
    wconv = params[cg[W_OFF]:cg[W_OFF] + c_out * c_in * kh * kw].reshape(c_out, c_in, kh, kw)
    bconv = params[cg[B_OFF]:cg[B_OFF] + c_out]
    n0 = layout[0, 1]
    z4 = zs[0:B * n0].reshape(B, c_out, oh, ow)
    a4 = acts_buf[0:B * n0].reshape(B, c_out, oh, ow)
    d4 = deltas[0:B * n0].reshape(B, c_out, oh, ow)
    zf, fbuf, ibuf, act_buf, starts = fwd_k
    _conv.forward_images(xb, wconv, plan[0], bconv, (cg[PH], cg[PW]), acts[0], (a4, z4, argmax),
                          s0, s1, (zf, (fbuf, ibuf), act_buf, starts))
    no_rows = rows[:0]
    for l in range(1, L):
        n_in, n_out, w_off, b_off = layout[l, 0], layout[l, 1], layout[l, 2], layout[l, 3]
        z = _dense.rows_of(zs, offs[l] + s0 * n_out, m, n_out)
        a = _dense.rows_of(acts_buf, offs[l] + s0 * n_out, m, n_out)
        ap = _dense.rows_of(acts_buf, offs[l - 1] + s0 * n_in, m, n_in)
        w = _dense.rows_of(params, w_off, n_out, n_in)
        blocks.rows_forward(ap, no_rows, m, w, params[b_off:b_off + n_out], z, 0, n_out)
        if acts[l] == SOFTMAX:
            _dense.activate(z, a, SOFTMAX)
        else:
            _dense.activate_flat(z, a, acts[l])
    for l in range(L - 1, 0, -1):
        n_in, n_out, w_off = layout[l, 0], layout[l, 1], layout[l, 2]
        o, op = offs[l] + s0 * n_out, offs[l - 1] + s0 * n_in
        d = _dense.rows_of(deltas, o, m, n_out)
        if l == L - 1:
            _dense.output_delta_rows(_dense.rows_of(zs, o, m, n_out),
                                      _dense.rows_of(acts_buf, o, m, n_out), y, rows, loss,
                                      acts[l], d)
        dp = _dense.rows_of(deltas, op, m, n_in)
        blocks.rows_backprop(d, _dense.rows_of(params, w_off, n_out, n_in), dp, 0, n_in)
        _dense.activation_prime(_dense.rows_of(zs, op, m, n_in),
                                _dense.rows_of(acts_buf, op, m, n_in), acts[l - 1], dp)
    # the conv layer: δ⁰ is already ∂C/∂z⁰, so it is routed with a linear activation
    dw_k[:] = 0
    db_k[:] = 0
    _conv.backward_images(xb, wconv, plan, (z4, a4, argmax), d4, LINEAR, xb[:0], s0, s1,
                           bwd_k, dw_k, db_k)


@_jit
def _conv_update(params, cg, dw_part, db_part, scale, decay):
    """The conv layer's SGD step from the threads' partial gradients: w ← decay·w − scale·Σ dw,
    b ← b − scale·Σ db."""
    c_out, n_taps = dw_part.shape[1], dw_part.shape[2]
    w = params[cg[W_OFF]:cg[W_OFF] + c_out * n_taps]
    b = params[cg[B_OFF]:cg[B_OFF] + c_out]
    for o in range(c_out):
        s = db_part[0, o]
        for k in range(1, db_part.shape[0]):
            s += db_part[k, o]
        b[o] -= scale * s
        for t in range(n_taps):
            g = dw_part[0, o, t]
            for k in range(1, dw_part.shape[0]):
                g += dw_part[k, o, t]
            w[o * n_taps + t] = decay * w[o * n_taps + t] - scale * g


@_jit
def epoch_worker(tid, nthreads, sync, params, layout, acts, loss, cg, x, y, order, batch_size,
                 lr, decay, wsp):
    """Thread ``tid`` of ``nthreads`` running one epoch together (``train_epoch`` with one
    thread is the case nthreads = 1): per mini-batch, its share of the samples
    (``_samples_pass``), a barrier, its share of every dense layer's rows (the last thread:
    the conv layer too), a barrier."""
    ws, offs, xb, argmax, fwd, bwd, dw_part, db_part, plan = wsp
    N = order.shape[0]
    T = params.dtype.type
    dec = T(decay)
    gen = 0
    fwd_k = (fwd[0][tid], fwd[1][tid], fwd[2][tid], fwd[3][tid], fwd[4])
    bwd_k = _plan.chunk_scratch(bwd, tid)
    for k in range(0, N, batch_size):
        m = min(batch_size, N - k)
        s0, s1 = _plan.chunk(tid, nthreads, m)
        for s in range(s0, s1):
            xb[s] = x[order[k + s]]
        if s1 > s0:
            _samples_pass(params, layout, acts, loss, cg, y, order[k + s0:k + s1], s0, ws, offs,
                          xb, argmax, fwd_k, bwd_k, dw_part[tid], db_part[tid], plan)
        else:
            dw_part[tid][:] = 0
            db_part[tid][:] = 0
        gen = _sync.barrier(sync, nthreads, gen)  # deltas and conv partials complete
        if _sync.aborted(sync):
            return
        _dense.upper_updates(params, layout, offs, ws, m, lr, dec, tid, nthreads)
        if tid == nthreads - 1:
            _conv_update(params, cg, dw_part, db_part, T(lr / m), dec)
        gen = _sync.barrier(sync, nthreads, gen)  # every weight updated
        if _sync.aborted(sync):
            return
        if tid == 0:
            _sync.advance(sync)


def epoch_threads(layout, cg, batch_size, nthreads):
    """How many threads ``train_epoch`` should use: at most ``nthreads`` and one per sample of
    a mini-batch, and one when a mini-batch's forward is too small to pay for two barriers
    (``dense_cpu._PAR_MIN_WORK`` multiply-adds, the dense epoch's threshold)."""
    conv = int(layout[0, 1]) * int(cg[PH] * cg[PW]) * int(cg[C_IN] * cg[KH] * cg[KW])
    dense = sum(int(layout[l, 0]) * int(layout[l, 1]) for l in range(1, len(layout)))
    if batch_size * (conv + dense) < split_cpu.PAR_MIN_WORK:
        return 1
    return max(1, min(nthreads, batch_size))


def train_epoch(params, layout, acts, loss, cg, x, y, order, batch_size, lr, decay, nthreads,
                sync=None):
    """One epoch of mini-batch SGD in place on ``params`` (flat, the model's buffer), on
    ``nthreads`` OS threads (this one and nthreads − 1 started here). layout[L, 4] and acts[L]:
    row 0 the conv layer (see the module doc), rows 1.. the dense layers; cg: the conv layer's
    geometry; x[N, c, h, w]; y[N, n_out] targets; mini-batches are consecutive slices of
    ``order`` (the last may be shorter). ``sync``: as ``dense_epoch_cpu``'s."""
    batch_size = max(1, min(batch_size, len(order)))
    nthreads = max(1, min(nthreads, batch_size))
    wsp = workspaces(params, layout, cg, batch_size, nthreads)
    if sync is None:
        sync = np.zeros(_sync.SYNC_SIZE, dtype=np.int64)
    _sync.run_threads(lambda tid: epoch_worker(tid, nthreads, sync, params, layout, acts, loss,
                                               cg, x, y, order, batch_size, lr, decay, wsp),
                      nthreads, sync)


# ------------------------------------------------------------------------ other optimizers
@_jit
def _gradients(params, layout, cg, offs, ws, m, grads, dw_part, db_part, part, nparts):
    """Σ-gradients of a mini-batch into ``grads`` (the flat buffer's layout): range ``part``
    of each dense layer's rows (``rows_update`` with decay 0 writes −scale·δᵀa: scale −1), and
    with the last part the conv layer's, summed over the threads' partials in order."""
    T = params.dtype.type
    acts_buf, deltas = ws[1], ws[2]
    for l in range(1, layout.shape[0]):
        n_in, n_out, w_off, b_off = layout[l, 0], layout[l, 1], layout[l, 2], layout[l, 3]
        lo, hi = split_cpu.split(n_out, nparts, part, 2)
        if lo >= hi:
            continue
        gb = grads[b_off:b_off + n_out]
        gb[lo:hi] = 0
        blocks.rows_update(_dense.rows_of(acts_buf, offs[l - 1], m, n_in), blocks.NO_ROWS, m,
                           _dense.rows_of(deltas, offs[l], m, n_out),
                           _dense.rows_of(grads, w_off, n_out, n_in), gb, T(-1), T(0), lo, hi)
    if part == nparts - 1:
        c_out, n_taps = dw_part.shape[1], dw_part.shape[2]
        gw = grads[cg[W_OFF]:cg[W_OFF] + c_out * n_taps]
        gb = grads[cg[B_OFF]:cg[B_OFF] + c_out]
        for o in range(c_out):
            s = db_part[0, o]
            for k in range(1, db_part.shape[0]):
                s += db_part[k, o]
            gb[o] = s
            for t in range(n_taps):
                g = dw_part[0, o, t]
                for k in range(1, dw_part.shape[0]):
                    g += dw_part[k, o, t]
                gw[o * n_taps + t] = g


@_jit
def opt_worker(tid, nthreads, sync, params, layout, acts, loss, cg, x, y, order, batch_size,
               lr, l2, code, hyper, state, t0, decayed, grads, wsp):
    """Thread ``tid`` of ``nthreads`` running one epoch by optimizer ``code``: per
    mini-batch its share of the samples, a barrier, its share of the gradients, a barrier,
    its range of the update (number t0 + 1, t0 + 2, … of the optimizer), a barrier."""
    ws, offs, xb, argmax, fwd, bwd, dw_part, db_part, plan = wsp
    N = order.shape[0]
    gen = 0
    fwd_k = (fwd[0][tid], fwd[1][tid], fwd[2][tid], fwd[3][tid], fwd[4])
    bwd_k = _plan.chunk_scratch(bwd, tid)
    lo, hi = split_cpu.split(params.shape[0], nthreads, tid, 16)
    t = t0
    for k in range(0, N, batch_size):
        m = min(batch_size, N - k)
        s0, s1 = _plan.chunk(tid, nthreads, m)
        for s in range(s0, s1):
            xb[s] = x[order[k + s]]
        if s1 > s0:
            _samples_pass(params, layout, acts, loss, cg, y, order[k + s0:k + s1], s0, ws, offs,
                          xb, argmax, fwd_k, bwd_k, dw_part[tid], db_part[tid], plan)
        else:
            dw_part[tid][:] = 0
            db_part[tid][:] = 0
        gen = _sync.barrier(sync, nthreads, gen)  # deltas and conv partials complete
        if _sync.aborted(sync):
            return
        _gradients(params, layout, cg, offs, ws, m, grads, dw_part, db_part, tid, nthreads)
        gen = _sync.barrier(sync, nthreads, gen)  # the gradient complete
        if _sync.aborted(sync):
            return
        t += 1
        optim_cpu.apply_range(params, grads, decayed, 1.0 / m, l2, lr, code, hyper, state, t,
                              lo, hi)
        gen = _sync.barrier(sync, nthreads, gen)  # every parameter updated
        if _sync.aborted(sync):
            return
        if tid == 0:
            _sync.advance(sync)


def train_epoch_opt(params, layout, acts, loss, cg, x, y, order, batch_size, lr, l2, code,
                    hyper, state, step, decayed, nthreads, sync=None):
    """``train_epoch`` by optimizer ``code`` (``optim_cpu.optimizer_step``'s arguments: l2 =
    λ/n on the weights where ``decayed``, hyper, state[S, P], step: int64[1], advanced by the
    mini-batches trained)."""
    batch_size = max(1, min(batch_size, len(order)))
    nthreads = max(1, min(nthreads, batch_size))
    wsp = workspaces(params, layout, cg, batch_size, nthreads)
    grads = np.zeros_like(params)
    if sync is None:
        sync = np.zeros(_sync.SYNC_SIZE, dtype=np.int64)
    t0, done0 = int(step[0]), int(sync[_sync.PROGRESS])
    _sync.run_threads(lambda tid: opt_worker(tid, nthreads, sync, params, layout, acts, loss, cg,
                                             x, y, order, batch_size, lr, l2, code, hyper,
                                             state, t0, decayed, grads, wsp),
                      nthreads, sync)
    step[0] = t0 + int(sync[_sync.PROGRESS]) - done0
