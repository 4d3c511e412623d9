"""From the model's attention map to a heatmap at the input image's size.

Shared by the service (PNG heatmaps) and the reports (Figure 9, localisation scores),
so both show the same thing.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from PIL import Image

__all__ = ["overlay", "upsample_attention"]


def upsample_attention(attention: np.ndarray | torch.Tensor, height: int, width: int) -> np.ndarray:
    """Bilinearly resize an h x w attention map to height x width and min-max scale it to [0, 1].

    Pillow's bilinear resize (pixel centres aligned, as ``F.interpolate(align_corners=False)``; the two
    agree to 1e-6) in 32-bit float: one call that releases the GIL, where the torch version took five
    small tensor ops from Python per request in the service.
    """
    if isinstance(attention, torch.Tensor):
        attention = attention.detach().float().cpu().numpy()
    small = Image.fromarray(np.ascontiguousarray(attention, dtype=np.float32))  # mode "F"
    a = np.asarray(small.resize((width, height), Image.Resampling.BILINEAR))
    a = a - a.min()
    peak = float(a.max())
    return a / peak if peak > 0 else a


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
