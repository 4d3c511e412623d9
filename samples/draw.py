"""Draw the sample images of the README: one synthetic 200 x 200 gray strip per NEU class.

They are drawings made here from random numbers (numpy, Pillow), not NEU images nor
anything derived from them: a strip-like background with the look of each defect
class sketched on it, so that every example of the README has a file to send.
They show how to call the service; what the model answers on them measures nothing.

    python samples/draw.py          # rewrites samples/*.png, samples/inclusion.bmp, samples/scratches.raw
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIZE = 200
OUT = Path(__file__).resolve().parent


def background(rng: np.random.Generator) -> Image.Image:
    """Rolled steel: mid gray, streaks along the rolling direction (x), fine grain."""
    streaks = rng.normal(0, 6, size=(SIZE, 1)) + rng.normal(0, 2, size=(SIZE, SIZE))
    img = np.clip(128 + streaks + rng.normal(0, 4, size=(SIZE, SIZE)), 0, 255).astype(np.uint8)
    return Image.fromarray(img).filter(ImageFilter.GaussianBlur(0.6))


def crazing(rng: np.random.Generator) -> Image.Image:
    img = background(rng)
    d = ImageDraw.Draw(img)
    for _ in range(90):  # short dark cracks meeting at angles
        x, y = rng.uniform(0, SIZE, 2)
        for _ in range(4):
            nx, ny = x + rng.normal(0, 9), y + rng.normal(0, 5)
            d.line([(x, y), (nx, ny)], fill=int(rng.integers(70, 100)), width=1)
            x, y = nx, ny
    return img.filter(ImageFilter.GaussianBlur(0.5))


def inclusion(rng: np.random.Generator) -> Image.Image:
    img = background(rng)
    d = ImageDraw.Draw(img)
    for _ in range(7):  # dark slivers stretched along the rolling direction
        x, y = rng.uniform(10, SIZE - 40), rng.uniform(10, SIZE - 10)
        length, thick = rng.uniform(15, 45), rng.uniform(2, 5)
        d.ellipse([x, y, x + length, y + thick], fill=int(rng.integers(40, 75)))
    return img.filter(ImageFilter.GaussianBlur(0.8))


def patches(rng: np.random.Generator) -> Image.Image:
    base = np.asarray(background(rng), dtype=np.float32)
    low = Image.fromarray(rng.uniform(0, 255, size=(8, 8)).astype(np.uint8)).resize((SIZE, SIZE), Image.BICUBIC)
    mask = np.asarray(low.filter(ImageFilter.GaussianBlur(6)), dtype=np.float32) > 150
    soft = np.asarray(Image.fromarray((mask * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(4))) / 255.0
    return Image.fromarray(np.clip(base - 55 * soft, 0, 255).astype(np.uint8))


def pitted_surface(rng: np.random.Generator) -> Image.Image:
    img = background(rng)
    d = ImageDraw.Draw(img)
    for _ in range(160):  # small dark pits, some with a bright rim
        x, y, r = rng.uniform(0, SIZE), rng.uniform(0, SIZE), rng.uniform(0.8, 2.6)
        d.ellipse([x - r - 1, y - r - 1, x + r + 1, y + r + 1], fill=int(rng.integers(140, 165)))
        d.ellipse([x - r, y - r, x + r, y + r], fill=int(rng.integers(35, 80)))
    return img


def rolled_in_scale(rng: np.random.Generator) -> Image.Image:
    img = background(rng)
    d = ImageDraw.Draw(img)
    for _ in range(70):  # flakes pressed into the surface, in bands across the strip
        band = rng.choice([40, 100, 160])
        x, y = rng.uniform(0, SIZE), band + rng.normal(0, 14)
        pts = [(x + rng.normal(0, 4), y + rng.normal(0, 3)) for _ in range(5)]
        d.polygon(pts, fill=int(rng.choice([rng.integers(50, 85), rng.integers(170, 205)])))
    return img.filter(ImageFilter.GaussianBlur(0.7))


def scratches(rng: np.random.Generator) -> Image.Image:
    img = background(rng)
    d = ImageDraw.Draw(img)
    for _ in range(4):  # long thin lines across the strip, bright with a dark edge
        x0, x1 = rng.uniform(20, SIZE - 20, 2)
        d.line([(x0 + 1, 0), (x1 + 1, SIZE)], fill=90, width=1)
        d.line([(x0, 0), (x1, SIZE)], fill=int(rng.integers(185, 220)), width=int(rng.integers(1, 3)))
    return img.filter(ImageFilter.GaussianBlur(0.4))


CLASSES = {
    "crazing": crazing,
    "inclusion": inclusion,
    "patches": patches,
    "pitted_surface": pitted_surface,
    "rolled-in_scale": rolled_in_scale,
    "scratches": scratches,
}


def main() -> None:
    for seed, (name, draw) in enumerate(CLASSES.items()):
        img = draw(np.random.default_rng(seed))
        img.save(OUT / f"{name}.png", optimize=True)
        if name == "inclusion":
            img.save(OUT / f"{name}.bmp")  # the README's image/bmp example
        if name == "scratches":  # the README's raw-frame example: 200 x 200 bytes, row by row
            (OUT / f"{name}.raw").write_bytes(np.asarray(img, dtype=np.uint8).tobytes())
    print(f"wrote {len(CLASSES)} samples to {OUT}")


if __name__ == "__main__":
    main()
