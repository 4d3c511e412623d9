"""Table 2's schedule is long enough for a model when the same seed over more epochs ends no lower beyond the noise."""

from dataclasses import dataclass

import pytest

from benchmarks.longer_schedule import _p_value, end_loss, longer_table, pooled_seed_cv, sign_test


@dataclass
class R:
    model: str
    seed: int
    val_losses: list[float]
    epochs: int = 20
    finished: bool = True
    val_top1: float | None = 99.0
    test_top1: float | None = 97.0


def flat(end: float, epochs: int = 20) -> list[float]:
    return [1.0] * (epochs - 3) + [end] * 3


def test_the_end_loss_is_the_mean_of_the_last_three_epochs_not_the_minimum():
    assert end_loss(R("m", 0, [1.0, 0.1, 0.4, 0.3, 0.2])) == pytest.approx(0.3)
    assert end_loss(R("m", 0, [0.5, 0.4])) is None


def test_the_noise_pools_the_seed_spread_of_models_with_several_seeds():
    runs = [R("a", 0, flat(0.09)), R("a", 1, flat(0.11)), R("b", 0, flat(0.5))]  # b has one seed: not pooled
    cv, models = pooled_seed_cv(runs)
    assert models == 1
    assert cv == pytest.approx(0.01414 / 0.1, rel=1e-3)  # stdev(0.09, 0.11) / mean


@pytest.fixture
def table_runs():
    return [R("a", 0, flat(0.09)), R("a", 1, flat(0.11)), R("b", 0, flat(0.20))]  # noise: ±28%


def row(text, model):
    return next(line for line in text.splitlines() if line.startswith(f"| {model} |"))


def test_a_longer_run_far_below_its_pair_says_the_schedule_is_short(table_runs):
    text = longer_table(table_runs, [R("b", 0, flat(0.05, 30), epochs=30, val_top1=100.0)])
    line = row(text, "b")
    assert "20 → 30" in line and "0.200 → 0.050" in line and "-75%" in line and "±28%" in line
    assert "99.00 → 100.00" in line
    assert "short for this model" in line


def test_a_longer_run_within_the_noise_and_the_seeds_range_shows_no_sign_that_more_epochs_help(table_runs):
    line = row(longer_table(table_runs, [R("a", 1, flat(0.10, 30), epochs=30)]), "a")  # above a's seed 0 end loss
    assert "-9%" in line and "within the noise: no sign that more epochs help" in line


def test_a_longer_run_above_the_noise_overfits(table_runs):
    line = row(longer_table(table_runs, [R("a", 1, flat(0.2, 30), epochs=30)]), "a")
    assert "higher beyond the noise: no gain from more epochs" in line


def test_a_longer_run_without_its_pair_or_unfinished_is_not_judged(table_runs):
    text = longer_table(table_runs, [R("c", 0, flat(0.1, 30), epochs=30), R("a", 0, flat(0.01, 30), finished=False)])
    assert "no paired run" in row(text, "c")
    assert "| a |" not in text
    assert longer_table(table_runs, []) == "No run at the longer schedule is kept yet."


def test_without_several_seeds_there_is_no_noise_to_judge_against():
    line = row(longer_table([R("b", 0, flat(0.2))], [R("b", 0, flat(0.05, 30), epochs=30)]), "b")
    assert "no seed spread to judge against" in line


def test_a_longer_run_within_the_noise_but_below_every_shorter_seed_is_flagged_as_a_likely_gain(table_runs):
    line = row(longer_table(table_runs, [R("a", 0, flat(0.075, 30), epochs=30)]), "a")  # -17%, noise ±28%
    assert "| 0.090–0.110 (n=2) |" in line
    assert "within the noise, but below every seed at the shorter schedule" in line


def test_the_longer_runs_are_summed_up_by_a_sign_test_over_models(table_runs):
    assert sign_test(3, 3) == pytest.approx(0.125) and sign_test(0, 3) == 1.0 and sign_test(2, 3) == pytest.approx(0.5)
    longer = [R("a", 0, flat(0.08, 30), epochs=30), R("b", 0, flat(0.25, 30), epochs=30)]
    assert "1 of 2 longer runs end below their pair" in longer_table(table_runs, longer)
    assert "p = 0.750" in longer_table(table_runs, longer)


def test_a_p_value_too_small_for_three_decimals_is_printed_as_a_bound():
    assert _p_value(sign_test(19, 20)) == "< 0.001" and _p_value(sign_test(3, 3)) == "= 0.125"


def test_a_model_with_one_seed_at_the_shorter_schedule_gets_no_claim_either_way(table_runs):
    line = row(longer_table(table_runs, [R("b", 0, flat(0.17, 30), epochs=30)]), "b")  # -15%, noise ±28%
    assert "| n=1 |" in line and "within the noise (one seed at the shorter schedule" in line
    assert "no sign" not in line and "likely gain" not in line


def test_the_size_of_the_change_is_the_geometric_mean_ratio_of_the_pairs_end_losses(table_runs):
    longer = [R("a", 0, flat(0.045, 30), epochs=30), R("b", 0, flat(0.80, 30), epochs=30)]  # ratios 0.5 and 4
    text = longer_table(table_runs, longer)
    assert "end loss is 1.41 times its pair's (geometric mean over the pairs; 0.50–4.00)" in text  # sqrt(0.5 * 4)
