"""The report's pictures: Figure 9 (heatmaps per class), Figures 7-8 (curves), confusion matrix."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from model_zoo.heatmap import overlay, upsample_attention  # noqa: E402

__all__ = [
    "plot_confusion",
    "plot_curves",
    "plot_heatmap_grid",
    "plot_reliability",
    "plot_runs",
    "plot_schedule_pairs",
    "plot_seed_bands",
]


def plot_heatmap_grid(
    examples: list[dict], out: Path, title: str = "MIAM spatial attention Ms(F')", style: dict | None = None
) -> Path:
    """One column per class: the image with its own-class boxes, and the attention overlay.

    Each example: ``{"label", "name", "image" (H x W uint8), "attention" (h x w), "pred", "boxes"}``.
    """
    fig, axes = plt.subplots(2, len(examples), figsize=(2.4 * len(examples), 5.8), squeeze=False)
    for col, ex in enumerate(examples):
        img = ex["image"]
        heat = upsample_attention(ex["attention"], *img.shape, **(style or {}))
        axes[0, col].imshow(img, cmap="gray", vmin=0, vmax=255)
        for x0, y0, x1, y1 in ex.get("boxes", []):
            axes[0, col].add_patch(Rectangle((x0 - 1, y0 - 1), x1 - x0 + 1, y1 - y0 + 1, fill=False, ec="lime", lw=1))
        axes[0, col].set_title(f"{ex['label']}\n{ex['name']}", fontsize=8)
        axes[1, col].imshow(overlay(img, heat))
        axes[1, col].set_title(f"predicted: {ex['pred']}", fontsize=8)
        for ax in axes[:, col]:
            ax.axis("off")
    fig.suptitle(f"{title} per class (red = strong); green: NEU boxes of the class")
    fig.tight_layout()
    return _save(fig, out)


def plot_curves(log: list[dict], out_dir: Path, train_label: str = "train (augmented)") -> tuple[Path, Path]:
    """Accuracy (Fig. 7) and loss (Fig. 8) per epoch, training batches vs the validation slice."""
    epochs = [r["epoch"] for r in log]
    paths = []
    for key, title, name in (("acc", "accuracy", "accuracy.png"), ("loss", "cross-entropy loss", "loss.png")):
        fig, ax = plt.subplots(figsize=(6, 3.6))
        ax.plot(epochs, [r[f"train_{key}"] for r in log], label=train_label)
        ax.plot(epochs, [r[f"val_{key}"] for r in log], label="validation slice")
        ax.set_xlabel("epoch")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
        ax.legend()
        paths.append(_save(fig, out_dir / name))
    return paths[0], paths[1]


def plot_runs(runs: list[dict], out: Path) -> Path:
    """Validation loss and top-1 per epoch of several runs (``{"name", "log"}``), one line each."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for run in runs:
        log = run["log"]
        style = "-" if "nomiam" not in run["name"] else "--"
        for ax, key in zip(axes, ("val_loss", "val_acc"), strict=True):
            ax.plot([r["epoch"] for r in log], [r[key] for r in log], style, marker=".", label=run["name"])
    axes[0].set_yscale("log")
    for ax, title in zip(axes, ("validation loss (log scale)", "validation top-1"), strict=True):
        ax.set_xlabel("epoch")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, out)


def plot_seed_bands(curves: dict[str, list[list[float]]], out: Path, ylabel: str = "validation loss") -> Path:
    """One line per model (mean over seeds, per epoch), a min-max band; one colour per base model, dashed with MIAM."""
    fig, ax = plt.subplots(figsize=(8, 4.6))
    bases = list(dict.fromkeys(name.replace("+miam", "").replace("-nomiam", "") for name in curves))
    for name, seeds in curves.items():
        n = min(len(c) for c in seeds)
        values = np.array([c[:n] for c in seeds])
        epochs = np.arange(1, n + 1)
        colour = f"C{bases.index(name.replace('+miam', '').replace('-nomiam', '')) % 10}"
        with_miam = "+miam" in name or name == "ilcs"  # ILCS is the paper's model with MIAM
        ax.plot(epochs, values.mean(0), "--" if with_miam else "-", color=colour, label=f"{name} (n={len(seeds)})")
        if len(seeds) > 1:
            ax.fill_between(epochs, values.min(0), values.max(0), color=colour, alpha=0.12, lw=0)
    ax.set_yscale("log")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{ylabel} (log scale)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return _save(fig, out)


def plot_schedule_pairs(pairs: dict[str, list[tuple[int, list[float], list[float]]]], out: Path, cols: int = 4) -> Path:
    """One panel per model: each seed's validation loss at the shorter schedule (solid) and the longer (dashed).

    ``pairs`` maps a model to its ``(seed, shorter curve, longer curve)`` triples.
    """
    ncols = min(cols, len(pairs))
    nrows = -(-len(pairs) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols + 0.6, 3.0 * nrows + 0.3), squeeze=False)
    for ax, (name, seeds) in zip(axes.flat, pairs.items(), strict=False):
        for i, (seed, short, longer) in enumerate(seeds):
            for curve, style in ((short, "-"), (longer, "--")):
                label = f"seed {seed}, {len(curve)} epochs"
                ax.plot(np.arange(1, len(curve) + 1), curve, style, color=f"C{i}", label=label)
        ax.set_yscale("log")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    for ax in axes.flat[len(pairs) :]:
        ax.axis("off")
    for row in axes:
        row[0].set_ylabel("validation loss (log scale)")
    fig.tight_layout()
    return _save(fig, out)


def plot_reliability(before: list[dict], after: list[dict], out: Path, labels=("T = 1", "calibrated")) -> Path:
    """Reliability diagram: accuracy against mean confidence per bin, before and after temperature scaling."""
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, label="perfect calibration")
    for bins, label, marker in ((before, labels[0], "o"), (after, labels[1], "s")):
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker=marker, label=label)
    ax.set_xlabel("mean confidence in bin")
    ax.set_ylabel("accuracy in bin")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out)


def plot_confusion(confusion: list[list[int]], classes: list[str], out: Path) -> Path:
    cm = np.asarray(confusion)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(classes)):
        for j in range(len(classes)):
            colour = "white" if cm[i, j] > cm.max() / 2 else "black"
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color=colour)
    fig.tight_layout()
    return _save(fig, out)


def _save(fig, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
