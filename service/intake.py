"""An upload's image, checked before it costs anything and decoded with bounded work.

``inspect`` runs on the event loop when a request arrives and reads only the file's
structure: the decoders allowed (JPEG, PNG, BMP and TIFF, and BMP without its RLE
modes, which Pillow decodes in Python), the number of PNG chunks and JPEG segments
Pillow would walk in Python, and the sides the header declares, against
``ImageLimits``. So a small file cannot buy seconds of CPU or gigabytes of memory,
and the pixel count it returns is what admission charges the request for.

``decode`` runs in a model thread. It reads the image the way the model zoo's
``decode_gray`` does (first frame, upright by its EXIF orientation, gray the training
data's way) but refuses what a decoder only warned about: a JPEG whose scan ends
early decodes without error in Pillow, its missing blocks filled in, so a JPEG's
scans are also decoded by simplejpeg (libjpeg-turbo, ``strict``: warnings are errors),
at an eighth of its size; a plain JPEG (gray or YCbCr, no EXIF, too small to be
drafted) is decoded by simplejpeg alone, which gives Pillow's pixels.
An image much larger than the model's input is reduced by whole factors (box
filter, or JPEG's DCT scaling) before it is converted and resized, so its float
copies stay small whatever its size.
"""

from __future__ import annotations

import io
import re
import struct
from dataclasses import dataclass

import numpy as np
import simplejpeg
from PIL import Image, ImageFile, ImageOps

from model_zoo.preprocess import ImageTooLargeError, to_gray
from service.errors import BadImage, PayloadTooLarge, UnprocessableRequest

__all__ = ["FORMATS", "Header", "ImageLimits", "decode", "inspect", "reduce_gray"]

