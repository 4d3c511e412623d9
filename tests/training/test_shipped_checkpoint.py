"""The shipped checkpoint on the real NEU 30% test split (skips without ../shared/data/neu-det)."""

import pytest

from model_zoo.checkpoint import SHIPPED_CHECKPOINT, read_card
from training.evaluate import evaluate
from training.train import DEFAULT_MANIFEST


def test_shipped_checkpoint_is_small_and_described():
    card = read_card(SHIPPED_CHECKPOINT)
    assert card.arch == "ilcs" and len(card.labels) == 6
    assert SHIPPED_CHECKPOINT.with_suffix(".safetensors").stat().st_size < 5_000_000
    assert {"val_top1", "test_top1", "test_top5"} <= set(card.metrics)
    assert card.training["manifest_sha256"] and card.training["git_commit"]


@pytest.fixture(scope="module")
def shipped_report(neu_dir):
    return evaluate(SHIPPED_CHECKPOINT, neu_dir, DEFAULT_MANIFEST, "test", device="cpu")


def test_eval_reproduces_the_figures_recorded_in_the_card(shipped_report):
    card = read_card(SHIPPED_CHECKPOINT)
    assert shipped_report["n"] == 450
    assert shipped_report["top1"] == pytest.approx(card.metrics["test_top1"])
    assert shipped_report["top5"] == pytest.approx(card.metrics["test_top5"])


def test_shipped_checkpoint_reaches_98_5_percent_on_the_real_test_split(shipped_report):
    assert shipped_report["top1"] >= 0.985, f"top-1 {shipped_report['top1']:.4f} on the NEU test split"
    assert shipped_report["top5"] == 1.0
