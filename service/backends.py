"""The runtimes a model can run on (``ILCS_BACKEND``): torch, ONNX Runtime, OpenVINO.

A ``Runner`` takes the stacked, preprocessed batch (B x C x S x S float32 on the CPU,
exactly what ``Preprocess`` makes) and returns ``(logits, attention)`` as CPU or device
tensors, so ``Engine.predict`` is the same for every backend: same preprocessing, same
softmax and temperature, same heatmap map, same batching. The ONNX backends run the graph
of ``model_zoo.onnx_export`` (exported once per checkpoint into a cache keyed by the weights'
sha256) and are checked against torch when built: a runtime that disagrees is refused.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch
from torch import nn

from model_zoo.checkpoint import ModelCard
from model_zoo.onnx_export import cached_onnx, onnx_disagreement
from model_zoo.served import serve_model

__all__ = [
    "BACKENDS",
    "PARITY_ATOL",
    "BackendName",
    "BackendUnavailable",
    "Runner",
    "available_backends",
    "build_runner",
    "check_backend",
]

log = logging.getLogger("service")

BackendName = Literal["auto", "torch", "onnxruntime", "openvino"]
BACKENDS = ("torch", "onnxruntime", "openvino")
PARITY_ATOL = 1e-3  # largest difference of logits or attention from torch fp32 a backend may show when built
# What each backend needs beyond torch: its runtime, and the ONNX exporter (the graph is built at start-up).
_NEEDS = {"torch": (), "onnxruntime": ("onnxruntime", "onnxscript"), "openvino": ("openvino", "onnxscript")}
_EXTRA = {"onnxruntime": "onnx", "openvino": "openvino"}


class BackendUnavailable(ValueError):
    """A backend was asked for that this installation or device cannot run."""


class Runner(Protocol):
    """One backend's forward pass: a prepared fp32 CPU batch -> (logits, attention)."""

    name: str
    dtype: torch.dtype  # what the model computes in

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def available_backends(device: torch.device) -> list[str]:
    """The backends this installation can run on ``device``, torch first."""
    names = [b for b in BACKENDS if all(_installed(m) for m in _NEEDS[b])]
    return [b for b in names if device.type == "cpu" or b != "openvino"]


def check_backend(name: str, device: torch.device | None = None) -> None:
    """Raise ``BackendUnavailable`` saying what to install when ``name`` cannot run here; "auto" always can."""
    if name == "auto":
        return
    if name not in BACKENDS:
        msg = f"ILCS_BACKEND={name!r} is not a backend; choose auto, {', '.join(BACKENDS)}"
        raise BackendUnavailable(msg)
    missing = [m for m in _NEEDS[name] if not _installed(m)]
    if missing:
        msg = (
            f"ILCS_BACKEND={name} needs the {', '.join(missing)} package(s), which this installation lacks: "
            f"pip install 'ilcs-inspector[{_EXTRA[name]}]', or set ILCS_BACKEND=auto (picks among those installed)"
        )
        raise BackendUnavailable(msg)
    if device is not None and device.type != "cpu" and name == "openvino":
        msg = f"ILCS_BACKEND=openvino runs on the CPU only, not on {device}; use torch or onnxruntime there"
        raise BackendUnavailable(msg)


