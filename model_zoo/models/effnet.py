"""EffNet (Freeman, Roese-Koerner and Kummert, ICIP 2018), written from its paper.

An EffNet block replaces a 3x3 convolution by spatially separable depthwise
convolutions and downsamples one axis at a time::

    Conv 1x1 (in -> out/2, the bottleneck)   BN ReLU
    dw Conv 1x3                              BN ReLU
    MaxPool 2x1 (halves H)
    dw Conv 3x1                              BN ReLU
    Conv 1x2, stride 1x2 (out/2 -> out: halves W)  BN ReLU

The ICIP paper's CIFAR model stacks blocks of 32, 64 and 128 channels before its
classifier; for NEU we stack (64, 128, 256) like ILCS, so the two differ only by
ILCS's attention, and give it the same heads. ``attn_layer="miam"`` adds MIAM on the last map.
"""

from __future__ import annotations

import torch
from torch import nn

from model_zoo.layers import AttendedFeatures, ConvBnAct, create_attn
from model_zoo.models.base import AttentionClassifier, attend
from model_zoo.models.heads import create_head
from model_zoo.models.init import init_weights
from model_zoo.registry import register_model

__all__ = ["EffNet", "EffNetBlock", "effnet"]


class EffNetBlock(nn.Sequential):
    def __init__(self, in_chs: int, out_chs: int, act_layer: type[nn.Module] = nn.ReLU) -> None:
        mid = out_chs // 2
        super().__init__(
            ConvBnAct(in_chs, mid, 1, act_layer=act_layer),
            ConvBnAct(mid, mid, (1, 3), padding=(0, 1), groups=mid, act_layer=act_layer),
            nn.MaxPool2d((2, 1)),
            ConvBnAct(mid, mid, (3, 1), padding=(1, 0), groups=mid, act_layer=act_layer),
            ConvBnAct(mid, out_chs, (1, 2), stride=(1, 2), act_layer=act_layer),
        )


class EffNet(AttentionClassifier):
    """EffNet backbone + optional MIAM + classifier head (see module docstring)."""

    def __init__(
        self,
        num_classes: int = 6,
        in_chans: int = 3,
        channels: tuple[int, ...] = (64, 128, 256),
        head: str = "gap",
        input_size: int = 200,
        hidden: int | None = None,
        drop_rate: float = 0.2,
        attn_layer: str | None = None,
    ) -> None:
        super().__init__()
        blocks, chs = [], in_chans
        for out in channels:
            blocks.append(EffNetBlock(chs, out))
            chs = out
        self.backbone = nn.Sequential(*blocks)
        self.attn = create_attn(attn_layer, chs)
        self.num_features = chs
        self.head = create_head(head, chs, input_size // 2 ** len(channels), num_classes, hidden, drop_rate)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> AttendedFeatures:
        return attend(self.attn, self.backbone(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)


@register_model
def effnet(num_classes: int = 6, **kwargs) -> EffNet:
    """EffNet with (64, 128, 256) blocks; ``attn_layer="miam"`` (or ``"effnet+miam"``) for the paper's EffNet + MIAM."""
    return EffNet(num_classes=num_classes, **kwargs)
