"""Calibration: measure throughput per batch size on this device, then plan the batcher's size and delay.

On a CPU a bigger batch is not always faster per image, so the batch size is
measured, not assumed: the pick is the smallest batch size within ``tolerance`` of
the best throughput (smaller batches answer sooner at equal throughput). The delay
is half a one-image model call, between 1 and 10 ms: long enough for requests sent
together to meet in one batch, short enough that a lone request waits little.
The ``Plan`` is what the service builds its batcher with.

With ``ILCS_BACKEND=auto`` every installed backend is measured the same way, and
``fastest_backend`` picks the one with the highest throughput at its best batch size.
"""

from __future__ import annotations

import argparse
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from service.backends import available_backends
from service.inference import Engine
from service.schemas import CalibrationRow
from service.settings import get_settings

__all__ = [
    "DEFAULT_SIZES",
    "Plan",
    "calibrate_cli",
    "candidates",
    "choose",
    "fastest_backend",
    "format_table",
    "measure",
]

DEFAULT_SIZES = (1, 2, 4, 8, 16, 32, 64)
log = logging.getLogger("service")


class Plan(NamedTuple):
    """The batch size and delay a batcher is built with."""

    batch_size: int
    delay_ms: float


def measure(engine: Engine, sizes: tuple[int, ...] = DEFAULT_SIZES, min_seconds: float = 1.0) -> list[CalibrationRow]:
    """Images per second of ``engine.predict`` at each batch size, with ``engine.workers`` calls side by side.

    That is how the service runs the model, so it is also the ceiling the load benchmark compares the
    service to. ``ms_per_batch`` is the mean time of one call.
    """
    rows = []
    for size in sizes:
        batch = engine.example_input(size)
        engine.predict(batch)  # warm-up: allocator, kernel selection
        with ThreadPoolExecutor(engine.workers) as pool:
            start = time.perf_counter()
            stop = [start + min_seconds] * engine.workers
            calls = sum(pool.map(_calls_until, [engine] * engine.workers, [batch] * engine.workers, stop))
            elapsed = time.perf_counter() - start
        rows.append(
            CalibrationRow(
                backend=engine.backend,
                batch_size=size,
                images_per_s=size * calls / elapsed,
                ms_per_batch=1e3 * elapsed * engine.workers / calls,
            )
        )
    return rows


def _calls_until(engine: Engine, batch: list, stop: float, min_calls: int = 3) -> int:
    calls = 0
    while calls < min_calls or time.perf_counter() < stop:
        engine.predict(batch)
        calls += 1
    return calls


def choose(rows: list[CalibrationRow], tolerance: float = 0.95) -> Plan:
    """The batch size and the delay (ms) to serve with, from a measured table."""
    best = max(r.images_per_s for r in rows)
    pick = min((r for r in rows if r.images_per_s >= tolerance * best), key=lambda r: r.batch_size)
    single = min(rows, key=lambda r: r.batch_size)
    one_image_ms = single.ms_per_batch / single.batch_size
    return Plan(pick.batch_size, round(min(max(one_image_ms / 2, 1.0), 10.0), 1))


def candidates(engine: Engine, auto: bool) -> list[Engine]:
    """``engine``; with ``auto``, also its model on every other installed backend (one failing is logged, left out)."""
    engines = [engine]
    for name in available_backends(engine.device) if auto else []:
        if name == engine.backend:
            continue
        try:
            engines.append(engine.with_backend(name))
        except Exception as exc:  # noqa: BLE001 - auto serves with what works; the log says what did not
            log.warning("backend %s left out of the choice: %s", name, exc)
    return engines


def fastest_backend(rows: list[CalibrationRow]) -> str:
    """The backend of the highest throughput in a table measured over several backends."""
    return max(rows, key=lambda r: r.images_per_s).backend


def format_table(rows: list[CalibrationRow], chosen: int | None = None, backend: str | None = None) -> str:
    """A Markdown table of the measurement, the chosen batch size (of the chosen backend) marked."""
    several = len({r.backend for r in rows}) > 1
    lines = ["| backend | batch size | images/s | ms per batch |", "| --- | ---: | ---: | ---: |"]
    if not several:
        lines = ["| batch size | images/s | ms per batch |", "| ---: | ---: | ---: |"]
    for r in rows:
        mark = " (chosen)" if r.batch_size == chosen and r.backend == (backend or r.backend) else ""
        cells = [r.backend] * several + [f"{r.batch_size}{mark}", f"{r.images_per_s:.1f}", f"{r.ms_per_batch:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def calibrate_cli(args: argparse.Namespace) -> None:
    """``ilcs bench --calibrate``: throughput per batch size for the configured checkpoint and device; the pick."""
    settings = get_settings()
    engine = Engine.from_settings(settings)
    rows = []
    for each in candidates(engine, settings.backend == "auto"):
        rows += measure(each, DEFAULT_SIZES, settings.calibration_seconds)
    backend = fastest_backend(rows)
    plan = choose([r for r in rows if r.backend == backend])
    text = (
        f"calibration of {engine.card.name} v{engine.card.version} on {engine.device}:\n\n"
        f"{format_table(rows, plan.batch_size, backend)}\n\n"
        f"ILCS_BACKEND={backend} ILCS_MAX_BATCH_SIZE={plan.batch_size} ILCS_MAX_DELAY_MS={plan.delay_ms}\n"
    )
    print(text, end="")
    if args.out and not args.load:  # with --load, the load report holds the calibration too
        Path(args.out).write_text(text)