class TorchRunner:
    """The model in torch, as ``model_zoo.served.serve_model`` builds it for the device (``ilcs eval`` runs the same).

    On the CPU and on CUDA a frozen TorchScript graph when ``freeze_with`` is given (and the model traces),
    else eager; on CUDA in fp16 autocast with BatchNorm kept fp32, channels-last, cuDNN's fastest kernels.
    """

    name = "torch"

    def __init__(
        self,
        model: nn.Module,
        device: torch.device,
        freeze_with: torch.Tensor | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        shape = None if freeze_with is None else tuple(freeze_with.shape[1:])
        self.served = serve_model(model, device, freeze_shape=shape, dtype=dtype)
        self.device, self.dtype, self.model, self.graph = (
            device,
            self.served.dtype,
            self.served.model,
            self.served.graph,
        )

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.served(x)


class OnnxRuntimeRunner:
    """The exported graph in ONNX Runtime: the CPU provider, or CUDA's where installed and asked for."""

    name = "onnxruntime"
    dtype = torch.float32

    def __init__(self, path: Path, device: torch.device, threads: int) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), ort_options(threads), providers=ort_providers(device))

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, attention = self.session.run(None, {"image": np.ascontiguousarray(x.numpy(), dtype=np.float32)})
        return torch.from_numpy(logits), torch.from_numpy(attention)


def ort_options(threads: int):
    """Session options: ``threads`` intra-op threads that sleep when idle (the cores are shared), one inter-op."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def ort_providers(device: torch.device) -> list:
    """The CPU provider; on CUDA, the CUDA provider first (its device index, cuDNN's exhaustive search)."""
    if device.type != "cuda":
        return ["CPUExecutionProvider"]
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        msg = (
            f"ILCS_BACKEND=onnxruntime on {device} needs ONNX Runtime's CUDA provider (the onnxruntime-gpu "
            "package); this one has only " + ", ".join(ort.get_available_providers())
        )
        raise BackendUnavailable(msg)
    cuda = {"device_id": device.index or 0, "cudnn_conv_algo_search": "EXHAUSTIVE", "do_copy_in_default_stream": True}
    return [("CUDAExecutionProvider", cuda), "CPUExecutionProvider"]


class OpenVinoRunner:
    """The exported graph compiled by OpenVINO for the CPU: one stream per model worker, fp32 precision.

    Each calling thread gets its own infer request, so the model workers run side by side.
    """

    name = "openvino"
    dtype = torch.float32

    def __init__(self, path: Path, threads: int, workers: int) -> None:
        import openvino as ov

        self.compiled = ov.Core().compile_model(str(path), "CPU", openvino_config(threads, workers))
        self._local = threading.local()

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        out = request.infer({0: np.ascontiguousarray(x.numpy(), dtype=np.float32)})
        # The arrays are the request's own buffers, overwritten by its next call: copy them out.
        return torch.from_numpy(np.array(out[0])), torch.from_numpy(np.array(out[1]))


def openvino_config(threads: int, workers: int) -> dict:
    """fp32 (OpenVINO would pick bf16 on CPUs that have it), ``workers`` streams of ``threads`` threads each."""
    return {
        "INFERENCE_PRECISION_HINT": "f32",
        "NUM_STREAMS": str(workers),
        "INFERENCE_NUM_THREADS": str(threads * workers),
    }


def build_runner(
    name: str,
    model: nn.Module,
    card: ModelCard,
    device: torch.device,
    threads: int = 1,
    workers: int = 1,
    graph: bool = False,
    cache_dir: Path | None = None,
) -> Runner:
    """The runner of backend ``name`` for ``model``; an ONNX backend is checked against torch before it is used."""
    check_backend(name, device)
    if name == "torch":
        example = torch.zeros(2, card.in_chans, card.input_size, card.input_size)
        return TorchRunner(model, device, example.contiguous(memory_format=torch.channels_last) if graph else None)
    path = cached_onnx(model, card, cache_dir)
    runner = (
        OnnxRuntimeRunner(path, device, threads) if name == "onnxruntime" else OpenVinoRunner(path, threads, workers)
    )
    diff = onnx_disagreement(model, card, lambda x: tuple(t.float().cpu().numpy() for t in runner(torch.from_numpy(x))))
    if diff > PARITY_ATOL:
        msg = f"{name} disagrees with torch by {diff:.2e} (more than {PARITY_ATOL}) on random inputs; not serving it"
        raise BackendUnavailable(msg)
    log.info("backend %s: %s, agrees with torch within %.1e", name, path, diff)
    return runner
