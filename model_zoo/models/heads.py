"""Classifier heads shared by ILCS and EffNet.

* ``paper``: flatten the last map, then two fully connected layers (paper sec. 4.3).
  The paper's 2.24M parameters at 300x300 pin the hidden width: flattening the
  37x37x256 map gives 350,464 inputs, so the first layer alone holds 2.1M weights
  with a hidden width of 6; the default ``paper_hidden=6`` reproduces the count.
  It only accepts the input size it was built for.
* ``gap``: global average and max pooling, concatenated, then a two-layer MLP.
  It accepts any input size and holds far fewer weights; it is what we ship.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["HEADS", "create_head"]

HEADS = ("gap", "paper")


class GlobalAvgMaxPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)


def create_head(
    kind: str,
    channels: int,
    feature_size: int,
    num_classes: int,
    hidden: int | None = None,
    drop_rate: float = 0.2,
) -> nn.Module:
    """Build a classifier head.

    Args:
        kind: ``"paper"`` or ``"gap"``.
        channels: Channels of the last feature map.
        feature_size: Side of the (square) last feature map; used by ``paper`` only.
        num_classes: Outputs.
        hidden: Hidden width of the MLP (default: 6 for ``paper``, 128 for ``gap``).
        drop_rate: Dropout before the last layer.
    """
    if kind == "paper":
        hidden = hidden or 6
        return nn.Sequential(
            nn.Flatten(1),
            nn.Linear(channels * feature_size * feature_size, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(drop_rate),
            nn.Linear(hidden, num_classes),
        )
    if kind == "gap":
        hidden = hidden or 128
        return nn.Sequential(
            GlobalAvgMaxPool(),
            nn.Linear(2 * channels, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(drop_rate),
            nn.Linear(hidden, num_classes),
        )
    msg = f"unknown head {kind!r}; choose one of {', '.join(HEADS)}"
    raise ValueError(msg)
