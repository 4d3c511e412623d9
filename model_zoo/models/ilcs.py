"""ILCS: improved lightweight convolution structure + MIAM (Pei et al., 2022).

Paper: "ILCS: An Improved Lightweight Convolution Structure and Mixed Interactive
Attention for Steel Surface Defect Classification", Computational Intelligence and
Neuroscience, 2022. Table 1 and sec. 4.1 give the LCS; sec. 4.2 the MIAM; sec. 4.3
the classifier. Where the paper is ambiguous, ``model_zoo/DESIGN.md`` says what we
chose and why; every such choice is a constructor argument.

One LCS block (Fig. 2), for ``in_chs -> out_chs`` with ``mid = out_chs // 2``::

    Conv1 1x1 (in -> mid)  BN ReLU6  CA
    Conv2 dw 1x3           BN ReLU6  SA
    MaxPool 1x2 (halves W)                     <- the block's one pooling layer
    Conv3 dw 3x1           BN ReLU6  SA
    Conv4 "1x2" (mid -> out, 2x1 kernel, stride 2 along H: halves H)  BN ReLU6  CA

so 300 -> 150 -> 75 -> 37 over three blocks (200 -> 100 -> 50 -> 25).

Speed option ``pool_at`` (default ``"mid"``, the figure above, which the shipped
checkpoint uses): ``"early"`` moves the block's 1x2 max pool up to just after
Conv1 + CA, so both depthwise convs and both spatial attentions run on half as many
pixels. Same layers, same weights (a checkpoint loads into either), same output
shapes; a different function, so it needs its own training. On a CPU the full
resolution depthwise convs and spatial-attention maps of the first block are
memory-bound and take a large share of a forward pass (``reports/speed.md``).
"""

from __future__ import annotations

import torch
from torch import nn

from model_zoo.layers import AttendedFeatures, ChannelAttention, ConvBnAct, SpatialAttention, create_attn
from model_zoo.models.base import AttentionClassifier, attend
from model_zoo.models.heads import create_head
from model_zoo.models.init import init_weights
from model_zoo.registry import register_model

__all__ = ["ILCS", "LCSBlock", "ilcs"]

DOWNSAMPLE = ("separable", "pool")
POOL_AT = ("mid", "early")


