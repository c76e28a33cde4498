"""Optimizers (``fastnet.optimizers``, ``kernels/optim_cpu.py``, ``fastnet.reference.optim``):
the update rules on hand-checked steps, the kernels against their twins over random shapes
(``assert_close`` and the rule; several steps by ``compounded_bound``), PyTorch's optimizers
where torch is installed, and ``Model.fit(optimizer=...)``: state carried, saved, checkpointed
and restored on failure, bad arguments refused before anything changes."""

import math

import numpy as np
import pytest

import fastnet
from fastnet import optimizers as O
from fastnet.kernels import optim_cpu
from fastnet.kernels.config import (ADAM, ADAMW, MOMENTUM, NESTEROV, OPTIMIZERS, RMSPROP, SGD,
                                    SYNC_SIZE)
from fastnet.reference import dense as R
from fastnet.reference import optim as ref
from helpers import assert_close, compounded_bound, rounding_bound

IMPLS = {"numpy": ref, "cpu": optim_cpu}
DTYPES = (np.float32, np.float64)
# the kernels' hyper: the rule's four coefficients, then L1 (none here; L1 below)
HYPER = {SGD: [0, 0, 0, 0, 0], MOMENTUM: [0.9, 0, 0, 0, 0], NESTEROV: [0.9, 0, 0, 0, 0],
         RMSPROP: [0, 0.99, 1e-8, 0, 0], ADAM: [0.9, 0.999, 1e-8, 0, 0],
         ADAMW: [0.9, 0.999, 1e-8, 0.01, 0]}
L1 = 3e-3


def with_l1(code):
    """The rule's hyper with the L1 coefficient ``L1``: the twins are checked with it on."""
    return np.array(HYPER[code][:4] + [L1], float)


def fresh(code, size, dtype):
    slots = max(1, O.OPTIMIZER_SLOTS[code])
    return np.zeros((slots, size), dtype), np.zeros(1, np.int64)


# ------------------------------------------------------------------------- hand-checked steps
@pytest.mark.parametrize("impl", IMPLS)
def test_hand_checked_steps(impl):
    """Two steps of each rule on p = [1, −2], grads [0.5, −4] then [1, 1], written out by hand
    (gscale 1, lr 0.1; L2 0.1 on the first entry only)."""
    step = IMPLS[impl].optimizer_step
    decayed = np.array([True, False])
    g1, g2 = np.array([0.5, -4.0]), np.array([1.0, 1.0])
    for code, expect in [
        # momentum: v1 = g1 (+l2·p), p1 = p − 0.1·v1; v2 = 0.9·v1 + g2, p2 = p1 − 0.1·v2
        (MOMENTUM, lambda: _momentum(False)),
        (NESTEROV, lambda: _momentum(True)),
        # Adam's first step moves every entry by lr·sign(g) (up to eps)
        (ADAM, lambda: np.array([1 - 0.1 * 0.6 / (0.6 + 1e-8), -2 + 0.1 * 4 / (4 + 1e-8)])),
    ]:
        p = np.array([1.0, -2.0])
        state, t = fresh(code, 2, np.float64)
        step(p, g1, decayed, 1.0, 0.1, 0.1, code, np.array(HYPER[code], float), state, t)
        if code == ADAM:
            assert_close(p, expect(), name="adam step 1")
            assert t[0] == 1
            continue
        step(p, g2, decayed, 1.0, 0.1, 0.1, code, np.array(HYPER[code], float), state, t)
        assert_close(p, expect(), n=4, name=f"code {code} after 2 steps")
        assert t[0] == 2


def _momentum(nesterov):
    p = np.array([1.0, -2.0])
    ga = np.array([0.5 + 0.1 * 1.0, -4.0])
    v = ga.copy()
    p = p - 0.1 * (ga + 0.9 * v if nesterov else v)
    gb = np.array([1.0 + 0.1 * p[0], 1.0])
    v = 0.9 * v + gb
    return p - 0.1 * (gb + 0.9 * v if nesterov else v)


