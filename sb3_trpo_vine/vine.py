"""
The vine sampling scheme of Schulman et al. (2015), Section 5.2: rollout set, branched actions, batched branch rollouts.

Per iteration, around the ordinary trunk rollouts collected by ``TRPOVine.collect_rollouts``:

1. before the trunk, pick the rollout set: N (step, env) positions drawn uniformly without replacement from the
   trunk's ``n_steps * n_envs`` states (``select_rollout_states``);
2. during the trunk, snapshot the simulator at those positions (``sb3_trpo_vine.snapshot``);
3. after the trunk, branch K actions a_nk ~ q(.|s_n) per state and roll every branch out for H steps under pi,
   all N*K branches in lockstep with one policy forward per step, in private clones of the training env that
   are restored from the snapshots (the training env, its Monitor and VecNormalize statistics are untouched);
4. Q(s_n, a_nk) = sum_h gamma^h r_h + gamma^H' V(s_H') when cut by H or a time limit (0 after a termination).

With common random numbers the K branches of one state share the policy-noise stream of every step after the
branched action, and start from the same simulator state (its RNG included), so Q differences come from the
actions alone.

With ``trunk_branch`` the trunk is the first branch of each state: its Q comes from the trunk's own next H steps,
with rewards and V(s_H) put through the same frozen VecNormalize statistics as the simulated branches, which replay
the trunk's policy noise after their branched action.
"""

import time
from collections.abc import Callable
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.vec_env import (
    VecCheckNan,
    VecEnv,
    VecEnvWrapper,
    VecMonitor,
    VecNormalize,
    VecTransposeImage,
)

from sb3_trpo_vine.buffers import VineObjectiveMixin, repeat_observations
from sb3_trpo_vine.finite import check_finite
from sb3_trpo_vine.sampling import NumpyMlpSampler, TorchSampler, policy_noise, torch_sample
from sb3_trpo_vine.snapshot import EnvSnapshot, clone_env, restore_snapshot, vec_clone_envs, vec_take_snapshots

Observation = np.ndarray | dict[str, np.ndarray]
ObservationTransform = Callable[[Observation], Observation]
# VecEnv wrappers that neither change observations nor keep per-step state the branches would need
PASS_THROUGH_VEC_WRAPPERS = (VecMonitor, VecCheckNan)


def select_rollout_states(rng: np.random.Generator, n_steps: int, n_envs: int, n_states: int) -> np.ndarray:
    """
    The rollout set: ``n_states`` trunk positions drawn uniformly without replacement.

    :param rng: the seeded generator
    :param n_steps: trunk steps per environment
    :param n_envs: number of trunk environments
    :param n_states: N
    :return: boolean mask ``(n_steps, n_envs)``
    """
    mask = np.zeros(n_steps * n_envs, dtype=bool)
    mask[rng.choice(n_steps * n_envs, size=n_states, replace=False)] = True
    return mask.reshape(n_steps, n_envs)


def vec_transforms(venv: VecEnv) -> tuple[ObservationTransform, Callable[[np.ndarray], np.ndarray]]:
    """
    What the VecEnv wrappers do to raw env observations and rewards, applied to branch data.

    ``VecNormalize`` normalises with its current statistics, frozen (branch data never updates them).

    :param venv: the training VecEnv
    :return: observation and reward transforms (batched)
    """
    observation_steps: list[ObservationTransform] = []
    reward_steps: list[Callable[[np.ndarray], np.ndarray]] = []
    while isinstance(venv, VecEnvWrapper):
        if isinstance(venv, VecNormalize):
            observation_steps.append(venv.normalize_obs)
            reward_steps.append(venv.normalize_reward)
        elif isinstance(venv, VecTransposeImage):
            observation_steps.append(venv.transpose_observations)
        elif not isinstance(venv, PASS_THROUGH_VEC_WRAPPERS):
            raise ValueError(
                f"Vine sampling cannot branch through the VecEnv wrapper {type(venv).__name__}: its state lives outside "
                "the environments. Use an env-level wrapper instead (e.g. gymnasium.wrappers.FrameStackObservation "
                "instead of VecFrameStack), or rollout_buffer_class='single_path'."
            )
        venv = venv.venv
    observation_steps.reverse()  # innermost wrapper first
    reward_steps.reverse()

    def transform_observations(observations: Observation) -> Observation:
        for step in observation_steps:
            observations = step(observations)
        return observations

    def transform_rewards(rewards: np.ndarray) -> np.ndarray:
        for step in reward_steps:
            rewards = step(rewards)
        return rewards

    return transform_observations, transform_rewards


