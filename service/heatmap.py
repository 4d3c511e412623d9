"""The model's attention map as a PNG at the input image's size.

The map (B x 1 x h x w from ``forward_with_attention``: MIAM's spatial map, or the
last feature map's activation energy for a model without MIAM such as the shipped one) was
computed on the image resized to the model's square input, so stretching it back
to the image's width and height puts every value over the pixels it saw. The
stretching, min-max scaling and colouring are ``model_zoo.heatmap``'s, the same
the reports' Figure 9 uses. ``gray`` is the scaled map in 8 bits, for clients to
colour themselves; ``overlay`` is it coloured and blended over the image, for a
person to look at.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from model_zoo.heatmap import overlay, upsample_attention
from service.schemas import Heatmap

__all__ = ["render_heatmap"]


def _png_base64(pixels: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=1)  # fast; smooth maps compress well anyway
    return base64.b64encode(buf.getvalue()).decode("ascii")


def render_heatmap(attention: np.ndarray, image: np.ndarray, kind: str) -> Heatmap | None:
    """The ``Heatmap`` of one H x W uint8 ``image``; ``kind`` "gray", "overlay" or "none" (-> ``None``)."""
    if kind == "none":
        return None
    height, width = image.shape
    heat = upsample_attention(attention, height, width)  # [0, 1]; a flat map is all 0
    pixels = overlay(image, heat) if kind == "overlay" else np.rint(heat * 255.0).astype(np.uint8)
    return Heatmap(kind=kind, width=width, height=height, data=_png_base64(pixels))
