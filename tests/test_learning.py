"""Learning checks with fixed seeds (thresholds measured on the CI machine type, see docs/benchmarks.md)."""

import pytest
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_trpo_vine import TRPOVine

# RL-Zoo's CartPole-v1 TRPO entry
CARTPOLE = dict(n_steps=512, batch_size=512, cg_damping=1e-3, gae_lambda=0.98, gamma=0.99, n_critic_updates=20)


def evaluate(model: TRPOVine, env_id: str) -> float:
    mean_return, _ = evaluate_policy(model, make_vec_env(env_id, n_envs=1, seed=1000), n_eval_episodes=20)
    return mean_return


def test_single_path_learns_cartpole_in_the_zoo_budget():
    # measured: 500 +/- 0 for seeds 0, 1, 2 after 1e5 steps
    model = TRPOVine(
        "MlpPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=0), seed=0, rollout_buffer_class="single_path", **CARTPOLE
    )
    model.learn(100_000)
    assert evaluate(model, "CartPole-v1") >= 475


def test_vine_learns_cartpole():
    # measured after 2e5 simulator steps (trunk + branches), N=64, both actions, H=50, seeds 0-5: 299, 500, 360, 500,
    # 397, 500 (a random policy scores ~22); the threshold asserts clear learning for this seed with margin
    model = TRPOVine(
        "MlpPolicy",
        make_vec_env("CartPole-v1", n_envs=2, seed=0),
        seed=0,
        rollout_buffer_class="vine",
        rollout_buffer_kwargs=dict(n_rollout_states=64, rollout_length=50),
        **CARTPOLE,
    )
    model.learn(200_000)
    assert evaluate(model, "CartPole-v1") >= 250


def test_vine_defaults_learn_cartpole():
    # vine with its default settings (N = a quarter of the 1,024 trunk states, both actions, H = 10): measured after
    # ~1e5 simulator steps, seeds 0, 1, 2: 173, 450, 500 (at ~1.5e5: 179, 463, 500); a random policy scores ~22. Seed 0
    # is the slowest of the three: the threshold asserts clear learning with margin.
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = TRPOVine("MlpPolicy", env, seed=0, rollout_buffer_class="vine", **CARTPOLE).learn(100_000)
    assert evaluate(model, "CartPole-v1") >= 120


def test_vine_defaults_learn_inverted_pendulum():
    # Box actions: the buffer's defaults are pooled advantages with the trunk as branch 0 (N = 64 of the 2 x 1,024
    # trunk states, K = 2, H = 10). Measured after 5e4 simulator steps, seeds 0, 1, 2: 1000, 1000, 1000 (3e4: 177, 230,
    # 180); the paper's Eq. 16 on a quarter of the trunk (pooled_advantages=False) reaches 95, 79, 95 in the same budget.
    env = make_vec_env("InvertedPendulum-v5", n_envs=2, seed=0)
    model = TRPOVine("MlpPolicy", env, seed=0, n_steps=1024, batch_size=128, n_critic_updates=20, rollout_buffer_class="vine")
    model.learn(50_000)
    assert evaluate(model, "InvertedPendulum-v5") >= 900


@pytest.mark.slow
def test_vine_learns_pendulum():
    # see docs/benchmarks.md for the measured returns of this configuration (a random policy scores about -1200)
    model = TRPOVine(
        "MlpPolicy",
        make_vec_env("Pendulum-v1", n_envs=2, seed=0),
        seed=0,
        n_steps=256,
        batch_size=128,
        gamma=0.9,
        n_critic_updates=15,
        use_sde=True,
        sde_sample_freq=4,
        rollout_buffer_class="vine",
        rollout_buffer_kwargs=dict(n_rollout_states=128, rollout_length=10),
    )
    model.learn(200_000)
    assert evaluate(model, "Pendulum-v1") >= -400
