"""Interactive attention, ILCS paper eq. (8).

    Mi(F) = F . F^T

Each channel's H x W map is multiplied point by point with its own spatial
transpose (``F[c, i, j] * F[c, j, i]``), the "self-interaction" of the paper.
The transpose only lines up with the map when H == W, so a non-square map is
refused with an error rather than silently broadcast.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["InteractiveAttention"]


class InteractiveAttention(nn.Module):
    """Interactive attention (paper eq. 8); it has no parameters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[-1] != x.shape[-2]:
            msg = (
                "InteractiveAttention multiplies each feature map by its transpose, so it needs "
                f"square B x C x H x W maps with H == W; got shape {tuple(x.shape)}. "
                "Feed square images (resize or crop to S x S) to models that use MIAM."
            )
            raise ValueError(msg)
        return x * x.transpose(-1, -2)
