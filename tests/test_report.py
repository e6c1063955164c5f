"""The benchmark report's statistics (benchmarks/report.py) on hand-made curves and result files."""

import itertools
import json
import pathlib

import numpy as np
import pytest
from scipy.stats import trim_mean

from benchmarks.report import (
    by_task,
    collapses,
    half_reached,
    improvement,
    improvement_table,
    iqm,
    iqm_interval,
    late_means,
    load_runs,
    reach_table,
    returns_section,
    same_session_runs,
    seed_ranges,
    steps_to_reach,
)


def make_curve(returns: list[float], every: int = 1000) -> list[dict[str, float]]:
    """
    :param returns: evaluation returns in order
    :param every: simulator steps between evaluations
    :return: a saved run's curve, one evaluation every ``every`` steps and every 2 seconds
    """
    return [
        dict(timesteps=every * (i + 1), seconds=2.0 * (i + 1), mean_return=value, std_return=0.0)
        for i, value in enumerate(returns)
    ]


def table_rows(markdown: str, header_start: str) -> list[dict[str, str]]:
    """
    :param markdown: generated Markdown
    :param header_start: how the table's header line starts
    :return: the table's rows as column name -> cell
    """
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    header, *body = (
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in itertools.takewhile(lambda line: line.startswith("|"), lines[start:])
    )
    return [dict(zip(header, row, strict=True)) for row in body[1:]]  # body[0] is the separator line


@pytest.mark.parametrize(
    "returns, expected",
    [
        ([0, 100, 40, 90, 30], 2),  # 40 and 30 are below 50 after the best of 100
        ([0, 10, 20, 30, 40], 0),  # monotone
        ([-50, -10, -200, -5, -300], 0),  # a best that is not positive never counts
        ([100, 49, 50, 200, 99], 2),  # strictly below half: 49 and 99, not 50
        ([100], 0),
    ],
)
def test_collapses(returns: list[float], expected: int) -> None:
    assert collapses(np.array(returns, dtype=float)) == expected


@pytest.mark.parametrize(
    "seeds, expected",
    [([12, 10, 11, 13, 14], "10-14"), ([0, 1, 2, 10, 11, 12, 13, 14, 15], "0-2, 10-15"), ([3], "3"), ([0, 2, 4], "0, 2, 4")],
)
def test_seed_ranges(seeds: list[int], expected: str) -> None:
    assert seed_ranges([dict(seed=seed) for seed in seeds]) == expected


def test_late_means_average_the_evaluations_after_80_percent_of_the_budget() -> None:
    # evaluations at 100k ... 1M and the final one after the budget, as benchmarks.returns records them
    curve = make_curve([10, 20, 30, 40, 50, 60, 70, 80, 90, 100], every=100_000)
    curve.append(dict(curve[-1], mean_return=110.0))
    runs = [dict(budget=1_000_000, curve=curve), dict(budget=500_000, curve=curve)]
    # 1M: 900k, 1M, final -> (90 + 100 + 110) / 3; 500k: everything after 400k -> (50 + ... + 100 + 110) / 7
    np.testing.assert_allclose(late_means(runs), [100.0, 80.0])


def test_improvement_table_compares_finals_and_late_means() -> None:
    def run(algo: str, seed: int, returns: list[float]) -> dict:
        return dict(env="Walker2d-v5", algo=algo, seed=seed, budget=1_000, curve=make_curve(returns, every=250))

    # single path ends lower than sb3-contrib on both seeds but is higher over the late evaluations
    runs = [run("sb3_contrib", 0, [0, 0, 0, 50, 60]), run("sb3_contrib", 1, [0, 0, 0, 40, 70])]
    runs += [run("single_path", 0, [0, 0, 0, 100, 30]), run("single_path", 1, [0, 0, 0, 90, 30])]
    (row,) = table_rows(improvement_table(by_task(runs), reps=200, seed=0), "| env |")
    assert row["X > Y"] == "TRPOVine single-path > sb3_contrib.TRPO"
    assert row["P(X > Y) final [95% CI]"].startswith("0.00 [")
    assert row["P(X > Y) late [95% CI]"].startswith("1.00 [")  # late means (after 800 steps): 65, 60 against 55, 55
    assert row["runs"] == "2 vs 2"


def test_steps_to_reach() -> None:
    curve = make_curve([10, 40, 55, 80, 30])
    assert steps_to_reach(curve, 50.0, "timesteps") == 3000.0
    assert steps_to_reach(curve, 50.0, "seconds") == 6.0
    assert steps_to_reach(curve, 40.0, "timesteps") == 2000.0  # reaching is "at least"
    assert steps_to_reach(curve, 81.0, "timesteps") is None


def test_half_reached_counts_runs_that_never_reach() -> None:
    assert half_reached([30.0, None, 10.0, 20.0]) == 20.0  # 2 of 4 by 20
    assert half_reached([30.0, None, 10.0, None, 20.0]) == 30.0  # 3 of 5 needed
    assert half_reached([None, None, 10.0, None, 20.0]) is None
    assert half_reached([None, 5.0]) == 5.0