@pytest.mark.parametrize("impl", IMPLS)
def test_rmsprop_and_adamw_by_hand(impl):
    step = IMPLS[impl].optimizer_step
    no = np.array([False])
    p = np.array([3.0])
    state, t = fresh(RMSPROP, 1, np.float64)
    step(p, np.array([2.0]), no, 1.0, 0.0, 0.01, RMSPROP, np.array(HYPER[RMSPROP]), state, t)
    s = 0.01 * 4.0                                    # (1 − α)·g²
    assert_close(p, np.array([3.0 - 0.01 * 2.0 / (math.sqrt(s) + 1e-8)]), n=4)
    assert_close(state[0], np.array([s]))
    p = np.array([3.0])
    state, t = fresh(ADAMW, 1, np.float64)
    step(p, np.array([0.0]), no, 1.0, 0.0, 0.5, ADAMW, np.array(HYPER[ADAMW]), state, t)
    assert_close(p, np.array([3.0 * (1 - 0.5 * 0.01)]), name="AdamW's decay alone (g = 0)")


@pytest.mark.parametrize("impl", IMPLS)
def test_l1_by_hand(impl):
    """SGD with L1 0.2 (no L2), lr 0.1: w ← w − 0.1·(g + 0.2·sgn(w)) on the weights, the
    bias (not decayed) without it; Adam's first step with L1 moves by lr·sign(g + l1·sgn(w))."""
    step = IMPLS[impl].optimizer_step
    decayed = np.array([True, True, False])
    g = np.array([0.5, -4.0, 1.0])
    p = np.array([1.0, -2.0, 3.0])
    state, t = fresh(SGD, 3, np.float64)
    step(p, g, decayed, 1.0, 0.0, 0.1, SGD, np.array([0, 0, 0, 0, 0.2]), state, t)
    assert_close(p, np.array([1 - 0.1 * 0.7, -2 + 0.1 * 4.2, 3 - 0.1]), n=3, name="sgd + l1")
    p = np.array([1.0, -2.0, 3.0])
    state, t = fresh(ADAM, 3, np.float64)
    step(p, np.array([-0.1, 0.1, 0.0]), decayed, 1.0, 0.0, 0.1, ADAM,
         np.array([0.9, 0.999, 1e-8, 0, 0.2]), state, t)
    # g + l1·sgn(w): 0.1 and −0.1 on the weights (L1 outweighs g, so they shrink), 0 on the bias
    assert_close(p, np.array([1 - 0.1 * 0.1 / (0.1 + 1e-8), -2 + 0.1 * 0.1 / (0.1 + 1e-8),
                              3.0]), n=4, name="adam + l1")


# --------------------------------------------------------------------------------- the twins
def one_minus(beta, t):
    """1 − βᵗ to the last bit of float64 (the plain formula loses digits for β near 1)."""
    from fractions import Fraction
    return float(1 - Fraction(beta) ** t)


def exact_step(params, grads, decayed, gscale, l2, lr, code, hyper, state, t,
               absolute=False):
    """One update in float64 by scalar loops, written apart from the reference's arrays.
    ``absolute``: the same sums over the terms' absolute values (subtractions added) — each
    result's Σ|terms|, the rule's magnitude."""
    a = abs if absolute else (lambda v: v)
    sign = 1.0 if absolute else -1.0
    p = [a(float(v)) for v in params]
    s = np.abs(state.astype(np.float64)) if absolute else state.astype(np.float64)
    b1, b2, eps, wd, l1 = hyper
    for i in range(len(p)):
        pen = l2 * p[i] + (l1 if absolute else math.copysign(l1, p[i]) if p[i] else 0.0)
        g = gscale * a(float(grads[i])) + (pen if decayed[i] else 0.0)
        if code in (MOMENTUM, NESTEROV):
            s[0, i] = b1 * s[0, i] + g
            p[i] += sign * lr * (g + b1 * s[0, i] if code == NESTEROV else s[0, i])
        elif code == RMSPROP:
            s[0, i] = b2 * s[0, i] + (1 - b2) * g * g
            p[i] += sign * lr * g / (math.sqrt(s[0, i]) + eps)
        elif code in (ADAM, ADAMW):
            s[0, i] = b1 * s[0, i] + (1 - b1) * g
            s[1, i] = b2 * s[1, i] + (1 - b2) * g * g
            if code == ADAMW:
                p[i] *= 1 - lr * wd
            p[i] += sign * lr / one_minus(b1, t) * s[0, i] / (
                math.sqrt(s[1, i]) / math.sqrt(one_minus(b2, t)) + eps)
        else:
            p[i] += sign * lr * g
    return np.array(p), s


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_step_twin(impl, dtype, name):
    """Random sizes (1, odd, a few vector widths), three steps from a random state; each step
    against the scalar float64 statement from the same inputs, by the rule with n = 8 (an
    update chains about eight roundings) and each result's Σ|terms|."""
    code = OPTIMIZERS[name]
    rng = np.random.default_rng(code)
    hyper = with_l1(code)
    for size in (1, 7, 33, 130):
        p = rng.standard_normal(size).astype(dtype)
        decayed = rng.random(size) < 0.7
        state, t = fresh(code, size, dtype)
        state[...] = np.abs(rng.standard_normal(state.shape)).astype(dtype) * 0.1
        t[0] = 3
        for _ in range(3):
            g = rng.standard_normal(size).astype(dtype)
            args = (p, g, decayed, 0.25, 0.01, 0.05, code, hyper, state, int(t[0]) + 1)
            want_p, want_s = exact_step(*args)
            mag_p, mag_s = exact_step(*args, absolute=True)
            IMPLS[impl].optimizer_step(p, g, decayed, 0.25, 0.01, 0.05, code, hyper, state, t)
            assert_close(p, want_p.astype(dtype), n=8, magnitude=mag_p,
                         name=f"{name} params (size {size})")
            assert_close(state, want_s.astype(dtype), n=8, magnitude=mag_s,
                         name=f"{name} state (size {size})")


