"""From the model's attention map to a heatmap at the input image's size.

Shared by the service (PNG heatmaps) and the reports (Figure 9, localisation scores),
so both show the same thing.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from PIL import Image

__all__ = ["overlay", "smooth", "upsample_attention"]


def upsample_attention(
    attention: np.ndarray | torch.Tensor, height: int, width: int, blur: float = 0.0, gamma: float = 1.0
) -> np.ndarray:
    """Resize an h x w map to height x width, scaled to [0, 1]: optionally smoothed first and sharpened after.

    ``blur`` is a Gaussian's sigma in map cells, applied to the small map (it moves the peak from a
    lone cell to the region with the most mass); ``gamma`` raises the [0, 1] map to a power (it narrows
    the bright region without moving its peak). Both come from the checkpoint card, fitted on the
    validation slice (``ilcs localise --fit-style``); the defaults leave the map as the model gave it.
    The resize is Pillow's bilinear (pixel centres aligned, as ``F.interpolate(align_corners=False)``)
    in 32-bit float: one call that releases the GIL.
    """
    if isinstance(attention, torch.Tensor):
        attention = attention.detach().float().cpu().numpy()
    attention = np.ascontiguousarray(attention, dtype=np.float32)
    if blur > 0:
        attention = smooth(attention, blur)
    small = Image.fromarray(attention)  # mode "F"
    a = np.asarray(small.resize((width, height), Image.Resampling.BILINEAR))
    a = a - a.min()
    peak = float(a.max())
    if peak <= 0:
        return a
    a = a / peak
    return a if gamma == 1.0 else np.power(a, np.float32(gamma))


def smooth(attention: np.ndarray, sigma: float) -> np.ndarray:
    """An h x w float map blurred by a Gaussian of ``sigma`` cells (kernel +-3 sigma, reflected edges)."""
    from torchvision.transforms.functional import gaussian_blur

    side = min(attention.shape)
    kernel = min(2 * math.ceil(3 * sigma) + 1, side if side % 2 else side - 1)
    if kernel < 3:
        return attention
    return gaussian_blur(torch.tensor(attention)[None, None], [kernel, kernel], [sigma, sigma])[0, 0].numpy()


def overlay(gray: np.ndarray, heat: np.ndarray, alpha: float = 0.45, cmap: str = "jet") -> np.ndarray:
    """Blend a [0, 1] heatmap, coloured with ``cmap`` (red = strong), over an H x W uint8 image -> H x W x 3 uint8.

    Works in 8 bits through a 256-entry colour table, so a 4096 x 4096 image costs
    tens of megabytes, not the gigabyte a float64 RGBA array of it would.
    """
    lut = _colour_table(cmap)  # 256 x 3 uint8
    colour = lut[np.rint(np.clip(heat, 0.0, 1.0) * 255.0).astype(np.uint8)]
    base = gray[..., None].astype(np.uint16)
    blend = (1 - alpha) * 256.0, alpha * 256.0  # fixed point: weights in 1/256ths
    out = (base * round(blend[0]) + colour.astype(np.uint16) * round(blend[1]) + 128) >> 8
    return out.astype(np.uint8)


@functools.cache
def _colour_table(cmap: str) -> np.ndarray:
    from matplotlib import colormaps

    return np.rint(colormaps[cmap](np.linspace(0.0, 1.0, 256))[:, :3] * 255.0).astype(np.uint8)
