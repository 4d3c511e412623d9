"""On real NEU images the service answers exactly what `ilcs eval` predicts for the same checkpoint.

Uses the shipped checkpoint when it is there (else the tiny test checkpoint: the claim is
about the path, one preprocessing and one checkpoint format, not about accuracy). Skips
without the NEU data (``../shared/data/neu-det`` or ``$ILCS_NEU_DIR``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model_zoo.checkpoint import SHIPPED_CHECKPOINT, load_checkpoint
from model_zoo.preprocess import Preprocess, decode_gray

PER_CLASS = 2


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint) -> Path:
    return SHIPPED_CHECKPOINT if SHIPPED_CHECKPOINT.with_suffix(".json").is_file() else tiny_checkpoint


@pytest.fixture(scope="module")
def sample(neu_dir, tmp_path_factory) -> Path:
    """A NEU-DET-layout folder of links to a few real images of each class (nothing copied)."""
    root = tmp_path_factory.mktemp("neu-sample")
    (root / "images").mkdir()
    classes = sorted({p.name.rsplit("_", 1)[0] for p in (neu_dir / "images").glob("*.jpg")})
    for c in classes:
        for path in sorted((neu_dir / "images").glob(f"{c}_*.jpg"))[:PER_CLASS]:
            (root / "images" / path.name).symlink_to(path)
    return root


def test_service_predicts_what_ilcs_eval_predicts(live, checkpoint, sample):
    from training.evaluate import evaluate

    report = evaluate(checkpoint, sample, all_images=True, device="cpu")
    paths = sorted((sample / "images").iterdir())
    with live(checkpoint=checkpoint, max_batch_size=8) as svc:
        files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]
        batch = svc.post("/classify/batch", files=files).json()["results"]
        single = svc.classify(paths[0].read_bytes(), "image/jpeg").json()
    served = {item["filename"]: item["result"]["label"] for item in batch}
    assert served == report["predictions"]
    assert single["label"] == report["predictions"][paths[0].name]


def test_service_scores_equal_the_models_own(live, checkpoint, sample):
    model, card = load_checkpoint(checkpoint)
    paths = sorted((sample / "images").iterdir())
    images = [decode_gray(p.read_bytes()) for p in paths]
    with torch.inference_mode():
        logits = model(torch.cat([Preprocess.from_card(card)(im) for im in images]))
        expected = torch.softmax(logits / card.temperature, 1).numpy()  # the card's calibrated probabilities
    with live(checkpoint=checkpoint, max_batch_size=4) as svc:
        files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]
        results = [item["result"] for item in svc.post("/classify/batch", files=files).json()["results"]]
    for result, scores in zip(results, expected, strict=True):
        assert result["index"] == int(np.argmax(scores))
        assert result["confidence"] == pytest.approx(float(scores.max()), abs=1e-5)
        assert (result["width"], result["height"]) == (200, 200)