def _net(rng, sizes, dtype, n):
    layout = R.layout_for(sizes)
    params = (0.5 * rng.standard_normal(R.n_params(layout))).astype(dtype)
    decayed = np.zeros(len(params), bool)
    for n_in, n_out, w_off, _ in layout:
        decayed[w_off:w_off + n_in * n_out] = True
    x = rng.random((n, sizes[0])).astype(dtype)
    y = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], n)]
    return layout, params, decayed, x, y


def _epochs(impl, params, layout, acts, loss, x, y, orders, bs, code, hyper, dtype):
    p = np.array(params, dtype)
    state, t = fresh(code, len(p), dtype)
    for order in orders:
        IMPLS[impl].train_epoch_opt(p, layout, acts, loss, np.asarray(x, dtype),
                                    np.asarray(y, dtype), order, bs, 0.01, 0.001, code, hyper,
                                    state, t, decayed_of(layout, len(p)),
                                    np.zeros(SYNC_SIZE, np.int64))
    return p, t


def decayed_of(layout, size):
    d = np.zeros(size, bool)
    for n_in, n_out, w_off, _ in layout:
        d[w_off:w_off + n_in * n_out] = True
    return d


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["sgd", "momentum", "rmsprop", "adam", "adamw"])
@pytest.mark.parametrize("sizes, acts, loss, bs", [
    ([5, 3, 2], [1, 1], 0, 1),               # batch 1, quadratic, sigmoid
    ([9, 7, 5, 3], [2, 3, 5], 2, 4),         # tanh, relu, softmax + log-likelihood, odd n
])
def test_train_epoch_opt_twin(impl, dtype, name, sizes, acts, loss, bs):
    """Two epochs of 11 samples against the reference run in float64 (the exact result),
    within ``compounded_bound`` of the reference's own float32 run."""
    code = OPTIMIZERS[name]
    rng = np.random.default_rng(len(sizes) + code)
    layout, params, _, x, y = _net(rng, sizes, np.float64, 11)
    acts = np.array(acts, np.int64)
    orders = [rng.permutation(11).astype(np.int64) for _ in range(2)]
    hyper = with_l1(code)
    exact, t = _epochs("numpy", params, layout, acts, loss, x, y, orders, bs, code, hyper,
                       np.float64)
    ref32, _ = _epochs("numpy", params, layout, acts, loss, x, y, orders, bs, code, hyper,
                       np.float32)
    got, t_got = _epochs(impl, params, layout, acts, loss, x, y, orders, bs, code, hyper,
                         dtype)
    assert t_got[0] == t[0] == 2 * math.ceil(11 / bs)
    assert_close(got.astype(np.float64), exact, bound=compounded_bound(ref32, exact, dtype),
                 name=f"{name} params after 2 epochs")


def test_rounding_bound_is_not_vacuous():
    """The step test's bound is far below a change a wrong rule would make (1e-3 of lr·g)."""
    b = rounding_bound(np.array([1.0]), np.float32, n=8, magnitude=np.array([1.05]))
    assert b[0] < 1e-5


