"""The training recipe as a plain dataclass: ``TrainConfig``'s defaults ARE the recipe
that produced the shipped checkpoint (``reports/neu-ilcs.md`` names them).

Standard library only, so ``ilcs --help`` and ``ilcs serve`` can read the defaults
without importing torch or the training loop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DEFAULT_MANIFEST", "RECIPE_MODEL_KWARGS", "TrainConfig", "default_neu_root"]

DEFAULT_MANIFEST = Path(__file__).parent / "splits" / "neu_seed0.json"

#: Model options of the recipe, by registry name; ``--model-kwargs`` is merged over them.
RECIPE_MODEL_KWARGS: dict[str, dict] = {}


def default_neu_root() -> Path:
    """``$ILCS_NEU_DIR`` or ``../shared/data/neu-det`` relative to the project root."""
    env = os.environ.get("ILCS_NEU_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data" / "neu-det"


@dataclass
class TrainConfig:
    model: str = "ilcs"
    data: str = field(default_factory=lambda: str(default_neu_root()))
    manifest: str = str(DEFAULT_MANIFEST)
    out: str = "runs/ilcs"
    epochs: int = 20
    batch_size: int = 16
    lr: float = 5e-3
    weight_decay: float = 0.01
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.0
    input_size: int = 160
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    channels_last: bool = True
    resume: str | None = None
    model_kwargs: dict | None = None  # merged over RECIPE_MODEL_KWARGS for ``model``
    box_loss_weight: float = 1.0  # weak box supervision of the heatmap (0: off; images without boxes add nothing)
    init_from: str | None = None  # start from this checkpoint's weights (a fine-tuning stage), not at random
    select: str = "val_loss"  # tie-break between epochs of equal validation top-1: "val_loss" or "val_box_loss"
    version: str = "2.0.0"

    def model_options(self) -> dict:
        """The model's hyperparameters: the input size, the recipe's options, then ``model_kwargs`` over them."""
        return {"input_size": self.input_size, **RECIPE_MODEL_KWARGS.get(self.model, {}), **(self.model_kwargs or {})}
