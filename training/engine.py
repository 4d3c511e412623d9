"""The inner loops: one training epoch, and batched prediction (validation, eval, reports)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from model_zoo.preprocess import Preprocess
from training.augment import augment_batch

__all__ = ["predict", "train_one_epoch"]


def train_one_epoch(
    model: nn.Module,
    images: Sequence[torch.Tensor],
    labels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    preprocess: Preprocess,
    transform,
    batch_size: int,
    generator: torch.Generator,
    device: torch.device,
    label_smoothing: float = 0.0,
    desc: str = "train",
) -> dict[str, float]:
    """One pass over ``images`` (1 x H x W uint8 tensors) in a shuffled order; returns loss and accuracy."""
    model.train()
    order = torch.randperm(len(images), generator=generator)
    total_loss, correct, seen = 0.0, 0, 0
    bar = tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", leave=False)
    for start in bar:
        idx = order[start : start + batch_size]
        if len(idx) < 2:  # BatchNorm cannot train on a single image
            continue
        x = preprocess(augment_batch([images[i] for i in idx], transform)).to(device)
        y = labels[idx].to(device)
        logits = model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total_loss += loss.item() * len(idx)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(idx)
        bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.3f}")
    return {"loss": total_loss / max(seen, 1), "acc": correct / max(seen, 1)}


@torch.inference_mode()
def predict(
    model: nn.Module,
    images: Sequence[np.ndarray],
    preprocess: Preprocess,
    device: torch.device,
    batch_size: int = 32,
    with_attention: bool = False,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Softmax scores (N x C) for H x W uint8 images, and the attention maps if asked."""
    model.eval()
    scores, maps = [], []
    for start in tqdm(range(0, len(images), batch_size), desc="predict", unit="batch", disable=not progress):
        batch = torch.cat([preprocess(img) for img in images[start : start + batch_size]]).to(device)
        if with_attention:
            out = model.forward_with_attention(batch)
            logits = out.logits
            maps.append(out.attention.float().cpu().numpy()[:, 0])
        else:
            logits = model(batch)
        scores.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
    return np.concatenate(scores), (np.concatenate(maps) if with_attention else None)
