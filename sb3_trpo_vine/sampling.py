"""
Action sampling during collection with explicit noise.

The policy is fixed while an iteration collects data, so sampling is a pure function
``(observation, noise) -> (action, value, log_prob)``. The noise is drawn by the caller from a seeded
numpy generator, which makes collection deterministic and gives the vine scheme common random numbers
(the K branches of one state are fed the same noise stream).

Noise per action distribution (``policy_noise``):
- diagonal Gaussian: standard normal eps, action = mean + std * eps;
- categorical / multi-categorical: standard Gumbel g, action = argmax(logits + g) (Gumbel-max);
- Bernoulli: uniform u, action = 1[u < sigmoid(logit)].

Two samplers implement it: ``NumpyMlpSampler`` runs SB3's default MLP actor-critic in numpy (an order of
magnitude cheaper than torch at batch sizes of a few environments) and ``TorchSampler`` handles every other
policy (CNN, dict observations, custom extractors, gSDE).
"""

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import (
    BernoulliDistribution,
    CategoricalDistribution,
    DiagGaussianDistribution,
    Distribution,
    MultiCategoricalDistribution,
    StateDependentNoiseDistribution,
)
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import FlattenExtractor, MlpExtractor
from torch import nn

from sb3_trpo_vine.distributions import GAUSSIAN_DISTRIBUTIONS, LOG_SQRT_2PI, distribution_parameters

NUMPY_ACTIVATIONS = {
    nn.Tanh: np.tanh,
    nn.ReLU: lambda x: np.maximum(x, 0.0),
    nn.Identity: lambda x: x,
}


def policy_noise(rng: np.random.Generator, action_space: spaces.Space, n_samples: int) -> np.ndarray:
    """
    Draw the noise that turns distribution parameters into sampled actions (see module docstring).

    :param rng: the noise generator
    :param action_space: the policy's action space
    :param n_samples: number of actions to sample
    :return: ``(n_samples, noise_dim)`` float32 array
    """
    if isinstance(action_space, spaces.Box):
        return rng.standard_normal((n_samples, int(np.prod(action_space.shape))), dtype=np.float32)
    if isinstance(action_space, spaces.MultiBinary):
        return rng.random((n_samples, int(np.prod(action_space.shape))), dtype=np.float32)
    n_logits = int(action_space.n) if isinstance(action_space, spaces.Discrete) else int(np.sum(action_space.nvec))
    return rng.gumbel(size=(n_samples, n_logits)).astype(np.float32)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


