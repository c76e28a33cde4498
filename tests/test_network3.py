"""fastnet.network3: the book's chapter-6 API without Theano."""

import numpy as np
import pytest

from fastnet import network3
from fastnet.network3 import ConvPoolLayer, FullyConnectedLayer, Network, SoftmaxLayer
from helpers import assert_close


def tiny_data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 64)).astype(np.float32)
    y = (x[:, :32].sum(1) > x[:, 32:].sum(1)).astype(np.int64)
    return x, y


def tiny_net(mbs=4, p=0.0, act=network3.sigmoid):
    return Network([
        ConvPoolLayer(image_shape=(mbs, 1, 8, 8), filter_shape=(3, 1, 3, 3), poolsize=(2, 2),
                      activation_fn=act),
        FullyConnectedLayer(n_in=3 * 3 * 3, n_out=5, activation_fn=act, p_dropout=p),
        SoftmaxLayer(n_in=5, n_out=2, p_dropout=p)], mbs, dtype="float64")


def test_initialisation_follows_the_book():
    np.random.seed(7)
    net = tiny_net()
    np.random.seed(7)
    w0 = np.random.normal(0, np.sqrt(1.0 / (3 * 9 / 4)), (3, 1, 3, 3))
    b0 = np.random.normal(0, 1.0, (3,))
    w1 = np.random.normal(0, np.sqrt(1.0 / 5), (27, 5))
    conv, fc, sm = net.layers
    assert np.array_equal(conv.w, w0) and np.array_equal(conv.b, b0)
    assert np.array_equal(fc.w, w1)
    assert not sm.w.any() and not sm.b.any()
    # inside, the conv filters are stored flipped (fastnet cross-correlates)
    net._push()
    assert np.array_equal(net.model.params_of(0)["w"], w0[..., ::-1, ::-1])
    assert np.array_equal(net.model.params_of(2 + 1)["w"], w1.T)


def test_sgd_prints_the_books_lines_and_updates_layers(capsys):
    np.random.seed(0)
    net = tiny_net()
    data = tiny_data()
    w_before = net.layers[1].w.copy()
    best = net.SGD(data, 2, 4, 0.5, data, data)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Training mini-batch number 0"
    assert out[1].startswith("Epoch 0: validation accuracy ") and out[1].endswith("%")
    assert "This is the best validation accuracy to date." in out
    assert any(l.startswith("The corresponding test accuracy is ") for l in out)
    assert out[-3] == "Finished training network."
    assert out[-2].startswith("Best validation accuracy of ") and " obtained at iteration " \
        in out[-2]
    assert out[-1].startswith("Corresponding test accuracy of ")
    assert 0 <= best <= 1
    assert not np.array_equal(net.layers[1].w, w_before)  # layers see the trained weights


def test_sgd_matches_plain_numpy_statement():
    """One epoch through network3 equals the same SGD written out with the reference ops:
    mean log-likelihood, L2 scaled by num_training_batches, data order, whole batches only."""
    np.random.seed(3)
    net = tiny_net(mbs=4)
    x, y = tiny_data(n=42)  # 42 = 10 whole mini-batches of 4, remainder 2 dropped
    from fastnet import Conv2D, Dense, Flatten, MaxPool2D, Model
    ref = Model([Conv2D(1, 3, 3, "sigmoid"), MaxPool2D(2), Flatten(), Dense(27, 5),
                 Dense(5, 2, "softmax")], loss="log_likelihood", dtype="float64",
                device="numpy", input_shape=(1, 8, 8))
    net._push()
    ref.params[...] = net.model.params
    eta, lmbda = 0.3, 2.0
    net.SGD((x, y), 1, 4, eta, (x, y), None, lmbda=lmbda)
    runner = ref._runner("numpy")
    train = runner.data(x[:40].astype(np.float64), np.eye(2)[y[:40]])
    runner.train_epoch(train, np.arange(40), 4, eta, 1 - eta * lmbda / 10)
    assert_close(net.model.params, ref.params, rtol=1e-10, atol=1e-12)


def test_dropout_runs_and_inference_is_deterministic():
    np.random.seed(1)
    net = tiny_net(p=0.5, act=network3.ReLU)
    data = tiny_data()
    net.SGD(data, 1, 4, 0.1, data, data)
    a = net.model.predict(data[0])
    assert np.array_equal(a, net.model.predict(data[0]))


