"""`ilcs train` learns, checkpoints, resumes; `ilcs eval` reports Algorithm 2's figures."""

import json
from pathlib import Path

import pytest
import torch

from ilcs_cli import main
from model_zoo.checkpoint import load_checkpoint
from training.data import load_image_folder
from training.split import make_split, write_manifest
from training.train import TrainConfig, train

from .conftest import write_neu_layout


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    data_dir = write_neu_layout(root / "neu", per_class=12)
    manifest = root / "split.json"
    write_manifest(make_split(load_image_folder(data_dir, progress=False), seed=0), manifest)
    cfg = TrainConfig(
        data=str(data_dir),
        manifest=str(manifest),
        out=str(root / "run"),
        epochs=10,
        batch_size=8,
        lr=5e-3,
        input_size=32,
        threads=1,
        model_kwargs={"hidden": 32},
    )
    card = train(cfg)
    return cfg, card, root


def test_loss_falls_and_the_log_has_every_epoch(tiny_run):
    cfg, _, root = tiny_run
    log = json.loads((root / "run" / "log.json").read_text())
    assert [r["epoch"] for r in log] == list(range(1, 11))
    assert min(r["train_loss"] for r in log[-3:]) < 0.8 * log[0]["train_loss"]
    assert max(r["val_acc"] for r in log[-3:]) >= 0.5  # chance is 1/6
    assert log[-1]["train_box_loss"] < 0.6 * log[0]["train_box_loss"]  # the heatmap moves toward the boxes
    assert (root / "run" / "log.csv").read_text().startswith("epoch,train_loss,train_acc,train_box_loss,val_loss")


def test_model_kwargs_are_merged_over_the_recipe(tiny_run):
    cfg, card, _ = tiny_run
    assert card.hyperparameters == {"input_size": 32, "hidden": 32}  # the recipe's ILCS keeps MIAM
    assert card.heatmap_method == "miam_spatial"


def test_card_is_filled_in(tiny_run):
    _, card, _ = tiny_run
    assert card.arch == "ilcs" and card.input_size == 32
    assert card.temperature > 0 and {"temperature", "test_ece_before", "test_ece_after"} <= set(
        card.metrics["calibration"]
    )
    assert card.training["n_train_with_boxes"] == card.training["n_train"]
    assert {"val_top1", "test_top1", "test_top5", "best_epoch"} <= set(card.metrics)
    assert len(card.training["manifest_sha256"]) == 64 and card.training["git_commit"]
    assert card.training["config"]["epochs"] == 10


def test_checkpoint_reloads_bit_identically(tiny_run, tmp_path):
    _, card, root = tiny_run
    model, loaded = load_checkpoint(root / "run" / "best")
    from model_zoo.checkpoint import save_checkpoint

    again = save_checkpoint(model, tmp_path / "again", loaded)
    assert again.weights_sha256 == card.weights_sha256
    model2, _ = load_checkpoint(tmp_path / "again")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), model2(x))


def test_resume_continues_from_the_last_epoch(tiny_run, tmp_path):
    cfg, _, root = tiny_run
    resumed = TrainConfig(
        **{**cfg.__dict__, "epochs": 11, "out": str(tmp_path / "resumed"), "resume": str(root / "run" / "last.pt")}
    )
    train(resumed)
    log = json.loads((tmp_path / "resumed" / "log.json").read_text())
    assert [r["epoch"] for r in log] == list(range(1, 12))


def test_eval_cli_prints_one_json_object(tiny_run, capsys):
    cfg, card, root = tiny_run
    code = main(
        [
            "eval",
            "--checkpoint",
            str(root / "run" / "best.json"),
            "--data",
            cfg.data,
            "--split-manifest",
            cfg.manifest,
            "--json",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert {"top1", "top5", "n", "per_class", "confusion"} <= set(report)
    assert report["top1"] == pytest.approx(card.metrics["test_top1"])
    assert sum(map(sum, report["confusion"])) == report["n"]


def test_eval_scores_the_model_the_service_serves(tiny_run, monkeypatch):
    """One function builds the served model for a device (frozen; fp16 on a GPU): ``ilcs eval`` and the service."""
    from service.inference import Engine
    from training import evaluate as ev

    cfg, _, root = tiny_run
    built, real = [], ev.serve_model
    monkeypatch.setattr(ev, "serve_model", lambda model, dev, **kw: built.append((dev, kw)) or real(model, dev, **kw))
    report, images, _, card = ev.evaluate_with_maps(root / "run" / "best", cfg.data, cfg.manifest, device="cpu")
    assert built == [(torch.device("cpu"), {"freeze_shape": (card.in_chans, card.input_size, card.input_size)})]
    threads = torch.get_num_threads()
    try:
        engine = Engine.load(root / "run" / "best", "cpu", threads=1, workers=1, backend="torch")
        served = engine.predict([engine.prepare(img) for img in images.images])
    finally:
        torch.set_num_threads(threads)
    assert list(report["predictions"].values()) == [card.labels[int(p.scores.argmax())] for p in served]


def test_eval_all_reads_an_unseen_folder(tiny_run, tmp_path, capsys):
    _, _, root = tiny_run
    other = write_neu_layout(tmp_path / "other", per_class=3, seed=5, duplicate=False)
    assert main(["eval", "--checkpoint", str(root / "run" / "best"), "--data", str(other), "--all", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 18


def test_eval_of_a_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main(["eval", "--checkpoint", str(tmp_path / "none"), "--data", str(tmp_path), "--all"]) == 2
    assert "not found" in capsys.readouterr().err


def test_a_fine_tuning_stage_starts_from_a_checkpoint_and_can_choose_by_box_loss(tiny_run, tmp_path):
    cfg, card, root = tiny_run
    tuned = TrainConfig(
        **{
            **cfg.__dict__,
            "epochs": 1,
            "out": str(tmp_path / "tuned"),
            "box_loss_weight": 5.0,
            "init_from": str(root / "run" / "best"),
            "select": "val_box_loss",
            "warmup_epochs": 0,
        }
    )
    train(tuned)
    log = json.loads((tmp_path / "tuned" / "log.json").read_text())
    assert log[0]["val_box_loss"] > 0 and log[0]["val_acc"] >= 0.5  # it started trained, not at random
    other = TrainConfig(**{**tuned.__dict__, "model_kwargs": {"hidden": 16}, "out": str(tmp_path / "other")})
    with pytest.raises(ValueError, match="init-from"):
        train(other)


def test_a_kill_while_saving_the_resume_state_leaves_the_previous_one_whole(tmp_path, monkeypatch):
    from training.train import save_resume_state

    path = tmp_path / "last.pt"
    save_resume_state({"epoch": 1}, path)

    def killed(obj, f):  # half a file written, then the process dies
        Path(f).write_bytes(b"\x80\x02half")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        save_resume_state({"epoch": 2}, path)
    monkeypatch.undo()
    assert torch.load(path)["epoch"] == 1
