"""The Open Inference Protocol (KServe v2) REST routes, beside ``/classify``, for KServe, Triton's clients and the like.

Health (open, for probes), server and model metadata, and infer through the same batcher,
admission control, limits, API keys and metrics as ``/classify``. Errors are the protocol's
``{"error": "..."}`` (``service.v2_infer.error_response``, installed for ``/v2`` in ``main.py``).
Bodies and tensors: ``service.v2_codec``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response

from service.deps import ApiKey, ReadyRuntime, RequestId, RuntimeDep
from service.runtime import Runtime
from service.v2_codec import HEADER_LENGTH
from service.v2_infer import infer, model_spec
from service.v2_schemas import InferenceError, InferenceRequest, InferenceResponse, ModelMetadata, ServerMetadata

router = APIRouter(prefix="/v2", tags=["open inference protocol (v2)"])

SERVER_NAME = "ilcs-inspector"
EXTENSIONS = ["binary_tensor_data"]

_ERROR_EXAMPLES = {
    400: "input 'tensor' has shape [N, 3, 160, 160] (the model's preprocessed input), got [1, 3, 64, 64]",
    401: "this service needs an API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
    404: "no model 'resnet' here; this service serves 'ilcs' version '3.0.0'",
    413: "Content-Length is 31457280 bytes, more than the limit of 20971520 bytes",
    415: "Content-Encoding 'gzip' is not accepted; send the body uncompressed (no request compression)",
    422: "invalid request parameters: ...",
    500: "the model failed on the batch of 4 images this one was in; retry the request",
    503: "the model is warming up; retry after the Retry-After seconds",
    504: "no answer within the request deadline (ILCS_REQUEST_TIMEOUT_S): the service is overloaded; retry",
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The protocol's error object for each of ``codes`` and for the 500 any route may answer."""
    return {
        code: {
            "model": InferenceError,
            "description": "the protocol's error object",
            "content": {"application/json": {"example": {"error": _ERROR_EXAMPLES[code]}}},
        }
        for code in (*codes, 500)
    }


