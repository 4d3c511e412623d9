"""The Table 2 report is computed from run logs alone: paper beside ours, seeds, MIAM deltas, noise."""

import json
import shutil

import pytest

from benchmarks.table2 import NOT_CHECKED, PAPER_TABLE2, load_runs, render_report, run_plan, write_report

RECIPE = {
    "epochs": 10,
    "batch_size": 16,
    "lr": 0.002,
    "weight_decay": 0.05,
    "warmup_epochs": 1.0,
    "label_smoothing": 0.1,
    "input_size": 160,
    "channels_last": True,
    "manifest": "/x/training/splits/neu_seed0.json",
    "model_kwargs": {},
}


def fake_run(root, model, seed, top1, top5=1.0, epochs=10, done=None, wall=600.0, arch=None, **recipe):
    """A run folder as ``ilcs train`` leaves it: log.json and the best.json card (test metrics once finished);
    ``arch``: the registry model its card names, when the folder's label is not one."""
    out = root / f"{model}_seed{seed}"
    out.mkdir(parents=True)
    done = epochs if done is None else done
    log = [
        {
            "epoch": e,
            "train_loss": 1.0,
            "train_acc": 0.5,
            "val_loss": 0.5,
            "val_acc": 0.9,
            "lr": 1e-3,
            "wall_seconds": wall * e / epochs,
        }
        for e in range(1, done + 1)
    ]
    (out / "log.json").write_text(json.dumps(log))
    metrics = {"val_top1": 0.9, "val_loss": 0.5, "best_epoch": done}
    name = arch or model
    box = 1.0 if name == "ilcs" or name.endswith("+miam") else 0.0  # the recipe's box loss: MIAM's gate only
    config = {**RECIPE, "epochs": epochs, "model": arch or model, "seed": seed, "box_loss_weight": box, **recipe}
    training = {"config": config, "threads": 1}
    if done == epochs:
        metrics |= {"test_top1": top1, "test_top5": top5, "test_n": 450, "epochs": epochs}
        training["wall_seconds"] = wall
    (out / "best.json").write_text(json.dumps({"arch": model, "metrics": metrics, "training": training}))
    return out


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "table2"
    for seed, top1 in enumerate((0.96, 0.97, 0.98)):
        fake_run(root, "ilcs", seed, top1)
    for seed, top1 in enumerate((0.94, 0.95, 0.96)):
        fake_run(root, "mobilenet_v2", seed, top1)
    fake_run(root, "mobilenet_v2+miam", 0, 0.95)  # +1.00 over mobilenet_v2 seed 0
    fake_run(root, "effnet", 0, 0.90, top5=0.998)
    fake_run(root, "effnet+miam", 0, 0.89)  # -1.00: MIAM can hurt, the report must say so with its sign
    fake_run(root, "resnet50", 0, 0.5, done=3)  # still training
    return root


def report(root):
    return render_report(load_runs(root), params_fn=lambda model: 1.234)


def row(text, model):
    return next(line for line in text.splitlines() if line.startswith(f"| {model} |"))


def test_runs_are_read_in_the_papers_order_and_unfinished_ones_are_flagged(runs):
    loaded = load_runs(runs)
    assert [r.model for r in loaded][:4] == ["resnet50", "effnet", "effnet+miam", "mobilenet_v2"]
    resnet = loaded[0]
    assert not resnet.finished and resnet.epochs_done == 3 and resnet.test_top1 is None
    assert resnet.wall_seconds == pytest.approx(180.0)


def test_each_row_puts_ours_beside_the_paper(runs):
    text = report(runs)
    for model, (p1, _) in PAPER_TABLE2.items():
        assert f"| {model} | {p1:.2f} |" in text
    assert "| effnet | 94.81 | 90.00 (n=1) | 100.00 | 99.80 (n=1) | 1.23 | 2.21 | 10.0 |" in text
    assert "| resnet50+miam | 96.36 | not run |" in text
    assert "| resnet50 | 95.09 | running |" in text
    assert "(unfinished: 3/10 epochs)" in text


def test_repeated_seeds_give_mean_std_and_range(runs):
    text = report(runs)
    # 96, 97, 98: mean 97.00, sample std 1.00
    assert "97.00 ± 1.00 (n=3, 96.00–98.00)" in row(text, "ilcs")
    assert "95.00 ± 1.00 (n=3, 94.00–96.00)" in row(text, "mobilenet_v2")
    assert "ILCS minus MobileNetV2, mean over seeds: +2.00 points" in text
    # ilcs 97.00, mobilenet_v2 95.00, mobilenet_v2+miam 95.00, effnet 90.00, effnet+miam 89.00
    assert "- The rows by mean test top-1: ilcs 97.00, mobilenet_v2 95.00," in text and "ILCS ranks 1 of 5." in text