@pytest.mark.parametrize("name", ["momentum", "nesterov", "rmsprop", "adam", "adamw"])
def test_against_pytorch(name):
    """The kernel's steps against torch.optim's on the same gradients (float64)."""
    torch = pytest.importorskip("torch")
    code = OPTIMIZERS[name]
    rng = np.random.default_rng(5)
    p0 = rng.standard_normal(17)
    grads = [rng.standard_normal(17) for _ in range(5)]
    w = torch.tensor(p0.copy(), requires_grad=True)
    opt = {"momentum": lambda: torch.optim.SGD([w], lr=0.05, momentum=0.9),
           "nesterov": lambda: torch.optim.SGD([w], lr=0.05, momentum=0.9, nesterov=True),
           "rmsprop": lambda: torch.optim.RMSprop([w], lr=0.05),
           "adam": lambda: torch.optim.Adam([w], lr=0.05),
           "adamw": lambda: torch.optim.AdamW([w], lr=0.05)}[name]()
    p = p0.copy()
    state, t = fresh(code, 17, np.float64)
    hyper = O.as_optimizer(name).hyper()
    for g in grads:
        w.grad = torch.tensor(g)
        opt.step()
        optim_cpu.optimizer_step(p, g, np.ones(17, bool), 1.0, 0.0, 0.05, code, hyper, state, t)
    assert_close(p, w.detach().numpy(), n=40, magnitude=np.abs(p0) + 1, name=name)


# --------------------------------------------------------------------------------- Model.fit
def _data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 12)).astype(np.float32)
    y = rng.integers(0, 4, n)
    return x, y


def _model(**kw):
    return fastnet.Model([12, 9, 4], seed=3, **kw)


@pytest.mark.parametrize("sparse", [False, True], ids=["dense-x", "sparse-x"])
@pytest.mark.parametrize("name", ["momentum", "nesterov", "rmsprop", "adam", "adamw"])
def test_fit_numpy_and_cpu_agree(name, sparse):
    """The same fit on the two host devices: the reference and the fused epoch (on inputs
    mostly zeros, as MNIST's, the sparse-input epoch)."""
    x, y = _data()
    if sparse:
        x = x * (np.random.default_rng(9).random(x.shape) < 0.15)
    outs = []
    for device in ("numpy", "cpu"):
        m = _model(dtype="float64", device=device)
        m.fit(x, y, epochs=2, batch_size=7, lr=0.01, lmbda=0.1, optimizer=name, verbose=False)
        outs.append(m)
    assert_close(outs[1].params, outs[0].params, rtol=1e-9, atol=1e-12)
    assert_close(outs[1].optimizer_state.state, outs[0].optimizer_state.state, rtol=1e-9,
                 atol=1e-12)
    assert outs[0].optimizer_state.step[0] == 2 * 9


@pytest.mark.parametrize("sparse", [False, True], ids=["dense-x", "sparse-x"])
@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_fit_with_l1_numpy_and_cpu_agree(name, sparse):
    """L1 (with L2) through the same fit on the two host devices; SGD with L1 trains through
    the optimizers' epochs. The weights' L1 norm ends smaller than without L1 (the biases'
    exemption: test_l1_by_hand)."""
    x, y = _data()
    if sparse:
        x = x * (np.random.default_rng(9).random(x.shape) < 0.15)
    outs = []
    for device in ("numpy", "cpu"):
        m = _model(dtype="float64", device=device)
        m.fit(x, y, epochs=2, batch_size=7, lr=0.05, lmbda=0.1, l1=2.0, optimizer=name,
              verbose=False)
        outs.append(m)
    assert_close(outs[1].params, outs[0].params, rtol=1e-9, atol=1e-12)
    plain = _model(dtype="float64")
    plain.fit(x, y, epochs=2, batch_size=7, lr=0.05, lmbda=0.1, optimizer=name, verbose=False)
    norm = lambda m: sum(np.abs(m.params_of(i)["w"]).sum() for i in range(2))  # noqa: E731
    assert norm(outs[1]) < 0.97 * norm(plain)


