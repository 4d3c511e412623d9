"""`ilcs bench`: the calibration's pick, and which benchmark each flag runs (the service never imports benchmarks)."""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import ilcs_cli
from service import calibration
from service.schemas import CalibrationRow


def rows(*pairs: tuple[int, float]) -> list[CalibrationRow]:
    return [CalibrationRow(batch_size=b, images_per_s=ips, ms_per_batch=1e3 * b / ips) for b, ips in pairs]


def test_calibration_picks_the_smallest_batch_near_the_best_throughput():
    table = rows((1, 50.0), (2, 80.0), (4, 96.0), (8, 100.0), (16, 90.0))
    size, delay_ms = calibration.choose(table)
    assert calibration.choose(table) == calibration.Plan(batch_size=4, delay_ms=10.0)
    assert size == 4, "96 images/s is within 5% of the best (100): the smaller batch answers sooner"
    assert delay_ms == 10.0, "half a one-image call (20 ms / 2)"


def test_calibration_delay_is_half_a_one_image_call_between_1_and_10_ms():
    assert calibration.choose(rows((1, 125.0), (8, 130.0)))[1] == 4.0
    assert calibration.choose(rows((1, 5000.0)))[1] == 1.0
    assert calibration.choose(rows((1, 10.0), (64, 100.0)))[1] == 10.0


def test_calibration_table_marks_the_pick():
    text = calibration.format_table(rows((1, 50.0), (2, 80.0)), chosen=2)
    assert "| 2 (chosen) | 80.0 |" in text and "| 1 | 50.0 |" in text


def test_calibration_measures_every_size(tiny_checkpoint):
    from service.inference import Engine

    engine = Engine.load(tiny_checkpoint, "cpu", threads=1)
    table = calibration.measure(engine, (1, 3), min_seconds=0.01)
    assert [r.batch_size for r in table] == [1, 3] and all(r.images_per_s > 0 for r in table)


def args(**flags) -> argparse.Namespace:
    base = {"calibrate": False, "load": False, "models": False, "clients": 16, "requests": 800, "out": None}
    return argparse.Namespace(**{**base, **flags})


def test_bench_without_a_flag_says_what_to_choose():
    with pytest.raises(ValueError, match="--calibrate, --load or --models"):
        ilcs_cli._bench(args())


@pytest.mark.parametrize("flag", ["load", "models"])
def test_bench_hands_load_and_models_to_their_benchmark_modules(monkeypatch, flag):
    called = []
    for name in ("load", "models"):
        fake = SimpleNamespace(main=lambda a, name=name: called.append((name, a)))
        monkeypatch.setitem(sys.modules, f"benchmarks.{name}", fake)
    given = args(**{flag: True})
    ilcs_cli._bench(given)
    assert called == [(flag, given)]


def test_the_benchmark_modules_are_found_from_the_source_tree():
    from benchmarks import load

    assert callable(load.main)


def test_the_service_package_never_imports_the_benchmarks():
    service = Path(calibration.__file__).parent
    for path in service.rglob("*.py"):
        source = path.read_text()
        assert "import_module" not in source, f"{path} loads modules by name"
        for node in ast.walk(ast.parse(source)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] in ("benchmarks", "training") for n in names), f"{path} imports {names}"
