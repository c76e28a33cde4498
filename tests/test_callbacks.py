"""The callbacks fastnet provides: ``EarlyStopping`` (stops after ``patience`` epochs without
improvement; ends with the best epoch's parameters) and ``HistoryLogger`` (the history as CSV
or JSON after every epoch, written atomically)."""

import csv
import json

import numpy as np
import pytest

from fastnet import Model
from fastnet.callbacks import EarlyStopping, HistoryLogger


def problem(seed=0):
    rng = np.random.default_rng(seed)
    x, y = rng.random((60, 10)), rng.integers(0, 3, 60)
    return x, y, (rng.random((30, 10)), rng.integers(0, 3, 30))


def params_by_epoch(store):
    return lambda end: store.append(np.array(end.params))


def expected_stop(values, patience, sign):
    """The epoch (from 1) after which EarlyStopping should stop, and the best epoch, worked
    out from the recorded values."""
    best, best_epoch = None, None
    for e, v in enumerate(values, 1):
        if best is None or sign * (v - best) > 0:
            best, best_epoch = v, e
        elif e - best_epoch >= patience:
            return e, best_epoch
    return None, best_epoch


@pytest.mark.parametrize("monitor, sign", [("val_loss", -1), ("val_accuracy", 1)])
@pytest.mark.parametrize("overlap", [False, True])
def test_early_stopping_stops_and_restores_the_best_epoch(monitor, sign, overlap):
    x, y, val = problem()
    m = Model([10, 8, 3], dtype="float64", seed=2)
    seen = []
    stop = EarlyStopping(monitor, patience=2)
    # lr 12: the validation loss gets worse after a few epochs
    h = m.fit(x, y, epochs=40, batch_size=6, lr=12.0, validation_data=val, verbose=False,
              callbacks=[params_by_epoch(seen), stop], overlap=overlap)
    values = getattr(h, monitor)
    stopped, best = expected_stop(values, 2, sign)
    assert stopped is not None and stopped < 40, "the test needs a run that stops early"
    assert len(values) == len(h.seconds) == len(h.lr) == stopped == stop.stopped_epoch
    assert stop.best_epoch == best and stop.best == values[best - 1]
    np.testing.assert_array_equal(m.params, seen[best - 1])
    # the model scores as the best epoch did
    assert m.evaluate(*val)[monitor[4:]] == pytest.approx(values[best - 1], rel=1e-12)


def test_early_stopping_without_restore_keeps_the_last_epoch():
    x, y, val = problem()
    m = Model([10, 8, 3], dtype="float64", seed=2)
    seen = []
    m.fit(x, y, epochs=40, batch_size=6, lr=12.0, validation_data=val, verbose=False,
          callbacks=[params_by_epoch(seen), EarlyStopping("val_loss", 2, restore_best=False)])
    np.testing.assert_array_equal(m.params, seen[-1])


def test_early_stopping_restores_the_best_even_when_it_does_not_stop():
    x, y, val = problem()
    m = Model([10, 8, 3], dtype="float64", seed=2)
    seen = []
    stop = EarlyStopping("val_loss", patience=100)
    h = m.fit(x, y, epochs=8, batch_size=6, lr=12.0, validation_data=val, verbose=False,
              callbacks=[params_by_epoch(seen), stop])
    assert stop.stopped_epoch is None and len(h.val_loss) == 8
    np.testing.assert_array_equal(m.params, seen[int(np.argmin(h.val_loss))])
    # a second fit starts counting afresh
    stop2 = m.fit(x, y, epochs=1, batch_size=6, lr=1e-9, validation_data=val, verbose=False,
                  callbacks=[stop])
    assert stop.best_epoch == 1 and stop2.val_loss[0] == stop.best


def test_early_stopping_arguments():
    with pytest.raises(ValueError, match="monitor must be one of"):
        EarlyStopping("val_acc")
    with pytest.raises(ValueError, match="patience must be an int in"):
        EarlyStopping(patience=0)
    with pytest.raises(TypeError, match="restore_best must be True or False"):
        EarlyStopping(restore_best=1)
    x, y, _ = problem()
    with pytest.raises(ValueError, match="EarlyStopping monitors val_accuracy: pass "
                                         "validation_data"):
        Model([10, 3], seed=0).fit(x, y, epochs=2, batch_size=6, lr=0.1, verbose=False,
                                   callbacks=[EarlyStopping()])
    with pytest.raises(ValueError, match="monitors loss, which training_metrics=False"):
        Model([10, 3], seed=0).fit(x, y, epochs=2, batch_size=6, lr=0.1, verbose=False,
                                   training_metrics=False, callbacks=[EarlyStopping("loss")])


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_history_logger(tmp_path, fmt):
    x, y, val = problem()
    path = tmp_path / f"history.{fmt}"
    sizes = []

    def check_file(end):          # runs after the logger: the file holds this epoch
        text = path.read_text()
        sizes.append(len(text))
        if fmt == "csv":
            assert len(text.splitlines()) == end.epoch + 1

    h = Model([10, 4, 3], seed=1).fit(x, y, epochs=3, batch_size=6, lr=0.5,
                                      validation_data=val, verbose=False,
                                      callbacks=[HistoryLogger(path), check_file])
    assert sizes[0] < sizes[1] < sizes[2]
    if fmt == "csv":
        rows = list(csv.DictReader(path.open()))
        assert list(rows[0]) == list(HistoryLogger.COLUMNS)
        got = {k: [r[k] for r in rows] for k in rows[0]}
        assert got["epoch"] == ["1", "2", "3"]
        assert [float(v) for v in got["val_loss"]] == h.val_loss
        assert [float(v) for v in got["lr"]] == h.lr
        assert [float(v) for v in got["seconds"]] == h.seconds
    else:
        got = json.loads(path.read_text())
        assert got["epoch"] == [1, 2, 3] and got["accuracy"] == h.accuracy
        assert got["val_accuracy"] == h.val_accuracy and got["threads"] == h.threads
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]   # no temporary left


def test_history_logger_leaves_out_what_fit_does_not_record(tmp_path):
    x, y, _ = problem()
    path = tmp_path / "h.json"
    Model([10, 3], seed=1).fit(x, y, epochs=2, batch_size=6, lr=0.5, verbose=False,
                               training_metrics=False, callbacks=[HistoryLogger(path)])
    assert set(json.loads(path.read_text())) == {"epoch", "lr", "seconds", "threads"}
    with pytest.raises(ValueError, match="path must end in .csv or .json"):
        HistoryLogger(tmp_path / "h.txt")
