"""Mixed precision for training: fp16 autocast with a gradient scaler on a GPU, plain fp32 everywhere else.

On the CPU the scaler is disabled, and a disabled scaler passes the loss and the optimiser step
through untouched, so the CPU's training arithmetic is exactly what it was without AMP.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch

__all__ = ["MixedPrecision", "mixed_precision"]


@dataclass
class MixedPrecision:
    """How a training step computes: the forward under ``autocast()``, the update through ``backward_step``."""

    device_type: str
    enabled: bool
    scaler: torch.amp.GradScaler
    dtype: torch.dtype = torch.float16

    def autocast(self) -> AbstractContextManager:
        """The forward pass's autocast (BatchNorm and the losses stay fp32)."""
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled)

    def backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Backward on the scaled loss, the step on unscaled gradients (skipped on inf/NaN), the scale updated."""
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()


def mixed_precision(device: torch.device) -> MixedPrecision:
    """fp16 AMP on a CUDA ``device``; off (fp32, the scaler a pass-through) on any other."""
    on = device.type == "cuda"
    return MixedPrecision(device.type, on, torch.amp.GradScaler("cuda" if on else "cpu", enabled=on))
