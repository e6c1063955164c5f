"""
Ray scaling: collection steps/s through ``RayVecEnv`` (1 and 2 actors) vs ``DummyVecEnv``, per-step overheads, projection.

For each env and backend, with 2 training envs and the same seeds:

* no-op round trip: one near-empty call to every actor, awaited (the floor of any Ray operation), and the learner's
  own cost per message (sending plus decoding, calls pipelined so that nothing waits);
* VecEnv step: microseconds per ``venv.step`` with random actions;
* branch-pool step: microseconds per ``pool.step`` of 64 vine branches (``LocalBranchPool`` vs ``RayBranchPool``);
* single-path and vine collection: simulator steps/s of ``TRPOVine.collect_rollouts`` (trunk + branch steps, no
  policy update timed);
* serialization of the actors' results, per env and per branch, and the policy forward time per batch size.

From the measured costs it projects the throughput on N machines. Writes docs/results/ray_scaling.json and the
"ray-scaling" section of docs/benchmarks.md.

    OPENBLAS_NUM_THREADS=1 python -m benchmarks.ray_scaling [--iterations 2] [--num-cpus 2]

One BLAS thread, like one torch thread: on a busy 2-core machine, multi-threaded OpenBLAS sometimes takes ~15 ms
instead of ~0.2 ms for the numpy policy forward of 256 or more rows, which would swamp the projection.
"""

import argparse
import os
import pickle
import time
from typing import Any

import numpy as np
import ray
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv

from benchmarks.common import machine_description, markdown_table, save_json, write_section
from sb3_trpo_vine import TRPOVine
from sb3_trpo_vine.distributed import EnvRecipe, EnvWorker, RayVecEnv
from sb3_trpo_vine.sampling import policy_noise
from sb3_trpo_vine.snapshot import take_snapshot, vec_take_snapshots
from sb3_trpo_vine.vine import make_branch_pool

N_ENVS = 2
N_BRANCHES = 64
TASKS: dict[str, dict[str, Any]] = {
    "CartPole-v1": dict(n_steps=256, vine=dict(n_rollout_states=32, n_actions_per_state=2, rollout_length=50)),
    "Hopper-v5": dict(n_steps=256, vine=dict(n_rollout_states=32, n_actions_per_state=4, rollout_length=50)),
}
# backend name -> number of actors (None: DummyVecEnv in this process)
BACKENDS: dict[str, int | None] = {"DummyVecEnv": None, "RayVecEnv, 1 actor": 1, "RayVecEnv, 2 actors": 2}
PROJECTED_MACHINES = (1, 2, 4, 8, 16)
PROJECTED_ENVS_PER_ACTOR = 8


class _Null(BaseCallback):
    def _on_step(self) -> bool:
        return True


def make_env(env_id: str, n_actors: int | None) -> VecEnv:
    if n_actors is None:
        return make_vec_env(env_id, N_ENVS, seed=0)
    return RayVecEnv(env_id, N_ENVS, n_actors=n_actors, seed=0)


def time_vec_step(venv: VecEnv, n_steps: int) -> float:
    """
    :return: microseconds per ``venv.step`` with random actions
    """
    venv.action_space.seed(0)
    actions = [np.stack([venv.action_space.sample() for _ in range(venv.num_envs)]) for _ in range(n_steps)]
    venv.reset()
    start = time.perf_counter()
    for action in actions:
        venv.step(action)
    return 1e6 * (time.perf_counter() - start) / n_steps


def time_messages(venv: VecEnv, n_calls: int) -> dict[str, float]:
    """
    Cost of near no-op calls (``describe``) to the actors; zeros for DummyVecEnv.

    :return: ``round_trip_us``: one call to every actor, awaited; ``message_us``: learner time per message when
        ``n_calls`` calls are sent back to back (not timed: the wait for the answers) and then decoded
    """
    if not isinstance(venv, RayVecEnv):
        return dict(round_trip_us=0.0, message_us=0.0)
    start = time.perf_counter()
    for _ in range(n_calls):
        ray.get([actor.describe.remote() for actor in venv.actors], timeout=venv.timeout)
    round_trip = (time.perf_counter() - start) / n_calls

    start = time.perf_counter()
    refs = [venv.actors[0].describe.remote() for _ in range(n_calls)]
    sending = time.perf_counter() - start
    ray.wait(refs, num_returns=n_calls, timeout=venv.timeout)
    start = time.perf_counter()
    ray.get(refs, timeout=venv.timeout)
    decoding = time.perf_counter() - start
    return dict(round_trip_us=1e6 * round_trip, message_us=1e6 * (sending + decoding) / n_calls)


