"""Vine estimator options beyond the paper: trunk trust region, antithetic branches, trunk advantages; defaults."""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env

from sb3_trpo_vine import TRPOVine, VineRolloutBuffer
from sb3_trpo_vine.distributions import distribution_parameters, kl_divergence
from sb3_trpo_vine.surrogates import ImportanceSampledAdvantage, SelfNormalizedImportanceQ, TrunkAndVineSurrogate

N_STEPS = 64


def vine_model(env_id: str = "Pendulum-v1", n_envs: int = 2, use_sde: bool = False, **buffer_kwargs) -> TRPOVine:
    return TRPOVine(
        "MlpPolicy",
        make_vec_env(env_id, n_envs=n_envs, seed=0),
        n_steps=N_STEPS,
        batch_size=32,
        seed=0,
        use_sde=use_sde,
        policy_kwargs=dict(net_arch=[16]),
        rollout_buffer_class="vine",
        rollout_buffer_kwargs=dict(dict(n_rollout_states=16, rollout_length=5) | buffer_kwargs),
    )


def collect(model: TRPOVine) -> VineRolloutBuffer:
    _, callback = model._setup_learn(10**6)
    model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
    return model.rollout_buffer


def gradient(model: TRPOVine, value: th.Tensor) -> th.Tensor:
    return th.cat([part.reshape(-1) for part in th.autograd.grad(value, model._actor_params)])


def test_vine_defaults_for_box_actions_are_pooled_advantages_with_the_trunk_as_a_branch():
    model = TRPOVine("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=2, seed=0), n_steps=512, rollout_buffer_class="vine")
    buffer = model.rollout_buffer
    assert (buffer.n_rollout_states, buffer.n_actions_per_state, buffer.rollout_length) == (32, 2, 10)  # 1/32
    assert (buffer.pooled_advantages, buffer.trunk_branch, buffer.action_proposal) == (True, None, "policy")
    assert (buffer.trust_region_states, buffer.antithetic, buffer.trunk_advantages) == ("rollout", False, False)
    collect(model)
    assert buffer.trunk_first is not None and buffer.trunk_first.any()  # explicit noise: the trunk is branch 0
    assert model.logger.name_to_value["vine/trunk_branch_fraction"] == pytest.approx(buffer.trunk_first.mean())
    tiny = TRPOVine("MlpPolicy", "Pendulum-v1", n_steps=3, batch_size=3, rollout_buffer_class="vine")
    assert tiny.rollout_buffer.n_rollout_states == 1


def test_vine_defaults_drop_the_trunk_branch_under_gsde_and_keep_it_when_asked_for_explicitly():
    gsde = vine_model(n_rollout_states=None, use_sde=True)
    assert (gsde.rollout_buffer.n_rollout_states, gsde.rollout_buffer.pooled_advantages) == (4, True)  # 128 / 32
    assert collect(gsde).trunk_first is None  # gSDE draws its own noise: every state is branched K times
    with pytest.raises(ValueError, match="use_sde=False or trunk_branch=False"):
        collect(vine_model(use_sde=True, trunk_branch=True))


def test_vine_defaults_for_discrete_actions_are_the_papers_estimators_on_a_quarter_of_the_trunk():
    buffer = TRPOVine("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2), n_steps=512, rollout_buffer_class="vine")
    buffer = buffer.rollout_buffer
    assert (buffer.n_rollout_states, buffer.n_actions_per_state, buffer.action_proposal) == (256, 2, "all")
    assert (buffer.pooled_advantages, buffer.trunk_branch) == (False, False)
    explicit = vine_model(pooled_advantages=False)  # Box with Eq. 16 asked for: no trunk branch either
    assert (explicit.rollout_buffer.pooled_advantages, explicit.rollout_buffer.trunk_branch) == (False, False)


def test_antithetic_actions_are_symmetric_about_the_mean():
    model = vine_model(n_actions_per_state=4, antithetic=True)
    buffer = collect(model)
    with th.no_grad():
        mean = distribution_parameters(model.policy.get_distribution(th.as_tensor(buffer.rollout_observations)))[0]
    actions = th.as_tensor(buffer.branch_actions)  # (N, K, d): eps1, -eps1, eps2, -eps2
    pairs = actions.reshape(16, 2, 2, 1)
    th.testing.assert_close(pairs.mean(dim=2), mean[:, None, :].expand(16, 2, 1), atol=1e-5, rtol=0)
    assert not th.allclose(pairs[:, 0, 0], pairs[:, 1, 0])  # the two pairs of a state differ
    np.testing.assert_allclose(buffer.branch_log_proposal[:, 0::2], buffer.branch_log_proposal[:, 1::2], rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(antithetic=True, n_actions_per_state=3), "must be even"),
        (dict(trust_region_states="everywhere"), "trust_region_states must be one of"),
    ],
)
def test_estimator_option_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        vine_model(**kwargs)
    with pytest.raises(ValueError, match="needs a Box action space"):
        vine_model("CartPole-v1", antithetic=True)


