"""POST /classify (one image, sent one of four ways) and POST /classify/batch (several, multipart)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from service.deps import ApiKey, ReadyRuntime, RequestId, SettingsDep
from service.errors import PayloadTooLarge, UnprocessableRequest, UnsupportedMediaType, problem_for
from service.pipeline import Upload, classify_uploads
from service.schemas import BatchItem, BatchResult, ClassifyResult, Problem
from service.settings import HeatmapMode

router = APIRouter(prefix="/classify", tags=["classify"], dependencies=[ApiKey])

MULTIPART = "multipart/form-data"
RAW_FRAME = "application/octet-stream"
MAX_FIELDS = 16  # form fields besides the files a batch may carry (none is read)
IMAGE_TYPES = ("image/jpeg", "image/png", "image/bmp", "image/tiff")
IMAGE_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/x-bmp": "image/bmp",
    "image/x-ms-bmp": "image/bmp",
    "image/tif": "image/tiff",
}

_BINARY: dict[str, Any] = {"schema": {"type": "string", "format": "binary"}}
_ONE_IMAGE = {
    "requestBody": {
        "required": True,
        "content": {
            MULTIPART: {"schema": {"type": "object", "properties": {"file": _BINARY["schema"]}, "required": ["file"]}},
            **{t: _BINARY for t in IMAGE_TYPES},
            RAW_FRAME: {
                "schema": {
                    **_BINARY["schema"],
                    "description": "raw 8-bit gray frame, row by row, width x height bytes (needs ?width=&height=)",
                }
            },
        },
    }
}
_MANY_IMAGES = {
    "requestBody": {
        "required": True,
        "content": {
            MULTIPART: {
                "schema": {
                    "type": "object",
                    "properties": {"files": {"type": "array", "items": _BINARY["schema"]}},
                    "required": ["files"],
                }
            }
        },
    }
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "undecodable or truncated image"},
    401: {"model": Problem, "description": "missing or wrong API key (when keys are set)"},
    408: {"model": Problem, "description": "the body did not arrive within the request deadline"},
    413: {"model": Problem, "description": "body or image larger than the limits"},
    415: {"model": Problem, "description": "unsupported Content-Type"},
    422: {"model": Problem, "description": "bad parameters, or an image too small or too thin to classify"},
    503: {"model": Problem, "description": "queue full or not ready; see Retry-After"},
    504: {"model": Problem, "description": "no answer within the request deadline"},
}

HeatmapQuery = Annotated[
    HeatmapMode | None,
    Query(
        description="gray: 8-bit attention map PNG; overlay: coloured over the image; none: skip (default: service's)"
    ),
]


@router.post(
    "",
    summary="Classify one image: multipart field 'file', a JPEG/PNG/BMP/TIFF body, or a raw gray frame",
    openapi_extra=_ONE_IMAGE,
    responses=_ERRORS,
)
async def classify(
    request: Request,
    runtime: ReadyRuntime,
    settings: SettingsDep,
    request_id: RequestId,
    heatmap: HeatmapQuery = None,
    width: Annotated[int | None, Query(ge=1, le=1 << 16, description="raw frame width (octet-stream only)")] = None,
    height: Annotated[int | None, Query(ge=1, le=1 << 16, description="raw frame height (octet-stream only)")] = None,
) -> ClassifyResult:
    runtime.batcher.ensure_room()  # a full queue refuses at once (503), before the body is read
    with runtime.admission.admit() as ticket:  # and so does a service that is behind
        upload = await _read_one(request, width, height)
        outcome = await classify_uploads(runtime, request, [upload], heatmap or settings.heatmap, request_id, ticket)
    (result,) = outcome
    if isinstance(result, Exception):
        raise result
    return result


@router.post(
    "/batch",
    summary="Classify several images of one multipart request; one entry per image, in order",
    openapi_extra=_MANY_IMAGES,
    responses=_ERRORS,
)
async def classify_batch(
    request: Request,
    runtime: ReadyRuntime,
    settings: SettingsDep,
    request_id: RequestId,
    heatmap: HeatmapQuery = None,
) -> BatchResult:
    runtime.batcher.ensure_room()
    with runtime.admission.admit() as ticket:
        uploads = await _read_many(request, settings.max_batch_images)
        results = await classify_uploads(runtime, request, uploads, heatmap or settings.heatmap, request_id, ticket)
    items = []
    for i, (upload, result) in enumerate(zip(uploads, results, strict=True)):
        if isinstance(result, Exception):
            error = problem_for(result, f"{request_id}/{i}", request.url.path)
            items.append(BatchItem(index=i, filename=upload.filename, error=error))
        else:
            items.append(BatchItem(index=i, filename=upload.filename, result=result))
    return BatchResult(request_id=request_id, results=items)


def _media_type(request: Request) -> str:
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    return IMAGE_ALIASES.get(media, media)


def _refuse_encoded(request: Request) -> None:
    # The body is read as it comes: a compressed body would only fail later as an undecodable image.
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        msg = (
            f"Content-Encoding {encoding!r} is not accepted; send the image uncompressed "
            "(JPEG and PNG are compressed already)"
        )
        raise UnsupportedMediaType(msg)


async def _read_one(request: Request, width: int | None, height: int | None) -> Upload:
    _refuse_encoded(request)
    media = _media_type(request)
    if media == MULTIPART:
        async with request.form(max_files=1, max_fields=MAX_FIELDS) as form:
            file = form.get("file")
            if not isinstance(file, UploadFile):
                msg = "the multipart request has no file field named 'file'; send the image as -F file=@image.png"
                raise UnprocessableRequest(msg)
            return Upload(await file.read(), file.filename)
    if media in IMAGE_TYPES:
        return Upload(await request.body())
    if media == RAW_FRAME:
        if width is None or height is None:
            msg = "a raw frame (application/octet-stream) needs the query parameters width and height in pixels"
            raise UnprocessableRequest(msg)
        return Upload(await request.body(), width=width, height=height)
    raise UnsupportedMediaType(
        f"Content-Type {media or '(none)'!r} is not accepted; send {MULTIPART} with a field 'file', "
        f"one of {', '.join(IMAGE_TYPES)}, or {RAW_FRAME} with ?width=&height="
    )


async def _read_many(request: Request, max_images: int) -> list[Upload]:
    _refuse_encoded(request)
    media = _media_type(request)
    if media != MULTIPART:
        msg = f"Content-Type {media or '(none)'!r} is not accepted here; send {MULTIPART} with one part per image"
        raise UnsupportedMediaType(msg)
    try:  # the limits hold while the body is parsed: the part after the last allowed one stops it
        form = await request.form(max_files=max_images, max_fields=MAX_FIELDS)
    except HTTPException as exc:
        if "Too many" not in str(exc.detail):
            raise
        msg = f"more than {max_images} images in one request ({exc.detail}); split the request"
        raise PayloadTooLarge(msg) from exc
    try:
        files = [f for _, f in form.multi_items() if isinstance(f, UploadFile)]
        if not files:
            raise UnprocessableRequest("the multipart request has no files; send -F files=@a.png -F files=@b.png")
        return [Upload(await f.read(), f.filename) for f in files]
    finally:
        await form.close()
