"""The update ablation's variants (benchmarks/update_variants.py) and its paired training (benchmarks/update_ablation.py)."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.distributions import DiagGaussianDistribution

from benchmarks.update_ablation import PairedUpdates, summarise
from benchmarks.update_variants import noisy_cg_start, reverse_kl_line_search, sb3_collection
from sb3_trpo_vine import TRPOVine, trpo_vine, trust_region


def gaussian_parameters(seed: int) -> list[th.Tensor]:
    generator = th.Generator().manual_seed(seed)
    return [th.randn(4, 3, generator=generator), 0.3 * th.randn(4, 3, generator=generator)]


def analytic_kl(p: list[th.Tensor], q: list[th.Tensor]) -> th.Tensor:
    """KL(p || q) of diagonal Gaussians by torch.distributions, summed over dimensions."""
    normal_p, normal_q = th.distributions.Normal(p[0], p[1].exp()), th.distributions.Normal(q[0], q[1].exp())
    return th.distributions.kl_divergence(normal_p, normal_q).sum(dim=1)


def test_reverse_kl_line_search_checks_kl_new_old_and_restores() -> None:
    distribution, old, new = DiagGaussianDistribution(3), gaussian_parameters(0), gaussian_parameters(1)
    assert th.allclose(trpo_vine.kl_divergence(distribution, old, new), analytic_kl(old, new), atol=1e-5)
    with reverse_kl_line_search():
        assert th.allclose(trpo_vine.kl_divergence(distribution, old, new), analytic_kl(new, old), atol=1e-5)
        assert not th.allclose(analytic_kl(new, old), analytic_kl(old, new), atol=1e-3)
    assert th.allclose(trpo_vine.kl_divergence(distribution, old, new), analytic_kl(old, new), atol=1e-5)


def test_noisy_cg_start_solves_the_same_system_from_a_random_start() -> None:
    rng = np.random.default_rng(0)
    root = rng.normal(size=(6, 6))
    matrix = th.tensor(root @ root.T + 6 * np.eye(6))
    b = th.tensor(rng.normal(size=6))
    exact = th.linalg.solve(matrix, b)
    zero_start, _ = trust_region.conjugate_gradient(lambda v: matrix @ v, b, 6)
    with noisy_cg_start():
        th.manual_seed(0)
        first, _ = trust_region.conjugate_gradient(lambda v: matrix @ v, b, 6)
        th.manual_seed(1)
        second, _ = trust_region.conjugate_gradient(lambda v: matrix @ v, b, 2)
    th.manual_seed(1)
    truncated_zero_start, _ = trust_region.conjugate_gradient(lambda v: matrix @ v, b, 2)
    assert th.allclose(first, exact, atol=1e-8) and th.allclose(zero_start, exact, atol=1e-8)
    assert not th.equal(second, truncated_zero_start)  # two CG steps from another start end elsewhere
    assert trust_region.conjugate_gradient.__module__ == "sb3_trpo_vine.trust_region"  # restored


def test_paired_updates_train_exactly_as_trpovine() -> None:
    kwargs = dict(n_steps=256, batch_size=64, seed=3, target_kl=0.02)
    plain = TRPOVine("MlpPolicy", gym.make("Pendulum-v1"), **kwargs).learn(1024)
    paired = PairedUpdates("MlpPolicy", gym.make("Pendulum-v1"), **kwargs).learn(1024)
    for ours, theirs in zip(plain.policy.parameters(), paired.policy.parameters(), strict=True):
        assert th.equal(ours, theirs)
    assert len(paired.paired_steps) == 4
    rows = summarise("Pendulum-v1", paired.paired_steps)
    assert [row[1] for row in rows] == ["reverse-kl", "cg-noise-start"]
    # the CG start moves the step, but by far less than the step itself
    assert 0 < max(step["cg-noise-start"]["relative_distance"] for step in paired.paired_steps) < 1e-2


def test_sb3_collection_collects_with_sb3_code_and_restores() -> None:
    kwargs = dict(n_steps=64, batch_size=32, seed=0, target_kl=0.02)
    numpy_collected = TRPOVine("MlpPolicy", gym.make("Pendulum-v1"), **kwargs)
    numpy_collected.learn(64)
    numpy_collection = TRPOVine.collect_rollouts
    with sb3_collection():
        sb3_collected = TRPOVine("MlpPolicy", gym.make("Pendulum-v1"), **kwargs)
        sb3_collected.learn(64)
        buffer = sb3_collected.rollout_buffer
        # SB3's collection draws actions with torch's RNG, TRPOVine's with its own numpy generator
        assert not np.array_equal(buffer.actions, numpy_collected.rollout_buffer.actions)
        # the stored log-probabilities are those of the stored actions under the collecting policy
        with th.no_grad():
            _, log_prob, _ = sb3_collected.policy.evaluate_actions(
                th.as_tensor(buffer.observations), th.as_tensor(buffer.actions)
            )
        initial = TRPOVine("MlpPolicy", gym.make("Pendulum-v1"), **kwargs)
        with th.no_grad():
            _, initial_log_prob, _ = initial.policy.evaluate_actions(
                th.as_tensor(buffer.observations), th.as_tensor(buffer.actions)
            )
        np.testing.assert_allclose(buffer.log_probs.ravel(), initial_log_prob.numpy(), atol=1e-5)
        assert not np.allclose(log_prob.numpy(), initial_log_prob.numpy())  # the update after the rollout moved the policy
        vine = TRPOVine("MlpPolicy", gym.make("Pendulum-v1"), rollout_buffer_class="vine", **kwargs)
        with pytest.raises(ValueError, match="single-path rollouts only"):
            vine.learn(64)
        assert TRPOVine.collect_rollouts is not numpy_collection
    assert TRPOVine.collect_rollouts is numpy_collection  # restored
