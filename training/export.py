"""``ilcs export``: a checkpoint to ONNX, with the model card beside it.

The graph takes the preprocessed batch (``image``: B x 3 x S x S, float, normalised as
the card says) and returns ``logits`` (B x classes) and ``attention`` (B x 1 x h x w),
the names of ``ClassifierOutput``'s fields. The export is checked against PyTorch with
ONNX Runtime before it is reported as written.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

from model_zoo.checkpoint import SHIPPED_CHECKPOINT, load_checkpoint
from model_zoo.models.base import LogitsAndAttention

__all__ = ["export_onnx"]


def export_onnx(checkpoint: str | Path | None, out: str | Path, opset: int = 18) -> dict:
    """Export, verify with ONNX Runtime, write ``<out>`` and ``<out stem>.json`` (the card). Returns a summary."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        msg = "ONNX export needs onnx, onnxscript and onnxruntime: pip install -e '.[export]'"
        raise ValueError(msg) from exc
    model, card = load_checkpoint(checkpoint or SHIPPED_CHECKPOINT)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    size = card.input_size
    example = torch.randn(2, card.in_chans, size, size)
    # The dynamo exporter: the legacy TorchScript one (dynamo=False) silently mistranslated
    # MIAM here (outputs off by O(1)), which the ONNX Runtime check below caught.
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
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    check = torch.randn(3, card.in_chans, size, size)
    logits, attention = session.run(None, {"image": check.numpy()})
    with torch.no_grad():
        ref = model.forward_with_attention(check)
    diff = max(float(np.abs(logits - ref.logits.numpy()).max()), float(np.abs(attention - ref.attention.numpy()).max()))
    if diff > 1e-3:
        msg = f"ONNX Runtime disagrees with PyTorch by {diff:.2e} on random inputs; the export is not usable"
        raise ValueError(msg)
    out.with_suffix(".json").write_text(json.dumps(card.model_dump(), indent=2) + "\n")
    return {
        "onnx": str(out),
        "card": str(out.with_suffix(".json")),
        "max_abs_diff": diff,
        "input": ["batch", card.in_chans, size, size],
    }


def export_cli(args) -> None:
    print(json.dumps(export_onnx(args.checkpoint, args.out)))
