"""The model as served on a device, built by one function: the service's torch backend and ``ilcs eval`` both call it.

On a GPU the model computes in fp16 under autocast (BatchNorm statistics and the softmax stay fp32),
in channels-last memory like its inputs, with cuDNN picking its fastest kernels for the fixed input
shape. On every device it is traced and frozen into a TorchScript graph when asked: the forward then
runs in C++ from end to end instead of launching each of the model's small operations from Python,
the BatchNorms are folded into the convolutions, and on a GPU the convolution weights are baked into
the graph once, already in fp16, instead of being cast on every call.
"""

from __future__ import annotations

import logging
import warnings

import torch
from torch import nn

from model_zoo.device import inference_dtype
from model_zoo.models.base import LogitsAndAttention

__all__ = ["ServedModel", "serve_model"]

log = logging.getLogger(__name__)


class ServedModel:
    """A prepared batch on any device -> ``(logits, attention)`` on the model's device, as served.

    Attributes:
        model: The eager model, on ``device`` in fp32 (ONNX export and reference comparisons read it).
        device: Where it runs.
        dtype: What it computes in (fp16 under autocast on a GPU).
        graph: The frozen TorchScript graph, or None when it runs eagerly.
    """

    def __init__(
        self, model: nn.Module, device: torch.device, dtype: torch.dtype, graph: torch.jit.ScriptModule | None
    ) -> None:
        self.model, self.device, self.dtype, self.graph = model, device, dtype, graph
        self.autocast = dtype != torch.float32

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        if self.graph is not None:  # the casts were recorded into the graph when it was traced
            return self.graph(x)
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.autocast):
            out = self.model.forward_with_attention(x)
        return out.logits, out.attention


def serve_model(
    model: nn.Module,
    device: torch.device,
    *,
    freeze_shape: tuple[int, int, int] | None = None,
    dtype: torch.dtype | None = None,
) -> ServedModel:
    """``model`` as the service serves it on ``device``.

    Args:
        model: The loaded model (``load_checkpoint(..., map_location=device)`` puts its weights there once).
        device: The device it runs on.
        freeze_shape: ``(channels, height, width)`` of one input: trace and freeze the model for it;
            None runs it eagerly.
        dtype: What it computes in; default ``inference_dtype(device)`` (fp16 on a GPU, fp32 on the CPU).
    """
    dtype = dtype or inference_dtype(device)
    model = model.to(device=device, dtype=torch.float32).eval().requires_grad_(False)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # the input shape is fixed: time the kernels once, keep the fastest
        model = model.to(memory_format=torch.channels_last)
    graph = None
    if freeze_shape is not None:
        example = torch.zeros(2, *freeze_shape, device=device).contiguous(memory_format=torch.channels_last)
        graph = _freeze(model, example, dtype)
    return ServedModel(model, device, dtype, graph)


def _freeze(model: nn.Module, example: torch.Tensor, dtype: torch.dtype) -> torch.jit.ScriptModule | None:
    """The model as a frozen TorchScript graph returning (logits, attention); None if it cannot be traced.

    Traced under the same autocast as the eager model (without autocast's weight cache, whose cast
    weights the tracer could not tell from the parameters), so the graph computes what the eager
    model does; freezing then turns the cast weights into fp16 constants.
    """
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit's deprecation notice; tracing notes on shape checks
            enabled = dtype != torch.float32
            with torch.autocast(example.device.type, dtype=dtype, enabled=enabled, cache_enabled=False):
                traced = torch.jit.trace(LogitsAndAttention(model).eval(), example)
            return torch.jit.freeze(traced)
    except Exception as exc:  # noqa: BLE001 - the eager model still works: say so and carry on
        log.warning("could not freeze the model into a graph (%s); running it eagerly", exc)
        return None
