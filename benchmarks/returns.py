"""
Returns benchmark: sb3_contrib.TRPO vs TRPOVine single-path vs TRPOVine vine, learning curves over simulator steps
and wall-clock seconds. Resumable: every (env, algorithm, seed, budget) run writes its own JSON file under
docs/results/returns/ and finished runs are skipped.

Hyperparameters:
- ``sb3_contrib``: the RL-Zoo TRPO entry (rl_zoo3/hyperparams/trpo.yml; -v5 ids use the -v4 entry);
- ``single_path``: this package's single-path zoo entry (zoo_hyperparams/single_path.yml: the RL-Zoo entry in the
  paper's KL, with the trust region chosen and commented per entry there);
- ``vine``: this package's vine zoo entry (zoo_hyperparams/vine.yml).

Evaluation: every ``--eval-every`` simulator steps (at the end of the first rollout past it), ``--eval-episodes``
deterministic episodes on a separate env with the training VecNormalize statistics frozen.

    python -m benchmarks.returns --envs Hopper-v5 --algos sb3_contrib single_path vine --seeds 0 1 2 --budget 300000

Sweeps (tuning, on other seeds than the reported ones) override the entry and name the setting; their files go to
docs/results/sweeps/:

    python -m benchmarks.returns --envs Walker2d-v5 --algos single_path --seeds 0 1 2 --budget 300000 \
        --set target_kl=0.03 cg_damping=0.3 --tag kl0.03
"""

import argparse
import contextlib
import json
import pathlib
import subprocess
import time
from typing import Any

import torch
import yaml
from sb3_contrib import TRPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecEnv, VecNormalize, sync_envs_normalization

from benchmarks.common import RESULTS
from benchmarks.update_variants import COLLECTION_VARIANTS, VARIANTS
from sb3_trpo_vine import TRPOVine
from sb3_trpo_vine.zoo import preprocess_target_kl

ROOT = pathlib.Path(__file__).resolve().parent.parent
ZOO_TRPO = pathlib.Path(__import__("rl_zoo3").__file__).parent / "hyperparams" / "trpo.yml"
# This package's zoo hyperparameters, by algorithm
OURS = {scheme: ROOT / "zoo_hyperparams" / f"{scheme}.yml" for scheme in ("single_path", "vine")}
RUNS = RESULTS / "returns"
# --variant: ablations of one update or of the data it sees
TRAINING_VARIANTS = {**VARIANTS, **COLLECTION_VARIANTS}
SWEEPS = RESULTS / "sweeps"
ZOO_ONLY_KEYS = ("n_timesteps", "n_envs", "normalize", "policy", "env_wrapper", "frame_stack")


def zoo_entry(path: pathlib.Path, env_id: str) -> dict[str, Any]:
    """
    :param path: an RL-Zoo hyperparameter file
    :param env_id: the env id (a -v5 id falls back to the -v4 key)
    :return: the entry with ``policy_kwargs`` strings evaluated
    """
    entries = yaml.safe_load(path.read_text())
    return with_policy_kwargs_evaluated(dict(entries.get(env_id) or entries[env_id.replace("-v5", "-v4")]))


def with_policy_kwargs_evaluated(entry: dict[str, Any]) -> dict[str, Any]:
    """
    :param entry: a zoo-style entry
    :return: the entry with a ``policy_kwargs`` string (the zoo's ``"dict(activation_fn=nn.ReLU)"`` form) evaluated
    """
    if isinstance(entry.get("policy_kwargs"), str):
        entry["policy_kwargs"] = eval(entry["policy_kwargs"], {"nn": torch.nn, "dict": dict})
    return entry


def model_hyperparams(entry: dict[str, Any]) -> dict[str, Any]:
    """
    :param entry: a zoo-style entry
    :return: its constructor keyword arguments (the entry without the keys only the zoo reads), as recorded per run
    """
    return {key: value for key, value in entry.items() if key not in ZOO_ONLY_KEYS}


def algorithm_setup(env_id: str, algo: str) -> tuple[type[BaseAlgorithm], dict[str, Any]]:
    """
    :param env_id: the env id
    :param algo: ``sb3_contrib``, ``single_path`` or ``vine``
    :return: the algorithm class and its zoo-style entry
    """
    if algo == "sb3_contrib":
        return TRPO, zoo_entry(ZOO_TRPO, env_id)
    if algo not in OURS:
        raise ValueError(f"unknown algorithm {algo!r}: expected sb3_contrib or one of {sorted(OURS)}")
    return TRPOVine, zoo_entry(OURS[algo], env_id)


