"""The checkpoint format: safetensors + model card, verified on load, never unpickled."""

import json

import pytest
import torch

from model_zoo import create_model
from model_zoo.checkpoint import CheckpointError, ModelCard, load_checkpoint, read_card, save_checkpoint

LABELS = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = create_model("ilcs", input_size=64, hidden=16).eval()
    card = ModelCard(
        arch="ilcs",
        labels=LABELS,
        input_size=64,
        hyperparameters={"input_size": 64, "hidden": 16},
        metrics={"test_top1": 0.5},
    )
    card = save_checkpoint(model, tmp_path / "ck", card)
    return model, card, tmp_path / "ck"


def test_round_trip_is_bit_identical(saved):
    model, card, stem = saved
    loaded, loaded_card = load_checkpoint(stem.with_suffix(".json"))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert loaded_card == card
    assert len(card.weights_sha256) == 64
    assert not loaded.training


def test_card_holds_what_a_deployer_needs(saved):
    _, _, stem = saved
    card = json.loads(stem.with_suffix(".json").read_text())
    for key in ("arch", "hyperparameters", "labels", "input_size", "mean", "std", "metrics", "weights_sha256"):
        assert key in card
    assert card["mean"] == 0.4 and card["std"] == 0.2


def test_compiled_model_prefixes_are_stripped(tmp_path):
    model = create_model("ilcs", input_size=64)
    wrapper = torch.nn.Module()
    wrapper._orig_mod = model  # what torch.compile leaves in state_dict keys
    save_checkpoint(wrapper, tmp_path / "ck", ModelCard(arch="ilcs", labels=LABELS, input_size=64))
    load_checkpoint(tmp_path / "ck")


def test_truncated_weights_are_refused(saved):
    _, _, stem = saved
    weights = stem.with_suffix(".safetensors")
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(stem)


def test_weights_of_another_architecture_are_refused(saved, tmp_path):
    _, card, stem = saved
    other = save_checkpoint(create_model("effnet", input_size=64), tmp_path / "other", card.model_copy())
    card_path = stem.with_suffix(".json")
    tampered = json.loads(card_path.read_text()) | {"arch": "effnet", "weights_sha256": card.weights_sha256}
    card_path.write_text(json.dumps(tampered))
    with pytest.raises(CheckpointError, match="do not match architecture"):
        load_checkpoint(stem)
    assert other.weights_sha256 != card.weights_sha256


def test_missing_files_give_clear_errors(saved, tmp_path):
    _, _, stem = saved
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nothing")
    stem.with_suffix(".safetensors").unlink()
    with pytest.raises(CheckpointError, match="weights .* not found"):
        load_checkpoint(stem)


def test_invalid_card_is_refused(saved):
    _, _, stem = saved
    stem.with_suffix(".json").write_text('{"arch": "ilcs"}')
    with pytest.raises(CheckpointError, match="not a valid model card"):
        read_card(stem)


def test_pickle_file_is_not_loaded(tmp_path):
    # A pickle renamed .safetensors is recognised by its first bytes and refused; nothing executes.
    torch.save({"x": torch.zeros(1)}, tmp_path / "evil.safetensors")
    from model_zoo.checkpoint import sha256_file

    card = ModelCard(
        arch="ilcs", labels=LABELS, input_size=64, weights_sha256=sha256_file(tmp_path / "evil.safetensors")
    )
    (tmp_path / "evil.json").write_text(card.model_dump_json())
    with pytest.raises(CheckpointError, match="is a pickle"):
        load_checkpoint(tmp_path / "evil")


def test_a_pickle_file_is_refused_by_its_name_before_anything_is_read(tmp_path):
    torch.save({"x": torch.zeros(1)}, tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="is a pickle"):
        load_checkpoint(tmp_path / "model.pt")


def test_a_card_naming_an_unknown_architecture_is_refused_with_the_known_ones(tmp_path):
    stem = tmp_path / "ck"
    save_checkpoint(create_model("ilcs", input_size=64), stem, ModelCard(arch="ilcs", labels=LABELS, input_size=64))
    card = json.loads(stem.with_suffix(".json").read_text())
    stem.with_suffix(".json").write_text(json.dumps({**card, "arch": "yolo_v99"}))
    with pytest.raises(CheckpointError, match=r"'yolo_v99'.*it knows .*ilcs"):
        load_checkpoint(stem)
