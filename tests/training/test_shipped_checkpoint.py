"""The shipped checkpoint on the real NEU 30% test split (skips without ../shared/data/neu-det)."""

from model_zoo.checkpoint import SHIPPED_CHECKPOINT, read_card
from training.evaluate import evaluate
from training.train import DEFAULT_MANIFEST


def test_shipped_checkpoint_is_small_and_described():
    card = read_card(SHIPPED_CHECKPOINT)
    assert card.arch == "ilcs" and len(card.labels) == 6
    assert SHIPPED_CHECKPOINT.with_suffix(".safetensors").stat().st_size < 5_000_000
    assert card.metrics["test_top1"] >= 0.985


def test_shipped_checkpoint_reaches_98_5_percent_on_the_real_test_split(neu_dir):
    report = evaluate(SHIPPED_CHECKPOINT, neu_dir, DEFAULT_MANIFEST, "test", device="cpu")
    assert report["n"] == 450
    assert report["top1"] >= 0.985, f"top-1 {report['top1']:.4f} on the NEU test split"
    assert report["top5"] >= 0.995
