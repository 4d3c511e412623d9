"""Bodies of the Open Inference Protocol's infer call: request -> uploads, answers -> response.

The model takes one input per request, either

* ``image``: ``BYTES`` of shape ``[N]``, each element one encoded image file (JPEG, PNG, BMP,
  TIFF), which goes through the one preprocessing like an upload to ``/classify``; or
* ``tensor``: ``FP32`` of shape ``[N, C, S, S]``, images the client has preprocessed itself
  (the card's size, mean and std), which go to the model as they are;

and answers ``probabilities`` (``FP32 [N, classes]``), ``label`` (``BYTES [N]``) and, when
asked for, ``heatmap`` (``BYTES [N]``, the PNG ``/classify`` returns; output parameter
``kind``: ``gray`` or ``overlay``).

Tensor data travels as JSON or with the binary tensor data extension (the Triton client's
default): the JSON object first, its length in the ``Inference-Header-Content-Length``
header, then each binary tensor's bytes in order, ``binary_data_size`` of each given in its
parameters; a ``BYTES`` element is then a 4-byte little-endian length and its bytes. In JSON
a ``BYTES`` element is a string: an image file, and a heatmap, as base64; a label as text.
Outputs come back as binary data when the request asks (``binary_data`` on an output,
``binary_data_output`` on the request), else as JSON.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError

from service.errors import BadRequest
from service.pipeline import Upload
from service.v2_schemas import InferenceRequest, ModelMetadata, RequestInput, TensorMetadata

__all__ = [
    "HEADER_LENGTH",
    "IMAGE",
    "OUTPUTS",
    "TENSOR",
    "Decoded",
    "ModelSpec",
    "OutputWanted",
    "Tensor",
    "decode_request",
    "encode_response",
]

HEADER_LENGTH = "Inference-Header-Content-Length"
IMAGE, TENSOR = "image", "tensor"
PROBABILITIES, LABEL, HEATMAP = "probabilities", "label", "heatmap"
OUTPUTS = (PROBABILITIES, LABEL, HEATMAP)
DEFAULT_OUTPUTS = (PROBABILITIES, LABEL)  # the heatmap costs a PNG per image: only when asked
HEATMAP_KINDS = ("gray", "overlay")
_LENGTH = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """What the protocol says of the served model: its name, version, classes and input."""

    name: str
    version: str
    labels: list[str]
    channels: int
    side: int
    max_images: int
    mean: float = 0.0
    std: float = 1.0

    def tensor_range(self) -> tuple[float, float]:
        """The values a preprocessed input may hold: the preprocessing's range, widened by its own width each way.

        (Far outside it the model's sums overflow into infinities and NaN probabilities.)
        """
        low, high = (0.0 - self.mean) / self.std, (1.0 - self.mean) / self.std
        return 2 * low - high, 2 * high - low

    def metadata(self) -> ModelMetadata:
        classes = len(self.labels)
        return ModelMetadata(
            name=self.name,
            versions=[self.version],
            platform="pytorch_torchscript",
            inputs=[
                TensorMetadata(name=IMAGE, datatype="BYTES", shape=[-1]),
                TensorMetadata(name=TENSOR, datatype="FP32", shape=[-1, self.channels, self.side, self.side]),
            ],
            outputs=[
                TensorMetadata(name=PROBABILITIES, datatype="FP32", shape=[-1, classes]),
                TensorMetadata(name=LABEL, datatype="BYTES", shape=[-1]),
                TensorMetadata(name=HEATMAP, datatype="BYTES", shape=[-1]),
            ],
        )


@dataclass(frozen=True, slots=True)
class OutputWanted:
    name: str
    binary: bool


@dataclass(frozen=True, slots=True)
class Decoded:
    """A valid infer request: its id, one upload per image, the outputs to send and the heatmap kind."""

    id: str | None
    uploads: list[Upload]
    outputs: list[OutputWanted]
    heatmap: str  # "gray", "overlay", or "none" when the heatmap output is not wanted


@dataclass(frozen=True, slots=True)
class Tensor:
    """One output tensor for ``encode_response``: JSON elements, or their binary encoding."""

    name: str
    datatype: str
    shape: list[int]
    data: list[Any]
    raw: bytes


def decode_request(body: bytes, header_length: str | None, spec: ModelSpec) -> Decoded:
    """Parse an infer request's body (JSON, or JSON then binary tensors); ``BadRequest`` says what is wrong."""
    head, binary = _split(body, header_length)
    try:
        request = InferenceRequest.model_validate_json(head)
    except ValidationError as exc:
        errors = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:5])
        raise BadRequest(f"the inference request is not the protocol's JSON object ({errors})") from None
    if len(request.inputs) != 1:
        count = len(request.inputs)
        msg = f"send exactly one input, {IMAGE!r} (BYTES [N]) or {TENSOR!r} (FP32 [N, C, S, S]); got {count}"
        raise BadRequest(msg)
    (given,) = request.inputs
    chunks = _binary_chunks(request, binary)
    if given.name == IMAGE:
        uploads = _images(given, chunks[0], spec)
    elif given.name == TENSOR:
        uploads = _tensors(given, chunks[0], spec)
    else:
        raise BadRequest(f"the model has no input {given.name!r}; send {IMAGE!r} (BYTES) or {TENSOR!r} (FP32)")
    outputs, heatmap = _outputs(request)
    return Decoded(request.id, uploads, outputs, heatmap)


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    length = header_length.strip()
    if not length.isdigit() or not 0 < int(length) <= len(body):
        msg = (
            f"{HEADER_LENGTH} is {header_length!r}: it must be the length in bytes of the JSON object "
            f"at the start of the body (1..{len(body)})"
        )
        raise BadRequest(msg)
    return body[: int(length)], body[int(length) :]


