"""The steps from bytes to answer: decode -> stack -> predict -> unbatch -> encode.

``service.intake.decode`` and ``decode_frame`` turn a request's bytes into an H x W
uint8 gray image (a file, or a raw frame); ``Engine.prepare`` applies the one
preprocessing (``Preprocess.from_card``); ``Engine.predict`` stacks prepared
images, runs ``forward_with_attention`` once and unbatches the softmax scores
and attention maps; ``top_k`` and ``service.heatmap`` encode one result.
All of them run in the batcher's model threads, a batch at a time
(``service.pipeline.BatchProcessor``); none of them touches the event loop.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from model_zoo.checkpoint import ModelCard, load_checkpoint
from model_zoo.device import inference_dtype, resolve_device
from model_zoo.models.base import LogitsAndAttention
from model_zoo.preprocess import ImageTooLargeError, Preprocess
from service.errors import BadImage

if TYPE_CHECKING:
    from service.settings import Settings

__all__ = ["Engine", "Prediction", "decode_frame", "plan_workers", "top_k"]

log = logging.getLogger("service")


def decode_frame(data: bytes, width: int, height: int, max_pixels: int) -> np.ndarray:
    """A raw 8-bit gray frame, row-major, exactly ``width * height`` bytes -> H x W uint8."""
    if width * height > max_pixels:
        msg = f"frame is {width}x{height} = {width * height} pixels, more than the limit of {max_pixels}"
        raise ImageTooLargeError(msg)
    if len(data) != width * height:
        msg = (
            f"raw frame has {len(data)} bytes but width x height = {width} x {height} = {width * height}; "
            "send exactly one byte per pixel (8-bit gray, row by row) or fix the width and height parameters"
        )
        raise BadImage(msg)
    return np.frombuffer(data, dtype=np.uint8).reshape(height, width).copy()


@dataclass(frozen=True, slots=True)
class Prediction:
    """One image's share of a batched forward pass."""

    scores: np.ndarray  # C softmax probabilities, float32
    attention: np.ndarray  # h x w attention map in [0, 1], float32


def top_k(scores: np.ndarray, labels: list[str], k: int = 5) -> list[tuple[int, str, float]]:
    """The ``k`` best ``(index, label, score)``, best first (ties: lower index first)."""
    order = np.argsort(-scores, kind="stable")[:k]
    return [(int(i), labels[i], float(scores[i])) for i in order]


def plan_workers(device: torch.device, workers: int | None, threads: int | None) -> tuple[int, int]:
    """How many model workers, with how many torch threads each.

    On a GPU one worker (torch's threads unless told). On the CPU the cores are
    shared out: by default one single-threaded worker per core, because on a small
    CPU independent single-threaded calls side by side outrun one multi-threaded call.
    """
    if device.type != "cpu":
        return workers or 1, threads or torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = workers or max(1, cores // (threads or 1))
    return workers, threads or max(1, cores // workers)


class Engine:
    """The loaded model with its card, preprocessing, device and dtype; ``workers`` may call ``predict`` at once."""

    def __init__(
        self, model: nn.Module, card: ModelCard, device: torch.device, workers: int = 1, graph: bool = False
    ) -> None:
        self.workers = workers
        self.device = device
        self.dtype = inference_dtype(device)
        self.model = model.to(device=device, dtype=self.dtype).eval()
        self.card = card
        self.preprocess = Preprocess.from_card(card)
        # Cards written before these fields existed: plain softmax, and a heatmap named for what it is.
        self.temperature = float(getattr(card, "temperature", 1.0))
        self.heatmap_method = str(getattr(card, "heatmap_method", "model_attention"))
        self.graph = _freeze(self.model, self.example_input(2)) if graph and device.type == "cpu" else None

    @classmethod
    def load(
        cls,
        checkpoint: str | Path,
        device: str = "auto",
        threads: int | None = None,
        workers: int | None = None,
        graph: bool = True,
    ) -> Engine:
        """Load and verify a checkpoint onto ``device`` ("auto": CUDA in fp16 when present, else CPU).

        ``workers`` and ``threads`` default as ``plan_workers`` says; torch's thread count is set process-wide.
        ``graph``: on the CPU, run the model as a frozen TorchScript graph (see ``_freeze``).
        """
        dev = resolve_device(device)
        workers, threads = plan_workers(dev, workers, threads)
        torch.set_num_threads(threads)
        model, card = load_checkpoint(checkpoint, map_location=dev)
        engine = cls(model, card, dev, workers, graph=graph)
        log.info(
            "loaded %s v%s (%s, sha256 %s) on %s/%s: %d model workers x %d torch threads",
            card.name, card.version, card.arch, card.weights_sha256[:12], dev, engine.dtype, workers, threads,
        )  # fmt: skip
        return engine

    @classmethod
    def from_settings(cls, settings: Settings) -> Engine:
        """``load`` with the service settings' checkpoint, device, threads, workers and graph choice."""
        return cls.load(settings.checkpoint, settings.device, settings.threads, settings.model_workers, settings.graph)

    @property
    def labels(self) -> list[str]:
        return self.card.labels

    def prepare(self, image: np.ndarray) -> torch.Tensor:
        """One H x W uint8 gray image -> the model's 1 x C x S x S input (the one preprocessing)."""
        return self.preprocess(image)

    def predict(self, inputs: list[torch.Tensor]) -> list[Prediction]:
        """Stack prepared images, run the model once, and split its outputs per image."""
        with torch.inference_mode():
            x = torch.cat(inputs).to(self.device, self.dtype, non_blocking=True)
            if self.graph is not None:
                logits, attention = self.graph(x)
            else:
                out = self.model.forward_with_attention(x)
                logits, attention = out.logits, out.attention
            scores = torch.softmax(logits.float() / self.temperature, dim=1).cpu().numpy()
            maps = attention.float()[:, 0].cpu().numpy()
        return [Prediction(s, a) for s, a in zip(scores, maps, strict=True)]

    def example_input(self, batch_size: int) -> list[torch.Tensor]:
        """``batch_size`` prepared mid-gray images (warm-up and calibration input)."""
        gray = np.full((self.card.input_size, self.card.input_size), 128, dtype=np.uint8)
        return [self.prepare(gray)] * batch_size

    def warmup(self, max_batch_size: int) -> float:
        """Run every batch size from 1 to ``max_batch_size`` once; return the seconds it took."""
        start = time.perf_counter()
        for size in range(1, max_batch_size + 1):
            self.predict(self.example_input(size))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - start


def _freeze(model: nn.Module, example: list[torch.Tensor]) -> torch.jit.ScriptModule | None:
    """The model as a frozen TorchScript graph returning (logits, attention); None if it cannot be traced.

    The graph runs in C++ from end to end, so the model threads do not take turns on the GIL with the
    request threads between the model's small layers, as an eager forward pass does.
    """
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit's deprecation notice; tracing notes on shape checks
            return torch.jit.freeze(torch.jit.trace(LogitsAndAttention(model).eval(), torch.cat(example)))
    except Exception as exc:  # noqa: BLE001 - the eager model still works: say so and carry on
        log.warning("could not freeze the model into a graph (%s); running it eagerly", exc)
        return None
