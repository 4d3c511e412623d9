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


def test_shipped_checkpoint_is_ilcs_with_miam_calibrated_and_names_its_heatmap():
    card = read_card(SHIPPED_CHECKPOINT)
    assert card.hyperparameters.get("attn_layer", "miam") == "miam" and card.heatmap_method == "miam_spatial"
    assert 0.2 < card.temperature < 5 and not card.metrics["calibration"]["at_bound"]


def test_shipped_heatmap_as_served_meets_the_localisation_targets_and_beats_image_blind_maps(neu_dir):
    from model_zoo.checkpoint import load_checkpoint
    from model_zoo.preprocess import Preprocess
    from training.data import load_image_folder
    from training.localise import localise
    from training.split import load_manifest

    model, card = load_checkpoint(SHIPPED_CHECKPOINT)
    data = load_image_folder(neu_dir, classes=card.labels, progress=False)
    test = data.subset(load_manifest(DEFAULT_MANIFEST)["test"])
    style = card.heatmap_style
    assert card.metrics["heatmap_style"]["subset"] == "val"  # chosen on validation, never on test
    r = localise(model, test, Preprocess.from_card(card), "model", progress=False, style=style)
    assert r["energy_in_boxes"] >= 0.60 and r["pointing_game"] >= 0.90, (r["energy_in_boxes"], r["pointing_game"])
    gauss = r["baselines"]["centred_gaussian"]  # shaped by the same blur and gamma
    assert r["energy_in_boxes"] > gauss["energy_in_boxes"] + 0.05, r["energy_in_boxes"]
    assert r["pointing_game"] > gauss["pointing_game"] + 0.2, r["pointing_game"]
    for cls in ("inclusion", "patches", "scratches"):  # paper Fig. 9's classes: well above chance
        assert r["per_class"][cls]["energy_in_boxes"] > 1.5 * r["per_class"][cls]["chance"], cls
