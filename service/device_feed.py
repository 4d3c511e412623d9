"""How a batch reaches the model's device: what ``Engine.prepare`` keeps, how ``Engine.predict`` sends it.

On the CPU the host does the whole preprocessing, as ``ilcs eval`` and training do. To a GPU (torch
backend) each image crosses the bus as its one uint8 gray channel, from page-locked memory without
waiting (``model_zoo.device.to_device``), and the GPU scales, resizes, normalises and expands it with
the one preprocessing's own function (``Preprocess.normalise``). Each model worker thread queues its
work on a CUDA stream of its own, so two workers' batches run on the GPU side by side instead of one
after the other on the default stream.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

import numpy as np
import torch

from model_zoo.device import to_device
from model_zoo.preprocess import Preprocess

__all__ = ["DeviceFeed", "WorkerStreams"]


class WorkerStreams:
    """One CUDA stream per thread that calls ``active()``, created on its first call; nothing on the CPU."""

    def __init__(self, device: torch.device, new_stream: Callable[[], object] | None = None) -> None:
        self.device = device
        self._new_stream = new_stream or (lambda: torch.cuda.Stream(device))
        self._local = threading.local()

    def current(self) -> object | None:
        """This thread's stream (None on the CPU)."""
        if self.device.type != "cuda":
            return None
        stream = getattr(self._local, "stream", None)
        if stream is None:
            stream = self._local.stream = self._new_stream()
        return stream

    @contextmanager
    def active(self) -> Iterator[None]:
        """Queue the GPU work of the block on this thread's stream."""
        stream = self.current()
        with nullcontext() if stream is None else torch.cuda.stream(stream):
            yield


class DeviceFeed:
    """Prepared images -> the model's batch on ``device``; ``on_device`` says the GPU does the normalising.

    Args:
        preprocess: The one preprocessing (from the checkpoint's card).
        device: Where the model runs.
        on_device: Normalise on ``device`` (the torch backend on a GPU); else on the host, as everywhere else.
    """

    def __init__(self, preprocess: Preprocess, device: torch.device, on_device: bool) -> None:
        self.preprocess, self.device, self.on_device = preprocess, device, on_device

    @classmethod
    def for_backend(cls, preprocess: Preprocess, device: torch.device, backend: str) -> DeviceFeed:
        """The torch backend on a GPU normalises there; ONNX Runtime and OpenVINO take the host's float input."""
        return cls(preprocess, device, on_device=device.type == "cuda" and backend == "torch")

    def prepare(self, image: np.ndarray) -> torch.Tensor:
        """One H x W uint8 image -> 1 x 1 x H x W uint8 (normalised on the device later), or the model's input."""
        return self.preprocess.gray_batch(image) if self.on_device else self.preprocess(image)

    def batch(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        """Stack ``prepare``'s outputs (and client-prepared float inputs) into one batch, in order, on the device.

        Images of one size go together in one copy; float inputs are already normalised and go as they are.
        """
        if not self.on_device:
            return torch.cat(inputs)
        groups: dict[tuple, list[int]] = {}
        for i, x in enumerate(inputs):
            groups.setdefault((x.dtype, *x.shape[1:]), []).append(i)
        parts: list[torch.Tensor | None] = [None] * len(inputs)
        for (dtype, *_), index in groups.items():
            sent = to_device(torch.cat([inputs[i] for i in index]), self.device)
            ready = self.preprocess.normalise(sent) if dtype == torch.uint8 else sent
            for row, i in enumerate(index):
                parts[i] = ready[row : row + 1]
        if len(groups) == 1:  # the usual case: one camera, one image size
            return ready
        return torch.cat(parts)  # type: ignore[arg-type]