def normalize_kwargs(entry: dict[str, Any], training: bool) -> dict[str, Any] | None:
    """
    VecNormalize's arguments from an entry's ``normalize``, read as rl_zoo3's ExperimentManager reads it: ``true``,
    a string such as ``"dict(norm_obs=True, norm_reward=False)"`` or a mapping, with the entry's gamma.

    :param entry: a zoo-style entry
    :param training: the training env; the evaluation env never normalizes rewards nor updates the statistics
    :return: the keyword arguments of VecNormalize, None without normalization
    """
    normalize = entry.get("normalize", False)
    if not normalize:
        return None
    kwargs: dict[str, Any] = {}  # normalize: true
    if isinstance(normalize, str):
        kwargs = eval(normalize)
    elif isinstance(normalize, dict):
        kwargs = dict(normalize)
    if "gamma" in entry:
        kwargs["gamma"] = entry["gamma"]  # the return whose variance scales the rewards: the algorithm's
    if not training:
        kwargs["norm_reward"] = False
    return {**kwargs, "training": training}


def make_env(env_id: str, entry: dict[str, Any], seed: int, training: bool) -> VecEnv:
    venv = make_vec_env(env_id, n_envs=entry.get("n_envs", 1) if training else 1, seed=seed)
    kwargs = normalize_kwargs(entry, training)
    return venv if kwargs is None else VecNormalize(venv, **kwargs)


class PeriodicEvaluation(BaseCallback):
    """Evaluate at the end of the first rollout past every ``every`` simulator steps; wall time excludes evaluation."""

    def __init__(self, eval_env: VecEnv, every: int, n_episodes: int) -> None:
        super().__init__()
        self.eval_env, self.every, self.n_episodes = eval_env, every, n_episodes
        self.curve: list[dict[str, float]] = []
        self.eval_seconds = 0.0

    def _on_training_start(self) -> None:
        self.start = time.perf_counter()
        self.next_eval = self.every

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        if self.model.num_timesteps >= self.next_eval:
            self.evaluate()
            while self.next_eval <= self.model.num_timesteps:
                self.next_eval += self.every

    def evaluate(self) -> None:
        eval_start = time.perf_counter()
        if isinstance(self.model.get_env(), VecNormalize):
            sync_envs_normalization(self.model.get_env(), self.eval_env)
        mean, std = evaluate_policy(self.model, self.eval_env, n_eval_episodes=self.n_episodes, deterministic=True)
        self.eval_seconds += time.perf_counter() - eval_start
        wall = time.perf_counter() - self.start - self.eval_seconds
        self.curve.append(dict(timesteps=self.model.num_timesteps, seconds=wall, mean_return=mean, std_return=std))


def code_version() -> str:
    """
    :return: the commit the run was made from, with ``+dirty`` when the work tree had uncommitted changes
    """
    git = ["git", "-C", str(ROOT)]
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip() or "unknown"
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--", "sb3_trpo_vine", "benchmarks", "zoo_hyperparams"], capture_output=True, text=True
    ).stdout.strip()
    return commit + ("+dirty" if dirty else "")


def parse_overrides(assignments: list[str]) -> dict[str, Any]:
    """
    :param assignments: ``key=value`` strings with YAML values: ``target_kl=0.06`` replaces a hyperparameter,
        ``rollout_buffer_kwargs={antithetic: true}`` replaces the whole mapping, ``rollout_buffer_kwargs.antithetic=true``
        sets one key of the entry's mapping, ``key=null`` removes the hyperparameter;
        ``policy_kwargs=dict(activation_fn=nn.ReLU)`` is evaluated as in a zoo file
    :return: the overrides by (possibly dotted) key
    """
    overrides: dict[str, Any] = {}
    for assignment in assignments:
        key, separator, value = assignment.partition("=")
        if not separator:
            raise ValueError(f"--set expects key=value, got {assignment!r}")
        overrides[key] = yaml.safe_load(value)
    return overrides


