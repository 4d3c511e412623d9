"""ResNet50 and MobileNetV2 from torchvision, randomly initialised, with optional MIAM.

MIAM (the paper's plug-in) goes on the backbone's last feature map, before the
global pooling: 2048 channels for ResNet50, 1280 for MobileNetV2. No pretrained
weights: this machine cannot download them and the paper trains from scratch.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision import models as tvm

from model_zoo.layers import AttendedFeatures, create_attn
from model_zoo.models.base import AttentionClassifier, attend
from model_zoo.models.init import init_weights
from model_zoo.registry import register_model

__all__ = ["TorchvisionClassifier", "mobilenet_v2", "resnet50"]


class TorchvisionClassifier(AttentionClassifier):
    """A torchvision backbone split into features and head, with MIAM between them."""

    def __init__(self, features: nn.Module, channels: int, classifier: nn.Module, attn_layer: str | None) -> None:
        super().__init__()
        self.features = features
        self.attn = create_attn(attn_layer, channels)
        self.num_features = channels
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = classifier
        init_weights(self)  # the zoo's one policy, replacing torchvision's own

    def forward_features(self, x: torch.Tensor) -> AttendedFeatures:
        return attend(self.attn, self.features(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(features), 1))


@register_model
def resnet50(num_classes: int = 6, attn_layer: str | None = None, input_size: int = 200) -> TorchvisionClassifier:
    """torchvision ResNet50 (any input size; ``input_size`` is recorded only)."""
    m = tvm.resnet50(weights=None, num_classes=num_classes)
    features = nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool, m.layer1, m.layer2, m.layer3, m.layer4)
    return TorchvisionClassifier(features, 2048, m.fc, attn_layer)


@register_model
def mobilenet_v2(num_classes: int = 6, attn_layer: str | None = None, input_size: int = 200) -> TorchvisionClassifier:
    """torchvision MobileNetV2 (any input size; ``input_size`` is recorded only)."""
    m = tvm.mobilenet_v2(weights=None, num_classes=num_classes)
    return TorchvisionClassifier(m.features, 1280, m.classifier, attn_layer)
