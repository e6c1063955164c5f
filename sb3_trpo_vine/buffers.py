"""Rollout buffers of TRPOVine: each hands ``train()`` its surrogate objective and its value-function targets."""

import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer
from stable_baselines3.common.type_aliases import PyTorchObs

from sb3_trpo_vine.surrogates import ImportanceSampledAdvantage, SurrogateObjective

PolicyObjective = tuple[SurrogateObjective, PyTorchObs, th.Tensor]


def single_path_objective(buffer: RolloutBuffer, normalize_advantage: bool, sub_sampling_factor: int) -> PolicyObjective:
    """
    The single-path surrogate and critic targets of any filled SB3 ``RolloutBuffer`` (GAE advantages, lambda-returns).

    Used by ``SinglePathRolloutBuffer`` and for user-supplied ``RolloutBuffer`` subclasses.

    :param buffer: a filled rollout buffer
    :param normalize_advantage: standardise the advantages
    :param sub_sampling_factor: keep every k-th sample for the policy step
    :return: the surrogate, and the critic's observations and return targets
    """
    samples = next(buffer.get(batch_size=None))
    surrogate = ImportanceSampledAdvantage(
        samples, normalize_advantage, sub_sampling_factor, isinstance(buffer.action_space, spaces.Discrete)
    )
    return surrogate, samples.observations, samples.returns


class SinglePathObjectiveMixin:
    """Gives a ``RolloutBuffer`` the single-path ``policy_objective`` that ``TRPOVine.train()`` consumes."""

    def policy_objective(self, normalize_advantage: bool, sub_sampling_factor: int) -> PolicyObjective:
        """
        :param normalize_advantage: standardise the advantages
        :param sub_sampling_factor: keep every k-th sample for the policy step
        :return: the surrogate, and the critic's observations and return targets
        """
        return single_path_objective(self, normalize_advantage, sub_sampling_factor)  # type: ignore[arg-type]


class SinglePathRolloutBuffer(SinglePathObjectiveMixin, RolloutBuffer):
    """
    Single-path rollout buffer (Schulman et al. 2015, Section 5.1): on-policy trajectories with GAE advantages.

    Same storage and constructor arguments as SB3's ``RolloutBuffer``.
    """


class DictSinglePathRolloutBuffer(SinglePathObjectiveMixin, DictRolloutBuffer):
    """Single-path rollout buffer for dict observations (see ``SinglePathRolloutBuffer``)."""
