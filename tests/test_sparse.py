"""The sparse-input epoch (kernels/sparse_cpu.py, sparse_epoch_cpu.py) against the NumPy
reference, its vector intrinsics (gather_cpu.py) against NumPy, and the CPU backend's choice between the sparse and dense epochs.

Values are compared as in tests/test_dense.py, by the rule of tests/helpers.py: single kernels
with their sums' n and Σ|terms|, inference through ``dense_stack_bounds``, and epochs against
the float64 reference with ``compounded_bound``.
"""

import numpy as np
import pytest
from numba.core.errors import TypingError

from fastnet import Model
from fastnet.devices.dense import CpuDense, SparseInputs
from fastnet.kernels import dense_cpu, dense_epoch_cpu, sync_cpu
from fastnet.kernels import gather_cpu as G
from fastnet.kernels import sparse_cpu as S
from fastnet.kernels import sparse_epoch_cpu as SE
from fastnet.kernels.config import (CROSS_ENTROPY, LINEAR, LOG_LIKELIHOOD, QUADRATIC, RELU,
                                    SIGMOID, SOFTMAX, SOFTPLUS, TANH)
from fastnet.reference import dense as R
from helpers import (assert_close, call_with_watchdog, compounded_bound, cost_bound,
                     cost_difference_bound, dense_reference_runs, dense_stack_bounds, fit_orders,
                     rounding_bound)

DTYPES = [np.float32, np.float64]
NETS = [  # sizes, activations, loss (as in test_dense, plus a layer 0 wider than 4 vectors)
    ([5, 4, 3], [SIGMOID, SIGMOID], QUADRATIC),
    ([6, 7, 5, 3], [TANH, RELU, SOFTMAX], LOG_LIKELIHOOD),
    ([3, 9, 2], [SOFTPLUS, SIGMOID], CROSS_ENTROPY),
    ([4, 3], [LINEAR], QUADRATIC),
    ([7, 5], [SOFTMAX], LOG_LIKELIHOOD),
    ([40, 37, 10], [SIGMOID, SIGMOID], QUADRATIC),
    ([784, 30, 10], [SIGMOID, SIGMOID], QUADRATIC),
    # one layer above layer 0 (``S.fused_upper``): other activations, and layers wider than
    # four vectors
    ([9, 6, 4], [RELU, SOFTMAX], LOG_LIKELIHOOD),
    ([12, 70, 33], [TANH, SIGMOID], QUADRATIC),
]


def sparse_x(rng, n, n_in, dtype, density=0.3):
    """Random inputs with about ``density`` nonzeros, and some all-zero rows."""
    x = rng.standard_normal((n, n_in)) * (rng.random((n, n_in)) < density)
    x[::7] = 0.0
    return x.astype(dtype)


def csr_of(x, nthreads=2):
    indptr, col_counts, _ = S.scan_rows(x, nthreads)
    return S.sparse_inputs(x, indptr, col_counts, nthreads)


def one_hot(labels, n, dtype):
    return np.eye(n, dtype=dtype)[labels]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,n_in,nthreads", [(1, 1, 1), (1, 9, 2), (13, 5, 3), (40, 784, 2)])
def test_sparse_inputs(n, n_in, nthreads, dtype):
    rng = np.random.default_rng(n + n_in)
    x = sparse_x(rng, n, n_in, dtype)
    indptr, indices, values, mid, k_split = csr_of(x, nthreads)
    rows, cols = np.nonzero(x)
    assert indices.dtype == np.int32 and values.dtype == dtype
    assert (np.diff(indptr) == np.count_nonzero(x, axis=1)).all()
    assert (indices == cols).all() and (values == x[rows, cols]).all()
    for i in range(n):
        seg = indices[indptr[i]:indptr[i + 1]]
        assert (seg[:mid[i] - indptr[i]] < k_split).all()
        assert (seg[mid[i] - indptr[i]:] >= k_split).all()
    in_part0 = np.count_nonzero(cols < k_split)
    assert in_part0 <= S._PART0_SHARE * len(cols)
    assert k_split == n_in or in_part0 + np.count_nonzero(cols == k_split) > \
        S._PART0_SHARE * len(cols)


