"""Rollout buffers of TRPOVine: each hands ``train()`` its surrogate objective and its value-function targets."""

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer
from stable_baselines3.common.type_aliases import PyTorchObs, RolloutBufferSamples

from sb3_trpo_vine.surrogates import (
    AllActionsQ,
    ImportanceSampledAdvantage,
    SelfNormalizedImportanceQ,
    SurrogateObjective,
    TrunkAndVineSurrogate,
)

ACTION_PROPOSALS = ("auto", "policy", "uniform", "all")
TRUST_REGION_STATES = ("rollout", "trunk")
MAX_ENUMERATED_ACTIONS = 10
# Vine defaults from the sweeps in docs/guide/vine.md: many short branches (two actions each, H = 10 with the critic
# bootstrapping the rest) beat few long ones at the same simulator budget. The paper's estimators take a quarter of the
# trunk states; pooled advantages, the default for Box actions, 1/32 of them (64 of Hopper-v5's 2 x 1024)
DEFAULT_ROLLOUT_STATE_FRACTION = 0.25
DEFAULT_POOLED_ROLLOUT_STATE_FRACTION = 1 / 32

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
    surrogate = ImportanceSampledAdvantage.from_samples(
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


def repeat_observations(observations: np.ndarray | dict[str, np.ndarray], repeats: int) -> np.ndarray | dict[str, np.ndarray]:
    """
    :param observations: a batch of N observations
    :param repeats: K
    :return: the batch of N*K observations, each state repeated K times in a row
    """
    if isinstance(observations, dict):
        return {key: np.repeat(value, repeats, axis=0) for key, value in observations.items()}
    return np.repeat(observations, repeats, axis=0)


def _to_numpy(array: th.Tensor | np.ndarray) -> np.ndarray:
    return array.detach().cpu().numpy() if isinstance(array, th.Tensor) else array


class DirectAddRolloutBuffer(RolloutBuffer):
    """
    SB3's ``RolloutBuffer`` with an ``add`` that writes each step straight into the storage arrays.

    Same arguments and stored contents as ``RolloutBuffer.add``, without its intermediate copies (a torch clone of
    the values and log-probabilities, a numpy copy of every input): ``add`` runs once per environment step.
    Values and log-probabilities may be tensors or numpy arrays.
    """

    def add(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        episode_start: np.ndarray,
        value: th.Tensor | np.ndarray,
        log_prob: th.Tensor | np.ndarray,
    ) -> None:
        """
        :param obs: Observation
        :param action: Action
        :param reward: Reward
        :param episode_start: Start of episode signal
        :param value: estimated value of the current state following the current policy
        :param log_prob: log probability of the action following the current policy
        """
        if isinstance(self.observation_space, spaces.Discrete):
            obs = obs.reshape((self.n_envs, *self.obs_shape))
        self.observations[self.pos] = obs
        self.actions[self.pos] = action.reshape((self.n_envs, self.action_dim))
        self.rewards[self.pos] = reward
        self.episode_starts[self.pos] = episode_start
        self.values[self.pos] = _to_numpy(value).reshape(-1)
        self.log_probs[self.pos] = _to_numpy(log_prob).reshape(-1)
        self.pos += 1
        if self.pos == self.buffer_size:
            self.full = True


class SinglePathRolloutBuffer(SinglePathObjectiveMixin, DirectAddRolloutBuffer):
    """
    Single-path rollout buffer (Schulman et al. 2015, Section 5.1): on-policy trajectories with GAE advantages.

    Same storage and constructor arguments as SB3's ``RolloutBuffer``.
    """


class DictSinglePathRolloutBuffer(SinglePathObjectiveMixin, DictRolloutBuffer):
    """Single-path rollout buffer for dict observations (see ``SinglePathRolloutBuffer``)."""


def resolve_action_proposal(action_proposal: str, action_space: spaces.Space) -> str:
    """
    The proposal distribution q of the branched actions.

    ``"auto"`` branches every action of a Discrete space with at most ``MAX_ENUMERATED_ACTIONS`` actions (Eq. 15)
    and samples from the current policy otherwise (q = pi, Eq. 16); ``"uniform"`` samples uniformly (the paper's
    Atari setting, finite spaces only).

    :param action_proposal: one of ``ACTION_PROPOSALS``
    :param action_space: the action space
    :return: ``"policy"``, ``"uniform"`` or ``"all"``
    """
    if action_proposal not in ACTION_PROPOSALS:
        raise ValueError(f"action_proposal must be one of {ACTION_PROPOSALS}, got {action_proposal!r}")
    discrete = isinstance(action_space, spaces.Discrete)
    if action_proposal == "auto":
        return "all" if discrete and int(action_space.n) <= MAX_ENUMERATED_ACTIONS else "policy"
    if action_proposal == "all" and not discrete:
        raise ValueError("action_proposal='all' enumerates a Discrete action space; use 'policy' for this action space")
    if action_proposal == "uniform" and isinstance(action_space, spaces.Box):
        raise ValueError("action_proposal='uniform' needs a finite action space; use 'policy' (q = pi) for Box actions")
    return action_proposal


class VineObjectiveMixin:
    """
    Vine storage (Schulman et al. 2015, Section 5.2): the trunk rollouts (kept in the ``RolloutBuffer`` arrays, used
    to fit the value function) plus the rollout set: N states, K branched actions per state, their proposal
    log-probabilities and the branch estimates Q(s_n, a_nk). Filled by ``sb3_trpo_vine.vine.VineCollector``.

    :param n_rollout_states: N, states of the rollout set per iteration, drawn uniformly without replacement from
        the trunk's ``n_steps * n_envs`` states (default: 1/32 of them with ``pooled_advantages``, else a quarter;
        at least 1)
    :param n_actions_per_state: K, actions branched per state (ignored when every action is branched)
    :param rollout_length: H, simulator steps of each branch including the branched action; the return is
        bootstrapped with gamma^H V(s_H) when cut by H or by a time limit, and not after a termination
    :param action_proposal: q, see ``resolve_action_proposal``
    :param common_random_numbers: feed the K branches of one state the same policy-noise stream (and they start
        from the same simulator state, RNG included)
    :param branch_value_targets: also fit the critic at the rollout states, on the branch estimate of V(s_n)
        (sum_k w_k Q_nk / sum_k w_k with w_k = pi_old / q), besides the trunk's lambda-returns
    :param trust_region_states: where the mean KL and the Fisher-vector products are taken: ``"rollout"`` (the
        paper: the N rollout states) or ``"trunk"`` (every trunk state, the rollout set included: the policy may not
        move freely where it acts but no Q was estimated)
    :param antithetic: branch antithetic pairs for Gaussian policies: a = mu + sigma * eps and mu - sigma * eps from
        one state (K even), each pair followed by the same policy noise (with ``common_random_numbers``)
    :param trunk_advantages: optimise the trunk's single-path surrogate (GAE advantages) and the rollout set's vine
        surrogate together (``TrunkAndVineSurrogate``, equal weights); implies ``trust_region_states="trunk"``
    :param trunk_branch: let the trunk itself be the first of the K branches of each rollout state: its action is the
        trunk's and its Q is read from the trunk's next H rewards and V, so only K - 1 branches per state are simulated;
        with ``common_random_numbers`` the others replay the trunk's policy noise after their branched action. A state
        whose next H trunk steps are cut by the rollout's end or a time limit is branched K times as usual. Needs
        q = pi (``action_proposal`` resolving to 'policy'), explicit policy noise (no gSDE) and raw trunk data
        readable through the VecEnv wrappers. Default (None): on with ``pooled_advantages`` wherever the policy and
        the wrappers allow it, off otherwise; True raises where they do not
    :param pooled_advantages: one single-path surrogate (Eq. 14) over the trunk's samples, with their GAE advantages,
        and the rollout set's branches, with their paired advantages A_nk = Q_nk - mean_{j != k} Q_nj; with
        ``trunk_branch`` a trunk sample that is branch 0 of its state takes the paired advantage instead of its GAE
        one. Advantages are standardised together (``normalize_advantage``), and the mean KL is taken over the same
        samples. Needs q = pi (``action_proposal`` resolving to 'policy'); excludes ``trunk_advantages`` and
        ``trust_region_states="trunk"``. Default (None): on for Box action spaces sampled from pi unless one of those
        two asks for Eq. 15/16's surrogate, off otherwise (Discrete spaces keep Eq. 15/16)
    """

    buffer_size: int
    n_envs: int
    action_space: spaces.Space
    device: th.device

    def __init__(
        self,
        *args: Any,
        n_rollout_states: int | None = None,
        n_actions_per_state: int = 2,
        rollout_length: int = 10,
        action_proposal: str = "auto",
        common_random_numbers: bool = True,
        branch_value_targets: bool = False,
        trust_region_states: str = "rollout",
        antithetic: bool = False,
        trunk_advantages: bool = False,
        trunk_branch: bool | None = None,
        pooled_advantages: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.action_proposal = resolve_action_proposal(action_proposal, self.action_space)
        if self.action_proposal == "all":
            n_actions_per_state = int(self.action_space.n)  # type: ignore[attr-defined]
        if pooled_advantages is None:  # Box actions from pi, unless an option of Eq. 15/16's surrogate is asked for
            eq16_options = trunk_advantages or trust_region_states != "rollout"
            box_from_pi = isinstance(self.action_space, spaces.Box) and self.action_proposal == "policy"
            pooled_advantages = box_from_pi and not eq16_options
        if trunk_branch is None and not pooled_advantages:
            trunk_branch = False
        trunk_size = self.buffer_size * self.n_envs
        if n_rollout_states is None:
            fraction = DEFAULT_POOLED_ROLLOUT_STATE_FRACTION if pooled_advantages else DEFAULT_ROLLOUT_STATE_FRACTION
            n_rollout_states = max(1, int(fraction * trunk_size))
        if not 1 <= n_rollout_states <= trunk_size:
            raise ValueError(
                f"n_rollout_states must be between 1 and the trunk size n_steps * n_envs = {trunk_size}, "
                f"got {n_rollout_states}"
            )
        if n_actions_per_state < 2:
            raise ValueError(f"n_actions_per_state must be >= 2 (the estimators compare actions), got {n_actions_per_state}")
        if rollout_length < 1:
            raise ValueError(f"rollout_length must be >= 1, got {rollout_length}")
        self.n_rollout_states = n_rollout_states
        self.n_actions_per_state = n_actions_per_state
        self.rollout_length = rollout_length
        if trust_region_states not in TRUST_REGION_STATES:
            raise ValueError(f"trust_region_states must be one of {TRUST_REGION_STATES}, got {trust_region_states!r}")
        if antithetic and (not isinstance(self.action_space, spaces.Box) or self.action_proposal != "policy"):
            raise ValueError(
                "antithetic=True mirrors Gaussian noise: it needs a Box action space with action_proposal 'policy' or "
                "'auto'; use antithetic=False for this action space"
            )
        if antithetic and n_actions_per_state % 2:
            raise ValueError(
                f"antithetic=True branches actions in pairs: n_actions_per_state must be even, got {n_actions_per_state}"
            )
        if trunk_branch and self.action_proposal != "policy":
            raise ValueError(
                "trunk_branch=True reuses the trunk's own action, drawn from pi, as a branch: it needs action_proposal "
                f"'policy' (q = pi), got {self.action_proposal!r}; set action_proposal='policy' or trunk_branch=False"
            )
        if pooled_advantages and self.action_proposal != "policy":
            raise ValueError(
                "pooled_advantages=True adds the branched actions to the single-path batch as samples of pi: it needs "
                f"action_proposal 'policy' (q = pi), got {self.action_proposal!r}; set action_proposal='policy' or "
                "pooled_advantages=False"
            )
        if pooled_advantages and trunk_advantages:
            raise ValueError(
                "pooled_advantages and trunk_advantages are two ways to combine the trunk's advantages with the rollout "
                "set's Q-values; set one of them"
            )
        if pooled_advantages and trust_region_states != "rollout":
            raise ValueError(
                "pooled_advantages=True takes the mean KL over the pooled trunk and branch samples already; "
                "trust_region_states applies to Eq. 15/16: set pooled_advantages=False or drop trust_region_states"
            )
        self.common_random_numbers = common_random_numbers
        self.branch_value_targets = branch_value_targets
        self.antithetic = antithetic
        self.trunk_advantages = trunk_advantages
        self.trunk_branch = trunk_branch  # None: wherever the policy and wrappers allow (VineCollector decides)
        self.pooled_advantages = pooled_advantages
        self.trust_region_states = "trunk" if trunk_advantages else trust_region_states

    def reset(self) -> None:
        """Clear the trunk and the rollout set."""
        super().reset()  # type: ignore[misc]
        self.rollout_observations: np.ndarray | dict[str, np.ndarray] | None = None
        self.branch_actions: np.ndarray | None = None
        self.branch_log_proposal: np.ndarray | None = None
        self.q_values: np.ndarray | None = None
        self.state_values: np.ndarray | None = None
        self.trunk_positions: np.ndarray | None = None
        self.trunk_first: np.ndarray | None = None

    def set_rollout_set(
        self,
        observations: np.ndarray | dict[str, np.ndarray],
        actions: np.ndarray,
        log_proposal: np.ndarray,
        q_values: np.ndarray,
        state_values: np.ndarray | None = None,
        trunk_positions: np.ndarray | None = None,
        trunk_first: np.ndarray | None = None,
    ) -> None:
        """
        Store the rollout set.

        :param observations: the N states as the policy sees them
        :param actions: ``(N, K, ...)`` branched actions (SB3 buffer layout per action)
        :param log_proposal: ``(N, K)`` log q(a_nk|s_n)
        :param q_values: ``(N, K)`` branch estimates
        :param state_values: ``(N,)`` branch estimates of V(s_n), extra critic targets (``branch_value_targets``)
        :param trunk_positions: ``(N, 2)`` (trunk step, env) of each s_n, needed by ``trust_region_states="trunk"``
            and ``pooled_advantages``
        :param trunk_first: ``(N,)`` whether branch 0 of s_n is the trunk's own action (``trunk_branch``; None: none is)
        """
        self.state_values = state_values
        self.trunk_positions = trunk_positions
        self.trunk_first = trunk_first
        self.rollout_observations = observations
        self.branch_actions = actions
        self.branch_log_proposal = log_proposal
        self.q_values = q_values

    def _to_tensors(self, observations: np.ndarray | dict[str, np.ndarray], keep: slice) -> PyTorchObs:
        if isinstance(observations, dict):
            return {key: th.as_tensor(value[keep], device=self.device) for key, value in observations.items()}
        return th.as_tensor(observations[keep], device=self.device)

    def _ordered_trunk(self) -> RolloutBufferSamples:
        """The trunk samples, row ``env * n_steps + step`` (the order ``get()`` flattened the arrays into)."""
        return self._get_samples(np.arange(self.buffer_size * self.n_envs))  # type: ignore[attr-defined]

    def _trunk_rows(self, positions: np.ndarray) -> np.ndarray:
        """:return: the row of each (trunk step, env) position among ``_ordered_trunk()``'s samples"""
        step, env = positions.T
        return env * self.buffer_size + step

    def _vine_surrogate(self, sub_sampling_factor: int) -> SurrogateObjective:
        """
        Eq. 15/16 on the rollout set (optionally over the trunk states, or averaged with the trunk's surrogate).

        :param sub_sampling_factor: keep every k-th rollout state
        :return: the surrogate
        """
        keep = slice(None, None, sub_sampling_factor)
        q_values = th.as_tensor(self.q_values[keep], device=self.device)
        rows = None
        if self.trust_region_states == "rollout":
            observations = self._to_tensors(self.rollout_observations, keep)
        else:
            ordered = self._ordered_trunk()
            observations = ordered.observations
            rows = th.as_tensor(self._trunk_rows(self.trunk_positions[keep]), device=self.device)
            if self.trunk_advantages:  # Q centred per state and scaled to unit spread, as the trunk's advantages
                q_values = q_values - q_values.mean(dim=1, keepdim=True)
                q_values = q_values / (q_values.std() + 1e-8)
        vine: SelfNormalizedImportanceQ | AllActionsQ
        if self.action_proposal == "all":
            vine = AllActionsQ(observations, q_values, rows)
        else:
            actions = th.as_tensor(self.branch_actions[keep], device=self.device)
            log_proposal = th.as_tensor(self.branch_log_proposal[keep], device=self.device)
            vine = SelfNormalizedImportanceQ(observations, actions, log_proposal, q_values, rows)
        if self.trunk_advantages:
            discrete = isinstance(self.action_space, spaces.Discrete)
            return TrunkAndVineSurrogate(ImportanceSampledAdvantage.from_samples(ordered, True, 1, discrete), vine)
        return vine

    def _pooled_surrogate(self, normalize_advantage: bool, sub_sampling_factor: int) -> ImportanceSampledAdvantage:
        """
        Eq. 14 over the trunk's samples and the rollout set's branches (``pooled_advantages``).

        :param normalize_advantage: standardise the pooled advantages
        :param sub_sampling_factor: keep every k-th pooled sample
        :return: the surrogate
        """
        ordered = self._ordered_trunk()
        n_states, n_per_state = self.q_values.shape
        q_values = th.as_tensor(self.q_values, device=self.device)
        # A_nk = Q_nk - 1/(K-1) sum_{j != k} Q_nj = K/(K-1) (Q_nk - mean_j Q_nj): leave-one-out baseline
        paired = n_per_state / (n_per_state - 1) * (q_values - q_values.mean(dim=1, keepdim=True))
        kept = np.ones(self.buffer_size * self.n_envs, dtype=bool)
        if self.trunk_first is not None:  # those trunk samples are branch 0 of their state: counted once, paired
            kept[self._trunk_rows(self.trunk_positions[self.trunk_first])] = False
        kept_rows = th.as_tensor(kept, device=self.device)

        def pool(trunk_part: th.Tensor, branch_part: th.Tensor) -> th.Tensor:
            return th.cat([trunk_part[kept_rows], branch_part.to(trunk_part.dtype)])

        branch_observations = self._to_tensors(repeat_observations(self.rollout_observations, n_per_state), slice(None))
        if isinstance(ordered.observations, dict):
            observations = {key: pool(value, branch_observations[key]) for key, value in ordered.observations.items()}
        else:
            observations = pool(ordered.observations, branch_observations)
        branch_actions = th.as_tensor(self.branch_actions, device=self.device).reshape(n_states * n_per_state, -1)
        return ImportanceSampledAdvantage(
            observations,
            pool(ordered.actions, branch_actions),
            pool(ordered.old_log_prob, th.as_tensor(self.branch_log_proposal, device=self.device).reshape(-1)),
            pool(ordered.advantages, paired.reshape(-1)),
            normalize_advantage,
            sub_sampling_factor,
            isinstance(self.action_space, spaces.Discrete),
        )

    def policy_objective(self, normalize_advantage: bool, sub_sampling_factor: int) -> PolicyObjective:
        """
        The vine surrogate on the rollout set (or, with ``pooled_advantages``, the single-path surrogate over the trunk
        and the branches), and the critic targets of the trunk (GAE lambda-returns).

        Advantage normalisation does not apply to Eq. 15 and 16, which use Q estimates directly (the trust-region step
        is invariant to their scale); with ``trunk_advantages`` the trunk's advantages are always standardised.

        :param normalize_advantage: standardise the advantages of ``pooled_advantages`` (unused by the vine
            estimators)
        :param sub_sampling_factor: keep every k-th rollout state for the policy step (the trunk states of
            ``trust_region_states="trunk"`` are all kept; with ``pooled_advantages``, every k-th pooled sample)
        :return: the surrogate, and the critic's observations and return targets
        """
        assert self.q_values is not None, "The vine collector did not fill the rollout set"
        trunk = next(self.get(batch_size=None))  # type: ignore[attr-defined]  # shuffled samples, for the critic
        surrogate: SurrogateObjective
        if self.pooled_advantages:
            surrogate = self._pooled_surrogate(normalize_advantage, sub_sampling_factor)
        else:
            surrogate = self._vine_surrogate(sub_sampling_factor)
        if self.state_values is None:
            return surrogate, trunk.observations, trunk.returns

        def with_rollout_states(trunk_part: th.Tensor, rollout_part: np.ndarray) -> th.Tensor:
            return th.cat([trunk_part, th.as_tensor(rollout_part, dtype=trunk_part.dtype, device=self.device)])

        if isinstance(self.rollout_observations, dict):
            critic_observations = {
                key: with_rollout_states(trunk.observations[key], value) for key, value in self.rollout_observations.items()
            }
        else:
            critic_observations = with_rollout_states(trunk.observations, self.rollout_observations)
        critic_returns = with_rollout_states(trunk.returns, self.state_values)
        return surrogate, critic_observations, critic_returns


class VineRolloutBuffer(VineObjectiveMixin, DirectAddRolloutBuffer):
    """
    Vine rollout buffer: trunk trajectories plus the rollout set of branched Q estimates (see ``VineObjectiveMixin``).

    Takes SB3's ``RolloutBuffer`` arguments plus the vine settings, e.g.
    ``TRPOVine(..., rollout_buffer_class="vine", rollout_buffer_kwargs=dict(n_rollout_states=64, rollout_length=100))``.
    """


class DictVineRolloutBuffer(VineObjectiveMixin, DictRolloutBuffer):
    """Vine rollout buffer for dict observations (see ``VineRolloutBuffer``)."""
