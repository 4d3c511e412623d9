"""A small attention factory, so "baseline + MIAM" is an argument, not a copy of the baseline."""

from __future__ import annotations

from torch import nn

from model_zoo.layers.channel_attention import ChannelAttention
from model_zoo.layers.miam import MIAM
from model_zoo.layers.spatial_attention import SpatialAttention

__all__ = ["create_attn"]

_ATTN: dict[str, type[nn.Module]] = {"miam": MIAM, "ca": ChannelAttention}


def create_attn(kind: str | None, channels: int, **kwargs) -> nn.Module:
    """Build attention ``kind`` ("miam", "ca", "sa" or None -> identity) for ``channels``."""
    if kind is None or kind == "none":
        return nn.Identity()
    if kind == "sa":
        return SpatialAttention(**kwargs)
    if kind not in _ATTN:
        msg = f"unknown attention {kind!r}; choose one of: none, sa, {', '.join(_ATTN)}"
        raise ValueError(msg)
    return _ATTN[kind](channels, **kwargs)