def _binary_chunks(request: InferenceRequest, binary: bytes) -> list[bytes | None]:
    """Each input's binary data (None: its data is in the JSON), cut from the bytes after the JSON object."""
    chunks: list[bytes | None] = []
    offset = 0
    for given in request.inputs:
        size = (given.parameters or {}).get("binary_data_size")
        if size is None:
            chunks.append(None)
            continue
        if isinstance(size, bool) or not isinstance(size, int) or size < 0 or offset + size > len(binary):
            msg = (
                f"input {given.name!r}: binary_data_size {size!r} does not fit the {len(binary) - offset} bytes "
                f"left after the JSON object; send the size of the tensor's binary data"
            )
            raise BadRequest(msg)
        chunks.append(binary[offset : offset + size])
        offset += size
    if offset != len(binary):
        msg = f"{len(binary) - offset} bytes follow the JSON object that no input's binary_data_size accounts for"
        raise BadRequest(msg)
    return chunks


def _count(given: RequestInput, spec: ModelSpec) -> int:
    if any(d < 0 for d in given.shape):
        raise BadRequest(f"input {given.name!r}: shape {given.shape} has a negative dimension")
    count = given.shape[0] if given.shape else 0
    if not 1 <= count <= spec.max_images:
        msg = (
            f"input {given.name!r}: shape {given.shape} holds {count} images; send 1 to {spec.max_images} "
            "per request (ILCS_MAX_BATCH_IMAGES)"
        )
        raise BadRequest(msg)
    return count


def _images(given: RequestInput, chunk: bytes | None, spec: ModelSpec) -> list[Upload]:
    if given.datatype != "BYTES":
        raise BadRequest(f"input {IMAGE!r} is BYTES (one encoded image file per element), not {given.datatype}")
    count = _count(given, spec)
    if math.prod(given.shape) != count:
        raise BadRequest(f"input {IMAGE!r} has shape [N] (one image file per element), got {given.shape}")
    files = _split_bytes(chunk) if chunk is not None else [_from_base64(e, i) for i, e in enumerate(_flat(given))]
    if len(files) != count:
        raise BadRequest(f"input {IMAGE!r}: shape {given.shape} says {count} images, the data holds {len(files)}")
    return [Upload(data) for data in files]


