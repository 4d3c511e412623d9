"""The steps from bytes to answer: decode -> stack -> predict -> unbatch -> encode.

``service.intake.decode`` and ``decode_frame`` turn a request's bytes into an H x W
uint8 gray image (a file, or a raw frame); ``Engine.prepare`` applies the one
preprocessing (``Preprocess.from_card``; on a GPU the GPU does it, ``service.device_feed``);
``Engine.predict`` stacks prepared images, runs ``forward_with_attention`` once and
unbatches the softmax scores and attention maps; ``top_k`` and ``service.heatmap``
encode one result. All of them run in the batcher's model threads, a batch at a time
(``service.pipeline.BatchProcessor``; on a GPU, decoding and encoding in its codec
threads); none of them touches the event loop.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from model_zoo.checkpoint import ModelCard, load_checkpoint
from model_zoo.device import resolve_device
from model_zoo.preprocess import ImageTooLargeError, Preprocess
from service.backends import build_runner, check_backend
from service.device_feed import DeviceFeed, WorkerStreams
from service.errors import BadImage

if TYPE_CHECKING:
    from service.settings import Settings

__all__ = ["DeviceFailed", "Engine", "Prediction", "decode_frame", "plan_workers", "top_k"]

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

    On a GPU two workers, each on its own CUDA stream, so that one batch is decoded and its
    heatmaps encoded while the other's runs on the GPU (torch's threads unless told). On the
    CPU the cores are shared out: by default one single-threaded worker per core, because on a
    small CPU independent single-threaded calls side by side outrun one multi-threaded call.
    """
    if device.type != "cpu":
        return workers or 2, threads or torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = workers or max(1, cores // (threads or 1))
    return workers, threads or max(1, cores // workers)


class DeviceFailed(RuntimeError):
    """The device failed in a way that outlives the call (a sticky CUDA error): only a restart recovers."""


def _is_cuda_error(exc: BaseException) -> bool:
    """A CUDA runtime error (torch raises them as ``RuntimeError``, or ``AcceleratorError`` where it has one)."""
    accelerator = getattr(torch, "AcceleratorError", None)
    return (accelerator is not None and isinstance(exc, accelerator)) or "CUDA error" in str(exc)


class Engine:
    """The loaded model with its card, preprocessing, device and backend; ``workers`` may call ``predict`` at once.

    ``runner`` is the backend's forward pass (``service.backends``): everything else, preprocessing,
    softmax, the attention map and batching, is the same whichever runtime computes the forward.
    """

    def __init__(
        self,
        model: nn.Module,
        card: ModelCard,
        device: torch.device,
        workers: int = 1,
        graph: bool = False,
        backend: str = "torch",
        threads: int = 1,
        cache_dir: Path | None = None,
    ) -> None:
        self.workers = workers
        self.threads = threads
        self.device = device
        self.model = model
        self.card = card
        self.preprocess = Preprocess.from_card(card)
        # Cards written before these fields existed: plain softmax, and a heatmap named for what it is.
        self.temperature = float(getattr(card, "temperature", 1.0))
        self.heatmap_method = str(getattr(card, "heatmap_method", "model_attention"))
        self._graph, self._cache_dir = graph, cache_dir
        self.runner = build_runner(backend, model, card, device, threads, workers, graph, cache_dir)
        self.backend = self.runner.name
        self.dtype = self.runner.dtype
        self.feed = DeviceFeed.for_backend(self.preprocess, device, self.backend)
        self.streams = WorkerStreams(device)
        self.broken: str | None = None  # why the device can no longer run the model (a sticky CUDA error)

    @classmethod
    def load(
        cls,
        checkpoint: str | Path,
        device: str = "auto",
        threads: int | None = None,
        workers: int | None = None,
        graph: bool = True,
        backend: str = "torch",
        cache_dir: Path | None = None,
    ) -> Engine:
        """Load and verify a checkpoint onto ``device`` ("auto": CUDA in fp16 when present, else CPU).

        ``workers`` and ``threads`` default as ``plan_workers`` says; torch's thread count is set process-wide.
        ``graph``: on the CPU, run the torch backend as a frozen TorchScript graph (``service.backends``).
        ``backend`` "auto" loads torch here; ``Runtime`` measures the others at start-up and switches.
        """
        dev = resolve_device(device)
        check_backend(backend, dev)
        workers, threads = plan_workers(dev, workers, threads)
        torch.set_num_threads(threads)
        model, card = load_checkpoint(checkpoint, map_location=dev)
        first = "torch" if backend == "auto" else backend
        engine = cls(model, card, dev, workers, graph=graph, backend=first, threads=threads, cache_dir=cache_dir)
        log.info(
            "loaded %s v%s (%s, sha256 %s) on %s/%s with %s: %d model workers x %d threads",
            card.name, card.version, card.arch, card.weights_sha256[:12], dev, engine.dtype, engine.backend,
            workers, threads,
        )  # fmt: skip
        return engine

    @classmethod
    def from_settings(cls, settings: Settings) -> Engine:
        """``load`` with the service settings' checkpoint, device, threads, workers, graph and backend."""
        return cls.load(
            settings.checkpoint, settings.device, settings.threads, settings.model_workers, settings.graph,
            settings.backend, settings.onnx_cache,
        )  # fmt: skip

    def with_backend(self, backend: str) -> Engine:
        """The same model, card and workers on another backend (built, and checked against torch, now)."""
        return Engine(self.model, self.card, self.device, self.workers, self._graph, backend, self.threads,
                      self._cache_dir)  # fmt: skip

    @property
    def graph(self) -> torch.jit.ScriptModule | None:
        """The frozen TorchScript graph of the torch backend on the CPU, if it runs one."""
        return getattr(self.runner, "graph", None)

    @property
    def labels(self) -> list[str]:
        return self.card.labels

    def prepare(self, image: np.ndarray) -> torch.Tensor:
        """One H x W uint8 gray image -> what ``predict`` takes: the model's 1 x C x S x S input (the one
        preprocessing), or on a GPU its 1 x 1 x H x W uint8 image, which the GPU normalises (``DeviceFeed``)."""
        return self.feed.prepare(image)

    def predict(self, inputs: list[torch.Tensor]) -> list[Prediction]:
        """Stack prepared images, run the backend once, and split its outputs per image.

        A GPU out of memory runs the batch again in two halves (down to one image); any other CUDA
        error is sticky (the context is lost until the process restarts), so the engine turns
        ``broken`` and every later call fails at once with ``DeviceFailed``.
        """
        if self.broken is not None:
            raise DeviceFailed(self.broken)
        try:
            return self._predict(inputs)
        except torch.cuda.OutOfMemoryError:
            if len(inputs) == 1:
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            log.warning("out of GPU memory on a batch of %d; running it in two halves", len(inputs))
            half = len(inputs) // 2
            return self.predict(inputs[:half]) + self.predict(inputs[half:])
        except RuntimeError as exc:
            if _is_cuda_error(exc):
                self.broken = f"the GPU failed ({str(exc).splitlines()[0]}); the service must be restarted"
                log.error("%s: turning unready", self.broken)
            raise

    def _predict(self, inputs: list[torch.Tensor]) -> list[Prediction]:
        # On a GPU on this worker's own stream; the copies to the host at the end wait for it alone.
        with torch.inference_mode(), self.streams.active():
            logits, attention = self.runner(self.feed.batch(inputs))
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
