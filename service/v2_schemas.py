"""The Open Inference Protocol's (KServe v2) JSON objects, as the protocol names them.

The request and response of ``POST /v2/models/{name}/infer``, the server and model
metadata and the error object, so FastAPI documents them in the OpenAPI schema and
the request is validated in one call. ``parameters`` stay free-form objects: the
protocol lets clients and servers add their own (the Triton client sends
``binary_data_output``, ``binary_data_size``...).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = [
    "InferenceError",
    "InferenceRequest",
    "InferenceResponse",
    "ModelMetadata",
    "RequestInput",
    "RequestOutput",
    "ResponseOutput",
    "ServerMetadata",
    "TensorMetadata",
]

Parameters = dict[str, str | int | float | bool]


class InferenceError(BaseModel):
    """The protocol's error object, the body of every failed ``/v2`` request."""

    error: str = Field(description="what was wrong and what to do about it")


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str] = Field(description="protocol extensions this server supports")


class TensorMetadata(BaseModel):
    name: str
    datatype: str = Field(description="BOOL, UINT8..UINT64, INT8..INT64, FP16, FP32, FP64 or BYTES")
    shape: list[int] = Field(description="-1 for a dimension of any size")


class ModelMetadata(BaseModel):
    name: str
    versions: list[str] | None = None
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class RequestInput(BaseModel):
    name: str
    shape: list[int] = Field(description="the whole batch's shape; every dimension >= 0")
    datatype: str
    parameters: Parameters | None = None
    data: Any = Field(None, description="row-major elements, flat or nested; absent when sent as binary data")


class RequestOutput(BaseModel):
    name: str
    parameters: Parameters | None = None


class InferenceRequest(BaseModel):
    id: str | None = Field(None, description="returned in the response")
    parameters: Parameters | None = None
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = Field(None, description="default: every output but the heatmap")


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: Parameters | None = None
    data: list[Any] | None = Field(None, description="flat, row-major; absent when sent as binary data")


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str
    parameters: Parameters | None = None
    outputs: list[ResponseOutput]
