"""``ilcs export``: a checkpoint to ONNX, with the model card beside it.

The export itself is ``model_zoo.onnx_export.export_onnx``, the one the service's ONNX Runtime
and OpenVINO backends use; here the graph is also checked against PyTorch with ONNX Runtime
before it is reported as written.
"""

from __future__ import annotations

import json
from pathlib import Path

from model_zoo.checkpoint import SHIPPED_CHECKPOINT, load_checkpoint
from model_zoo.onnx_export import OPSET, export_onnx, onnx_disagreement

__all__ = ["export_checkpoint"]


def export_checkpoint(checkpoint: str | Path | None, out: str | Path, opset: int = OPSET) -> dict:
    """Export, verify with ONNX Runtime, write ``<out>`` and ``<out stem>.json`` (the card). Returns a summary."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        msg = "ONNX export needs onnx, onnxscript and onnxruntime: pip install -e '.[onnx]'"
        raise ValueError(msg) from exc
    model, card = load_checkpoint(checkpoint or SHIPPED_CHECKPOINT)
    out = export_onnx(model, card, out, opset)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    diff = onnx_disagreement(model, card, lambda x: session.run(None, {"image": x}))
    if diff > 1e-3:
        msg = f"ONNX Runtime disagrees with PyTorch by {diff:.2e} on random inputs; the export is not usable"
        raise ValueError(msg)
    out.with_suffix(".json").write_text(json.dumps(card.model_dump(), indent=2) + "\n")
    size = card.input_size
    return {"onnx": str(out), "card": str(out.with_suffix(".json")), "max_abs_diff": diff,
            "input": ["batch", card.in_chans, size, size]}  # fmt: skip


def export_cli(args) -> None:
    print(json.dumps(export_checkpoint(args.checkpoint, args.out)))