def time_branch_step(venv: VecEnv, repeats: int) -> float:
    """
    Restore ``N_BRANCHES`` branches from a snapshot of env 0 (not timed), then step all of them once (timed).

    :return: microseconds per ``pool.step`` of ``N_BRANCHES`` branches
    """
    venv.reset()
    pool = make_branch_pool(venv)
    snapshots = vec_take_snapshots(venv, [0]) * N_BRANCHES
    venv.action_space.seed(0)
    branches = np.arange(N_BRANCHES)
    pool.reserve(N_BRANCHES)
    seconds = 0.0
    for _ in range(repeats):
        pool.restore(snapshots)
        actions = np.stack([venv.action_space.sample() for _ in branches])
        start = time.perf_counter()
        pool.step(branches, actions)
        seconds += time.perf_counter() - start
    return 1e6 * seconds / repeats


def time_collection(venv: VecEnv, env_id: str, buffer: str, iterations: int) -> float:
    """
    :return: simulator steps/s of ``collect_rollouts`` (trunk + branch steps)
    """
    task = TASKS[env_id]
    kwargs: dict[str, Any] = dict(rollout_buffer_kwargs=task["vine"]) if buffer == "vine" else {}
    model = TRPOVine("MlpPolicy", venv, n_steps=task["n_steps"], seed=0, rollout_buffer_class=buffer, **kwargs)
    _, callback = model._setup_learn(10**9, _Null())
    seconds = 0.0
    steps = 0
    for _ in range(iterations):
        steps_before = model.num_timesteps
        start = time.perf_counter()
        model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
        seconds += time.perf_counter() - start
        steps += model.num_timesteps - steps_before
        model.train()  # realistic episode lengths in later iterations
    return steps / seconds


def time_forward(venv: VecEnv, batch_sizes: list[int], repeats: int = 200) -> dict[int, float]:
    """
    :return: median microseconds (robust to the other jobs of a shared machine) of one policy sample (actions, values,
        log-probabilities) per batch size
    """
    model = TRPOVine("MlpPolicy", venv, seed=0)
    rng = np.random.default_rng(0)
    observation = venv.reset()[:1]
    output = {}
    for batch in batch_sizes:
        observations = np.repeat(observation, batch, axis=0)
        noise = policy_noise(rng, venv.action_space, batch)
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            model._sampler.sample(observations, noise)
            seconds.append(time.perf_counter() - start)
        output[batch] = 1e6 * float(np.median(seconds))
    return output


def time_codec(env_id: str, repeats: int = 200) -> dict[str, float]:
    """
    Serialization cost of the actors' results, measured in-process on an ``EnvWorker`` (pickle dump + load, as Ray
    does for small objects).

    :return: microseconds per env result of a trunk step and per branch result of a branch step
    """
    worker = EnvWorker(EnvRecipe(env_id, seed=0), list(range(PROJECTED_ENVS_PER_ACTOR)))
    worker.reset([0] * PROJECTED_ENVS_PER_ACTOR, [{}] * PROJECTED_ENVS_PER_ACTOR, checkpoint=False)
    space = worker.envs[0].action_space
    space.seed(0)
    step = worker.step(np.stack([space.sample() for _ in worker.envs]), checkpoint=False)
    worker.restore_branches([take_snapshot(worker.envs[0])] * N_BRANCHES)
    branch_step = worker.step_branches(np.arange(N_BRANCHES), np.stack([space.sample() for _ in range(N_BRANCHES)]))
    output = {}
    for name, result, count in (("per_env_us", step, PROJECTED_ENVS_PER_ACTOR), ("per_branch_us", branch_step, N_BRANCHES)):
        start = time.perf_counter()
        for _ in range(repeats):
            pickle.loads(pickle.dumps(result, protocol=5))
        output[name] = 1e6 * (time.perf_counter() - start) / repeats / count
    worker.close()
    return output


def measure(env_id: str, n_actors: int | None, iterations: int) -> dict[str, float]:
    start = time.perf_counter()
    venv = make_env(env_id, n_actors)
    startup = time.perf_counter() - start
    result = dict(
        startup_s=startup,
        **time_messages(venv, 200),
        vec_step_us=time_vec_step(venv, 500),
        branch_step_us=time_branch_step(venv, 100),
        single_path_steps_per_s=time_collection(venv, env_id, "single_path", iterations),
        vine_steps_per_s=time_collection(venv, env_id, "vine", iterations),
    )
    venv.close()
    return result


