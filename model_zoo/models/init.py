"""One initialisation policy for every model of the zoo, keyed by parameter name.

Each module's weights are drawn from a generator seeded by the model's seed and the
module's qualified name, so a backbone's initial weights do not depend on which
attention modules exist: under one seed, ILCS with and without MIAM (and every
baseline with and without it) start from bit-identical backbones, and a MIAM
comparison is a paired one.

* convolutions of the backbone: He normal, fan-out per group (as timm/EfficientNet;
  PyTorch's ``kaiming_normal_`` ignores groups and starts depthwise layers ~sqrt(C) too small);
* convolutions inside attention gates (channel-attention MLP, spatial-attention conv):
  PyTorch's default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)); He init saturates the sigmoid
  gates at the start, open or closed by the sign of a few weights (``model_zoo/DESIGN.md``);
* linear layers: PyTorch's default, weights and biases; batch norm: unit scale, zero shift.
"""

from __future__ import annotations

import math
import zlib

import torch
from torch import nn

from model_zoo.layers import ChannelAttention, SpatialAttention

__all__ = ["init_weights"]

_GATES = (ChannelAttention, SpatialAttention)


def _generator(seed: int, name: str) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(name.encode())) % (2**63))


def _uniform_fan_in(tensor: torch.Tensor, fan_in: int, gen: torch.Generator) -> None:
    bound = 1.0 / math.sqrt(max(fan_in, 1))
    nn.init.uniform_(tensor, -bound, bound, generator=gen)


def _gate_modules(model: nn.Module) -> set[int]:
    return {id(m) for gate in model.modules() if isinstance(gate, _GATES) for m in gate.modules()}


@torch.no_grad()
def init_weights(model: nn.Module, seed: int | None = None) -> nn.Module:
    """Initialise every conv, linear and batch-norm layer of ``model`` in place (policy above).

    Args:
        model: The model to initialise.
        seed: Base seed; ``None`` uses ``torch.initial_seed()`` (the last ``torch.manual_seed``).
    """
    seed = torch.initial_seed() if seed is None else seed
    gates = _gate_modules(model)
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            gen = _generator(seed, name)
            fan_in = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
            if id(m) in gates:
                _uniform_fan_in(m.weight, fan_in, gen)
                if m.bias is not None:
                    _uniform_fan_in(m.bias, fan_in, gen)
            else:
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out), generator=gen)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            gen = _generator(seed, name)
            _uniform_fan_in(m.weight, m.in_features, gen)
            if m.bias is not None:
                _uniform_fan_in(m.bias, m.in_features, gen)
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model
