"""From the model's attention map to a heatmap at the input image's size.

Shared by the service (PNG heatmaps) and the reports (Figure 9, localisation scores),
so both show the same thing.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

__all__ = ["overlay", "upsample_attention"]


def upsample_attention(attention: np.ndarray | torch.Tensor, height: int, width: int) -> np.ndarray:
    """Bilinearly resize an h x w attention map to height x width and min-max scale it to [0, 1]."""
    a = torch.as_tensor(np.asarray(attention, dtype=np.float32))[None, None]
    a = F.interpolate(a, size=(height, width), mode="bilinear", align_corners=False)[0, 0]
    a = a - a.min()
    peak = float(a.max())
    return (a / peak if peak > 0 else a).numpy()


def overlay(gray: np.ndarray, heat: np.ndarray, alpha: float = 0.45, cmap: str = "jet") -> np.ndarray:
    """Blend a [0, 1] heatmap, coloured with ``cmap`` (red = strong), over an H x W uint8 image -> H x W x 3 uint8."""
    from matplotlib import colormaps

    colour = colormaps[cmap](heat)[..., :3]
    base = np.repeat(gray[..., None].astype(np.float32) / 255.0, 3, axis=-1)
    return np.clip(255.0 * ((1 - alpha) * base + alpha * colour), 0, 255).astype(np.uint8)
