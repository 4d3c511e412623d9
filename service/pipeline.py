"""One request's images through the service: decode, queue, wait, encode.

Decoding and encoding run in worker threads; the model runs in the batcher's
thread; the event loop only moves bytes and futures. Each image succeeds or
fails on its own: a bad image fails at decode and never reaches the queue, so it
cannot disturb the images batched beside it. The wait for the model is bounded
by the request's deadline (504) and ends early, cancelling the queued images so
the batcher skips them, when the client disconnects (counted as status 499).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import numpy as np
import torch
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from service.batcher import Batched
from service.errors import ClientDisconnected, DeadlineExceeded
from service.heatmap import render_heatmap
from service.inference import Prediction, decode_frame, decode_image, top_k
from service.runtime import Runtime
from service.schemas import ClassifyResult, Timing, TopK

__all__ = ["Upload", "classify_uploads"]


@dataclass(frozen=True)
class Upload:
    """One image as received: a file's bytes, or a raw gray frame with its width and height."""

    data: bytes
    filename: str | None = None
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class _Decoded:
    image: np.ndarray  # H x W uint8 gray, kept for the overlay and the heatmap's size
    tensor: torch.Tensor  # 1 x C x S x S, the model's input


async def classify_uploads(
    runtime: Runtime, request: Request, uploads: list[Upload], heatmap: str, request_id: str
) -> list[ClassifyResult | Exception]:
    """One result per upload, in order; an image that failed gets its exception instead."""
    start = getattr(request.state, "start", time.perf_counter())
    deadline = start + runtime.settings.request_timeout_s
    decoded = await run_in_threadpool(_decode_all, runtime, uploads)
    good = [d for d in decoded if isinstance(d, _Decoded)]
    futures = runtime.batcher.submit([d.tensor for d in good], deadline)
    outcomes = iter(await _wait(futures, deadline, request))
    answered = [d if isinstance(d, Exception) else (d, next(outcomes)) for d in decoded]
    ids = [request_id] if len(uploads) == 1 else [f"{request_id}/{i}" for i in range(len(uploads))]
    return await run_in_threadpool(_encode_all, runtime, answered, heatmap, ids, start)


def _decode_all(runtime: Runtime, uploads: list[Upload]) -> list[_Decoded | Exception]:
    max_pixels = runtime.settings.max_pixels
    out: list[_Decoded | Exception] = []
    for up in uploads:
        try:
            if up.width is not None and up.height is not None:
                image = decode_frame(up.data, up.width, up.height, max_pixels)
            else:
                image = decode_image(up.data, max_pixels)
            out.append(_Decoded(image, runtime.engine.prepare(image)))
        except Exception as exc:  # noqa: BLE001 - each image fails alone; errors.problem_for names it
            out.append(exc)
    return out


async def _wait(futures: list[asyncio.Future], deadline: float, request: Request) -> list[Batched | Exception]:
    if not futures:
        return []
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


def _encode_all(
    runtime: Runtime,
    answered: list[tuple[_Decoded, Batched | Exception] | Exception],
    heatmap: str,
    ids: list[str],
    start: float,
) -> list[ClassifyResult | Exception]:
    results: list[ClassifyResult | Exception] = []
    for item, request_id in zip(answered, ids, strict=True):
        if isinstance(item, Exception):  # failed to decode
            results.append(item)
        elif isinstance(item[1], Exception):  # failed in the queue or the model
            results.append(item[1])
        else:
            results.append(_encode(runtime, item[0], item[1], heatmap, request_id, start))
    return results


def _encode(
    runtime: Runtime, decoded: _Decoded, batched: Batched[Prediction], heatmap: str, request_id: str, start: float
) -> ClassifyResult:
    pred = batched.output
    top = top_k(pred.scores, runtime.engine.labels, 5)
    index, label, confidence = top[0]
    threshold = runtime.settings.low_confidence_threshold
    runtime.metrics.observe_prediction(label, confidence, threshold)
    height, width = decoded.image.shape
    return ClassifyResult(
        request_id=request_id,
        label=label,
        index=index,
        confidence=confidence,
        low_confidence=confidence < threshold,
        top5=[TopK(label=lab, score=score) for _, lab, score in top],
        heatmap=render_heatmap(pred.attention, decoded.image, heatmap),
        width=width,
        height=height,
        model=runtime.model_ref,
        timing_ms=Timing(
            queue_ms=batched.queue_s * 1e3,
            inference_ms=batched.inference_s * 1e3,
            total_ms=(time.perf_counter() - start) * 1e3,
        ),
    )
