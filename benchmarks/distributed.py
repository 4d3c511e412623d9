"""One process against two under torchrun, on NEU: ``python -m benchmarks.distributed ONE TWO``.

ONE and TWO are the run folders of the same ``ilcs train`` recipe (same seed, same global batch),
trained by one process and by ``torchrun --nproc-per-node 2`` (the commands are in ``COMMANDS``).
The two runs are not bit-identical: each rank draws its own augmentations (BatchNorm normalises over
the global batch on both). ``reports/distributed.md`` gets each epoch's figures side by side, the
chosen checkpoints' test scores and whether the differences are within ``TOLERANCE``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.markdown import render, table
from training.config import TrainConfig

__all__ = ["COMMANDS", "TOLERANCE", "main"]

EPOCHS = 2
COMMANDS = {
    "one": "nice -n 15 ilcs train --epochs {epochs} --threads 1 --out {out}",
    "two": "nice -n 15 torchrun --standalone --nproc-per-node 2 -m ilcs_cli train --epochs {epochs} --threads 1 "
    "--out {out}",
}
# Largest difference between one and two processes accepted as "the same": top-1 in points of accuracy.
TOLERANCE = {"val_acc": 0.05, "test_top1": 0.05, "train_loss": 0.1, "val_loss": 0.1}
FIGURES = ["train_loss", "train_acc", "val_loss", "val_acc", "lr", "wall_seconds"]


def _run(folder: Path) -> tuple[list[dict], dict]:
    return json.loads((folder / "log.json").read_text()), json.loads((folder / "best.json").read_text())


def _verdict(name: str, a: float, b: float) -> str:
    if name not in TOLERANCE:
        return ""
    return "yes" if abs(a - b) <= TOLERANCE[name] else f"**no** (> {TOLERANCE[name]})"


def format_report(one: Path, two: Path) -> str:
    (log1, card1), (log2, card2) = _run(one), _run(two)
    rows = []
    for r1, r2 in zip(log1, log2, strict=True):
        for name in FIGURES:
            a, b = r1[name], r2[name]
            rows.append([str(r1["epoch"]), name, f"{a:.4g}", f"{b:.4g}", f"{b - a:+.4g}", _verdict(name, a, b)])
    m1, m2 = card1["metrics"], card2["metrics"]
    for name in ("best_epoch", "val_top1", "test_top1", "test_top5"):
        a, b = m1[name], m2[name]
        rows.append(["chosen", name, f"{a:.4g}", f"{b:.4g}", f"{b - a:+.4g}", _verdict(name, a, b)])
    if "calibration" in m1 and "calibration" in m2:  # fitted after the test score; absent while it runs
        t1, t2 = card1["temperature"], card2["temperature"]
        rows.append(["chosen", "temperature", f"{t1:.4g}", f"{t2:.4g}", f"{t2 - t1:+.4g}", ""])
    misses = [r for r in rows if r[-1].startswith("**no")]
    verdict = (
        "Every compared figure is within the tolerance."
        if not misses
        else f"{len(misses)} figure(s) outside the tolerance: " + ", ".join(f"{r[1]} (epoch {r[0]})" for r in misses)
    )
    config = card1["training"]["config"]
    world = card2["training"].get("world_size", 2)
    return render(
        "distributed.md",
        one=one,
        two=two,
        epochs=EPOCHS,
        recipe_epochs=TrainConfig().epochs,
        batch=config["batch_size"],
        local=config["batch_size"] // world,
        lr=config["lr"],
        seed=config["seed"],
        command_one=COMMANDS["one"].format(epochs=EPOCHS, out=one),
        command_two=COMMANDS["two"].format(epochs=EPOCHS, out=two),
        tolerance=", ".join(f"{k} {v}" for k, v in TOLERANCE.items()),
        verdict=verdict,
        test_one=f"{m1['test_top1']:.2%}",
        test_two=f"{m2['test_top1']:.2%}",
        test_diff=f"{100 * (m2['test_top1'] - m1['test_top1']):+.2f}",
        table=table(["epoch", "figure", "1 process", "2 processes", "difference", "within tolerance"], rows, left=2),
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.distributed", description=__doc__.split("\n")[0])
    p.add_argument("one", type=Path, help="run folder of the single-process run")
    p.add_argument("two", type=Path, help="run folder of the two-process run")
    p.add_argument("--out", type=Path, default=Path("reports/distributed.md"))
    args = p.parse_args(argv)
    args.out.write_text(format_report(args.one, args.two))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