def apply_overrides(entry: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """
    :param entry: a zoo-style entry
    :param overrides: from ``parse_overrides``, applied in order
    :return: the updated entry
    """
    entry = dict(entry)
    for key, value in overrides.items():
        parent, dot, leaf = key.partition(".")
        if dot:
            entry[parent] = {**(entry.get(parent) or {}), leaf: value}
        elif value is None:
            entry.pop(key, None)
        else:
            entry[key] = value
    return with_policy_kwargs_evaluated(entry)


def run(
    env_id: str,
    algo: str,
    seed: int,
    budget: int,
    eval_every: int,
    eval_episodes: int,
    overrides: dict[str, Any] | None = None,
    tag: str | None = None,
) -> pathlib.Path:
    """
    One training run with periodic evaluation, saved as JSON (skipped when its file exists).

    :param env_id: the env id
    :param algo: ``sb3_contrib``, ``single_path`` or ``vine``
    :param seed: the seed of training (evaluation uses ``seed + 10_000``)
    :param budget: simulator steps (vine branches included)
    :param eval_every: simulator steps between evaluations
    :param eval_episodes: deterministic episodes per evaluation
    :param overrides: hyperparameters replacing the entry's (a sweep); their runs need a ``tag``
    :param tag: the sweep setting's name; tagged runs go to ``docs/results/sweeps/``
    :return: the result file
    """
    if overrides and not tag:
        raise ValueError("runs with overridden hyperparameters need a tag (they are not the benchmark's settings)")
    name = f"{env_id}__{algo}__s{seed}__{budget}.json" if tag is None else f"{env_id}__{algo}__{tag}__s{seed}__{budget}.json"
    path = (RUNS if tag is None else SWEEPS) / name
    if path.exists():
        print(f"skip {path.name} (done)", flush=True)
        return path
    algorithm, entry = algorithm_setup(env_id, algo)
    entry = apply_overrides(entry, overrides or {})
    train_env = make_env(env_id, entry, seed, training=True)
    eval_env = make_env(env_id, entry, seed + 10_000, training=False)
    hyperparams = model_hyperparams(entry)
    if algorithm is TRPOVine:
        hyperparams = preprocess_target_kl(hyperparams)
    model = algorithm(entry.get("policy", "MlpPolicy"), train_env, seed=seed, **hyperparams)
    evaluation = PeriodicEvaluation(eval_env, eval_every, eval_episodes)
    model.learn(budget, callback=evaluation)
    evaluation.evaluate()  # final policy
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = dict(
        env=env_id,
        algo=algo,
        tag=tag,
        seed=seed,
        budget=budget,
        hyperparams=repr(hyperparams),
        normalize=repr(normalize_kwargs(entry, training=True)),
        torch_threads=torch.get_num_threads(),
        commit=code_version(),
        curve=evaluation.curve,
    )
    path.write_text(json.dumps(payload, indent=1))
    print(
        f"{path.name}: final {evaluation.curve[-1]['mean_return']:.1f} in {evaluation.curve[-1]['seconds']:.0f}s", flush=True
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["Hopper-v5"])
    parser.add_argument("--algos", nargs="+", default=["sb3_contrib", "single_path", "vine"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--budget", type=int, default=1_000_000)
    parser.add_argument("--eval-every", type=int, default=None, help="default: budget / 10")
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="hyperparameter overrides (a sweep)")
    parser.add_argument("--tag", default=None, help="name of the sweep setting (required with --set or --variant)")
    parser.add_argument(
        "--variant",
        choices=sorted(TRAINING_VARIANTS),
        default=None,
        help="update or collection ablation (TRPOVine only)",
    )
    args = parser.parse_args()
    if args.variant is not None and args.tag is None:
        parser.error("--variant needs a --tag (its runs are not the benchmark's settings)")
    with contextlib.ExitStack() as variant:
        if args.variant is not None:
            variant.enter_context(TRAINING_VARIANTS[args.variant]())
        run_all(args)


def run_all(args: argparse.Namespace) -> None:
    """:param args: the parsed command line"""
    overrides = parse_overrides(args.set)
    torch.set_num_threads(args.torch_threads)
    for env_id in args.envs:
        for seed in args.seeds:
            for algo in args.algos:
                run(
                    env_id,
                    algo,
                    seed,
                    args.budget,
                    args.eval_every or args.budget // 10,
                    args.eval_episodes,
                    overrides,
                    args.tag,
                )


if __name__ == "__main__":
    main()
