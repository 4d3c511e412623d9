"""How the served heatmap is shown: blur and gamma chosen on the validation slice, by a stated rule."""

import json

import numpy as np
import pytest

from training.heatmap_style import GAMMAS, fit_heatmap_style

from .test_report import _cli, _tiny_checkpoint

VOC = """<annotation><object><name>patches</name><bndbox>
<xmin>1</xmin><ymin>1</ymin><xmax>20</xmax><ymax>40</ymax></bndbox></object></annotation>"""


@pytest.fixture
def maps_with_a_lone_spike(tmp_path):
    """Ten 10 x 10 maps: a broad bright region on the box (left half), and one hotter cell off it."""
    names = [f"patches_{i}.jpg" for i in range(10)]
    for n in names:
        (tmp_path / n.replace(".jpg", ".xml")).write_text(VOC)
    rng = np.random.default_rng(0)
    maps = rng.random((10, 10, 10)).astype(np.float32) * 0.1
    maps[:, 2:8, 1:4] += 0.8
    maps[:, 5, 8] = 2.5
    return names, ["patches"] * 10, maps, tmp_path


def test_blur_is_chosen_for_the_pointing_game_and_gamma_to_match_the_boxes_size(maps_with_a_lone_spike):
    names, labels, maps, annotations = maps_with_a_lone_spike
    fit = fit_heatmap_style(names, labels, maps, annotations, (40, 40))
    raw = next(r for r in fit["grid"] if r["blur"] == 0.0 and r["gamma"] == 1.0)
    assert raw["pointing_game"] == 0.0  # the lone spike wins without smoothing
    assert fit["blur"] > 0 and fit["chosen"]["pointing_game"] == 1.0
    same_blur = [r for r in fit["grid"] if r["blur"] == fit["blur"]]
    assert sorted(r["gamma"] for r in same_blur) == sorted(GAMMAS)
    gap = {r["gamma"]: abs(r["bright_area_share"] - r["box_area_share"]) for r in same_blur}
    assert gap[fit["gamma"]] == min(gap.values())


def test_fit_style_writes_the_card_from_validation_and_localise_then_shows_maps_that_way(tmp_path, capsys):
    from ilcs_cli import main
    from model_zoo.checkpoint import read_card

    data, _ = _tiny_checkpoint(tmp_path)
    assert _cli(main, "localise", tmp_path, data, "--subset", "val", "--fit-style", "--json") == 0
    fit = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    card = read_card(tmp_path / "ck")
    assert (card.heatmap_blur, card.heatmap_gamma) == (fit["blur"], fit["gamma"])
    assert card.metrics["heatmap_style"]["subset"] == "val"
    assert _cli(main, "localise", tmp_path, data, "--subset", "val", "--json") == 0
    scored = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scored["style"] == {"blur": fit["blur"], "gamma": fit["gamma"]}


def test_fit_style_refuses_the_test_split(tmp_path, capsys):
    from ilcs_cli import main

    data, _ = _tiny_checkpoint(tmp_path)
    assert _cli(main, "localise", tmp_path, data, "--subset", "test", "--fit-style") != 0
    assert "never on test" in capsys.readouterr().err