def cost_model(results: dict[str, dict[str, float]], codec: dict[str, float]) -> dict[str, float]:
    """
    Split the measured times (microseconds) into env work, learner work and transport costs.

    Only the DummyVecEnv run and the 1-actor no-op calls are used: in the Ray runs the learner and the actors share the
    two cores of this machine with other jobs, which a cluster does not.

    :param results: measurements by backend
    :param codec: serialization cost per env result and per branch result
    :return: env step, branch env step, learner work per trunk step besides the env, learner cost per message, latency
        of a round trip apart from that, serialization per env result and per branch result
    """
    dummy, one = results["DummyVecEnv"], results["RayVecEnv, 1 actor"]
    env = dummy["vec_step_us"] / N_ENVS
    return dict(
        env_step_us=env,
        branch_env_step_us=dummy["branch_step_us"] / N_BRANCHES,
        # single-path collection time per VecEnv step, minus the env work
        learner_us=1e6 * N_ENVS / dummy["single_path_steps_per_s"] - N_ENVS * env,
        message_us=one["message_us"],
        latency_us=one["round_trip_us"] - one["message_us"],
        **codec,
    )


def projected_sizes(cores_per_machine: int) -> list[tuple[int, int, int, int]]:
    """
    :return: (machines, actors, trunk envs, branches) of each projected cluster: one actor per core,
        ``PROJECTED_ENVS_PER_ACTOR`` envs per actor, at least 256 branches (16 per actor)
    """
    sizes = []
    for machines in PROJECTED_MACHINES:
        actors = machines * cores_per_machine
        sizes.append((machines, actors, PROJECTED_ENVS_PER_ACTOR * actors, max(256, 16 * actors)))
    return sizes


