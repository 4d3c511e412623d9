"""The ``ilcs`` command line: one parser, lazy subcommands."""

from __future__ import annotations

import subprocess
import sys

from training.config import TrainConfig


def test_building_the_parser_loads_neither_torch_nor_the_training_loop():
    code = (
        "import sys, ilcs_cli; ilcs_cli.build_parser();"
        "print(sorted(m for m in ('torch', 'numpy', 'training.train', 'fastapi') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_train_defaults_on_the_command_line_are_the_recipe():
    import ilcs_cli

    args = ilcs_cli.build_parser().parse_args(["train"])
    recipe = TrainConfig()
    for name in ("epochs", "batch_size", "lr", "weight_decay", "label_smoothing", "input_size", "seed"):
        assert getattr(args, name) == getattr(recipe, name), name
