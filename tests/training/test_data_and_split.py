"""Reading both folder layouts once, and a stratified, duplicate-safe split manifest."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.config import TrainConfig, default_neu_root
from training.data import load_image_folder
from training.split import load_manifest, make_split, write_manifest

from .conftest import CLASSES, synthetic_image, write_neu_layout


def test_the_neu_root_is_the_shared_copy_beside_the_checkout_unless_ilcs_neu_dir_says(monkeypatch, tmp_path):
    monkeypatch.delenv("ILCS_NEU_DIR", raising=False)
    checkout = Path(__file__).resolve().parents[2]
    assert default_neu_root() == checkout.parent / "shared" / "data" / "neu-det"
    monkeypatch.setenv("ILCS_NEU_DIR", str(tmp_path))
    assert default_neu_root() == tmp_path and TrainConfig().data == str(tmp_path)


def test_neu_layout_labels_are_filename_prefixes_sorted(neu_like):
    data = load_image_folder(neu_like, progress=False)
    assert data.classes == sorted(CLASSES)
    assert len(data) == 61
    i = data.names.index("rolled-in_scale_3.png")
    assert data.classes[data.labels[i]] == "rolled-in_scale"
    assert data.images[i].dtype == np.uint8 and data.images[i].shape == (48, 48)


def test_folder_per_class_layout(tmp_path):
    rng = np.random.default_rng(1)
    for c, name in enumerate(["ok", "scratch"]):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.fromarray(synthetic_image(c, rng)).save(tmp_path / name / f"{i}.bmp")
    data = load_image_folder(tmp_path, progress=False)
    assert data.classes == ["ok", "scratch"]
    assert data.names[0] == "ok/0.bmp" and list(data.labels) == [0, 0, 0, 1, 1, 1]


def test_unknown_class_against_model_labels_is_refused(neu_like):
    with pytest.raises(ValueError, match="not among the model's labels"):
        load_image_folder(neu_like, classes=["crazing"], progress=False)


def test_empty_or_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_image_folder(tmp_path / "nope", progress=False)
    with pytest.raises(ValueError, match="no images"):
        load_image_folder(tmp_path, progress=False)


def test_split_is_stratified_disjoint_and_keeps_duplicates_together(tmp_path):
    root = write_neu_layout(tmp_path / "neu", per_class=20)
    data = load_image_folder(root, progress=False)
    for seed in range(5):
        m = make_split(data, test_fraction=0.3, val_fraction=0.1, seed=seed)
        train, val, test = set(m["train"]), set(m["val"]), set(m["test"])
        assert not (train & val or train & test or val & test)
        assert len(train | val | test) == len(data)
        sides = [
            name
            for name, s in (("train", train), ("val", val), ("test", test))
            if {"patches_1.png", "patches_99.png"} & s
        ]
        assert len(sides) == 1, f"duplicates split across {sides} with seed {seed}"
        for c in CLASSES:
            n_test = sum(n.startswith(c + "_") for n in test)
            assert n_test in (6, 7), (c, n_test)  # 30% of 20 (21 for patches)


def test_manifest_round_trip_and_missing_list(tmp_path, neu_like):
    m = make_split(load_image_folder(neu_like, progress=False))
    write_manifest(m, tmp_path / "m.json")
    assert load_manifest(tmp_path / "m.json") == json.loads((tmp_path / "m.json").read_text())
    (tmp_path / "bad.json").write_text('{"train": []}')
    with pytest.raises(ValueError, match="'val'"):
        load_manifest(tmp_path / "bad.json")


def test_committed_neu_manifest_is_70_30_and_duplicate_safe():
    from training.train import DEFAULT_MANIFEST

    m = load_manifest(DEFAULT_MANIFEST)
    assert (len(m["train"]), len(m["val"]), len(m["test"])) == (942, 108, 450)
    side = {n: k for k in ("train", "val", "test") for n in m[k]}
    assert side["patches_101.jpg"] == side["patches_105.jpg"]
    for c in CLASSES:
        assert sum(n.startswith(c + "_") and n[len(c) + 1].isdigit() for n in m["test"]) == 75
