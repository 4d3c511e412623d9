"""Device handling, in one place: "auto" is CUDA when present, else the CPU; a GPU asked for must exist."""

from __future__ import annotations

import torch

__all__ = ["inference_dtype", "needed_driver", "resolve_device", "to_device"]

# The oldest Linux driver that runs each CUDA major release (NVIDIA's minor-version compatibility table):
# torch's wheels carry their own CUDA runtime, so the host needs only a driver this recent.
_MIN_DRIVER = {11: "450.80.02", 12: "525.60.13", 13: "580"}


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
            else f"it needs an NVIDIA driver {needed_driver(torch.version.cuda)}: check that one is installed "
            "(nvidia-smi shows its version) and, in a container, that the GPU is passed in"
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


def needed_driver(cuda: str) -> str:
    """The Linux NVIDIA driver a CUDA version needs, in words: "580 or newer (CUDA 13.x)"."""
    major = int(cuda.split(".")[0])
    if major not in _MIN_DRIVER:
        return f"that supports CUDA {cuda}"
    return f"{_MIN_DRIVER[major]} or newer (CUDA {major}.x)"


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` copied to ``device``; to a GPU from page-locked memory without waiting, so the copy overlaps.

    ``non_blocking`` from pageable memory would wait anyway: the host tensor is pinned first. Work queued
    later on the same stream sees the copied data, so no synchronisation is needed before using it.
    """
    if device.type != "cuda":
        return tensor.to(device)
    if not tensor.is_pinned():
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


def inference_dtype(device: torch.device) -> torch.dtype:
    """What a model computes in on ``device``: fp16 (autocast) on a GPU, fp32 on the CPU (slow, inexact fp16 there)."""
    return torch.float16 if device.type == "cuda" else torch.float32
