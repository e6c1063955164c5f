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

    :param observations: the sampled states s_t
    :param actions: the actions a_t taken there, ``(T, action_dim)`` in SB3's buffer layout
    :param old_log_prob: log pi_old(a_t|s_t), ``(T,)``
    :param advantages: the advantage estimates A_t, ``(T,)``
    :param normalize_advantage: standardise the advantages first (sb3-contrib's default)
    :param sub_sampling_factor: keep every k-th sample for everything (sb3-contrib's ``sub_sampling_factor``)
    :param discrete_actions: actions are indices of a ``Discrete`` space (stored as floats by SB3)
    """

    def __init__(
        self,
        observations: PyTorchObs,
        actions: th.Tensor,
        old_log_prob: th.Tensor,
        advantages: th.Tensor,
        normalize_advantage: bool,
        sub_sampling_factor: int,
        discrete_actions: bool,
    ) -> None:
        super().__init__(subsample_observations(observations, sub_sampling_factor))
        actions = actions[::sub_sampling_factor]
        self.actions = actions.long().flatten() if discrete_actions else actions
        self.old_log_prob = old_log_prob[::sub_sampling_factor]
        advantages = advantages[::sub_sampling_factor]
        if normalize_advantage:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        self.advantages = advantages

    @classmethod
    def from_samples(
        cls, samples: RolloutBufferSamples, normalize_advantage: bool, sub_sampling_factor: int, discrete_actions: bool
    ) -> "ImportanceSampledAdvantage":
        """
        :param samples: a full rollout batch (``RolloutBuffer.get(batch_size=None)``), with GAE advantages
        :param normalize_advantage: standardise the advantages first
        :param sub_sampling_factor: keep every k-th sample
        :param discrete_actions: actions are indices of a ``Discrete`` space
        :return: the surrogate on that batch
        """
        return cls(
            samples.observations,
            samples.actions,
            samples.old_log_prob,
            samples.advantages,
            normalize_advantage,
            sub_sampling_factor,
            discrete_actions,
        )

    def __call__(self, distribution: Distribution) -> th.Tensor:
        ratio = th.exp(distribution.log_prob(self.actions) - self.old_log_prob)
        return (self.advantages * ratio).mean()


class SelfNormalizedImportanceQ(SurrogateObjective):
    """
    Vine surrogate for large or continuous action spaces (Eq. 16, Section 5.2):

    L_n(theta) = sum_k w_k Q(s_n, a_nk) / sum_k w_k,   w_k = pi_theta(a_nk|s_n) / q(a_nk|s_n),   L = mean_n L_n.

    With q = pi_old the weights are 1 at theta_old and the estimator needs no baseline.

    :param observations: the states at which the policy is evaluated: the rollout set s_n (N of them), or a superset
        (e.g. every trunk state, so that the KL is constrained there too) with ``rows`` locating the s_n in it
    :param actions: the branched actions a_nk, ``(N, K, *action_shape)`` (Discrete: ``(N, K)`` integers)
    :param log_proposal: log q(a_nk|s_n), ``(N, K)``
    :param q_values: branch estimates Q(s_n, a_nk), ``(N, K)``
    :param rows: index of each s_n among ``observations`` (None: ``observations`` are exactly the s_n)
    """

    def __init__(
        self,
        observations: PyTorchObs,
        actions: th.Tensor,
        log_proposal: th.Tensor,
        q_values: th.Tensor,
        rows: th.Tensor | None = None,
    ) -> None:
        super().__init__(observations)
        self.actions = actions
        self.log_proposal = log_proposal
        self.q_values = q_values
        self.rows = rows

    def _log_prob(self, distribution: Distribution, actions: th.Tensor) -> th.Tensor:
        if self.rows is None:
            return distribution.log_prob(actions)
        batch = next(iter(self.observations.values())) if isinstance(self.observations, dict) else self.observations
        padded = actions.new_zeros((batch.shape[0], *actions.shape[1:]))  # any valid action off the rollout set
        padded[self.rows] = actions
        return distribution.log_prob(padded)[self.rows]

    def __call__(self, distribution: Distribution) -> th.Tensor:
        n_actions_per_state = self.q_values.shape[1]
        log_prob = th.stack([self._log_prob(distribution, self.actions[:, k]) for k in range(n_actions_per_state)], dim=1)
        weights = th.exp(log_prob - self.log_proposal)  # (N, K)
        return ((weights * self.q_values).sum(dim=1) / weights.sum(dim=1)).mean()


class AllActionsQ(SurrogateObjective):
    """
    Vine surrogate for small discrete action spaces, every action branched (Eq. 15, Section 5.2):

    L_n(theta) = sum_a pi_theta(a|s_n) Q(s_n, a),   L = mean_n L_n.

    :param observations: the rollout-set states s_n (N of them), or a superset with ``rows`` locating them
    :param q_values: branch estimates Q(s_n, a) for every action a, ``(N, n_actions)``
    :param rows: index of each s_n among ``observations`` (None: ``observations`` are exactly the s_n)
    """

    def __init__(self, observations: PyTorchObs, q_values: th.Tensor, rows: th.Tensor | None = None) -> None:
        super().__init__(observations)
        self.q_values = q_values
        self.rows = rows

    def __call__(self, distribution: Distribution) -> th.Tensor:
        probs = distribution.distribution.probs
        return ((probs if self.rows is None else probs[self.rows]) * self.q_values).sum(dim=1).mean()


class TrunkAndVineSurrogate(SurrogateObjective):
    """
    The trunk's single-path estimate and the rollout set's vine estimate in one surrogate (beyond the paper):

    L(theta) = 1/2 L_single_path(theta) + 1/2 L_vine(theta),

    both over the trunk states; the single-path advantages are standardised and the vine's Q-values are centred per
    state (which leaves Eq. 15/16's gradient unchanged) and divided by their standard deviation, so that the two
    estimates weigh alike.

    :param trunk: the single-path surrogate over every trunk state
    :param vine: the vine surrogate, evaluated on the same states (``rows`` set)
    """

    def __init__(self, trunk: ImportanceSampledAdvantage, vine: SelfNormalizedImportanceQ | AllActionsQ) -> None:
        super().__init__(trunk.observations)
        self.trunk = trunk
        self.vine = vine

    def __call__(self, distribution: Distribution) -> th.Tensor:
        return 0.5 * self.trunk(distribution) + 0.5 * self.vine(distribution)
