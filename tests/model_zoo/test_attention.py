"""The attention modules compute the paper's equations (4)-(11)."""

import pytest
import torch
from torch.nn import functional as F

from model_zoo.layers import MIAM, ChannelAttention, InteractiveAttention, SpatialAttention, create_attn


def test_spatial_attention_is_eq4_sigmoid_of_conv_over_channel_mean_and_max():
    sa = SpatialAttention(kernel_size=3)
    with torch.no_grad():
        sa.conv.weight.zero_()
        sa.conv.weight[0, 0, 1, 1] = 1.0  # picks the channel mean at the centre tap
        sa.conv.weight[0, 1, 1, 1] = 2.0  # plus twice the channel max
    x = torch.tensor([[[[1.0, -2.0], [0.0, 3.0]], [[3.0, 0.0], [0.0, 1.0]]]])  # 1 x 2 x 2 x 2
    mean = torch.tensor([[2.0, -1.0], [0.0, 2.0]])
    mx = torch.tensor([[3.0, 0.0], [0.0, 3.0]])
    expected = torch.sigmoid(mean + 2 * mx)
    torch.testing.assert_close(sa.attention(x)[0, 0], expected)
    torch.testing.assert_close(sa(x), x * expected)


def test_spatial_attention_rejects_even_kernel():
    with pytest.raises(ValueError, match="odd kernel_size"):
        SpatialAttention(kernel_size=4)


def test_channel_attention_is_eq6_shared_mlp_over_avg_and_max():
    ca = ChannelAttention(channels=2, reduction=1, min_hidden=1)
    with torch.no_grad():
        ca.fc0.weight.copy_(torch.eye(2).view(2, 2, 1, 1))
        ca.fc1.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0]]).view(2, 2, 1, 1))
    x = torch.tensor([[[[1.0, 3.0], [2.0, 2.0]], [[-1.0, 4.0], [0.0, 1.0]]]])
    avg, mx = x.mean(dim=(2, 3)), x.amax(dim=(2, 3))
    w1 = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    mlp = lambda v: F.relu(v) @ w1.T  # noqa: E731 - W1(ReLU(W0 v)) with W0 = I
    expected = torch.sigmoid(mlp(avg) + mlp(mx)).view(1, 2, 1, 1)
    torch.testing.assert_close(ca.attention(x), expected)
    torch.testing.assert_close(ca(x), x * expected)


def test_channel_attention_hidden_width_follows_reduction():
    assert ChannelAttention(256, reduction=16).fc0.out_channels == 16
    assert ChannelAttention(32, reduction=16).fc0.out_channels == 8  # floor of min_hidden


def test_interactive_attention_is_eq8_map_times_its_transpose():
    x = torch.arange(2 * 9, dtype=torch.float32).view(1, 2, 3, 3)
    out = InteractiveAttention()(x)
    for c in range(2):
        for i in range(3):
            for j in range(3):
                assert out[0, c, i, j] == x[0, c, i, j] * x[0, c, j, i]


def test_interactive_attention_refuses_non_square_maps_with_a_clear_error():
    with pytest.raises(ValueError, match="square"):
        InteractiveAttention()(torch.zeros(1, 4, 5, 6))


def test_miam_is_eq9_to_11():
    torch.manual_seed(0)
    miam = MIAM(channels=32)
    x = torch.randn(2, 32, 5, 5)
    f1 = miam.channel.attention(x) * x
    f2 = miam.spatial.attention(f1) * f1
    expected = f2 + x * x.transpose(-1, -2)
    out = miam.forward_with_attention(x)
    torch.testing.assert_close(out.features, expected)
    torch.testing.assert_close(out.attention, miam.spatial.attention(f1))
    assert out.attention.shape == (2, 1, 5, 5)
    assert ((out.attention > 0) & (out.attention < 1)).all()


def test_miam_parameters_are_the_channel_mlp_and_one_3x3_conv():
    miam = MIAM(channels=256)
    assert sum(p.numel() for p in miam.parameters()) == 2 * 256 * 16 + 2 * 3 * 3


def test_miam_with_a_learnable_interactive_weight_starting_at_zero_begins_as_channel_then_spatial():
    torch.manual_seed(0)
    miam = MIAM(channels=32, interactive_scale_init=0.0)
    x = torch.randn(2, 32, 5, 5)
    f1 = miam.channel.attention(x) * x
    torch.testing.assert_close(miam(x), miam.spatial.attention(f1) * f1)
    assert sum(p.numel() for p in miam.parameters()) == sum(p.numel() for p in MIAM(32).parameters()) + 1
    miam(x).sum().backward()
    assert miam.gamma.grad is not None and miam.gamma.grad != 0  # it learns how much interaction to add


def test_miam_interactive_weight_scales_eq11s_interactive_term():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 4, 4)
    paper, scaled = MIAM(channels=8), MIAM(channels=8, interactive_scale_init=0.5)
    scaled.load_state_dict(paper.state_dict() | {"gamma": scaled.gamma.detach()})
    torch.testing.assert_close(paper(x) - scaled(x), 0.5 * x * x.transpose(-1, -2))


def test_create_attn_builds_by_name_and_rejects_unknown_names():
    assert isinstance(create_attn("miam", 64), MIAM)
    assert isinstance(create_attn(None, 64), torch.nn.Identity)
    with pytest.raises(ValueError, match="unknown attention"):
        create_attn("se", 64)
