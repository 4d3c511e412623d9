"""The Open Inference Protocol's infer call through the service's own path: the batcher, admission, limits.

``infer`` decodes the body (``service.v2_codec``) in a worker thread, then runs each image
exactly as ``/classify`` does (``service.pipeline.run_uploads``: the request's deadline, the
admission ticket, the pixel limits, the micro-batcher) and encodes the model's answers as the
protocol's output tensors. An image that fails fails the request, with that image's error
and status, since the protocol has no per-element errors.
"""

from __future__ import annotations

import base64
import logging
from typing import TYPE_CHECKING

import numpy as np
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from service.admission import Ticket
from service.batcher import Batched
from service.errors import ServiceError, UnsupportedMediaType, problem_for
from service.inference import top_k
from service.pipeline import Answer, run_uploads
from service.schemas import Problem
from service.v2_codec import (
    HEADER_LENGTH,
    HEATMAP,
    LABEL,
    PROBABILITIES,
    ModelSpec,
    Tensor,
    bytes_tensor,
    decode_request,
    encode_response,
)

if TYPE_CHECKING:
    from service.runtime import Runtime

__all__ = ["ModelNotFound", "error_response", "infer", "model_spec"]

log = logging.getLogger("service")


class ModelNotFound(ServiceError):
    status, title = 404, "Not Found"


def model_spec(runtime: Runtime, name: str, version: str | None = None) -> ModelSpec:
    """The served model if ``name`` (and ``version``, when given) name it, else ``ModelNotFound``."""
    card = runtime.engine.card
    if name != card.name or version not in (None, card.version):
        asked = name if version is None else f"{name} version {version}"
        raise ModelNotFound(f"no model {asked!r} here; this service serves {card.name!r} version {card.version!r}")
    return ModelSpec(
        name=card.name,
        version=card.version,
        labels=list(card.labels),
        channels=card.in_chans,
        side=card.input_size,
        max_images=runtime.settings.max_batch_images,
        mean=card.mean,
        std=card.std,
    )


async def infer(runtime: Runtime, request: Request, spec: ModelSpec, request_id: str, ticket: Ticket) -> Response:
    """Answer one infer request whose body has not been read yet."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):  # a compressed body would only fail later as JSON that is not
        msg = f"Content-Encoding {encoding!r} is not accepted; send the body uncompressed (no request compression)"
        raise UnsupportedMediaType(msg)
    body = await request.body()
    decoded = await run_in_threadpool(decode_request, body, request.headers.get(HEADER_LENGTH), spec)
    outcomes = await run_uploads(runtime, request, decoded.uploads, decoded.heatmap, ticket)
    answers = [_answer(outcome, i, len(outcomes)) for i, outcome in enumerate(outcomes)]
    tensors = _tensors(runtime, answers, decoded.heatmap != "none")
    head = {"model_name": spec.name, "model_version": spec.version, "id": decoded.id or request_id}
    content, json_length = encode_response(head, tensors, decoded.outputs)
    if json_length is None:
        return Response(content, media_type="application/json")
    return Response(content, media_type="application/octet-stream", headers={HEADER_LENGTH: str(json_length)})


def _answer(outcome: Batched[Answer] | Exception, index: int, count: int) -> Batched[Answer]:
    if not isinstance(outcome, Exception):
        return outcome
    if count == 1:
        raise outcome  # as /classify answers it
    problem = problem_for(outcome)
    if problem.status >= 500:
        log.error("image %d of an infer request failed", index, exc_info=outcome)
    raise _Failed(problem.status, problem.title, f"image {index}: {problem.detail}", getattr(outcome, "headers", None))


class _Failed(ServiceError):
    """One image's error as the whole request's (the protocol has no per-element errors), its index in front."""

    def __init__(self, status: int, title: str, detail: str, headers: dict[str, str] | None) -> None:
        super().__init__(detail, headers)
        self.status, self.title = status, title


def _tensors(runtime: Runtime, answers: list[Batched[Answer]], heatmap: bool) -> list[Tensor]:
    scores = np.stack([a.output.prediction.scores for a in answers]).astype(np.float32)
    labels, threshold = runtime.engine.labels, runtime.settings.low_confidence_threshold
    names = []
    for row in scores:
        (_, label, confidence), *_ = top_k(row, labels, 1)
        runtime.metrics.observe_prediction(label, confidence, threshold)
        names.append(label)
    tensors = [
        Tensor(
            PROBABILITIES,
            "FP32",
            list(scores.shape),
            [float(s) for s in scores.reshape(-1)],
            scores.astype("<f4").tobytes(),
        ),
        Tensor(LABEL, "BYTES", [len(names)], names, bytes_tensor([n.encode() for n in names])),
    ]
    if heatmap:
        maps = [a.output.heatmap.data if a.output.heatmap is not None else "" for a in answers]
        png = [base64.b64decode(m) for m in maps]
        tensors.append(Tensor(HEATMAP, "BYTES", [len(maps)], maps, bytes_tensor(png)))
    return tensors


def error_response(problem: Problem, headers: dict[str, str] | None = None) -> Response:
    """The protocol's error object ``{"error": "..."}`` with the error's status (an ``ErrorForm``)."""
    return JSONResponse({"error": problem.detail}, status_code=problem.status, headers=headers)
