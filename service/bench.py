"""``ilcs bench``: ``--calibrate`` (here), ``--load`` (``benchmarks/load.py``), ``--models`` (``benchmarks/models.py``).

The benchmark modules live beside the project, not in the serving package; they
are imported only when asked for, from the installed ``benchmarks`` package or
from the source tree this file sits in.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from types import ModuleType

from service import calibration
from service.inference import Engine
from service.settings import get_settings

__all__ = ["bench_cli", "calibrate_cli"]


def bench_cli(args: argparse.Namespace) -> None:
    """Run the benchmarks the flags ask for, in the order calibrate, load, models."""
    if not (args.calibrate or args.load or args.models):
        msg = "say which benchmark: --calibrate, --load or --models"
        raise ValueError(msg)
    if args.calibrate:
        calibrate_cli(args)
    if args.load:
        _benchmark("load").main(args)
    if args.models:
        _benchmark("models").main(args)


def calibrate_cli(args: argparse.Namespace) -> None:
    """Measure throughput per batch size for the configured checkpoint and device; print the pick."""
    settings = get_settings()
    engine = Engine.load(settings.checkpoint, settings.device, settings.threads, settings.model_workers, settings.graph)
    rows = calibration.measure(engine, calibration.DEFAULT_SIZES, settings.calibration_seconds)
    size, delay_ms = calibration.choose(rows)
    text = (
        f"calibration of {engine.card.name} v{engine.card.version} on {engine.device}:\n\n"
        f"{calibration.format_table(rows, size)}\n\n"
        f"ILCS_MAX_BATCH_SIZE={size} ILCS_MAX_DELAY_MS={delay_ms}\n"
    )
    print(text, end="")
    if args.out and not args.load:  # with --load, the load report holds the calibration too
        Path(args.out).write_text(text)


def _benchmark(name: str) -> ModuleType:
    try:
        return importlib.import_module(f"benchmarks.{name}")
    except ModuleNotFoundError as exc:
        root = Path(__file__).resolve().parents[1]
        if exc.name != "benchmarks" or not (root / "benchmarks" / f"{name}.py").is_file():
            msg = f"ilcs bench needs benchmarks/{name}.py from the source tree; run it from a checkout of the project"
            raise ValueError(msg) from exc
        sys.path.insert(0, str(root))
        return importlib.import_module(f"benchmarks.{name}")
