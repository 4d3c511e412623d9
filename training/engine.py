"""The inner loops: one training epoch, and batched prediction (validation, eval, reports)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from model_zoo.device import to_device
from model_zoo.preprocess import Preprocess
from model_zoo.served import ServedModel
from training.augment import augment_batch, augment_batch_with_masks
from training.distributed import Ranks, TrainingForward, check_batch, shard, share_of_batch, sum_over_ranks
from training.precision import MixedPrecision, mixed_precision

__all__ = ["ahead", "box_loss", "predict", "train_one_epoch"]

T = TypeVar("T")
R = TypeVar("R")


def box_loss(attention: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy between the heatmap (B x 1 x h x w, in [0, 1]) and the box masks area-pooled to h x w.

    Each map cell's target is the share of its area inside the image's boxes; images
    without boxes (``valid`` False) add nothing.
    """
    if not bool(valid.any()):
        return attention.new_zeros(())
    target = F.adaptive_avg_pool2d(masks, attention.shape[-2:])
    att = attention.float().clamp(1e-6, 1 - 1e-6)
    per_image = F.binary_cross_entropy(att, target, reduction="none").mean(dim=(1, 2, 3))
    return per_image[valid].mean()


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
    masks: Sequence[torch.Tensor | None] | None = None,
    box_loss_weight: float = 0.0,
    ranks: Ranks | None = None,
    precision: MixedPrecision | None = None,
    log_every: int = 20,
) -> dict[str, float]:
    """One pass over ``images`` (1 x H x W uint8 tensors) in a shuffled order; returns losses and accuracy.

    With ``box_loss_weight`` > 0 and ``masks`` (1 x H x W uint8 box masks, None where an image has
    none), the heatmap of ``forward_with_attention`` is pulled toward the boxes by ``box_loss``.
    With ``ranks`` (several processes), ``model`` is ``training.distributed.wrap``'s, ``batch_size``
    the global batch, and this rank trains on its share of each one; the figures returned are every rank's.
    ``precision`` defaults to ``mixed_precision(device)``: fp16 AMP on a GPU, fp32 elsewhere. The
    progress bar shows the running loss every ``log_every`` steps.
    """
    model.train()
    step = model if ranks is not None else TrainingForward(model)
    amp = precision or mixed_precision(device)
    supervise = box_loss_weight > 0 and masks is not None and any(m is not None for m in masks)
    order = torch.randperm(len(images), generator=generator)  # the same on every rank: the same generator
    if ranks is not None:
        order, batch_size = shard(order, ranks), check_batch(batch_size, ranks)
    # Running sums stay on the device (float64, as Python's floats were): reading them waits for the GPU,
    # so they are read only every ``log_every`` steps and at the end, never once per step.
    total_loss, total_box = (torch.zeros((), dtype=torch.float64, device=device) for _ in range(2))
    correct, seen = torch.zeros((), dtype=torch.int64, device=device), 0
    quiet = ranks is not None and not ranks.is_main
    # BatchNorm cannot train on a single image: a last batch of one is left out.
    batches = [
        order[s : s + batch_size] for s in range(0, len(order), batch_size) if len(order[s : s + batch_size]) > 1
    ]

    def augmented(idx: torch.Tensor) -> tuple:
        if supervise:
            return augment_batch_with_masks([images[i] for i in idx], [masks[i] for i in idx], transform)
        return (augment_batch([images[i] for i in idx], transform),)

    steps = ahead(augmented, batches, in_thread=device.type == "cuda")
    off = True if quiet else None  # None: tqdm shows no bar where stderr is not a terminal (a log file)
    bar = tqdm(zip(batches, steps, strict=True), total=len(batches), desc=desc, unit="batch", leave=False, disable=off)
    for n, (idx, batch) in enumerate(bar, 1):
        y = to_device(labels[idx], device)
        if supervise:
            x, m, valid = batch
            with amp.autocast():
                out = step(_to_input(x, preprocess, device), with_attention=True)
            logits = out.logits.float()
            # ``valid`` stays on the host: selecting with it needs no wait for the GPU.
            aux = box_loss(out.attention, to_device(m, device), valid)
            if ranks is not None:  # the mean over the global batch's boxed images, as one process takes it
                aux = aux * share_of_batch(int(valid.sum()), ranks)
            loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing) + box_loss_weight * aux
            total_box += aux.detach().double() * len(idx)
        else:
            (x,) = batch
            with amp.autocast():
                logits = step(_to_input(x, preprocess, device))
            logits = logits.float()
            loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        amp.backward_step(loss, optimizer)
        scheduler.step()
        total_loss += loss.detach().double() * len(idx)
        correct += (logits.argmax(1) == y).sum()
        seen += len(idx)
        if n % log_every == 0:
            bar.set_postfix(loss=f"{total_loss.item() / seen:.4f}", acc=f"{correct.item() / seen:.3f}")
    sums = [total_loss.item(), total_box.item(), correct.item(), seen]
    if ranks is not None:
        sums = sum_over_ranks(sums)
    total_loss, total_box, correct, seen = sums
    return {"loss": total_loss / max(seen, 1), "acc": correct / max(seen, 1), "box_loss": total_box / max(seen, 1)}


