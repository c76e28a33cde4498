"""The sparse-input epoch (kernels/sparse_cpu.py) against the NumPy reference, its vector
intrinsics against NumPy, and the CPU backend's choice between the sparse and dense epochs.

Tolerances as in tests/test_dense.py: an epoch in float64 rtol 1e-10 / atol 1e-12; float32
rtol 1e-3 / atol 1e-4 (the epoch compounds the reordered sums of every step); single kernels
float32 rtol 2e-5 / atol 1e-6 (sums of at most ~60 terms).
"""

import numpy as np
import pytest

from fastnet import Model
from fastnet.backends import CpuBackend, SparseInputs
from fastnet.kernels import sparse_cpu as S
from fastnet.kernels.config import (CROSS_ENTROPY, LINEAR, LOG_LIKELIHOOD, QUADRATIC, RELU,
                                    SIGMOID, SOFTMAX, SOFTPLUS, TANH)
from fastnet.reference import dense as R
from helpers import assert_close

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
    return S.sparse_inputs(x, S.row_pointers(x, nthreads), nthreads)


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
def test_gather_and_scatter_cols(dtype):
    """Every width from one vector to beyond four (the 4-, 2- and 1-vector blocks and their
    combinations), column ranges that start past 0, and duplicates-free random rows."""
    rng = np.random.default_rng(5)
    v = 32 // np.dtype(dtype).itemsize
    n_rows = 50
    for nvec in range(1, 8):
        width = nvec * v
        wt = S._aligned_zeros((n_rows, width + 2 * v), np.zeros(1, dtype))
        wt[:] = rng.standard_normal(wt.shape)
        idx = np.sort(rng.choice(n_rows, 17, replace=False)).astype(np.int32)
        vals = rng.standard_normal(17).astype(dtype)
        lo, hi = v, v + width
        out = rng.standard_normal(width + 2 * v).astype(dtype)
        expected = out.copy()
        expected[lo:hi] += vals[2:15].astype(np.float64) @ wt[idx[2:15], lo:hi]
        S.gather_cols(vals, idx, 2, 15, wt, lo, hi, out)
        tol = dict(rtol=2e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
        assert_close(out, expected.astype(dtype), **tol, name="gather")
        coef = rng.standard_normal(width + 2 * v).astype(dtype)
        new = wt.astype(np.float64)
        new[idx[2:15], lo:hi] += np.outer(vals[2:15], coef[lo:hi])
        S.scatter_cols(vals, idx, 2, 15, wt, lo, hi, coef)
        assert_close(wt, new.astype(dtype), **tol, name="scatter")


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
    expected = params.astype(np.float64)
    R.train_epoch(expected, layout, acts, loss, x.astype(np.float64), y.astype(np.float64),
                  order, batch_size, 0.5, 0.99)
    S.train_epoch(params, layout, acts, loss, csr_of(x), y, order, batch_size, 0.5,
                  0.99)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-3, atol=1e-4)
    assert_close(params, expected.astype(dtype), **tol, name="params")


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
    S.train_epoch(one, layout, acts, loss, csr, y, order, batch_size, 0.5, 0.99)
    S.train_epoch_threaded(params, layout, acts, loss, csr, y, order, batch_size, 0.5, 0.99,
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
    S.epoch_worker(0, 1, np.zeros(S._sync.SYNC_SIZE, dtype=np.int64), params, layout, acts,
                   QUADRATIC, csr_of(x), y, order, batch, 0.5, 0.99, sp, ws, up,
                   S._dense._layer_offsets(layout, batch))
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
        S.train_epoch(params, layout, acts, QUADRATIC, csr, y, order, 10, 0.5, 0.99)
        S.train_epoch_threaded(params, layout, acts, QUADRATIC, csr, y, order, 10, 0.5, 0.99,
                               2)

    epochs()  # compiled
    s0 = rtsys.get_allocation_stats()
    epochs()
    s1 = rtsys.get_allocation_stats()
    assert s1.alloc - s0.alloc > 0 and s1.mi_alloc - s0.mi_alloc > 0
    assert s1.alloc - s0.alloc == s1.free - s0.free
    assert s1.mi_alloc - s0.mi_alloc == s1.mi_free - s0.mi_free


def test_lite_kernels_return_no_arrays():
    """Kernels compiled without reference counting (``dense_cpu._lite``) must not hand an array
    (or a tuple holding one) to a caller that counts: it would be freed too early. Every
    compiled overload of every ``_lite`` kernel, after both epochs, evaluation and the dense
    epoch have run, returns no array."""
    from numba import types
    from numba.core.registry import CPUDispatcher
    from fastnet.kernels import dense_cpu, sync_cpu
    for sizes, acts, loss in NETS:
        layout, params, rng = make_net(sizes, np.float32, 2)
        acts = np.array(acts, dtype=np.int64)
        x = sparse_x(rng, 12, sizes[0], np.float32)
        y = one_hot(rng.integers(0, sizes[-1], 12), sizes[-1], np.float32)
        order = rng.permutation(12)
        S.train_epoch_threaded(params, layout, acts, loss, csr_of(x), y, order, 4, 0.1, 1.0, 2)
        S.evaluate(params, layout, acts, loss, csr_of(x), y, 4, 2)
        dense_cpu.train_epoch_threaded(params, layout, acts, loss, x, y, order, 4, 0.1, 1.0, 2)

    def holds_array(t):
        return isinstance(t, types.Array) or (
            isinstance(t, types.BaseTuple) and any(holds_array(e) for e in t.types))

    lite = 0
    for mod in (dense_cpu, S, sync_cpu):
        for name, disp in vars(mod).items():
            if isinstance(disp, CPUDispatcher) and disp.targetoptions.get("_nrt") is False:
                for sig, cres in disp.overloads.items():
                    lite += 1
                    assert not holds_array(cres.signature.return_type), (name, sig)
    assert lite >= 10  # the kernels of the step were compiled and looked at


def test_sparse_epoch_error_reaches_caller():
    layout = R.layout_for([784, 30, 10])
    params = np.zeros(R.n_params(layout), np.float32)
    csr = csr_of(np.zeros((20, 784), np.float32))
    with pytest.raises(Exception):
        S.train_epoch_threaded(params, layout, np.ones(2, np.int64), 0, csr,
                               np.zeros((20, 10), np.float32), np.arange(20.0), 10, 0.5, 1.0, 2)


def test_backend_chooses_by_density():
    backend = CpuBackend()
    rng = np.random.default_rng(0)
    sparse = sparse_x(rng, 30, 50, np.float32, density=0.2)
    dense = rng.standard_normal((30, 50)).astype(np.float32)
    got = backend.inputs(sparse)
    assert isinstance(got, SparseInputs) and got.dense is sparse and len(got) == 30
    assert backend.inputs(dense) is dense
    empty = np.zeros((0, 50), np.float32)
    assert backend.inputs(empty) is empty


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_model_fit_sparse_matches_dense_path(dtype, monkeypatch):
    """Model.fit on mostly-zero inputs (the sparse epoch, and the sparse evaluation of the
    training and validation sets) ends where the dense path does, up to the order of sums."""
    rng = np.random.default_rng(3)
    x = sparse_x(rng, 200, 64, dtype, density=0.2)
    y = rng.integers(0, 10, 200)
    results = []
    calls = []
    real_epoch = S.train_epoch_threaded
    monkeypatch.setattr(S, "train_epoch_threaded", lambda *a: calls.append(1) or real_epoch(*a))
    for limit in (S.SPARSE_MAX_DENSITY, -1.0):  # -1: every input counts as dense
        monkeypatch.setattr(S, "SPARSE_MAX_DENSITY", limit)
        model = Model([64, 20, 10], dtype=dtype, seed=1)
        history = model.fit(x, y, epochs=2, batch_size=10, lr=0.5, lmbda=0.1, verbose=False,
                            validation_data=(x[:50], y[:50]))
        results.append((model.params.copy(), history.loss, history.val_accuracy))
        assert len(calls) == (2 if limit > 0 else 2)  # two sparse epochs, then none
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == "float64" else dict(rtol=1e-3, atol=1e-4)
    assert_close(results[0][0], results[1][0], **tol, name="params")
    assert results[0][1] == pytest.approx(results[1][1], rel=1e-3)
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
    total, correct = S.evaluate(params, layout, acts, loss, csr, y, 5, nthreads)
    e_total, e_correct = R.loss_and_correct(params.astype(np.float64), layout, acts, loss,
                                            x.astype(np.float64), y.astype(np.float64))
    rtol = 1e-9 if dtype == np.float64 else 2e-3
    assert total == pytest.approx(e_total, rel=rtol)
    assert correct == e_correct
    out = np.empty((17, sizes[-1]), dtype)
    S.predict(params, layout, acts, csr, out, 4, nthreads)
    _, activations = R.forward(params.astype(np.float64), layout, acts, x.astype(np.float64))
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-5)
    assert_close(out, activations[-1].astype(dtype), **tol)


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
        S.predict(params, layout, acts, csr, out, 5, nthreads)
        outs.append(out)
        sums.append(S.evaluate(params, layout, acts, LOG_LIKELIHOOD, csr, y, 5, nthreads))
    for out, s in zip(outs[1:], sums[1:]):
        assert np.array_equal(out, outs[0]) and s[1] == sums[0][1]
        assert s[0] == pytest.approx(sums[0][0], rel=1e-12 if dtype == np.float64 else 1e-6)


