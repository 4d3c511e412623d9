"""The training runs kept in ``reports/runs/``: read back for the report's tables.

Two kinds: the recipe search's short proxy runs (``recipe-search/<name>/``: ``log.json``
and ``run.json``, validation figures only) and full runs (``<name>/``: ``log.json`` and
the chosen checkpoint's card ``best.json``, whose metrics include the test split, scored
once at the end of the run).
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["full_runs", "search_runs"]


def _best(log: list[dict]) -> dict:
    """The epoch the training loop keeps: highest validation top-1, then lowest validation loss."""
    return max(log, key=lambda r: (r["val_acc"], -r["val_loss"]))


def search_runs(root: str | Path) -> list[dict]:
    """Proxy runs under ``root`` (sorted by name): options, planned and run epochs, log and best epoch."""
    runs = []
    for d in sorted(p for p in Path(root).iterdir() if (p / "log.json").is_file() and (p / "run.json").is_file()):
        run, log = json.loads((d / "run.json").read_text()), json.loads((d / "log.json").read_text())
        runs.append({"name": d.name, **run, "log": log, "best": _best(log)})
    return runs


def full_runs(root: str | Path) -> list[dict]:
    """Full runs directly under ``root`` with a card: name, options, epochs, best validation and test top-1."""
    runs = []
    for d in sorted(p for p in Path(root).iterdir() if (p / "best.json").is_file() and (p / "log.json").is_file()):
        card, log = json.loads((d / "best.json").read_text()), json.loads((d / "log.json").read_text())
        cfg = card["training"].get("config", {})
        runs.append(
            {
                "name": d.name,
                "hyperparameters": card["hyperparameters"],
                "config": cfg,
                "log": log,
                "metrics": card["metrics"],
                "wall_seconds": card["training"].get("wall_seconds"),
            }
        )
    return runs
