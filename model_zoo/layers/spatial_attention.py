"""Spatial attention, ILCS paper eq. (4)-(5).

    Ms(F) = sigmoid(f3x3([AvgPool_c(F); MaxPool_c(F)]))

The two maps are the mean and the maximum over channels, concatenated and
convolved by one 3x3 filter (the paper's kernel; CBAM used 7x7). ``forward``
returns ``Ms(F) * F``; ``attention`` returns the map ``Ms(F)`` (``B x 1 x H x W``).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SpatialAttention"]


class SpatialAttention(nn.Module):
    """Spatial attention (paper eq. 4-5).

    Args:
        kernel_size: Size of the convolution f over the two pooled maps (paper: 3).
    """

    def __init__(self, kernel_size: int = 3) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            msg = f"SpatialAttention needs an odd kernel_size to keep the map size, got {kernel_size}"
            raise ValueError(msg)
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """Return the spatial map Ms(F), shape B x 1 x H x W, values in (0, 1)."""
        # max with indices, not amax: amax's backward is several times slower on CPU.
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.max(dim=1, keepdim=True).values], dim=1)
        return torch.sigmoid(self.conv(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)
