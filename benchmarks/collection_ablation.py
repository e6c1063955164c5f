"""
Ablation for the open HalfCheetah-v5 question: TRPOVine's single-path update trained on data collected by SB3's
own ``OnPolicyAlgorithm.collect_rollouts`` (torch sampling, SB3's buffer ``add``) instead of TRPOVine's numpy
collection. Same hyperparameters as the ``single_path`` returns runs; prints one JSON line per seed with the final
deterministic evaluation return (10 episodes, frozen VecNormalize statistics).

    python -m benchmarks.collection_ablation 0 1 2 3 4 5
"""

import json
import sys

import torch
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.vec_env import sync_envs_normalization

from benchmarks.returns import algorithm_setup, make_env, model_hyperparams
from sb3_trpo_vine import TRPOVine

ENV_ID = "HalfCheetah-v5"
BUDGET = 300_000


class SB3Collection(TRPOVine):
    """TRPOVine's update on data collected by SB3's own collect_rollouts."""

    def collect_rollouts(self, *args, **kwargs) -> bool:
        return OnPolicyAlgorithm.collect_rollouts(self, *args, **kwargs)


def main() -> None:
    torch.set_num_threads(1)
    _, entry = algorithm_setup(ENV_ID, "single_path")
    hyperparams = model_hyperparams(entry)
    for seed in map(int, sys.argv[1:]):
        env = make_env(ENV_ID, entry, seed, training=True)
        eval_env = make_env(ENV_ID, entry, seed + 10_000, training=False)
        model = SB3Collection("MlpPolicy", env, seed=seed, **hyperparams).learn(BUDGET)
        sync_envs_normalization(env, eval_env)
        mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=10, deterministic=True)
        print(json.dumps(dict(env=ENV_ID, seed=seed, budget=BUDGET, final_return=mean)), flush=True)


if __name__ == "__main__":
    main()
