"""ILCS follows Table 1 and the design note's parameter predictions."""

import pytest
import torch

from model_zoo import create_model
from model_zoo.models import LCSBlock


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(("size", "maps"), [(300, (150, 75, 37)), (200, (100, 50, 25))])
def test_blocks_halve_the_map_as_table1(size, maps):
    model = create_model("ilcs", input_size=size).eval()
    x = torch.zeros(1, 3, size, size)
    with torch.no_grad():
        for block, side, chs in zip(model.lcs, maps, (64, 128, 256), strict=True):
            x = block(x)
            assert x.shape == (1, chs, side, side)


def test_block_layers_are_table1_filters():
    block = LCSBlock(3, 64)
    assert block.conv1[0].weight.shape == (32, 3, 1, 1)
    assert block.conv2[0].weight.shape == (32, 1, 1, 3) and block.conv2[0].groups == 32
    assert block.conv3[0].weight.shape == (32, 1, 3, 1) and block.conv3[0].groups == 32
    assert block.conv4[0].weight.shape == (64, 32, 2, 1)  # the "1x2" conv: 2 x Cin x Cout weights
    assert isinstance(block.conv1[2], torch.nn.ReLU6)


def test_paper_head_reproduces_the_papers_parameter_count():
    # DESIGN.md: 2.236M at 300x300 (paper: 2.24M), 1.093M at 200x200.
    assert 2.22e6 < n_params(create_model("ilcs", head="paper", input_size=300)) < 2.25e6
    assert 1.08e6 < n_params(create_model("ilcs", head="paper", input_size=200)) < 1.10e6


def test_shipped_gap_head_is_small_and_size_independent():
    n = n_params(create_model("ilcs"))
    assert 0.19e6 < n < 0.21e6
    assert n == n_params(create_model("ilcs", input_size=300))


def test_paper_head_refuses_another_input_size():
    model = create_model("ilcs", head="paper", input_size=200).eval()
    with pytest.raises(RuntimeError):
        model(torch.zeros(1, 3, 300, 300))


def test_pool_downsample_variant_keeps_shapes():
    model = create_model("ilcs", downsample="pool", input_size=64).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 6)
    with pytest.raises(ValueError, match="downsample"):
        create_model("ilcs", downsample="stride")


def test_without_miam_the_map_is_activation_energy():
    model = create_model("ilcs", attn_layer=None, input_size=64).eval()
    with torch.no_grad():
        att = model.forward_with_attention(torch.randn(2, 3, 64, 64)).attention
    assert att.amax(dim=(2, 3)).allclose(torch.ones(2, 1))
