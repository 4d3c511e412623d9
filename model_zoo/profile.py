"""Size and work of a model: parameters, and FLOPs as ``torch.utils.flop_counter`` counts them.

``FlopCounterMode`` counts the floating-point operations of convolutions and matrix
products, two per multiply-add, and ignores element-wise work (BN, activations, the
attention gates); multiply-adds (MACs, what thop and ptflops report) are half of it.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_flops", "count_params"]


def count_params(model: torch.nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(model: torch.nn.Module, input_size: int, batch: int = 1) -> int:
    """FLOPs (two per multiply-add) of one forward pass on a ``batch x 3 x S x S`` input, in eval mode."""
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.zeros(batch, 3, input_size, input_size))
    return counter.get_total_flops()
