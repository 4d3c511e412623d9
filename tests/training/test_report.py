"""Localisation scores and the report's figures."""

import json

import numpy as np
import pytest

from training.localisation import box_mask, localisation_scores, read_boxes

VOC = """<annotation><size><width>10</width><height>10</height></size>
<object><name>scratches</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>10</ymax></bndbox></object>
<object><name>inclusion</name><bndbox><xmin>6</xmin><ymin>1</ymin><xmax>10</xmax><ymax>10</ymax></bndbox></object>
</annotation>"""


@pytest.fixture
def annotations(tmp_path):
    (tmp_path / "scratches_1.xml").write_text(VOC)
    return tmp_path


def test_only_boxes_of_the_images_own_class_count(annotations):
    assert read_boxes(annotations / "scratches_1.xml", "scratches") == [(1, 1, 5, 10)]
    mask = box_mask(read_boxes(annotations / "scratches_1.xml", "scratches"), 10, 10)
    assert mask[:, :5].all() and not mask[:, 5:].any()


def test_a_map_on_the_box_scores_full_energy_and_a_hit(annotations):
    left = np.zeros((10, 10), dtype=np.float32)
    left[:, :5] = 1.0
    right = 1.0 - left
    on = localisation_scores(["scratches_1.jpg"], ["scratches"], left[None], annotations, (10, 10))
    off = localisation_scores(["scratches_1.jpg"], ["scratches"], right[None], annotations, (10, 10))
    assert on["scratches"]["energy_in_boxes"] > 0.95 and on["scratches"]["pointing_game"] == 1.0
    assert off["scratches"]["energy_in_boxes"] < 0.05 and off["scratches"]["pointing_game"] == 0.0
    assert on["all"]["box_area_share"] == pytest.approx(0.5)


def test_heatmaps_cli_draws_every_figure(tmp_path, capsys):
    from ilcs_cli import main
    from model_zoo import create_model
    from model_zoo.checkpoint import ModelCard, save_checkpoint
    from training.data import load_image_folder
    from training.split import make_split, write_manifest

    from .conftest import CLASSES, write_neu_layout

    data = write_neu_layout(tmp_path / "neu", per_class=4)
    write_manifest(make_split(load_image_folder(data, progress=False)), tmp_path / "m.json")
    save_checkpoint(create_model("ilcs", input_size=32), tmp_path / "ck",
                    ModelCard(arch="ilcs", labels=CLASSES, input_size=32, hyperparameters={"input_size": 32}))
    log = [{"epoch": e, "train_loss": 1.0 / e, "train_acc": 0.5, "val_loss": 1.0, "val_acc": 0.5} for e in (1, 2)]
    (tmp_path / "log.json").write_text(json.dumps(log))
    code = main(["heatmaps", "--checkpoint", str(tmp_path / "ck"), "--data", str(data), "--split-manifest",
                 str(tmp_path / "m.json"), "--log", str(tmp_path / "log.json"), "--out", str(tmp_path / "fig")])
    assert code == 0
    for name in ("heatmaps.png", "confusion.png", "accuracy.png", "loss.png"):
        assert (tmp_path / "fig" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_names_its_command_and_tabulates_the_recipe_search_and_full_runs(tmp_path):
    from ilcs_cli import main
    from model_zoo import create_model
    from model_zoo.checkpoint import ModelCard, save_checkpoint
    from training.data import load_image_folder
    from training.split import make_split, write_manifest

    from .conftest import CLASSES, write_neu_layout

    data = write_neu_layout(tmp_path / "neu", per_class=4)
    write_manifest(make_split(load_image_folder(data, progress=False)), tmp_path / "m.json")
    hyper = {"input_size": 32, "miam": False}
    card = ModelCard(arch="ilcs", labels=CLASSES, input_size=32, hyperparameters=hyper,
                     metrics={"val_top1": 0.5, "val_loss": 1.0, "best_epoch": 2, "test_top1": 0.25},
                     training={"config": {"lr": 0.005, "weight_decay": 0.01, "label_smoothing": 0.0, "input_size": 32},
                               "wall_seconds": 90.0})
    runs = tmp_path / "runs"
    save_checkpoint(create_model("ilcs", **hyper), runs / "full" / "best", card)
    log = [{"epoch": e, "train_loss": 1.0 / e, "train_acc": 0.5, "val_loss": 1.0 / e, "val_acc": 0.1 * e}
           for e in range(1, 7)]
    (runs / "full" / "log.json").write_text(json.dumps(log))
    miam = card.model_copy(update={"hyperparameters": {"input_size": 32},
                                   "metrics": {"val_top1": 0.4, "val_loss": 1.5, "best_epoch": 5, "test_top1": 0.2}})
    save_checkpoint(create_model("ilcs", input_size=32), runs / "full_miam" / "best", miam)
    (runs / "full_miam" / "log.json").write_text(json.dumps(log))
    proxy = runs / "recipe-search" / "p_short"
    proxy.mkdir(parents=True)
    (proxy / "log.json").write_text(json.dumps(log[:3]))
    (proxy / "run.json").write_text(json.dumps({"config": card.training["config"] | {"epochs": 15},
                                                "hyperparameters": hyper, "finished": False}))
    out = tmp_path / "rep" / "neu-ilcs.md"
    code = main(["report", "--checkpoint", str(runs / "full" / "best"), "--data", str(data), "--split-manifest",
                 str(tmp_path / "m.json"), "--log", str(runs / "full" / "log.json"), "--out", str(out)])
    assert code == 0
    text = out.read_text()
    assert f"Generated by `ilcs report --log {runs / 'full' / 'log.json'}`" in text
    assert "| `full` | 32 px, no MIAM | 0.005 / 0.01 / 0.0 | 6 | 50.00% (2) | 1.0000 | 25.00% | 1.5 min |" in text
    assert "| `full_miam` | 32 px, MIAM | 0.005 / 0.01 / 0.0 | 6 | 40.00% (5) | 1.5000 | 20.00% | 1.5 min |" in text
    assert ("the same recipe with MIAM (run `full_miam`) chose epoch 5 at 40.00% validation top-1, validation loss "
            "1.5000, against 50.00% and 1.0000 without MIAM") in text
    assert "| `p_short` | 32 px, no MIAM | 32 | 0.005 / 0.01 / 0.0 | 3 (stopped) | - | - | 30.00% |" in text
    assert "activation energy of the last feature map" in text and "No MIAM in the shipped model" in text
    assert (out.parent / "figures" / "recipe-search.png").read_bytes()[:4] == b"\x89PNG"
