"""Calibration: measure throughput per batch size on this device, then pick batch size and delay.

On a CPU a bigger batch is not always faster per image (the attention maps of a
big batch fall out of cache), so the batch size is measured, not assumed. The
pick is the smallest batch size within ``tolerance`` of the best throughput
(smaller batches answer sooner at equal throughput).

The delay is half the time of a one-image model call, between 1 and 10 ms: long
enough for requests sent together (closed-loop clients answered by one batch)
to meet again in the next, short enough that a lone request is at most about
1.5 times slower. Under load the delay hardly matters: while the model runs the
queue fills, and the next batch is taken from it at once. (A first version
waited one whole batch time, 100 ms for batch 8 on a 2-core CPU: a lone client
then waited 124 ms for a 16 ms answer.)
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

from service.inference import Engine
from service.schemas import CalibrationRow

__all__ = ["DEFAULT_SIZES", "choose", "format_table", "measure"]

DEFAULT_SIZES = (1, 2, 4, 8, 16, 32, 64)
log = logging.getLogger("service")


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


def choose(rows: list[CalibrationRow], tolerance: float = 0.95) -> tuple[int, float]:
    """The batch size and the delay (ms) to serve with, from a measured table."""
    best = max(r.images_per_s for r in rows)
    pick = min((r for r in rows if r.images_per_s >= tolerance * best), key=lambda r: r.batch_size)
    single = min(rows, key=lambda r: r.batch_size)
    one_image_ms = single.ms_per_batch / single.batch_size
    return pick.batch_size, round(min(max(one_image_ms / 2, 1.0), 10.0), 1)


def format_table(rows: list[CalibrationRow], chosen: int | None = None) -> str:
    """A Markdown table of the measurement, the chosen batch size marked."""
    lines = ["| batch size | images/s | ms per batch |", "| ---: | ---: | ---: |"]
    for r in rows:
        mark = " (chosen)" if r.batch_size == chosen else ""
        lines.append(f"| {r.batch_size}{mark} | {r.images_per_s:.1f} | {r.ms_per_batch:.1f} |")
    return "\n".join(lines)
