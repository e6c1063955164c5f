"""
Cost of the non-finite data guards (``sb3_trpo_vine.finite``) against a whole training iteration.

Trains single path and vine on a MuJoCo task for a few iterations, then times the guards' checks of one iteration
on the filled buffer (trunk arrays, returns and advantages; for vine also the Q-values and the rollout states'
observations) and prints their share of an iteration. Writes the "finite-checks" section of docs/benchmarks.md.

    python -m benchmarks.finite_checks [--env Hopper-v5] [--iterations 3] [--repeats 200]
"""

import argparse
import time

import numpy as np
import torch
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from benchmarks.common import machine_description, markdown_table, write_section
from sb3_trpo_vine import TRPOVine
from sb3_trpo_vine.finite import check_finite


def guard_seconds(model: TRPOVine, repeats: int) -> float:
    """
    :param model: a model whose rollout buffer holds the last iteration
    :param repeats: timing repetitions
    :return: seconds for one iteration's checks (the mean over the repetitions)
    """
    buffer = model.rollout_buffer
    last_values = np.zeros(buffer.n_envs, dtype=np.float32)
    vine_arrays = (
        [("Q", buffer.q_values), ("rollout observations", buffer.rollout_observations)] if hasattr(buffer, "q_values") else []
    )
    start = time.perf_counter()
    for _ in range(repeats):
        model._check_trunk_finite(buffer, last_values, 0)
        check_finite([("lambda-return", buffer.returns), ("advantage", buffer.advantages)], str)
        for name, array in vine_arrays:
            check_finite([(name, array)], str)
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for scheme in ("single_path", "vine"):
        env = VecNormalize(make_vec_env(args.env, n_envs=2, seed=0))
        model = TRPOVine("MlpPolicy", env, n_steps=1024, seed=0, rollout_buffer_class=scheme)
        start = time.perf_counter()
        model.learn(1)  # one iteration, whatever its simulator steps
        for _ in range(args.iterations - 1):
            model.learn(1, reset_num_timesteps=False)
        iteration = (time.perf_counter() - start) / args.iterations
        checks = guard_seconds(model, args.repeats)
        rows.append([args.env, scheme, f"{iteration * 1e3:.0f}", f"{checks * 1e6:.0f}", f"{checks / iteration:.1e}"])
    table = markdown_table(["env", "scheme", "iteration ms", "checks µs", "share of the iteration"], rows)
    print(table)
    write_section(
        "finite-checks",
        "## Cost of the non-finite data guards\n\n"
        f"`python -m benchmarks.finite_checks --env {args.env} --iterations {args.iterations} --repeats {args.repeats}`; "
        f"machine: {machine_description()}. One iteration's isfinite checks on a filled buffer (2 envs x 1024 trunk "
        "steps; vine also its Q-values and rollout-state observations; the per-branch-step observation checks run on "
        "batches the branch loop already builds) against a whole training iteration.\n\n" + table + "\n",
    )


if __name__ == "__main__":
    main()
