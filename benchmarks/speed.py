"""
Paired speed benchmark: TRPOVine (single-path) vs sb3_contrib.TRPO at identical hyperparameters and seeds.

Runs are interleaved (contrib, ours, contrib, ours, ...) in one process so both see the same machine load;
the env-only ceiling drives the same VecEnv stack with random actions. Prints a table and writes
docs/results/speed.json and the "speed" section of docs/benchmarks.md.

    python benchmarks/speed.py [--repeats 3] [--iterations 8]
"""

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from sb3_contrib import TRPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from benchmarks.common import machine_description, markdown_table, save_json, write_section
from sb3_trpo_vine import TRPOVine

# RL-Zoo hyperparameters (rl_zoo3/hyperparams/trpo.yml): MuJoCo defaults and the CartPole entry.
TASKS: dict[str, dict[str, Any]] = {
    "Hopper-v5": dict(
        n_envs=2,
        normalize=True,
        hyperparams=dict(
            batch_size=128,
            n_steps=1024,
            gamma=0.99,
            gae_lambda=0.95,
            sub_sampling_factor=1,
            cg_max_steps=25,
            cg_damping=0.1,
            n_critic_updates=20,
            learning_rate=1e-3,
        ),
    ),
    "CartPole-v1": dict(
        n_envs=2,
        normalize=False,
        hyperparams=dict(
            n_steps=512,
            batch_size=512,
            cg_damping=1e-3,
            gae_lambda=0.98,
            gamma=0.99,
            learning_rate=1e-3,
            n_critic_updates=20,
        ),
    ),
}


def make_env(env_id: str, n_envs: int, normalize: bool, seed: int) -> VecEnv:
    venv = make_vec_env(env_id, n_envs=n_envs, seed=seed)
    return VecNormalize(venv) if normalize else venv


def time_algorithm(algo: Callable[..., Any], env_id: str, task: dict[str, Any], iterations: int, seed: int) -> float:
    env = make_env(env_id, task["n_envs"], task["normalize"], seed)
    model = algo("MlpPolicy", env, seed=seed, **task["hyperparams"])
    steps = iterations * task["hyperparams"]["n_steps"] * task["n_envs"]
    start = time.perf_counter()
    model.learn(steps)
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


def time_random_actions(env_id: str, task: dict[str, Any], iterations: int, seed: int) -> float:
    env = make_env(env_id, task["n_envs"], task["normalize"], seed)
    env.action_space.seed(seed)
    env.reset()
    n_vec_steps = iterations * task["hyperparams"]["n_steps"]
    actions = [np.stack([env.action_space.sample() for _ in range(env.num_envs)]) for _ in range(n_vec_steps)]
    start = time.perf_counter()
    for action in actions:
        env.step(action)
    elapsed = time.perf_counter() - start
    env.close()
    return n_vec_steps * env.num_envs / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs per algorithm and task")
    parser.add_argument("--iterations", type=int, default=8, help="policy iterations per run")
    parser.add_argument("--envs", nargs="+", default=list(TASKS))
    parser.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads (same for every run)")
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads)

    results: dict[str, Any] = {"machine": machine_description(), "iterations": args.iterations, "tasks": {}}
    rows = []
    for env_id in args.envs:
        task = TASKS[env_id]
        runs: dict[str, list[float]] = {"sb3_contrib.TRPO": [], "TRPOVine single-path": [], "env only (random actions)": []}
        for repeat in range(args.repeats):
            seed = repeat
            runs["sb3_contrib.TRPO"].append(time_algorithm(TRPO, env_id, task, args.iterations, seed))
            runs["TRPOVine single-path"].append(time_algorithm(TRPOVine, env_id, task, args.iterations, seed))
            runs["env only (random actions)"].append(time_random_actions(env_id, task, args.iterations, seed))
        medians = {name: statistics.median(values) for name, values in runs.items()}
        ratio = medians["TRPOVine single-path"] / medians["sb3_contrib.TRPO"]
        results["tasks"][env_id] = {"runs": runs, "median_steps_per_s": medians, "speedup_vs_contrib": ratio}
        for name, median in medians.items():
            rows.append([env_id, name, f"{median:,.0f}", f"{median / medians['sb3_contrib.TRPO']:.2f}x"])
        print(f"{env_id}: TRPOVine / sb3-contrib = {ratio:.2f}x", flush=True)

    table = markdown_table(["env", "run", "steps/s (median)", "vs sb3_contrib.TRPO"], rows)
    print(table)
    suffix = "" if args.torch_threads == 1 else f"_threads{args.torch_threads}"
    save_json(f"speed{suffix}", results)
    write_section(
        f"speed{suffix}",
        f"## Speed: TRPOVine single-path vs sb3_contrib.TRPO, {args.torch_threads} torch thread(s)\n\n"
        f"`python -m benchmarks.speed --repeats {args.repeats} --iterations {args.iterations} "
        f"--torch-threads {args.torch_threads}`; machine: "
        f"{results['machine']}.\n\nSame RL-Zoo hyperparameters and seeds for both (Hopper-v5: 2 envs, VecNormalize, "
        "n_steps 1024, batch 128, 20 critic updates, cg_max_steps 25, cg_damping 0.1, lr 1e-3; CartPole-v1: the zoo "
        f"entry); runs interleaved, median of {args.repeats}, whole `learn()` time (collection + update).\n\n{table}\n",
    )


if __name__ == "__main__":
    main()
