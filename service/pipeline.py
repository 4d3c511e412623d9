"""One request's images through the service, in two halves and one hand-off.

On the event loop (``classify_uploads``): each image is queued as a ``Job`` with
the heatmap it asked for, and the request waits for its answers, bounded by its
deadline (504) and ended early, cancelling the queued jobs so the batcher skips
them, when the client disconnects (status 499). Then the answers become
``ClassifyResult``s, which costs microseconds.

In a model thread (``BatchProcessor``, the batcher's batch function): for the whole
batch, decode and prepare every image, run the model once on those that decoded,
and render each heatmap. An image that fails to decode gets its own error (400,
413) and is left out of the model's batch, so it never reaches the model and never
disturbs the images beside it. A model failure fails only the images that were in
the model's batch (500), and is counted.

Why in the model thread: every hand-off between the event loop and a thread costs
CPU on both sides (waking a thread, the GIL passing, the loop's wake-up), and on
the 2-core machine that CPU is the model's. Decoding and encoding in worker
threads of their own cost two more hand-offs per request than this one per batch.
Around a near-null model the request path went from 4.45 to 3.46 ms of CPU per
request with this, uvloop and ``service.heatmap.encode_png`` together
(``python -m benchmarks.overhead``, ``reports/service-overhead.md``). None of it
runs on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from fastapi import Request

from service.batcher import Batched
from service.errors import ClientDisconnected, DeadlineExceeded, InferenceFailed
from service.heatmap import render_heatmap
from service.inference import Engine, Prediction, decode_frame, decode_image, top_k
from service.metrics import Metrics
from service.schemas import ClassifyResult, Heatmap, Timing, TopK

if TYPE_CHECKING:
    from service.runtime import Runtime

__all__ = ["Answer", "BatchProcessor", "Job", "Upload", "classify_uploads"]

log = logging.getLogger("service")


@dataclass(frozen=True, slots=True)
class Upload:
    """One image as received: a file's bytes, or a raw gray frame with its width and height."""

    data: bytes
    filename: str | None = None
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True, slots=True)
class Job:
    """What the batcher queues for one image: the upload and the heatmap wanted ("gray", "overlay", "none")."""

    upload: Upload
    heatmap: str


@dataclass(frozen=True, slots=True)
class Answer:
    """One image's result from the model thread."""

    prediction: Prediction
    heatmap: Heatmap | None
    width: int
    height: int
    model_s: float  # the batched model call this image was part of


class BatchProcessor:
    """The batcher's batch function: jobs -> one ``Answer`` or exception per job, in order (a model thread)."""

    def __init__(self, engine: Engine, max_pixels: int, metrics: Metrics) -> None:
        self.engine = engine
        self.max_pixels = max_pixels
        self.metrics = metrics

    def __call__(self, jobs: list[Job]) -> list[Answer | Exception]:
        results: list[Answer | Exception | None] = []  # None: decoded, waiting for the model
        images, inputs = [], []
        for job in jobs:
            try:
                image = self._decode(job.upload)
                inputs.append(self.engine.prepare(image))
                images.append(image)
                results.append(None)
            except Exception as exc:  # noqa: BLE001 - each image fails alone; errors.problem_for names it
                results.append(exc)
        if not inputs:
            return results  # type: ignore[return-value] # no None left
        start = time.perf_counter()
        try:
            predictions = self.engine.predict(inputs)
            if len(predictions) != len(inputs):
                raise RuntimeError(f"the model returned {len(predictions)} outputs for {len(inputs)} images")
        except Exception as exc:  # noqa: BLE001 - fail the model's batch, keep the decoding errors
            log.exception("the model failed on a batch of %d", len(inputs))
            self.metrics.batch_failures.inc()
            failed = InferenceFailed(
                f"the model failed on the batch of {len(inputs)} images this one was in ({exc}); retry the request"
            )
            return [failed if r is None else r for r in results]
        model_s = time.perf_counter() - start
        self.metrics.batch_size.observe(len(inputs))
        self.metrics.inference.observe(model_s)
        done = iter(zip(images, predictions, strict=True))
        return [
            self._answer(*next(done), job.heatmap, model_s) if r is None else r
            for r, job in zip(results, jobs, strict=True)
        ]

    def _decode(self, upload: Upload) -> np.ndarray:
        if upload.width is not None and upload.height is not None:
            return decode_frame(upload.data, upload.width, upload.height, self.max_pixels)
        return decode_image(upload.data, self.max_pixels)

    @staticmethod
    def _answer(image: np.ndarray, pred: Prediction, heatmap: str, model_s: float) -> Answer | Exception:
        height, width = image.shape
        try:
            return Answer(pred, render_heatmap(pred.attention, image, heatmap), width, height, model_s)
        except Exception as exc:  # noqa: BLE001 - this image alone: its neighbours have their answers
            log.exception("could not render the heatmap of a %d x %d image", width, height)
            return InferenceFailed(f"could not render the heatmap ({exc}); retry, or ask for ?heatmap=none")


