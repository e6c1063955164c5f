"""
Tables and plots from saved benchmark results only (no training): docs/results/returns/*.json (benchmark runs) and
docs/results/sweeps/*.json (tuning sweeps) become sections of docs/benchmarks.md and the results block of
docs/modules/trpo_vine.md; learning curves against simulator steps and wall-clock seconds and the speed bar chart go
to docs/images/.

Statistics are over runs (seeds), one task (env, budget) at a time, computed with rliable:

- IQM, the interquartile mean: the mean of the middle 50% of the runs' scores (a 25% trimmed mean, which cuts
  int(n / 4) runs at each end, so with 3 runs it equals the mean); of the final evaluation (the last one, after the
  budget), of each run's best evaluation, and of each run's late mean (its mean return over the evaluations after
  80% of the budget: at 1M steps the last six, less sensitive to one evaluation than the final);
- 95% confidence intervals: percentile intervals of rliable's stratified bootstrap over runs (n_tasks = 1), with
  numpy's global generator seeded before every estimate so that the report is reproducible;
- probability of improvement P(X > Y): the probability that a random run of X ends above a random run of Y (ties
  count one half), with its interval from bootstrapping the runs of both independently;
- collapses: evaluations i > 0 whose return is below half of the run's best return over evaluations 0..i-1 while
  that best is positive, counted over all runs;
- steps and seconds to reach single path's IQM final return: a run reaches it at its first evaluation at or above
  it. Three measures: the median over the runs that reach it; the time by which half of all runs have reached it (a
  run that never does counts as never: the ceil(n / 2)-th smallest time, "never" when fewer than half reach it); and
  the first evaluation at which the IQM curve (the IQM over runs of each evaluation) reaches it, at the median
  steps and seconds of that evaluation;
- wall-clock within one session: the same table for runs made one after the other on one machine, the sweep runs
  tagged ``same-session-rerun`` and the benchmark runs made from the same commit.

    python -m benchmarks.report [--reps 2000] [--seed 0]
"""

import argparse
import itertools
import json
import pathlib
from collections import defaultdict
from collections.abc import Callable
from typing import Any, NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from rliable import library as rly
from rliable import metrics

from benchmarks.common import DOCS, RESULTS, markdown_table, write_section

IMAGES = DOCS / "images"
ALGORITHM_PAGE = DOCS / "modules" / "trpo_vine.md"
RETURNS = RESULTS / "returns"
SWEEPS = RESULTS / "sweeps"
LABELS = {"sb3_contrib": "sb3_contrib.TRPO", "single_path": "TRPOVine single-path", "vine": "TRPOVine vine"}
COMPARISONS = (("single_path", "sb3_contrib"), ("vine", "sb3_contrib"), ("vine", "single_path"))
# published RL-Zoo v3 TRPO returns after 1M steps, by env name before "-v"
ZOO_BUDGET = 1_000_000
ZOO_RETURNS = {"Hopper": 3618, "Walker2d": 4933, "HalfCheetah": 1786, "Swimmer": 366, "Ant": 4982}

# the late mean averages the evaluations after this fraction of the budget
LATE_FRACTION = 0.8
SAME_SESSION_TAG = "same-session-rerun"  # sweep runs repeated in one session to compare wall-clock
REFILED_TAG = "vecnormalize-gamma0.99"  # benchmark runs made before VecNormalize took the entry's gamma, kept as a sweep

Run = dict[str, Any]
Task = tuple[str, int]


class Estimate(NamedTuple):
    """A point estimate and its 95% confidence interval."""

    point: float
    low: float
    high: float

    def format(self, digits: int = 1) -> str:
        """
        :param digits: decimals
        :return: ``point [low, high]``
        """
        return f"{self.point:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def load_runs(folder: pathlib.Path = RETURNS) -> list[Run]:
    """
    :param folder: a folder of result files
    :return: its runs, sorted by env, budget, algorithm, tag and seed
    """
    return sorted((json.loads(path.read_text()) for path in folder.glob("*.json")), key=run_order)