def projection(cost: dict[str, float], forward: dict[int, float], cores_per_machine: int) -> list[list[Any]]:
    """
    Throughput on N machines from the measured costs (microseconds).

    Per trunk step of n envs on A actors (e = n / A each), results serialized by the actors in parallel and decoded
    by the learner one after the other: t = learner + forward(n) - forward(2) + A message + latency + e (env + per_env)
    + n per_env. Per branch-pool step of B branches, b = ceil(B / A) per actor:
    t = forward(B) + A message + latency + b (branch_env + per_branch) + B per_branch.

    :param cost: see ``cost_model``
    :param forward: policy sample time by batch size
    :param cores_per_machine: actors per machine
    :return: the table rows
    """
    rows = []
    for machines, actors, n_envs, branches in projected_sizes(cores_per_machine):
        transport = actors * cost["message_us"] + cost["latency_us"]
        trunk_step = (
            cost["learner_us"]
            + forward[n_envs]
            - forward[N_ENVS]
            + transport
            + PROJECTED_ENVS_PER_ACTOR * (cost["env_step_us"] + cost["per_env_us"])
            + n_envs * cost["per_env_us"]
        )
        pool_step = (
            forward[branches]
            + transport
            + np.ceil(branches / actors) * (cost["branch_env_step_us"] + cost["per_branch_us"])
            + branches * cost["per_branch_us"]
        )
        rows.append(
            [machines, actors, n_envs, f"{1e6 * n_envs / trunk_step:,.0f}", branches, f"{1e6 * branches / pool_step:,.0f}"]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=2, help="collection iterations per run")
    parser.add_argument("--envs", nargs="+", default=list(TASKS))
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray instance")
    args = parser.parse_args()
    torch.set_num_threads(1)
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)

    blas_threads = os.environ.get("OPENBLAS_NUM_THREADS")
    results: dict[str, Any] = {
        "machine": machine_description(),
        "load_average_at_start": os.getloadavg()[0],
        "openblas_num_threads": blas_threads,
        "n_envs": N_ENVS,
        "n_branches": N_BRANCHES,
        "tasks": {},
    }
    rows = []
    projection_sections = []
    for env_id in args.envs:
        task_results = {name: measure(env_id, n_actors, args.iterations) for name, n_actors in BACKENDS.items()}
        dummy = task_results["DummyVecEnv"]
        for name, values in task_results.items():
            print(env_id, name, {key: round(value, 1) for key, value in values.items()}, flush=True)
            rows.append(
                [
                    env_id,
                    name,
                    f"{values['round_trip_us']:,.0f}",
                    f"{values['vec_step_us']:,.0f}",
                    f"{values['branch_step_us']:,.0f}",
                    f"{values['single_path_steps_per_s']:,.0f}",
                    f"{values['vine_steps_per_s']:,.0f}",
                    f"{values['vine_steps_per_s'] / dummy['vine_steps_per_s']:.2f}",
                ]
            )
        cost = cost_model(task_results, time_codec(env_id))
        sizes = projected_sizes(args.num_cpus)
        forward_venv = make_env(env_id, None)
        forward = time_forward(forward_venv, sorted({N_ENVS} | {size for *_, n_envs, b in sizes for size in (n_envs, b)}))
        forward_venv.close()
        results["tasks"][env_id] = {"backends": task_results, "costs_us": cost, "forward_us": forward}
        projection_sections.append(
            f"**{env_id}**: env step {cost['env_step_us']:.0f} µs (branch env step {cost['branch_env_step_us']:.0f} µs), "
            f"learner {cost['learner_us']:.0f} µs per trunk step besides the env, {cost['message_us']:.0f} µs of learner "
            f"time per message, {cost['latency_us']:.0f} µs latency per round trip, serialization {cost['per_env_us']:.1f} "
            f"µs per env result and {cost['per_branch_us']:.1f} µs per branch result.\n\n"
            + markdown_table(
                ["machines", "actors", "trunk envs", "trunk steps/s", "branches B", "branch steps/s"],
                projection(cost, forward, cores_per_machine=args.num_cpus),
            )
        )

    table = markdown_table(
        [
            "env",
            "backend",
            "no-op round trip µs",
            f"VecEnv step µs ({N_ENVS} envs)",
            f"branch-pool step µs ({N_BRANCHES} branches)",
            "single-path steps/s",
            "vine steps/s",
            "vine vs Dummy",
        ],
        rows,
    )
    print(table)
    save_json("ray_scaling", results)
    blas_setting = "" if blas_threads is None else f"OPENBLAS_NUM_THREADS={blas_threads} "
    projections = "\n\n".join(projection_sections)
    write_section(
        "ray-scaling",
        "## Ray scaling\n\n"
        f"`{blas_setting}python -m benchmarks.ray_scaling --iterations {args.iterations} --num-cpus {args.num_cpus}`; "
        f"machine: {results['machine']}; load average {results['load_average_at_start']:.1f} at start (other jobs were "
        f"running); local Ray instance with {args.num_cpus} CPUs, one CPU per actor.\n\n"
        f"{N_ENVS} training envs, seed 0. No-op round trip: one near-empty call to every actor, awaited (the floor of any "
        f"Ray operation). VecEnv step: random actions. Branch-pool step: all {N_BRANCHES} branches, restored from one "
        "snapshot before each step (restore not timed). Collection: `collect_rollouts` only, trunk + branch simulator "
        "steps per second, n_steps 256, vine N=32, K=2 (CartPole, every action) or 4 (Hopper), H=50. On this machine "
        "the learner and two actors share two cores, so the Ray rows measure transport overhead, not speed-up.\n\n"
        f"{table}\n\n"
        "### Projection on N machines\n\n"
        f"From the DummyVecEnv and 1-actor costs above: N machines like this one running {args.num_cpus} actors each "
        f"(one per core), the learner on a machine of its own, {PROJECTED_ENVS_PER_ACTOR} envs per actor, at least 256 "
        "vine branches. Per trunk step: learner work (its policy forward re-measured at the larger batch) + one message "
        f"per actor + one round-trip latency (the actors step in parallel) + {PROJECTED_ENVS_PER_ACTOR} env steps and "
        "their serialization + the learner decoding every env's result. Per branch-pool step of B branches: one "
        "batched forward + one message per actor + one latency + ceil(B / actors) branch steps and their serialization "
        "+ the learner decoding every branch's result (serialization measured with pickle on an in-process "
        "`EnvWorker`). Latencies were measured between "
        "processes of one busy machine; a LAN adds about 0.1-0.5 ms per round trip, an idle machine removes some. The "
        "trunk stays bound by the learner's per-step work and one round trip; branch rollouts, hundreds of branches per "
        "call, are where more machines pay off, until the learner's per-branch work dominates.\n\n"
        f"{projections}\n",
    )


if __name__ == "__main__":
    main()
