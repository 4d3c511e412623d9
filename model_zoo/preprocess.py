"""The one preprocessing path: image bytes -> gray uint8 -> the model's tensor.

Training (after its augmentation), ``ilcs eval``, export and the service all call
``Preprocess``, built from the checkpoint's model card, so what the service feeds
the model is exactly what it was trained and measured on.

NEU images are gray stored as RGB (R = G = B). Every input is reduced to one
8-bit gray channel the same way: palette, RGBA and RGB images through PIL's
luminance conversion (alpha dropped), 16-bit and 32-bit images scaled by their
bit depth. The model sees that channel replicated to ``in_chans`` (paper: 3).

Decoding turns the picture upright by its EXIF orientation (a camera's rotated
JPEG is classified as it is seen; NEU's images carry none, so training on them is
unchanged) and reads the first frame of a multi-frame file. ``formats`` limits
which of Pillow's decoders may run: the service allows only the four it documents,
so an upload can never reach an exotic decoder (EPS would even start Ghostscript).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps
from torchvision.transforms.v2 import functional as TF

__all__ = ["NEU_MEAN", "NEU_STD", "ImageDecodeError", "ImageTooLargeError", "Preprocess", "decode_gray", "to_gray"]

NEU_MEAN = 0.4  # paper sec. 5.2: mean of all NEU pixels
NEU_STD = 0.2  # the paper's "variance 0.2", used as the std, as its code does with Normalize


class ImageDecodeError(ValueError):
    """The bytes are not a complete image PIL can read."""


class ImageTooLargeError(ValueError):
    """The image has more pixels than allowed (decompression-bomb guard)."""


def to_gray(img: Image.Image) -> np.ndarray:
    """Convert any PIL image to an H x W uint8 gray array, the training data's way."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        # 16-bit (and 32-bit integer holding 16-bit data) maps full scale to 255.
        scale = 65535.0 if img.mode.startswith("I;16") or arr.max(initial=0) <= 65535 else 2.0**32 - 1
        return np.clip(np.round(arr / scale * 255.0), 0, 255).astype(np.uint8)
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        if not np.isfinite(arr).all():
            msg = "the floating-point image holds NaN or infinite values; send finite pixel values"
            raise ImageDecodeError(msg)
        return np.clip(np.round(arr * 255.0 if arr.max(initial=0) <= 1.0 else arr), 0, 255).astype(np.uint8)
    if img.mode in ("P", "PA", "LA", "RGBA", "CMYK", "YCbCr", "1"):
        img = img.convert("RGB")
    return np.asarray(img.convert("L"), dtype=np.uint8).copy()


def decode_gray(data: bytes, max_pixels: int | None = None, formats: tuple[str, ...] | None = None) -> np.ndarray:
    """Decode image bytes (JPEG, PNG, BMP, TIFF...) to an H x W uint8 gray array, upright, first frame.

    Args:
        data: The file's bytes.
        max_pixels: Refuse images declaring more pixels than this.
        formats: Pillow format names allowed (e.g. ``("JPEG", "PNG")``); None allows every one Pillow reads.

    Raises:
        ImageTooLargeError: The header declares more than ``max_pixels`` pixels
            (checked before any pixel is decoded).
        ImageDecodeError: The bytes are not a complete, readable image.
    """
    try:
        with Image.open(io.BytesIO(data), formats=formats) as img:
            w, h = img.size
            if max_pixels is not None and w * h > max_pixels:
                msg = f"image is {w}x{h} = {w * h} pixels, more than the limit of {max_pixels}"
                raise ImageTooLargeError(msg)
            img.load()
            ImageOps.exif_transpose(img, in_place=True)
            return to_gray(img)
    except ImageTooLargeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - on hostile bytes Pillow's plugins raise OSError, SyntaxError,
        # ValueError, but also struct.error, EOFError, IndexError, ZeroDivisionError...: all mean "not a readable image"
        msg = f"could not decode the image ({exc}); send a complete JPEG, PNG, BMP or TIFF file"
        raise ImageDecodeError(msg) from exc


@dataclass(frozen=True)
class Preprocess:
    """Gray uint8 images -> normalised float batch of shape B x in_chans x S x S.

    Args:
        input_size: Side S of the square model input.
        mean: Normalisation mean on the [0, 1] scale (paper: 0.4).
        std: Normalisation std (paper: 0.2).
        in_chans: Channels the model takes; the gray channel is replicated.
    """

    input_size: int = 160
    mean: float = NEU_MEAN
    std: float = NEU_STD
    in_chans: int = 3

    @classmethod
    def from_card(cls, card) -> Preprocess:
        """Build from a checkpoint's model card (``input_size``, ``mean``, ``std``, ``in_chans``)."""
        return cls(card.input_size, card.mean, card.std, card.in_chans)

    def __call__(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Preprocess uint8 gray images: H x W, B x H x W or B x 1 x H x W (one size per call)."""
        return self.normalise(self.gray_batch(images))

    def gray_batch(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Uint8 gray images (H x W, B x H x W or B x 1 x H x W) as a B x 1 x H x W uint8 tensor, checked."""
        x = torch.as_tensor(images)
        if x.dtype != torch.uint8:
            msg = f"Preprocess takes uint8 gray images, got {x.dtype}"
            raise TypeError(msg)
        if x.ndim == 2:
            x = x[None, None]
        elif x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4 or x.shape[1] != 1:
            msg = f"Preprocess takes H x W, B x H x W or B x 1 x H x W gray images, got shape {tuple(x.shape)}"
            raise ValueError(msg)
        return x

    def normalise(self, gray: torch.Tensor) -> torch.Tensor:
        """A B x 1 x H x W uint8 batch -> the model's B x in_chans x S x S float input, on ``gray``'s device.

        The arithmetic of the one preprocessing, wherever it runs: a GPU is sent one uint8 channel
        (a twelfth of the bytes of three float ones) and scales, resizes, normalises and expands it itself.
        """
        x = gray.float().div_(255.0)
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = TF.resize(x, [self.input_size, self.input_size], antialias=True)
        x = TF.normalize(x, [self.mean], [self.std])
        return x.expand(-1, self.in_chans, -1, -1).contiguous(memory_format=torch.channels_last)
