"""The model's attention map as a PNG at the input image's size.

The map (B x 1 x h x w from ``forward_with_attention``, MIAM's spatial map) was
computed on the image resized to the model's square input, so stretching it
back to the image's width and height puts every value over the pixels it saw.
``gray`` is the map min-max normalised per image to 8 bits, for clients to
colour themselves; ``overlay`` colours it with a matplotlib colormap and blends
it over the image, for a person to look at.
"""

from __future__ import annotations

import base64
import io
from functools import lru_cache

import numpy as np
from PIL import Image

from service.schemas import Heatmap

__all__ = ["attention_to_gray", "overlay", "render_heatmap"]

COLORMAP = "turbo"
OVERLAY_ALPHA = 0.45  # weight of the colour; the rest is the image


def attention_to_gray(attention: np.ndarray, width: int, height: int) -> np.ndarray:
    """h x w attention -> ``height`` x ``width`` uint8, bilinear, min-max normalised (a flat map is all 0)."""
    resized = Image.fromarray(np.ascontiguousarray(attention, dtype=np.float32), mode="F").resize(
        (width, height), Image.Resampling.BILINEAR
    )
    a = np.asarray(resized, dtype=np.float32)
    lo, hi = float(a.min()), float(a.max())
    if hi - lo <= 1e-12:
        return np.zeros((height, width), dtype=np.uint8)
    return np.rint((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)


@lru_cache(maxsize=4)
def _lut(name: str) -> np.ndarray:
    from matplotlib import colormaps  # imported on first overlay only: matplotlib is slow to import

    return (colormaps[name](np.arange(256))[:, :3] * 255).round().astype(np.uint8)


def overlay(image: np.ndarray, heat: np.ndarray, cmap: str = COLORMAP, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """Blend the coloured ``heat`` (H x W uint8) over the gray ``image`` (H x W uint8) -> H x W x 3 uint8."""
    colour = _lut(cmap)[heat].astype(np.float32)
    base = image.astype(np.float32)[..., None]
    return np.rint(alpha * colour + (1.0 - alpha) * base).astype(np.uint8)


def _png_base64(pixels: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=1)  # fast; maps compress well anyway
    return base64.b64encode(buf.getvalue()).decode("ascii")


def render_heatmap(attention: np.ndarray, image: np.ndarray, kind: str) -> Heatmap | None:
    """The ``Heatmap`` of one image, ``kind`` "gray", "overlay" or "none" (-> ``None``)."""
    if kind == "none":
        return None
    height, width = image.shape
    heat = attention_to_gray(attention, width, height)
    pixels = overlay(image, heat) if kind == "overlay" else heat
    return Heatmap(kind=kind, width=width, height=height, data=_png_base64(pixels))
