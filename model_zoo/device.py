"""Device handling, in one place: "auto" is CUDA when present, else the CPU; a GPU asked for must exist."""

from __future__ import annotations

import torch

__all__ = ["inference_dtype", "resolve_device"]


def resolve_device(name: str = "auto") -> torch.device:
    """Turn "auto", "cpu", "cuda" or "cuda:N" into a device, refusing a GPU this machine does not have."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        msg = f"device {name!r} was asked for but this machine has no CUDA GPU that {_build()} can use; " + (
            "install the CUDA build of torch"
            if torch.version.cuda is None
            else "check that the NVIDIA driver is installed and recent enough for that CUDA version (nvidia-smi) "
            "and, in a container, that the GPU is passed in"
        )
        raise ValueError(msg + "; or use 'auto' or 'cpu'")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        msg = f"device {name!r} was asked for but this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}"
        raise ValueError(msg)
    return device


def _build() -> str:
    """This torch and the CUDA it was built for, e.g. "torch 2.14.1+cu130 (CUDA 13.0)"."""
    cuda = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
    return f"torch {torch.__version__} ({cuda})"


def inference_dtype(device: torch.device) -> torch.dtype:
    """What a model computes in on ``device``: fp16 (autocast) on a GPU, fp32 on the CPU (slow, inexact fp16 there)."""
    return torch.float16 if device.type == "cuda" else torch.float32
