"""Mixed interactive attention module (MIAM), ILCS paper eq. (9)-(11).

    F'   = Mc(F) * F          (eq. 9,  channel attention, eq. 6)
    F''  = Ms(F') * F'        (eq. 10, spatial attention, eq. 4)
    F''' = F'' + Mi(F)        (eq. 11, interactive attention of the *input* F, eq. 8)

MIAM keeps the shape of its input, so it plugs in after any backbone's last
feature map (see ``create_attn``). ``forward_with_attention`` also returns the
spatial map Ms(F'): it is the map this project shows as the heatmap (paper Fig. 9).

``interactive_scale_init`` (default ``None``: eq. 11 exactly) turns eq. 11 into
F''' = F'' + gamma * Mi(F) with one learnable gamma starting at that value (the
zero-initialised residual gate of SAGAN and LayerScale). Mi(F) is quadratic in the
ReLU6 features (up to 36 where F'' is at most 6); added at full weight from the
first step it slows training several-fold (``model_zoo/DESIGN.md``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from model_zoo.layers.channel_attention import ChannelAttention
from model_zoo.layers.interactive_attention import InteractiveAttention
from model_zoo.layers.spatial_attention import SpatialAttention

__all__ = ["MIAM", "AttendedFeatures"]


class AttendedFeatures(NamedTuple):
    features: torch.Tensor  # F''', B x C x H x W
    attention: torch.Tensor  # Ms(F'), B x 1 x H x W, in (0, 1)


class MIAM(nn.Module):
    """Mixed interactive attention (paper eq. 9-11).

    Args:
        channels: Channels C of the feature map it refines.
        reduction: Channel-attention MLP squeeze ratio (paper/CBAM: 16).
        spatial_kernel: Spatial-attention kernel (paper: 3).
        interactive_scale_init: ``None`` (paper) adds Mi(F) as it is; a number makes its
            weight a learnable scalar starting there (0.0: MIAM starts as CA + SA).
    """

    def __init__(
        self, channels: int, reduction: int = 16, spatial_kernel: int = 3, interactive_scale_init: float | None = None
    ) -> None:
        super().__init__()
        init = interactive_scale_init
        self.gamma = None if init is None else nn.Parameter(torch.tensor(float(init)))
        self.channel = ChannelAttention(channels, reduction=reduction)
        self.spatial = SpatialAttention(spatial_kernel)
        self.interactive = InteractiveAttention()

    def forward_with_attention(self, x: torch.Tensor) -> AttendedFeatures:
        f1 = self.channel(x)  # eq. 9
        ms = self.spatial.attention(f1)
        f2 = f1 * ms  # eq. 10
        mi = self.interactive(x)
        return AttendedFeatures(f2 + (mi if self.gamma is None else self.gamma * mi), ms)  # eq. 11

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_attention(x).features
