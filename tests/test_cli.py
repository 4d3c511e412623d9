"""The ``ilcs`` command line: one parser, lazy subcommands."""

from __future__ import annotations

import argparse
import subprocess
import sys
from types import SimpleNamespace

import pytest

import ilcs_cli
from training.config import TrainConfig


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_building_the_parser_loads_no_package_of_ours_nor_torch():
    code = (
        "import sys, ilcs_cli; ilcs_cli.build_parser(); names = 'torch numpy training service benchmarks fastapi';"
        "print(sorted(m for m in names.split() if m in sys.modules))"
    )
    assert _run(code) == "[]"


def test_serve_needs_no_training_code():
    code = (
        "import sys; sys.modules['training'] = None;"  # as in a serving image without training/
        "import ilcs_cli; args = ilcs_cli.build_parser().parse_args(['serve', '--port', '9']);"
        "import service.run; print(args.port)"
    )
    assert _run(code) == "9"


def test_train_defaults_on_the_command_line_are_the_recipe():
    args = ilcs_cli.build_parser().parse_args(["train"])
    assert ilcs_cli.train_config(args) == TrainConfig()
    args = ilcs_cli.build_parser().parse_args(["train", "--epochs", "3", "--lr", "0.1", "--model-kwargs", "{}"])
    cfg = ilcs_cli.train_config(args)
    assert (cfg.epochs, cfg.lr, cfg.model_kwargs, cfg.batch_size) == (3, 0.1, {}, TrainConfig().batch_size)


def test_data_and_manifest_left_unset_are_the_recipes(monkeypatch):
    seen = []
    monkeypatch.setitem(sys.modules, "training.evaluate", SimpleNamespace(evaluate_cli=seen.append))
    assert ilcs_cli.main(["eval", "--json"]) == 0
    recipe = TrainConfig()
    assert (seen[0].data, seen[0].split_manifest) == (recipe.data, recipe.manifest)
    assert ilcs_cli.main(["eval", "--data", "d", "--split-manifest", "m.json"]) == 0
    assert (seen[1].data, seen[1].split_manifest) == ("d", "m.json")


def test_bench_models_runs_the_model_benchmark_without_the_service(monkeypatch):
    seen = []
    monkeypatch.setitem(sys.modules, "benchmarks.models", SimpleNamespace(main=seen.append))
    monkeypatch.setitem(sys.modules, "service.bench", None)  # importing it would now fail
    assert ilcs_cli.main(["bench", "--models", "--out", "x.md"]) == 0
    assert [a.out for a in seen] == ["x.md"]


def test_bench_without_a_flag_is_an_error(capsys):
    assert ilcs_cli.main(["bench"]) == 2
    assert "say which benchmark" in capsys.readouterr().err


def test_a_package_this_installation_lacks_is_a_clear_error():
    run = ilcs_cli.call("no_such_package.module:main")
    with pytest.raises(ValueError, match="`ilcs x` needs the no_such_package package"):
        run(argparse.Namespace(command="x"))


def test_every_subcommand_has_help():
    for name, command in ilcs_cli.COMMANDS.items():
        assert command.help, name
        ilcs_cli.build_parser().parse_args([name] + (["--models"] if name == "bench" else []))