class LCSBlock(nn.Module):
    """One lightweight convolution structure block (paper Fig. 2, Table 1).

    Args:
        in_chs: Input channels.
        out_chs: Output channels (Table 1: 64, 128, 256).
        mid_chs: Channels of the 1x1 and depthwise convs (Table 1: out_chs / 2).
        reduction: Channel-attention squeeze ratio.
        spatial_kernel: Spatial-attention kernel (paper: 3).
        downsample: ``"separable"`` (max pool 1x2 between the depthwise convs and a
            strided 2x1 Conv4, as EffNet does) or ``"pool"`` (Conv4 is 1x1 and a 2x2
            max pool ends the block).
        act_layer: Activation (paper: ReLU6).
        pool_at: Where the ``separable`` block's 1x2 max pool sits: ``"mid"`` (paper Fig. 2,
            between the depthwise convs; shipped) or ``"early"`` (after Conv1 + CA, a speed
            option: both depthwise convs and spatial attentions at half width).
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        mid_chs: int | None = None,
        reduction: int = 16,
        spatial_kernel: int = 3,
        downsample: str = "separable",
        act_layer: type[nn.Module] = nn.ReLU6,
        pool_at: str = "mid",
    ) -> None:
        super().__init__()
        if downsample not in DOWNSAMPLE:
            msg = f"unknown downsample {downsample!r}; choose one of {', '.join(DOWNSAMPLE)}"
            raise ValueError(msg)
        if pool_at not in POOL_AT or (pool_at == "early" and downsample != "separable"):
            msg = (
                f"unknown pool_at {pool_at!r} for downsample {downsample!r}; choose one of "
                f"{', '.join(POOL_AT)} ('early' only with downsample='separable')"
            )
            raise ValueError(msg)
        self.pool_early = pool_at == "early"
        mid = mid_chs or out_chs // 2
        separable = downsample == "separable"
        self.conv1 = ConvBnAct(in_chs, mid, 1, act_layer=act_layer)
        self.ca1 = ChannelAttention(mid, reduction=reduction)
        self.conv2 = ConvBnAct(mid, mid, (1, 3), padding=(0, 1), groups=mid, act_layer=act_layer)
        self.sa2 = SpatialAttention(spatial_kernel)
        self.pool = nn.MaxPool2d((1, 2)) if separable else nn.Identity()
        self.conv3 = ConvBnAct(mid, mid, (3, 1), padding=(1, 0), groups=mid, act_layer=act_layer)
        self.sa3 = SpatialAttention(spatial_kernel)
        kernel4, stride4 = ((2, 1), (2, 1)) if separable else (1, 1)
        self.conv4 = ConvBnAct(mid, out_chs, kernel4, stride=stride4, act_layer=act_layer)
        self.ca4 = ChannelAttention(out_chs, reduction=reduction)
        self.pool_end = nn.Identity() if separable else nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ca1(self.conv1(x))
        if self.pool_early:
            x = self.pool(x)
        x = self.sa2(self.conv2(x))
        if not self.pool_early:
            x = self.pool(x)
        x = self.sa3(self.conv3(x))
        return self.pool_end(self.ca4(self.conv4(x)))


class ILCS(AttentionClassifier):
    """LCS (three blocks) + MIAM + MLP classifier (paper Fig. 1, Algorithm 1).

    Args:
        num_classes: Outputs (NEU: 6).
        in_chans: Input channels (paper: 3; NEU's gray images are replicated).
        channels: Output channels of the blocks (Table 1).
        head: ``"gap"`` (shipped, any input size) or ``"paper"`` (flatten + 2 FC).
        input_size: Side of the square input; fixes the ``paper`` head's width.
        hidden: Hidden width of the classifier (``None``: the head's default).
        drop_rate: Dropout in the classifier.
        attn_layer: Attention on the last map, by ``create_attn`` kind (paper: ``"miam"``; ``None``: none).
        interactive_scale_init: Learnable weight of MIAM's interactive term, and its start
            (``None``: the paper's eq. 11, weight 1, fixed; see ``layers/miam.py``).
        reduction, spatial_kernel, downsample, pool_at: passed to every block (and MIAM).
    """

    def __init__(
        self,
        num_classes: int = 6,
        in_chans: int = 3,
        channels: tuple[int, ...] = (64, 128, 256),
        head: str = "gap",
        input_size: int = 200,
        hidden: int | None = None,
        drop_rate: float = 0.2,
        attn_layer: str | None = "miam",
        interactive_scale_init: float | None = None,
        reduction: int = 16,
        spatial_kernel: int = 3,
        downsample: str = "separable",
        pool_at: str = "mid",
    ) -> None:
        super().__init__()
        blocks, chs = [], in_chans
        for out in channels:
            blocks.append(
                LCSBlock(
                    chs, out, reduction=reduction, spatial_kernel=spatial_kernel, downsample=downsample, pool_at=pool_at
                )
            )
            chs = out
        self.lcs = nn.Sequential(*blocks)
        attn_kw = (
            {"reduction": reduction, "spatial_kernel": spatial_kernel, "interactive_scale_init": interactive_scale_init}
            if attn_layer == "miam"
            else {}
        )
        self.attn = create_attn(attn_layer, chs, **attn_kw)
        self.num_features = chs
        self.feature_size = input_size // 2 ** len(channels)
        self.head = create_head(head, chs, self.feature_size, num_classes, hidden=hidden, drop_rate=drop_rate)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> AttendedFeatures:
        return attend(self.attn, self.lcs(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)


@register_model
def ilcs(num_classes: int = 6, **kwargs) -> ILCS:
    """ILCS with MIAM and the ``gap`` head (any input size); ``head="paper", input_size=300`` is the paper's model."""
    return ILCS(num_classes=num_classes, **kwargs)