def test_backend_float32_inputs_float64_params():
    """float32 images with float64 weights: the CSR values are float32, the kernels widen them
    and compute in the weights' dtype (the reference's float64 result); the outputs take x's
    dtype, as on the dense path. (The dense path's scratch takes x's dtype instead, so it is
    not the yardstick here; the drop-ins pass float64 x.)"""
    backend = CpuBackend()
    layout, params, rng = make_net([40, 12, 10], np.float64, 4)
    acts = np.array([SIGMOID, SIGMOID], dtype=np.int64)
    x = sparse_x(rng, 50, 40, np.float32)
    y = one_hot(rng.integers(0, 10, 50), 10, np.float64)
    order = rng.permutation(50)
    sparse_in = backend.inputs(x)
    assert isinstance(sparse_in, SparseInputs) and sparse_in.csr[2].dtype == np.float32
    got, expected = params.copy(), params.copy()
    backend.train_epoch(got, layout, acts, QUADRATIC, sparse_in, y, order, 7, 0.5, 0.99)
    R.train_epoch(expected, layout, acts, QUADRATIC, x.astype(np.float64), y, order, 7, 0.5,
                  0.99)
    assert_close(got, expected, rtol=1e-10, atol=1e-12, name="params")
    out = backend.predict(got, layout, acts, sparse_in)
    _, activations = R.forward(got, layout, acts, x.astype(np.float64))
    assert out.dtype == np.float32 and out.shape == (50, 10)
    assert_close(out, activations[-1].astype(np.float32), rtol=1e-6, atol=1e-7)
    total, correct = backend.evaluate(got, layout, acts, QUADRATIC, sparse_in, y)
    e_total, e_correct = R.loss_and_correct(got, layout, acts, QUADRATIC, x.astype(np.float64),
                                            y)
    assert total == pytest.approx(e_total, rel=1e-10) and correct == e_correct