def _tensors(given: RequestInput, chunk: bytes | None, spec: ModelSpec) -> list[Upload]:
    expected = [spec.channels, spec.side, spec.side]
    if given.datatype != "FP32":
        raise BadRequest(f"input {TENSOR!r} is FP32, not {given.datatype}")
    _count(given, spec)
    if given.shape[1:] != expected:
        msg = (
            f"input {TENSOR!r} has shape [N, {', '.join(map(str, expected))}] (the model's preprocessed "
            f"input), got {given.shape}"
        )
        raise BadRequest(msg)
    size = math.prod(given.shape)
    if chunk is not None:
        if len(chunk) != size * 4:
            msg = f"input {TENSOR!r}: shape {given.shape} needs {size * 4} bytes of FP32, the data has {len(chunk)}"
            raise BadRequest(msg)
        values = np.frombuffer(chunk, dtype="<f4").copy()  # writable, for torch
    else:
        try:
            values = np.array(given.data, dtype=np.float32).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise BadRequest(f"input {TENSOR!r}: the data is not an array of numbers ({exc})") from None
        if values.size != size:
            raise BadRequest(f"input {TENSOR!r}: shape {given.shape} has {size} elements, the data {values.size}")
    if not np.isfinite(values).all():
        raise BadRequest(f"input {TENSOR!r} holds NaN or infinite values; send finite numbers")
    low, high = spec.tensor_range()
    if values.size and not low <= values.min() <= values.max() <= high:
        msg = (
            f"input {TENSOR!r} holds values from {values.min():g} to {values.max():g}, outside {low:g}..{high:g}: "
            f"preprocess as the model card says (pixels / 255, minus mean {spec.mean:g}, over std {spec.std:g})"
        )
        raise BadRequest(msg)
    batch = values.reshape(given.shape)
    return [Upload(b"", tensor=image) for image in batch]


def _flat(given: RequestInput) -> list[Any]:
    if not isinstance(given.data, list):
        raise BadRequest(f"input {given.name!r} has no data: send it in 'data' or as binary data")
    flat: list[Any] = []
    pending = [given.data]
    while pending:  # nested lists flattened row-major, without recursion
        item = pending.pop()
        if isinstance(item, list):
            pending.extend(reversed(item))
        else:
            flat.append(item)
    return flat


def _from_base64(element: Any, index: int) -> bytes:
    if not isinstance(element, str):
        raise BadRequest(f"input {IMAGE!r}, element {index}: in JSON an image file is a base64 string")
    try:
        return base64.b64decode(element, validate=True)
    except (binascii.Error, ValueError):
        msg = f"input {IMAGE!r}, element {index} is not base64; send base64 of the file, or send it as binary data"
        raise BadRequest(msg) from None


def _split_bytes(chunk: bytes) -> list[bytes]:
    """A binary BYTES tensor: each element a 4-byte little-endian length and that many bytes."""
    elements, offset = [], 0
    while offset < len(chunk):
        if offset + 4 > len(chunk):
            raise BadRequest(f"input {IMAGE!r}: the binary data ends inside an element's 4-byte length")
        (length,) = _LENGTH.unpack_from(chunk, offset)
        offset += 4
        if offset + length > len(chunk):
            msg = f"input {IMAGE!r}: an element says {length} bytes, {len(chunk) - offset} are left"
            raise BadRequest(msg)
        elements.append(chunk[offset : offset + length])
        offset += length
    return elements


def _outputs(request: InferenceRequest) -> tuple[list[OutputWanted], str]:
    binary_default = (request.parameters or {}).get("binary_data_output") is True
    if request.outputs is None:
        return [OutputWanted(name, binary_default) for name in DEFAULT_OUTPUTS], "none"
    wanted, heatmap = [], "none"
    for output in request.outputs:
        if output.name not in OUTPUTS:
            raise BadRequest(f"the model has no output {output.name!r}; ask for {', '.join(map(repr, OUTPUTS))}")
        parameters = output.parameters or {}
        if output.name == HEATMAP:
            heatmap = str(parameters.get("kind", "gray"))
            if heatmap not in HEATMAP_KINDS:
                raise BadRequest(f"output 'heatmap': kind {heatmap!r} is not one of {', '.join(HEATMAP_KINDS)}")
        binary = parameters.get("binary_data", binary_default)
        wanted.append(OutputWanted(output.name, binary is True))
    return wanted, heatmap


def encode_response(
    head: dict[str, Any], tensors: list[Tensor], outputs: list[OutputWanted]
) -> tuple[bytes, int | None]:
    """The response body, and the JSON object's length when binary tensors follow it (else None)."""
    by_name = {t.name: t for t in tensors}
    described, raw = [], []
    for output in outputs:
        tensor = by_name[output.name]
        item: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape}
        if output.binary:
            item["parameters"] = {"binary_data_size": len(tensor.raw)}
            raw.append(tensor.raw)
        else:
            item["data"] = tensor.data
        described.append(item)
    text = json.dumps({**head, "outputs": described}, allow_nan=False, separators=(",", ":")).encode()
    if not raw:
        return text, None
    return b"".join([text, *raw]), len(text)


def bytes_tensor(elements: list[bytes]) -> bytes:
    """Elements of a BYTES tensor in the binary extension's encoding."""
    return b"".join(_LENGTH.pack(len(e)) + e for e in elements)
