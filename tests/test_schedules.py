"""Learning-rate schedules (``fastnet.schedules``) and ``fit(lr=schedule)``: each schedule's
sequence against hand-worked values, the book's chapter-3 rule halving and stopping, a
scheduled fit equal to the same epochs fitted one by one at those rates, and bad arguments."""

import math

import numpy as np
import pytest

from fastnet import Model
from fastnet.model import History
from fastnet.schedules import (Constant, Cosine, HalveOnPlateau, InverseTime, StepDecay,
                               as_schedule)


def rates(schedule, epochs, history=None):
    history = history or History()
    return [schedule.rate(e, history) for e in range(1, epochs + 1)]


def test_sequences():
    assert rates(Constant(0.3), 3) == [0.3, 0.3, 0.3]
    assert rates(InverseTime(0.5, 0.25), 3) == [0.5, 0.5 / 1.25, 0.5 / 1.5]
    assert rates(StepDecay(1.0, 0.5, every=2), 5) == [1.0, 1.0, 0.5, 0.5, 0.25]
    got = rates(Cosine(1.0, epochs=4, min_lr=0.2), 6)
    want = [1.0, 0.2 + 0.8 * (1 + math.cos(math.pi / 4)) / 2, 0.6,
            0.2 + 0.8 * (1 + math.cos(3 * math.pi / 4)) / 2, 0.2, 0.2]
    np.testing.assert_allclose(got, want, rtol=1e-15)


def test_halve_on_plateau_is_the_books_rule():
    """Epoch k's rate depends on epochs 1..k-1: with patience 2, a best at epoch 2 and no
    improvement in epochs 3-4 halves the rate from epoch 5 on; 5-6 halve it again for epoch
    7, where 1/4 of the first rate is reached and the fit stops (min_fraction 1/4)."""
    h = History(val_accuracy=[0.5, 0.6, 0.6, 0.55, 0.6, 0.6, 0.7])
    s = HalveOnPlateau(1.0, patience=2, min_fraction=0.25)
    assert rates(s, 7, h) == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, None]
    # the book's 1/128: seven halvings; an improvement resets the count
    h = History(val_accuracy=[0.9] + [0.8] * 40)
    s = HalveOnPlateau(1.0, patience=5)
    assert [s.rate(e, h) for e in (6, 7, 12, 36)] == [1.0, 0.5, 0.25, 1 / 64]
    assert s.rate(41, h) is None
    loss = HalveOnPlateau(1.0, patience=1, monitor="val_loss")
    assert rates(loss, 4, History(val_loss=[1.0, 0.5, 0.7])) == [1.0, 1.0, 1.0, 0.5]


@pytest.mark.parametrize("schedule", [InverseTime(0.8, 0.5), StepDecay(0.8, 0.5, 1),
                                      Cosine(0.8, 3)])
@pytest.mark.parametrize("overlap", [False, True])
def test_scheduled_fit_equals_fits_at_those_rates(schedule, overlap):
    rng = np.random.default_rng(0)
    x, y = rng.random((50, 12)), rng.integers(0, 3, 50)
    a = Model([12, 6, 3], dtype="float64", seed=4)
    h = a.fit(x, y, epochs=3, batch_size=7, lr=schedule, lmbda=0.1, verbose=False,
              validation_data=(x[:20], y[:20]), overlap=overlap)
    assert h.lr == rates(schedule, 3)
    b = Model([12, 6, 3], dtype="float64", seed=4)
    for lr in h.lr:
        b.fit(x, y, epochs=1, batch_size=7, lr=lr, lmbda=0.1, verbose=False)
    np.testing.assert_array_equal(a.params, b.params)


def test_plateau_stops_the_fit():
    rng = np.random.default_rng(1)
    x, y = rng.random((40, 8)), rng.integers(0, 2, 40)
    m = Model([8, 2], dtype="float64", seed=0)
    # lr tiny: accuracy stays put, so the rate halves every epoch and stops at 1/4
    h = m.fit(x, y, epochs=10, batch_size=40, lr=HalveOnPlateau(1e-9, patience=1,
              min_fraction=0.25), validation_data=(x, y), verbose=False, overlap=True)
    assert len(h.seconds) == len(h.lr) == len(h.val_accuracy) < 10
    assert h.lr[:2] == [1e-9, 1e-9] and h.lr[-1] > 1e-9 / 4


def test_bad_arguments():
    with pytest.raises(TypeError, match="lr must be a number > 0 or a fastnet.schedules"):
        as_schedule("0.5")
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        as_schedule(-1.0)
    with pytest.raises(ValueError, match="factor must be in"):
        StepDecay(1.0, factor=2.0)
    with pytest.raises(ValueError, match="monitor must be one of"):
        HalveOnPlateau(1.0, monitor="val_acc")
    with pytest.raises(ValueError, match="min_lr"):
        Cosine(0.1, 5, min_lr=0.2)
    m = Model([4, 2], dtype="float64", seed=0)
    before = m.params.copy()
    x, y = np.ones((5, 4)), np.zeros(5, int)
    with pytest.raises(ValueError, match="HalveOnPlateau monitors val_accuracy: pass "
                                         "validation_data"):
        m.fit(x, y, epochs=2, batch_size=5, lr=HalveOnPlateau(0.1), verbose=False)
    with pytest.raises(ValueError, match="lmbda=10.0 is too large for lr=1.0"):
        m.fit(x, y, epochs=2, batch_size=5, lr=InverseTime(1.0, 1.0), lmbda=10.0,
              verbose=False)
    np.testing.assert_array_equal(m.params, before)
