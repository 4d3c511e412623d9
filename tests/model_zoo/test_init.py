"""One initialisation policy: paired backbones under one seed, attention gates that start unsaturated."""

import pytest
import torch

from model_zoo.layers import ChannelAttention, SpatialAttention
from model_zoo.registry import create_model


def _backbone(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not k.startswith("attn.")}


@pytest.mark.parametrize("name", ["ilcs", "effnet", "mobilenet_v2", "resnet50"])
def test_one_seed_gives_bit_identical_backbones_with_and_without_miam(name):
    torch.manual_seed(7)
    plain = create_model(name, attn_layer=None, input_size=64)
    torch.manual_seed(7)
    plus = create_model(name, attn_layer="miam", input_size=64)
    a, b = _backbone(plain), _backbone(plus)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(k.startswith("attn.") for k in plus.state_dict())  # MIAM really is there


def test_another_seed_gives_other_weights():
    torch.manual_seed(0)
    a = create_model("ilcs", input_size=64).state_dict()
    torch.manual_seed(1)
    b = create_model("ilcs", input_size=64).state_dict()
    assert not torch.equal(a["lcs.0.conv1.0.weight"], b["lcs.0.conv1.0.weight"])


def test_gate_convs_get_pytorchs_default_scale_and_backbone_convs_he_fan_out():
    torch.manual_seed(0)
    model = create_model("ilcs", input_size=64)
    for m in model.modules():
        if isinstance(m, SpatialAttention):  # 2 x 3 x 3 = 18 inputs: U(-1/sqrt(18), 1/sqrt(18))
            assert m.conv.weight.abs().max() <= 18**-0.5
        if isinstance(m, ChannelAttention):
            fan_in = m.fc0.in_channels
            assert m.fc0.weight.abs().max() <= fan_in**-0.5
    w = model.lcs[0].conv1[0].weight  # 1x1, 3 -> 32: He fan-out std sqrt(2/32) = 0.25
    assert 0.15 < float(w.detach().std()) < 0.35


def test_spatial_gates_start_near_half_open():
    """No gate starts saturated: on random inputs every spatial map of ILCS averages within (0.2, 0.8)."""
    torch.manual_seed(0)
    model = create_model("ilcs", input_size=64).eval()
    means = []
    for m in model.modules():
        if isinstance(m, SpatialAttention):
            m.register_forward_hook(
                lambda mod, inp, out, means=means: means.append(float(mod.attention(inp[0]).mean()))
            )
    with torch.no_grad():
        means.append(float(model.forward_with_attention(torch.randn(4, 3, 64, 64)).attention.mean()))  # + MIAM's
    assert len(means) == 7 and all(0.2 < v < 0.8 for v in means), means
