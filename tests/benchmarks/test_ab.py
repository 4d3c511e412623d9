"""`python -m benchmarks.ab`: another revision's tree is served beside this one and the rounds are compared."""

import argparse

import numpy as np

from benchmarks.ab import export_revision, report
from benchmarks.loopback import Level


def level(rate: float) -> Level:
    return Level(64, 800, 0, 800 / rate, np.full(800, 0.5), 4.0, 10.0, 1.0)


def test_the_baseline_revision_is_exported_as_a_source_tree(tmp_path):
    tree = export_revision("HEAD", tmp_path)
    assert (tree / "ilcs_cli.py").is_file() and (tree / "service" / "main.py").is_file()
    assert (tree / "model_zoo" / "checkpoints" / "ilcs_neu.safetensors").stat().st_size > 0


def test_the_report_compares_the_medians_of_the_alternating_rounds_with_the_goal():
    ns = argparse.Namespace(clients=64, requests=800, batch=16, delay_ms=5.0)
    info = {
        "command": "python -m benchmarks.ab",
        "baseline": "main (abc123)",
        "head": "def456",
        "load": ["1", "2", "3"],
    }
    text = report(
        info, {"baseline": [level(50), level(40), level(45)], "this tree": [level(90), level(60), level(80)]}, ns
    )
    assert "| 1 | 50.0 | 90.0 | 500 | 500 | 0 |" in text
    assert "**80.0 against 45.0 requests/s, 1.78x**; the goal of at least 1.5x is met." in text
    text = report(info, {"baseline": [level(50)], "this tree": [level(60)]}, ns)
    assert "1.20x**; the goal of at least 1.5x is **missed**." in text
