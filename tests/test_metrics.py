"""Classification metrics (``fastnet.metrics``) against hand-made examples, and
``Model.evaluate(metrics=...)``: the same figures as the functions on ``predict``'s outputs, and
the validation figures ``fit`` records equal to ``evaluate``'s for the same weights."""

import numpy as np
import pytest

from fastnet import Model, metrics


def test_confusion_precision_recall_f1_by_hand():
    labels = [0, 0, 1, 1, 1, 2]
    pred = [0, 1, 1, 1, 0, 1]
    cm = metrics.confusion_matrix(labels, pred, 3)
    assert cm.tolist() == [[1, 1, 0], [1, 2, 0], [0, 1, 0]]
    p, r, f = metrics.precision_recall_f1(cm)
    np.testing.assert_allclose(p, [1 / 2, 2 / 4, 0.0])      # class 2 never predicted: 0
    np.testing.assert_allclose(r, [1 / 2, 2 / 3, 0.0])
    np.testing.assert_allclose(f, [0.5, 2 * (0.5 * 2 / 3) / (0.5 + 2 / 3), 0.0])


def test_top_k_by_hand():
    scores = np.array([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1], [0.3, 0.3, 0.4]])
    labels = [2, 1, 1]
    assert metrics.top_k_accuracy(labels, scores, 1) == 0.0
    assert metrics.top_k_accuracy(labels, scores, 2) == pytest.approx(2 / 3)  # row 2: tie at 0.3
    assert metrics.top_k_accuracy(labels, scores, 3) == 1.0
    assert metrics.top_k_accuracy(labels, scores, 10) == 1.0


def test_roc_curve_and_auc_by_hand():
    # scores from high to low: P N P P N N -> (fpr, tpr) steps worked out by hand
    labels = [1, 0, 1, 1, 0, 0]
    score = [0.9, 0.8, 0.7, 0.6, 0.5, 0.1]
    fpr, tpr, thr = metrics.roc_curve(labels, score)
    np.testing.assert_allclose(fpr, [0, 0, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 1 / 3, 2 / 3, 1, 1, 1])
    assert thr[0] == np.inf and thr[1:].tolist() == score
    # AUC = P(score of a positive > score of a negative): 3 + 2 + 2 of 9 pairs
    assert metrics.auc(fpr, tpr) == pytest.approx(7 / 9)
    # ties: one threshold per distinct score, the diagonal for all-equal scores
    fpr, tpr, _ = metrics.roc_curve([1, 0, 1, 0], [0.5] * 4)
    assert fpr.tolist() == [0, 1] and tpr.tolist() == [0, 1]
    with pytest.raises(ValueError, match="both classes"):
        metrics.roc_curve([1, 1], [0.2, 0.3])


def test_evaluate_with_metrics_matches_the_functions_and_fit():
    rng = np.random.default_rng(0)
    x, y = rng.random((80, 9)), rng.integers(0, 4, 80)
    m = Model([9, 7, 4], loss="log_likelihood", dtype="float64", seed=1)
    h = m.fit(x, y, epochs=3, batch_size=8, lr=0.5, validation_data=(x[:30], y[:30]),
              verbose=False)
    got = m.evaluate(x[:30], y[:30], metrics=metrics.NAMES[:-1], k=2)
    assert got["loss"] == h.val_loss[-1] and got["accuracy"] == h.val_accuracy[-1]
    scores = m.predict(x[:30]).astype(np.float64)
    want = metrics.compute(["top_k", "confusion_matrix", "precision", "recall", "f1"],
                           y[:30], scores, 2)
    assert got["top_k"] == want["top_k"]
    np.testing.assert_array_equal(got["confusion_matrix"], want["confusion_matrix"])
    assert got["confusion_matrix"].sum() == 30
    assert np.trace(got["confusion_matrix"]) / 30 == got["accuracy"]
    for name in ("precision", "recall", "f1"):
        np.testing.assert_array_equal(got[name], want[name])
    assert set(m.evaluate(x, y)) == {"loss", "accuracy"}


@pytest.mark.parametrize("n_out", [1, 2])
def test_roc_auc_for_binary_models(n_out):
    rng = np.random.default_rng(3)
    x = rng.random((60, 5))
    y = (x[:, 0] + 0.3 * rng.random(60) > 0.6).astype(np.int64)
    loss = "cross_entropy" if n_out == 1 else "log_likelihood"
    m = Model([5, 4, n_out], loss=loss, dtype="float64", seed=0)
    targets = y[:, None].astype(float) if n_out == 1 else y
    m.fit(x, targets, epochs=20, batch_size=6, lr=1.0, verbose=False)
    got = m.evaluate(x, targets, metrics=["roc_auc", "confusion_matrix"])
    scores = m.predict(x)[:, -1]
    fpr, tpr, _ = metrics.roc_curve(y, scores)
    assert got["roc_auc"] == metrics.auc(fpr, tpr) > 0.7     # it learned something
    assert got["confusion_matrix"].shape == (2, 2)


def test_bad_metrics():
    m = Model([3, 3], seed=0)
    x, y = np.ones((4, 3)), np.zeros(4, int)
    with pytest.raises(ValueError, match="unknown metric 'auc'"):
        m.evaluate(x, y, metrics=["auc"])
    with pytest.raises(TypeError, match="metrics must be a list"):
        m.evaluate(x, y, metrics=3)
    with pytest.raises(ValueError, match="k must be an int in"):
        m.evaluate(x, y, metrics=["top_k"], k=0)
    with pytest.raises(ValueError, match="roc_auc is for binary outputs"):
        m.evaluate(x, y, metrics=["roc_auc"])
