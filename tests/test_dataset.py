"""fastnet.Dataset: checked once, converted and prepared once per use, and the same results as
the arrays it holds — in fit (also as validation_data), evaluate, predict and callbacks."""

import numpy as np
import pytest

from fastnet import Conv2D, Dataset, Dense, Flatten, MaxPool2D, Model
from fastnet.devices.dense import CpuDense


def data(n=50, n_in=36, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, n_in))
    x[x < 0.6] = 0.0
    return x, rng.integers(0, 3, n)


def dense(device="cpu", dtype="float64"):
    return Model([36, 6, 3], loss="cross_entropy", dtype=dtype, device=device, seed=4)


def cnn(device="cpu"):
    return Model([Conv2D(1, 2, 3, activation="relu"), MaxPool2D(2), Flatten(),
                  Dense(8, 3, "softmax")], loss="log_likelihood", dtype="float64",
                 device=device, seed=4, input_shape=(1, 6, 6))


FIT = dict(epochs=2, batch_size=7, lr=0.5, lmbda=0.1, verbose=False)


@pytest.mark.parametrize("build,device", [(dense, "cpu"), (dense, "numpy"), (cnn, "cpu"),
                                          (cnn, "numpy")])
def test_same_results_as_arrays(build, device):
    x, y = data()
    xv, yv = data(20, seed=1)
    a, b = build(device), build(device)
    ha = a.fit(x, y, validation_data=(xv, yv), **FIT)
    hb = b.fit(Dataset(x, y), validation_data=Dataset(xv, yv), **FIT)
    assert np.array_equal(a.params, b.params)
    assert (ha.loss, ha.val_loss, ha.val_accuracy) == (hb.loss, hb.val_loss, hb.val_accuracy)
    assert np.array_equal(a.predict(xv), b.predict(Dataset(xv)))
    assert a.evaluate(xv, yv) == b.evaluate(Dataset(xv, yv))


def test_image_shaped_and_one_hot():
    x, y = data()
    a, b = cnn(), cnn()
    a.fit(x, y, **FIT)
    b.fit(Dataset(x.reshape(-1, 1, 6, 6), np.eye(3)[y]), **FIT)
    assert np.array_equal(a.params, b.params)


def test_prepared_once_per_form(monkeypatch):
    """Two fits, an evaluate, a predict and a callback on one Dataset build the CPU's sparse
    form once; a float32 model converts it once more (its own dtype), and prepares it once."""
    calls = []
    real = CpuDense.inputs
    monkeypatch.setattr(CpuDense, "inputs", lambda self, x, t: calls.append(x.dtype) or
                        real(self, x, t))
    x, y = data()
    ds = Dataset(x, y)
    m = dense()
    m.fit(ds, callbacks=[lambda end: end.evaluate(ds)], **FIT)
    m.fit(ds, **FIT)
    m.evaluate(ds)
    m.predict(ds)
    assert calls == [np.float64]
    m32 = dense(dtype="float32")
    m32.fit(ds, **FIT)
    m32.fit(ds, **FIT)
    assert calls == [np.float64, np.float32]


def test_epoch_end_takes_datasets():
    x, y = data()
    ds, seen = Dataset(x, y), []
    m = dense()
    m.fit(ds, callbacks=[lambda end: seen.append((end.evaluate(ds), end.predict(ds)))], **FIT)
    assert seen[-1][0] == m.evaluate(x, y)
    assert np.array_equal(seen[-1][1], m.predict(x))


def test_read_only_memory_mapped(tmp_path):
    x, y = data()
    np.save(tmp_path / "x.npy", x)
    ds = Dataset(np.load(tmp_path / "x.npy", mmap_mode="r"), y)
    a, b = dense(), dense()
    a.fit(ds, **FIT)
    b.fit(x, y, **FIT)
    assert np.array_equal(a.params, b.params)


@pytest.mark.parametrize("x,y,error,match", [
    (np.array([[1.0, np.nan], [0, 0]]), None, ValueError, r"x contains NaN or inf \(first in "
                                                           r"row 0\)"),
    (np.ones((2, 2)), np.array([[0, np.inf], [1, 0]]), ValueError, "y contains NaN or inf"),
    (np.ones(4), None, ValueError, r"x must have shape \(n, features...\)"),
    (np.ones((0, 3)), None, ValueError, r"n >= 1"),
    (np.array([["a", "b"]]), None, TypeError, "x must hold real numbers"),
    (np.ones((2, 2)), np.array([0.0, 1.0]), TypeError, "y must be integer class labels"),
    (np.ones((2, 2)), np.array([0, -1]), ValueError, "y labels must be >= 0, found -1"),
    (np.ones((2, 2)), np.array([0, 1, 1]), ValueError, "y has 3 labels but x has 2 rows"),
    (np.ones((2, 2)), np.ones((2, 2, 2)), ValueError, r"y must have shape \(2,\)"),
    ([[1, 2], [3]], None, TypeError, "x must be an array"),
])
def test_bad_data_is_refused(x, y, error, match):
    with pytest.raises(error, match=match):
        Dataset(x, y)


def test_mistakes_in_use():
    x, y = data()
    m = dense()
    before = m.params.copy()
    with pytest.raises(TypeError, match=r"y must be left out when x is a fastnet.Dataset"):
        m.fit(Dataset(x, y), y, **FIT)
    with pytest.raises(TypeError, match=r"y is required \(or pass a fastnet.Dataset as x\)"):
        m.fit(x, **FIT)
    with pytest.raises(ValueError, match=r"y: the Dataset has no targets"):
        m.fit(Dataset(x), **FIT)
    with pytest.raises(ValueError, match=r"x must have shape \(n, 36\) for this model, got a "
                                         r"Dataset of \(50, 35\)"):
        m.fit(Dataset(x[:, :35], y), **FIT)
    with pytest.raises(ValueError, match=r"^y labels must lie in \[0, 3\), found 7"):
        m.fit(Dataset(x, np.full(50, 7)), **FIT)
    with pytest.raises(ValueError, match=r"validation_data must have shape"):
        m.fit(x, y, validation_data=Dataset(x[:, :35], y), **FIT)
    with pytest.raises(ValueError, match=r"validation_data.y: the Dataset has no targets"):
        m.fit(x, y, validation_data=Dataset(x), **FIT)
    assert np.array_equal(m.params, before)
    assert repr(Dataset(x, y)) == "Dataset(50 samples of shape (36,), labels)"


@pytest.mark.parametrize("device,separate_checks", [("cpu", 0), ("numpy", 2)])
def test_arrays_checked_in_the_devices_own_read(monkeypatch, device, separate_checks):
    """From raw arrays the CPU finds NaN/inf in the same read that builds its sparse form;
    other devices check x first. Either way the error names the argument and the entry."""
    from fastnet import _checks
    calls = []
    real = _checks.check_finite
    monkeypatch.setattr(_checks, "check_finite", lambda a, name: calls.append(name) or
                        real(a, name))
    x, y = data()
    m = dense(device)
    m.fit(x, y, validation_data=(x, y), **FIT)
    assert len(calls) == separate_checks
    bad = x.copy()
    bad[17, 5] = np.nan
    before = m.params.copy()
    with pytest.raises(ValueError, match=r"^validation_data\[0\] contains NaN or inf \(first "
                                         r"at row 17, column 5\)$"):
        m.fit(x, y, validation_data=(bad, y), **FIT)
    with pytest.raises(ValueError, match=r"^x contains NaN or inf \(first at row 17, column "
                                         r"5\)$"):
        m.predict(bad)
    assert np.array_equal(m.params, before)