def test_reach_table_reports_medians_over_reaching_runs_and_over_all_runs() -> None:
    def run(algo: str, seed: int, returns: list[float]) -> dict:
        return dict(env="Hopper-v5", algo=algo, seed=seed, budget=4_000, curve=make_curve(returns))

    # single path's IQM final is 100 (mean of 3); vine reaches it at 1000 steps in one run of three, never in two
    runs = [run("single_path", 0, [0, 0, 100, 100]), run("single_path", 1, [0, 100, 0, 100])]
    runs += [run("single_path", 2, [0, 0, 0, 100])]
    runs += [run("vine", 0, [100, 0, 0, 0]), run("vine", 1, [0, 0, 0, 0]), run("vine", 2, [0, 0, 0, 0])]
    rows = {row["algorithm"]: row for row in table_rows(reach_table(by_task(runs)), "| env |")}
    single_path, vine = rows["TRPOVine single-path"], rows["TRPOVine vine"]
    assert single_path["reached"] == "3/3" and single_path["median steps"] == "3,000"  # first at 3000, 2000, 4000
    assert single_path["half of runs: steps"] == "3,000" and single_path["half of runs: train s"] == "6"
    assert vine["reached"] == "1/3" and vine["median steps"] == "1,000"  # faster among the runs that reach it
    assert vine["half of runs: steps"] == "never" and vine["half of runs: train s"] == "never"
    # the IQM (here the mean) of single path's evaluations is 0, 33, 33, 100: the curve reaches 100 at the last one
    assert single_path["IQM curve: steps"] == "4,000" and single_path["IQM curve: train s"] == "8"
    assert vine["IQM curve: steps"] == "never"  # vine's means: 33, 0, 0, 0


def test_same_session_runs_pair_reruns_with_benchmark_runs_of_their_commit() -> None:
    def run(algo: str, seed: int, commit: str, tag: str | None = None) -> dict:
        return dict(env="Swimmer-v5", algo=algo, seed=seed, budget=1_000, commit=commit, tag=tag, curve=make_curve([1.0]))

    refiled = run("vine", 2, "abc", "vecnormalize-gamma0.99")
    sweeps = [run("single_path", 0, "abc", "same-session-rerun"), run("single_path", 1, "abc", "kl0.01"), refiled]
    benchmark = [run("vine", 0, "abc"), run("vine", 1, "old"), run("single_path", 0, "abc"), run("sb3_contrib", 0, "abc")]
    chosen = {(r["algo"], r["seed"], r["tag"]) for r in same_session_runs(benchmark, sweeps)}
    # the rerun, and the benchmark runs of the same commit for the algorithms it lacks (also those re-filed as a
    # sweep when the benchmark's VecNormalize changed); not the other sweep, not the benchmark's single path (the
    # rerun replaces it), not a vine run from another commit
    expected = {("single_path", 0, "same-session-rerun"), ("vine", 0, None), ("sb3_contrib", 0, None)}
    assert chosen == expected | {("vine", 2, "vecnormalize-gamma0.99")}


def test_iqm_matches_trimmed_mean() -> None:
    values = np.array([1, 2, 3, 4, 100, 5, 6, 7], dtype=float)
    expected = trim_mean(values, 0.25)
    assert abs(iqm(values) - expected) < 1e-9
    estimate = iqm_interval(values, reps=500, seed=0)
    assert abs(estimate.point - expected) < 1e-9
    assert estimate.low <= estimate.point <= estimate.high
    assert estimate == iqm_interval(values, reps=500, seed=0)  # seeded bootstrap: reproducible


def test_probability_of_improvement() -> None:
    better, worse = np.array([10.0, 11.0, 12.0]), np.array([1.0, 2.0, 3.0])
    assert improvement(better, worse, reps=200, seed=0).point == 1.0
    assert improvement(worse, better, reps=200, seed=0).point == 0.0
    assert improvement(better, better, reps=200, seed=0).point == 0.5


def test_report_from_result_files(tmp_path: pathlib.Path) -> None:
    runs = {
        "s0": dict(seed=0, commit="0123456789abcdef0123456789abcdef01234567+dirty", returns=[0, 100, 40, 90, 30, 80]),
        "s1": dict(seed=1, returns=[10, 60, 70, 75, 90, 100]),  # an older file: no commit
    }
    for name, run in runs.items():
        payload = dict(
            env="Hopper-v5",
            algo="single_path",
            seed=run["seed"],
            budget=1_000_000,
            hyperparams="{}",
            curve=make_curve(run["returns"], every=200_000),
            **({"commit": run["commit"]} if "commit" in run else {}),
        )
        (tmp_path / f"Hopper-v5__single_path__{name}__1000000.json").write_text(json.dumps(payload))
    loaded = load_runs(tmp_path)
    assert [run["seed"] for run in loaded] == [0, 1]

    markdown = returns_section(loaded, reps=200, seed=0)
    (row,) = table_rows(markdown, "| env | budget | algorithm | seeds |")
    assert row["algorithm"] == "TRPOVine single-path"
    assert row["seeds"] == "2"
    assert row["seed ids"] == "0-1"
    assert row["IQM final [95% CI]"].startswith("90.0 [")  # IQM of 2 runs: their mean, (80 + 100) / 2
    assert row["IQM best [95% CI]"].startswith("100.0 [")
    assert row["IQM late [95% CI]"].startswith("75.0 [")  # after 800k steps: (30 + 80) / 2 and (90 + 100) / 2
    assert row["final per seed"] == "80 100"
    assert row["train s"] == "12"
    assert row["collapses"] == "2"  # both in seed 0, none in seed 1
    assert row["commits"] == "0123456789+dirty, unrecorded"
    assert row["RL-Zoo v3 1M"] == "3618"

    (reach,) = table_rows(markdown, "| env | budget | single-path IQM final |")
    assert reach["reached"] == "2/2"  # seed 0 at its second evaluation (100), seed 1 at its fifth (90)
    assert reach["median steps"] == "700,000"
    assert "python -m benchmarks.returns" in markdown and "python -m benchmarks.report" in markdown