_EMPTY_200: dict[int | str, dict[str, Any]] = {200: {"description": "true (empty body)", "content": None}}
_SERVER_200 = {
    200: {
        "description": "the server",
        "content": {
            "application/json": {
                "example": {"name": SERVER_NAME, "version": "1.0.0", "extensions": EXTENSIONS},
            }
        },
    }
}
_MODEL_200 = {
    200: {
        "description": "the model's inputs and outputs",
        "content": {
            "application/json": {
                "example": {
                    "name": "ilcs",
                    "versions": ["3.0.0"],
                    "platform": "pytorch_torchscript",
                    "inputs": [
                        {"name": "image", "datatype": "BYTES", "shape": [-1]},
                        {"name": "tensor", "datatype": "FP32", "shape": [-1, 3, 160, 160]},
                    ],
                    "outputs": [
                        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 6]},
                        {"name": "label", "datatype": "BYTES", "shape": [-1]},
                        {"name": "heatmap", "datatype": "BYTES", "shape": [-1]},
                    ],
                }
            }
        },
    }
}
ModelName = Annotated[str, Path(description="the model card's name", openapi_examples={"ilcs": {"value": "ilcs"}})]
ModelVersion = Annotated[
    str, Path(description="the model card's version", openapi_examples={"3.0.0": {"value": "3.0.0"}})
]


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema with its ``$defs`` written in place (OpenAPI resolves ``#/`` from its root)."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


_INFER_BODY = {
    "requestBody": {
        "required": True,
        "description": (
            "One input: `image` (BYTES [N], each element an image file, base64 in JSON) or `tensor` "
            "(FP32 [N, C, S, S], preprocessed). With the binary tensor data extension the JSON object is "
            f"followed by the tensors' bytes and its length is in the `{HEADER_LENGTH}` header.\n\n"
            '- `application/json`: `curl -H \'Content-Type: application/json\' -d \'{"inputs": [{"name": '
            '"image", "datatype": "BYTES", "shape": [1], "data": ["\'"$(base64 -w0 samples/scratches.png)"\'"]}]}\' '
            "localhost:8000/v2/models/ilcs/infer`\n"
            f"- `application/octet-stream`: `curl -H '{HEADER_LENGTH}: <length of the JSON object>' "
            "--data-binary @request.bin localhost:8000/v2/models/ilcs/infer` (request.bin: the JSON object, then "
            "the tensors' bytes, as the Triton client's `InferInput.set_data_from_numpy(..., binary_data=True)` "
            "sends them)"
        ),
        "content": {
            "application/json": {"schema": _inline(InferenceRequest.model_json_schema())},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
_INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": InferenceResponse,
        "description": "the outputs; JSON, or JSON then binary tensors when asked for binary data",
        "content": {
            "application/json": {
                "example": {
                    "model_name": "ilcs",
                    "model_version": "3.0.0",
                    "id": "plc3-000412",
                    "outputs": [
                        {
                            "name": "probabilities",
                            "datatype": "FP32",
                            "shape": [1, 6],
                            "data": [0.005, 0.02, 0.003, 0.002, 0.0, 0.97],
                        },
                        {"name": "label", "datatype": "BYTES", "shape": [1], "data": ["scratches"]},
                    ],
                }
            },
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "example": "<the JSON object><binary tensors>",
            },
        },
    },
    **_errors(400, 401, 404, 413, 415, 422, 503, 504),
}


_METADATA_ROUTE: dict[str, Any] = {
    "dependencies": [ApiKey],
    "responses": {**_MODEL_200, **_errors(401, 404, 422, 503)},
}
_INFER_ROUTE: dict[str, Any] = {
    "dependencies": [ApiKey],
    "openapi_extra": _INFER_BODY,
    "responses": _INFER_RESPONSES,
    "response_class": Response,
}
_MODEL_READY = {**_EMPTY_200, **_errors(404, 422, 503)}


@router.get("", summary="Server metadata: name, version, protocol extensions", responses={**_SERVER_200, **_errors()})
async def server_metadata(request: Request) -> ServerMetadata:
    return ServerMetadata(name=SERVER_NAME, version=request.app.version, extensions=EXTENSIONS)


@router.get("/health/live", summary="The server is alive (200, empty body)", responses={**_EMPTY_200, **_errors()})
async def server_live() -> Response:
    return Response()


@router.get("/health/ready", summary="The model is ready (200, empty body)", responses={**_EMPTY_200, **_errors(503)})
async def server_ready(runtime: RuntimeDep) -> Response:
    runtime.ensure_ready()
    return Response()


@router.get(
    "/models/{model_name}/ready",
    summary="The model is ready (200, empty body)",
    responses=_MODEL_READY,
)
async def model_ready(runtime: RuntimeDep, model_name: ModelName) -> Response:
    model_spec(runtime, model_name)
    runtime.ensure_ready()
    return Response()


@router.get(
    "/models/{model_name}/versions/{model_version}/ready",
    summary="This version of the model is ready (200, empty body)",
    responses=_MODEL_READY,
)
async def model_version_ready(runtime: RuntimeDep, model_name: ModelName, model_version: ModelVersion) -> Response:
    model_spec(runtime, model_name, model_version)
    runtime.ensure_ready()
    return Response()


@router.get(
    "/models/{model_name}",
    summary="Model metadata: versions, inputs and outputs",
    **_METADATA_ROUTE,
)
async def model_metadata(runtime: RuntimeDep, model_name: ModelName) -> ModelMetadata:
    return model_spec(runtime, model_name).metadata()


@router.get(
    "/models/{model_name}/versions/{model_version}",
    summary="Model metadata of this version",
    **_METADATA_ROUTE,
)
async def model_version_metadata(
    runtime: RuntimeDep, model_name: ModelName, model_version: ModelVersion
) -> ModelMetadata:
    return model_spec(runtime, model_name, model_version).metadata()


@router.post(
    "/models/{model_name}/infer",
    summary="Classify images (encoded files or preprocessed tensors): probabilities, label, heatmap",
    **_INFER_ROUTE,
)
async def model_infer(
    request: Request, runtime: ReadyRuntime, request_id: RequestId, model_name: ModelName
) -> Response:
    return await _infer(request, runtime, request_id, model_name)


@router.post(
    "/models/{model_name}/versions/{model_version}/infer",
    summary="Classify images with this version of the model",
    **_INFER_ROUTE,
)
async def model_version_infer(
    request: Request, runtime: ReadyRuntime, request_id: RequestId, model_name: ModelName, model_version: ModelVersion
) -> Response:
    return await _infer(request, runtime, request_id, model_name, model_version)


async def _infer(
    request: Request, runtime: Runtime, request_id: str, name: str, version: str | None = None
) -> Response:
    spec = model_spec(runtime, name, version)  # an unknown model is refused before the body is read
    runtime.batcher.ensure_room()  # a full queue refuses at once (503), as /classify does
    with runtime.admission.admit() as ticket:
        return await infer(runtime, request, spec, request_id, ticket)
