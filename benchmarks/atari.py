"""
Atari end to end: TRPOVine vine and single-path on one ALE game through the RL Zoo, short budget.

Shows the whole path runs (``python -m sb3_trpo_vine.zoo train`` with the packaged Atari entry: CnnPolicy, sticky
actions in Python that snapshots restore exactly, vine branches of the image env); no score claim. Each
(scheme, seed, budget) run trains in its own zoo log folder and writes docs/results/atari/<game>__<scheme>__s<seed>__
<budget>.json (training-episode game scores from the Monitor files, a final deterministic evaluation episode, wall
time); finished runs are skipped. Writes the "atari" section of docs/benchmarks.md.

    python -m benchmarks.atari [--env PongNoFrameskip-v4] [--budget 30000] [--seeds 0]
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.common import RESULTS, machine_description, markdown_table, write_section

RUNS = RESULTS / "atari"
SCHEMES = {"vine": ["--scheme", "vine"], "single_path": ["--scheme", "single_path"]}
TRUNK_STEPS = 8 * 256  # n_envs * n_steps of the packaged Atari entry


def run(env_id: str, scheme: str, seed: int, budget: int, torch_threads: int) -> pathlib.Path:
    """
    :param env_id: an Atari id with an entry in the packaged hyperparameters
    :param scheme: ``vine`` or ``single_path``
    :param seed: the seed
    :param budget: simulator steps (agent steps; vine counts its branch steps)
    :param torch_threads: torch threads of the training process
    :return: the result file
    """
    path = RUNS / f"{env_id}__{scheme}__s{seed}__{budget}.json"
    if path.exists():
        print(f"skip {path.name} (done)", flush=True)
        return path
    with tempfile.TemporaryDirectory(prefix="atari-") as log_folder:
        command = [
            sys.executable, "-m", "sb3_trpo_vine.zoo", "train", "--env", env_id, "--seed", str(seed),
            "-n", str(budget), "--log-folder", log_folder, "--eval-episodes", "1",
            # the zoo's EvalCallback counts trunk steps: vine evaluates after every iteration, single-path at the end
            "--eval-freq", str(TRUNK_STEPS if scheme == "vine" else budget),
            "--n-eval-envs", "1", *SCHEMES[scheme],
        ]  # fmt: skip
        start = time.perf_counter()
        subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": str(torch_threads)})
        seconds = time.perf_counter() - start
        run_folder = next(pathlib.Path(log_folder, "trpo_vine").glob(f"{env_id}_*"))
        monitor = pd.concat(
            [pd.read_csv(csv, skiprows=1) for csv in sorted(run_folder.glob("*.monitor.csv"))], ignore_index=True
        ).sort_values("t")
        evaluations = np.load(run_folder / "evaluations.npz")
        payload: dict[str, Any] = dict(
            env=env_id,
            scheme=scheme,
            seed=seed,
            budget=budget,
            seconds=seconds,
            timesteps=int(evaluations["timesteps"][-1]),
            training_episode_scores=monitor["r"].tolist(),
            final_evaluation_score=float(evaluations["results"][-1].mean()),
            machine=machine_description(),
        )
    RUNS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1))
    print(f"{path.name}: {len(payload['training_episode_scores'])} episodes in {seconds:.0f}s", flush=True)
    return path


def summary_table(paths: list[pathlib.Path]) -> str:
    """
    :param paths: result files
    :return: a Markdown table, one row per run
    """
    rows = []
    for path in paths:
        result = json.loads(path.read_text())
        scores = result["training_episode_scores"]
        rows.append(
            [
                result["env"],
                result["scheme"],
                result["seed"],
                f"{result['timesteps']:,}",
                f"{result['seconds'] / 60:.1f}",
                len(scores),
                f"{np.mean(scores[:3]):.1f}" if scores else "-",
                f"{np.mean(scores[-3:]):.1f}" if scores else "-",
                f"{result['final_evaluation_score']:.1f}",
            ]
        )
    header = [
        "env", "scheme", "seed", "simulator steps", "minutes (incl. start and evaluation)", "training episodes",
        "first 3 episodes", "last 3 episodes", "final deterministic episode",
    ]  # fmt: skip
    return markdown_table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="PongNoFrameskip-v4")
    parser.add_argument("--schemes", nargs="+", default=list(SCHEMES), choices=list(SCHEMES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--budget", type=int, default=30_000)
    parser.add_argument("--torch-threads", type=int, default=1)
    args = parser.parse_args()
    paths = [run(args.env, scheme, seed, args.budget, args.torch_threads) for seed in args.seeds for scheme in args.schemes]
    table = summary_table(paths)
    print(table)
    write_section(
        "atari",
        f"## Atari end to end: {args.env}, vine and single-path through the RL Zoo\n\n"
        f"`python -m benchmarks.atari --env {args.env} --budget {args.budget} --seeds "
        f"{' '.join(map(str, args.seeds))}`: the packaged zoo entry (CnnPolicy with separate critic CNN, 8 envs, sticky "
        "actions p=0.25 in Python below AtariPreprocessing, 4 stacked frames; vine: 64 rollout states, 4 uniformly "
        "proposed actions, 50-step branches), single-path with only `rollout_buffer_class` changed. A short budget "
        "that shows the path runs end to end, not a score: Pong starts at about -21 and needs millions of frames. "
        f"Game scores (unclipped, from the Monitor); {args.torch_threads} torch thread(s).\n\n{table}\n",
    )


if __name__ == "__main__":
    main()