def test_cnn_fit_with_l1_numpy_and_cpu_agree():
    """The CNN's compiled epoch (cnn_cpu) and the reference layer by layer, with L1."""
    rng = np.random.default_rng(4)
    x, y = rng.random((30, 64)), rng.integers(0, 3, 30)
    outs = []
    for device in ("numpy", "cpu"):
        m = fastnet.Model([fastnet.Conv2D(1, 2, 3), fastnet.MaxPool2D(2), fastnet.Flatten(),
                           fastnet.Dense(18, 3, "softmax")], input_shape=(1, 8, 8),
                          loss="log_likelihood", dtype="float64", device=device, seed=2)
        m.fit(x, y, epochs=2, batch_size=4, lr=0.1, l1=1.0, verbose=False)
        outs.append(m)
    assert_close(outs[1].params, outs[0].params, rtol=1e-9, atol=1e-12)


def test_l1_refusals_and_checkpoint_fingerprint(tmp_path):
    x, y = _data()
    m = _model()
    before = m.params.copy()
    for bad, error in ((-1.0, ValueError), (float("nan"), ValueError), ("1", TypeError)):
        with pytest.raises(error, match="l1"):
            m.fit(x, y, epochs=1, batch_size=10, lr=0.1, l1=bad, verbose=False)
    assert_close(m.params, before, rtol=0, atol=0)
    m.fit(x, y, epochs=1, batch_size=10, lr=0.1, l1=1.0, verbose=False,
          checkpoint=tmp_path / "run.npz")
    with pytest.raises(ValueError, match="l1"):
        _model().fit(x, y, epochs=2, batch_size=10, lr=0.1, l1=2.0, verbose=False,
                     checkpoint=tmp_path / "run.npz")


def test_adam_learns_mnist_like_task():
    """Adam learns a separable toy task (the class is the largest of four inputs)."""
    rng = np.random.default_rng(1)
    x = rng.random((300, 12)).astype(np.float32)
    y = (x[:, :4].argmax(axis=1))
    m = _model(loss="cross_entropy")
    h = m.fit(x, y, epochs=8, batch_size=10, lr=0.03, optimizer="adam", verbose=False)
    assert h.loss[-1] < 0.6 * h.loss[0] and h.accuracy[-1] > 0.85


def test_state_carries_over_and_restarts_on_another_optimizer():
    x, y = _data()
    a = _model()
    a.fit(x, y, epochs=2, batch_size=10, optimizer="adam", verbose=False, shuffle=False)
    b = _model()
    b.fit(x, y, epochs=1, batch_size=10, optimizer="adam", verbose=False, shuffle=False)
    b.fit(x, y, epochs=1, batch_size=10, optimizer="adam", verbose=False, shuffle=False)
    assert_close(b.params, a.params, rtol=0, atol=0)
    assert b.optimizer_state.step[0] == 12
    b.fit(x, y, epochs=1, batch_size=10, optimizer=O.Adam(betas=(0.8, 0.99)), verbose=False)
    assert b.optimizer_state.step[0] == 6 and b.optimizer_state.optimizer.betas == (0.8, 0.99)


def test_save_and_load_keep_the_state(tmp_path):
    x, y = _data()
    a = _model()
    a.fit(x, y, epochs=1, batch_size=10, optimizer="rmsprop", verbose=False, shuffle=False)
    a.save(tmp_path / "m.npz")
    b = fastnet.load(tmp_path / "m.npz")
    assert b.optimizer_state.optimizer == O.RMSprop()
    assert_close(b.optimizer_state.state, a.optimizer_state.state, rtol=0, atol=0)
    for m in (a, b):
        m.fit(x, y, epochs=1, batch_size=10, optimizer="rmsprop", verbose=False,
              shuffle=False)
    assert_close(b.params, a.params, rtol=0, atol=0)
    c = _model()                      # a model saved without an optimizer loads without one
    c.save(tmp_path / "plain.npz")
    assert fastnet.load(tmp_path / "plain.npz").optimizer_state is None


def test_checkpoint_resume_is_bit_identical(tmp_path):
    x, y = _data()
    whole = _model()
    whole.fit(x, y, epochs=4, batch_size=10, optimizer="adam", verbose=False)
    path = tmp_path / "run.npz"
    part = _model()
    part.fit(x, y, epochs=2, batch_size=10, optimizer="adam", verbose=False, checkpoint=path)
    resumed = _model()
    h = resumed.fit(x, y, epochs=4, batch_size=10, optimizer="adam", verbose=False,
                    checkpoint=path)
    assert len(h.seconds) == 4
    assert_close(resumed.params, whole.params, rtol=0, atol=0)
    assert_close(resumed.optimizer_state.state, whole.optimizer_state.state, rtol=0, atol=0)
    with pytest.raises(ValueError, match="another run"):
        _model().fit(x, y, epochs=5, batch_size=10, optimizer="momentum", verbose=False,
                     checkpoint=path)