def test_sparse_inputs_all_zero_and_nan():
    x = np.zeros((4, 6), np.float32)
    indptr, indices, values, mid, k_split = csr_of(x)
    assert indptr.tolist() == [0] * 5 and len(indices) == 0 and (mid == 0).all()
    x[1, 2] = np.nan  # NaN is not zero: kept, so that it shows up in the results
    _, indices, values, _, _ = csr_of(x)
    assert indices.tolist() == [2] and np.isnan(values[0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nthreads", [1, 2, 3])
def test_scan_rows_counts_and_finds_nonfinite(dtype, nthreads):
    """One read gives the row pointers, the column counts and the number of NaN/inf entries
    (the largest finite value counts as finite)."""
    rng = np.random.default_rng(7)
    x = sparse_x(rng, 29, 13, dtype)
    x[3, 4] = np.finfo(dtype).max
    x[5, 0] = -np.finfo(dtype).max
    indptr, col_counts, bad = S.scan_rows(x, nthreads)
    assert indptr.tolist() == [0] + np.cumsum(np.count_nonzero(x, axis=1)).tolist()
    assert col_counts.tolist() == np.count_nonzero(x, axis=0).tolist() and bad == 0
    x[7, 7], x[28, 12], x[0, 0] = np.nan, np.inf, -np.inf
    assert S.scan_rows(x, nthreads)[2] == 3


@pytest.mark.parametrize("dtype", DTYPES)
def test_gather_and_scatter_cols(dtype):
    """Every width from one vector to beyond four (the 4-, 2- and 1-vector blocks and their
    combinations), column ranges that start past 0, and duplicates-free random rows."""
    rng = np.random.default_rng(5)
    v = 32 // np.dtype(dtype).itemsize
    n_rows = 50
    for nvec in range(1, 8):
        width = nvec * v
        wt = S.aligned_zeros((n_rows, width + 2 * v), np.zeros(1, dtype))
        wt[:] = rng.standard_normal(wt.shape)
        idx = np.sort(rng.choice(n_rows, 17, replace=False)).astype(np.int32)
        vals = rng.standard_normal(17).astype(dtype)
        lo, hi = v, v + width
        out = rng.standard_normal(width + 2 * v).astype(dtype)
        v64, w64 = vals[2:15].astype(np.float64), wt[idx[2:15], lo:hi].astype(np.float64)
        expected, magnitude = out.astype(np.float64), np.abs(out.astype(np.float64))
        expected[lo:hi] += v64 @ w64                        # 13 products and out: n = 14
        magnitude[lo:hi] += np.abs(v64) @ np.abs(w64)
        G.gather_cols(vals, idx, 2, 15, wt, lo, hi, out)
        assert_close(out, expected.astype(dtype), n=14, magnitude=magnitude, name="gather")
        coef = rng.standard_normal(width + 2 * v).astype(dtype)
        new = wt.astype(np.float64)
        step = np.outer(vals[2:15], coef[lo:hi]).astype(np.float64)
        magnitude = np.abs(new)
        new[idx[2:15], lo:hi] += step                       # each a sum of two terms
        magnitude[idx[2:15], lo:hi] += np.abs(step)
        G.scatter_cols(vals, idx, 2, 15, wt, lo, hi, coef)
        assert_close(wt, new.astype(dtype), n=2, magnitude=magnitude, name="scatter")


def make_net(sizes, dtype, seed):
    rng = np.random.default_rng(seed)
    layout = R.layout_for(sizes)
    params = (0.5 * rng.standard_normal(R.n_params(layout))).astype(dtype)
    return layout, params, rng


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes,acts,loss", NETS)
@pytest.mark.parametrize("batch_size", [1, 3, 10])
def test_sparse_epoch_against_reference(sizes, acts, loss, batch_size, dtype):
    layout, params, rng = make_net(sizes, dtype, len(sizes) + batch_size)
    acts = np.array(acts, dtype=np.int64)
    N = 23  # not a multiple of the batch size: the last mini-batch is short
    x = sparse_x(rng, N, sizes[0], dtype)
    y = one_hot(rng.integers(0, sizes[-1], N), sizes[-1], dtype)
    order = rng.permutation(N)
    exact, ref32 = dense_reference_runs(params, layout, acts, loss, x, y, [order], batch_size,
                                        0.5, 0.99)
    SE.train_epoch(params, layout, acts, loss, csr_of(x), y, order, batch_size, 0.5,
                  0.99)
    assert_close(params, exact.astype(dtype), bound=compounded_bound(ref32, exact, dtype),
                 name="params")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes,acts,loss", NETS)
@pytest.mark.parametrize("batch_size,nthreads", [(1, 2), (4, 2), (10, 3)])
def test_sparse_epoch_threads_bit_identical(sizes, acts, loss, batch_size, nthreads, dtype):
    """Two threads (three asks for two) give the one-thread result bit for bit: the sums are
    split into the same two parts whatever the thread count. Weight decay on."""
    layout, params, rng = make_net(sizes, dtype, 11 + batch_size)
    acts = np.array(acts, dtype=np.int64)
    N = 29
    x = sparse_x(rng, N, sizes[0], dtype)
    y = one_hot(rng.integers(0, sizes[-1], N), sizes[-1], dtype)
    order = rng.permutation(N)
    csr = csr_of(x)
    one = params.copy()
    SE.train_epoch(one, layout, acts, loss, csr, y, order, batch_size, 0.5, 0.99)
    SE.train_epoch_threaded(params, layout, acts, loss, csr, y, order, batch_size, 0.5, 0.99,
                           nthreads)
    assert_close(params, one, rtol=0, atol=0, name="params")


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_upper_copies_stay_equal_and_pads_zero(dtype):
    """The fused layer above layer 0 keeps its weights twice (rows and columns); after an
    epoch with weight decay both copies are equal bit for bit, every pad is still zero, and
    the weights written back are the copies'."""
    sizes = [40, 37, 10]
    layout, params, rng = make_net(sizes, dtype, 5)
    acts = np.array([SIGMOID, SIGMOID], dtype=np.int64)
    assert S.fused_upper(layout, acts)
    N, batch = 31, 4
    x = sparse_x(rng, N, sizes[0], dtype)
    y = one_hot(rng.integers(0, sizes[-1], N), sizes[-1], dtype)
    order = rng.permutation(N).astype(np.int64)
    sp, ws = S.workspaces(params, layout, batch)
    up = S.upper_workspaces(params, layout, acts, batch)
    SE.epoch_worker(0, 1, np.zeros(sync_cpu.SYNC_SIZE, dtype=np.int64), params, layout, acts,
                   QUADRATIC, csr_of(x), y, order, batch, 0.5, 0.99, sp, ws, up,
                   dense_cpu.layer_offsets(layout, batch))
    w1p, w1t, b1p, z0p, a0p, z1p, a1p, d1p, c1p, dtp, ar, c1T, a0T = up
    h0, n1 = sizes[1], sizes[2]
    assert np.array_equal(w1p[:, :h0], w1t[:h0, :n1].T)
    for a, lo in [(w1p, h0), (w1t, n1), (a0p, h0), (z1p, n1), (d1p, n1), (c1p, n1), (dtp, h0)]:
        assert not a[:, lo:].any()
    assert not b1p[n1:].any()
    before = params.copy()
    S.upper_write_back(params, layout, up)
    w_off, b_off = layout[1, 2], layout[1, 3]
    assert np.array_equal(params[w_off:w_off + n1 * h0].reshape(n1, h0), w1p[:, :h0])
    assert np.array_equal(params[b_off:b_off + n1], b1p[:n1])
    assert not np.array_equal(params, before)  # the epoch changed layer 1


def test_fused_upper_is_for_one_layer_above_an_elementwise_layer_0():
    def fused(sizes, acts):
        return S.fused_upper(R.layout_for(sizes), np.array(acts, dtype=np.int64))
    assert fused([784, 30, 10], [SIGMOID, SIGMOID])
    assert fused([9, 6, 4], [RELU, SOFTMAX])
    assert not fused([6, 7, 5, 3], [TANH, RELU, SOFTMAX])
    assert not fused([7, 5], [SOFTMAX])
    layout = R.layout_for([6, 7, 5, 3])
    up = S.upper_workspaces(np.zeros(R.n_params(layout)), layout,
                            np.array([TANH, RELU, SOFTMAX], dtype=np.int64), 4)
    assert all(a.size == 0 for a in up)


def test_epoch_frees_what_it_allocates():
    """The per-step kernels count no references (``dense_cpu._lite``); the epochs around them
    still free every array they allocate (a leaked reference would show here; one freed too
    early is what ``test_lite_kernels_return_no_arrays`` guards against)."""
    _nrt = pytest.importorskip("numba.core.runtime._nrt_python")
    from numba.core.runtime import rtsys
    _nrt.memsys_enable_stats()
    layout, params, rng = make_net([40, 37, 10], np.float32, 3)
    acts = np.array([SIGMOID, SIGMOID], dtype=np.int64)
    x = sparse_x(rng, 50, 40, np.float32)
    y = one_hot(rng.integers(0, 10, 50), 10, np.float32)
    order = rng.permutation(50)
    csr = csr_of(x)

    def epochs():
        SE.train_epoch(params, layout, acts, QUADRATIC, csr, y, order, 10, 0.5, 0.99)
        SE.train_epoch_threaded(params, layout, acts, QUADRATIC, csr, y, order, 10, 0.5, 0.99,
                               2)

    epochs()  # compiled
    s0 = rtsys.get_allocation_stats()
    epochs()
    s1 = rtsys.get_allocation_stats()
    assert s1.alloc - s0.alloc > 0 and s1.mi_alloc - s0.mi_alloc > 0
    assert s1.alloc - s0.alloc == s1.free - s0.free
    assert s1.mi_alloc - s0.mi_alloc == s1.mi_free - s0.mi_free


def load_cached_overloads(disp):
    """Load every overload of ``disp`` that the on-disk cache holds for this machine. A kernel
    called only from other compiled kernels is compiled, and cached, along with them; a later
    process that finds those callers cached never loads it, so without this its overloads
    would be missing from ``disp.overloads`` (Numba's cache index is private API)."""
    cache = getattr(disp, "_cache", None)
    if cache is None or not hasattr(cache, "_cache_file"):
        return
    magic = disp.targetctx.codegen().magic_tuple()
    for key in cache._cache_file._load_index():
        if key[1] == magic:
            disp.compile(key[0])


def test_lite_kernels_return_no_arrays():
    """Kernels compiled without reference counting (``dense_cpu._lite``) must not hand an array
    (or a tuple holding one) to a caller that counts: it would be freed too early. Every
    compiled overload of every ``_lite`` kernel, after both epochs, evaluation and the dense
    epoch have run, returns no array."""
    from numba import types
    from numba.core.registry import CPUDispatcher
    for sizes, acts, loss in NETS:
        layout, params, rng = make_net(sizes, np.float32, 2)
        acts = np.array(acts, dtype=np.int64)
        x = sparse_x(rng, 12, sizes[0], np.float32)
        y = one_hot(rng.integers(0, sizes[-1], 12), sizes[-1], np.float32)
        order = rng.permutation(12)
        SE.train_epoch_threaded(params, layout, acts, loss, csr_of(x), y, order, 4, 0.1, 1.0, 2)
        SE.evaluate(params, layout, acts, loss, csr_of(x), y, 4, 2)
        dense_epoch_cpu.train_epoch_threaded(params, layout, acts, loss, x, y, order, 4, 0.1,
                                             1.0, 2)

    def holds_array(t):
        return isinstance(t, types.Array) or (
            isinstance(t, types.BaseTuple) and any(holds_array(e) for e in t.types))

    lite = 0
    from fastnet.kernels import blocks_cpu
    for mod in (dense_cpu, blocks_cpu, dense_epoch_cpu, S, G, SE, sync_cpu):
        for name, disp in vars(mod).items():
            if isinstance(disp, CPUDispatcher) and disp.targetoptions.get("_nrt") is False:
                load_cached_overloads(disp)
                for sig, cres in disp.overloads.items():
                    lite += 1
                    assert not holds_array(cres.signature.return_type), (name, sig)
    assert lite >= 10  # the kernels of the step were compiled and looked at


def test_sparse_epoch_error_reaches_caller():
    """A failure in the compiled epoch is raised in the caller, and no thread is left waiting
    at a barrier (``call_with_watchdog``): a type error at dispatch (in every thread), and a
    bounds error in the upper layers (layer 1's weights past the buffer's end)."""
    layout = R.layout_for([784, 30, 10])
    params = np.zeros(R.n_params(layout), np.float32)
    csr = csr_of(np.zeros((20, 784), np.float32))
    y = np.zeros((20, 10), np.float32)
    err = call_with_watchdog(lambda: SE.train_epoch_threaded(
        params, layout, np.ones(2, np.int64), 0, csr, y, np.arange(20.0), 10, 0.5, 1.0, 2))
    assert isinstance(err, TypingError) and "getitem" in str(err), repr(err)
    upper_out = layout.copy()
    upper_out[1, 2] = params.size
    err = call_with_watchdog(lambda: SE.train_epoch_threaded(
        params, upper_out, np.ones(2, np.int64), 0, csr_of(sparse_x(np.random.default_rng(0),
                                                                    20, 784, np.float32)),
        y, np.arange(20), 10, 0.5, 1.0, 2))
    assert isinstance(err, IndexError) and "rows_of" in str(err), repr(err)
    assert call_with_watchdog(lambda: SE.train_epoch_threaded(
        params, layout, np.ones(2, np.int64), 0, csr, y, np.arange(20), 10, 0.5, 1.0, 2)) is None


def test_backend_chooses_by_density():
    backend = CpuDense()
    rng = np.random.default_rng(0)
    sparse = sparse_x(rng, 30, 50, np.float32, density=0.2)
    dense = rng.standard_normal((30, 50)).astype(np.float32)
    got = backend.inputs(sparse, 2)
    assert isinstance(got, SparseInputs) and got.dense is sparse and len(got) == 30
    assert backend.inputs(dense, 2) is dense
    empty = np.zeros((0, 50), np.float32)
    assert backend.inputs(empty, 2) is empty


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_model_fit_sparse_matches_dense_path(dtype, monkeypatch):
    """Model.fit on mostly-zero inputs (the sparse epoch, and the sparse evaluation of the
    training and validation sets) ends where the dense path does, up to the order of sums."""
    rng = np.random.default_rng(3)
    x = sparse_x(rng, 200, 64, dtype, density=0.2)
    y = rng.integers(0, 10, 200)
    lr, lmbda, epochs = 0.5, 0.1, 2
    results = []
    calls = []
    real_epoch = SE.train_epoch_threaded
    monkeypatch.setattr(SE, "train_epoch_threaded", lambda *a: calls.append(1) or real_epoch(*a))
    for limit, sparse_epochs in ((S.SPARSE_MAX_DENSITY, 2), (-1.0, 0)):  # -1: all dense
        monkeypatch.setattr(S, "SPARSE_MAX_DENSITY", limit)
        model = Model([64, 20, 10], dtype=dtype, seed=1)
        start, orders = model.params.copy(), fit_orders(model, 200, epochs)
        history = model.fit(x, y, epochs=epochs, batch_size=10, lr=lr, lmbda=lmbda,
                            verbose=False, validation_data=(x[:50], y[:50]))
        results.append((model.params.copy(), history.loss, history.val_accuracy))
        assert len(calls) == sparse_epochs
        calls.clear()
    # Both against the book's update run by the reference, the decay worked out here
    spec = model._spec
    exact, ref32 = dense_reference_runs(start, spec.layout, spec.acts, spec.loss_code,
                                        x, np.eye(10)[y], orders, 10, lr, 1 - lr * lmbda / 200)
    bound = compounded_bound(ref32, exact, dtype)
    for params, _, _ in results:
        assert_close(params, exact.astype(dtype), bound=bound, name="params")
    # The last epoch's training loss, a mean of 200 costs: each run's within
    # cost_difference_bound of the exact parameters' cost
    each = cost_difference_bound(exact, spec.layout, spec.acts, spec.loss_code, x,
                                 np.eye(10)[y], dtype, bound) / 200
    assert_close(np.float64(results[0][1][-1]), np.float64(results[1][1][-1]), bound=2 * each,
                 name="last epoch's loss")
    assert results[0][2] == results[1][2]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes,acts,loss", NETS)
@pytest.mark.parametrize("nthreads", [1, 2, 3])
def test_sparse_evaluate_and_predict(sizes, acts, loss, nthreads, dtype):
    """Inference over the nonzeros against the reference's forward pass (chunks of 4 and 5
    rows: a short last chunk)."""
    layout, params, rng = make_net(sizes, dtype, 7)
    acts = np.array(acts, dtype=np.int64)
    x = sparse_x(rng, 17, sizes[0], dtype)
    y = one_hot(rng.integers(0, sizes[-1], 17), sizes[-1], dtype)
    csr = csr_of(x)
    total, correct = SE.evaluate(params, layout, acts, loss, csr, y, 5, nthreads)
    zs, activations, ez, ea = dense_stack_bounds(params, layout, acts, x, dtype)
    y64 = y.astype(np.float64)
    e_total, e_correct = R.evaluate(params.astype(np.float64), layout, acts, loss,
                                    x.astype(np.float64), y64, 5, nthreads)
    assert_close(np.float64(total), np.float64(e_total), name="cost",
                 bound=cost_bound(zs[-1], activations[-1], y64, loss, dtype, ez[-1], ea[-1]))
    assert correct == e_correct
    out = np.empty((17, sizes[-1]), dtype)
    SE.predict(params, layout, acts, csr, out, 4, nthreads)
    assert_close(out, activations[-1].astype(dtype), bound=ea[-1], name="outputs")


@pytest.mark.parametrize("dtype", DTYPES)
def test_sparse_inference_does_not_depend_on_thread_count(dtype):
    """Threads take whole chunks of rows, so every thread count forms the same chunks and gives
    the same outputs, bit for bit (the drop-ins' monitors run on one thread, their
    accuracy()/total_cost() on all; both score from the outputs), and the same count correct;
    the summed cost is added range by range, so only its last bits may differ."""
    layout, params, rng = make_net([30, 9, 4], dtype, 2)
    acts = np.array([SIGMOID, SOFTMAX], dtype=np.int64)
    x = sparse_x(rng, 37, 30, dtype)
    y = one_hot(rng.integers(0, 4, 37), 4, dtype)
    csr = csr_of(x)
    outs, sums = [], []
    for nthreads in (1, 2, 3, 8):
        out = np.empty((37, 4), dtype)
        SE.predict(params, layout, acts, csr, out, 5, nthreads)
        outs.append(out)
        sums.append(SE.evaluate(params, layout, acts, LOG_LIKELIHOOD, csr, y, 5, nthreads))
    # the summed cost: the same 37 per-sample costs (positive: the magnitude is the sum)
    # added in other groupings; each sum is within the rule of the exact one
    same_costs = 2 * rounding_bound(sums[0][0], dtype, n=37)
    for out, s in zip(outs[1:], sums[1:]):
        assert np.array_equal(out, outs[0]) and s[1] == sums[0][1]
        assert_close(np.float64(s[0]), np.float64(sums[0][0]), bound=same_costs, name="cost")


def test_backend_float32_inputs_float64_params():
    """float32 images with float64 weights: the CSR values are float32, the kernels widen them
    and compute in the weights' dtype (the reference's float64 result); the outputs take x's
    dtype, as on the dense path. (The dense path's scratch takes x's dtype instead, so it is
    not the yardstick here; the drop-ins pass float64 x.)"""
    backend = CpuDense()
    layout, params, rng = make_net([40, 12, 10], np.float64, 4)
    acts = np.array([SIGMOID, SIGMOID], dtype=np.int64)
    x = sparse_x(rng, 50, 40, np.float32)
    y = one_hot(rng.integers(0, 10, 50), 10, np.float64)
    order = rng.permutation(50)
    sparse_in = backend.inputs(x, 2)
    assert isinstance(sparse_in, SparseInputs) and sparse_in.csr[2].dtype == np.float32
    got = params.copy()
    backend.train_epoch(got, layout, acts, QUADRATIC, sparse_in, y, order, 7, 0.5, 0.99, 2)
    exact, ref32 = dense_reference_runs(params, layout, acts, QUADRATIC, x, y, [order], 7, 0.5,
                                        0.99)
    assert_close(got, exact, bound=compounded_bound(ref32, exact, np.float64), name="params")
    out = backend.predict(got, layout, acts, sparse_in, 2)
    zs, activations, ez, ea = dense_stack_bounds(got, layout, acts, x, np.float64)
    assert out.dtype == np.float32 and out.shape == (50, 10)
    # computed in float64, then rounded to x's float32
    assert_close(out, activations[-1].astype(np.float32),
                 bound=ea[-1] + rounding_bound(activations[-1], np.float32), name="outputs")
    total, correct = backend.evaluate(got, layout, acts, QUADRATIC, sparse_in, y, 2)
    e_total, e_correct = R.evaluate(got, layout, acts, QUADRATIC, x.astype(np.float64), y,
                                    len(x), 1)
    assert_close(np.float64(total), np.float64(e_total), name="cost",
                 bound=cost_bound(zs[-1], activations[-1], y, QUADRATIC, np.float64, ez[-1],
                                  ea[-1]))
    assert correct == e_correct


def test_backend_inputs_wider_than_layer0_use_the_dense_path():
    """The dense kernels read the first n_in columns of a wider x; the CSR form would index
    weight rows that do not exist, so such inputs train on the dense path (same result)."""
    backend = CpuDense()
    layout, params, rng = make_net([20, 6, 3], np.float64, 5)
    acts = np.array([SIGMOID, SIGMOID], dtype=np.int64)
    x = sparse_x(rng, 30, 50, np.float64, density=0.1)
    x[:, 40:45] = 1.0  # nonzeros beyond layer 0's 20 inputs
    y = one_hot(rng.integers(0, 3, 30), 3, np.float64)
    order = rng.permutation(30)
    a, b = params.copy(), params.copy()
    backend.train_epoch(a, layout, acts, QUADRATIC, backend.inputs(x, 2), y, order, 4, 0.5, 1.0,
                        2)
    backend.train_epoch(b, layout, acts, QUADRATIC, x, y, order, 4, 0.5, 1.0, 2)
    assert np.array_equal(a, b)
    assert np.array_equal(backend.predict(a, layout, acts, backend.inputs(x, 2), 2),
                          backend.predict(a, layout, acts, x, 2))


def test_batch_larger_than_the_data():
    layout, params, rng = make_net([30, 8, 4], np.float64, 6)
    acts = np.array([SIGMOID, SIGMOID], dtype=np.int64)
    x = sparse_x(rng, 13, 30, np.float64)
    y = one_hot(rng.integers(0, 4, 13), 4, np.float64)
    order = rng.permutation(13)
    exact, ref32 = dense_reference_runs(params, layout, acts, QUADRATIC, x, y, [order], 1000,
                                        0.5, 1.0)
    for nthreads in (1, 2):
        got = params.copy()
        SE.train_epoch_threaded(got, layout, acts, QUADRATIC, csr_of(x), y, order, 1000, 0.5,
                               1.0, nthreads)
        assert_close(got, exact, bound=compounded_bound(ref32, exact, np.float64),
                     name="params")


def test_network3_fully_connected_net_trains_on_the_sparse_path(monkeypatch, capsys):
    """network3 with fully connected layers only (the chapter-6 `fc` row) runs the fused dense
    stack, so its training set goes through the sparse epoch; the result matches the dense
    path up to the order of sums."""
    from fastnet import network3
    rng = np.random.default_rng(8)
    x = sparse_x(rng, 120, 784, np.float32, density=0.2)
    y = rng.integers(0, 10, 120)
    calls = []
    real_epoch = SE.train_epoch_threaded
    monkeypatch.setattr(SE, "train_epoch_threaded", lambda *a: calls.append(1) or real_epoch(*a))
    steps = []      # what network3 asks the backend for: its start, and each call's epoch
    real_backend_epoch = CpuDense.train_epoch

    def recording(self, params, layout, acts, loss, x_, y_, order, batch, lr, decay, *rest,
                  **kw):
        steps.append((params.copy(), layout, acts, loss, np.array(y_), order.copy(), batch, lr,
                      decay))
        return real_backend_epoch(self, params, layout, acts, loss, x_, y_, order, batch, lr,
                                  decay, *rest, **kw)

    monkeypatch.setattr(CpuDense, "train_epoch", recording)
    params = []
    for limit in (S.SPARSE_MAX_DENSITY, -1.0):
        monkeypatch.setattr(S, "SPARSE_MAX_DENSITY", limit)
        np.random.seed(0)
        net = network3.Network([network3.FullyConnectedLayer(n_in=784, n_out=20),
                                network3.SoftmaxLayer(n_in=20, n_out=10)], 10)
        net.SGD((x, y), 2, 10, 0.5, (x[:40], y[:40]), (x[:40], y[:40]))
        params.append(net.model.params.copy())
    capsys.readouterr()
    assert len(calls) == 2  # the two epochs of the first run
    # network3 trains in float32: both runs against the reference's float64 run of the same
    # calls from the same start, by compounded_bound
    start, layout, acts, loss, y1, _, batch, lr, decay = steps[0]
    orders = [s[5] for s in steps[:len(steps) // 2]]
    assert all(s[8] == decay and s[6] == batch for s in steps)
    exact, ref32 = dense_reference_runs(start, layout, acts, loss, x, y1, orders, batch, lr,
                                        decay)
    for p in params:
        assert_close(p, exact.astype(np.float32), bound=compounded_bound(ref32, exact,
                                                                         np.float32), name="w")
