"""Choosing how the served heatmap is smoothed and sharpened, on the validation slice.

The model's map is shown after a Gaussian blur (``blur``, in map cells) and a power
(``gamma``) (``model_zoo.heatmap.upsample_attention``). The rule, fixed before any test
score was seen:

1. ``blur`` maximises the pointing game (ties: the smaller blur); the power does not move
   the peak, so it is chosen at ``gamma`` 1;
2. ``gamma`` makes the map's bright region (at least half its peak) closest in size to the
   boxes' mean share of the image: a size-matched map, not the dot that a large power would
   make to score a high energy share.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.localisation import localisation_scores

__all__ = ["BLURS", "GAMMAS", "fit_heatmap_style"]

BLURS = (0.0, 0.5, 0.75, 1.0, 1.5, 2.0)
GAMMAS = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0)


def fit_heatmap_style(
    names: list[str], labels: list[str], maps: np.ndarray, annotations: Path, size: tuple[int, int]
) -> dict:
    """The ``blur`` and ``gamma`` the module's rule picks for ``maps``, with every grid point's scores."""
    grid = []

    def score(blur: float, gamma: float) -> dict:
        s = localisation_scores(names, labels, maps, annotations, size, blur=blur, gamma=gamma)["all"]
        row = {"blur": blur, "gamma": gamma} | {
            k: s[k] for k in ("energy_in_boxes", "pointing_game", "bright_area_share", "box_area_share")
        }
        grid.append(row)
        return row

    by_blur = [score(b, 1.0) for b in BLURS]
    blur = max(by_blur, key=lambda r: (r["pointing_game"], -r["blur"]))["blur"]
    by_gamma = [next(r for r in by_blur if r["blur"] == blur)] + [score(blur, g) for g in GAMMAS[1:]]
    best = min(by_gamma, key=lambda r: (abs(r["bright_area_share"] - r["box_area_share"]), r["gamma"]))
    return {"blur": blur, "gamma": best["gamma"], "chosen": best, "grid": grid}
