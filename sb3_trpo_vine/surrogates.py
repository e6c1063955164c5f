"""
Surrogate objectives L(theta) that the trust-region step maximises, one per sampling scheme.

A surrogate is evaluated on the action distribution of the current policy over its ``observations``
(the states whose mean KL is constrained), so the trust-region code never needs to know which scheme
produced the data.
"""

from abc import ABC, abstractmethod

import torch as th
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.type_aliases import PyTorchObs, RolloutBufferSamples


def subsample_observations(observations: PyTorchObs, factor: int) -> PyTorchObs:
    """
    Every ``factor``-th observation (used for the Fisher-vector products, as in the paper's Appendix C.1).

    :param observations: batch of observations (tensor or dict of tensors)
    :param factor: keep one sample out of ``factor``
    :return: the thinned batch
    """
    if isinstance(observations, dict):
        return {key: value[::factor] for key, value in observations.items()}
    return observations[::factor]


class SurrogateObjective(ABC):
    """
    L(theta) on a fixed batch of data.

    :param observations: the states at which the policy distribution is evaluated (and the KL constrained)
    """

    def __init__(self, observations: PyTorchObs) -> None:
        self.observations = observations

    @abstractmethod
    def __call__(self, distribution: Distribution) -> th.Tensor:
        """
        :param distribution: the current policy's distribution at ``self.observations``
        :return: scalar surrogate value
        """


class ImportanceSampledAdvantage(SurrogateObjective):
    """
    Single-path surrogate: mean_t [ pi_theta(a_t|s_t) / pi_old(a_t|s_t) * A_t ]   (Eq. 14, Section 5.1).

    :param samples: a full rollout batch (``RolloutBuffer.get(batch_size=None)``)
    :param normalize_advantage: standardise the advantages first (sb3-contrib's default)
    :param sub_sampling_factor: keep every k-th sample for everything (sb3-contrib's ``sub_sampling_factor``)
    :param discrete_actions: actions are indices of a ``Discrete`` space (stored as floats by SB3)
    """

    def __init__(
        self, samples: RolloutBufferSamples, normalize_advantage: bool, sub_sampling_factor: int, discrete_actions: bool
    ) -> None:
        super().__init__(subsample_observations(samples.observations, sub_sampling_factor))
        actions = samples.actions[::sub_sampling_factor]
        self.actions = actions.long().flatten() if discrete_actions else actions
        self.old_log_prob = samples.old_log_prob[::sub_sampling_factor]
        advantages = samples.advantages[::sub_sampling_factor]
        if normalize_advantage:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        self.advantages = advantages

    def __call__(self, distribution: Distribution) -> th.Tensor:
        ratio = th.exp(distribution.log_prob(self.actions) - self.old_log_prob)
        return (self.advantages * ratio).mean()
