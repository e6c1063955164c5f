"""
Paired speed benchmark: TRPOVine single-path and vine vs sb3_contrib.TRPO at identical hyperparameters and seeds.

Every run trains for ``--iterations`` policy iterations (collection + update) and reports simulator steps per
second of ``learn()`` (vine steps include its branch steps). Runs are interleaved (contrib, single-path, vine,
env-only, contrib, ...) in one process so all see the same machine load; the env-only ceiling drives the same VecEnv
stack with random actions. Prints a table and writes docs/results/speed.json and the "speed" section of
docs/benchmarks.md.

    python -m benchmarks.speed [--repeats 3] [--iterations 8] [--envs Hopper-v5 ...]
"""

import argparse
import statistics
import time
from typing import Any

import numpy as np
import torch
from sb3_contrib import TRPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from benchmarks.common import machine_description, markdown_table, save_json, write_section
from sb3_trpo_vine import TRPOVine

# RL-Zoo hyperparameters (rl_zoo3/hyperparams/trpo.yml): the MuJoCo defaults and the CartPole entry.
MUJOCO_DEFAULTS: dict[str, Any] = dict(
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
)
TASKS: dict[str, dict[str, Any]] = {
    "Hopper-v5": MUJOCO_DEFAULTS,
    "HalfCheetah-v5": MUJOCO_DEFAULTS,
    "Walker2d-v5": MUJOCO_DEFAULTS,
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
RUNS: dict[str, tuple[type[BaseAlgorithm], dict[str, Any]]] = {
    "sb3_contrib.TRPO": (TRPO, {}),
    "TRPOVine single-path": (TRPOVine, dict(rollout_buffer_class="single_path")),
    "TRPOVine vine": (TRPOVine, dict(rollout_buffer_class="vine")),  # default vine settings
}
ENV_ONLY = "env only (random actions)"


class StopAfterIterations(BaseCallback):
    """Stop ``learn()`` at the first step of iteration ``iterations + 1``: exactly ``iterations`` collections and updates."""

    def __init__(self, iterations: int) -> None:
        super().__init__()
        self.iterations = iterations
        self.started = 0

    def _on_rollout_start(self) -> None:
        self.started += 1

    def _on_step(self) -> bool:
        return self.started <= self.iterations


def make_env(env_id: str, n_envs: int, normalize: bool, seed: int) -> VecEnv:
    venv = make_vec_env(env_id, n_envs=n_envs, seed=seed)
    return VecNormalize(venv) if normalize else venv


def time_algorithm(run: str, env_id: str, task: dict[str, Any], iterations: int, seed: int) -> float:
    algo, extra = RUNS[run]
    env = make_env(env_id, task["n_envs"], task["normalize"], seed)
    model = algo("MlpPolicy", env, seed=seed, **task["hyperparams"], **extra)
    start = time.perf_counter()
    model.learn(10**9, callback=StopAfterIterations(iterations))
    elapsed = time.perf_counter() - start
    env.close()
    return model.num_timesteps / elapsed


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
    parser.add_argument("--note", default="", help="conditions of the measurement, printed in the report")
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads)

    results: dict[str, Any] = {"machine": machine_description(), "iterations": args.iterations, "tasks": {}}
    rows = []
    for env_id in args.envs:
        task = TASKS[env_id]
        runs: dict[str, list[float]] = {name: [] for name in [*RUNS, ENV_ONLY]}
        for seed in range(args.repeats):
            for name in RUNS:
                runs[name].append(time_algorithm(name, env_id, task, args.iterations, seed))
            runs[ENV_ONLY].append(time_random_actions(env_id, task, args.iterations, seed))
        medians = {name: statistics.median(values) for name, values in runs.items()}
        # ratio of medians, and the median of the per-repeat ratios (each pair ran back to back)
        paired = {
            name: statistics.median(ours / theirs for ours, theirs in zip(runs[name], runs["sb3_contrib.TRPO"], strict=True))
            for name in runs
        }
        results["tasks"][env_id] = {"runs": runs, "median_steps_per_s": medians, "median_paired_ratio": paired}
        for name, median in medians.items():
            ratio = median / medians["sb3_contrib.TRPO"]
            rows.append([env_id, name, f"{median:,.0f}", f"{ratio:.2f}x", f"{paired[name]:.2f}x"])
        print(f"{env_id}: single-path / sb3-contrib = {paired['TRPOVine single-path']:.2f}x", flush=True)

    table = markdown_table(["env", "run", "steps/s (median)", "ratio of medians", "median paired ratio"], rows)
    print(table)
    suffix = "" if args.torch_threads == 1 else f"_threads{args.torch_threads}"
    save_json(f"speed{suffix}", results)
    write_section(
        f"speed{suffix}",
        f"## Speed: TRPOVine single-path vs sb3_contrib.TRPO, {args.torch_threads} torch thread(s)\n\n"
        f"`python -m benchmarks.speed --repeats {args.repeats} --iterations {args.iterations} "
        f"--torch-threads {args.torch_threads}`; machine: "
        f"{results['machine']}.\n\nSame RL-Zoo hyperparameters and seeds for every run (MuJoCo: 2 envs, VecNormalize, "
        "n_steps 1024, batch 128, 20 critic updates, cg_max_steps 25, cg_damping 0.1, lr 1e-3; CartPole-v1: the zoo "
        "entry); vine with its default settings (MuJoCo: pooled advantages on 1/32 of the trunk states with the trunk "
        "as one of 2 branches; CartPole-v1: Eq. 15 on a quarter of them, both actions; rollout length 10). "
        f"{args.note} Each run is "
        f"{args.iterations} whole iterations of `learn()` (collection + update); simulator steps/s, vine counting its "
        f"branch steps. Runs interleaved, median of {args.repeats}.\n\n{table}\n",
    )


if __name__ == "__main__":
    main()