# The formats the API documents; Pillow's other decoders (GIF, WEBP, EPS via Ghostscript, PSD...) never see an upload.
# (A camera's multi-picture JPEG is opened by the JPEG decoder too, as Pillow's MPO.)
FORMATS = ("JPEG", "PNG", "BMP", "TIFF")
MAX_PNG_CHUNKS = 4096  # a 20 MB PNG written in 8 KB IDAT chunks has about 2,600
MAX_JPEG_SEGMENTS = 256  # markers before and between scans; a camera's JPEG has a few dozen
MAX_JPEG_SCANS = 64  # a progressive JPEG has about ten
MAX_TILES = 4096  # TIFF strips or tiles Pillow lists in Python
_BYTESIO = re.compile(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>")
_SEND = "send a complete JPEG, PNG, BMP or TIFF file"

ImageFile.LOAD_TRUNCATED_IMAGES = False  # Pillow's default, relied upon: a short file is an error


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """What an image may declare: pixels, longest and shortest side, ratio of the sides."""

    max_pixels: int
    max_side: int
    min_side: int
    max_aspect: float

    @classmethod
    def from_settings(cls, settings) -> ImageLimits:
        """The limits of the service settings (``ILCS_MAX_PIXELS``, ``_MAX_SIDE``, ``_MIN_SIDE``, ``_MAX_ASPECT``)."""
        return cls(settings.max_pixels, settings.max_side, settings.min_side, settings.max_aspect)

    def check(self, width: int, height: int) -> None:
        """Raise the error a ``width`` x ``height`` image gets (413 too large, 422 too small or too thin), if any."""
        if width * height > self.max_pixels:
            msg = f"image is {width}x{height} = {width * height} pixels, more than the limit of {self.max_pixels}"
            raise ImageTooLargeError(msg)
        if min(width, height) < self.min_side:
            msg = (
                f"image is {width}x{height}, a side shorter than {self.min_side} pixels (ILCS_MIN_SIDE): too small "
                "to show a defect; send the camera's picture of the surface, not a thumbnail"
            )
            raise UnprocessableRequest(msg)
        if max(width, height) > self.max_side:
            msg = f"image is {width}x{height}, a side longer than {self.max_side} pixels (ILCS_MAX_SIDE); send a crop"
            raise PayloadTooLarge(msg)
        if max(width, height) > self.max_aspect * min(width, height):
            msg = (
                f"image is {width}x{height}, its long side more than {self.max_aspect:g} times its short side "
                "(ILCS_MAX_ASPECT); send square-ish crops of the strip"
            )
            raise UnprocessableRequest(msg)


@dataclass(frozen=True, slots=True)
class Header:
    """What a file declares: its format and the sides of its first frame (as stored, before EXIF turns it)."""

    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def inspect(data: bytes, limits: ImageLimits) -> Header:
    """Check an upload's structure and declared size without decoding a pixel.

    Raises:
        BadImage: Not one of the four formats, a refused encoding, or an unreadable header (400).
        ImageTooLargeError, PayloadTooLarge: Too many pixels or too long a side (413).
        UnprocessableRequest: Too small or too thin to classify (422).
    """
    if not data:
        msg = "the request has no image: send the image file as the body or as the multipart field 'file'"
        raise BadImage(msg)
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        _walk_png(data)
    elif data.startswith(b"\xff\xd8"):
        _walk_jpeg(data)
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as img:
            header = Header(img.format or "?", *img.size)
            tiles = img.tile or []
            if header.format == "BMP" and any(tile[0] != "raw" for tile in tiles):
                msg = "run-length-encoded BMP files are not accepted; send an uncompressed BMP, a PNG or a TIFF"
                raise BadImage(msg)
            if len(tiles) > MAX_TILES:
                msg = f"the image is stored in {len(tiles)} strips or tiles, more than {MAX_TILES}; {_SEND}"
                raise BadImage(msg)
    except BadImage:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - on hostile bytes Pillow's plugins raise anything
        raise BadImage(f"could not decode the image header ({_tidy(exc)}); {_SEND}") from exc
    limits.check(header.width, header.height)  # every limit is the same for the image turned upright
    return header


def decode(data: bytes, header: Header, reduce_to: int) -> tuple[np.ndarray, int, int]:
    """The upload as H x W uint8 gray (first frame, upright; sides over twice ``reduce_to`` reduced towards it).

    Returns:
        The gray image, and the width and height of the upright picture before any reduction.

    Raises:
        BadImage: The file is truncated or corrupt, whatever its trailer.
    """
    try:
        if header.format == "JPEG":
            plain = _plain_jpeg(data, header, reduce_to)
            if plain is not None:
                return plain, header.width, header.height
            simplejpeg.decode_jpeg(data, "GRAY", min_factor=8, strict=True)  # libjpeg's warnings raise
        with Image.open(io.BytesIO(data), formats=FORMATS) as img:
            if img.format == "JPEG":
                img.draft(img.mode, (2 * reduce_to, 2 * reduce_to))  # DCT scaling by 1/2, 1/4 or 1/8 at most
            img.load()
            upright = ImageOps.exif_transpose(img)
            turned = upright.size != img.size
            width, height = (header.height, header.width) if turned else (header.width, header.height)
            return reduce_gray(to_gray(_reduced(upright, reduce_to)), reduce_to), width, height
    except Exception as exc:  # noqa: BLE001 - Pillow raises anything on hostile bytes, simplejpeg a ValueError
        raise BadImage(f"could not decode the image ({_tidy(exc)}); {_SEND}") from exc


def _plain_jpeg(data: bytes, header: Header, reduce_to: int) -> np.ndarray | None:
    """A gray or YCbCr JPEG without EXIF too small for DCT scaling (a NEU camera's), decoded once; else None.

    libjpeg-turbo with Pillow's settings gives Pillow's pixels for it (no orientation to apply, the same
    gray conversion after), so the strict check is the decode itself rather than a pass before Pillow's.
    """
    if min(header.width, header.height) >= 4 * reduce_to or b"Exif\x00\x00" in data:  # Pillow would draft or turn it
        return None
    colourspace = simplejpeg.decode_jpeg_header(data)[2]
    if colourspace == "Gray":
        return reduce_gray(np.ascontiguousarray(simplejpeg.decode_jpeg(data, "GRAY", strict=True)[:, :, 0]), reduce_to)
    if colourspace != "YCbCr":
        return None
    rgb = Image.fromarray(simplejpeg.decode_jpeg(data, "RGB", strict=True))  # libjpeg's warnings raise
    return reduce_gray(to_gray(_reduced(rgb, reduce_to)), reduce_to)


def _reduced(img: Image.Image, reduce_to: int) -> Image.Image:
    # Before the gray conversion, which makes float copies of 16-bit and float images.
    factors = _factors(img.width, img.height, reduce_to)
    if factors == (1, 1):
        return img
    if img.mode.startswith("I;16"):  # Pillow reduces 32-bit integers, not 16-bit; the values are kept
        img = img.convert("I")
    if img.mode not in ("L", "LA", "RGB", "RGBA", "I", "F"):
        return img  # palette, 1-bit, CMYK...: converted to 8 bits first, then reduced
    return img.reduce(factors)


def reduce_gray(gray: np.ndarray, reduce_to: int) -> np.ndarray:
    """An H x W uint8 image with a side of at least twice ``reduce_to`` reduced towards it by a whole factor."""
    factors = _factors(gray.shape[1], gray.shape[0], reduce_to)
    if factors == (1, 1):
        return gray
    return np.asarray(Image.fromarray(gray).reduce(factors), dtype=np.uint8).copy()


def _factors(width: int, height: int, reduce_to: int) -> tuple[int, int]:
    """Whole reduction factors per axis leaving each side at least ``reduce_to`` (1 below twice that)."""
    return max(1, width // reduce_to) if width >= 2 * reduce_to else 1, (
        max(1, height // reduce_to) if height >= 2 * reduce_to else 1
    )


def _walk_png(data: bytes) -> None:
    """Count the chunks Pillow would walk (in Python): refuse a file of millions of empty ones."""
    offset, chunks, size = 8, 0, len(data)
    while offset + 8 <= size:
        (length,) = struct.unpack_from(">I", data, offset)
        kind = data[offset + 4 : offset + 8]
        chunks += 1
        if chunks > MAX_PNG_CHUNKS:
            msg = f"the PNG has more than {MAX_PNG_CHUNKS} chunks; save it again with a usual encoder"
            raise BadImage(msg)
        offset += 12 + length
        if kind == b"IEND":
            return


def _walk_jpeg(data: bytes) -> None:
    """Count the JPEG's marker segments and scans: refuse a file built to make the decoder loop."""
    segments = scans = 0
    scans = data.count(b"\xff\xda")  # a scan's entropy-coded data never holds 0xFFDA (0xFF is stuffed)
    if scans > MAX_JPEG_SCANS:
        msg = f"the JPEG has {scans} scans, more than {MAX_JPEG_SCANS}; save it again as a baseline JPEG"
        raise BadImage(msg)
    offset, size = 2, len(data)
    while offset + 4 <= size and data[offset] == 0xFF:
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            msg = f"the JPEG has more than {MAX_JPEG_SEGMENTS} marker segments; save it again with a usual encoder"
            raise BadImage(msg)
        if marker == 0xDA or marker == 0xD9:  # start of scan: the header ends (later scans are counted above)
            return
        (length,) = struct.unpack_from(">H", data, offset + 2)
        offset += 2 + length


def _tidy(exc: BaseException) -> str:
    # PIL names its in-memory file: "<_io.BytesIO object at 0x...>"
    return _BYTESIO.sub("the upload", str(exc)) or type(exc).__name__