def test_failed_epoch_restores_the_state():
    """A callback that raises after epoch 2: params and optimizer state as after epoch 2."""
    x, y = _data()
    ref_model = _model()
    ref_model.fit(x, y, epochs=2, batch_size=10, optimizer="adam", verbose=False)

    def boom(end):
        if end.epoch == 2:
            raise KeyboardInterrupt
    m = _model()
    with pytest.raises(KeyboardInterrupt):
        m.fit(x, y, epochs=3, batch_size=10, optimizer="adam", verbose=False,
              callbacks=[boom])
    assert_close(m.params, ref_model.params, rtol=0, atol=0)
    assert_close(m.optimizer_state.state, ref_model.optimizer_state.state, rtol=0, atol=0)
    assert m.optimizer_state.step[0] == ref_model.optimizer_state.step[0]


def test_cnn_trains_with_adam_on_numpy_and_cpu():
    """``fit`` of a CNN by Adam on cpu (``cnn_cpu.train_epoch_opt``; ``threads`` 1 and 2, which
    a network this small trains on one) against the reference layer by layer on numpy."""
    rng = np.random.default_rng(2)
    x = rng.random((21, 1, 8, 8)).astype(np.float64)
    y = rng.integers(0, 3, 21)
    outs = []
    for device, threads in (("numpy", None), ("cpu", 1), ("cpu", 2)):
        m = fastnet.Model([fastnet.Conv2D(1, 2, 3), fastnet.MaxPool2D(2), fastnet.Flatten(),
                           fastnet.Dense(18, 3)], input_shape=(1, 8, 8), dtype="float64",
                          device=device, seed=4)
        h = m.fit(x, y, epochs=2, batch_size=5, optimizer="adam", verbose=False,
                  threads=threads)
        assert (h.threads[0] is None) == (device == "numpy")   # cpu: the compiled epoch
        assert m.optimizer_state.step[0] == 2 * 5
        outs.append(m.params)
    for got in outs[1:]:
        assert_close(got, outs[0], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"optimizer": "adagrad"}, ValueError, "optimizer must be one of"),
    ({"optimizer": 3}, TypeError, "optimizer must be one of"),
    ({"optimizer": "sgd", "lr": None}, TypeError, "needs lr"),
    ({"optimizer": "adam", "device": "cuda"}, ValueError, "trains by the book's SGD only"),
])
def test_bad_arguments_change_nothing(kwargs, error, match):
    x, y = _data()
    m = _model()
    before = m.params.copy()
    args = {"epochs": 1, "batch_size": 10, "lr": 0.1, "verbose": False, **kwargs}
    with pytest.raises(error, match=match):
        m.fit(x, y, **args)
    assert_close(m.params, before, rtol=0, atol=0)
    assert m.optimizer_state is None