def trunk_transition_source(venv: VecEnv) -> tuple[VecNormalize | None, ObservationTransform] | None:
    """
    Where the trunk branch reads the trunk's rewards and next observations before any normalisation.

    :param venv: the training VecEnv
    :return: the outermost ``VecNormalize`` (its ``get_original_reward``/``get_original_obs``), or None when there is
        none (the step outputs are then exactly what the branches see), and the observation transforms of the wrappers
        above it (image transposition); None if another VecNormalize or a VecTransposeImage lies inside that
        VecNormalize (its original data would not be raw)
    """
    above: list[ObservationTransform] = []
    while isinstance(venv, VecEnvWrapper):
        if isinstance(venv, VecNormalize):
            if _has_wrapper(venv.venv, (VecNormalize, VecTransposeImage)):
                return None
            break
        if isinstance(venv, VecTransposeImage):
            above.append(venv.transpose_observations)
        venv = venv.venv

    def transform_above(observations: Observation) -> Observation:
        for step in reversed(above):  # innermost first
            observations = step(observations)
        return observations

    return (venv if isinstance(venv, VecNormalize) else None), transform_above


def _has_wrapper(venv: VecEnv, wrapper_types: tuple[type, ...]) -> bool:
    while isinstance(venv, VecEnvWrapper):
        if isinstance(venv, wrapper_types):
            return True
        venv = venv.venv
    return False


def stack_observations(observations: list[Any]) -> Observation:
    """
    :param observations: single-env observations (arrays or dicts of arrays)
    :return: the batch
    """
    if isinstance(observations[0], dict):
        return {key: np.stack([observation[key] for observation in observations]) for key in observations[0]}
    return np.stack(observations)


def select_observation(observations: Observation, index: int) -> Any:
    """
    :param observations: a batch (array or dict of arrays)
    :param index: a row
    :return: a copy of that row
    """
    if isinstance(observations, dict):
        return {key: value[index].copy() for key, value in observations.items()}
    return observations[index].copy()


def copy_observations(observations: Observation) -> Observation:
    """
    :param observations: a batch (array or dict of arrays)
    :return: a copy
    """
    if isinstance(observations, dict):
        return {key: value.copy() for key, value in observations.items()}
    return observations.copy()


