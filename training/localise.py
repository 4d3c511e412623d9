"""``ilcs localise``: how well a heatmap method points at the defect, beside image-blind baselines.

Methods (each gives one h x w map per image, scored by ``training.localisation``):

* ``model``: what ``forward_with_attention`` returns and the service serves (MIAM's spatial
  map Ms(F'), or the activation energy for a model without MIAM);
* ``energy``: activation energy (per-pixel L2 norm over channels) of the backbone's last map;
* ``miam_gated_energy``: activation energy of MIAM's spatially gated map Ms(F')·F' (models with MIAM);
* ``gradcam:<module>`` and ``gradcam++:<module>``: Grad-CAM (Selvaraju et al., 2017) and
  Grad-CAM++ (Chattopadhay et al., 2018) of the predicted class at a named module's output,
  e.g. ``gradcam:lcs.1`` (ILCS Block 2) or ``gradcam:lcs.2`` (Block 3).

Baselines that ignore the image: a flat map (its energy share is the boxes' area share,
i.e. chance) and a centred Gaussian (sigma a quarter of the side), which profits from
defects lying near the centre more often than not.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from model_zoo.preprocess import Preprocess
from training.localisation import localisation_scores

__all__ = ["BASELINES", "fit_style", "heatmaps", "localise", "method_names"]


def method_names(model: nn.Module) -> list[str]:
    """The methods worth comparing for ``model`` (Grad-CAM at ILCS's Blocks 2 and 3 where it has them)."""
    names = ["model", "energy"]
    if hasattr(getattr(model, "attn", None), "spatial"):
        names.append("miam_gated_energy")
    blocks = [n for n, _ in model.named_modules() if n in ("lcs.1", "lcs.2")]
    for b in blocks:
        names += [f"gradcam:{b}", f"gradcam++:{b}"]
    return names


def _backbone_output(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    for attr in ("lcs", "backbone", "features"):
        if hasattr(model, attr):
            return getattr(model, attr)(x)
    msg = f"{type(model).__name__} has no lcs/backbone/features module to take the activation energy of"
    raise ValueError(msg)


def _gradcam(model: nn.Module, x: torch.Tensor, module_name: str, plus_plus: bool) -> torch.Tensor:
    module = dict(model.named_modules()).get(module_name)
    if module is None:
        msg = f"the model has no module named {module_name!r} for Grad-CAM"
        raise ValueError(msg)
    saved: dict[str, torch.Tensor] = {}

    def hook(_m, _inp, out):
        out.retain_grad()
        saved["a"] = out

    handle = module.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            x = x.clone().requires_grad_(True)
            logits = model(x)
            chosen = logits.gather(1, logits.argmax(1, keepdim=True)).sum()
            chosen.backward()
    finally:
        handle.remove()
    a, g = saved["a"].detach(), saved["a"].grad.detach()
    if plus_plus:  # Grad-CAM++ weights with the exp(score) closed form of the paper's eq. 19
        g2, g3 = g.pow(2), g.pow(3)
        denom = 2 * g2 + (a * g3).sum(dim=(2, 3), keepdim=True)
        alpha = g2 / torch.where(denom != 0, denom, torch.ones_like(denom))
        weights = (alpha * F.relu(g)).sum(dim=(2, 3), keepdim=True)
    else:
        weights = g.mean(dim=(2, 3), keepdim=True)
    return F.relu((weights * a).sum(dim=1, keepdim=True))


def _maps(model: nn.Module, x: torch.Tensor, method: str) -> torch.Tensor:
    if method == "model":
        with torch.no_grad():
            return model.forward_with_attention(x).attention
    if method == "energy":
        with torch.no_grad():
            return _backbone_output(model, x).float().pow(2).sum(dim=1, keepdim=True).sqrt()
    if method == "miam_gated_energy":
        with torch.no_grad():
            f1 = model.attn.channel(_backbone_output(model, x))
            return (f1 * model.attn.spatial.attention(f1)).float().pow(2).sum(dim=1, keepdim=True).sqrt()
    kind, _, module_name = method.partition(":")
    if kind in ("gradcam", "gradcam++") and module_name:
        return _gradcam(model, x, module_name, plus_plus=kind == "gradcam++")
    msg = f"unknown heatmap method {method!r}; choose model, energy, gradcam:<module> or gradcam++:<module>"
    raise ValueError(msg)


def heatmaps(
    model: nn.Module,
    images: Sequence[np.ndarray],
    preprocess: Preprocess,
    method: str,
    batch_size: int = 32,
    progress: bool = False,
) -> np.ndarray:
    """One h x w map per H x W uint8 image, by ``method`` (module docstring)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in tqdm(range(0, len(images), batch_size), desc=method, unit="batch", disable=not progress):
        x = torch.cat([preprocess(img) for img in images[start : start + batch_size]]).to(device)
        out.append(_maps(model, x, method).float()[:, 0].cpu().numpy())
    return np.concatenate(out)


def _centred_gaussian(side: int = 64, sigma: float = 0.25) -> np.ndarray:
    r = (np.arange(side) + 0.5) / side - 0.5
    return np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2)).astype(np.float32)


BASELINES = {"flat": lambda: np.ones((64, 64), np.float32), "centred_gaussian": _centred_gaussian}


def _summary(scores: dict) -> dict:
    overall = scores.get(
        "all", {"n": 0, "energy_in_boxes": float("nan"), "pointing_game": float("nan"), "box_area_share": float("nan")}
    )
    per_class = {
        k: {
            "n": v["n"],
            "energy_in_boxes": v["energy_in_boxes"],
            "pointing_game": v["pointing_game"],
            "chance": v["box_area_share"],
        }
        for k, v in scores.items()
        if k != "all"
    }
    return {
        "n": overall["n"],
        "energy_in_boxes": overall["energy_in_boxes"],
        "pointing_game": overall["pointing_game"],
        "chance": overall["box_area_share"],
        "bright_area_share": overall.get("bright_area_share", float("nan")),
        "per_class": per_class,
    }


def _annotations(data) -> Path:
    annotations = data.root / "annotations"
    if not annotations.is_dir():
        msg = f"{data.root} has no annotations/ folder of Pascal VOC boxes (NEU-DET layout) to score heatmaps against"
        raise FileNotFoundError(msg)
    return annotations


def localise(
    model: nn.Module,
    data,
    preprocess: Preprocess,
    method: str = "model",
    progress: bool = True,
    baselines: bool = True,
    style: dict | None = None,
) -> dict:
    """Score ``method``'s heatmaps (and the baselines, unless told not to) on ``data``, an ``ImageSet`` with
    ``annotations/``, all shown with ``style`` (``blur``, ``gamma``; default: as the model gave them)."""
    annotations = _annotations(data)
    style = {"blur": 0.0, "gamma": 1.0} | (style or {})
    labels = [data.classes[i] for i in data.labels]
    size = data.images[0].shape[:2]
    maps = heatmaps(model, data.images, preprocess, method, progress=progress)
    scores = localisation_scores(data.names, labels, maps, annotations, size, **style)
    result = {"method": method, "style": style, **_summary(scores)}
    if not baselines:
        return result
    result["baselines"] = {}
    for name, make in BASELINES.items():
        fixed = np.broadcast_to(make(), (len(data), *make().shape))
        scores = localisation_scores(data.names, labels, fixed, annotations, size, **style)
        result["baselines"][name] = _summary(scores)
    return result


def fit_style(model: nn.Module, data, preprocess: Preprocess, progress: bool = True) -> dict:
    """``training.heatmap_style``'s choice of blur and gamma for the served map on ``data``."""
    from training.heatmap_style import fit_heatmap_style

    maps = heatmaps(model, data.images, preprocess, "model", progress=progress)
    labels = [data.classes[i] for i in data.labels]
    return fit_heatmap_style(data.names, labels, maps, _annotations(data), data.images[0].shape[:2])


def localise_cli(args) -> None:
    """``ilcs localise``: one JSON object, last line of stdout (a table first unless ``--json``)."""
    import json

    from model_zoo.checkpoint import SHIPPED_CHECKPOINT, load_checkpoint
    from model_zoo.device import resolve_device
    from training.data import load_image_folder
    from training.split import load_manifest

    device = resolve_device(args.device)
    model, card = load_checkpoint(args.checkpoint or SHIPPED_CHECKPOINT, map_location=device)
    data = load_image_folder(args.data, classes=card.labels, progress=not args.json)
    if not args.all:
        data = data.subset(load_manifest(args.split_manifest)[args.subset])
    pre = Preprocess.from_card(card)
    if args.fit_style:
        print(json.dumps(_fit_and_store(model, card, data, pre, args)))
        return
    methods = method_names(model) if args.method == "all" else [args.method]
    style = None if args.raw else card.heatmap_style
    results = [
        localise(model, data, pre, m, progress=not args.json, baselines=i == 0, style=style)
        for i, m in enumerate(methods)
    ]
    for r in results:
        r["subset"] = "all" if args.all else args.subset
        r["checkpoint"] = {
            "arch": card.arch,
            "weights_sha256": card.weights_sha256,
            "heatmap_method": card.heatmap_method,
        }
    if not args.json:
        print(f"{'method':<20}{'energy in boxes':>16}{'pointing game':>15}")
        for r in results:
            print(f"{r['method']:<20}{100 * r['energy_in_boxes']:>15.1f}%{100 * r['pointing_game']:>14.1f}%")
        for name, b in results[0]["baselines"].items():  # scored once, with the first method
            print(f"{name:<20}{100 * b['energy_in_boxes']:>15.1f}%{100 * b['pointing_game']:>14.1f}%")
    if len(results) == 1:
        print(json.dumps(results[0]))
    else:
        baselines = results[0]["baselines"]
        print(
            json.dumps(
                {"methods": [{k: v for k, v in r.items() if k != "baselines"} for r in results], "baselines": baselines}
            )
        )


def _fit_and_store(model: nn.Module, card, data, pre: Preprocess, args) -> dict:
    """Fit the served map's blur and gamma on a non-test subset and write them into the card."""
    from model_zoo.checkpoint import save_checkpoint

    if not args.checkpoint:
        msg = "give --checkpoint: the checkpoint whose card gets the heatmap style (the shipped one is not rewritten)"
        raise ValueError(msg)
    if args.all or args.subset == "test":
        msg = "fit the heatmap style on the validation slice (--split-manifest M --subset val), never on test images"
        raise ValueError(msg)
    fit = fit_style(model, data, pre, progress=not args.json) | {"subset": args.subset, "n": len(data)}
    card.heatmap_blur, card.heatmap_gamma = fit["blur"], fit["gamma"]
    card.metrics["heatmap_style"] = fit
    save_checkpoint(model, args.checkpoint, card)
    return fit
