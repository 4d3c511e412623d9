"""The service's own end-to-end throughput, measured in-process: what calibration chooses the batching by.

Concurrent submitters on the event loop send encoded images the way a request does
(the header inspected, a ``Job`` submitted to a real ``MicroBatcher`` running the
service's ``BatchProcessor``: decoding, preprocessing, the model and the heatmap PNG)
and build each answer as a route does (``ClassifyResult`` to JSON). Only HTTP is left
out. The submitters are closed-loop and as many as keep every model thread's batch
full at the largest size measured, so each plan is measured at its capacity.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import time
from collections.abc import Callable

import numpy as np
from PIL import Image

from service.batcher import Batched, MicroBatcher
from service.inference import Engine
from service.intake import ImageLimits
from service.metrics import Metrics
from service.pipeline import Answer, BatchProcessor, Job, Upload, build_result, inspect_upload
from service.schemas import CalibrationRow, ModelRef
from service.settings import Settings

__all__ = ["measure_service", "sample_images"]

SAMPLE_SIDE = 200  # a NEU image's side, sent as the cameras' JPEG


def sample_images(count: int = 4, side: int = SAMPLE_SIDE) -> list[bytes]:
    """``count`` synthetic steel-like gray JPEGs (a rolling texture, a dark streak), different from each other."""
    images = []
    for seed in range(count):
        rng = np.random.default_rng(seed)
        y, x = np.mgrid[0:side, 0:side]
        texture = 128 + 25 * np.sin(x / (3 + seed) + rng.uniform(0, 6)) + rng.normal(0, 12, (side, side))
        texture[:, side // 3 + 10 * seed : side // 3 + 10 * seed + 6] -= 60  # a scratch-like streak
        buf = io.BytesIO()
        Image.fromarray(np.clip(texture, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
        images.append(buf.getvalue())
    return images


class _Tally:
    """What one plan's run counted after its warm-up: the answers and the batches."""

    def __init__(self, warm_after: int, min_answers: int) -> None:
        self.warm_after = warm_after  # answers before counting starts (every model thread has run a batch)
        self.min_answers = min_answers  # counted answers before the window may close, however long it takes
        self.seen = 0
        self.started = asyncio.Event()
        self.enough = asyncio.Event()
        self.t0 = self.t_end = 0.0
        self.answers = 0
        self.batches: list[tuple[float, int, float]] = []  # (start, size, seconds), appended in model threads

    def answered(self) -> None:
        self.seen += 1
        if self.t_end:  # the window has closed
            return
        if self.started.is_set():
            self.answers += 1
            if self.answers >= self.min_answers:
                self.enough.set()
        elif self.seen >= self.warm_after:
            self.t0 = time.perf_counter()
            self.started.set()

    def timed(self, processor: BatchProcessor) -> Callable[[list[Job]], list]:
        """``processor``, timing each batch it runs."""

        def run(jobs: list[Job]) -> list:
            start = time.perf_counter()
            try:
                return processor(jobs)
            finally:
                self.batches.append((start, len(jobs), time.perf_counter() - start))

        return run


async def measure_service(
    engine: Engine, settings: Settings, sizes: tuple[int, ...], seconds: float, images: list[bytes] | None = None
) -> list[CalibrationRow]:
    """Images/s a client population gets at each batch size, end to end in-process (no HTTP).

    The smallest size runs first; half its one-image batch time (1 to 10 ms) is the delay every
    other size is measured and served with: at capacity batches fill without waiting, so the delay
    only decides how long a lone request waits. Each size runs ``seconds`` (and three batches per
    model thread at least) after its warm-up: one model call per thread, then one batch per thread.

    Raises:
        Exception: The first error an image's answer raised (a model or decoding failure).
    """
    images = images or sample_images()
    limits = ImageLimits.from_settings(settings)
    metrics = Metrics()  # a registry of its own: calibration's images are not the service's traffic
    processor = BatchProcessor(engine, metrics, settings.uniform_std)
    model_ref = ModelRef(name=engine.card.name, version=engine.card.version, sha256=engine.card.weights_sha256)
    clients = min(2 * max(sizes) * engine.workers, settings.queue_size)
    uploads = itertools.cycle([Upload(data) for data in images])

    def next_job() -> Job:  # as a request does on arrival: its header inspected on the event loop
        upload = next(uploads)
        return Job(upload, inspect_upload(upload, limits), settings.heatmap)

    def finish(batched: Batched[Answer], start: float) -> None:
        threshold = settings.low_confidence_threshold
        build_result(batched, "calibration", start, engine.labels, threshold, model_ref).model_dump_json()

    rows: list[CalibrationRow] = []
    delay_ms = 0.0
    for size in sorted(sizes):
        tally = _Tally(warm_after=size * engine.workers, min_answers=3 * size * engine.workers)
        batcher = MicroBatcher(
            tally.timed(processor),
            max_batch_size=size,
            max_delay_s=delay_ms / 1e3,
            queue_size=clients,
            metrics=metrics,
            workers=engine.workers,
            on_failure=processor.failed,
        )
        batcher.start()
        try:  # each thread runs the size once first (a frozen graph optimises itself on its first calls)
            await batcher.run_in_every_model_thread(engine.predict, engine.example_input(size))
            await _run(batcher, clients, seconds, tally, next_job, finish)
        finally:
            await batcher.stop()
        in_window = [(n, s) for start, n, s in tally.batches if start >= tally.t0]
        counted = in_window or [(n, s) for _, n, s in tally.batches]
        ms_per_batch = 1e3 * sum(s for _, s in counted) / len(counted)
        if not rows:  # the first (smallest) size sets the delay of the others
            delay_ms = round(min(max(ms_per_batch / size / 2, 1.0), 10.0), 1)
        rows.append(
            CalibrationRow(
                backend=engine.backend,
                measure="service",
                batch_size=size,
                delay_ms=delay_ms,
                images_per_s=tally.answers / (tally.t_end - tally.t0),
                ms_per_batch=ms_per_batch,
                mean_batch=sum(n for n, _ in counted) / len(counted),
            )
        )
    return rows


async def _run(
    batcher: MicroBatcher,
    clients: int,
    seconds: float,
    tally: _Tally,
    next_job: Callable[[], Job],
    finish: Callable[[Batched[Answer], float], None],
) -> None:
    """``clients`` closed-loop submitters until ``seconds`` after the warm-up; then the batcher is drained."""

    async def client() -> None:
        while True:
            start = time.perf_counter()
            job = next_job()
            [future] = batcher.submit([job], deadline=float("inf"))
            batched = await future
            finish(batched, start)
            tally.answered()

    async def window() -> None:
        await tally.started.wait()
        await asyncio.sleep(seconds)
        await tally.enough.wait()
        tally.t_end = time.perf_counter()

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    timer = asyncio.create_task(window())
    try:
        done, _ = await asyncio.wait({timer, *tasks}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not timer:
                task.result()  # a submitter ends only by raising: the answer's error
    finally:
        for task in (timer, *tasks):
            task.cancel()  # cancels the futures the submitters wait for: the batcher drops the queued ones
        await asyncio.gather(timer, *tasks, return_exceptions=True)
        await batcher.finish_running()
