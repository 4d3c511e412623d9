"""ILCS's switchable speed option ``pool_at``: the default is the paper's block, "early" keeps shapes and weights."""

import pytest
import torch

from model_zoo import create_model
from model_zoo.models import LCSBlock


def test_default_block_is_the_papers_order():
    # Fig. 2: Conv1, CA, dw 1x3, SA, max pool 1x2, dw 3x1, SA, Conv4, CA.
    torch.manual_seed(0)
    block = LCSBlock(3, 64).eval()
    x = torch.randn(2, 3, 20, 20)
    with torch.no_grad():
        y = block.ca1(block.conv1(x))
        y = block.pool(block.sa2(block.conv2(y)))
        y = block.ca4(block.conv4(block.sa3(block.conv3(y))))
        assert torch.equal(block(x), y)
    assert not block.pool_early


def test_early_pool_runs_the_depthwise_part_at_half_width():
    torch.manual_seed(0)
    block = LCSBlock(3, 64, pool_at="early").eval()
    x = torch.randn(2, 3, 20, 20)
    seen = []
    block.conv2.register_forward_hook(lambda m, i, o: seen.append(o.shape[-2:]))
    with torch.no_grad():
        y = block.pool(block.ca1(block.conv1(x)))
        y = block.sa3(block.conv3(block.sa2(block.conv2(y))))
        assert torch.equal(block(x), block.ca4(block.conv4(y)))
    assert seen[0] == (20, 10)


@pytest.mark.parametrize("size", [200, 300, 160])
def test_early_pool_keeps_output_shapes_and_weights(size):
    default = create_model("ilcs", input_size=size).eval()
    early = create_model("ilcs", input_size=size, pool_at="early").eval()
    # Same parameters: the shipped checkpoint's state dict loads strictly into the variant.
    early.load_state_dict(default.state_dict(), strict=True)
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        a, b = default.forward_with_attention(x), early.forward_with_attention(x)
    assert a.logits.shape == b.logits.shape == (1, 6)
    assert a.attention.shape == b.attention.shape
    with torch.no_grad():  # a different function, so the variant needs its own training
        assert not torch.allclose(default.lcs[0](x), early.lcs[0](x))


def test_default_is_unchanged_and_bad_values_are_refused():
    assert all(not block.pool_early for block in create_model("ilcs").lcs)
    with pytest.raises(ValueError, match="pool_at"):
        create_model("ilcs", pool_at="late")
    with pytest.raises(ValueError, match="only with downsample='separable'"):
        create_model("ilcs", pool_at="early", downsample="pool")