@pytest.mark.parametrize("make, match", [
    (lambda: O.Momentum(1.0), "momentum must be"),
    (lambda: O.Adam(betas=(0.9,)), "betas must be a pair"),
    (lambda: O.Adam(eps=0), "eps must be"),
    (lambda: O.AdamW(weight_decay=-1), "weight_decay must be"),
    (lambda: O.RMSprop(alpha=float("nan")), "alpha must be"),
])
def test_bad_hyper_parameters(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_config_round_trip():
    for opt in (O.SGD(), O.Nesterov(0.5), O.RMSprop(0.9, 1e-6), O.Adam((0.8, 0.9)),
                O.AdamW(weight_decay=0.1)):
        assert O.from_config(opt.config()) == opt
    with pytest.raises(ValueError, match="not an optimizer"):
        O.from_config({"name": "adam", "beta": 1})


def test_cnn_opt_epoch_on_two_threads_matches_one():
    """``cnn_cpu.train_epoch_opt`` called on 2 threads (the update split by ranges, three
    barriers a mini-batch) against 1 thread, float64: equal to rounding."""
    from fastnet.devices.layerwise import cnn_plan
    from fastnet.kernels import cnn_cpu
    rng = np.random.default_rng(3)
    m = fastnet.Model([fastnet.Conv2D(1, 3, 3), fastnet.MaxPool2D(2), fastnet.Flatten(),
                       fastnet.Dense(27, 5), fastnet.Dense(5, 4, activation="softmax")],
                      input_shape=(1, 8, 8), loss="log_likelihood", dtype="float64", seed=5)
    layout, acts, cg = cnn_plan(m._spec)
    x = rng.random((23, 1, 8, 8))
    y = np.eye(4)[rng.integers(0, 4, 23)]
    order = rng.permutation(23).astype(np.int64)
    outs = []
    for nthreads in (1, 2):
        p = m.params.copy()
        state, step = fresh(ADAM, p.size, np.float64)
        for _ in range(2):
            cnn_cpu.train_epoch_opt(p, layout, acts, 2, cg, x, y, order, 4, 0.01, 0.001, ADAM,
                                    np.array(HYPER[ADAM]), state, step, m._spec.decayed,
                                    nthreads)
        assert step[0] == 2 * 6
        outs.append(p)
    assert not np.array_equal(outs[0], m.params)
    assert_close(outs[1], outs[0], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["momentum", "adam"])
@pytest.mark.parametrize("bs", [1, 7])
def test_sparse_input_epoch_matches_the_dense_one(name, bs):
    """``train_epoch_opt_sparse`` (x in ``sparse_cpu``'s form, layer 0 held transposed and
    padded) against ``train_epoch_opt`` on the same x, float64: equal to rounding, the state
    written back in the buffer's order; on two threads equal to one bit for bit."""
    from fastnet.kernels import sparse_cpu
    code = OPTIMIZERS[name]
    rng = np.random.default_rng(bs)
    layout, params, decayed, _, y = _net(rng, [37, 9, 4], np.float64, 23)
    x = rng.random((23, 37)) * (rng.random((23, 37)) < 0.2)
    indptr, counts, _ = sparse_cpu.scan_rows(x, 1)
    csr = sparse_cpu.sparse_inputs(x, indptr, counts, 1)
    acts = np.array([1, 1], np.int64)
    order = rng.permutation(23).astype(np.int64)
    hyper = with_l1(code)
    outs = []
    for fn, data, kw in ((optim_cpu.train_epoch_opt, x, {}),
                         (optim_cpu.train_epoch_opt_sparse, csr, {"nthreads": 1}),
                         (optim_cpu.train_epoch_opt_sparse, csr, {"nthreads": 2})):
        p = params.copy()
        state, t = fresh(code, p.size, np.float64)
        for _ in range(2):
            fn(p, layout, acts, 0, data, y, order, bs, 0.05, 0.01, code, hyper, state, t,
               decayed, np.zeros(SYNC_SIZE, np.int64), **kw)
        assert t[0] == 2 * math.ceil(23 / bs)
        outs.append((p, state))
    assert_close(outs[1][0], outs[0][0], rtol=1e-9, atol=1e-12, name="params")
    assert_close(outs[1][1], outs[0][1], rtol=1e-9, atol=1e-12, name="state")
    # two threads: the one-thread epoch bit for bit (each part and half in the same order)
    assert_close(outs[2][0], outs[1][0], rtol=0, atol=0, name="params, 2 threads")
    assert_close(outs[2][1], outs[1][1], rtol=0, atol=0, name="state, 2 threads")


def test_fit_on_two_threads_repeats_one_thread():
    """``fit(threads=2)`` by Adam on MNIST-like sparse inputs trains the two-thread sparse
    epoch (where the machine has two threads) and ends bit for bit where ``threads=1`` does."""
    import numba
    rng = np.random.default_rng(4)
    x = (rng.random((300, 784)) * (rng.random((300, 784)) < 0.19)).astype(np.float32)
    y = rng.integers(0, 10, 300)
    outs = []
    for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
        m = fastnet.Model([784, 30, 10], seed=6)
        h = m.fit(x, y, epochs=2, batch_size=10, optimizer="adam", threads=threads,
                  verbose=False, training_metrics=False)
        assert h.threads == [threads, threads]
        outs.append(m.params)
    assert_close(outs[1], outs[0], rtol=0, atol=0)
