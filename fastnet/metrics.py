"""Classification metrics of ``Model.evaluate(x, y, metrics=[...])``, from labels and scores.

labels: ``(n,)`` true classes; scores: ``(n, n_out)`` outputs (``n_out == 1``: one sigmoid
output, read as class 1 above 0.5). ``compute(names, labels, scores, k)`` returns the named
metrics: ``accuracy`` (fraction), ``top_k`` (the true class among the k highest scores),
``confusion_matrix`` (``int64[c, c]``: rows true, columns predicted), ``precision``,
``recall``, ``f1`` (``float64[c]`` per class; 0 where undefined), ``roc_auc`` (binary outputs:
the area under ``roc_curve``). Tests: ``tests/test_metrics.py`` (hand-made examples).
"""

from __future__ import annotations

import numpy as np

NAMES = ("accuracy", "top_k", "confusion_matrix", "precision", "recall", "f1", "roc_auc")


def predicted(scores: np.ndarray) -> np.ndarray:
    """The predicted class of each row: argmax, or ``score > 0.5`` for one output."""
    if scores.shape[1] == 1:
        return (scores[:, 0] > 0.5).astype(np.int64)
    return np.argmax(scores, axis=1)


def n_classes(scores: np.ndarray) -> int:
    return max(2, scores.shape[1])


def confusion_matrix(labels, pred, classes: int) -> np.ndarray:
    """``cm[i, j]``: the samples of class i predicted as j."""
    cm = np.zeros((classes, classes), np.int64)
    np.add.at(cm, (np.asarray(labels, np.int64), np.asarray(pred, np.int64)), 1)
    return cm


def _ratio(num, den) -> np.ndarray:
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def precision_recall_f1(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class: precision tp/(tp + fp), recall tp/(tp + fn), and their harmonic mean; 0
    where a denominator is 0 (a class never predicted, or never present)."""
    tp = np.diag(cm)
    precision = _ratio(tp, cm.sum(axis=0))
    recall = _ratio(tp, cm.sum(axis=1))
    return precision, recall, _ratio(2 * precision * recall, precision + recall)


def top_k_accuracy(labels, scores: np.ndarray, k: int) -> float:
    """The fraction of rows whose true class has one of the k highest scores (ties broken
    towards the lower class index, as argmax does)."""
    k = min(k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(order == np.asarray(labels)[:, None], axis=1)))


def roc_curve(labels, score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` of a binary classifier: for each distinct score t, taken from
    the highest down (and +inf first), the false- and true-positive rates of "positive when
    score >= t". Needs both classes among ``labels`` (0/1)."""
    labels = np.asarray(labels).astype(bool)
    pos, neg = int(labels.sum()), int((~labels).sum())
    if pos == 0 or neg == 0:
        raise ValueError("roc_auc needs samples of both classes in y")
    order = np.argsort(-np.asarray(score, np.float64), kind="stable")
    s, hit = np.asarray(score, np.float64)[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]     # the end of each tie group
    tps, fps = np.cumsum(hit)[last], np.cumsum(~hit)[last]
    return (np.r_[0.0, fps / neg], np.r_[0.0, tps / pos], np.r_[np.inf, s[last]])


def auc(fpr, tpr) -> float:
    """The area under a curve given by its points (trapezoids)."""
    fpr, tpr = np.asarray(fpr, np.float64), np.asarray(tpr, np.float64)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def check_names(metrics) -> list[str]:
    """``metrics`` as a list of known names (ValueError/TypeError otherwise)."""
    if isinstance(metrics, str):
        metrics = [metrics]
    try:
        names = list(metrics)
    except TypeError:
        raise TypeError(f"metrics must be a list of names from {NAMES}, got "
                        f"{type(metrics).__name__}") from None
    for name in names:
        if name not in NAMES:
            raise ValueError(f"unknown metric {name!r}; expected names from {NAMES}")
    return names


def compute(names, labels, scores: np.ndarray, k: int = 5) -> dict:
    """The metrics ``names`` (see the module's header) of ``scores`` against ``labels``."""
    labels = np.asarray(labels, np.int64)
    pred = predicted(scores)
    cm = confusion_matrix(labels, pred, n_classes(scores))
    per_class = dict(zip(("precision", "recall", "f1"), precision_recall_f1(cm)))
    out = {}
    for name in names:
        if name == "accuracy":
            out[name] = float(np.mean(pred == labels))
        elif name == "top_k":
            out[name] = top_k_accuracy(labels, scores, k)
        elif name == "confusion_matrix":
            out[name] = cm
        elif name in per_class:
            out[name] = per_class[name]
        else:                                                   # roc_auc
            if scores.shape[1] > 2:
                raise ValueError(f"roc_auc is for binary outputs (1 or 2 columns); this model "
                                 f"has {scores.shape[1]}")
            out[name] = auc(*roc_curve(labels, scores[:, -1])[:2])
    return out