def ahead(fn: Callable[[T], R], items: Sequence[T], in_thread: bool) -> Iterator[R]:
    """``fn`` of each item in order; with ``in_thread``, one item ahead in a worker thread.

    On a GPU the CPU then augments the next batch while the GPU trains on this one (the optimiser
    step of a gradient scaler waits for the GPU once per step). Augmentation draws from the CPU's
    random generator, which the GPU's steps do not touch, so the order of the draws is the same.
    """
    if not in_thread:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(1, thread_name_prefix="augment") as pool:
        pending = None
        for item in items:
            submitted = pool.submit(fn, item)
            if pending is not None:
                yield pending.result()
            pending = submitted
        if pending is not None:
            yield pending.result()


def _to_input(x: torch.Tensor, preprocess: Preprocess, device: torch.device) -> torch.Tensor:
    """The augmented B x 1 x S x S uint8 batch as the model's input on ``device``: the uint8 crosses the bus
    (pinned, without waiting) and is normalised there, by the one preprocessing's arithmetic."""
    return preprocess.normalise(to_device(preprocess.gray_batch(x), device))


@torch.inference_mode()
def predict(
    model: nn.Module | ServedModel,
    images: Sequence[np.ndarray],
    preprocess: Preprocess,
    device: torch.device,
    batch_size: int = 32,
    with_attention: bool = False,
    progress: bool = False,
    temperature: float = 1.0,
    logits_only: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Softmax scores of ``logits / temperature`` (N x C; raw logits with ``logits_only``) for H x W uint8
    images, and the attention maps if asked.

    ``model`` is a model as trained (run eagerly in fp32), or ``model_zoo.served.serve_model``'s: the model
    as the service serves it on ``device`` (what ``ilcs eval`` measures)."""
    served = isinstance(model, ServedModel)
    if not served:
        model.eval()
    scores, maps = [], []
    for start in tqdm(range(0, len(images), batch_size), desc="predict", unit="batch", disable=not progress):
        batch = torch.cat([preprocess(img) for img in images[start : start + batch_size]]).to(device)
        if served:
            logits, attention = model(batch)
        elif with_attention:
            out = model.forward_with_attention(batch)
            logits, attention = out.logits, out.attention
        else:
            logits, attention = model(batch), None
        if with_attention:
            maps.append(attention.float().cpu().numpy()[:, 0])
        logits = logits.float()
        scores.append((logits if logits_only else torch.softmax(logits / temperature, dim=1)).cpu().numpy())
    return np.concatenate(scores), (np.concatenate(maps) if with_attention else None)
