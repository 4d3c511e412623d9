"""The checkpoint format: weights in safetensors beside a JSON model card.

``<stem>.safetensors`` holds the state dict; ``<stem>.json`` the card: architecture
and hyperparameters, labels in index order, input size, normalisation, metrics,
training config, and the sha256 of the weights file. Loading verifies the hash
and rebuilds the architecture from the card (the card wins over loose arguments),
strictly. Nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, Field, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from model_zoo.preprocess import NEU_MEAN, NEU_STD
from model_zoo.registry import create_model, list_models

__all__ = [
    "SHIPPED_CHECKPOINT",
    "CheckpointError",
    "ModelCard",
    "load_checkpoint",
    "read_card",
    "save_checkpoint",
    "sha256_file",
]

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, tampered with or does not match its card."""


class ModelCard(BaseModel):
    format_version: int = FORMAT_VERSION
    name: str = "ilcs"
    version: str = "0"
    arch: str
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    labels: list[str]
    input_size: int
    in_chans: int = 3
    mean: float = NEU_MEAN
    std: float = NEU_STD
    temperature: float = 1.0  # calibrated probabilities are softmax(logits / temperature)
    heatmap_method: str = ""  # what the served heatmap is ("miam_spatial", "activation_energy", ...)
    heatmap_blur: float = 0.0  # Gaussian sigma, in map cells, smoothing the map before it is shown
    heatmap_gamma: float = 1.0  # power the [0, 1] map is raised to before it is shown
    metrics: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    weights_sha256: str = ""
    created: str = ""

    @property
    def heatmap_style(self) -> dict[str, float]:
        """How the map is shown, as ``upsample_attention``'s ``blur`` and ``gamma`` keywords."""
        return {"blur": self.heatmap_blur, "gamma": self.heatmap_gamma}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _paths(path: str | Path) -> tuple[Path, Path]:
    """Accept the stem, the .json or the .safetensors path; return both files."""
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".json", ".safetensors") else p
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def _clean_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    # Strip wrappers' prefixes (torch.compile, DDP) and make tensors contiguous for safetensors.
    out = {}
    for k, v in model.state_dict().items():
        for prefix in ("_orig_mod.", "module."):
            k = k.removeprefix(prefix)
        out[k] = v.detach().cpu().contiguous()
    return out


def save_checkpoint(model: nn.Module, path: str | Path, card: ModelCard) -> ModelCard:
    """Write ``<stem>.safetensors`` and ``<stem>.json``; return the card with its hash filled in."""
    weights, card_path = _paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    tmp = weights.with_suffix(".safetensors.tmp")
    save_file(_clean_state_dict(model), str(tmp), metadata={"arch": card.arch})
    tmp.chmod(0o644)  # safetensors writes 0600; a serving container's user must be able to read it
    tmp.replace(weights)  # atomic: a crash never leaves a half-written checkpoint
    card = card.model_copy(
        update={"weights_sha256": sha256_file(weights), "created": datetime.now(UTC).isoformat(timespec="seconds")}
    )
    card_path.write_text(json.dumps(card.model_dump(), indent=2) + "\n")
    return card


def read_card(path: str | Path) -> ModelCard:
    """Read and validate the model card of a checkpoint."""
    _, card_path = _paths(path)
    if not card_path.is_file():
        msg = f"checkpoint card {card_path} not found; a checkpoint is <stem>.safetensors plus <stem>.json"
        raise CheckpointError(msg)
    try:
        return ModelCard.model_validate(json.loads(card_path.read_text()))
    except (json.JSONDecodeError, ValidationError) as exc:
        msg = f"checkpoint card {card_path} is not a valid model card: {exc}"
        raise CheckpointError(msg) from exc


# Files made by pickle (torch.save, joblib...): unpickling one runs whatever code it names.
_PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".joblib")
_PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05", b"PK\x03\x04")  # protocols 2-5; torch's zip


def _refuse_pickle(path: Path) -> None:
    for file in (path, _paths(path)[0]):
        if file.suffix in _PICKLE_SUFFIXES or (file.is_file() and _starts_with(file, _PICKLE_MAGIC)):
            msg = (
                f"{file} is a pickle (torch.save) file, and this project never unpickles: loading one runs any code "
                "it names. Use a safetensors checkpoint, <stem>.safetensors + <stem>.json (ilcs train writes best.*)"
            )
            raise CheckpointError(msg)


def _starts_with(file: Path, magics: tuple[bytes, ...]) -> bool:
    with open(file, "rb") as f:
        return f.read(4).startswith(magics)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, ModelCard]:
    """Load a checkpoint, verified: returns the model in eval mode and its card.

    Raises:
        CheckpointError: a pickle file (refused before anything is read), a file is missing, the card
            names an architecture the registry does not know, the sha256 differs from the card's, the
            file is truncated, or the weights do not fit the card's architecture.
    """
    _refuse_pickle(Path(path))
    weights, _ = _paths(path)
    card = read_card(path)
    known = list_models()
    if card.arch.partition("+")[0] not in known:
        msg = (
            f"the model card of {Path(path)} names architecture {card.arch!r}, which this build does not know "
            f"(it knows {', '.join(known)}); use a checkpoint made by this project's ilcs train"
        )
        raise CheckpointError(msg)
    if not weights.is_file():
        msg = f"checkpoint weights {weights} not found beside its card"
        raise CheckpointError(msg)
    digest = sha256_file(weights)
    if digest != card.weights_sha256:
        msg = (
            f"checkpoint weights {weights} have sha256 {digest[:12]}..., but the card says "
            f"{card.weights_sha256[:12]}...: the file is truncated, corrupted or from another model"
        )
        raise CheckpointError(msg)
    try:
        state = load_file(str(weights), device=str(map_location))
    except (SafetensorError, OSError) as exc:
        msg = f"checkpoint weights {weights} cannot be read: {exc}"
        raise CheckpointError(msg) from exc
    try:
        model = create_model(card.arch, num_classes=len(card.labels), **card.hyperparameters)
        model.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError, TypeError) as exc:
        msg = f"checkpoint weights {weights} do not match architecture {card.arch!r} of its card: {exc}"
        raise CheckpointError(msg) from exc
    return model.to(map_location).eval(), card


SHIPPED_CHECKPOINT = Path(__file__).parent / "checkpoints" / "ilcs_neu"
"""The checkpoint the service loads by default (``ilcs_neu.safetensors`` + ``ilcs_neu.json``)."""