class NumpyMlpSampler:
    """
    SB3's default ``MlpPolicy`` (flatten extractor, ``MlpExtractor``, linear heads) evaluated in numpy.

    Build it with :meth:`from_policy`, which returns None for any policy it cannot mirror exactly.
    Call :meth:`refresh` after the policy's weights changed.

    :param policy: the policy to mirror
    """

    def __init__(self, policy: ActorCriticPolicy) -> None:
        self.policy = policy
        self.refresh()

    @classmethod
    def from_policy(cls, policy: ActorCriticPolicy) -> "NumpyMlpSampler | None":
        """
        :param policy: an actor-critic policy
        :return: a numpy sampler, or None if the policy is not a plain MLP actor-critic
        """
        supported = (
            type(policy) is ActorCriticPolicy
            and isinstance(policy.observation_space, spaces.Box)
            and not is_image_space(policy.observation_space)
            and not policy.use_sde
            and not policy.squash_output
            and type(policy.pi_features_extractor) is FlattenExtractor
            and type(policy.vf_features_extractor) is FlattenExtractor
            and type(policy.mlp_extractor) is MlpExtractor
            and type(policy.action_dist)
            in (DiagGaussianDistribution, CategoricalDistribution, MultiCategoricalDistribution, BernoulliDistribution)
            and type(policy.action_net) is nn.Linear
            and type(policy.value_net) is nn.Linear
            and all(
                type(layer) is nn.Linear or type(layer) in NUMPY_ACTIVATIONS
                for net in (policy.mlp_extractor.policy_net, policy.mlp_extractor.value_net)
                for layer in net
            )
        )
        return cls(policy) if supported else None

    @staticmethod
    def _compile(modules: list[nn.Module]) -> list[tuple[np.ndarray, np.ndarray] | object]:
        layers: list[tuple[np.ndarray, np.ndarray] | object] = []
        for module in modules:
            if isinstance(module, nn.Linear):
                layers.append((module.weight.detach().cpu().numpy().T.copy(), module.bias.detach().cpu().numpy().copy()))
            else:
                layers.append(NUMPY_ACTIVATIONS[type(module)])
        return layers

    def refresh(self) -> None:
        """Copy the current weights of the policy."""
        policy = self.policy
        self.actor = self._compile([*policy.mlp_extractor.policy_net, policy.action_net])
        self.critic = self._compile([*policy.mlp_extractor.value_net, policy.value_net])
        self.actor_critic = self._fuse(self.actor, self.critic)
        self.log_std = (
            policy.log_std.detach().cpu().numpy().copy() if isinstance(policy.action_dist, DiagGaussianDistribution) else None
        )

    @staticmethod
    def _fuse(actor: list, critic: list) -> list | None:
        """
        One network computing ``[actor output | value]``: concatenated first layers, block-diagonal later layers.

        Half the numpy calls per collection step (they dominate at a batch of a few environments).

        :return: the fused layers, or None when the two networks differ in depth or activations
        """
        if len(actor) != len(critic) or any(
            isinstance(a, tuple) != isinstance(c, tuple) or (not isinstance(a, tuple) and a is not c)
            for a, c in zip(actor, critic, strict=True)
        ):
            return None
        fused: list[tuple[np.ndarray, np.ndarray] | object] = []
        for index, (a, c) in enumerate(zip(actor, critic, strict=True)):
            if not isinstance(a, tuple):
                fused.append(a)
            elif index == 0:
                fused.append((np.concatenate([a[0], c[0]], axis=1), np.concatenate([a[1], c[1]])))
            else:
                weight = np.zeros((a[0].shape[0] + c[0].shape[0], a[0].shape[1] + c[0].shape[1]), dtype=a[0].dtype)
                weight[: a[0].shape[0], : a[0].shape[1]] = a[0]
                weight[a[0].shape[0] :, a[0].shape[1] :] = c[0]
                fused.append((weight, np.concatenate([a[1], c[1]])))
        return fused

    @staticmethod
    def _run(layers: list, x: np.ndarray) -> np.ndarray:
        for layer in layers:
            x = x @ layer[0] + layer[1] if isinstance(layer, tuple) else layer(x)
        return x

    def _flatten(self, observations: np.ndarray) -> np.ndarray:
        return np.asarray(observations, dtype=np.float32).reshape(len(observations), -1)

    def predict_values(self, observations: np.ndarray) -> np.ndarray:
        """
        :param observations: batch of observations
        :return: ``(batch,)`` state values
        """
        return self._run(self.critic, self._flatten(observations))[:, 0]

    def sample(self, observations: np.ndarray, noise: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """
        :param observations: batch of observations
        :param noise: ``policy_noise`` for this batch
        :return: actions (SB3 buffer layout), values ``(batch,)`` and log-probabilities ``(batch,)``
        """
        flat = self._flatten(observations)
        if self.actor_critic is None:
            actions, log_probs = self.sample_actions(flat, noise)
            return actions, self._run(self.critic, flat)[:, 0], log_probs
        out = self._run(self.actor_critic, flat)
        actions, log_probs = self._actions_from_output(out[:, :-1], noise)
        return actions, out[:, -1], log_probs

    def sample_actions(self, flat_observations: np.ndarray, noise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """
        :param flat_observations: ``(batch, obs_dim)`` float32 observations
        :param noise: ``policy_noise`` for this batch
        :return: actions and their log-probabilities
        """
        return self._actions_from_output(self._run(self.actor, flat_observations), noise)

    def _actions_from_output(self, out: np.ndarray, noise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dist = self.policy.action_dist
        if self.log_std is not None:
            actions = out + np.exp(self.log_std) * noise
            log_probs = (-0.5 * noise * noise - self.log_std - LOG_SQRT_2PI).sum(axis=1)
            return actions, log_probs
        if isinstance(dist, BernoulliDistribution):
            actions = (noise < 1.0 / (1.0 + np.exp(-out))).astype(np.float32)
            log_probs = (actions * _log_sigmoid(out) + (1.0 - actions) * _log_sigmoid(-out)).sum(axis=1)
            return actions, log_probs
        if isinstance(dist, CategoricalDistribution):
            chosen = np.argmax(out + noise, axis=1)
            return chosen, _log_softmax(out)[np.arange(len(out)), chosen]
        split_points = np.cumsum(dist.action_dims)[:-1]
        rows = np.arange(len(out))
        actions_list, log_probs = [], np.zeros(len(out), dtype=np.float32)
        for logits, gumbel in zip(np.split(out, split_points, axis=1), np.split(noise, split_points, axis=1), strict=True):
            chosen = np.argmax(logits + gumbel, axis=1)
            log_probs = log_probs + _log_softmax(logits)[rows, chosen]
            actions_list.append(chosen)
        return np.stack(actions_list, axis=1), log_probs


def torch_sample(distribution: Distribution, noise: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """
    Sample actions from an SB3 distribution with explicit noise (same rules as ``NumpyMlpSampler``).

    :param distribution: distribution over a batch of states
    :param noise: ``policy_noise`` for this batch, as a tensor
    :return: actions and their log-probabilities
    """
    if isinstance(distribution, GAUSSIAN_DISTRIBUTIONS):
        mean, log_std = distribution_parameters(distribution)
        actions = mean + log_std.exp() * noise
        return actions, (-0.5 * noise.square() - log_std - LOG_SQRT_2PI).sum(dim=1)
    if isinstance(distribution, BernoulliDistribution):
        actions = (noise < th.sigmoid(distribution.distribution.logits)).float()
        return actions, distribution.log_prob(actions)
    logits = distribution_parameters(distribution)
    gumbels = noise.split([part.shape[1] for part in logits], dim=1)
    chosen = [th.argmax(part + gumbel, dim=1) for part, gumbel in zip(logits, gumbels, strict=True)]
    actions = th.stack(chosen, dim=1) if isinstance(distribution, MultiCategoricalDistribution) else chosen[0]
    return actions, distribution.log_prob(actions)


class TorchSampler:
    """
    Generic sampler for any SB3 ``ActorCriticPolicy`` (one torch forward for actor and critic).

    With gSDE the exploration noise is the policy's own state-dependent noise (``policy.reset_noise``)
    and the ``noise`` argument is ignored.

    :param policy: the policy
    """

    def __init__(self, policy: ActorCriticPolicy) -> None:
        self.policy = policy

    def refresh(self) -> None:
        """Nothing to copy: the torch policy is used directly."""

    def _observations(self, observations: np.ndarray | dict[str, np.ndarray]) -> th.Tensor | dict[str, th.Tensor]:
        return self.policy.obs_to_tensor(observations)[0]

    def predict_values(self, observations: np.ndarray | dict[str, np.ndarray]) -> np.ndarray:
        """
        :param observations: batch of observations
        :return: ``(batch,)`` state values
        """
        with th.no_grad():
            return self.policy.predict_values(self._observations(observations)).cpu().numpy()[:, 0]

    def sample(
        self, observations: np.ndarray | dict[str, np.ndarray], noise: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """
        :param observations: batch of observations
        :param noise: ``policy_noise`` for this batch
        :return: actions (SB3 buffer layout), values ``(batch,)`` and log-probabilities ``(batch,)``
        """
        policy = self.policy
        with th.no_grad():
            features = policy.extract_features(self._observations(observations))
            if policy.share_features_extractor:
                latent_pi, latent_vf = policy.mlp_extractor(features)
            else:
                latent_pi = policy.mlp_extractor.forward_actor(features[0])
                latent_vf = policy.mlp_extractor.forward_critic(features[1])
            values = policy.value_net(latent_vf)[:, 0]
            distribution = policy._get_action_dist_from_latent(latent_pi)
            if isinstance(distribution, StateDependentNoiseDistribution):
                actions = distribution.get_actions()
                log_probs = distribution.log_prob(actions)
            else:
                actions, log_probs = torch_sample(distribution, th.as_tensor(noise, device=policy.device))
        return actions.cpu().numpy(), values.cpu().numpy(), log_probs.cpu().numpy()


def make_sampler(policy: ActorCriticPolicy) -> NumpyMlpSampler | TorchSampler:
    """
    :param policy: the policy to sample from
    :return: the fastest sampler that reproduces the policy exactly
    """
    return NumpyMlpSampler.from_policy(policy) or TorchSampler(policy)