async def classify_uploads(
    runtime: Runtime, request: Request, uploads: list[Upload], heatmap: str, request_id: str
) -> list[ClassifyResult | Exception]:
    """One result per upload, in order; an image that failed gets its exception instead."""
    start = getattr(request.state, "start", time.perf_counter())
    deadline = start + runtime.settings.request_timeout_s
    futures = runtime.batcher.submit([Job(up, heatmap) for up in uploads], deadline)
    outcomes = await _wait(futures, deadline, request)
    ids = [request_id] if len(uploads) == 1 else [f"{request_id}/{i}" for i in range(len(uploads))]
    return [
        outcome if isinstance(outcome, Exception) else _result(runtime, outcome, rid, start)
        for outcome, rid in zip(outcomes, ids, strict=True)
    ]


async def _wait(futures: list[asyncio.Future], deadline: float, request: Request) -> list[Batched | Exception]:
    everything = asyncio.gather(*futures, return_exceptions=True)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        timeout = max(deadline - time.perf_counter(), 0.0)
        done, _ = await asyncio.wait({everything, watcher}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if everything in done:
        return everything.result()
    if watcher in done:
        everything.cancel()  # cancels the queued futures: the batcher drops them before the model
        raise ClientDisconnected("the client closed the connection before the answer was ready")
    outcomes: list[Batched | Exception] = []
    for future in futures:
        if future.done() and not future.cancelled():
            outcomes.append(future.exception() or future.result())
        else:
            future.cancel()
            msg = "no answer within the request deadline (ILCS_REQUEST_TIMEOUT_S): the service is overloaded; retry"
            outcomes.append(DeadlineExceeded(msg))
    everything.cancel()
    return outcomes


async def _disconnected(request: Request) -> None:
    # The body has been read, so the next message the server sends is http.disconnect.
    try:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return
    except Exception:  # noqa: BLE001 - cannot tell whether the client is there: let the deadline decide
        await asyncio.Event().wait()


def _result(runtime: Runtime, batched: Batched[Answer], request_id: str, start: float) -> ClassifyResult:
    answer = batched.output
    top = top_k(answer.prediction.scores, runtime.engine.labels, 5)
    index, label, confidence = top[0]
    threshold = runtime.settings.low_confidence_threshold
    runtime.metrics.observe_prediction(label, confidence, threshold)
    return ClassifyResult(
        request_id=request_id,
        label=label,
        index=index,
        confidence=confidence,
        low_confidence=confidence < threshold,
        top5=[TopK(label=lab, score=score) for _, lab, score in top],
        heatmap=answer.heatmap,
        width=answer.width,
        height=answer.height,
        model=runtime.model_ref,
        timing_ms=Timing(
            queue_ms=batched.queue_s * 1e3,
            inference_ms=answer.model_s * 1e3,
            total_ms=(time.perf_counter() - start) * 1e3,
        ),
    )
