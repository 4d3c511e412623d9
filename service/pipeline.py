"""One request's images through the service: inspected on the event loop, decoded and classified in a model thread.

The event loop never decodes or encodes a pixel, so it stays free for HTTP; an image that
fails (bad bytes, its model batch failing, its heatmap) fails alone and its neighbours
keep their answers.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from fastapi import Request

from service.admission import Ticket, image_units
from service.batcher import Batched, BatchFailed, call_batch
from service.errors import ClientDisconnected, DeadlineExceeded, InferenceFailed, PayloadTooLarge
from service.heatmap import render_heatmap
from service.inference import Engine, Prediction, decode_frame, top_k
from service.intake import Header, ImageLimits, decode, inspect, reduce_gray
from service.metrics import Metrics
from service.schemas import ClassifyResult, Heatmap, ModelRef, Timing, TopK

if TYPE_CHECKING:
    from service.runtime import Runtime

__all__ = [
    "Answer",
    "BatchProcessor",
    "Job",
    "Upload",
    "batch_failed",
    "build_result",
    "classify_uploads",
    "codec_threads",
    "inspect_upload",
    "run_uploads",
]

log = logging.getLogger("service")


@functools.cache
def codec_threads() -> ThreadPoolExecutor:
    """The threads that decode images and encode heatmaps on a GPU host, one per core, shared by every batch."""
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="ilcs-codec")


@dataclass(frozen=True, slots=True)
class Upload:
    """One image as received: a file's bytes, a raw gray frame with its width and height, or a model input.

    ``tensor`` is an image the client preprocessed itself (C x S x S float32, the model card's size,
    mean and std: the Open Inference Protocol's FP32 input); it goes to the model as it is.
    """

    data: bytes
    filename: str | None = None
    width: int | None = None
    height: int | None = None
    tensor: np.ndarray | None = None


@dataclass(frozen=True, slots=True)
class Job:
    """What the batcher queues for one image: the upload, its inspected header and the heatmap wanted."""

    upload: Upload
    header: Header
    heatmap: str  # "gray", "overlay" or "none"
    deadline: float = float("inf")  # time.perf_counter() after which nobody waits for the answer


@dataclass(frozen=True, slots=True)
class Answer:
    """One image's result from the model thread."""

    prediction: Prediction
    heatmap: Heatmap | None
    width: int
    height: int
    model_s: float  # the batched model call this image was part of
    uniform: bool = False  # the image is near-uniform: nothing on it to classify


def batch_failed(exc: BatchFailed) -> InferenceFailed:
    """``BatchFailed`` as the problem each image of the batch answers with."""
    detail = f"the model failed on the batch of {exc.size} images this one was in ({exc.cause}); retry the request"
    return InferenceFailed(detail)


def inspect_upload(upload: Upload, limits: ImageLimits) -> Header:
    """The header of an upload (a raw frame's is its query's width and height), checked against ``limits``."""
    if upload.tensor is not None:  # already the model's input size
        return Header("TENSOR", upload.tensor.shape[-1], upload.tensor.shape[-2])
    if upload.width is not None and upload.height is not None:
        limits.check(upload.width, upload.height)
        return Header("RAW", upload.width, upload.height)
    return inspect(upload.data, limits)


class BatchProcessor:
    """The batcher's batch function: jobs -> one ``Answer`` or exception per job, in order (a model thread).

    On a GPU the images are decoded and their heatmaps encoded in codec threads, side by side: the
    model thread, which feeds the GPU, only stacks and sends the batch and waits for the answers.

    Args:
        engine: The model.
        metrics: Where batch sizes, model time and model failures are recorded.
        uniform_std: Gray-level standard deviation below which an image is flagged as uniform.
        observe: Told ``(image units, seconds)`` of each batch's work in the model thread (admission).
        codec: Where decoding and encoding run; default the shared codec threads on a GPU, the model
            thread itself on the CPU (whose cores the model workers already share out).
    """

    def __init__(
        self,
        engine: Engine,
        metrics: Metrics,
        uniform_std: float = 0.0,
        observe: Callable[[float, float], None] | None = None,
        codec: Executor | None = None,
    ) -> None:
        self.engine = engine
        self.codec = codec or (codec_threads() if engine.device.type == "cuda" else None)
        self.metrics = metrics
        self.uniform_std = uniform_std
        self.observe = observe
        self.reduce_to = engine.card.input_size
        self.style = engine.card.heatmap_style

    def __call__(self, jobs: list[Job]) -> list[Answer | Exception]:
        began = time.perf_counter()
        try:
            return self._process(jobs)
        except Exception as exc:  # noqa: BLE001 - a fault here fails this batch alone, counted like the model's
            log.exception("the batch function failed on a batch of %d", len(jobs))
            return [self.failed(BatchFailed(len(jobs), exc))] * len(jobs)
        finally:
            if self.observe is not None:
                self.observe(sum(image_units(job.header.pixels) for job in jobs), time.perf_counter() - began)

    def _process(self, jobs: list[Job]) -> list[Answer | Exception]:
        results: list[Answer | Exception | None] = []  # None: decoded, waiting for the model
        images, inputs = [], []
        for outcome in self._map(self._try_prepare, jobs):
            if isinstance(outcome, Exception):
                results.append(outcome)
            else:
                images.append(outcome[0])
                inputs.append(outcome[1])
                results.append(None)
        if not inputs:
            return results  # type: ignore[return-value] # no None left
        start = time.perf_counter()
        try:
            predictions = call_batch(self.engine.predict, inputs)
        except BatchFailed as exc:  # fail the model's batch, keep the decoding errors
            log.error("the model failed on a batch of %d", exc.size, exc_info=exc.cause)
            failed = self.failed(exc)
            return [failed if r is None else r for r in results]
        model_s = time.perf_counter() - start
        self.metrics.batch_size.observe(len(inputs))
        self.metrics.inference.observe(model_s)
        done = iter(zip(images, predictions, strict=True))
        answered = [(*next(done), job, model_s) for r, job in zip(results, jobs, strict=True) if r is None]
        answers = iter(self._map(lambda args: self._answer(*args), answered))
        return [next(answers) if r is None else r for r in results]

    def _map(self, fn: Callable, items: list) -> list:
        """``fn`` over ``items``, in the codec threads when there are some (on a GPU), else in this thread."""
        return list(self.codec.map(fn, items)) if self.codec is not None else [fn(item) for item in items]

    def _try_prepare(self, job: Job) -> tuple[tuple[np.ndarray, int, int], torch.Tensor] | Exception:
        try:
            if time.perf_counter() > job.deadline:  # a big batch ahead of it used its time
                raise DeadlineExceeded("no answer within the request deadline (ILCS_REQUEST_TIMEOUT_S); retry")
            return self._prepare(job)
        except Exception as exc:  # noqa: BLE001 - each image fails alone; errors.problem_for names it
            return exc

    def _prepare(self, job: Job) -> tuple[tuple[np.ndarray, int, int], torch.Tensor]:
        """The image (gray, width, height: what the heatmap is drawn on) and the model's input for it."""
        tensor = job.upload.tensor
        if tensor is None:
            image = self._decode(job)
            return image, self.engine.prepare(image[0])
        pre = self.engine.preprocess
        gray = np.clip(np.rint((tensor[0] * pre.std + pre.mean) * 255.0), 0, 255).astype(np.uint8)
        # In the preprocessing's memory layout: the same numbers through the same kernels give the same answer.
        prepared = torch.from_numpy(tensor)[None].contiguous(memory_format=torch.channels_last)
        return (gray, gray.shape[1], gray.shape[0]), prepared

    def failed(self, exc: BatchFailed) -> InferenceFailed:
        """Count a failed batch (here, or the batcher's ``on_failure``) and give the error its images answer."""
        self.metrics.batch_failures.inc()
        return batch_failed(exc)

    def _decode(self, job: Job) -> tuple[np.ndarray, int, int]:
        upload = job.upload
        if upload.width is not None and upload.height is not None:
            frame = decode_frame(upload.data, upload.width, upload.height, job.header.pixels)
            return reduce_gray(frame, self.reduce_to), upload.width, upload.height
        return decode(upload.data, job.header, self.reduce_to)

    def _answer(
        self, decoded: tuple[np.ndarray, int, int], pred: Prediction, job: Job, model_s: float
    ) -> Answer | Exception:
        image, width, height = decoded
        uniform = float(image.std()) < self.uniform_std
        try:
            heatmap = render_heatmap(pred.attention, image, job.heatmap, self.engine.heatmap_method, **self.style)
        except Exception as exc:  # noqa: BLE001 - this image alone: its neighbours have their answers
            log.exception("could not render the heatmap of a %d x %d image", width, height)
            return InferenceFailed(f"could not render the heatmap ({exc}); retry, or ask for ?heatmap=none")
        return Answer(pred, heatmap, width, height, model_s, uniform)


async def classify_uploads(
    runtime: Runtime, request: Request, uploads: list[Upload], heatmap: str, request_id: str, ticket: Ticket
) -> list[ClassifyResult | Exception]:
    """One result per upload, in order; an image that failed gets its exception instead (see ``run_uploads``)."""
    start = getattr(request.state, "start", time.perf_counter())
    merged = await run_uploads(runtime, request, uploads, heatmap, ticket)
    ids = [request_id] if len(uploads) == 1 else [f"{request_id}/{i}" for i in range(len(uploads))]
    threshold = runtime.settings.low_confidence_threshold
    results: list[ClassifyResult | Exception] = []
    for outcome, rid in zip(merged, ids, strict=True):
        if isinstance(outcome, Exception):
            results.append(outcome)
            continue
        result = build_result(outcome, rid, start, runtime.engine.labels, threshold, runtime.model_ref)
        runtime.metrics.observe_prediction(result.label, result.confidence, threshold)
        results.append(result)
    return results


async def run_uploads(
    runtime: Runtime, request: Request, uploads: list[Upload], heatmap: str, ticket: Ticket
) -> list[Batched[Answer] | Exception]:
    """The model's answer for each upload, in order; an image that failed gets its exception instead.

    The uploads are inspected here, on the event loop: a bad one fails alone before anything is queued,
    and ``ticket`` grows to the work of the good ones (``QueueFull`` if the service cannot take it).
    """
    settings = runtime.settings
    start = getattr(request.state, "start", time.perf_counter())
    deadline = start + settings.request_timeout_s
    headers: list[Header | Exception] = []
    for upload in uploads:
        try:
            headers.append(inspect_upload(upload, runtime.limits))
        except Exception as exc:  # noqa: BLE001 - this image alone is refused; errors.problem_for names it
            headers.append(exc)
    good = [(up, h) for up, h in zip(uploads, headers, strict=True) if isinstance(h, Header)]
    pixels = sum(h.pixels for _, h in good)
    if pixels > settings.max_request_pixels:
        msg = (
            f"the request's images hold {pixels} pixels together, more than the limit of "
            f"{settings.max_request_pixels} (ILCS_MAX_REQUEST_PIXELS); split the request"
        )
        raise PayloadTooLarge(msg)
    ticket.grow(sum(image_units(h.pixels) for _, h in good))
    futures = iter(runtime.batcher.submit([Job(up, h, heatmap, deadline) for up, h in good], deadline))
    queued = [h if isinstance(h, Exception) else next(futures) for h in headers]
    outcomes = await _wait([q for q in queued if not isinstance(q, Exception)], deadline, request)
    answered = iter(batch_failed(o) if isinstance(o, BatchFailed) else o for o in outcomes)
    return [q if isinstance(q, Exception) else next(answered) for q in queued]


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


def build_result(
    batched: Batched[Answer], request_id: str, start: float, labels: list[str], threshold: float, model_ref: ModelRef
) -> ClassifyResult:
    """One image's ``ClassifyResult`` from its batched answer (``threshold``: the low-confidence one)."""
    answer = batched.output
    top = top_k(answer.prediction.scores, labels, 5)
    index, label, confidence = top[0]
    return ClassifyResult(
        request_id=request_id,
        label=label,
        index=index,
        confidence=confidence,
        low_confidence=confidence < threshold or answer.uniform,
        top5=[TopK(label=lab, score=score) for _, lab, score in top],
        heatmap=answer.heatmap,
        width=answer.width,
        height=answer.height,
        model=model_ref,
        timing_ms=Timing(
            queue_ms=batched.queue_s * 1e3,
            inference_ms=answer.model_s * 1e3,
            total_ms=(time.perf_counter() - start) * 1e3,
        ),
    )
