"""Is a schedule long enough? Each model's run at a shorter schedule beside the same seed at a longer one.

A cosine schedule's learning rate reaches zero at its end, so every curve flattens late whatever its
length: the curve of one run cannot say whether more epochs would help. The check that can is a
paired one: the same model and seed (same initial weights) trained over more epochs. The figure
compared is the end-of-schedule validation loss (mean over the last ``END_EPOCHS`` epochs, where the
rate is near zero; the minimum over epochs would favour the longer run, which has more epochs to
draw it from). Its noise is the seed-to-seed spread of that figure at the shorter schedule, pooled
over the models with several seeds. Only validation figures decide; test top-1 is shown, not used.
Table 2 uses it twice: the recipe's 20 epochs against the table's, and the table's against more.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Protocol

from benchmarks.markdown import table

__all__ = ["END_EPOCHS", "end_loss", "longer_table", "pair_runs", "pooled_seed_cv", "sign_test"]

END_EPOCHS = 3

HEADER = ["model", "seed", "epochs", "end val loss", "change", "noise (±2 seed CV)",
          "shorter schedule's seeds (end loss)", "val top-1", "test top-1 (shown, not used)", "verdict"]  # fmt: skip


class RunLike(Protocol):
    model: str
    seed: int
    epochs: int
    finished: bool
    val_top1: float | None
    test_top1: float | None
    val_losses: list[float] | None


def end_loss(run: RunLike) -> float | None:
    """Mean validation loss over the run's last ``END_EPOCHS`` epochs (``None`` without that many)."""
    losses = run.val_losses or []
    return statistics.fmean(losses[-END_EPOCHS:]) if len(losses) >= END_EPOCHS else None


def pooled_seed_cv(runs: Sequence[RunLike]) -> tuple[float | None, int]:
    """Root mean square, over models with two or more finished seeds, of the seeds' coefficient of variation of
    ``end_loss``; and how many models it pools."""
    by_model: dict[str, list[float]] = {}
    for r in runs:
        if r.finished and (x := end_loss(r)) is not None:
            by_model.setdefault(r.model, []).append(x)
    cvs = [statistics.stdev(xs) / statistics.fmean(xs) for xs in by_model.values() if len(xs) > 1]
    return (math.sqrt(statistics.fmean(c * c for c in cvs)) if cvs else None), len(cvs)


def verdict(change: float, noise: float | None, seeds: Sequence[float], end: float) -> str:
    """The shorter schedule is short for a model when the longer run ends lower beyond the noise; ``seeds``: the
    end losses of the model's seeds at the shorter schedule, ``end``: the longer run's."""
    if noise is None:
        return "no seed spread to judge against"
    if change < -noise:
        return "lower beyond the noise: the shorter schedule is short for this model"
    if change > noise:
        return "higher beyond the noise: no gain from more epochs"
    if len(seeds) < 2:
        return "within the noise (one seed at the shorter schedule: no range of its own to compare)"
    if end < min(seeds):
        return "within the noise, but below every seed at the shorter schedule: a likely gain the check cannot confirm"
    return "within the noise: no sign that more epochs help"


def _pair(a: float | None, b: float | None) -> str:
    return "–" if a is None or b is None else f"{a:.2f} → {b:.2f}"


def pair_runs(runs: Sequence[RunLike], longer: Sequence[RunLike]) -> list[tuple[RunLike | None, RunLike]]:
    """Each finished longer run with the finished run of the same model and seed in ``runs`` (``None``: none)."""
    base = {(r.model, r.seed): r for r in runs if r.finished}
    return [(base.get((r.model, r.seed)), r) for r in longer if r.finished]


def longer_table(runs: Sequence[RunLike], longer: Sequence[RunLike]) -> str:
    """One row per finished longer run, paired with the same model and seed at the shorter schedule (``runs``)."""
    cv, models = pooled_seed_cv(runs)
    noise = 2 * cv if cv is not None else None
    rows, changes = [], []
    for short, run in pair_runs(runs, longer):
        a, b = (end_loss(short) if short else None), end_loss(run)
        if short is None or a is None or b is None:
            rows.append((run.model, run.seed, f"– / {run.epochs}", *["–"] * 6, "no paired run"))
            continue
        change = (b - a) / a
        changes.append(change)
        seeds = [x for r in runs if r.finished and r.model == run.model and (x := end_loss(r)) is not None]
        spread = f"{min(seeds):.3f}–{max(seeds):.3f} (n={len(seeds)})" if len(seeds) > 1 else "n=1"
        rows.append((
            run.model, run.seed, f"{short.epochs} → {run.epochs}", f"{a:.3f} → {b:.3f}", f"{100 * change:+.0f}%",
            "–" if noise is None else f"±{100 * noise:.0f}%", spread, _pair(short.val_top1, run.val_top1),
            _pair(short.test_top1, run.test_top1), verdict(change, noise, seeds, b),
        ))  # fmt: skip
    if not rows:
        return "No run at the longer schedule is kept yet."
    pooled = f"pooled over {models} models with several seeds" if models else "no model has several seeds"
    lower, judged = sum(1 for c in changes if c < 0), len(changes)
    ratios = [1 + c for c in changes]
    size = (
        f" The longer run's end loss is {math.exp(statistics.fmean(map(math.log, ratios))):.2f} times its pair's "
        f"(geometric mean over the pairs; {min(ratios):.2f}–{max(ratios):.2f})."
        if ratios and min(ratios) > 0
        else ""
    )
    return (
        table(HEADER, rows)
        + f"\n\nNoise: twice the seeds' coefficient of variation of the end loss at the shorter schedule ({pooled}). "
        + f"{lower} of {judged} longer runs end below their pair (if more epochs changed nothing, each would be a "
        + f"coin flip: one-sided sign test p {_p_value(sign_test(lower, judged))}).{size}"
    )


def _p_value(p: float) -> str:
    """A p-value as printed: three decimals, or a bound where three decimals would read as zero."""
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"


def sign_test(k: int, n: int) -> float:
    """P(at least ``k`` of ``n`` fair coin flips come up heads): the one-sided sign test."""
    return sum(math.comb(n, i) for i in range(k, n + 1)) / 2**n if n else 1.0