def test_miam_delta_pairs_equal_seeds_beside_the_papers(runs):
    text = report(runs)
    assert "| mobilenet_v2 | +0.47 | +1.00 (n=1) | 0 |" in text
    assert "| effnet | +1.02 | -1.00 (n=1) | 0 |" in text
    assert "| resnet50 | +1.27 | – | – |" in text


def test_noise_and_schedule_are_stated(runs):
    text = report(runs)
    assert "The test set holds 450 images: one image is 0.22 points" in text
    assert "Every run of the table trained 10 epochs" in text
    assert "the recipe (`training/config.py`, the shipped checkpoint's) trains 20" in text
    assert "10 epochs, AdamW lr 0.002 weight decay 0.05" in text
    assert "deviate" not in text
    assert "with 1 thread(s) per run" in text


def test_a_run_off_the_shared_recipe_is_named(runs):
    fake_run(runs, "effnet", 1, 0.9, lr=0.01)
    assert "effnet seed 1:" in report(runs).split("Runs that deviate from the shared recipe")[1]


def test_a_variant_run_is_listed_beside_its_base_model(runs):
    fake_run(runs, "ilcs-pool_at=early", 0, 0.955, arch="ilcs", model_kwargs={"pool_at": "early"})
    text = report(runs)
    assert "Variant `ilcs-pool_at=early` (not a paper row; same recipe): test top-1 95.50 (n=1); ilcs over" in text
    assert "| ilcs-pool_at=early | 0 | 10 |" in text


def test_write_report_writes_the_file_with_the_runs_notes(runs, tmp_path):
    (runs / "NOTES.txt").write_text("Two lanes ran at once.\n")
    out = tmp_path / "reports" / "table2.md"
    text = write_report(runs, out, params_fn=lambda model: 1.0)
    assert out.read_text() == text and text.startswith("# Table 2")
    assert "- Two lanes ran at once." in text


def test_plan_pairs_each_small_model_with_and_without_miam_seed_by_seed_and_resnet50_last():
    plan = run_plan((0, 1, 2), resnet50_seeds=(0,))
    assert len(plan) == 20 and plan[-2:] == [("resnet50", 0), ("resnet50+miam", 0)]
    assert {m for m, _ in plan} == set(PAPER_TABLE2) | {"ilcs-nomiam"}
    for seed in (0, 1, 2):  # every pair complete at a seed before the next seed starts
        assert [m for m, s in plan[6 * seed : 6 * seed + 6]] == [
            "ilcs-nomiam", "ilcs", "mobilenet_v2", "mobilenet_v2+miam", "effnet", "effnet+miam",
        ]  # fmt: skip
        assert {s for _, s in plan[6 * seed : 6 * seed + 6]} == {seed}
    assert run_plan((0,), resnet50_seeds=(), models=("effnet",)) == [("effnet", 0)]


def test_at_the_recipes_schedule_ilcs_with_miam_trains_into_the_ablation_folder_it_shares_with_the_model_report(
    tmp_path,
):
    from benchmarks.table2 import ABLATION_DIR, RUNS_DIR, SHORTER_DIR, run_dir

    assert run_dir(SHORTER_DIR, "ilcs", 1) == ABLATION_DIR / "miam_s1"
    # the ablation's arm without MIAM had the box loss on its activation energy: not this table's recipe
    assert run_dir(SHORTER_DIR, "ilcs-nomiam", 2) == SHORTER_DIR / "ilcs-nomiam_seed2"
    assert run_dir(RUNS_DIR, "ilcs", 1) == RUNS_DIR / "ilcs_seed1"  # the table's schedule is not the ablation's
    assert run_dir(RUNS_DIR, "effnet", 0) == RUNS_DIR / "effnet_seed0"
    assert run_dir(tmp_path, "ilcs", 1) == tmp_path / "ilcs_seed1"  # elsewhere, one folder for all


def test_a_folder_names_its_schedule_and_the_table_trains_thirty_epochs(tmp_path):
    from benchmarks.table2 import TABLE_EPOCHS, schedule_epochs

    assert TABLE_EPOCHS == 30
    assert schedule_epochs(tmp_path / "table2-e20") == 20 and schedule_epochs(tmp_path / "table2-e40") == 40
    assert schedule_epochs(tmp_path / "table2") == 30 and schedule_epochs(tmp_path / "my-runs") == 30
    assert schedule_epochs(tmp_path / "table2-box-on-energy") == 30


