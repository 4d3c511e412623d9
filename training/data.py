"""Reading an image folder once into memory.

Two layouts are understood:

* NEU-DET: ``<root>/images/<class>_<n>.jpg`` (label = the filename up to its last ``_``);
* one folder per class: ``<root>/<class>/<anything>.<ext>``.

In the NEU-DET layout, ``<root>/annotations/<stem>.xml`` (Pascal VOC) gives each image
the boxes of its own class, kept as a mask for the heatmap's weak box supervision.

Every image is decoded once, with the model zoo's ``decode_gray``, into a uint8
cache, so the CPU spends its epochs on the model and not on JPEG decoding.
Labels are sorted alphabetically, as the NEU README prescribes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from model_zoo.preprocess import decode_gray
from training.localisation import box_mask, read_boxes

__all__ = ["IMAGE_SUFFIXES", "ImageSet", "load_image_folder"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


@dataclass
class ImageSet:
    root: Path
    names: list[str]  # file names (NEU) or <class>/<file> (folder layout), the manifest's keys
    labels: np.ndarray  # int64 index into ``classes``
    classes: list[str]
    images: list[np.ndarray] = field(repr=False)  # H x W uint8 each
    digests: list[str] = field(repr=False)  # sha256 of each file's bytes (duplicate detection)
    masks: list[np.ndarray | None] = field(default=None, repr=False)  # H x W bool box mask of the own class

    def __post_init__(self) -> None:
        if self.masks is None:
            self.masks = [None] * len(self.names)

    @property
    def has_boxes(self) -> bool:
        return any(m is not None for m in self.masks)

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, names: list[str]) -> ImageSet:
        index = {n: i for i, n in enumerate(self.names)}
        missing = [n for n in names if n not in index]
        if missing:
            msg = f"{len(missing)} names of the split manifest are not in {self.root} (first: {missing[0]})"
            raise ValueError(msg)
        idx = [index[n] for n in names]
        return ImageSet(
            self.root,
            [self.names[i] for i in idx],
            self.labels[idx],
            self.classes,
            [self.images[i] for i in idx],
            [self.digests[i] for i in idx],
            [self.masks[i] for i in idx],
        )


def _neu_label(name: str) -> str:
    stem = Path(name).stem
    label, sep, _ = stem.rpartition("_")
    if not sep:
        msg = f"NEU file {name!r} has no '<class>_<n>' name, so its label is unknown"
        raise ValueError(msg)
    return label


def _list_files(root: Path) -> tuple[list[tuple[str, Path]], list[str]]:
    images_dir = root / "images"
    if images_dir.is_dir():
        files = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        return [(p.name, p) for p in files], [_neu_label(p.name) for p in files]
    pairs, labels = [], []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for p in sorted(class_dir.iterdir()):
            if p.suffix.lower() in IMAGE_SUFFIXES:
                pairs.append((f"{class_dir.name}/{p.name}", p))
                labels.append(class_dir.name)
    return pairs, labels


def load_image_folder(root: str | Path, classes: list[str] | None = None, progress: bool = True) -> ImageSet:
    """Decode every image under ``root`` once.

    Args:
        root: A NEU-DET folder or a folder with one sub-folder per class.
        classes: Label order to use (a checkpoint's labels); default: sorted labels found.
        progress: Show a progress bar while decoding.
    """
    root = Path(root)
    if not root.is_dir():
        msg = f"data folder {root} does not exist"
        raise FileNotFoundError(msg)
    files, label_names = _list_files(root)
    if not files:
        msg = f"no images ({', '.join(IMAGE_SUFFIXES)}) in {root}/images or in class sub-folders of {root}"
        raise ValueError(msg)
    classes = classes or sorted(set(label_names))
    unknown = sorted(set(label_names) - set(classes))
    if unknown:
        msg = f"images of classes {unknown} in {root} are not among the model's labels {classes}"
        raise ValueError(msg)
    images, digests = [], []
    for _, path in tqdm(files, desc=f"decoding {root.name}", unit="img", disable=not progress):
        data = path.read_bytes()
        digests.append(hashlib.sha256(data).hexdigest())
        images.append(decode_gray(data))
    labels = np.array([classes.index(n) for n in label_names], dtype=np.int64)
    names = [n for n, _ in files]
    masks = [
        _own_class_mask(root, n, label, img.shape) for n, label, img in zip(names, label_names, images, strict=True)
    ]
    return ImageSet(root, names, labels, classes, images, digests, masks)


def _own_class_mask(root: Path, name: str, label: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """The boxes of the image's own class as an H x W mask, or None without an annotation (or boxes)."""
    xml = root / "annotations" / (Path(name).stem + ".xml")
    if not xml.is_file():
        return None
    mask = box_mask(read_boxes(xml, label), shape[0], shape[1])
    return mask if mask.any() else None
