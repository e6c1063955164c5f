"""
Tables and plots from saved benchmark results only (no training): returns (IQM and bootstrap 95% CI over seeds),
learning curves against simulator steps and wall-clock seconds, and the speed bar chart.

    python -m benchmarks.report
"""

import json
from collections import defaultdict
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import trim_mean

from benchmarks.common import DOCS, RESULTS, markdown_table, write_section

IMAGES = DOCS / "images"
ALGORITHM_PAGE = DOCS / "modules" / "trpo_vine.md"
LABELS = {"sb3_contrib": "sb3_contrib.TRPO", "single_path": "TRPOVine single-path", "vine": "TRPOVine vine"}


def iqm(values: np.ndarray) -> float:
    """
    :param values: one score per seed
    :return: interquartile mean (the mean of the middle 50%)
    """
    return float(trim_mean(values, 0.25))


def bootstrap_ci(values: np.ndarray, statistic: Any = iqm, n_resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """
    :param values: one score per seed
    :param statistic: aggregate to bootstrap
    :param n_resamples: bootstrap resamples of the seeds
    :param seed: resampling seed
    :return: the 2.5% and 97.5% percentiles
    """
    rng = np.random.default_rng(seed)
    samples = [statistic(rng.choice(values, size=len(values), replace=True)) for _ in range(n_resamples)]
    return float(np.percentile(samples, 2.5)), float(np.percentile(samples, 97.5))


def load_runs() -> dict[tuple[str, int], dict[str, list[dict[str, Any]]]]:
    runs: dict[tuple[str, int], dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted((RESULTS / "returns").glob("*.json")):
        run = json.loads(path.read_text())
        runs[(run["env"], run["budget"])][run["algo"]].append(run)
    return runs


def curve(run: dict[str, Any], x_key: str) -> tuple[np.ndarray, np.ndarray]:
    """
    :param run: one saved run
    :param x_key: ``timesteps`` or ``seconds``
    :return: x values and evaluation returns
    """
    return np.array([point[x_key] for point in run["curve"]]), np.array([point["mean_return"] for point in run["curve"]])


def band(curves: list[tuple[np.ndarray, np.ndarray]], grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    values = np.stack([np.interp(grid, x, y, left=np.nan, right=np.nan) for x, y in curves])
    low, high = np.nanpercentile(values, 25, axis=0), np.nanpercentile(values, 75, axis=0)
    return np.nanmean(values, axis=0), low, high


def plot_returns(env_id: str, budget: int, algos: dict[str, list[dict[str, Any]]]) -> str:
    figure, (by_steps, by_time) = plt.subplots(1, 2, figsize=(11, 4))
    for algo, runs in algos.items():
        steps = [
            (np.array([p["timesteps"] for p in r["curve"]]), np.array([p["mean_return"] for p in r["curve"]])) for r in runs
        ]
        times = [
            (np.array([p["seconds"] for p in r["curve"]]), np.array([p["mean_return"] for p in r["curve"]])) for r in runs
        ]
        for axis, curves in ((by_steps, steps), (by_time, times)):
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
    name = f"returns_{env_id}_{budget}.png"
    figure.savefig(IMAGES / name, dpi=90)
    plt.close(figure)
    return name


def returns_section() -> str:
    rows, images = [], []
    for (env_id, budget), algos in sorted(load_runs().items()):
        for algo, runs in sorted(algos.items()):
            finals = np.array([run["curve"][-1]["mean_return"] for run in runs])
            low, high = bootstrap_ci(finals)
            seconds = np.mean([run["curve"][-1]["seconds"] for run in runs])
            rows.append(
                [
                    env_id,
                    f"{budget:,}",
                    LABELS[algo],
                    len(runs),
                    f"{iqm(finals):.1f} [{low:.1f}, {high:.1f}]",
                    f"{finals.mean():.1f} ± {finals.std():.1f}",
                    " ".join(f"{v:.0f}" for v in finals),
                    f"{seconds:.0f}",
                ]
            )
        images.append(plot_returns(env_id, budget, algos))
    table = markdown_table(
        ["env", "budget", "algorithm", "seeds", "final IQM [95% bootstrap CI]", "mean ± std", "per seed", "train s"], rows
    )
    plots = "\n\n".join(f"![{name}](images/{name})" for name in images)
    return (
        "## Returns\n\n`python -m benchmarks.returns ...` then `python -m benchmarks.report`. Final deterministic "
        "evaluation return (10 episodes on a separate env, frozen VecNormalize statistics) after the budget; IQM and "
        "its bootstrap CI over seeds (with 3 seeds the IQM equals the mean). Hyperparameters: RL-Zoo TRPO entries for "
        "sb3-contrib and single-path (ours with the same trust region in the paper's KL), the package's zoo entries "
        f"for vine. Wall-clock excludes evaluation, one torch thread per run.\n\n{table}\n\n{plots}\n"
    )


def algorithm_page_results() -> str:
    """
    :return: the results block of the algorithm page: final-return IQMs side by side, speed ratios, the plots
    """
    runs = load_runs()
    algos = list(LABELS)
    rows = []
    for (env_id, budget), by_algo in sorted(runs.items()):
        cells = []
        for algo in algos:
            finals = np.array([run["curve"][-1]["mean_return"] for run in by_algo.get(algo, [])])
            cells.append(f"{iqm(finals):.0f} ({len(finals)} seeds)" if len(finals) else "-")
        rows.append([env_id, f"{budget:,}", *cells])
    text = "Final evaluation return after the budget, IQM over seeds (details and confidence intervals on the "
    text += "[benchmarks page](../benchmarks.md)):\n\n"
    text += markdown_table(["env", "simulator steps", *(LABELS[algo] for algo in algos)], rows)
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
    images = [f"returns_{env_id}_{budget}.png" for env_id, budget in sorted(runs)]
    text += "\n\n" + "\n\n".join(f"![{name}](../images/{name})" for name in images)
    return text + "\n"


def speed_plot() -> str | None:
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


def main() -> None:
    if speed_plot() is not None:
        write_section("speed-plot", "![speed](images/speed.png)\n")
    if load_runs():
        write_section("returns", returns_section())
        write_section("results", algorithm_page_results(), ALGORITHM_PAGE)
    print(f"updated {DOCS / 'benchmarks.md'} and {ALGORITHM_PAGE}")


if __name__ == "__main__":
    main()