def test_only_picks_a_run_by_its_folder_name_too(capsys):
    from benchmarks.table2 import SHORTER_DIR, main

    # the name scripts/run_table2.sh passes for ILCS with MIAM at the recipe's schedule
    main(["run", "--dry-run", "--runs-dir", str(SHORTER_DIR), "--only", "miam_s1"])
    assert "table2: 1 runs, 20 epochs each: [('ilcs', 1)]" in capsys.readouterr().out
    main(["run", "--dry-run", "--only", "ilcs_seed1"])  # the table itself
    assert "table2: 1 runs, 30 epochs each: [('ilcs', 1)]" in capsys.readouterr().out


def test_the_ilcs_arm_without_miam_is_trained_without_the_attention_layer(tmp_path, capsys):
    from benchmarks.table2 import main

    main(["run", "--dry-run", "--models", "ilcs-nomiam", "--seeds", "0", "--runs-dir", str(tmp_path)])
    command = next(line for line in capsys.readouterr().out.splitlines() if " train " in line)
    assert "--epochs 30 " in command  # the table's schedule unless told otherwise
    assert f"--model ilcs --epochs 30 --seed 0 --out {tmp_path / 'ilcs-nomiam_seed0'} " in command
    assert command.endswith('--model-kwargs {"attn_layer": null} --box-loss-weight 0')


def test_only_the_arms_with_miam_keep_the_recipes_box_loss(tmp_path, capsys):
    from benchmarks.table2 import main

    main(["run", "--dry-run", "--seeds", "0", "--resnet50-seeds", "0", "--runs-dir", str(tmp_path)])
    commands = [line for line in capsys.readouterr().out.splitlines() if " train " in line]
    without = {c.split("--out ")[1].split()[0] for c in commands if c.endswith("--box-loss-weight 0")}
    names = {"ilcs-nomiam_seed0", "mobilenet_v2_seed0", "effnet_seed0", "resnet50_seed0"}
    assert without == {str(tmp_path / n) for n in names}
    assert len(commands) == 8  # the four +MIAM arms take the recipe's weight: no flag


def test_each_row_and_each_miam_delta_gets_a_verdict_against_the_paper_within_the_noise(runs):
    text = report(runs)
    # ilcs 97.00 +- 1.00 (n=3) against 97.50: noise 2 * sqrt(1/3 + 2 * se^2), se = 100 * sqrt(.97 * .03 / 450) = 0.80
    assert "- **ilcs**: 97.00 ± 1.00 (n=3, 96.00–98.00) against 97.50: agrees with the paper within the noise" in text
    assert "(-0.50 points against a noise of ±2.55)" in text
    # effnet: one seed at 90.00 against 94.81, se = 1.41: noise 2 * sqrt(2) * 1.41 = 4.00 < 4.81
    assert "- **effnet**: 90.00 (n=1) against 94.81: below the paper by more than the noise (-4.81 points" in text
    assert "one seed, so the seed spread is not in the noise" in row_line(text, "- **effnet**")
    assert "- **MIAM on mobilenet_v2**: +1.00 (n=1) against +0.47: agrees with the paper within the noise" in text


def row_line(text, start):
    return next(line for line in text.splitlines() if line.startswith(start))


def test_convergence_is_judged_on_the_share_of_the_fall_left_in_the_last_quarter():
    from benchmarks.table2 import still_falling

    # 8 epochs: last quarter = 2 epochs; the fall is 1.0; previous quarter mean 0.10, last 0.0: 10% of it left
    assert still_falling([1.0, 0.6, 0.4, 0.3, 0.15, 0.05, 0.0, 0.0]) == pytest.approx(0.10)
    assert still_falling([1.0, 0.5, 0.4, 0.3, 0.2, 0.2, 0.3, 0.3]) < 0  # it rose: nothing left to gain
    assert still_falling([0.5, 0.6]) is None  # too short to tell


def test_the_convergence_table_names_a_model_still_falling(runs):
    for seed in range(3):
        log_path = runs / f"ilcs_seed{seed}" / "log.json"
        log = json.loads(log_path.read_text())
        for e, r in enumerate(log):  # ilcs falls steadily to the end: 1.0, 0.9, ..., 0.1
            r["val_loss"] = 1.0 - 0.1 * e
        log_path.write_text(json.dumps(log))
    line = next(x for x in report(runs).splitlines() if x.startswith("| ilcs | 3 |"))
    assert line.endswith("still falling (3 seed(s)) |")