@pytest.mark.parametrize("layers,mbs,pattern", [
    (lambda: [ConvPoolLayer(image_shape=(5, 1, 8, 8), filter_shape=(3, 1, 3, 3)),
              SoftmaxLayer(27, 2)], 4, "mini-batches of 5"),
    (lambda: [ConvPoolLayer(image_shape=(4, 1, 8, 8), filter_shape=(3, 1, 3, 3)),
              FullyConnectedLayer(n_in=20, n_out=5), SoftmaxLayer(5, 2)], 4,
     r"layer 1 \(FullyConnectedLayer\): n_in=20 does not chain.*\(3, 3, 3\) = 27"),
    (lambda: [ConvPoolLayer(image_shape=(4, 2, 8, 8), filter_shape=(3, 1, 3, 3)),
              SoftmaxLayer(27, 2)], 4, "takes 1 input maps but image_shape"),
    (lambda: [ConvPoolLayer(image_shape=(4, 1, 8, 8), filter_shape=(3, 1, 3, 3)),
              ConvPoolLayer(image_shape=(4, 3, 4, 4), filter_shape=(2, 3, 2, 2)),
              SoftmaxLayer(2, 2)], 4, r"layer 1 \(ConvPoolLayer\).*outputs \(3, 3, 3\)"),
    (lambda: [FullyConnectedLayer(4, 3)], 4, "last layer must be a SoftmaxLayer"),
])
def test_layers_that_do_not_chain(layers, mbs, pattern):
    with pytest.raises(ValueError, match=pattern):
        Network(layers(), mbs)


def test_bad_sgd_arguments():
    net = tiny_net()
    x, y = tiny_data()
    with pytest.raises(ValueError, match="mini_batch_size 5 differs"):
        net.SGD((x, y), 1, 5, 0.1, (x, y), None)
    with pytest.raises(ValueError, match=r"training_data\[0\] must have shape \(n, 64\)"):
        net.SGD((x[:, :10], y), 1, 4, 0.1, (x, y), None)
    with pytest.raises(ValueError, match="fewer than one mini-batch"):
        net.SGD((x[:3], y[:3]), 1, 4, 0.1, (x, y), None)
    with pytest.raises(ValueError, match=r"validation_data\[1\] must be integer labels"):
        net.SGD((x, y), 1, 4, 0.1, (x, y[:5]), None)


@pytest.mark.slow
def test_books_first_cnn_after_one_epoch(mnist_dir, capsys):
    """The book's first CNN (sigmoid, η = 0.1, mini-batch 10), one epoch.

    The issue asks for ≥ 97% here; measured on the CPU with seeds 0, 1, 2: 93.48%, 93.71%,
    93.36% test (94.1–94.3% validation). The same update written out with the NumPy reference
    agrees with fastnet (test_sgd_matches_plain_numpy_statement, and the reference's gradients
    pass finite differences), and an independent PyTorch statement of the same network and
    training (examples/torch_first_cnn_check.py) gives 94.18%, 93.10%, 93.55% test for seeds
    0-2. So the threshold below is what one sigmoid epoch at η = 0.1 reaches, not a loosened
    tolerance: ≥ 97% after one epoch was not reproduced, by fastnet or by PyTorch."""
    np.random.seed(0)
    training_data, validation_data, test_data = network3.load_data_shared(str(mnist_dir))
    mini_batch_size = 10
    net = Network([
        ConvPoolLayer(image_shape=(mini_batch_size, 1, 28, 28), filter_shape=(20, 1, 5, 5),
                      poolsize=(2, 2)),
        FullyConnectedLayer(n_in=20 * 12 * 12, n_out=100),
        SoftmaxLayer(n_in=100, n_out=10)], mini_batch_size)
    net.SGD(training_data, 1, mini_batch_size, 0.1, validation_data, test_data)
    out = capsys.readouterr().out
    assert "Training mini-batch number 4000" in out
    assert net.test_accuracy >= 0.93, out


def fc_net(p=0.0):
    """Fully connected only (p is ignored: no dropout), so it trains through the model's
    fused runner."""
    return Network([FullyConnectedLayer(n_in=64, n_out=7), SoftmaxLayer(n_in=7, n_out=2)], 4,
                   dtype="float64")


@pytest.mark.parametrize("make", [tiny_net, fc_net], ids=["convpool", "fc"])
def test_checkpoint_resumes_exactly(tmp_path, capsys, make):
    """Two epochs, then a resumed third, end where three uninterrupted epochs do: same
    parameters bit for bit (dropout's generator included), same final lines."""
    data = tiny_data()
    np.random.seed(3)
    whole = make(p=0.3)
    whole.SGD(data, 3, 4, 0.5, data, data, lmbda=0.1)
    lines = capsys.readouterr().out.splitlines()

    path = tmp_path / "run.npz"
    np.random.seed(3)
    first = make(p=0.3)
    first.SGD(data, 2, 4, 0.5, data, data, lmbda=0.1, checkpoint=path)
    assert path.exists()
    capsys.readouterr()
    np.random.seed(99)                    # another initialisation: the checkpoint wins
    second = make(p=0.3)
    second.SGD(data, 3, 4, 0.5, data, data, lmbda=0.1, checkpoint=path)
    resumed = capsys.readouterr().out.splitlines()
    assert resumed[0] == f"Resuming from {path}: 2 epochs done"
    assert resumed[1:] == lines[-len(resumed) + 1:]
    assert np.array_equal(second.model.params, whole.model.params)
    for a, b in zip(second.layers, whole.layers):
        assert np.array_equal(a.w, b.w) and np.array_equal(a.b, b.b)
    assert second.test_accuracy == whole.test_accuracy

    # a finished run's file only reprints the result
    third = make(p=0.3)
    third.SGD(data, 3, 4, 0.5, data, data, lmbda=0.1, checkpoint=path)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"Resuming from {path}: 3 epochs done" and out[1:] == lines[-3:]
    assert np.array_equal(third.model.params, whole.model.params)


