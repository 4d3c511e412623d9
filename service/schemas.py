"""Request and response models, named by role; FastAPI turns them into the OpenAPI schema."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from model_zoo.checkpoint import ModelCard

__all__ = [
    "BatchItem",
    "BatchResult",
    "CalibrationRow",
    "ClassifyResult",
    "Health",
    "Heatmap",
    "ModelInfo",
    "ModelRef",
    "Problem",
    "ServingInfo",
    "Timing",
    "TopK",
]


class TopK(BaseModel):
    label: str
    score: float = Field(description="softmax probability")


class Heatmap(BaseModel):
    """Where the model looked, as a PNG at the image's size (reduced with the image for very large ones)."""

    encoding: Literal["png"] = "png"
    kind: Literal["gray", "overlay"] = Field(
        description="gray: 8-bit map, smoothed and sharpened as the model card says (heatmap_blur, heatmap_gamma) "
        "and min-max normalised per image; overlay: that map coloured and blended over the image"
    )
    method: str = Field(
        "model_attention",
        description="how the map was computed, from the model card: miam_spatial is MIAM's spatial attention "
        "map; activation_energy is the energy of the last feature map (a model without MIAM), not an attention",
    )
    width: int
    height: int
    data: str = Field(description="base64 of the PNG file")


class ModelRef(BaseModel):
    name: str
    version: str
    sha256: str = Field(description="sha256 of the weights file")


class Timing(BaseModel):
    queue_ms: float = Field(description="wait in the queue for a batch")
    inference_ms: float = Field(description="the batched model call this image was part of")
    total_ms: float = Field(description="from the request's arrival to this result")


class ClassifyResult(BaseModel):
    request_id: str
    label: str
    index: int = Field(description="index of the label in the model card's labels")
    confidence: float = Field(description="softmax probability of the label")
    low_confidence: bool = Field(
        description="confidence is below the service's low-confidence threshold, or the image is near-uniform "
        "(nothing on it to classify, ILCS_UNIFORM_STD)"
    )
    top5: list[TopK] = Field(description="the five best labels, best first (fewer if the model has fewer classes)")
    heatmap: Heatmap | None = Field(description="absent with ?heatmap=none")
    width: int = Field(description="width of the input image in pixels")
    height: int = Field(description="height of the input image in pixels")
    model: ModelRef
    timing_ms: Timing


class Problem(BaseModel):
    """An error, as application/problem+json (RFC 9457)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str = Field(description="what was wrong and what to do about it")
    instance: str | None = None
    request_id: str | None = None


class BatchItem(BaseModel):
    """One image of a batch request: a result, or the error that image alone caused."""

    index: int
    filename: str | None = None
    result: ClassifyResult | None = None
    error: Problem | None = None


class BatchResult(BaseModel):
    request_id: str
    results: list[BatchItem] = Field(description="one entry per image, in the order they were sent")


class Health(BaseModel):
    status: str
    detail: str | None = None


class CalibrationRow(BaseModel):
    backend: str = Field("torch", description="the runtime measured: torch, onnxruntime or openvino")
    measure: Literal["model", "service"] = Field(
        "model",
        description="model: the bare model on prepared inputs (how backends are compared); service: end to end, "
        "encoded images through decoding, the batcher, the model and the answer with its heatmap (how the batch "
        "size and delay are chosen)",
    )
    batch_size: int
    delay_ms: float | None = Field(None, description="the batcher's delay measured with (service rows)")
    images_per_s: float
    ms_per_batch: float = Field(description="mean time of one batch in a model thread")
    mean_batch: float | None = Field(None, description="images per batch the batcher formed (service rows)")


class ServingInfo(BaseModel):
    device: str
    backend: str = Field(description="the runtime of the model (ILCS_BACKEND; with auto, the one measured fastest)")
    dtype: str
    workers: int = Field(description="model threads running batches side by side")
    threads: int = Field(description="torch threads of each")
    max_batch_size: int
    max_delay_ms: float
    queue_size: int
    calibration: list[CalibrationRow] | None = Field(
        None, description="throughput per batch size (and backend, with ILCS_BACKEND=auto), if measured at start-up"
    )


class ModelInfo(ModelCard):
    """The model card of the served checkpoint, and how it is being served."""

    serving: ServingInfo
