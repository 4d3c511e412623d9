"""The model's attention map as a PNG at the input image's size.

The map (B x 1 x h x w from ``forward_with_attention``: MIAM's spatial map, or the
last feature map's activation energy for a model without MIAM, as the card's
``heatmap_method`` says) was
computed on the image resized to the model's square input, so stretching it back
to the image's width and height puts every value over the pixels it saw. The
stretching, min-max scaling and colouring are ``model_zoo.heatmap``'s, the same
the reports' Figure 9 uses. ``gray`` is the scaled map in 8 bits, for clients to
colour themselves; ``overlay`` is it coloured and blended over the image, for a
person to look at.
"""

from __future__ import annotations

import base64
import struct
import zlib

import numpy as np

from model_zoo.heatmap import overlay, upsample_attention
from service.schemas import Heatmap

__all__ = ["encode_png", "render_heatmap"]


def encode_png(pixels: np.ndarray) -> bytes:
    """An H x W (gray) or H x W x 3 (RGB) uint8 array as a PNG file: every row Sub-filtered, zlib level 1.

    A smooth map needs no per-row filter search (Pillow tries all five): the Sub filter leaves small
    numbers that zlib's fastest level packs well, at a fraction of the CPU (reports/service-overhead.md).
    """
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if pixels.dtype != np.uint8 or channels not in (1, 3):
        msg = f"encode_png takes H x W or H x W x 3 uint8 pixels, got {pixels.dtype} {pixels.shape}"
        raise ValueError(msg)
    rows = np.ascontiguousarray(pixels).reshape(height, width * channels)
    filtered = np.empty((height, 1 + width * channels), dtype=np.uint8)
    filtered[:, 0] = 1  # filter type Sub
    filtered[:, 1 : 1 + channels] = rows[:, :channels]
    np.subtract(rows[:, channels:], rows[:, :-channels], out=filtered[:, 1 + channels :])  # modulo 256
    header = struct.pack(">IIBBBBB", width, height, 8, 0 if channels == 1 else 2, 0, 0, 0)
    return b"".join(
        (_PNG_SIGNATURE, _chunk(b"IHDR", header), _chunk(b"IDAT", zlib.compress(filtered.tobytes(), 1)), _IEND)
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IEND = _chunk(b"IEND", b"")


def render_heatmap(
    attention: np.ndarray,
    image: np.ndarray,
    kind: str,
    method: str = "model_attention",
    blur: float = 0.0,
    gamma: float = 1.0,
) -> Heatmap | None:
    """The ``Heatmap`` of one H x W uint8 ``image``; ``kind`` "gray", "overlay" or "none" (-> ``None``).

    ``method`` names how the model computed the map, ``blur`` and ``gamma`` how it is shown (the
    checkpoint card's ``heatmap_method``, ``heatmap_blur``, ``heatmap_gamma``).
    """
    if kind == "none":
        return None
    height, width = image.shape
    heat = upsample_attention(attention, height, width, blur=blur, gamma=gamma)  # [0, 1]; a flat map is all 0
    pixels = overlay(image, heat) if kind == "overlay" else np.rint(heat * 255.0).astype(np.uint8)
    data = base64.b64encode(encode_png(pixels)).decode("ascii")
    return Heatmap(kind=kind, method=method, width=width, height=height, data=data)
