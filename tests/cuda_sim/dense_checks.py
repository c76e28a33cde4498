"""Checks of the CUDA dense kernels (``fastnet.kernels.dense_cuda``) against the NumPy reference,
shared by the simulator run (``sim_dense_cuda.py``, tiny shapes, in a subprocess) and the
real-GPU tests in ``tests/test_dense_cuda.py`` (MNIST-sized shapes).

Not a test module (no ``test_`` prefix): importing it imports ``numba.cuda``, so the main pytest
process only imports it from tests that run on a real GPU.

The oracle is ``fastnet.reference.dense`` run in float64; the kernel result is compared in its
own dtype, by the rule of tests/helpers.py: the forward pass through ``dense_stack_bounds`` and
``cost_bound``, an epoch within ``compounded_bound`` (the same epoch's float32-vs-float64
difference in the reference, times K).
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from fastnet.kernels import dense_cuda as DC
from fastnet.reference import dense as R
from helpers import (assert_close, compounded_bound, cost_bound, dense_reference_runs,
                     dense_stack_bounds)


def make_problem(sizes, n, seed, *, w_scale=1.0, x_scale=1.0):
    """float64 params (book init: N(0,1) biases, N(0,1)/sqrt(n_in) weights), x in [0, x_scale),
    one-hot y, and a random visit order."""
    rng = np.random.default_rng(seed)
    layout = R.layout_for(sizes)
    params = np.empty(R.n_params(layout))
    for (w, b), n_in in zip(R.unpack(params, layout), sizes[:-1]):
        w[...] = w_scale * rng.standard_normal(w.shape) / np.sqrt(n_in)
        b[...] = w_scale * rng.standard_normal(b.shape)
    x = x_scale * rng.random((n, sizes[0]))
    y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], n)]
    order = rng.permutation(n).astype(np.int64)
    return layout, params, x, y, order


def check_train_epoch(sizes, acts, loss, batch_size, dtype, *, n=7, lr=0.5, decay=0.99,
                      seed=0, w_scale=1.0, x_scale=1.0, **tuning):
    """One epoch on the device == one epoch of the reference (params compared)."""
    dtype = np.dtype(dtype)
    acts = np.asarray(acts, dtype=np.int64)
    layout, params, x, y, order = make_problem(sizes, n, seed, w_scale=w_scale, x_scale=x_scale)
    p_in = params.astype(dtype)
    exact, ref32 = dense_reference_runs(p_in, layout, acts, loss, x.astype(dtype), y, [order],
                                        batch_size, lr, decay)
    d_params = cuda.to_device(p_in)
    DC.train_epoch(d_params, layout, acts, loss, cuda.to_device(x.astype(dtype)),
                   cuda.to_device(y.astype(dtype)), cuda.to_device(order), batch_size, lr, decay,
                   **tuning)
    got = d_params.copy_to_host()
    assert np.all(np.isfinite(got)), "non-finite parameters after the epoch"
    assert_close(got, exact.astype(dtype), name="params",
                 bound=compounded_bound(ref32, exact, dtype))


def check_inference(sizes, acts, loss, dtype, *, n=9, seed=0, w_scale=1.0, x_scale=1.0):
    """forward == reference activations; loss_and_correct == reference cost and hit count."""
    dtype = np.dtype(dtype)
    acts = np.asarray(acts, dtype=np.int64)
    layout, params, x, y, _ = make_problem(sizes, n, seed, w_scale=w_scale, x_scale=x_scale)
    p, xd = params.astype(dtype), x.astype(dtype)
    zs, activations, ez, ea = dense_stack_bounds(p, layout, acts, xd, dtype)
    exp_cost, exp_hits = R.evaluate(p.astype(np.float64), layout, acts, loss,
                                    xd.astype(np.float64), y, n, 1)
    d_params, d_x = cuda.to_device(p), cuda.to_device(xd)
    out = DC.forward(d_params, layout, acts, d_x).copy_to_host()
    assert_close(out, activations[-1].astype(dtype), name="forward", bound=ea[-1])
    cost, hits = DC.loss_and_correct(d_params, layout, acts, loss, d_x,
                                     cuda.to_device(y.astype(dtype)))
    assert isinstance(hits, int) and isinstance(cost, float)
    assert_close(np.float64(cost), np.float64(exp_cost), name="cost",
                 bound=cost_bound(zs[-1], activations[-1], y, loss, dtype, ez[-1], ea[-1]))
    # A near-tie between two outputs may flip in float32; allow one such row there.
    assert abs(hits - exp_hits) <= (0 if dtype == np.float64 else 1), (hits, exp_hits)
