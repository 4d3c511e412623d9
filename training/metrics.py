"""Top-k accuracy exactly as the paper's Algorithm 2, and per-class figures."""

from __future__ import annotations

import numpy as np

__all__ = ["classification_report", "confusion_matrix", "topk_accuracy"]


def topk_accuracy(scores: np.ndarray, targets: np.ndarray, k: int) -> float:
    """Algorithm 2: the share of images whose true class is in ``argsort(s_i)[-k:]``.

    Ties are broken as numpy's stable argsort breaks them, as in the paper's Python.
    """
    scores, targets = np.asarray(scores), np.asarray(targets)
    if len(scores) == 0:
        msg = "top-k accuracy of an empty set is undefined"
        raise ValueError(msg)
    top = np.argsort(scores, axis=1, kind="stable")[:, -k:]
    return float(np.mean([t in row for t, row in zip(targets, top, strict=True)]))


def confusion_matrix(targets: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(targets), np.asarray(preds)), 1)
    return cm


def classification_report(scores: np.ndarray, targets: np.ndarray, classes: list[str]) -> dict:
    """top-1, top-5, n, per-class precision/recall/F1/support and the confusion matrix."""
    scores, targets = np.asarray(scores), np.asarray(targets)
    preds = scores.argmax(axis=1)
    cm = confusion_matrix(targets, preds, len(classes))
    per_class = {}
    for i, c in enumerate(classes):
        tp = int(cm[i, i])
        p = tp / cm[:, i].sum() if cm[:, i].sum() else 0.0
        r = tp / cm[i].sum() if cm[i].sum() else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        per_class[c] = {"precision": p, "recall": r, "f1": f1, "support": int(cm[i].sum())}
    return {
        "top1": topk_accuracy(scores, targets, 1),
        "top5": topk_accuracy(scores, targets, min(5, len(classes))),
        "n": len(targets),
        "per_class": per_class,
        "confusion": cm.tolist(),
        "classes": classes,
    }
