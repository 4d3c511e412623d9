"""A checkpoint's model as an ONNX graph: the one export, used by ``ilcs export`` and the service's runtimes.

The graph takes the preprocessed batch (``image``: B x C x S x S, float32, normalised as the
card says) and returns ``logits`` (B x classes) and ``attention`` (B x 1 x h x w), the names
of ``ClassifierOutput``'s fields. ``cached_onnx`` keys the file by the weights' sha256, so a
service exports once per checkpoint and a changed checkpoint is never served from a stale graph.
"""

from __future__ import annotations

import contextlib
import copy
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from model_zoo.checkpoint import ModelCard
from model_zoo.models.base import LogitsAndAttention

__all__ = ["OPSET", "cached_onnx", "default_cache_dir", "export_onnx", "onnx_disagreement"]

OPSET = 18


def export_onnx(model: nn.Module, card: ModelCard, out: str | Path, opset: int = OPSET) -> Path:
    """Write ``model`` (fp32, on the CPU) to ``out`` as ONNX with a dynamic batch dimension; return the path.

    Raises:
        ValueError: The ONNX exporter's packages (onnx, onnxscript) are not installed.
    """
    try:
        import onnxscript  # noqa: F401 - the dynamo exporter needs it; say so before torch fails obscurely
    except ImportError as exc:
        msg = "exporting to ONNX needs onnx and onnxscript: pip install -e '.[onnx]'"
        raise ValueError(msg) from exc
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = _cpu_fp32(model)
    example = torch.randn(2, card.in_chans, card.input_size, card.input_size)
    # The dynamo exporter: the legacy TorchScript one (dynamo=False) silently mistranslated
    # MIAM here (outputs off by O(1)), which the check of `ilcs export` caught.
    batch = torch.export.Dim("batch", min=1, max=4096)
    with contextlib.redirect_stdout(sys.stderr):  # the exporter's progress lines are not our output
        torch.onnx.export(
            LogitsAndAttention(model).eval(),
            (example,),
            str(out),
            dynamo=True,
            opset_version=opset,
            input_names=["image"],
            output_names=["logits", "attention"],
            dynamic_shapes={"x": {0: batch}},
        )
    return out


def onnx_disagreement(
    model: nn.Module, card: ModelCard, run: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], batch: int = 3
) -> float:
    """Largest absolute difference of logits and attention between ``model`` and ``run`` on random inputs."""
    x = torch.randn(batch, card.in_chans, card.input_size, card.input_size, generator=torch.Generator().manual_seed(0))
    logits, attention = run(x.numpy())
    with torch.no_grad():
        ref = _cpu_fp32(model).forward_with_attention(x)
    return max(
        float(np.abs(np.asarray(logits) - ref.logits.numpy()).max()),
        float(np.abs(np.asarray(attention) - ref.attention.numpy()).max()),
    )


def _cpu_fp32(model: nn.Module) -> nn.Module:
    """``model`` in fp32 on the CPU, copied if it is elsewhere (the served model stays where it is)."""
    p = next(model.parameters())
    return model.eval() if p.device.type == "cpu" and p.dtype == torch.float32 else copy.deepcopy(model).float().cpu()


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/ilcs`` (``~/.cache/ilcs``): where exported graphs are kept between starts."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ilcs"


def cached_onnx(model: nn.Module, card: ModelCard, cache_dir: str | Path | None = None, opset: int = OPSET) -> Path:
    """The ONNX graph of a checkpoint's model, exported once into ``cache_dir`` under its weights' sha256.

    The file is written under a temporary name and renamed, so processes starting together never read
    a half-written graph.
    """
    if not card.weights_sha256:
        msg = "the model card has no weights_sha256 to key the ONNX cache with; load the model with load_checkpoint"
        raise ValueError(msg)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / f"{card.arch}-{card.weights_sha256[:16]}-opset{opset}.onnx"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".export-") as tmp:
        # The exporter may write external data beside the graph; ILCS's weights are small enough to embed.
        written = export_onnx(model, card, Path(tmp) / path.name, opset)
        _embed_external_data(written)
        os.replace(written, path)
    return path


def _embed_external_data(path: Path) -> None:
    """Rewrite ``path`` with every tensor inside it, if the exporter put some in a side file."""
    if not any(p != path for p in path.parent.iterdir()):
        return
    import onnx

    onnx.save_model(onnx.load(str(path)), str(path), save_as_external_data=False)


if __name__ == "__main__":  # python -m model_zoo.onnx_export CHECKPOINT CACHE_DIR: fill a service's ONNX cache
    from model_zoo.checkpoint import load_checkpoint

    print(cached_onnx(*load_checkpoint(sys.argv[1]), sys.argv[2]))
