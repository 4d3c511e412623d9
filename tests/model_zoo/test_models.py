"""Every model of the zoo: shapes, attention maps, gradients, determinism (after timm's test_models)."""

import pytest
import torch

from model_zoo import PAPER_MODELS, create_model, list_models
from model_zoo.layers import MIAM
from model_zoo.models import ClassifierOutput


def test_registry_lists_the_four_builders_and_the_seven_paper_models_build():
    assert list_models() == ["effnet", "ilcs", "mobilenet_v2", "resnet50"]
    assert len(PAPER_MODELS) == 7


def test_unknown_model_and_suffix_are_refused():
    with pytest.raises(ValueError, match="unknown model"):
        create_model("vgg16")
    with pytest.raises(ValueError, match="suffix"):
        create_model("ilcs+se")


@pytest.mark.parametrize("size", [200, 300])
@pytest.mark.parametrize("name", PAPER_MODELS)
def test_forward_shapes_and_attention_map(name, size):
    torch.manual_seed(0)
    model = create_model(name, input_size=size).eval()
    with torch.no_grad():
        out = model.forward_with_attention(torch.randn(1, 3, size, size))
    assert isinstance(out, ClassifierOutput)
    assert out.logits.shape == (1, 6)
    assert out.attention.ndim == 4 and out.attention.shape[:2] == (1, 1)
    assert torch.isfinite(out.logits).all()
    assert (out.attention >= 0).all() and (out.attention <= 1).all()


@pytest.mark.parametrize("name", ["effnet", "mobilenet_v2", "ilcs"])
def test_forward_is_forward_with_attention_logits(name):
    model = create_model(name, input_size=64).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.forward_with_attention(x).logits)


@pytest.mark.parametrize("name", ["effnet", "effnet+miam", "mobilenet_v2+miam", "ilcs"])
def test_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    model = create_model(name, input_size=64).train()
    loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 64, 64)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no finite gradient for {missing[:5]}"
    assert all(p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("name", ["ilcs", "effnet+miam"])
def test_eval_mode_is_deterministic(name):
    model = create_model(name, input_size=64).eval()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


@pytest.mark.parametrize(("name", "channels"), [("resnet50", 2048), ("mobilenet_v2", 1280), ("effnet", 256)])
def test_miam_plug_in_keeps_shapes_and_adds_exactly_its_parameters(name, channels):
    plain, plus = create_model(name, input_size=64), create_model(name + "+miam", input_size=64)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(plus) - n(plain) == 2 * channels * (channels // 16) + 2 * 9
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert plain.eval()(x).shape == plus.eval()(x).shape
    assert isinstance(create_model(name, attn_layer="miam").attn, MIAM)
    assert isinstance(create_model(name, miam=True).attn, MIAM)  # a card written before attn_layer
