"""Convolution, batch norm and activation: the unit every LCS and EffNet block is made of."""

from __future__ import annotations

from torch import nn

__all__ = ["ConvBnAct"]


class ConvBnAct(nn.Sequential):
    """``Conv2d`` (no bias) -> ``BatchNorm2d`` -> activation (ReLU6 by default, the paper's)."""

    def __init__(self, in_chs, out_chs, kernel, stride=1, padding=0, groups=1, act_layer=nn.ReLU6):
        super().__init__(
            nn.Conv2d(in_chs, out_chs, kernel, stride=stride, padding=padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_chs),
            act_layer(inplace=True),
        )
