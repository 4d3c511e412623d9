"""`ilcs export` writes an ONNX graph that ONNX Runtime runs like PyTorch."""

import json

import numpy as np
import pytest
import torch

from ilcs_cli import main
from model_zoo import create_model
from model_zoo.checkpoint import ModelCard, load_checkpoint, save_checkpoint

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in the dev and export extras")


def test_export_matches_pytorch_with_named_outputs(tmp_path, capsys):
    save_checkpoint(
        create_model("ilcs", input_size=32),
        tmp_path / "ck",
        ModelCard(arch="ilcs", labels=list("abcdef"), input_size=32, hyperparameters={"input_size": 32}),
    )
    assert main(["export", "--checkpoint", str(tmp_path / "ck"), "--out", str(tmp_path / "m.onnx")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["max_abs_diff"] < 1e-3
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["logits", "attention"]
    x = torch.randn(5, 3, 32, 32)
    logits, attention = session.run(None, {"image": x.numpy()})
    model, _ = load_checkpoint(tmp_path / "ck")
    with torch.no_grad():
        np.testing.assert_allclose(logits, model(x).numpy(), atol=1e-4)
    assert attention.shape == (5, 1, 4, 4)
    assert json.loads((tmp_path / "m.json").read_text())["labels"] == list("abcdef")