def test_write_report_draws_the_validation_loss_of_every_model(runs, tmp_path):
    out = tmp_path / "reports" / "table2.md"
    write_report(runs, out, params_fn=lambda model: 1.0)
    figure = tmp_path / "reports" / "figures" / "table2-val-loss.png"
    assert figure.exists() and figure.stat().st_size > 10_000
    assert "figures/table2-val-loss.png" in out.read_text()


def test_runs_train_the_papers_models_not_the_recipes_model_options(tmp_path, capsys):
    from benchmarks.table2 import main

    main(["run", "--dry-run", "--epochs", "1", "--models", "ilcs", "--seeds", "0", "--runs-dir", str(tmp_path)])
    command = next(line for line in capsys.readouterr().out.splitlines() if " train " in line)
    assert command.endswith("--model-kwargs {}")  # ILCS with MIAM, as in the paper's Table 2


def test_the_ilcs_row_reuses_the_ablation_run_with_miam_and_the_other_arm_is_the_energy_comparison(tmp_path):
    from benchmarks.table2 import ENERGY_ARMS

    ablation = tmp_path / "ablation"
    ablation.mkdir()
    for arm, top1 in (("miam", 0.98), ("nomiam", 0.97)):  # reports/runs/ablation/<arm>_s<seed>
        fake_run(tmp_path / "made", "ilcs", 0, top1).rename(ablation / f"{arm}_s0")
    loaded = {(r.model, r.seed): r.test_top1 for r in load_runs(tmp_path / "table2", ablation)}
    assert loaded == {("ilcs", 0): pytest.approx(98.0)}
    energy = {(r.model, r.seed): r.test_top1 for r in load_runs(tmp_path / "none", ablation, ENERGY_ARMS)}
    assert energy == {("ilcs-nomiam", 0): pytest.approx(97.0)}


def test_a_baseline_with_the_box_loss_is_off_the_recipe_and_a_miam_arm_without_it_too(runs):
    text = report(runs)
    assert "weak box supervision of MIAM's spatial gate with weight 1.0" in text and "deviate" not in text
    fake_run(runs, "effnet+miam", 1, 0.9, box_loss_weight=0.0)  # a +MIAM arm left without the box loss
    fake_run(runs, "effnet", 1, 0.9, box_loss_weight=1.0)  # the box loss on a baseline's activation energy
    odd = report(runs).split("Runs that deviate from the shared recipe")[1].split("##")[0]
    assert "effnet+miam seed 1:" in odd and "effnet seed 1:" in odd
    assert "effnet+miam seed 0:" not in odd and "mobilenet_v2 seed 0:" not in odd


def test_each_baseline_is_paired_with_its_run_of_the_box_loss_on_its_activation_energy(runs, tmp_path):
    shutil.copytree(runs, runs.parent / "table2-e20")  # the energy runs trained at the recipe's schedule: its pairs
    for old in ("mobilenet_v2_seed1", "effnet_seed0"):  # the table's runs are not the pairs
        shutil.rmtree(runs / old)
    energy = runs.parent / "table2-box-on-energy"  # beside the runs, as in reports/runs/
    for seed, top1 in ((0, 0.85), (1, 0.87)):
        out = fake_run(energy, "mobilenet_v2", seed, top1, box_loss_weight=1.0)
        log = json.loads((out / "log.json").read_text())
        for e, r in enumerate(log):  # falls steadily to the end
            r["val_loss"] = 1.0 - 0.1 * e
        (out / "log.json").write_text(json.dumps(log))
    fake_run(energy, "effnet", 0, 0.91, box_loss_weight=1.0)
    text = write_report(runs, tmp_path / "out" / "table2.md", params_fn=lambda model: 1.0)
    # mobilenet_v2 on cross-entropy alone: 94, 95 at seeds 0, 1; with the box loss on its energy: 85, 87
    assert "| mobilenet_v2 | 0, 1 | 94.50 ± 0.71 (n=2, 94.00–95.00) | 86.00 ± 1.41 (n=2, 85.00–87.00) |" in text
    assert "| -8.50 ± 0.71 (n=2, -9.00–-8.00) | still falling (2 seed(s)) |" in row(text, "mobilenet_v2 | 0, 1")
    assert "| effnet | 0 | 90.00 (n=1) | 91.00 (n=1) | +1.00 (n=1) |" in text
    assert "deviate" not in text  # the energy runs are a comparison, not rows of the table


def test_a_difference_over_seeds_carries_its_sign():
    from benchmarks.table2 import _signed, summarise

    assert _signed(summarise([0.5, 1.0])).startswith("+0.75 ± 0.35 (n=2")
    assert _signed(summarise([-0.5, -1.0])).startswith("-0.75 ± 0.35 (n=2")
    assert _signed(summarise([0.0])) == "+0.00 (n=1)"


