"""One TRPOVine single-path update equals sb3_contrib.TRPO's from identical weights and an identical batch."""

import numpy as np
import pytest
import torch as th
from sb3_contrib import TRPO

from sb3_trpo_vine import TRPOVine
from sb3_trpo_vine.distributions import distribution_parameters, kl_divergence

TARGET_KL = 0.01
CG_DAMPING = 0.1


@pytest.mark.parametrize(
    "env_id, action_dim",
    [("CartPole-v1", 1), ("Pendulum-v1", 1), ("Hopper-v5", 3)],
)
def test_single_path_update_matches_sb3_contrib(env_id, action_dim):
    # sb3-contrib averages the Gaussian KL over action dimensions: its target_kl and cg_damping divided by d
    # describe the same trust region as ours undivided (KL_contrib = KL_paper / d, H_contrib = (F + damping) / d).
    box = env_id != "CartPole-v1"
    scale = action_dim if box else 1
    common = dict(n_steps=256, n_critic_updates=1, cg_max_steps=15, seed=3, policy_kwargs=dict(net_arch=[32, 32]))
    reference = TRPO("MlpPolicy", env_id, target_kl=TARGET_KL / scale, cg_damping=CG_DAMPING / scale, **common)
    ours = TRPOVine(
        "MlpPolicy", env_id, target_kl=TARGET_KL, cg_damping=CG_DAMPING, rollout_buffer_class="single_path", **common
    )
    ours.policy.load_state_dict(reference.policy.state_dict())

    # one batch collected by sb3-contrib, trained on by both
    _, callback = reference._setup_learn(256)
    reference.collect_rollouts(reference.env, callback, reference.rollout_buffer, reference.n_steps)
    ours.rollout_buffer = reference.rollout_buffer
    ours._logger = reference.logger

    actor = [name for name, param in ours.policy.named_parameters() if any(param is p for p in ours._actor_params)]
    before = th.cat([reference.policy.state_dict()[name].flatten() for name in actor])
    observations = th.as_tensor(reference.rollout_buffer.observations.reshape(256, -1))
    with th.no_grad():
        old = distribution_parameters(reference.policy.get_distribution(observations))

    th.manual_seed(0)
    reference.train()
    reference_logs = dict(reference.logger.name_to_value)
    ours.train()
    assert reference_logs["train/is_line_search_success"] == 1.0
    assert ours.logger.name_to_value["train/is_line_search_success"] == 1.0

    step_reference = th.cat([reference.policy.state_dict()[name].flatten() for name in actor]) - before
    step_ours = th.cat([ours.policy.state_dict()[name].flatten() for name in actor]) - before
    cosine = th.dot(step_ours, step_reference) / (step_ours.norm() * step_reference.norm())
    assert float(cosine) > 0.9999
    assert float(step_ours.norm() / step_reference.norm()) == pytest.approx(1.0, abs=2e-3)

    # the accepted step respects the paper's KL bound
    with th.no_grad():
        distribution = ours.policy.get_distribution(observations)
        paper_kl = float(kl_divergence(distribution, old, distribution_parameters(distribution)).mean())
    assert 0.0 < paper_kl <= TARGET_KL
    assert ours.logger.name_to_value["train/kl_divergence_loss"] == pytest.approx(paper_kl, rel=1e-4)
    if box:
        # sb3-contrib logs the per-dimension average of the reverse KL(new || old): d times smaller, up to the
        # third-order difference between forward and reverse KL
        assert reference_logs["train/kl_divergence_loss"] == pytest.approx(paper_kl / scale, rel=0.2)
    assert np.isfinite(ours.logger.name_to_value["train/cg_residual"])


def test_consecutive_updates_match_sb3_contrib():
    # Four iterations on batches collected by sb3-contrib: the critic's Adam state carries over between fits in both,
    # so its parameters must stay equal too (full-batch critic minibatches: the two shuffle with different draws)
    d = 3
    common = dict(n_steps=256, batch_size=256, n_critic_updates=5, cg_max_steps=15, seed=3, policy_kwargs=dict(net_arch=[32]))
    reference = TRPO("MlpPolicy", "Hopper-v5", target_kl=TARGET_KL / d, cg_damping=CG_DAMPING / d, **common)
    ours = TRPOVine(
        "MlpPolicy", "Hopper-v5", target_kl=TARGET_KL, cg_damping=CG_DAMPING, rollout_buffer_class="single_path", **common
    )
    ours.policy.load_state_dict(reference.policy.state_dict())
    _, callback = reference._setup_learn(4 * 256)
    ours._logger = reference.logger
    critic_keys = [key for key in reference.policy.state_dict() if "value" in key]
    assert critic_keys
    for iteration in range(4):
        reference.collect_rollouts(reference.env, callback, reference.rollout_buffer, reference.n_steps)
        ours.rollout_buffer = reference.rollout_buffer
        th.manual_seed(iteration)
        reference.train()
        ours.train()
        expected, actual = reference.policy.state_dict(), ours.policy.state_dict()
        for key in expected:
            tolerance = 1e-6 if key in critic_keys else 1e-4
            assert th.allclose(actual[key], expected[key], rtol=0.0, atol=tolerance), (iteration, key)