@pytest.mark.parametrize("change,field", [
    (dict(eta=0.4), "eta"), (dict(lmbda=0.0), "lmbda"), (dict(data=tiny_data(seed=1)),
                                                         "training_data"),
    (dict(net=lambda: tiny_net(p=0.0, act=network3.ReLU)), "architecture")])
def test_checkpoint_of_another_run_is_refused(tmp_path, capsys, change, field):
    data = tiny_data()
    path = tmp_path / "run.npz"
    np.random.seed(0)
    tiny_net(p=0.3).SGD(data, 1, 4, 0.5, data, data, lmbda=0.1, checkpoint=path)
    net = change.get("net", lambda: tiny_net(p=0.3))()
    before = net.model.params.copy()
    d = change.get("data", data)
    with pytest.raises(ValueError, match=f"another run.*{field}"):
        net.SGD(d, 2, 4, change.get("eta", 0.5), data, data, lmbda=change.get("lmbda", 0.1),
                checkpoint=path)
    assert np.array_equal(net.model.params, before)


def _rewrite(path, **changes):
    """The checkpoint at path with some of its JSON state's fields replaced (None: removed) or
    its params replaced (``params=``)."""
    import json
    with np.load(path) as f:
        state, params = json.loads(str(f["state"])), f["params"]
    params = changes.pop("params", params)
    for k, v in changes.items():
        if v is None:
            state.pop(k)
        else:
            state[k] = v
    np.savez(path, params=params, state=np.array(json.dumps(state)))


@pytest.mark.parametrize("damage,pattern", [
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "not a network3"),
    (lambda p: p.write_bytes(p.read_bytes()[:-10]), "not a network3"),
    (lambda p: _rewrite(p, epochs_done=None), "epochs_done"),
    (lambda p: _rewrite(p, epochs_done="1"), "epochs_done"),
    (lambda p: _rewrite(p, epochs_done=-5), "epochs_done"),
    (lambda p: _rewrite(p, best=[0.5, 3]), "best"),
    (lambda p: _rewrite(p, best=None), "best"),
    (lambda p: _rewrite(p, dropout_rng={"bit_generator": "MT19937"}), "dropout_rng"),
    (lambda p: _rewrite(p, dropout_rng={"bit_generator": "PCG64", "state": 3}), "dropout_rng"),
    (lambda p: _rewrite(p, fingerprint=[1, 2]), "fingerprint"),
    (lambda p: _rewrite(p, version="1"), "version"),
    (lambda p: _rewrite(p, params=np.zeros(1)), "parameters"),
    (lambda p: _rewrite(p, params=np.zeros(1000, np.float32)), "parameters"),
])
def test_damaged_checkpoint_is_a_clear_error(tmp_path, damage, pattern):
    data = tiny_data()
    path = tmp_path / "run.npz"
    np.random.seed(0)
    tiny_net().SGD(data, 1, 4, 0.5, data, data, checkpoint=path)
    damage(path)
    net = tiny_net()
    before = net.model.params.copy()
    rng_state = net.model._dropout_rng.bit_generator.state
    with pytest.raises(ValueError, match=pattern):
        net.SGD(data, 2, 4, 0.5, data, data, checkpoint=path)
    assert np.array_equal(net.model.params, before)
    assert net.model._dropout_rng.bit_generator.state == rng_state


def test_checkpoint_needs_enough_epochs_and_a_directory(tmp_path):
    data = tiny_data()
    path = tmp_path / "run.npz"
    np.random.seed(0)
    tiny_net().SGD(data, 2, 4, 0.5, data, data, checkpoint=path)
    with pytest.raises(ValueError, match="2 epochs done, more than the 1 asked for"):
        tiny_net().SGD(data, 1, 4, 0.5, data, data, checkpoint=path)
    with pytest.raises(ValueError, match="does not exist or is not writable"):
        tiny_net().SGD(data, 1, 4, 0.5, data, data, checkpoint=tmp_path / "no" / "run.npz")
    with pytest.raises(TypeError, match="str or os.PathLike"):
        tiny_net().SGD(data, 1, 4, 0.5, data, data, checkpoint=bytes(path))


def test_checkpoint_that_is_not_one(tmp_path):
    data = tiny_data()
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a network3 checkpoint"):
        tiny_net().SGD(data, 1, 4, 0.5, data, data, checkpoint=bad)
    other = tmp_path / "other.npz"
    np.savez(other, params=np.zeros(3), state=np.array('{"format": "something"}'))
    with pytest.raises(ValueError, match="not a network3 checkpoint"):
        tiny_net().SGD(data, 1, 4, 0.5, data, data, checkpoint=other)
    with pytest.raises(TypeError, match="checkpoint must be a file path"):
        tiny_net().SGD(data, 1, 4, 0.5, data, data, checkpoint=3.5)
