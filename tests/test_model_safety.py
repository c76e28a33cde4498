"""Model under stress: divergence, huge mini-batches, read-only data, inference beside
training, hostile model files, and the small input mistakes. Each test here failed on the code
before its fix."""

import json
import os
import random
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

import fastnet
from fastnet import Conv2D, Dense, Flatten, MaxPool2D, Model
import hostile
from hostile import run_limited

needs_fork = pytest.mark.skipif(bool(hostile.SKIP_REASON), reason=str(hostile.SKIP_REASON))
CHECKS = {"load": fastnet.load}            # run in a memory-limited child (tests/hostile.py)
DOCUMENTED = (ValueError,)
worker = hostile.worker_fixture(__name__)
LAYERWISE = [Conv2D(1, 2, 3, activation="relu"), MaxPool2D(2), Flatten(), Dense(8, 3, "softmax")]


def data(n=40, n_in=8, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return rng.random((n, n_in)).astype(dtype), rng.integers(0, 3, n)


# ---------------------------------------------------------------------------- divergence
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                            "ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("device", ["cpu", "numpy"])
@pytest.mark.parametrize("training_metrics", [True, False])
def test_divergence_leaves_no_nan(device, training_metrics):
    """The issue's run: lr = 1e6 blows this ReLU network up in its first epoch. The error
    names the epoch and the model keeps the parameters it had before the fit (it used to be
    left with NaN and inf in them)."""
    x, y = data()
    m = Model([8, 16, 3], activation="relu", seed=5, device=device)
    before = m.params.copy()
    with pytest.raises(FloatingPointError, match=r"diverged in epoch 1 of 3: .* restored to its "
                                                 r"state before this fit; lower lr"):
        m.fit(x, y, epochs=3, batch_size=5, lr=1e6, verbose=False,
              training_metrics=training_metrics)
    assert np.array_equal(m.params, before)


def _poisoned(monkeypatch, runner_class, at_call):
    """Make the runner's ``at_call``-th epoch end with a NaN in the parameters, as a diverging
    epoch does (the restore logic is the same whatever made the NaN)."""
    real, calls = runner_class.train_epoch, []

    def train_epoch(self, *args, **kwargs):
        real(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == at_call:
            self.params[3] = np.nan

    monkeypatch.setattr(runner_class, "train_epoch", train_epoch)


@pytest.mark.parametrize("device", ["cpu", "numpy"])
@pytest.mark.parametrize("sizes_or_layers", [[36, 16, 3], LAYERWISE], ids=["fused", "layerwise"])
@pytest.mark.parametrize("training_metrics", [True, False])
def test_divergence_restores_the_last_finite_epoch(monkeypatch, device, sizes_or_layers,
                                                   training_metrics):
    """NaN after epoch 2 of 3: the model holds exactly the parameters and generator states it
    had after epoch 1 (as a fit of one epoch leaves them) and the error carries the history of
    the epochs run."""
    shape = None if isinstance(sizes_or_layers[0], int) else (1, 6, 6)
    x, y = data(n_in=36)
    kw = dict(loss="log_likelihood", input_shape=shape, device=device, seed=5)
    fit = dict(batch_size=5, lr=0.5, verbose=False, training_metrics=training_metrics)
    after_one = Model(sizes_or_layers, **kw)
    after_one.fit(x, y, epochs=1, **fit)
    _poisoned(monkeypatch, type(after_one._runner(None)), at_call=2)
    m = Model(sizes_or_layers, **kw)
    with pytest.raises(FloatingPointError, match=r"diverged in epoch 2 of 3: .*restored to its "
                                                 r"state after the last epoch") as err:
        m.fit(x, y, epochs=3, **fit)
    assert np.array_equal(m.params, after_one.params)
    assert m._rng.bit_generator.state == after_one._rng.bit_generator.state
    assert m._dropout_rng.bit_generator.state == after_one._dropout_rng.bit_generator.state
    assert len(err.value.history.seconds) == 2
    assert len(err.value.history.loss) == (2 if training_metrics else 0)


def test_an_interrupted_epoch_keeps_the_last_complete_one(monkeypatch):
    """KeyboardInterrupt in epoch 2: the model is as after epoch 1, and the error passes."""
    from fastnet.devices.dense import DenseTrainer
    x, y = data()
    after_one = Model([8, 5, 3], seed=2)
    after_one.fit(x, y, epochs=1, batch_size=4, lr=0.5, verbose=False)
    calls = []
    real = DenseTrainer.train_epoch

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        real(self, *args, **kwargs)  # the epoch runs (the weights move), then the interrupt
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(DenseTrainer, "train_epoch", interrupted)
    m = Model([8, 5, 3], seed=2)
    with pytest.raises(KeyboardInterrupt):
        m.fit(x, y, epochs=3, batch_size=4, lr=0.5, verbose=False)
    assert np.array_equal(m.params, after_one.params)


def test_a_decay_factor_at_or_below_zero_is_refused_up_front():
    x, y = data()
    m = Model([8, 5, 3], seed=0)
    before = m.params.copy()
    with pytest.raises(ValueError, match=r"lmbda=10000.* 1 − lr·lmbda/n .* must be > 0"):
        m.fit(x, y, epochs=1, batch_size=5, lr=1.0, lmbda=1e4, verbose=False)
    with pytest.raises(ValueError, match="lmbda"):          # exactly zero: weights wiped
        m.fit(x, y, epochs=1, batch_size=5, lr=1.0, lmbda=40.0, verbose=False)
    assert np.array_equal(m.params, before)
    m.fit(x, y, epochs=1, batch_size=5, lr=1.0, lmbda=39.0, verbose=False)   # just below


# ---------------------------------------------------------------------------- mini-batch size
@pytest.mark.parametrize("sizes_or_layers", [[8, 16, 3], LAYERWISE], ids=["fused", "layerwise"])
def test_a_batch_larger_than_the_data_is_one_batch_of_all(sizes_or_layers):
    """batch_size 10**12 with 40 samples trains exactly as batch_size 40 (it used to allocate
    buffers for 10**12 samples: MemoryError)."""
    shape = None if isinstance(sizes_or_layers[0], int) else (1, 6, 6)
    n_in = 8 if shape is None else 36
    x, y = data(n_in=n_in)
    loss = "quadratic" if shape is None else "log_likelihood"
    a = Model(sizes_or_layers, loss=loss, input_shape=shape, seed=3)
    b = Model(sizes_or_layers, loss=loss, input_shape=shape, seed=3)
    a.fit(x, y, epochs=2, batch_size=40, lr=0.5, verbose=False)
    b.fit(x, y, epochs=2, batch_size=10 ** 12, lr=0.5, verbose=False)
    assert np.array_equal(a.params, b.params)


def test_batch_size_beyond_int64_is_a_value_error():
    x, y = data()
    with pytest.raises(ValueError, match=r"batch_size must be an int in \[1, 2\*\*63 - 1\]"):
        Model([8, 3]).fit(x, y, epochs=1, batch_size=2 ** 63, lr=1.0, verbose=False)


def test_the_book_network_takes_a_huge_mini_batch_too():
    from fastnet import network
    rng = np.random.default_rng(0)
    pairs = [(rng.random((8, 1)), np.eye(3)[i % 3].reshape(3, 1)) for i in range(20)]
    np.random.seed(0)
    a = network.Network([8, 5, 3])
    np.random.seed(0)
    b = network.Network([8, 5, 3])
    random.seed(1)
    a.SGD(pairs, 1, 20, 1.0)
    random.seed(1)
    b.SGD(pairs, 1, 10 ** 12, 1.0)
    assert all(np.array_equal(p, q) for p, q in zip(a.weights + a.biases, b.weights + b.biases))


# ---------------------------------------------------------------------------- read-only data
@pytest.mark.parametrize("device", ["cpu", "numpy"])
@pytest.mark.parametrize("sizes_or_layers", [[36, 16, 3], LAYERWISE], ids=["fused", "layerwise"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_read_only_data_works_everywhere(tmp_path, device, sizes_or_layers, dtype):
    """Memory-mapped, read-only x (and y targets) of the model's own dtype: fit, validation,
    evaluate and predict give what writable copies give."""
    shape = None if isinstance(sizes_or_layers[0], int) else (1, 6, 6)
    x, y = data(n_in=36, dtype=dtype)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", np.eye(3, dtype=dtype)[y])
    xr = np.load(tmp_path / "x.npy", mmap_mode="r")
    tr = np.load(tmp_path / "t.npy", mmap_mode="r")
    assert not xr.flags.writeable
    kw = dict(loss="log_likelihood", input_shape=shape, dtype=dtype, device=device, seed=4)
    if shape is None:
        kw["activation"] = "sigmoid"
    a, b = Model(sizes_or_layers, **kw), Model(sizes_or_layers, **kw)
    fit = dict(epochs=2, batch_size=8, lr=0.3, verbose=False)
    ha = a.fit(xr, tr, validation_data=(xr, y), **fit)
    hb = b.fit(x.copy(), y, validation_data=(x.copy(), y), **fit)
    assert np.array_equal(a.params, b.params)
    assert ha.val_loss == hb.val_loss
    assert a.evaluate(xr, tr) == b.evaluate(x, y)
    assert np.array_equal(a.predict(xr), b.predict(x))
    assert not xr.flags.writeable and np.array_equal(np.asarray(xr), x)    # left as it was


# ---------------------------------------------------------------------------- threads
_THREADS = textwrap.dedent("""
    import threading, numpy as np
    from fastnet import Conv2D, Dense, Flatten, Model
    rng = np.random.default_rng(0)
    x = rng.random((600, 64)).astype(np.float32); y = rng.integers(0, 3, 600)
    m = Model([Conv2D(1, 3, 3, "relu"), Flatten(), Dense(108, 8), Dense(8, 3, "softmax")],
              loss="log_likelihood", input_shape=(1, 8, 8), seed=0)
    stop, errors, shapes = threading.Event(), [], set()
    def infer():
        try:
            while not stop.is_set():
                shapes.add(m.predict(x[:500]).shape)
        except BaseException as exc:
            errors.append(repr(exc))
    t = threading.Thread(target=infer); t.start()
    try:
        m.fit(x, y, epochs=3, batch_size=10, lr=0.1, verbose=False)
    finally:
        stop.set(); t.join()
    assert not errors, errors
    assert shapes == {(500, 3)}, shapes
    assert np.isfinite(m.params).all()
    print("ok")
""")


def test_predict_in_a_thread_beside_fit():
    """Layers used to keep their last batch on themselves: a predict beside a fit mixed the
    two up (a reshape error, then often a crash). Run in a child so a crash fails this test
    only."""
    run = subprocess.run([sys.executable, "-c", _THREADS], capture_output=True, text=True,
                         timeout=600, env={**os.environ, "PYTHONFAULTHANDLER": "1"})
    assert run.returncode == 0 and run.stdout.strip() == "ok", (run.returncode, run.stderr[-3000:])


# ---------------------------------------------------------------------------- model files
def _model_file(tmp_path, arch, params, name="m.npz"):
    path = tmp_path / name
    np.savez(path, params=params, architecture=np.array(json.dumps(arch)))
    return path


def _arch(**changes):
    arch = Model([3, 2]).architecture()
    arch.update(changes)
    return arch


@needs_fork
@pytest.mark.parametrize("n_in,n_out", [(20000, 20000), (10 ** 9, 10), (10 ** 15, 10 ** 15)])
def test_a_small_file_declaring_a_huge_model_is_refused_cheaply(worker, tmp_path, n_in, n_out):
    """The declared shapes are checked against the stored array before anything is built:
    a 1.4 KB file used to cost 5 GB (or a MemoryError) before its error."""
    arch = _arch(layers=[Dense(n_in, n_out).config()], input_shape=[n_in])
    path = _model_file(tmp_path, arch, np.zeros(10, np.float32))
    result = run_limited(worker, "load", path, limit_extra=0)    # 32 MB for Python's own use
    assert result.startswith("ValueError") and "shape" in result, result


@needs_fork
def test_a_header_declaring_more_than_the_file_holds_is_refused_cheaply(worker, tmp_path):
    """params.npy's header says 10**9 floats and the architecture agrees; the member holds
    ten. Nothing of the declared size may be allocated."""
    n = 10 ** 9
    arch = _arch(layers=[Dense(n - 1, 1, "sigmoid").config()], input_shape=[n - 1])
    path = tmp_path / "big.npz"
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1, np.float32))
    header["shape"] = (n,)
    with zipfile.ZipFile(path, "w") as z:
        with z.open("params.npy", "w") as f:
            np.lib.format.write_array_header_1_0(f, header)
            f.write(np.zeros(10, np.float32).tobytes())
        with z.open("architecture.npy", "w") as f:
            np.lib.format.write_array(f, np.array(json.dumps(arch)))
    result = run_limited(worker, "load", path, limit_extra=0)
    assert result.startswith("ValueError") and "truncated" in result, result


def _save_arrays(tmp_path, **arrays):
    path = tmp_path / "partial.npz"
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("make,pattern", [
    (lambda p: _model_file(p, {k: v for k, v in _arch().items() if k != "layers"},
                           np.zeros(8, np.float32)), "no layers"),
    (lambda p: _model_file(p, {k: v for k, v in _arch().items() if k != "loss"},
                           np.zeros(8, np.float32)), "no loss"),
    (lambda p: _model_file(p, {k: v for k, v in _arch().items() if k != "dtype"},
                           np.zeros(8, np.float32)), "no dtype"),
    (lambda p: _model_file(p, _arch(version="2"), np.zeros(8, np.float32)), "version is '2'"),
    (lambda p: _model_file(p, _arch(version=True), np.zeros(8, np.float32)), "version is True"),
    (lambda p: _model_file(p, _arch(layers=5), np.zeros(8, np.float32)), "layers are int 5"),
    (lambda p: _model_file(p, _arch(layers=[]), np.zeros(8, np.float32)), "non-empty list"),
    (lambda p: _model_file(p, _arch(layers=[{**Dense(3, 2).config(), "colour": 1}]),
                           np.zeros(8, np.float32)), r"layers\[0\]: a dense layer has no 'colour'"),
    (lambda p: _model_file(p, _arch(layers=[{"kind": "lstm"}]), np.zeros(8, np.float32)),
     r"layers\[0\]: unknown layer"),
    (lambda p: _model_file(p, _arch(layers=[{**Dense(3, 2).config(), "n_in": 3.5}]),
                           np.zeros(8, np.float32)), r"layers\[0\]: n_in must be an int"),
    (lambda p: _model_file(p, _arch(loss="hinge"), np.zeros(8, np.float32)), "loss must be"),
    (lambda p: _model_file(p, _arch(dtype="float16"), np.zeros(8, np.float32)), "dtype"),
    (lambda p: _model_file(p, _arch(dtype=None), np.zeros(8, np.float32)), "dtype"),
    (lambda p: _model_file(p, _arch(input_shape=7), np.zeros(8, np.float32)), "input_shape"),
    (lambda p: _model_file(p, _arch(), np.zeros(8, np.float64)), "dtype float64, expected"),
    (lambda p: _model_file(p, _arch(), np.zeros((2, 4), np.float32)), r"shape \(2, 4\)"),
    (lambda p: _model_file(p, [1, 2], np.zeros(8, np.float32)), "no fastnet architecture"),
    (lambda p: _model_file(p, "a string", np.zeros(8, np.float32)), "no fastnet architecture"),
    (lambda p: _save_arrays(p, params=np.zeros(8, np.float32),
                            architecture=np.array("[" * 100000 + "]" * 100000)),
     "not valid JSON"),
    (lambda p: np.save(p / "a.npy", np.zeros(3)) or p / "a.npy", "not an .npz archive"),
    (lambda p: (p / "t.npz").write_text("hello") and p / "t.npz", "not an .npz archive"),
    (lambda p: _save_arrays(p, params=np.zeros(8, np.float32)), "no 'architecture'"),
    (lambda p: _save_arrays(p, architecture=np.array(json.dumps(_arch()))), "no 'params'"),
    (lambda p: _save_arrays(p, params=np.zeros(8, np.float32), architecture=np.array(5)),
     "not a text string"),
    (lambda p: _save_arrays(p, params=np.array([object()] * 8), architecture=np.array(
        json.dumps(_arch()))), "not a plain number"),
])
def test_every_malformed_model_file_is_one_value_error(tmp_path, make, pattern):
    path = make(tmp_path)
    with pytest.raises(ValueError, match=pattern) as err:
        fastnet.load(path)
    assert str(path) in str(err.value)


def test_a_missing_model_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        fastnet.load(tmp_path / "nothing.npz")


def test_load_builds_no_initial_weights(monkeypatch, tmp_path):
    """The stored parameters are adopted as they are: no weights are drawn."""
    m = Model([4, 3, 2], seed=1)
    m.save(tmp_path / "m.npz")

    def forbidden(*args):
        raise AssertionError("init_params called by load")

    monkeypatch.setattr(Dense, "init_params", forbidden)
    again = fastnet.load(tmp_path / "m.npz")
    assert np.array_equal(again.params, m.params)


def _network2_save(path):
    from fastnet import network2
    network2.Network([3, 2]).save(path)


@pytest.mark.parametrize("save", [lambda p: Model([3, 2]).save(p), _network2_save],
                         ids=["Model.save", "network2.save"])
@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_saved_files_follow_the_umask(tmp_path, save, mask, mode):
    old = os.umask(mask)
    try:
        save(tmp_path / "m.out")
    finally:
        os.umask(old)
    assert (tmp_path / "m.out").stat().st_mode & 0o777 == mode
    assert [p.name for p in tmp_path.iterdir()] == ["m.out"]        # no temporary file left


# ---------------------------------------------------------------------------- small mistakes
def test_an_out_of_range_float_label_is_shown_as_given():
    x, _ = data(n=3)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\), found 1e\+20"):
        Model([8, 3]).fit(x, np.array([0.0, 1e20, 1.0]), epochs=1, batch_size=1, lr=1.0)


def test_a_ragged_list_for_a_cnn_names_x():
    m = Model(LAYERWISE, loss="log_likelihood", input_shape=(1, 6, 6))
    with pytest.raises(TypeError, match=r"x must be an array of shape \(n, 36\) or "
                                        r"\(n, 1, 6, 6\)"):
        m.predict([[0.0] * 36, [0.0] * 35])


@pytest.mark.parametrize("dtype,exc", [(None, TypeError), ("float16", ValueError),
                                       ("nonsense", ValueError), (int, ValueError)])
def test_dtype_must_be_named(dtype, exc):
    with pytest.raises(exc, match="dtype must be 'float32' or 'float64'"):
        Model([3, 2], dtype=dtype)
