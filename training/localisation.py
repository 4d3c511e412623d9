"""Scoring heatmaps against the NEU boxes (beyond the paper, which only shows pictures).

For each test image, the boxes of the image's *own* class (the filename label; the
~130 secondary boxes of other classes are ignored) are compared with the upsampled,
min-max scaled attention map:

* energy share: the share of heatmap mass inside the boxes; its chance level is the
  boxes' share of the image area, reported beside it;
* pointing game: 1 if the heatmap's maximum falls inside a box;
* bright-area share: the share of the image where the shown heatmap is at least half its
  peak, beside the boxes' share (a map sharpened to a dot scores high energy but shows nothing).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from model_zoo.heatmap import upsample_attention

__all__ = ["box_mask", "localisation_scores", "read_boxes"]


def read_boxes(xml_path: Path, label: str) -> list[tuple[int, int, int, int]]:
    """Pascal VOC boxes (xmin, ymin, xmax, ymax; 1-based inclusive) named ``label``."""
    root = ET.parse(xml_path).getroot()
    boxes = []
    for obj in root.iter("object"):
        if obj.findtext("name") != label:
            continue
        bb = obj.find("bndbox")
        boxes.append(tuple(int(float(bb.findtext(k))) for k in ("xmin", "ymin", "xmax", "ymax")))
    return boxes


def box_mask(boxes: list[tuple[int, int, int, int]], height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        mask[max(y0 - 1, 0) : min(y1, height), max(x0 - 1, 0) : min(x1, width)] = True
    return mask


def localisation_scores(
    names: list[str],
    labels: list[str],
    attention: np.ndarray,
    annotations: Path,
    size: tuple[int, int],
    blur: float = 0.0,
    gamma: float = 1.0,
) -> dict:
    """Per-class and overall energy share, its chance level, pointing-game hit rate and bright-area share.

    ``blur`` and ``gamma`` shape the map as the service shows it (``upsample_attention``).
    """
    per: dict[str, dict[str, list[float]]] = {}
    for name, label, att in zip(names, labels, attention, strict=True):
        xml = annotations / (Path(name).stem + ".xml")
        if not xml.is_file():
            continue
        mask = box_mask(read_boxes(xml, label), *size)
        if not mask.any():
            continue
        heat = upsample_attention(att, *size, blur=blur, gamma=gamma)
        total = float(heat.sum())
        r = per.setdefault(label, {"energy": [], "area": [], "hit": [], "bright": []})
        r["area"].append(float(mask.mean()))
        if total > 0:
            r["energy"].append(float(heat[mask].sum()) / total)
            r["hit"].append(float(mask.flat[int(heat.argmax())]))
            r["bright"].append(float((heat >= 0.5).mean()))
        else:  # a flat map points nowhere: it scores as a uniformly random point would
            r["energy"].append(float(mask.mean()))
            r["hit"].append(float(mask.mean()))
            r["bright"].append(1.0)

    def summary(rows: dict[str, list[float]]) -> dict:
        return {
            "n": len(rows["hit"]),
            "energy_in_boxes": float(np.mean(rows["energy"])),
            "box_area_share": float(np.mean(rows["area"])),
            "pointing_game": float(np.mean(rows["hit"])),
            "bright_area_share": float(np.mean(rows["bright"])),
        }

    out = {label: summary(r) for label, r in sorted(per.items())}
    if per:
        out["all"] = summary({k: sum((r[k] for r in per.values()), []) for k in ("energy", "area", "hit", "bright")})
    return out
