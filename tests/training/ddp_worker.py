"""One run of ``train_one_epoch`` (box loss included) on a model with BatchNorm, in one process or torchrun.

``python -m torch.distributed.run --nproc-per-node=N tests/training/ddp_worker.py OUT`` trains on every
rank, checks that every rank ends with the same weights, and rank 0 writes them and the epochs' figures
to OUT; test_distributed.py runs the same ``run`` in its own process and compares.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import NamedTuple

import torch
from torch import distributed as dist
from torch import nn

from model_zoo.preprocess import Preprocess
from training.distributed import Ranks, init_from_env, wrap
from training.engine import train_one_epoch

EPOCHS, BATCH, N_IMAGES, SIZE = 2, 8, 44, 12


class Output(NamedTuple):
    logits: torch.Tensor
    attention: torch.Tensor


class TinyAttentionNet(nn.Module):
    """A gated linear classifier with a heatmap, as the zoo's models have, and BatchNorm on the gate's path."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU())
        self.gate = nn.Conv2d(4, 1, 1)
        self.head = nn.Linear(SIZE * SIZE, 6)

    def forward_with_attention(self, x: torch.Tensor) -> Output:
        attention = torch.sigmoid(self.gate(self.features(x)))
        return Output(self.head((x * attention).flatten(1)), attention)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_attention(x).logits


def run(ranks: Ranks | None) -> tuple[nn.Module, list[dict[str, float]]]:
    """Train with the box loss on fixed random images, without augmentation: nothing random but the order."""
    torch.manual_seed(0)
    model = TinyAttentionNet()
    g = torch.Generator().manual_seed(1)
    images = [torch.randint(0, 256, (1, SIZE, SIZE), dtype=torch.uint8, generator=g) for _ in range(N_IMAGES)]
    labels = torch.randint(0, 6, (N_IMAGES,), generator=g)
    # Boxes on two images in three (the others have none, as some NEU images): the heatmap's loss is trained too.
    masks = [
        None if i % 3 == 0 else (torch.rand(1, SIZE, SIZE, generator=g) > 0.7).to(torch.uint8) for i in range(N_IMAGES)
    ]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
    net = model if ranks is None else wrap(model, torch.device("cpu"))
    order = torch.Generator().manual_seed(2)

    def no_augmentation(image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return image, mask

    figures = [
        train_one_epoch(
            net,
            images,
            labels,
            optimizer,
            scheduler,
            Preprocess(SIZE, mean=0.0, std=1.0, in_chans=1),  # x / 255
            no_augmentation,
            BATCH,
            order,
            torch.device("cpu"),
            masks=masks,
            box_loss_weight=1.0,
            ranks=ranks,
        )  # fmt: skip
        for _ in range(EPOCHS)
    ]
    return model, figures


def main(out: Path) -> None:
    ranks, _ = init_from_env(torch.device("cpu"))
    assert ranks is not None, "run me under torchrun with --nproc-per-node 2 or more"
    model, figures = run(ranks)
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    every = [torch.empty_like(flat) for _ in range(ranks.world_size)]
    dist.all_gather(every, flat)
    assert all(torch.equal(every[0], w) for w in every), "the ranks' weights differ: gradients were not synchronised"
    if ranks.is_main:
        torch.save(model.state_dict(), out / "weights.pt")
        (out / "figures.json").write_text(json.dumps(figures))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
