"""The split manifest: stratified 70/30 train/test (the paper's protocol) with a
validation slice carved from the training side, byte-identical files kept together.

The manifest holds file names only and is what training, evaluation and the reports
all read, so every number in the project refers to the same images.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from training.data import ImageSet

__all__ = ["load_manifest", "make_split", "manifest_sha256", "write_manifest"]


def _groups(data: ImageSet, idx: list[int]) -> list[list[int]]:
    """Group indices by file content, so duplicates move together."""
    by_digest: dict[str, list[int]] = {}
    for i in idx:
        by_digest.setdefault(data.digests[i], []).append(i)
    return list(by_digest.values())


def _take(groups: list[list[int]], n: int) -> tuple[list[int], list[int]]:
    taken, rest = [], []
    for g in groups:
        (taken if len(taken) + len(g) <= n else rest).extend(g)
    return taken, rest


def make_split(data: ImageSet, test_fraction: float = 0.3, val_fraction: float = 0.1, seed: int = 0) -> dict:
    """Stratified split into ``train`` / ``val`` / ``test`` name lists.

    ``test_fraction`` of each class goes to test; ``val_fraction`` of each class's
    remainder is the validation slice used to choose checkpoints and hyperparameters.
    """
    rng = np.random.default_rng(seed)
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for c in range(len(data.classes)):
        idx = [int(i) for i in np.flatnonzero(data.labels == c)]
        groups = _groups(data, idx)
        rng.shuffle(groups)
        test, rest = _take(groups, round(len(idx) * test_fraction))
        rest_groups = _groups(data, rest)
        rng.shuffle(rest_groups)
        val, train = _take(rest_groups, round(len(rest) * val_fraction))
        parts["test"] += test
        parts["val"] += val
        parts["train"] += train
    return {
        "seed": seed,
        "test_fraction": test_fraction,
        "val_fraction": val_fraction,
        "classes": data.classes,
        **{k: sorted(data.names[i] for i in v) for k, v in parts.items()},
    }


def write_manifest(manifest: dict, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(manifest, indent=1) + "\n")


def load_manifest(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        msg = f"split manifest {p} not found; create it with `ilcs split`"
        raise FileNotFoundError(msg)
    manifest = json.loads(p.read_text())
    for key in ("train", "val", "test"):
        if key not in manifest:
            msg = f"split manifest {p} has no {key!r} list"
            raise ValueError(msg)
    return manifest


def manifest_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
