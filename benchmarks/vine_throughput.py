"""
Vine collection throughput: simulator steps/s while collecting with vine vs single-path, same env stack and policy.

Times ``collect_rollouts`` only (no policy update), so the ratio measures the cost of branching: snapshots,
restores, and the N*K lockstep branch rollouts with one batched policy forward per step. Also reports the share
of collection time spent taking and restoring snapshots. Writes docs/results/vine_throughput.json and the
"vine-throughput" section of docs/benchmarks.md.

    python -m benchmarks.vine_throughput [--iterations 3]
"""

import argparse
import time
from typing import Any

import torch
from stable_baselines3.common.callbacks import BaseCallback

from benchmarks.common import machine_description, markdown_table, save_json, write_section
from benchmarks.speed import TASKS, make_env
from sb3_trpo_vine import TRPOVine

VINE_SETTINGS = dict(n_rollout_states=64, n_actions_per_state=4, rollout_length=100)


class _Null(BaseCallback):
    def _on_step(self) -> bool:
        return True


def measure(env_id: str, buffer: str, iterations: int, seed: int) -> dict[str, float]:
    task = TASKS[env_id]
    env = make_env(env_id, task["n_envs"], task["normalize"], seed)
    kwargs: dict[str, Any] = dict(rollout_buffer_class=buffer)
    if buffer == "vine":
        kwargs["rollout_buffer_kwargs"] = VINE_SETTINGS
    model = TRPOVine("MlpPolicy", env, seed=seed, **task["hyperparams"], **kwargs)
    _, callback = model._setup_learn(10**9, _Null())
    totals = dict(seconds=0.0, steps=0, snapshot=0.0, restore=0.0)
    for _ in range(iterations):
        steps_before = model.num_timesteps
        start = time.perf_counter()
        model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
        totals["seconds"] += time.perf_counter() - start
        totals["steps"] += model.num_timesteps - steps_before
        if buffer == "vine":
            totals["snapshot"] += model.logger.name_to_value["vine/snapshot_seconds"]
            totals["restore"] += model.logger.name_to_value["vine/restore_seconds"]
        model.train()  # move the policy so later iterations see realistic episode lengths
    env.close()
    return dict(
        steps_per_s=totals["steps"] / totals["seconds"],
        steps=totals["steps"],
        snapshot_restore_share=(totals["snapshot"] + totals["restore"]) / totals["seconds"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--envs", nargs="+", default=list(TASKS))
    parser.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads (same for every run)")
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads)
    results: dict[str, Any] = {"machine": machine_description(), "vine_settings": VINE_SETTINGS, "tasks": {}}
    rows = []
    for env_id in args.envs:
        single = measure(env_id, "single_path", args.iterations, seed=0)
        vine = measure(env_id, "vine", args.iterations, seed=0)
        ratio = vine["steps_per_s"] / single["steps_per_s"]
        results["tasks"][env_id] = {"single_path": single, "vine": vine, "vine_over_single_path": ratio}
        rows.append(
            [
                env_id,
                f"{single['steps_per_s']:,.0f}",
                f"{vine['steps_per_s']:,.0f}",
                f"{ratio:.2f}",
                f"{100 * vine['snapshot_restore_share']:.1f}%",
            ]
        )
        print(f"{env_id}: vine / single-path simulator steps/s = {ratio:.2f}", flush=True)
    table = markdown_table(
        ["env", "single-path steps/s", "vine steps/s (trunk + branch)", "vine / single-path", "snapshot+restore share"], rows
    )
    print(table)
    save_json("vine_throughput", results)
    write_section(
        "vine-throughput",
        "## Vine collection throughput\n\n"
        f"`python -m benchmarks.vine_throughput --iterations {args.iterations}`; machine: {results['machine']}.\n\n"
        f"Collection only (`collect_rollouts`), same env stacks and hyperparameters as the speed benchmark; vine with "
        f"N={VINE_SETTINGS['n_rollout_states']} rollout states, K={VINE_SETTINGS['n_actions_per_state']} actions per "
        f"state (every action on CartPole), H={VINE_SETTINGS['rollout_length']}. Targets: vine >= 0.80 of single-path "
        "simulator steps/s, snapshot+restore <= 10% of vine collection time.\n\n"
        f"{table}\n",
    )


if __name__ == "__main__":
    main()
