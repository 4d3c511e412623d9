"""Table 3: FLOPs are counted as the report says, and the report puts ours beside the paper's."""

import argparse

import pytest
import torch

from benchmarks import table3
from benchmarks.paper import PAPER_TABLE3
from model_zoo.profile import count_flops, count_params


def test_flops_are_two_per_multiply_add_of_the_whole_batch():
    conv = torch.nn.Conv2d(3, 4, 3, bias=False)
    macs = 6 * 6 * 4 * 3 * 3 * 3  # output pixels x output channels x kernel volume, on an 8x8 input
    assert count_flops(conv, 8) == 2 * macs
    assert count_flops(conv, 8, batch=16) == 16 * 2 * macs
    assert count_params(conv) == 4 * 3 * 3 * 3


def fake_rows(sizes=(300, 200)):
    labels = [(n, n) for n in PAPER_TABLE3] + [("ilcs (paper head)", "ilcs")]
    return [
        {"model": label, "name": name, "size": s, "params": 2_000_000 + 1000 * i, "largest_linear": 0.94,
         "flops": int(1e9 * (1 + i)), "paper": PAPER_TABLE3[name]}
        for i, (label, name) in enumerate(labels)
        for s in sizes
    ]  # fmt: skip


@pytest.fixture
def text():
    hypothesis = [(name, paper_flops, paper_flops * 1.02) for name, (_, paper_flops) in PAPER_TABLE3.items()]
    return table3.render_table3(fake_rows(), hypothesis)


def test_each_row_stands_beside_the_papers_figures_at_the_largest_input(text):
    assert "| resnet50 | 300 | 2.000 | 1.000 | 0.500 | 25.56 | 65.78 |" in text
    assert "| resnet50 | 200 | 2.000 | 1.000 | 0.500 |  |  |" in text
    assert "paper / ours" not in text and "resnet50 65.78x" in text  # ratio of the paper's FLOPs over ours
    assert "+0.001M on ResNet50's 2048" in text  # MIAM's cost, from the rows


def test_the_flops_hypothesis_is_stated_as_one(text):
    section = text.split("## A hypothesis on the paper's FLOPs")[1]
    assert "Not a fact" in section
    assert "| ilcs | 4.26 | 4.35 | 1.02 |" in section
    assert "agree within 2%" in section
    assert "## How to reproduce" in text and "`ilcs profile`" in text


def test_ilcs_profile_writes_the_report(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(table3, "table3_rows", lambda sizes: fake_rows(sizes))
    monkeypatch.setattr(table3, "hypothesis_rows", lambda: [(n, f, f) for n, (_, f) in PAPER_TABLE3.items()])
    out = tmp_path / "t3.md"
    table3.main(argparse.Namespace(out=str(out), sizes=[300, 200]))
    assert out.read_text().startswith("# Table 3") and "# Table 3" in capsys.readouterr().out
