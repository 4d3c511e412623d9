"""On the shipped checkpoint and the NEU test split, every backend predicts what `ilcs eval` predicts.

Top-1 identical on every image of the split, calibrated probabilities within ``PROB_ATOL`` and
the heatmap's map within ``MAP_ATOL`` of the torch backend's. Skips without the NEU data.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model_zoo.checkpoint import SHIPPED_CHECKPOINT
from model_zoo.preprocess import decode_gray
from service.backends import available_backends
from service.inference import Engine

PROB_ATOL = 1e-4
MAP_ATOL = 1e-4
BATCH = 16


@pytest.fixture(scope="module")
def split(neu_dir):
    from training.config import DEFAULT_MANIFEST
    from training.evaluate import evaluate
    from training.split import load_manifest

    report = evaluate(SHIPPED_CHECKPOINT, neu_dir, DEFAULT_MANIFEST, "test", device="cpu")
    names = sorted(load_manifest(DEFAULT_MANIFEST)["test"])
    images = [decode_gray((neu_dir / "images" / name).read_bytes()) for name in names]
    return names, images, report


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-cache")


def _predict(engine: Engine, images: list[np.ndarray]):
    out = []
    for start in range(0, len(images), BATCH):
        out += engine.predict([engine.prepare(im) for im in images[start : start + BATCH]])
    return np.stack([p.scores for p in out]), np.stack([p.attention for p in out])


@pytest.mark.parametrize("backend", available_backends(torch.device("cpu")))
def test_every_backend_predicts_what_ilcs_eval_predicts_on_the_test_split(split, backend, cache):
    names, images, report = split
    torch_engine = Engine.load(SHIPPED_CHECKPOINT, "cpu", threads=1, workers=1, backend="torch", cache_dir=cache)
    engine = torch_engine if backend == "torch" else torch_engine.with_backend(backend)
    scores, maps = _predict(engine, images)
    labels = engine.card.labels
    assert len(names) == report["n"]
    assert {n: labels[i] for n, i in zip(names, scores.argmax(1), strict=True)} == report["predictions"]
    if backend != "torch":
        ref_scores, ref_maps = _predict(torch_engine, images)
        np.testing.assert_allclose(scores, ref_scores, atol=PROB_ATOL)
        np.testing.assert_allclose(maps, ref_maps, atol=MAP_ATOL)
