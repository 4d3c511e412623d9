"""service.heatmap: the PNG the service writes is the PNG every decoder reads back, pixel for pixel."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from service.heatmap import encode_png, render_heatmap


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (200, 200), (37, 53), (1, 1, 3), (2, 5, 3), (48, 64, 3)])
def test_encode_png_round_trips_gray_and_rgb_exactly(shape):
    pixels = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    with Image.open(io.BytesIO(encode_png(pixels))) as img:
        img.verify()  # chunk CRCs and structure
    with Image.open(io.BytesIO(encode_png(pixels))) as img:
        assert img.format == "PNG" and img.mode == ("L" if len(shape) == 2 else "RGB")
        np.testing.assert_array_equal(np.asarray(img), pixels)


@pytest.mark.parametrize(
    "bad", [np.zeros((4, 4), np.float32), np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 2), np.uint8)]
)
def test_encode_png_refuses_what_it_cannot_write(bad):
    with pytest.raises(ValueError, match="uint8"):
        encode_png(bad)


def test_the_gray_heatmap_is_the_scaled_map_at_the_image_size():
    attention = np.array([[0.0, 1.0], [2.0, 4.0]], np.float32)
    image = np.zeros((30, 50), np.uint8)
    heatmap = render_heatmap(attention, image, "gray")
    with Image.open(io.BytesIO(base64.b64decode(heatmap.data))) as img:
        pixels = np.asarray(img)
    assert pixels.shape == (30, 50) and (heatmap.width, heatmap.height) == (50, 30)
    assert pixels.min() == 0 and pixels.max() == 255, "min-max scaled to the full 8 bits"
    assert pixels[0, 0] < pixels[0, -1] < pixels[-1, -1], "the strongest corner stays the strongest"
