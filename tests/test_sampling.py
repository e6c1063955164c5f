"""The numpy fast path samples exactly what the torch policy defines."""

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy

from sb3_trpo_vine.sampling import NumpyMlpSampler, TorchSampler, make_sampler, policy_noise

ACTION_SPACES = [
    spaces.Box(-2.0, 2.0, (3,)),
    spaces.Discrete(5),
    spaces.MultiDiscrete([3, 4]),
    spaces.MultiBinary(4),
]


@pytest.mark.parametrize("action_space", ACTION_SPACES, ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("activation", [th.nn.Tanh, th.nn.ReLU])
@pytest.mark.parametrize("net_arch", [[16, 16], dict(pi=[8], vf=[16, 12])], ids=["fused", "separate"])
def test_numpy_and_torch_samplers_agree_with_the_policy(action_space, activation, net_arch):
    th.manual_seed(0)
    policy = ActorCriticPolicy(
        spaces.Box(-5.0, 5.0, (6,)), action_space, lambda _: 1e-3, net_arch=net_arch, activation_fn=activation
    )
    numpy_sampler = NumpyMlpSampler.from_policy(policy)
    assert numpy_sampler is not None
    assert (numpy_sampler.actor_critic is None) == isinstance(net_arch, dict)  # one fused network when shapes allow
    torch_sampler = TorchSampler(policy)
    rng = np.random.default_rng(0)
    observations = rng.uniform(-5, 5, (64, 6)).astype(np.float32)
    noise = policy_noise(rng, action_space, 64)

    actions_np, values_np, log_probs_np = numpy_sampler.sample(observations, noise)
    actions_th, values_th, log_probs_th = torch_sampler.sample(observations, noise)
    np.testing.assert_allclose(actions_np, actions_th, atol=1e-5)
    np.testing.assert_allclose(values_np, values_th, atol=1e-5)
    np.testing.assert_allclose(log_probs_np, log_probs_th, atol=1e-4)
    np.testing.assert_allclose(numpy_sampler.predict_values(observations), values_th, atol=1e-5)

    # log-probabilities are the policy's own, and the actions follow its distribution
    with th.no_grad():
        distribution = policy.get_distribution(th.as_tensor(observations))
        reference = distribution.log_prob(th.as_tensor(actions_th)).numpy()
    np.testing.assert_allclose(log_probs_th, reference, atol=1e-4)
    assert action_space.contains(np.asarray(actions_np[0], dtype=action_space.dtype)) or isinstance(action_space, spaces.Box)


def test_gumbel_max_sampling_has_the_policy_frequencies():
    th.manual_seed(1)
    policy = ActorCriticPolicy(spaces.Box(-1.0, 1.0, (2,)), spaces.Discrete(3), lambda _: 1e-3, net_arch=[8])
    sampler = make_sampler(policy)
    observation = np.zeros((20000, 2), dtype=np.float32)
    actions, _, _ = sampler.sample(observation, policy_noise(np.random.default_rng(0), policy.action_space, 20000))
    with th.no_grad():
        probs = policy.get_distribution(th.zeros(1, 2)).distribution.probs[0].numpy()
    np.testing.assert_allclose(np.bincount(actions, minlength=3) / 20000, probs, atol=0.015)


def test_numpy_sampler_refresh_tracks_weight_changes():
    policy = ActorCriticPolicy(spaces.Box(-1.0, 1.0, (2,)), spaces.Box(-1.0, 1.0, (1,)), lambda _: 1e-3, net_arch=[8])
    sampler = NumpyMlpSampler.from_policy(policy)
    observations = np.ones((1, 2), dtype=np.float32)
    before = sampler.predict_values(observations)
    with th.no_grad():
        policy.value_net.bias.add_(1.0)
    assert np.allclose(sampler.predict_values(observations), before)  # stale until refreshed
    sampler.refresh()
    assert np.allclose(sampler.predict_values(observations), before + 1.0)


def test_unsupported_policies_fall_back_to_torch():
    image_policy_space = spaces.Box(0, 255, (1, 36, 36), dtype=np.uint8)
    from stable_baselines3.common.policies import ActorCriticCnnPolicy

    cnn = ActorCriticCnnPolicy(image_policy_space, spaces.Discrete(2), lambda _: 1e-3)
    assert isinstance(make_sampler(cnn), TorchSampler)
    sde = ActorCriticPolicy(spaces.Box(-1.0, 1.0, (2,)), spaces.Box(-1.0, 1.0, (1,)), lambda _: 1e-3, use_sde=True)
    assert isinstance(make_sampler(sde), TorchSampler)
    elu = ActorCriticPolicy(spaces.Box(-1.0, 1.0, (2,)), spaces.Discrete(2), lambda _: 1e-3, activation_fn=th.nn.ELU)
    assert isinstance(make_sampler(elu), TorchSampler)
