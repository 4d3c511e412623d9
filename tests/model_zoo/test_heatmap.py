"""model_zoo.heatmap: the attention map at the image's size, and its coloured overlay."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps

from model_zoo.heatmap import overlay, upsample_attention


def test_upsample_attention_reaches_the_image_size_and_spans_zero_to_one():
    heat = upsample_attention(np.arange(16, dtype=np.float32).reshape(4, 4), 37, 53)
    assert heat.shape == (37, 53)
    assert heat.min() == 0.0 and heat.max() == 1.0


def test_a_flat_map_upsamples_to_zeros_not_nan():
    assert not upsample_attention(np.full((5, 5), 0.3), 20, 20).any()


def test_overlay_is_the_blend_of_image_and_colour_map_in_eight_bits():
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (40, 30), dtype=np.uint8)
    heat = rng.random((40, 30))
    out = overlay(gray, heat, alpha=0.45)
    reference = 0.55 * gray[..., None] + 0.45 * 255.0 * colormaps["jet"](heat)[..., :3]
    assert out.shape == (40, 30, 3) and out.dtype == np.uint8
    # a 256-entry table of jet (steep: ~4 levels per entry) and fixed-point weights: within 3 levels
    assert np.abs(out.astype(float) - reference).max() <= 3.0


def test_overlay_puts_red_where_attention_is_strongest():
    gray = np.full((10, 10), 128, np.uint8)
    heat = np.zeros((10, 10))
    heat[0, 0] = 1.0
    out = overlay(gray, heat)
    assert out[0, 0, 0] > out[0, 0, 2]  # jet's top is red
    assert out[9, 9, 2] > out[9, 9, 0]  # and its bottom blue


def test_blur_moves_the_peak_from_a_lone_cell_to_the_region_with_the_most_mass():
    a = np.zeros((20, 20), np.float32)
    a[2, 2] = 1.0  # a lone spike
    a[12:17, 12:17] = 0.8  # a broad region, slightly dimmer
    assert np.unravel_index(upsample_attention(a, 20, 20).argmax(), (20, 20)) == (2, 2)
    peak = np.unravel_index(upsample_attention(a, 20, 20, blur=1.0).argmax(), (20, 20))
    assert 12 <= peak[0] <= 16 and 12 <= peak[1] <= 16


def test_gamma_narrows_the_bright_region_without_moving_the_peak_or_the_range():
    a = np.random.default_rng(0).random((8, 8)).astype(np.float32)
    plain, sharp = upsample_attention(a, 40, 40), upsample_attention(a, 40, 40, gamma=2.0)
    assert plain.argmax() == sharp.argmax()
    assert sharp.min() == 0.0 and sharp.max() == 1.0
    assert (sharp >= 0.5).sum() < (plain >= 0.5).sum()
    np.testing.assert_allclose(sharp, plain**2, atol=1e-6)
