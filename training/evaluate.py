"""``ilcs eval``: top-1/top-5 as the paper's Algorithm 2, per-class figures, confusion matrix."""

from __future__ import annotations

import json
from pathlib import Path

from model_zoo.checkpoint import SHIPPED_CHECKPOINT, load_checkpoint
from model_zoo.device import resolve_device
from model_zoo.preprocess import Preprocess
from model_zoo.served import serve_model
from training.data import load_image_folder
from training.engine import predict
from training.metrics import classification_report
from training.split import load_manifest, manifest_sha256

__all__ = ["evaluate", "evaluate_cli", "evaluate_with_maps", "format_report"]


def evaluate(*args, **kwargs) -> dict:
    """Evaluate a checkpoint (see ``evaluate_with_maps``); returns the report only."""
    return evaluate_with_maps(*args, **kwargs)[0]


def evaluate_with_maps(
    checkpoint: str | Path | None,
    data: str | Path,
    manifest: str | Path | None = None,
    subset: str = "test",
    all_images: bool = False,
    device: str = "auto",
    progress: bool = False,
    with_attention: bool = False,
):
    """Evaluate a checkpoint on the manifest's ``subset`` list, or on every image with ``all_images``.

    The model is the one the service serves on ``device`` (``model_zoo.served.serve_model``): the
    frozen graph, and on a GPU in fp16. Returns ``(report, images, attention maps or None, card)``.
    """
    dev = resolve_device(device)
    model, card = load_checkpoint(checkpoint or SHIPPED_CHECKPOINT, map_location=dev)
    served = serve_model(model, dev, freeze_shape=(card.in_chans, card.input_size, card.input_size))
    images = load_image_folder(data, classes=card.labels, progress=progress)
    if not all_images:
        if manifest is None:
            msg = "give a split manifest, or --all to evaluate every image of the folder"
            raise ValueError(msg)
        images = images.subset(load_manifest(manifest)[subset])
    scores, maps = predict(
        served,
        images.images,
        Preprocess.from_card(card),
        dev,
        with_attention=with_attention,
        progress=progress,
        temperature=card.temperature,
    )
    report = classification_report(scores, images.labels, card.labels)
    report["checkpoint"] = {"arch": card.arch, "version": card.version, "weights_sha256": card.weights_sha256}
    report["data"] = {"root": str(data), "subset": "all" if all_images else subset}
    if not all_images:
        report["data"]["manifest_sha256"] = manifest_sha256(manifest)
    report["predictions"] = {n: card.labels[int(i)] for n, i in zip(images.names, scores.argmax(1), strict=True)}
    return report, images, maps, card


def format_report(report: dict) -> str:
    """A plain-text report for a person at a terminal."""
    classes = report["classes"]
    lines = [
        f"n = {report['n']}   top-1 = {100 * report['top1']:.2f}%   top-5 = {100 * report['top5']:.2f}%",
        "",
        f"{'class':<18}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}",
    ]
    for c in classes:
        m = report["per_class"][c]
        lines.append(f"{c:<18}{m['precision']:>10.4f}{m['recall']:>10.4f}{m['f1']:>10.4f}{m['support']:>9}")
    lines += ["", "confusion (rows: true, columns: predicted)", " " * 18 + "".join(f"{c[:7]:>8}" for c in classes)]
    for c, row in zip(classes, report["confusion"], strict=True):
        lines.append(f"{c:<18}" + "".join(f"{v:>8}" for v in row))
    return "\n".join(lines)


def evaluate_cli(args) -> None:
    report = evaluate(
        args.checkpoint,
        args.data,
        None if args.all else args.split_manifest,
        args.subset,
        args.all,
        args.device,
        progress=not args.json,
    )
    if args.json:
        print(json.dumps(report))
    else:
        print(format_report(report))
