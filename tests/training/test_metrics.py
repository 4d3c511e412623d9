"""Top-k accuracy is the paper's Algorithm 2; per-class figures and the confusion matrix add up."""

import numpy as np
import pytest

from training.metrics import classification_report, confusion_matrix, topk_accuracy

SCORES = np.array(
    [
        [0.9, 0.05, 0.05],  # true 0: top-1 hit
        [0.5, 0.3, 0.2],  # true 1: top-1 miss, top-2 hit
        [0.6, 0.3, 0.1],  # true 2: miss even at top-2
        [0.1, 0.2, 0.7],  # true 2: top-1 hit
    ]
)
TARGETS = np.array([0, 1, 2, 2])


def test_algorithm2_on_hand_made_scores():
    assert topk_accuracy(SCORES, TARGETS, 1) == 0.5
    assert topk_accuracy(SCORES, TARGETS, 2) == 0.75
    assert topk_accuracy(SCORES, TARGETS, 3) == 1.0


def test_algorithm2_breaks_ties_like_numpy_argsort():
    # argsort([0.5, 0.5])[-1:] is index 1 with a stable sort, so class 1 is the top-1 of a tie.
    assert topk_accuracy(np.array([[0.5, 0.5]]), np.array([1]), 1) == 1.0
    assert topk_accuracy(np.array([[0.5, 0.5]]), np.array([0]), 1) == 0.0


def test_empty_set_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        topk_accuracy(np.zeros((0, 3)), np.zeros(0, dtype=int), 1)


def test_report_per_class_and_confusion():
    r = classification_report(SCORES, TARGETS, ["a", "b", "c"])
    assert r["confusion"] == [[1, 0, 0], [1, 0, 0], [1, 0, 1]]
    assert r["per_class"]["a"]["precision"] == pytest.approx(1 / 3)
    assert r["per_class"]["a"]["recall"] == 1.0
    assert r["per_class"]["c"]["recall"] == 0.5 and r["per_class"]["c"]["precision"] == 1.0
    assert r["per_class"]["b"]["f1"] == 0.0
    assert r["n"] == 4 and r["top5"] == 1.0


def test_confusion_rows_are_true_classes():
    assert confusion_matrix([0, 0, 1], [1, 1, 1], 2).tolist() == [[0, 2], [0, 1]]
