"""What every model of the zoo shares: the split forward and the attention output.

Each model has ``forward_features(x) -> AttendedFeatures`` (features and a
B x 1 x h x w attention map) and ``forward_head(features) -> logits``.
``forward(x)`` returns logits only, so training, loss and export treat every
model alike; ``forward_with_attention(x)`` returns both in one pass.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from model_zoo.layers import AttendedFeatures

__all__ = ["AttentionClassifier", "ClassifierOutput", "activation_energy", "LogitsAndAttention"]


class ClassifierOutput(NamedTuple):
    logits: torch.Tensor  # B x num_classes
    attention: torch.Tensor  # B x 1 x h x w (names the ONNX outputs too)


def activation_energy(features: torch.Tensor) -> torch.Tensor:
    """Attention map of a model without MIAM: per-pixel L2 norm over channels, scaled to [0, 1]."""
    energy = features.float().pow(2).sum(dim=1, keepdim=True).sqrt()
    peak = energy.amax(dim=(2, 3), keepdim=True).clamp_min(1e-12)
    return energy / peak


class AttentionClassifier(nn.Module):
    """Base class: subclasses implement ``forward_features`` and ``forward_head`` and hold ``attn``."""

    @property
    def heatmap_method(self) -> str:
        """Name of the map ``forward_with_attention`` returns: MIAM's spatial map or the activation energy."""
        return "miam_spatial" if hasattr(getattr(self, "attn", None), "forward_with_attention") else "activation_energy"

    def forward_features(self, x: torch.Tensor) -> AttendedFeatures:
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_with_attention(self, x: torch.Tensor) -> ClassifierOutput:
        feats = self.forward_features(x)
        return ClassifierOutput(self.forward_head(feats.features), feats.attention)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x).features)


def attend(attn: nn.Module, features: torch.Tensor) -> AttendedFeatures:
    """Refine ``features`` with ``attn``; its spatial map is MIAM's, else the activation energy."""
    if hasattr(attn, "forward_with_attention"):
        return attn.forward_with_attention(features)
    features = attn(features)
    return AttendedFeatures(features, activation_energy(features))


class LogitsAndAttention(nn.Module):
    """``model.forward_with_attention`` as a ``(logits, attention)`` tuple: what graph tracers and exporters take."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model.forward_with_attention(x)
        return out.logits, out.attention
