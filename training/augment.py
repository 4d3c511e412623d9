"""Training augmentation: the paper's three (horizontal flip, random crop, Gaussian
blur) plus a vertical flip (NEU defects have no up or down), on uint8 gray images.

The output is still uint8 at the model's input size; ``model_zoo.preprocess.Preprocess``
then does exactly what evaluation and the service do.
"""

from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

__all__ = ["train_transform"]


def train_transform(input_size: int, crop_scale: tuple[float, float] = (0.8, 1.0), blur_p: float = 0.3) -> v2.Compose:
    """Augmentation for one 1 x H x W uint8 image, output 1 x input_size x input_size uint8."""
    return v2.Compose(
        [
            v2.RandomHorizontalFlip(),
            v2.RandomVerticalFlip(),
            v2.RandomResizedCrop(input_size, scale=crop_scale, ratio=(0.9, 1.1), antialias=True),
            v2.RandomApply([v2.GaussianBlur(5, sigma=(0.1, 1.5))], p=blur_p),
        ]
    )


def augment_batch(images: list[torch.Tensor], transform: v2.Compose) -> torch.Tensor:
    """Apply ``transform`` to each 1 x H x W image independently and stack to B x 1 x S x S."""
    return torch.stack([transform(img) for img in images])


def augment_batch_with_masks(
    images: list[torch.Tensor], masks: list[torch.Tensor | None], transform: v2.Compose
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Augment images and their box masks with the same flips and crop (blur leaves masks alone).

    Returns B x 1 x S x S uint8 images, B x 1 x S x S float masks (zeros where an image has
    none) and a B-long bool vector saying which images have a mask.
    """
    out_images, out_masks, valid = [], [], []
    for img, mask in zip(images, masks, strict=True):
        has = mask is not None
        m = mask if has else torch.zeros_like(img, dtype=torch.uint8)
        a, b = transform(tv_tensors.Image(img), tv_tensors.Mask(m))
        out_images.append(a.as_subclass(torch.Tensor))
        out_masks.append(b.as_subclass(torch.Tensor).float())
        valid.append(has)
    return torch.stack(out_images), torch.stack(out_masks), torch.tensor(valid)