def uniform_actions(rng: np.random.Generator, action_space: spaces.Space, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """
    Uniform proposal q over a finite action space (the paper's Atari setting).

    :param rng: the generator
    :param action_space: Discrete, MultiDiscrete or MultiBinary
    :param n_samples: number of actions
    :return: actions and log q of each
    """
    if isinstance(action_space, spaces.Discrete):
        actions = action_space.start + rng.integers(0, action_space.n, size=n_samples)
        return actions, np.full(n_samples, -np.log(action_space.n))
    if isinstance(action_space, spaces.MultiDiscrete):
        nvec = action_space.nvec.reshape(-1)
        return rng.integers(0, nvec, size=(n_samples, len(nvec))), np.full(n_samples, -np.log(nvec).sum())
    n_bits = int(np.prod(action_space.shape))
    return rng.integers(0, 2, size=(n_samples, n_bits)), np.full(n_samples, -n_bits * np.log(2.0))


class BranchPool(Protocol):
    """
    Where the branch rollouts are simulated: ``reserve`` makes sure at least ``n_branches`` branch envs exist,
    ``restore`` puts branch i in the state of ``snapshots[i]``, ``step`` advances the given branches by one step each
    (no auto-reset). A VecEnv may provide its own pool through a
    ``make_branch_pool()`` method (e.g. to simulate branches where its environments live).
    """

    def reserve(self, n_branches: int) -> None: ...

    def restore(self, snapshots: list[EnvSnapshot]) -> None: ...

    def step(self, indices: np.ndarray, actions: np.ndarray) -> tuple[list[Any], np.ndarray, np.ndarray, np.ndarray]: ...


class LocalBranchPool:
    """
    Branch envs in the main process: independent clones of the training env's wrapper chain (never writing Monitor
    CSVs, never touching the training env or its statistics), created once and grown on demand.

    :param venv: the training VecEnv
    """

    def __init__(self, venv: VecEnv) -> None:
        self.template = vec_clone_envs(venv, [0])[0]
        self.envs: list[gym.Env] = []

    def reserve(self, n_branches: int) -> None:
        """
        :param n_branches: number of branch envs needed
        """
        while len(self.envs) < n_branches:
            self.envs.append(clone_env(self.template))

    def restore(self, snapshots: list[EnvSnapshot]) -> None:
        """
        :param snapshots: one snapshot per branch (``reserve`` must have been called for as many)
        """
        for env, snapshot in zip(self.envs, snapshots, strict=False):
            restore_snapshot(env, snapshot)

    def step(self, indices: np.ndarray, actions: np.ndarray) -> tuple[list[Any], np.ndarray, np.ndarray, np.ndarray]:
        """
        :param indices: the branches to advance
        :param actions: one environment action per index
        :return: observations, rewards, terminated and truncated flags of those branches
        """
        transitions = [self.envs[index].step(action) for index, action in zip(indices, actions, strict=True)]
        observations, rewards, terminated, truncated, _ = zip(*transitions, strict=True)
        return list(observations), np.array(rewards), np.array(terminated), np.array(truncated)


def make_branch_pool(venv: VecEnv) -> BranchPool:
    """
    :param venv: the training VecEnv (possibly wrapped)
    :return: the VecEnv's own branch pool if it offers one, else a ``LocalBranchPool``
    """
    base = venv.unwrapped
    return base.make_branch_pool() if hasattr(base, "make_branch_pool") else LocalBranchPool(venv)


class VineCollector:
    """
    Snapshots the trunk at the rollout-set states and estimates Q(s_n, a_nk) with batched branch rollouts.

    :param env: the training VecEnv
    :param policy: the policy (fixed during the iteration)
    :param sampler: its sampler for branch steps
    :param env_actions: maps policy actions to environment actions (clipping / unscaling)
    :param gamma: discount factor
    """

    def __init__(
        self,
        env: VecEnv,
        policy: ActorCriticPolicy,
        sampler: NumpyMlpSampler | TorchSampler,
        env_actions: Callable[[np.ndarray], np.ndarray],
        gamma: float,
    ) -> None:
        if policy.squash_output:
            raise ValueError(
                "Vine sampling does not support squashed (tanh) Gaussian policies; use rollout_buffer_class='single_path'"
            )
        self.env = env
        self.policy = policy
        self.sampler = sampler
        self.env_actions = env_actions
        self.gamma = gamma
        self.transform_observations, self.transform_rewards = vec_transforms(env)
        self.branch_pool: BranchPool | None = None

    def begin(self, buffer: VineObjectiveMixin, n_steps: int, rng: np.random.Generator) -> None:
        """
        Choose the rollout set for the coming trunk.

        :param buffer: the vine buffer of this iteration
        :param n_steps: trunk steps per environment
        :param rng: the seeded policy-noise generator (shared with the trunk), used for every vine draw
        """
        self.rng = rng
        self.rollout_mask = select_rollout_states(self.rng, n_steps, self.env.num_envs, buffer.n_rollout_states)
        self.snapshots: list[EnvSnapshot] = []
        self.observations: list[Any] = []
        self.snapshot_seconds = 0.0
        self.trunk_branch = self._resolve_trunk_branch(buffer)
        if self.trunk_branch:
            self.trunk_rewards = np.zeros((n_steps, self.env.num_envs), dtype=np.float32)
            self.trunk_dones = np.zeros((n_steps, self.env.num_envs), dtype=bool)
            self.trunk_truncated = np.zeros((n_steps, self.env.num_envs), dtype=bool)
            self.trunk_next_observations: list[Observation] = []

    def _resolve_trunk_branch(self, buffer: VineObjectiveMixin) -> bool:
        """
        Decide whether the trunk serves as branch 0: always when ``trunk_branch`` is True (an error if it cannot),
        wherever it can when it is None (the default with ``pooled_advantages``), never when it is False.

        :param buffer: the vine buffer
        :return: whether it does; if so, ``self.trunk_source`` and ``self.transform_above_source`` are set
        """
        if buffer.trunk_branch is False:
            return False
        if self.policy.use_sde:
            problem = (
                "trunk_branch=True replays the trunk's explicit policy noise in the branches, but gSDE draws its own; "
                "set use_sde=False or trunk_branch=False"
            )
        elif (source := trunk_transition_source(self.env)) is None:
            problem = (
                "trunk_branch=True reads raw trunk data from the outermost VecNormalize, but another VecNormalize or a "
                "VecTransposeImage lies inside it; wrap VecNormalize directly around the base VecEnv or set "
                "trunk_branch=False"
            )
        else:
            self.trunk_source, self.transform_above_source = source
            return True
        if buffer.trunk_branch is None:  # the default: every branch is simulated instead
            return False
        raise ValueError(problem)

    def record(self, step: int, observations: Observation) -> None:
        """
        Snapshot the trunk environments that are in the rollout set at this step (before acting).

        :param step: trunk step index
        :param observations: the current policy observations of every trunk env
        """
        indices = np.flatnonzero(self.rollout_mask[step])
        if len(indices) == 0:
            return
        start = time.perf_counter()
        self.snapshots += vec_take_snapshots(self.env, indices.tolist())
        self.snapshot_seconds += time.perf_counter() - start
        for index in indices:
            self.observations.append(select_observation(observations, index))

    def record_transition(
        self, step: int, rewards: np.ndarray, next_observations: Observation, dones: np.ndarray, infos: list[dict]
    ) -> None:
        """
        Keep what the trunk branch needs from one trunk step (only with ``trunk_branch``).

        :param step: trunk step index
        :param rewards: the step's rewards as the VecEnv returned them (before the time-limit bootstrap)
        :param next_observations: the observations after the step (after an auto-reset where an episode ended)
        :param dones: episode ends
        :param infos: the step's infos (``TimeLimit.truncated`` marks a time-limit cut)
        """
        if not self.trunk_branch:
            return
        if self.trunk_source is None:
            self.trunk_rewards[step] = rewards
            self.trunk_next_observations.append(copy_observations(next_observations))
        else:  # the raw data: normalised with the statistics frozen at branch time, like the simulated branches
            self.trunk_rewards[step] = self.trunk_source.get_original_reward()
            self.trunk_next_observations.append(self.trunk_source.get_original_obs())
        self.trunk_dones[step] = dones
        self.trunk_truncated[step] = [
            done and info.get("TimeLimit.truncated", False) for done, info in zip(dones, infos, strict=True)
        ]

    def _trunk_branch_q(self, positions: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
        """
        Q(s_n, a_n) of the trunk's own action at each rollout state, from its next H trunk steps (Eq. 4's return).

        :param positions: ``(N, 2)`` (trunk step, env) of each rollout state, in snapshot order
        :param horizon: H
        :return: which rollout states have a usable trunk continuation (not cut by the rollout's end or a time limit
            within H steps), and ``(N,)`` Q values (0 where unusable)
        """
        n_steps = len(self.trunk_rewards)
        rewards = self.transform_rewards(self.trunk_rewards)  # the identity without VecNormalize
        usable = np.zeros(len(positions), dtype=bool)
        q_values = np.zeros(len(positions))
        bootstrap_states: list[int] = []
        bootstrap_observations: list[Any] = []
        discounts = self.gamma ** np.arange(horizon)
        for state, (step, env) in enumerate(positions):
            if step + horizon > n_steps:
                continue
            ends = np.flatnonzero(self.trunk_dones[step : step + horizon, env])
            if len(ends) and self.trunk_truncated[step + ends[0], env]:
                continue
            length = ends[0] + 1 if len(ends) else horizon
            usable[state] = True
            q_values[state] = discounts[:length] @ rewards[step : step + length, env]
            if not len(ends):
                bootstrap_states.append(state)
                bootstrap_observations.append(select_observation(self.trunk_next_observations[step + horizon - 1], env))
        if bootstrap_states:
            final = stack_observations(bootstrap_observations)
            if self.trunk_source is not None:
                final = self.transform_above_source(self.trunk_source.normalize_obs(final))
            q_values[bootstrap_states] += self.gamma**horizon * self.sampler.predict_values(final)
        return usable, q_values

    def _repeated_distribution(self, observations: Observation, n_per_state: int) -> Distribution:
        """The policy's distribution at every rollout state, each repeated for its K branches (rows n*K ... n*K+K-1)."""
        return self.policy.get_distribution(self.policy.obs_to_tensor(repeat_observations(observations, n_per_state))[0])

    def _propose(
        self,
        buffer: VineObjectiveMixin,
        observations: Observation,
        trunk_first_noise: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """
        K actions per rollout state from q, with log q (the rows of a state are consecutive).

        :param trunk_first_noise: with ``trunk_branch``, the rollout states whose first branch is the trunk's own
            action and the trunk's noise of that action (branch 0 replays it, its antithetic partner mirrors it)
        """
        n_states, n_per_state = buffer.n_rollout_states, buffer.n_actions_per_state
        n_branches = n_states * n_per_state
        action_space = self.policy.action_space
        if buffer.action_proposal == "all":
            actions = np.tile(np.arange(n_per_state) + action_space.start, n_states)  # type: ignore[attr-defined]
            return actions, np.zeros(len(actions))
        if buffer.action_proposal == "uniform":
            return uniform_actions(self.rng, action_space, n_branches)
        if buffer.antithetic:  # eps_1, -eps_1, eps_2, -eps_2, ... per state: pairs symmetric about the mean
            half = policy_noise(self.rng, action_space, n_branches // 2)
            noise = np.stack([half, -half], axis=1).reshape(n_branches, -1)
        else:
            noise = policy_noise(self.rng, action_space, n_branches)
        if trunk_first_noise is not None:
            states, first_noise = trunk_first_noise
            noise[states * n_per_state] = first_noise
            if buffer.antithetic:
                noise[states * n_per_state + 1] = -first_noise
        with th.no_grad():
            distribution = self._repeated_distribution(observations, n_per_state)
            actions, log_proposal = torch_sample(distribution, th.as_tensor(noise, device=self.policy.device))
        return actions.cpu().numpy(), log_proposal.cpu().numpy()

    def _state_values(
        self, observations: Observation, actions: np.ndarray, log_proposal: np.ndarray, q_matrix: np.ndarray
    ) -> np.ndarray:
        """V(s_n) estimated from the branches: sum_k w_k Q_nk / sum_k w_k with w_k = pi_old(a_nk|s_n) / q(a_nk|s_n)."""
        n_states, n_per_state = q_matrix.shape
        with th.no_grad():
            distribution = self._repeated_distribution(observations, n_per_state)
            log_policy = distribution.log_prob(th.as_tensor(actions, device=self.policy.device))
        weights = np.exp(log_policy.cpu().numpy() - log_proposal).reshape(n_states, n_per_state)
        return ((weights * q_matrix).sum(axis=1) / weights.sum(axis=1)).astype(np.float32)

    def _branch_noise(self, n_states: int, n_per_state: int, common_random_numbers: bool) -> np.ndarray:
        if common_random_numbers:
            return np.repeat(policy_noise(self.rng, self.policy.action_space, n_states), n_per_state, axis=0)
        return policy_noise(self.rng, self.policy.action_space, n_states * n_per_state)

    def _sde_exploration_matrices(self, n_states: int, n_per_state: int, common_random_numbers: bool) -> th.Tensor | None:
        # gSDE: one exploration matrix per branch for the whole branch, shared by the K branches of a state under CRN
        if not self.policy.use_sde:
            return None
        self.policy.reset_noise(n_states if common_random_numbers else n_states * n_per_state)
        matrices = self.policy.action_dist.exploration_matrices
        return matrices.repeat_interleave(n_per_state, dim=0) if common_random_numbers else matrices

    def _check_branch_finite(self, what: str, values: Observation, branches: np.ndarray, branch_step: int | None) -> None:
        """
        Raise ``NonFiniteDataError`` naming the branch, its rollout state and trunk position if ``values`` has a NaN/inf.

        :param what: what the values are
        :param values: one row per branch in ``branches``
        :param branches: the branch index of each row
        :param branch_step: the step within the branches at which the values were observed (None: whole branch)
        """
        trunk_positions = np.argwhere(self.rollout_mask)  # (step, env) of each rollout state, in snapshot order

        def locate(index: tuple[int, ...]) -> str:
            branch = int(branches[index[0]])
            state, action = divmod(branch, self.n_per_state)
            trunk_step, env = trunk_positions[state]
            when = "" if branch_step is None else f" at branch step {branch_step}"
            return (
                f"vine branch {branch} (action {action} of rollout state {state}, taken at trunk step {trunk_step} of "
                f"env {env}){when}"
            )

        check_finite([(what, values)], locate)

    def branch(self, buffer: VineObjectiveMixin, trunk_noise: np.ndarray | None = None) -> dict[str, float]:
        """
        Estimate Q for every (rollout state, branched action) pair and store the rollout set in ``buffer``.

        :param buffer: the vine buffer (its trunk is already filled)
        :param trunk_noise: ``(n_steps, n_envs, noise_dim)`` the trunk's policy noise (needed by ``trunk_branch``)
        :return: statistics to log, including ``branch_steps`` (simulator steps spent on branches)
        """
        n_states, n_per_state, horizon = buffer.n_rollout_states, buffer.n_actions_per_state, buffer.rollout_length
        n_branches = n_states * n_per_state
        self.n_per_state = n_per_state
        rollout_observations = stack_observations(self.observations)
        positions = np.argwhere(self.rollout_mask)  # (trunk step, env) of each rollout state, in snapshot order
        # branch 0 of a state with a usable trunk continuation is the trunk itself: not simulated
        from_trunk = np.zeros(n_branches, dtype=bool)
        trunk_first_noise = None
        if self.trunk_branch:
            assert trunk_noise is not None, "trunk_branch needs the trunk's policy noise"
            usable, trunk_q_values = self._trunk_branch_q(positions, horizon)
            trunk_states = np.flatnonzero(usable)
            from_trunk[trunk_states * n_per_state] = True
            trunk_steps, trunk_envs = positions[trunk_states].T
            trunk_first_noise = (trunk_states, trunk_noise[trunk_steps, trunk_envs])
        actions, log_proposal = self._propose(buffer, rollout_observations, trunk_first_noise)
        sde_matrices = self._sde_exploration_matrices(n_states, n_per_state, buffer.common_random_numbers)

        simulated = np.flatnonzero(~from_trunk)
        pool_slot = np.cumsum(~from_trunk) - 1  # branch index -> branch env of the pool (for simulated branches)
        if self.branch_pool is None:
            self.branch_pool = make_branch_pool(self.env)
        self.branch_pool.reserve(len(simulated))  # builds the branch envs once (not counted as restore time)
        start = time.perf_counter()
        self.branch_pool.restore([self.snapshots[index // n_per_state] for index in simulated])
        restore_seconds = time.perf_counter() - start

        q_values = np.zeros(n_branches)
        discount = np.ones(n_branches)
        alive = ~from_trunk
        bootstrap = np.zeros(n_branches, dtype=bool)
        last_observations: list[Any] = [None] * n_branches
        reward = np.zeros(n_branches, dtype=np.float32)
        terminated = np.zeros(n_branches, dtype=bool)
        truncated = np.zeros(n_branches, dtype=bool)
        branch_steps = 0
        live = simulated
        env_actions = self.env_actions(actions)[live]
        for step in range(horizon):
            if step > 0:
                # one batched forward for the live branches; under CRN the K branches of a state share the noise
                noise = self._branch_noise(n_states, n_per_state, buffer.common_random_numbers)
                if trunk_first_noise is not None and buffer.common_random_numbers:  # replay the trunk's noise
                    noise.reshape(n_states, n_per_state, -1)[trunk_states] = trunk_noise[trunk_steps + step, trunk_envs, None]
                noise = noise[live]
                if sde_matrices is not None:
                    self.policy.action_dist.exploration_matrices = sde_matrices[live]
                observations = self.transform_observations(stack_observations([last_observations[i] for i in live]))
                self._check_branch_finite("branch observation (after the VecEnv wrappers)", observations, live, step)
                env_actions = self.env_actions(self.sampler.sample(observations, noise)[0])
            step_observations, reward[live], terminated[live], truncated[live] = self.branch_pool.step(
                pool_slot[live], env_actions
            )
            for index, observation in zip(live, step_observations, strict=True):
                last_observations[index] = observation
            branch_steps += len(live)
            q_values[live] += discount[live] * self.transform_rewards(reward[live])
            discount[live] *= self.gamma
            bootstrap |= alive & truncated & ~terminated  # cut by a time limit: bootstrap with V
            alive &= ~(terminated | truncated)
            live = np.flatnonzero(alive)
            if len(live) == 0:
                break
        bootstrap |= alive  # cut by the horizon H
        if bootstrap.any():
            final = self.transform_observations(stack_observations([last_observations[i] for i in np.flatnonzero(bootstrap)]))
            self._check_branch_finite(
                "branch observation (after the VecEnv wrappers)", final, np.flatnonzero(bootstrap), step + 1
            )
            q_values[bootstrap] += discount[bootstrap] * self.sampler.predict_values(final)
        if self.trunk_branch:
            q_values[from_trunk] = trunk_q_values[trunk_states]

        self._check_branch_finite(
            "branch estimate Q(s, a) (discounted branch rewards after VecNormalize plus gamma^H V(s_H))",
            q_values,
            np.arange(n_branches),
            None,
        )
        action_shape = actions.shape[1:]
        q_matrix = q_values.reshape(n_states, n_per_state)
        buffer.set_rollout_set(
            rollout_observations,
            actions.reshape(n_states, n_per_state, *action_shape),
            log_proposal.reshape(n_states, n_per_state),
            q_matrix.astype(np.float32),
            self._state_values(rollout_observations, actions, log_proposal, q_matrix) if buffer.branch_value_targets else None,
            positions,
            from_trunk.reshape(n_states, n_per_state)[:, 0] if self.trunk_branch else None,
        )
        return {
            "branch_steps": branch_steps,
            "q_mean": float(q_matrix.mean()),
            "q_std": float(q_matrix.std()),
            "q_spread_within_state": float(q_matrix.std(axis=1).mean()),
            "terminated_branch_fraction": float((~bootstrap[simulated]).mean()),
            "trunk_branch_fraction": float(from_trunk.sum() / n_states),
            "snapshot_seconds": self.snapshot_seconds,
            "restore_seconds": restore_seconds,
            "branch_seconds": time.perf_counter() - start,
        }