def test_backend_inputs_wider_than_layer0_use_the_dense_path():
    """The dense kernels read the first n_in columns of a wider x; the CSR form would index
    weight rows that do not exist, so such inputs train on the dense path (same result)."""
    backend = CpuBackend()
    layout, params, rng = make_net([20, 6, 3], np.float64, 5)
    acts = np.array([SIGMOID, SIGMOID], dtype=np.int64)
    x = sparse_x(rng, 30, 50, np.float64, density=0.1)
    x[:, 40:45] = 1.0  # nonzeros beyond layer 0's 20 inputs
    y = one_hot(rng.integers(0, 3, 30), 3, np.float64)
    order = rng.permutation(30)
    a, b = params.copy(), params.copy()
    backend.train_epoch(a, layout, acts, QUADRATIC, backend.inputs(x), y, order, 4, 0.5, 1.0)
    backend.train_epoch(b, layout, acts, QUADRATIC, x, y, order, 4, 0.5, 1.0)
    assert np.array_equal(a, b)
    assert np.array_equal(backend.predict(a, layout, acts, backend.inputs(x)),
                          backend.predict(a, layout, acts, x))


def test_batch_larger_than_the_data():
    layout, params, rng = make_net([30, 8, 4], np.float64, 6)
    acts = np.array([SIGMOID, SIGMOID], dtype=np.int64)
    x = sparse_x(rng, 13, 30, np.float64)
    y = one_hot(rng.integers(0, 4, 13), 4, np.float64)
    order = rng.permutation(13)
    expected = params.copy()
    R.train_epoch(expected, layout, acts, QUADRATIC, x, y, order, 1000, 0.5, 1.0)
    for nthreads in (1, 2):
        got = params.copy()
        S.train_epoch_threaded(got, layout, acts, QUADRATIC, csr_of(x), y, order, 1000, 0.5,
                               1.0, nthreads)
        assert_close(got, expected, rtol=1e-10, atol=1e-12, name="params")


def test_network3_fully_connected_net_trains_on_the_sparse_path(monkeypatch, capsys):
    """network3 with fully connected layers only (the chapter-6 `fc` row) runs the fused dense
    stack, so its training set goes through the sparse epoch; the result matches the dense
    path up to the order of sums."""
    from fastnet import network3
    rng = np.random.default_rng(8)
    x = sparse_x(rng, 120, 784, np.float32, density=0.2)
    y = rng.integers(0, 10, 120)
    calls = []
    real_epoch = S.train_epoch_threaded
    monkeypatch.setattr(S, "train_epoch_threaded", lambda *a: calls.append(1) or real_epoch(*a))
    weights = []
    for limit in (S.SPARSE_MAX_DENSITY, -1.0):
        monkeypatch.setattr(S, "SPARSE_MAX_DENSITY", limit)
        np.random.seed(0)
        net = network3.Network([network3.FullyConnectedLayer(n_in=784, n_out=20),
                                network3.SoftmaxLayer(n_in=20, n_out=10)], 10)
        net.SGD((x, y), 2, 10, 0.5, (x[:40], y[:40]), (x[:40], y[:40]))
        weights.append([np.array(layer.w) for layer in net.layers])
    capsys.readouterr()
    assert len(calls) == 2  # the two epochs of the first run
    for a, b in zip(*weights):
        assert_close(a, b, rtol=1e-4, atol=1e-5, name="w")  # network3 trains in float32