def test_trunk_trust_region_uses_the_rollout_surrogate_and_constrains_every_trunk_state():
    paper, trunk = vine_model(pooled_advantages=False), vine_model(trust_region_states="trunk")
    collect(paper)
    collect(trunk)
    paper_surrogate, trunk_surrogate = paper._policy_objective()[0], trunk._policy_objective()[0]
    assert isinstance(trunk_surrogate, SelfNormalizedImportanceQ) and trunk_surrogate.observations.shape[0] == 2 * N_STEPS
    assert paper_surrogate.observations.shape[0] == 16
    # same data (same seed), so the surrogate over the trunk rows equals the paper's over the rollout states
    paper_value = paper_surrogate(paper.policy.get_distribution(paper_surrogate.observations))
    trunk_value = trunk_surrogate(trunk.policy.get_distribution(trunk_surrogate.observations))
    th.testing.assert_close(trunk_value, paper_value)
    th.testing.assert_close(gradient(trunk, trunk_value), gradient(paper, paper_value), rtol=1e-4, atol=1e-6)
    # the accepted step keeps the mean KL over every trunk state within the trust region
    observations = trunk_surrogate.observations
    with th.no_grad():
        old = distribution_parameters(trunk.policy.get_distribution(observations))
    step = trunk._policy_step(trunk_surrogate)
    assert step.accepted
    with th.no_grad():
        distribution = trunk.policy.get_distribution(observations)
        kl = float(kl_divergence(distribution, old, distribution_parameters(distribution)).mean())
    assert kl == pytest.approx(step.kl, rel=1e-5) and 0.0 < kl <= trunk.target_kl


def test_trunk_advantages_average_the_single_path_and_vine_surrogates():
    model = vine_model(trunk_advantages=True)
    buffer = collect(model)
    assert buffer.trust_region_states == "trunk"
    surrogate = model._policy_objective()[0]
    assert isinstance(surrogate, TrunkAndVineSurrogate)
    distribution = model.policy.get_distribution(surrogate.observations)
    combined = gradient(model, surrogate(distribution))
    parts = [
        gradient(model, part(model.policy.get_distribution(surrogate.observations)))
        for part in (surrogate.trunk, surrogate.vine)
    ]
    th.testing.assert_close(combined, 0.5 * parts[0] + 0.5 * parts[1], rtol=1e-4, atol=1e-7)
    # the vine part sees Q centred per state with unit spread
    q_values = surrogate.vine.q_values
    th.testing.assert_close(q_values.mean(dim=1), th.zeros(16), atol=1e-5, rtol=0)
    assert float(q_values.std()) == pytest.approx(1.0, rel=1e-4)


@pytest.mark.parametrize("trunk_branch", [False, True])
def test_pooled_advantages_add_the_branches_to_the_single_path_batch(trunk_branch):
    model = vine_model(pooled_advantages=True, trunk_branch=trunk_branch)
    buffer = collect(model)
    surrogate = model._policy_objective()[0]
    assert isinstance(surrogate, ImportanceSampledAdvantage)
    trunk_first = buffer.trunk_first if trunk_branch else np.zeros(16, dtype=bool)
    assert trunk_first.any() == trunk_branch
    n_trunk = 2 * N_STEPS - int(trunk_first.sum())
    assert surrogate.observations.shape[0] == n_trunk + 16 * 2
    # a trunk-branched state's branch 0 is the trunk's own action, whose trunk sample left the batch
    step, env = buffer.trunk_positions.T
    rows = env * N_STEPS + step  # get() flattened the trunk env-major
    trunk_actions = buffer.actions[rows]
    np.testing.assert_array_equal(trunk_actions[trunk_first], buffer.branch_actions[trunk_first, 0])
    assert not np.allclose(trunk_actions[~trunk_first], buffer.branch_actions[~trunk_first, 0])
    # K = 2: the paired advantages are +-(Q_0 - Q_1), standardised together with the kept GAE advantages
    kept = np.ones(2 * N_STEPS, dtype=bool)
    kept[rows[trunk_first]] = False
    q_difference = buffer.q_values[:, 0] - buffer.q_values[:, 1]
    advantages = np.concatenate([buffer.advantages.reshape(-1)[kept], np.stack([q_difference, -q_difference], 1).ravel()])
    expected = (advantages - advantages.mean()) / (advantages.std(ddof=1) + 1e-8)
    np.testing.assert_allclose(surrogate.advantages.numpy(), expected, rtol=1e-4, atol=1e-5)
    # the branches enter with the log-probabilities they were drawn with (q = pi_old): ratio 1 at theta_old
    with th.no_grad():
        log_prob = model.policy.get_distribution(surrogate.observations).log_prob(surrogate.actions)
    th.testing.assert_close(log_prob, surrogate.old_log_prob, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "env_id, kwargs, match",
    [
        ("Pendulum-v1", dict(pooled_advantages=True, trunk_advantages=True), "set one of them"),
        ("CartPole-v1", dict(pooled_advantages=True), "needs action_proposal 'policy'"),
        ("Pendulum-v1", dict(pooled_advantages=True, trust_region_states="trunk"), "applies to Eq. 15/16"),
    ],
)
def test_pooled_advantages_errors(env_id, kwargs, match):
    with pytest.raises(ValueError, match=match):
        vine_model(env_id, **kwargs)