def _ending_at(out, loss):
    log = json.loads((out / "log.json").read_text())
    for r in log[-3:]:
        r["val_loss"] = loss
    (out / "log.json").write_text(json.dumps(log))


def test_the_recipes_schedule_and_a_longer_one_are_paired_with_the_tables_runs_by_seed_and_drawn(runs, tmp_path):
    # the table's runs end at a validation loss of 0.5
    _ending_at(fake_run(runs.parent / "table2-e20", "ilcs", 0, 0.96, epochs=5), 1.5)
    _ending_at(fake_run(runs.parent / "table2-e40", "ilcs", 0, 0.97, epochs=15), 0.5 / 3)
    text = write_report(runs, tmp_path / "out" / "table2.md", params_fn=lambda model: 1.0)
    shorter, longer = text.split("**The table's 10 epochs against 40**")
    assert "| ilcs | 0 | 5 → 10 | 1.500 → 0.500 | -67% |" in shorter
    assert "| ilcs | 0 | 10 → 15 | 0.500 → 0.167 | -67% |" in longer
    for name in ("shorter", "longer"):
        assert f"figures/table2-{name}-schedule.png" in text
        figure = tmp_path / "out" / "figures" / f"table2-{name}-schedule.png"
        assert figure.exists() and figure.stat().st_size > 5_000
    assert "deviate" not in text  # runs of other schedules are checks of the schedule, not rows of the table
    assert "| ilcs | 0 | 5 | 5 | 90.00 | 96.00 |" in text  # and listed among every run


def test_a_schedule_check_without_a_finished_longer_run_says_what_evidence_is_left(runs, tmp_path):
    text = write_report(runs, tmp_path / "out" / "table2.md", params_fn=lambda model: 1.0)
    longer = text.split("**The table's 10 epochs against 40**")[1].split("**The validation loss per epoch")[0]
    assert longer.split("\n", 1)[1].strip() == NOT_CHECKED and "table2-longer-schedule.png" not in text


def test_the_recipes_schedule_gets_its_own_side_by_side_table_and_miam_deltas(runs, tmp_path):
    shorter = runs.parent / "table2-e20"
    fake_run(shorter, "effnet", 0, 0.92, epochs=5)
    fake_run(shorter, "effnet+miam", 0, 0.95, epochs=5)
    text = write_report(runs, tmp_path / "out" / "table2.md", params_fn=lambda model: 1.0)
    section = text.split("## The same at the recipe's 20 epochs")[1].split("## Convergence")[0]
    assert "| effnet | 94.81 | 92.00 (n=1) |" in section and "| effnet | +1.02 | +3.00 (n=1) | 0 |" in section
    assert "| effnet | +1.02 | -1.00 (n=1) | 0 |" in text.split("## The same at")[0]  # the table's own delta


def test_whether_a_run_has_miam_is_read_off_the_model_the_registry_builds():
    from benchmarks.table2 import has_miam

    assert has_miam("ilcs") and has_miam("resnet50+miam") and has_miam("effnet", {"attn_layer": "miam"})
    assert not has_miam("ilcs", {"attn_layer": None}) and not has_miam("mobilenet_v2")


def test_a_run_in_a_side_folder_rewrites_the_report_of_the_table_beside_it(tmp_path):
    from benchmarks.table2 import table_runs_dir

    assert table_runs_dir(tmp_path / "table2-e20") == tmp_path / "table2"
    assert table_runs_dir(tmp_path / "table2-e40") == tmp_path / "table2"
    assert table_runs_dir(tmp_path / "table2-box-on-energy") == tmp_path / "table2"
    assert table_runs_dir(tmp_path / "table2") == tmp_path / "table2"
    assert table_runs_dir(tmp_path / "my-runs") == tmp_path / "my-runs"


def test_a_report_that_fails_does_not_stop_the_plan(tmp_path, monkeypatch, capsys):
    import subprocess

    from benchmarks import table2

    trained = []

    def train(cmd, **kwargs):  # a training run that succeeds at once
        trained.append(cmd)
        return subprocess.CompletedProcess(cmd, 0)

    def broken_report(*args):  # e.g. the template edited under a running plan
        raise KeyError("shorter_epochs")

    monkeypatch.setattr(table2.subprocess, "run", train)
    monkeypatch.setattr(table2, "write_report", broken_report)
    table2.main(["run", "--models", "effnet", "effnet+miam", "--seeds", "0", "--runs-dir", str(tmp_path)])
    assert len(trained) == 2  # both runs trained although the first one's report failed
    assert "report not written (KeyError('shorter_epochs'))" in capsys.readouterr().err
