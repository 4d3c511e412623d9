"""Temperature scaling (Guo et al., ICML 2017) and the expected calibration error.

One scalar T divides the logits; it is fitted on the validation slice by minimising
the negative log-likelihood over a log-spaced grid, so the served ``confidence`` is a
probability a QA engineer can set a review threshold on. The test list only reports.

A model that gets every clean validation image right leaves T unidentified (the NLL keeps
falling as T shrinks), so the fit uses each validation image as it is plus ``copies``
versions under the training augmentation (flips, crops, blur): harder images than the
clean ones, where the model does make mistakes, which makes the fit a cautious one.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

__all__ = [
    "augmented_logits",
    "calibrate_checkpoint",
    "expected_calibration_error",
    "fit_temperature",
    "reliability_bins",
]

T_GRID = np.exp(np.linspace(np.log(0.05), np.log(20.0), 601))


def _nll(logits: torch.Tensor, labels: torch.Tensor, t: float) -> float:
    return float(F.cross_entropy(logits / t, labels))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> dict:
    """The NLL-minimising temperature on ``logits`` (N x C) and ``labels``, with the NLL before and after.

    ``at_bound`` says the minimum lies on the grid's edge (e.g. a validation slice with no
    errors, whose NLL keeps falling as T shrinks): the fit is then only a bound.
    """
    x, y = torch.as_tensor(logits, dtype=torch.float64), torch.as_tensor(labels, dtype=torch.long)
    nll = np.array([_nll(x, y, t) for t in T_GRID])
    i = int(nll.argmin())
    return {
        "temperature": float(T_GRID[i]),
        "nll_before": _nll(x, y, 1.0),
        "nll_after": float(nll[i]),
        "at_bound": i in (0, len(T_GRID) - 1),
        "n": len(y),
    }


def reliability_bins(scores: np.ndarray, labels: np.ndarray, n_bins: int = 10) -> list[dict]:
    """Per confidence bin: count, mean confidence and accuracy of the top-1 prediction."""
    conf, pred = scores.max(1), scores.argmax(1)
    correct = pred == labels
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            bins.append(
                {
                    "lo": float(lo),
                    "hi": float(hi),
                    "n": int(sel.sum()),
                    "confidence": float(conf[sel].mean()),
                    "accuracy": float(correct[sel].mean()),
                }
            )
    return bins


def expected_calibration_error(scores: np.ndarray, labels: np.ndarray, n_bins: int = 10) -> float:
    """ECE: the count-weighted mean |accuracy - confidence| over equal-width confidence bins."""
    bins = reliability_bins(scores, labels, n_bins)
    n = sum(b["n"] for b in bins)
    return float(sum(b["n"] * abs(b["accuracy"] - b["confidence"]) for b in bins) / max(n, 1))


@torch.no_grad()
def augmented_logits(
    model, images, labels, preprocess, copies: int = 8, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Logits of each H x W uint8 image as it is and of ``copies`` training-augmented versions, with their labels."""
    from training.augment import augment_batch, train_transform

    torch.manual_seed(seed)
    transform = train_transform(preprocess.input_size)
    model.eval()
    device = next(model.parameters()).device
    out, ys = [], []
    for img, y in zip(images, labels, strict=True):
        t = torch.from_numpy(img)[None]
        batch = (
            torch.cat([preprocess(img), preprocess(augment_batch([t] * copies, transform))])
            if copies
            else preprocess(img)
        )
        out.append(model(batch.to(device)).float().cpu().numpy())
        ys += [int(y)] * len(batch)
    return np.concatenate(out), np.array(ys)


def calibrate_checkpoint(checkpoint, data, manifest, copies: int = 8) -> dict:
    """Fit the temperature of a saved checkpoint on its validation slice and write it into its card."""
    from model_zoo.checkpoint import load_checkpoint, save_checkpoint
    from model_zoo.preprocess import Preprocess
    from training.data import load_image_folder
    from training.engine import predict
    from training.split import load_manifest

    model, card = load_checkpoint(checkpoint)
    pre = Preprocess.from_card(card)
    split = load_manifest(manifest)
    images = load_image_folder(data, classes=card.labels, progress=False)
    val, test = images.subset(split["val"]), images.subset(split["test"])
    fit = fit_temperature(*augmented_logits(model, val.images, val.labels, pre, copies)) | {"copies": copies}
    test_logits, _ = predict(model, test.images, pre, torch.device("cpu"), logits_only=True)
    raw = torch.softmax(torch.as_tensor(test_logits), 1).numpy()
    cal = torch.softmax(torch.as_tensor(test_logits) / fit["temperature"], 1).numpy()
    fit |= {
        "test_ece_before": expected_calibration_error(raw, test.labels),
        "test_ece_after": expected_calibration_error(cal, test.labels),
    }
    card.temperature = fit["temperature"]
    card.metrics["calibration"] = fit
    save_checkpoint(model, checkpoint, card)
    return fit


def calibrate_cli(args) -> None:
    """``ilcs calibrate``: fit and store the temperature, print the fit as one JSON object."""
    import json

    if not args.checkpoint:
        msg = "give --checkpoint: the checkpoint whose card gets the temperature (the shipped one is not rewritten)"
        raise ValueError(msg)
    print(json.dumps(calibrate_checkpoint(args.checkpoint, args.data, args.split_manifest, args.copies)))
