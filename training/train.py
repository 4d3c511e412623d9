"""``ilcs train``: the default recipe that produced the shipped checkpoint.

AdamW, one-epoch linear warm-up then cosine decay (per step), batch 16 (the paper's),
weak box supervision of the heatmap where boxes exist, best-on-validation checkpointing,
a temperature fitted on the validation slice, a per-epoch log in CSV and JSON, resumable
from ``last.pt``. The defaults of ``TrainConfig`` ARE the shipped recipe. On a GPU the steps run in
fp16 AMP with a gradient scaler (``training.precision``) while a worker thread augments the next
batch (``training.engine.ahead``), the CPU's arithmetic unchanged.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import distributed as dist
from torch.nn import functional as F

from model_zoo.checkpoint import ModelCard, load_checkpoint, save_checkpoint
from model_zoo.device import resolve_device
from model_zoo.preprocess import Preprocess
from model_zoo.registry import create_model
from training.augment import train_transform
from training.calibration import calibrate_checkpoint
from training.config import DEFAULT_MANIFEST, TrainConfig
from training.data import load_image_folder
from training.distributed import init_from_env, wrap
from training.engine import predict, train_one_epoch
from training.metrics import classification_report
from training.split import load_manifest, manifest_sha256

__all__ = ["DEFAULT_MANIFEST", "TrainConfig", "train"]


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=Path(__file__).parent
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _warmup_cosine(warmup_steps: int, total_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def _val_loss(scores: np.ndarray, labels: np.ndarray) -> float:
    p = torch.as_tensor(scores).clamp_min(1e-12).log()
    return float(F.nll_loss(p, torch.as_tensor(labels)))


def _val_box_loss(maps: np.ndarray, masks: list) -> float:
    """Mean ``box_loss`` of the validation maps against the boxes (NaN without boxes)."""
    from training.engine import box_loss

    keep = [i for i, m in enumerate(masks) if m is not None]
    if not keep:
        return float("nan")
    att = torch.as_tensor(maps[keep])[:, None]
    target = torch.stack([torch.from_numpy(masks[i].astype(np.float32))[None] for i in keep])
    return float(box_loss(att, target, torch.ones(len(keep), dtype=torch.bool)))


def _write_log(out: Path, log: list[dict]) -> None:
    (out / "log.json").write_text(json.dumps(log, indent=1) + "\n")
    with open(out / "log.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(log[0]))
        writer.writeheader()
        writer.writerows(log)


def save_resume_state(state: dict, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename: a kill mid-write leaves the previous epoch's state whole."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def train(cfg: TrainConfig) -> ModelCard:
    """Train ``cfg.model`` on the manifest's train list, choose on its val list, score on test.

    Under torchrun with several processes (``training.distributed``), every rank trains and rank 0
    alone validates, writes the run folder and returns the finished card (the others, the card as trained).
    """
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ranks, device = init_from_env(resolve_device(cfg.device))
    is_main = ranks is None or ranks.is_main
    out = Path(cfg.out)
    if is_main:
        out.mkdir(parents=True, exist_ok=True)

    manifest = load_manifest(cfg.manifest)
    data = load_image_folder(cfg.data, classes=manifest.get("classes"))
    fit, val, test = (data.subset(manifest[k]) for k in ("train", "val", "test"))
    fit_images = [torch.from_numpy(img)[None] for img in fit.images]
    fit_masks = [None if m is None else torch.from_numpy(m.astype(np.uint8))[None] for m in fit.masks]
    fit_labels = torch.from_numpy(fit.labels)

    hyper = cfg.model_options()
    model = create_model(cfg.model, num_classes=len(data.classes), **hyper).to(device)
    if cfg.init_from and not cfg.resume:
        start, start_card = load_checkpoint(cfg.init_from)
        if start_card.arch != cfg.model or start_card.hyperparameters != hyper:
            msg = (
                f"--init-from {cfg.init_from} is {start_card.arch} {start_card.hyperparameters}, "
                f"but this run trains {cfg.model} {hyper}"
            )
            raise ValueError(msg)
        model.load_state_dict(start.state_dict())
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if ranks is not None:
        torch.manual_seed(cfg.seed + ranks.rank)  # rank 0's weights are broadcast; each rank augments its own way
    transform = train_transform(cfg.input_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(fit_images) / cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _warmup_cosine(int(cfg.warmup_epochs * steps_per_epoch), cfg.epochs * steps_per_epoch)
    )
    generator = torch.Generator().manual_seed(cfg.seed)
    log: list[dict] = []
    best = {"val_acc": -1.0, "val_loss": math.inf, "epoch": 0}
    start_epoch, wall = 1, 0.0
    if cfg.resume:
        state = torch.load(cfg.resume, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        log, best, wall = json.loads(state["log"]), json.loads(state["best"]), float(state["wall"])
        start_epoch = int(state["epoch"]) + 1
        previous = Path(cfg.resume).parent
        if is_main and previous.resolve() != out.resolve():  # carry the best-so-far checkpoint into the new run folder
            for suffix in (".safetensors", ".json"):
                if (previous / f"best{suffix}").is_file():
                    shutil.copy2(previous / f"best{suffix}", out / f"best{suffix}")

    card = ModelCard(
        name=cfg.model,
        version=cfg.version,
        arch=cfg.model,
        hyperparameters=hyper,
        labels=data.classes,
        input_size=cfg.input_size,
        training={
            "config": asdict(cfg),
            "manifest": Path(cfg.manifest).name,
            "manifest_sha256": manifest_sha256(cfg.manifest),
            "git_commit": _git_commit(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "device": str(device),
            "n_train": len(fit),
            "n_val": len(val),
            "n_train_with_boxes": sum(m is not None for m in fit.masks),
        },
        heatmap_method=model.heatmap_method,
    )
    if ranks is not None:
        card.training["world_size"] = ranks.world_size
    preprocess = Preprocess.from_card(card)
    net = model if ranks is None else wrap(model, device)
    for epoch in range(start_epoch, cfg.epochs + 1):
        t0 = time.perf_counter()
        tr = train_one_epoch(
            net,
            fit_images,
            fit_labels,
            optimizer,
            scheduler,
            preprocess,
            transform,
            cfg.batch_size,
            generator,
            device,
            cfg.label_smoothing,
            desc=f"epoch {epoch}/{cfg.epochs}",
            masks=fit_masks,
            box_loss_weight=cfg.box_loss_weight,
            ranks=ranks,
        )
        if not is_main:
            continue
        scores, maps = predict(model, val.images, preprocess, device, with_attention=True)
        val_acc = float((scores.argmax(1) == val.labels).mean())
        val_loss = _val_loss(scores, val.labels)
        val_box = _val_box_loss(maps, val.masks)
        wall += time.perf_counter() - t0
        row = {
            "epoch": epoch,
            "train_loss": tr["loss"],
            "train_acc": tr["acc"],
            "train_box_loss": tr["box_loss"],
            "val_loss": val_loss,
            "val_box_loss": val_box,
            "val_acc": val_acc,
            "lr": scheduler.get_last_lr()[0],
            "wall_seconds": round(wall, 1),
        }
        log.append(row)
        _write_log(out, log)
        print(json.dumps(row), flush=True)
        tie = val_box if cfg.select == "val_box_loss" else val_loss
        if (val_acc, -tie) > (best["val_acc"], -best.get("tie", best["val_loss"])):
            best = {"val_acc": val_acc, "val_loss": val_loss, "tie": tie, "epoch": epoch}
            card.metrics = {"val_top1": val_acc, "val_loss": val_loss, "best_epoch": epoch}
            save_checkpoint(model, out / "best", card)
        save_resume_state(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "generator": generator.get_state(),
                "epoch": epoch,
                "log": json.dumps(log),
                "best": json.dumps(best),
                "wall": wall,
            },
            out / "last.pt",
        )

    if ranks is not None:
        dist.destroy_process_group()  # the remaining steps are rank 0's alone
        if not is_main:
            return card
    # Score the chosen checkpoint once on the held-out test list (nothing is chosen on it), then fit
    # the temperature on the validation slice.
    model, card = load_checkpoint(out / "best", map_location=device)
    scores, _ = predict(model, test.images, preprocess, device)
    report = classification_report(scores, test.labels, data.classes)
    card.metrics |= {
        "test_top1": report["top1"],
        "test_top5": report["top5"],
        "test_n": report["n"],
        "epochs": cfg.epochs,
    }
    card.training |= {"wall_seconds": round(wall, 1)}
    save_checkpoint(model, out / "best", card)
    calibrate_checkpoint(out / "best", cfg.data, cfg.manifest)
    card = load_checkpoint(out / "best")[1]
    print(json.dumps({"test_top1": report["top1"], "test_top5": report["top5"], "wall_seconds": wall}), flush=True)
    return card
