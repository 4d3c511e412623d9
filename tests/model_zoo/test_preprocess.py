"""One preprocessing path: every image format becomes the same gray tensor."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from model_zoo.preprocess import ImageDecodeError, ImageTooLargeError, Preprocess, decode_gray


def encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture
def gray():
    return np.random.default_rng(0).integers(0, 256, (40, 50), dtype=np.uint8)


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF"])
def test_lossless_formats_decode_to_the_same_gray(gray, fmt):
    assert np.array_equal(decode_gray(encode(Image.fromarray(gray), fmt)), gray)


def test_rgb_with_equal_channels_is_its_gray(gray):
    rgb = np.stack([gray] * 3, axis=-1)
    assert np.array_equal(decode_gray(encode(Image.fromarray(rgb), "PNG")), gray)


def test_rgba_drops_alpha_and_palette_expands(gray):
    rgba = np.dstack([gray, gray, gray, np.full_like(gray, 7)])
    assert np.array_equal(decode_gray(encode(Image.fromarray(rgba, "RGBA"), "PNG")), gray)
    pal = Image.fromarray(gray).convert("P")
    assert decode_gray(encode(pal, "PNG")).shape == gray.shape


def test_16bit_scales_full_range_to_8bit():
    arr16 = np.array([[0, 65535], [32896, 257]], dtype=np.uint16)
    out = decode_gray(encode(Image.fromarray(arr16), "PNG"))
    assert out.tolist() == [[0, 255], [128, 1]]


def test_truncated_and_garbage_bytes_raise_decode_error(gray):
    data = encode(Image.fromarray(gray), "PNG")
    with pytest.raises(ImageDecodeError):
        decode_gray(data[: len(data) // 2])
    with pytest.raises(ImageDecodeError):
        decode_gray(b"not an image at all")


def test_pixel_limit_is_checked_before_decoding():
    big = encode(Image.new("L", (3000, 3000)), "PNG")  # compresses to a few KB: a decompression bomb
    with pytest.raises(ImageTooLargeError, match="9000000 pixels"):
        decode_gray(big, max_pixels=1_000_000)


def test_preprocess_normalises_with_paper_mean_std_and_replicates_gray():
    pre = Preprocess(input_size=4)
    x = pre(np.full((4, 4), 102, dtype=np.uint8))  # 102/255 = 0.4 -> 0 after normalisation
    assert x.shape == (1, 3, 4, 4)
    torch.testing.assert_close(x, torch.zeros(1, 3, 4, 4), atol=1e-6, rtol=0)
    white = pre(np.full((4, 4), 255, dtype=np.uint8))
    torch.testing.assert_close(white, torch.full((1, 3, 4, 4), 3.0))


def test_preprocess_resizes_to_the_model_input_and_refuses_floats():
    pre = Preprocess(input_size=16)
    assert pre(np.zeros((2, 30, 20), dtype=np.uint8)).shape == (2, 3, 16, 16)
    with pytest.raises(TypeError, match="uint8"):
        pre(np.zeros((4, 4), dtype=np.float32))
