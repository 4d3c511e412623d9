"""Synthetic image folders: six classes a tiny model can tell apart in a few epochs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CLASSES = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]


def synthetic_image(cls: int, rng: np.random.Generator, size: int = 48) -> np.ndarray:
    """Class k: brightness 30 + 40k with noise, plus a bright bar whose position depends on k."""
    img = rng.normal(30 + 40 * cls, 8, (size, size))
    img[:, (cls * 7) % size : (cls * 7) % size + 3] += 60
    return np.clip(img, 0, 255).astype(np.uint8)


VOC = """<annotation><size><width>{size}</width><height>{size}</height></size>
<object><name>{name}</name><bndbox><xmin>{x0}</xmin><ymin>1</ymin><xmax>{x1}</xmax><ymax>{size}</ymax></bndbox></object>
</annotation>"""


def write_neu_layout(root: Path, per_class: int = 10, seed: int = 0, duplicate: bool = True, size: int = 48) -> Path:
    """``root/images/<class>_<n>.png`` like NEU-DET, with ``annotations/<class>_<n>.xml`` boxing each bright bar."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    for c, name in enumerate(CLASSES):
        x0 = (c * 7) % size
        for i in range(per_class):
            Image.fromarray(synthetic_image(c, rng, size)).save(root / "images" / f"{name}_{i}.png")
            (root / "annotations" / f"{name}_{i}.xml").write_text(
                VOC.format(size=size, name=name, x0=x0 + 1, x1=x0 + 3)
            )
    if duplicate:  # a byte-identical pair, like NEU's patches_101/105
        data = (root / "images" / "patches_1.png").read_bytes()
        (root / "images" / "patches_99.png").write_bytes(data)
        (root / "annotations" / "patches_99.xml").write_bytes((root / "annotations" / "patches_1.xml").read_bytes())
    return root


@pytest.fixture
def neu_like(tmp_path) -> Path:
    return write_neu_layout(tmp_path / "neu")
