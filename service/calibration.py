"""Calibration: measure this device, then plan the batcher's size and delay by what clients get.

The plan is chosen by the service's end-to-end throughput (``service.closed_loop``:
encoded images through decoding, the real batcher, the model and the answer with its
heatmap, from concurrent in-process submitters), not by the bare model's: on a small
CPU the work around the model changes which batch size serves most. The pick is the
smallest batch size within ``tolerance`` of the best throughput (smaller batches answer
sooner at equal throughput) whose batch takes no longer than a request may wait for
admission; the delay is half a one-image batch, between 1 and 10 ms: long enough for
requests sent together to meet in one batch, short enough that a lone request waits little.

With ``ILCS_BACKEND=auto`` every installed backend's bare model is measured at the
extremes of the batching (``measure``) and ``fastest_backend`` serves: the backends
differ only in the model call, so the bare model ranks them in a fraction of the time.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from service.backends import available_backends
from service.inference import Engine
from service.schemas import CalibrationRow
from service.settings import Settings, get_settings

__all__ = [
    "DEFAULT_SIZES",
    "Calibration",
    "Plan",
    "calibrate",
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


def choose(rows: list[CalibrationRow], tolerance: float = 0.95, max_batch_ms: float | None = None) -> Plan:
    """The batch size and the delay (ms) to serve with, from a measured table (of one backend and one measure).

    ``max_batch_ms``: a batch size whose batch takes longer is not picked (unless every one does).
    """
    eligible = [r for r in rows if max_batch_ms is None or r.ms_per_batch <= max_batch_ms] or rows
    best = max(r.images_per_s for r in eligible)
    pick = min((r for r in eligible if r.images_per_s >= tolerance * best), key=lambda r: r.batch_size)
    if pick.delay_ms is not None:  # measured with it
        return Plan(pick.batch_size, pick.delay_ms)
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
    """The backend of the highest bare-model throughput in a table measured over several backends."""
    return max((r for r in rows if r.measure == "model"), key=lambda r: r.images_per_s).backend


def format_table(rows: list[CalibrationRow], chosen: int | None = None, backend: str | None = None) -> str:
    """Markdown tables of the measurement (bare model, then end to end), the chosen batch size marked."""
    service = [r for r in rows if r.measure == "service"]
    model = [r for r in rows if r.measure == "model"]
    tables = []
    if model:
        tables.append(_model_table(model, None if service else chosen, backend))
    if service:
        tables.append(_service_table(service, chosen))
    return "\n\n".join(tables)


def _model_table(rows: list[CalibrationRow], chosen: int | None, backend: str | None) -> str:
    several = len({r.backend for r in rows}) > 1
    lines = ["| backend | batch size | images/s | ms per batch |", "| --- | ---: | ---: | ---: |"]
    if not several:
        lines = ["| batch size | images/s | ms per batch |", "| ---: | ---: | ---: |"]
    for r in rows:
        mark = " (chosen)" if r.batch_size == chosen and r.backend == (backend or r.backend) else ""
        cells = [r.backend] * several + [f"{r.batch_size}{mark}", f"{r.images_per_s:.1f}", f"{r.ms_per_batch:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _service_table(rows: list[CalibrationRow], chosen: int | None) -> str:
    lines = [
        f"end to end on {rows[0].backend} (decode, batcher, model, heatmap, answer):",
        "",
        "| batch size | delay ms | images/s | ms per batch | mean batch |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        mark = " (chosen)" if r.batch_size == chosen else ""
        lines.append(
            f"| {r.batch_size}{mark} | {r.delay_ms:.1f} | {r.images_per_s:.1f} | {r.ms_per_batch:.1f} | "
            f"{r.mean_batch:.1f} |"
        )
    return "\n".join(lines)


class Calibration(NamedTuple):
    """What calibrating found: the measured rows, the engine to serve with, and its plan (None: as configured)."""

    rows: list[CalibrationRow]
    engine: Engine
    plan: Plan | None


async def calibrate(
    engines: list[Engine],
    settings: Settings,
    sizes: tuple[int, ...] | None,
    run: Callable[..., Awaitable] = asyncio.to_thread,
) -> Calibration:
    """Choose the backend among ``engines`` (bare model), then, given ``sizes``, the plan (end to end).

    ``run(fn, *args)`` runs a blocking measurement off the event loop (the service: in a model thread).
    """
    from service.closed_loop import measure_service  # the request path; ``measure`` alone needs none of it

    rows: list[CalibrationRow] = []
    engine = engines[0]
    if len(engines) > 1:
        extremes = tuple(sorted({1, max(sizes or (settings.max_batch_size,))}))
        for each in engines:
            rows += await run(measure, each, extremes, settings.calibration_seconds)
        backend = fastest_backend(rows)
        engine = next(e for e in engines if e.backend == backend)
    if not sizes:
        return Calibration(rows, engine, None)
    service = await measure_service(engine, settings, sizes, settings.calibration_seconds)
    # A batch longer than the wait admission allows a request would have every request behind it refused.
    plan = choose(service, max_batch_ms=1e3 * settings.request_timeout_s / 3)
    return Calibration(rows + service, engine, plan)


def calibrate_cli(args: argparse.Namespace) -> None:
    """``ilcs bench --calibrate``: end-to-end throughput per batch size for the configured checkpoint; the pick."""
    settings = get_settings()
    engine = Engine.from_settings(settings)
    engines = candidates(engine, settings.backend == "auto")
    result = asyncio.run(calibrate(engines, settings, DEFAULT_SIZES))
    plan = result.plan
    text = (
        f"calibration of {engine.card.name} v{engine.card.version} on {engine.device}:\n\n"
        f"{format_table(result.rows, plan.batch_size, result.engine.backend)}\n\n"
        f"ILCS_BACKEND={result.engine.backend} ILCS_MAX_BATCH_SIZE={plan.batch_size} "
        f"ILCS_MAX_DELAY_MS={plan.delay_ms}\n"
    )
    print(text, end="")
    if args.out and not args.load:  # with --load, the load report holds the calibration too
        Path(args.out).write_text(text)