def run_order(run: Run) -> tuple[str, int, str, str, int]:
    """
    :param run: one saved run
    :return: its sort key: env, budget, algorithm, tag and seed
    """
    return run["env"], run["budget"], run["algo"], run.get("tag") or "", run["seed"]


def by_task(runs: list[Run]) -> dict[Task, dict[str, list[Run]]]:
    """
    :param runs: runs sorted as by ``load_runs``
    :return: the runs of every (env, budget) task, by algorithm
    """
    tasks: dict[Task, dict[str, list[Run]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        tasks[(run["env"], run["budget"])][run["algo"]].append(run)
    return tasks


def returns_of(run: Run) -> np.ndarray:
    """
    :param run: one saved run
    :return: its evaluation returns in order
    """
    return np.array([point["mean_return"] for point in run["curve"]])


def finals(runs: list[Run]) -> np.ndarray:
    """
    :param runs: runs of one setting
    :return: the final evaluation return of every run
    """
    return np.array([returns_of(run)[-1] for run in runs])


def bests(runs: list[Run]) -> np.ndarray:
    """
    :param runs: runs of one setting
    :return: the best evaluation return of every run
    """
    return np.array([returns_of(run).max() for run in runs])


def late_means(runs: list[Run]) -> np.ndarray:
    """
    :param runs: runs of one setting
    :return: every run's mean evaluation return over its evaluations after ``LATE_FRACTION`` of the budget
    """
    return np.array(
        [
            np.mean([point["mean_return"] for point in run["curve"] if point["timesteps"] > LATE_FRACTION * run["budget"]])
            for run in runs
        ]
    )


def collapses(returns: np.ndarray) -> int:
    """
    :param returns: one run's evaluation returns in order
    :return: evaluations below half of the best positive return of the evaluations before them
    """
    best_before = np.maximum.accumulate(returns)[:-1]
    return int(np.sum((best_before > 0) & (returns[1:] < 0.5 * best_before)))


def steps_to_reach(curve: list[dict[str, float]], threshold: float, key: str) -> float | None:
    """
    :param curve: one run's evaluations in order
    :param threshold: the return to reach
    :param key: ``timesteps`` or ``seconds``
    :return: ``key`` at the first evaluation whose return is at least ``threshold``, None when none is
    """
    return next((float(point[key]) for point in curve if point["mean_return"] >= threshold), None)


def iqm_curve_reach(runs: list[Run], threshold: float) -> tuple[float, float] | None:
    """
    :param runs: runs of one setting, evaluated at the same points (their first common number of evaluations)
    :param threshold: the return to reach
    :return: median simulator steps and seconds of the first evaluation whose IQM over the runs is at least
        ``threshold``, None when none is
    """
    n_evaluations = min(len(run["curve"]) for run in runs)
    for index in range(n_evaluations):
        points = [run["curve"][index] for run in runs]
        if iqm(np.array([point["mean_return"] for point in points])) >= threshold:
            steps, seconds = (float(np.median([point[key] for point in points])) for key in ("timesteps", "seconds"))
            return steps, seconds
    return None


def half_reached(times: list[float | None]) -> float | None:
    """
    :param times: each run's time to reach a return, None for a run that never reaches it
    :return: the time by which half of the runs (rounded up) have reached it, None when fewer than half ever do
    """
    ordered = sorted(time for time in times if time is not None)
    needed = -(-len(times) // 2)
    return ordered[needed - 1] if len(ordered) >= needed else None


def seed_ranges(runs: list[Run]) -> str:
    """
    :param runs: runs of one setting
    :return: their seeds as sorted ranges of consecutive seeds, e.g. ``0-2, 10-14``
    """
    seeds = {run["seed"] for run in runs}
    starts = sorted(seed for seed in seeds if seed - 1 not in seeds)
    ends = sorted(seed for seed in seeds if seed + 1 not in seeds)
    return ", ".join(str(start) if start == end else f"{start}-{end}" for start, end in zip(starts, ends, strict=True))


def commits(runs: list[Run]) -> str:
    """
    :param runs: runs of one setting
    :return: the distinct commits they were made from, 10-character hashes (``+dirty`` kept), or ``unrecorded``
    """
    names = set()
    for run in runs:
        commit = run.get("commit")
        names.add(commit[:10] + ("+dirty" if commit.endswith("+dirty") else "") if commit else "unrecorded")
    return ", ".join(sorted(names))


def bootstrap(scores: np.ndarray | list[np.ndarray], statistic: Callable[..., float], reps: int, seed: int) -> Estimate:
    """
    rliable's stratified bootstrap of one task; rliable draws from numpy's global generator, seeded here.

    :param scores: an array of shape (n_runs, 1), or a list of them (bootstrapped independently)
    :param statistic: aggregate of the array(s)
    :param reps: bootstrap resamples
    :param seed: seed of numpy's global generator
    :return: the statistic and its 95% percentile interval
    """
    np.random.seed(seed)
    points, intervals = rly.get_interval_estimates({"scores": scores}, lambda *x: np.array([statistic(*x)]), reps=reps)
    return Estimate(float(points["scores"][0]), float(intervals["scores"][0, 0]), float(intervals["scores"][1, 0]))


def iqm(values: np.ndarray) -> float:
    """
    :param values: one score per run
    :return: their interquartile mean
    """
    return float(metrics.aggregate_iqm(values[:, None]))


def iqm_interval(values: np.ndarray, reps: int, seed: int) -> Estimate:
    """
    :param values: one score per run
    :param reps: bootstrap resamples
    :param seed: bootstrap seed
    :return: their interquartile mean and its stratified-bootstrap 95% interval
    """
    return bootstrap(values[:, None], metrics.aggregate_iqm, reps, seed)


def improvement(x: np.ndarray, y: np.ndarray, reps: int, seed: int) -> Estimate:
    """
    :param x: one score per run of algorithm X
    :param y: one score per run of algorithm Y
    :param reps: bootstrap resamples
    :param seed: bootstrap seed
    :return: the probability of improvement P(X > Y) and its 95% interval
    """
    return bootstrap([x[:, None], y[:, None]], metrics.probability_of_improvement, reps, seed)


def zoo_anchor(env_id: str, budget: int) -> str:
    """
    :param env_id: the env id
    :param budget: simulator steps
    :return: the published RL-Zoo v3 TRPO return at 1M steps, ``-`` for other budgets and envs
    """
    anchor = ZOO_RETURNS.get(env_id.split("-v")[0]) if budget == ZOO_BUDGET else None
    return "-" if anchor is None else str(anchor)


def image_name(env_id: str, budget: int) -> str:
    """
    :param env_id: the env id
    :param budget: simulator steps
    :return: the file name of the task's learning-curve plot
    """
    return f"returns_{env_id}_{budget}.png"


def returns_table(tasks: dict[Task, dict[str, list[Run]]], reps: int, seed: int) -> str:
    """
    :param tasks: runs by task and algorithm
    :param reps: bootstrap resamples
    :param seed: bootstrap seed
    :return: one row per task and algorithm
    """
    rows = []
    for (env_id, budget), algos in tasks.items():
        for algo, runs in algos.items():
            final = finals(runs)
            rows.append(
                [
                    env_id,
                    f"{budget:,}",
                    LABELS[algo],
                    len(runs),
                    seed_ranges(runs),
                    iqm_interval(final, reps, seed).format(),
                    iqm_interval(bests(runs), reps, seed).format(),
                    iqm_interval(late_means(runs), reps, seed).format(),
                    f"{final.mean():.1f} ± {final.std():.1f}",
                    " ".join(f"{value:.0f}" for value in final),
                    f"{np.mean([run['curve'][-1]['seconds'] for run in runs]):.0f}",
                    sum(collapses(returns_of(run)) for run in runs),
                    commits(runs),
                    zoo_anchor(env_id, budget),
                ]
            )
    header = ["env", "budget", "algorithm", "seeds", "seed ids", "IQM final [95% CI]", "IQM best [95% CI]"]
    header += ["IQM late [95% CI]", "mean ± std (final)", "final per seed", "train s", "collapses", "commits", "RL-Zoo v3 1M"]
    return markdown_table(header, rows)


def improvement_table(tasks: dict[Task, dict[str, list[Run]]], reps: int, seed: int) -> str:
    """
    :param tasks: runs by task and algorithm
    :param reps: bootstrap resamples
    :param seed: bootstrap seed
    :return: P(X > Y) of the final returns and of the late means for every pair of ``COMPARISONS`` with at least 2 runs each
    """
    rows = []
    for (env_id, budget), algos in tasks.items():
        for x, y in COMPARISONS:
            if len(algos.get(x, [])) >= 2 and len(algos.get(y, [])) >= 2:
                final = improvement(finals(algos[x]), finals(algos[y]), reps, seed)
                late = improvement(late_means(algos[x]), late_means(algos[y]), reps, seed)
                runs = f"{len(algos[x])} vs {len(algos[y])}"
                rows.append([env_id, f"{budget:,}", f"{LABELS[x]} > {LABELS[y]}", final.format(2), late.format(2), runs])
    header = ["env", "budget", "X > Y", "P(X > Y) final [95% CI]", "P(X > Y) late [95% CI]", "runs"]
    return markdown_table(header, rows)


def reach_table(tasks: dict[Task, dict[str, list[Run]]]) -> str:
    """
    :param tasks: runs by task and algorithm
    :return: simulator steps and seconds until single path's IQM final return, for tasks with single-path runs
    """
    rows = []
    for (env_id, budget), algos in tasks.items():
        if "single_path" not in algos:
            continue
        threshold = iqm(finals(algos["single_path"]))
        for algo, runs in algos.items():
            steps = [steps_to_reach(run["curve"], threshold, "timesteps") for run in runs]
            seconds = [steps_to_reach(run["curve"], threshold, "seconds") for run in runs]
            reached = [value for value in steps if value is not None]
            median_steps = f"{np.median(reached):,.0f}" if reached else "-"
            median_seconds = f"{np.median([s for s in seconds if s is not None]):.0f}" if reached else "-"
            half_steps, half_seconds = half_reached(steps), half_reached(seconds)
            row = [env_id, f"{budget:,}", f"{threshold:.1f}", LABELS[algo], f"{len(reached)}/{len(runs)}"]
            half = ["never", "never"] if half_steps is None else [f"{half_steps:,.0f}", f"{half_seconds:.0f}"]
            aggregate = iqm_curve_reach(runs, threshold)
            by_iqm = ["never", "never"] if aggregate is None else [f"{aggregate[0]:,.0f}", f"{aggregate[1]:.0f}"]
            rows.append([*row, median_steps, median_seconds, *half, *by_iqm])
    header = ["env", "budget", "single-path IQM final", "algorithm", "reached", "median steps", "median train s"]
    header += ["half of runs: steps", "half of runs: train s", "IQM curve: steps", "IQM curve: train s"]
    return markdown_table(header, rows)


def returns_section(runs: list[Run], reps: int, seed: int) -> str:
    """
    :param runs: benchmark runs, from ``load_runs``
    :param reps: bootstrap resamples
    :param seed: bootstrap seed
    :return: the returns section of docs/benchmarks.md: protocol, returns, probabilities of improvement, time to reach
    """
    tasks = by_task(runs)
    plots = "\n\n".join(f"![{name}](images/{name})" for name in (image_name(*task) for task in tasks))
    return (
        "## Returns\n\n"
        "`python -m benchmarks.returns --envs ENV --algos sb3_contrib single_path vine --seeds 0 1 2 --budget STEPS` "
        "(the runs below: `make bench`) then `python -m benchmarks.report`. Protocol: every N simulator steps "
        "(`--eval-every`, default budget / 10, at the end of the first rollout past each multiple) and after the "
        "budget, 10 deterministic episodes on a separate env (seed + 10,000) with the training VecNormalize "
        "statistics frozen; final = the last evaluation, best = a run's best evaluation. Simulator steps count vine's "
        "branch steps; wall-clock excludes evaluation, one torch thread per run. Hyperparameters: the RL-Zoo TRPO entry "
        "for sb3-contrib, the package's zoo_hyperparams/single_path.yml and vine.yml entries for ours (each result "
        "file records the hyperparameters and commit it ran with; 300k-step runs before 2026-12-01 used the zoo "
        "entry translated to our KL units for single path and the N=64, K=4, H=50 vine entries). VecNormalize is "
        "built as rl_zoo3 builds it, discounting the reward normaliser's returns with the entry's gamma (recorded "
        "in each file since 2026-12-08); earlier runs used VecNormalize's own 0.99, which differs where the entry's "
        "gamma does: Hopper-v5 (0.995, ours) and Swimmer-v5 (0.9999, all three). Their 1M rows were re-made (the "
        "earlier runs: sweep vecnormalize-gamma0.99), except Hopper-v5's vine row, made the earlier way.\n\n"
        "Per task (env, budget), over runs (seeds), with rliable: IQM (interquartile mean; with 3 runs it equals the "
        f"mean) and its 95% stratified-bootstrap CI ({reps:,} resamples, seed {seed}); late = a run's mean return over "
        "its evaluations after 80% of the budget (at 1M steps the last six: those at the first rollouts past 800k, "
        "850k, 900k and 950k, and two after the budget, before and after the last update), less sensitive to one "
        "evaluation than final; collapses = evaluations below half of the run's best positive return before them, "
        "summed over runs; commits = the code the runs were made from. RL-Zoo v3 1M: the published RL-Zoo TRPO "
        "return at 1M steps.\n\n"
        f"{returns_table(tasks, reps, seed)}\n\n"
        "### Probability of improvement\n\n"
        "Probability that a random run of X has a higher final return (late mean) than a random run of Y (ties count "
        "one half), 95% CI from bootstrapping the runs of both; pairs with at least 2 runs each.\n\n"
        f"{improvement_table(tasks, reps, seed)}\n\n"
        "### Steps and time to single path's final return\n\n"
        "First evaluation at or above single path's IQM final return on the task; medians over the runs that reach "
        "it, and the steps and seconds by which half of all runs have reached it (a run that never does counts as "
        'never; "never" when fewer than half do), and where the IQM curve (the IQM over runs of each evaluation) '
        "first reaches it, at that evaluation's median steps and seconds. Seconds compare only between runs made on "
        "the same machine and day: the commits column of the returns table says when each task's runs were made, "
        "and the section on wall-clock within one session holds runs made one after the other.\n\n"
        f"{reach_table(tasks)}\n\n{plots}\n"
    )


def same_session_runs(runs: list[Run], sweeps: list[Run]) -> list[Run]:
    """
    :param runs: benchmark runs, from ``load_runs``
    :param sweeps: sweep runs, from ``load_runs(SWEEPS)``
    :return: the sweep runs tagged ``SAME_SESSION_TAG`` and, for the algorithms they lack on a task, the benchmark
        runs (or benchmark runs re-filed under ``REFILED_TAG``) made from the same commit on that task
    """
    reruns = [run for run in sweeps if run.get("tag") == SAME_SESSION_TAG]
    rerun_algos = {(run["env"], run["budget"], run["algo"]) for run in reruns}
    sessions = {(run["env"], run["budget"], run.get("commit")) for run in reruns}
    benchmark_runs = runs + [run for run in sweeps if run.get("tag") == REFILED_TAG]
    partners = [
        run
        for run in benchmark_runs
        if (run["env"], run["budget"], run.get("commit")) in sessions
        and (run["env"], run["budget"], run["algo"]) not in rerun_algos
    ]
    return sorted(reruns + partners, key=run_order)


def same_session_section(runs: list[Run]) -> str:
    """
    :param runs: runs made in one session per task, from ``same_session_runs``
    :return: the section of docs/benchmarks.md on steps and seconds to single path's final return within a session
    """
    tasks = by_task(runs)
    task_commits = "; ".join(
        f"{env_id} at {budget:,}: {commits([run for algo_runs in algos.values() for run in algo_runs])}"
        for (env_id, budget), algos in tasks.items()
    )
    return (
        "## Wall-clock within one session\n\n"
        "Runs made one after the other on one machine, two at a time: the sweep runs tagged "
        f"`{SAME_SESSION_TAG}` (`python -m benchmarks.returns ... --tag {SAME_SESSION_TAG}`) and the benchmark runs "
        "made from the same commit. The threshold is single path's IQM final over these runs; the columns are those "
        f"of the returns section's time table. Commits: {task_commits}.\n\n"
        f"{reach_table(tasks)}\n"
    )


def sweep_setting(run: Run) -> tuple[str, str, int, str]:
    """
    :param run: one saved sweep run
    :return: its env, algorithm, budget and tag
    """
    return run["env"], run["algo"], run["budget"], run.get("tag") or ""


def sweeps_section(runs: list[Run]) -> str:
    """
    :param runs: sweep runs, from ``load_runs(SWEEPS)``
    :return: the sweeps section of docs/benchmarks.md, one row per setting
    """
    rows = []
    ordered = sorted(runs, key=lambda run: (*sweep_setting(run), run["seed"]))
    for (env_id, algo, budget, tag), group in itertools.groupby(ordered, key=sweep_setting):
        setting = list(group)
        final = finals(setting)
        seeds = " ".join(str(run["seed"]) for run in setting)
        per_seed = " ".join(f"{value:.0f}" for value in final)
        rows.append([env_id, LABELS[algo], tag, f"{budget:,}", seeds, f"{iqm(final):.1f}", f"{final.mean():.1f}", per_seed])
    table = markdown_table(["env", "algorithm", "tag", "budget", "seeds", "IQM final", "mean final", "final per seed"], rows)
    return (
        "## Sweeps\n\n"
        "Tuning settings, `python -m benchmarks.returns ... --set KEY=VALUE ... --tag TAG` (files in "
        "`docs/results/sweeps/`, hyperparameters in each file), same evaluation protocol as the returns.\n\n"
        f"{table}\n"
    )


def curve(run: Run, x_key: str) -> tuple[np.ndarray, np.ndarray]:
    """
    :param run: one saved run
    :param x_key: ``timesteps`` or ``seconds``
    :return: x values and evaluation returns
    """
    return np.array([point[x_key] for point in run["curve"]]), returns_of(run)


def band(curves: list[tuple[np.ndarray, np.ndarray]], grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    :param curves: x values and returns of every run
    :param grid: where to interpolate them (NaN outside a run's range)
    :return: mean, 25th and 75th percentiles over the runs at every grid point
    """
    values = np.stack([np.interp(grid, x, y, left=np.nan, right=np.nan) for x, y in curves])
    low, high = np.nanpercentile(values, 25, axis=0), np.nanpercentile(values, 75, axis=0)
    return np.nanmean(values, axis=0), low, high


def plot_returns(env_id: str, budget: int, algos: dict[str, list[Run]]) -> str:
    """
    :param env_id: the env id
    :param budget: simulator steps
    :param algos: the task's runs by algorithm
    :return: the written image's name (in docs/images/): curves against simulator steps and wall-clock seconds
    """
    figure, (by_steps, by_time) = plt.subplots(1, 2, figsize=(11, 4))
    for algo, runs in algos.items():
        for axis, x_key in ((by_steps, "timesteps"), (by_time, "seconds")):
            curves = [curve(run, x_key) for run in runs]
            grid = np.linspace(0, max(x[-1] for x, _ in curves), 60)
            mean, low, high = band(curves, grid)
            axis.plot(grid, mean, label=f"{LABELS[algo]} ({len(runs)} seeds)")
            axis.fill_between(grid, low, high, alpha=0.2)
    by_steps.set_xlabel("simulator steps (vine: trunk + branches)")
    by_time.set_xlabel("wall-clock seconds (training only)")
    for axis in (by_steps, by_time):
        axis.set_ylabel("evaluation return")
        axis.grid(alpha=0.3)
    by_steps.legend(fontsize=8)
    figure.suptitle(f"{env_id}, budget {budget:,} steps: mean over seeds, shaded interquartile range")
    figure.tight_layout()
    IMAGES.mkdir(parents=True, exist_ok=True)
    name = image_name(env_id, budget)
    figure.savefig(IMAGES / name, dpi=90)
    plt.close(figure)
    return name


def algorithm_page_results(runs: list[Run]) -> str:
    """
    :param runs: benchmark runs, from ``load_runs``
    :return: the results block of the algorithm page: final-return IQMs side by side, speed ratios, the plots
    """
    tasks = by_task(runs)
    rows = []
    for (env_id, budget), by_algo in tasks.items():
        cells = [
            f"{iqm(finals(by_algo[algo])):.0f} ({len(by_algo[algo])} seeds)" if algo in by_algo else "-" for algo in LABELS
        ]
        rows.append([env_id, f"{budget:,}", *cells])
    text = "Final evaluation return after the budget, IQM over seeds (details and confidence intervals on the "
    text += "[benchmarks page](../benchmarks.md)):\n\n"
    text += markdown_table(["env", "simulator steps", *LABELS.values()], rows)
    speed_path = RESULTS / "speed.json"
    if speed_path.exists():
        speed = json.loads(speed_path.read_text())
        names = [name for name in next(iter(speed["tasks"].values()))["median_paired_ratio"] if name != "sb3_contrib.TRPO"]
        speed_rows = [
            [env_id, *(f"{task['median_paired_ratio'][name]:.2f}x" for name in names)]
            for env_id, task in speed["tasks"].items()
        ]
        text += "\n\nSteps/s relative to `sb3_contrib.TRPO` at identical hyperparameters (median of paired runs):\n\n"
        text += markdown_table(["env", *names], speed_rows)
        text += "\n\n![speed](../images/speed.png)"
    text += "\n\n" + "\n\n".join(f"![{name}](../images/{name})" for name in (image_name(*task) for task in tasks))
    return text + "\n"


def speed_plot() -> str | None:
    """
    :return: the written image's name (in docs/images/): steps/s of every run of the speed benchmark, None without
        its results
    """
    path = RESULTS / "speed.json"
    if not path.exists():
        return None
    speed = json.loads(path.read_text())
    figure, axis = plt.subplots(figsize=(7, 3.5))
    envs = list(speed["tasks"])
    names = list(next(iter(speed["tasks"].values()))["median_steps_per_s"])
    width = 0.8 / len(names)
    for index, name in enumerate(names):
        values = [speed["tasks"][env]["median_steps_per_s"][name] for env in envs]
        axis.bar(np.arange(len(envs)) + index * width, values, width, label=name)
    axis.set_xticks(np.arange(len(envs)) + width * (len(names) - 1) / 2, envs)
    axis.set_ylabel("steps/s (median)")
    axis.set_yscale("log")
    axis.legend(fontsize=8)
    figure.tight_layout()
    IMAGES.mkdir(parents=True, exist_ok=True)
    figure.savefig(IMAGES / "speed.png", dpi=90)
    plt.close(figure)
    return "speed.png"


def main(argv: list[str] | None = None) -> None:
    """
    :param argv: command-line arguments (default: ``sys.argv[1:]``)
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples per estimate (default: 2000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every bootstrap (default: 0)")
    args = parser.parse_args(argv)
    if speed_plot() is not None:
        write_section("speed-plot", "![speed](images/speed.png)\n")
    runs = load_runs()
    if runs:
        for (env_id, budget), algos in by_task(runs).items():
            plot_returns(env_id, budget, algos)
        write_section("returns", returns_section(runs, args.reps, args.seed))
        write_section("results", algorithm_page_results(runs), ALGORITHM_PAGE)
    sweeps = load_runs(SWEEPS)
    if sweeps:
        write_section("sweeps", sweeps_section(sweeps))
        session = same_session_runs(runs, sweeps)
        if session:
            write_section("same-session", same_session_section(session))
    print(f"updated {DOCS / 'benchmarks.md'} and {ALGORITHM_PAGE}")


if __name__ == "__main__":
    main()
