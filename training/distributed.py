"""Training on several processes: ``torchrun ... -m ilcs_cli train`` runs DistributedDataParallel.

torchrun sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; with more than one process ``ilcs train``
joins the process group (gloo on the CPU, NCCL on GPUs, one GPU per local rank), wraps the model
in DistributedDataParallel, and each step shares one global batch of the recipe's size among the
ranks (``shard``): the epoch's shuffled order is the same on every rank (same seed), torch's
``DistributedSampler`` deals it out, so the global batches and the learning-rate schedule are those
of one process. Gradients are averaged over the ranks, which equals the single-process gradient of
the global batch, and BatchNorm normalises over the whole global batch too (``sync_batchnorm``:
torch's SyncBatchNorm on GPUs, ``CrossRankBatchNorm`` on the CPU, where torch's refuses to run).
Only rank 0 validates, logs and writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_reduce
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

__all__ = [
    "CrossRankBatchNorm",
    "Ranks",
    "TrainingForward",
    "check_batch",
    "init_from_env",
    "shard",
    "share_of_batch",
    "sum_over_ranks",
    "sync_batchnorm",
    "wrap",
]


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env(device: torch.device) -> tuple[Ranks | None, torch.device]:
    """Join the process group torchrun describes; ``(None, device)`` when this is the only process.

    On CUDA each process takes the GPU of its local rank, so the returned device replaces ``device``.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return None, device
    ranks = Ranks(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return ranks, device


def check_batch(batch_size: int, ranks: Ranks) -> int:
    """The per-rank batch: the recipe's global batch split evenly, or a ``ValueError`` saying why not."""
    if batch_size % ranks.world_size:
        msg = (
            f"the global batch {batch_size} does not split evenly over {ranks.world_size} processes: "
            f"choose --batch-size a multiple of --nproc-per-node x --nnodes"
        )
        raise ValueError(msg)
    return batch_size // ranks.world_size


class TrainingForward(nn.Module):
    """The model's training forward as ``forward``: DistributedDataParallel synchronises only calls to it.

    ``forward(x, with_attention=True)`` is ``model.forward_with_attention(x)`` (logits and heatmap, for
    the box loss), else ``model(x)``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, with_attention: bool = False):
        return self.model.forward_with_attention(x) if with_attention else self.model(x)


class CrossRankBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of every rank's batch together, for the CPU (gloo).

    torch's SyncBatchNorm does this on GPUs only (its kernels and DistributedDataParallel refuse CPU
    modules). Here the mean and then the variance are summed over the ranks with the differentiable
    ``all_reduce``, so the gradient also flows through the other ranks' images, as in one process with
    the whole batch. Outside training, or in a single process, it is the plain BatchNorm; the parameter
    and buffer names are BatchNorm's, so a checkpoint loads into the unconverted model.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            msg = f"expected an input of at least 2 dimensions (N, C, ...), got {x.dim()}"
            raise ValueError(msg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        sums = all_reduce(torch.cat([x.sum(dims), x.new_tensor([x.numel() / x.size(1)])]))
        mean, count = sums[:-1] / sums[-1], sums[-1]
        centred = x - mean.view(shape)
        var = all_reduce(centred.square().sum(dims)) / count
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), float(count))
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, count: float) -> None:
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = var * count / max(count - 1.0, 1.0)
        self.running_mean.lerp_(mean, factor)
        self.running_var.lerp_(unbiased, factor)


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` with every BatchNorm layer normalising over the global batch (in place below the root).

    GPUs get torch's SyncBatchNorm; the CPU gets ``CrossRankBatchNorm``. Either keeps the layer's own
    parameter and buffer tensors, so an optimizer built before the conversion still trains them.
    """
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        setattr(model, name, sync_batchnorm(child, device))
    if isinstance(model, nn.modules.batchnorm._BatchNorm) and not isinstance(model, CrossRankBatchNorm):
        converted = CrossRankBatchNorm(
            model.num_features, model.eps, model.momentum, model.affine, model.track_running_stats
        )
        # The same Parameter and buffer objects, as torch's convert_sync_batchnorm keeps them: an optimizer built
        # on the model before the conversion goes on updating them.
        for name, tensor in [*model.named_parameters(recurse=False), *model.named_buffers(recurse=False)]:
            setattr(converted, name, tensor)
        converted.train(model.training)
        return converted
    return model


def wrap(model: nn.Module, device: torch.device) -> DistributedDataParallel:
    """``model`` (its BatchNorm layers made global by ``sync_batchnorm``) in DistributedDataParallel, rank 0's
    weights broadcast to every rank."""
    device_ids = [device] if device.type == "cuda" else None
    return DistributedDataParallel(TrainingForward(sync_batchnorm(model, device)), device_ids=device_ids)


def shard(order: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """This rank's share of the epoch's ``order``: its ``k``-th local batch is its part of global batch ``k``.

    ``DistributedSampler`` without shuffling deals ``order`` out round-robin (padding the end by
    repeating the first images so every rank takes as many steps), so local batch ``k`` of size
    ``B / world_size`` on every rank together make up ``order[k * B : (k + 1) * B]``.
    """
    sampler = DistributedSampler(order, num_replicas=ranks.world_size, rank=ranks.rank, shuffle=False)
    return order[list(sampler)]


def share_of_batch(count: int, ranks: Ranks) -> float:
    """``world_size x count / (count over every rank)``: the factor that turns this rank's mean into its part of
    the global batch's mean once DistributedDataParallel averages the ranks' gradients (0 when the total is 0).

    A loss averaged over only some images of each batch (the box loss: images with boxes) needs it, since the
    ranks' shares of those images differ.
    """
    (total,) = sum_over_ranks([float(count)])
    return ranks.world_size * count / total if total else 0.0


def sum_over_ranks(values: list[float]) -> list[float]:
    """Each value summed over every rank of the process group."""
    t = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":  # NCCL reduces GPU tensors only
        t = t.cuda()
    dist.all_reduce(t)
    return t.cpu().tolist()
