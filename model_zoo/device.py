"""Device handling, in one place: "auto" is CUDA when present (fp16 there), else the CPU."""

from __future__ import annotations

import torch

__all__ = ["inference_dtype", "resolve_device"]


def resolve_device(name: str = "auto") -> torch.device:
    """Turn "auto", "cpu", "cuda" or "cuda:N" into a device, refusing CUDA where there is none."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        msg = f"device {name!r} was asked for but this machine has no CUDA GPU; use 'auto' or 'cpu'"
        raise ValueError(msg)
    return device


def inference_dtype(device: torch.device) -> torch.dtype:
    """fp16 on a GPU, fp32 on the CPU (CPU fp16 kernels are slow and inexact)."""
    return torch.float16 if device.type == "cuda" else torch.float32
