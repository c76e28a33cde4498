"""``Model.fit(checkpoint=path)``: saved after every epoch, resumed exactly (``epochs`` is the
total), refused when it is another run's or broken, and the callbacks' states carried along."""

import json

import numpy as np
import pytest

from fastnet import Conv2D, Dense, Flatten, MaxPool2D, Model
from fastnet.callbacks import EarlyStopping
from fastnet.schedules import InverseTime

COMPARED = ("loss", "accuracy", "val_loss", "val_accuracy", "lr")


def problem(kind="dense"):
    rng = np.random.default_rng(0)
    n_in = 36
    x, y = rng.random((60, n_in)), rng.integers(0, 3, 60)
    return x, y, (x[:20], y[:20])


def build(kind="dense"):
    if kind == "dense":
        return Model([36, 7, 3], loss="cross_entropy", dtype="float64", seed=3)
    return Model([Conv2D(1, 2, 3, activation="relu"), MaxPool2D(2), Flatten(),
                  Dense(8, 3, "softmax")], loss="log_likelihood", dtype="float64", seed=3,
                 input_shape=(1, 6, 6))


def fit(m, path, epochs, **kw):
    x, y, val = problem()
    args = dict(batch_size=7, lr=InverseTime(0.8, 0.3), lmbda=0.1, validation_data=val,
                verbose=False, checkpoint=path)
    args.update(kw)
    return m.fit(x, y, epochs=epochs, **args)


def same_run(a, ha, b, hb):
    np.testing.assert_array_equal(a.params, b.params)
    assert a.random_state == b.random_state
    for k in COMPARED:
        assert getattr(ha, k) == getattr(hb, k), k
    assert len(ha.seconds) == len(hb.seconds) == len(ha.threads)


@pytest.mark.parametrize("kind", ["dense", "cnn"])
def test_resume_is_bit_identical(tmp_path, kind):
    a = build(kind)
    ha = fit(a, tmp_path / "a.npz", 4)
    fit(build(kind), tmp_path / "b.npz", 2)
    b = build(kind)
    b.params[...] = 0.0                   # the checkpoint's parameters replace these
    hb = fit(b, tmp_path / "b.npz", 4)
    same_run(a, ha, b, hb)
    # the file now holds the whole run: a later call trains nothing and returns its history
    c = build(kind)
    hc = fit(c, tmp_path / "b.npz", 4)
    same_run(a, ha, c, hc)


def test_an_interrupted_run_resumes_from_its_last_epoch(tmp_path):
    a = build()
    ha = fit(a, tmp_path / "a.npz", 5)

    def interrupt(end):
        if end.epoch == 3:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        fit(build(), tmp_path / "b.npz", 5, callbacks=[interrupt])
    state = np.load(tmp_path / "b.npz")["state"]
    assert json.loads(str(state))["epochs_done"] == 2
    b = build()
    hb = fit(b, tmp_path / "b.npz", 5, callbacks=[lambda end: None])
    same_run(a, ha, b, hb)


def test_callback_states_are_resumed(tmp_path):
    """EarlyStopping's count and best parameters carry over: the resumed run stops at the same
    epoch and ends with the same best parameters as the uninterrupted one."""
    kw = dict(lr=12.0, batch_size=6, lmbda=0.0)
    a, stop_a = build(), EarlyStopping("val_loss", patience=2)
    ha = fit(a, tmp_path / "a.npz", 40, callbacks=[stop_a], **kw)
    assert stop_a.stopped_epoch is not None and stop_a.best_epoch < stop_a.stopped_epoch - 1
    cut = stop_a.stopped_epoch - 1         # after the best epoch, before the stop
    fit(build(), tmp_path / "b.npz", cut, callbacks=[EarlyStopping("val_loss", patience=2)],
        **kw)
    b, stop_b = build(), EarlyStopping("val_loss", patience=2)
    hb = fit(b, tmp_path / "b.npz", 40, callbacks=[stop_b], **kw)
    assert (stop_b.stopped_epoch, stop_b.best_epoch) == (stop_a.stopped_epoch, stop_a.best_epoch)
    np.testing.assert_array_equal(a.params, b.params)
    assert ha.val_loss == hb.val_loss


def test_another_runs_checkpoint_is_refused(tmp_path):
    path = tmp_path / "run.npz"
    fit(build(), path, 2)
    m = build()
    before = m.params.copy()
    with pytest.raises(ValueError, match=r"from another run \(differs in: lmbda\)"):
        fit(m, path, 4, lmbda=0.2)
    with pytest.raises(ValueError, match=r"differs in: schedule"):
        fit(m, path, 4, lr=0.8)
    with pytest.raises(ValueError, match="differs in: data"):
        x, y, val = problem()
        m.fit(x[::-1], y[::-1], epochs=4, batch_size=7, lr=InverseTime(0.8, 0.3), lmbda=0.1,
              validation_data=val, verbose=False, checkpoint=path)
    with pytest.raises(ValueError, match="has 2 epochs done, more than the 1 asked for"):
        fit(m, path, 1)
    with pytest.raises(ValueError, match="written with 0 callbacks; this fit has 1"):
        fit(m, path, 4, callbacks=[lambda end: None])
    np.testing.assert_array_equal(m.params, before)


def test_broken_files_and_paths(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a fastnet fit checkpoint"):
        fit(build(), bad, 2)
    other = tmp_path / "other.npz"
    np.savez(other, params=np.zeros(3))
    with pytest.raises(ValueError, match="no 'state' array"):
        fit(build(), other, 2)
    with pytest.raises(ValueError, match="does not exist or is not writable"):
        fit(build(), tmp_path / "missing" / "run.npz", 2)
    with pytest.raises(TypeError, match="checkpoint must be a file path"):
        fit(build(), 3, 2)
