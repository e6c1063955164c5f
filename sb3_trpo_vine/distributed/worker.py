"""
The body of a :class:`~sb3_trpo_vine.distributed.RayVecEnv` actor: a few training envs and a pool of branch envs.

This module does not import Ray: ``EnvWorker`` is a plain class that ``RayVecEnv`` turns into an actor, so it can
also be driven in-process. Every method handles all the envs (or branches) it is given in one call, so the learner
sends one message per actor per step.
"""

import os
import socket
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.env_util import is_wrapped
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env.util import obs_space_info

from sb3_trpo_vine.snapshot import (
    EnvSnapshot,
    SnapshotWrapper,
    branch_mode,
    clone_env,
    restore_snapshot,
    take_snapshot,
)
from sb3_trpo_vine.snapshot.core import snapshot_problems

# Observation batch of one actor: one array per key of ``obs_space_info`` (the key is ``None`` for array spaces)
ObservationBatch = dict[Any, np.ndarray]


@dataclass(frozen=True)
class EnvRecipe:
    """
    How each env of a ``RayVecEnv`` is built inside its actor: the chain of ``make_vec_env`` plus an outermost
    :class:`~sb3_trpo_vine.snapshot.SnapshotWrapper` (stateless, so trajectories are the same as without it).

    :param env_id: Registered env id or a callable returning an env
    :param seed: Seed of the action spaces (``seed + rank``), as ``make_vec_env``; ``None`` leaves them unseeded
    :param env_kwargs: Keyword arguments of the env constructor
    :param monitor: Whether to wrap the env in SB3's ``Monitor``
    :param monitor_dir: Folder of the Monitor CSV files, on the machine running the actor (``None``: no file)
    :param monitor_kwargs: Keyword arguments of ``Monitor``
    :param wrapper_class: Wrapper applied over ``Monitor`` (``make_vec_env``'s ``wrapper_class``)
    :param wrapper_kwargs: Keyword arguments of ``wrapper_class``
    """

    env_id: str | Callable[..., gym.Env]
    seed: int | None = None
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    monitor: bool = True
    monitor_dir: str | None = None
    monitor_kwargs: dict[str, Any] = field(default_factory=dict)
    wrapper_class: Callable[..., gym.Env] | None = None
    wrapper_kwargs: dict[str, Any] = field(default_factory=dict)

    def make(self, rank: int, resumed: bool = False) -> gym.Env:
        """
        Build the env of rank ``rank``.

        :param rank: Global env index plus ``start_index``
        :param resumed: Whether the env replaces one of a dead actor: its Monitor then appends to the existing CSV
        :return: The wrapped env, :class:`~sb3_trpo_vine.snapshot.SnapshotWrapper` outermost
        """
        if isinstance(self.env_id, str):
            # Same render mode as make_vec_env, unless the env does not take one
            try:
                env = gym.make(self.env_id, **{"render_mode": "rgb_array", **self.env_kwargs})
            except TypeError:
                env = gym.make(self.env_id, **self.env_kwargs)
        else:
            env = self.env_id(**self.env_kwargs)
        if self.seed is not None:
            env.action_space.seed(self.seed + rank)
        if self.monitor:
            filename = None
            if self.monitor_dir is not None:
                os.makedirs(self.monitor_dir, exist_ok=True)
                filename = os.path.join(self.monitor_dir, str(rank))
            monitor_kwargs = {**self.monitor_kwargs, "override_existing": False} if resumed else self.monitor_kwargs
            env = Monitor(env, filename=filename, **monitor_kwargs)
        if self.wrapper_class is not None:
            env = self.wrapper_class(env, **self.wrapper_kwargs)
        return SnapshotWrapper(env)


class WorkerInfo(NamedTuple):
    """
    What an actor reports once it has built its envs.

    :param host: Host name of the machine running the actor
    :param pid: Process id of the actor
    :param observation_space: Observation space of the envs
    :param action_space: Action space of the envs
    :param snapshot_problems: Why the env chain cannot be snapshotted (empty if it can)
    """

    host: str
    pid: int
    observation_space: spaces.Space
    action_space: spaces.Space
    snapshot_problems: list[str]


class WorkerStep(NamedTuple):
    """
    Result of one step of the training envs of an actor.

    :param observations: Next observations (after auto-reset), batched per key
    :param rewards: Rewards, float32 like ``DummyVecEnv``
    :param dones: ``terminated or truncated``
    :param infos: Step infos with ``TimeLimit.truncated`` and, on done, ``terminal_observation``
    :param reset_infos: Reset info of the envs that were auto-reset, by local index
    :param checkpoint: Snapshots of every env after the step, if one was asked for
    """

    observations: ObservationBatch
    rewards: np.ndarray
    dones: np.ndarray
    infos: list[dict[str, Any]]
    reset_infos: dict[int, dict[str, Any]]
    checkpoint: list[EnvSnapshot] | None


class BranchStep(NamedTuple):
    """
    Result of one step of some branch envs (no auto-reset).

    :param observations: One observation per branch
    :param rewards: Rewards
    :param terminated: Terminated flags
    :param truncated: Truncated flags
    """

    observations: list[Any]
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray


def batch_observations(observations: list[Any], observation_space: spaces.Space) -> ObservationBatch:
    """
    Stack single-env observations per key, cast to the space's dtype as ``DummyVecEnv`` does.

    :param observations: One observation per env
    :param observation_space: Their space
    :return: One array per key, envs along the first axis
    """
    keys, _, dtypes = obs_space_info(observation_space)
    return {
        key: np.stack([observation if key is None else observation[key] for observation in observations]).astype(
            dtypes[key], copy=False
        )
        for key in keys
    }


class EnvWorker:
    """
    The training envs of one actor, stepped with SB3's auto-reset semantics, and its branch envs.

    Branch envs are clones of the first training env's chain (their Monitor writes no CSV), created once and grown
    on demand; stepping them never touches the training envs.

    :param recipe: How to build each env
    :param ranks: Rank of each env of this actor (global index plus ``start_index``)
    :param resumed: Whether the actor replaces a dead one (Monitor CSVs are appended to)
    """

    def __init__(self, recipe: EnvRecipe, ranks: list[int], resumed: bool = False) -> None:
        self.envs = [recipe.make(rank, resumed) for rank in ranks]
        self.observation_space = self.envs[0].observation_space
        self.branch_template: gym.Env | None = None
        self.branches: list[gym.Env] = []

    def describe(self) -> WorkerInfo:
        """
        :return: Where the actor runs, its spaces, and whether its env chain can be snapshotted
        """
        return WorkerInfo(
            socket.gethostname(),
            os.getpid(),
            self.observation_space,
            self.envs[0].action_space,
            snapshot_problems(self.envs[0]),
        )

    def _checkpoint(self) -> list[EnvSnapshot]:
        return [take_snapshot(env) for env in self.envs]

    def reset(self, seeds: list[int | None], options: list[dict[str, Any]], checkpoint: bool) -> WorkerStep:
        """
        Reset every training env.

        :param seeds: One seed per env (``None``: continue the env's generator)
        :param options: One options dict per env (empty: none)
        :param checkpoint: Whether to return snapshots of the envs after the reset
        :return: Observations and reset infos (rewards, dones and step infos are empty)
        """
        observations = []
        reset_infos = {}
        for index, (env, seed, env_options) in enumerate(zip(self.envs, seeds, options, strict=True)):
            maybe_options = {"options": env_options} if env_options else {}
            observation, reset_infos[index] = env.reset(seed=seed, **maybe_options)
            observations.append(observation)
        return WorkerStep(
            batch_observations(observations, self.observation_space),
            np.zeros(0, dtype=np.float32),
            np.zeros(0, dtype=bool),
            [],
            reset_infos,
            self._checkpoint() if checkpoint else None,
        )

    def step(self, actions: np.ndarray, checkpoint: bool) -> WorkerStep:
        """
        Step every training env once, auto-resetting finished episodes like SB3's VecEnvs.

        :param actions: One action per env of this actor
        :param checkpoint: Whether to return snapshots of the envs after the step (and auto-resets)
        :return: The step results
        """
        observations = []
        rewards = np.zeros(len(self.envs), dtype=np.float32)
        dones = np.zeros(len(self.envs), dtype=bool)
        infos = []
        reset_infos = {}
        for index, (env, action) in enumerate(zip(self.envs, actions, strict=True)):
            observation, rewards[index], terminated, truncated, info = env.step(action)
            dones[index] = terminated or truncated
            info["TimeLimit.truncated"] = truncated and not terminated
            if dones[index]:
                info["terminal_observation"] = observation
                observation, reset_infos[index] = env.reset()
            observations.append(observation)
            infos.append(info)
        return WorkerStep(
            batch_observations(observations, self.observation_space),
            rewards,
            dones,
            infos,
            reset_infos,
            self._checkpoint() if checkpoint else None,
        )

    def recover(self, checkpoint: list[EnvSnapshot] | None, actions_log: list[np.ndarray]) -> None:
        """
        Bring fresh training envs to the state of a dead actor's: restore its last checkpoint and replay the actions
        stepped since then, with auto-resets, under ``branch_mode`` (no Monitor rows or episodes recorded twice).

        :param checkpoint: Snapshots of the envs at the last checkpoint (``None``: the envs were not reset yet)
        :param actions_log: Actions of each step since that checkpoint
        """
        if checkpoint is not None:
            for env, snapshot in zip(self.envs, checkpoint, strict=True):
                restore_snapshot(env, snapshot)
        with ExitStack() as stack:
            for env in self.envs:
                stack.enter_context(branch_mode(env))
            for actions in actions_log:
                for env, action in zip(self.envs, actions, strict=True):
                    _, _, terminated, truncated, _ = env.step(action)
                    if terminated or truncated:
                        env.reset()

    def get_attr(self, indices: list[int], attr_name: str) -> list[Any]:
        """
        :param indices: Local env indices
        :param attr_name: Attribute, resolved through the wrappers (``get_wrapper_attr``)
        :return: Its value in each env
        """
        return [self.envs[index].get_wrapper_attr(attr_name) for index in indices]

    def set_attr(self, indices: list[int], attr_name: str, value: Any) -> None:
        """
        Set an attribute on the outermost wrapper, like SB3's VecEnvs.

        :param indices: Local env indices
        :param attr_name: Attribute name
        :param value: New value
        """
        for index in indices:
            setattr(self.envs[index], attr_name, value)

    def env_method(
        self, indices: list[int], method_name: str, args: tuple[Any, ...], kwargs: dict[str, Any], checkpoint: bool
    ) -> tuple[list[Any], list[EnvSnapshot] | None]:
        """
        Call a method, resolved through the wrappers (``get_wrapper_attr``), of some envs.

        :param indices: Local env indices
        :param method_name: Method name
        :param args: Positional arguments
        :param kwargs: Keyword arguments
        :param checkpoint: Whether to return snapshots of every env after the call (it may have changed them)
        :return: The return value of each call, and the snapshots if asked for
        """
        results = [self.envs[index].get_wrapper_attr(method_name)(*args, **kwargs) for index in indices]
        return results, self._checkpoint() if checkpoint else None

    def env_is_wrapped(self, indices: list[int], wrapper_class: type[gym.Wrapper]) -> list[bool]:
        """
        :param indices: Local env indices
        :param wrapper_class: Wrapper class
        :return: Whether each env's chain contains it
        """
        return [is_wrapped(self.envs[index], wrapper_class) for index in indices]

    def render(self, indices: list[int]) -> list[Any]:
        """
        :param indices: Local env indices
        :return: ``env.render()`` of each
        """
        return [self.envs[index].render() for index in indices]

    def close(self) -> None:
        """Close every env (flushes the Monitor CSVs)."""
        for env in self.envs + self.branches:
            env.close()

    def reserve_branches(self, n_branches: int) -> None:
        """
        Make sure this actor has at least ``n_branches`` branch envs (clones are only ever added).

        :param n_branches: Number of branch envs needed
        """
        if self.branch_template is None:
            self.branch_template = clone_env(self.envs[0])
        while len(self.branches) < n_branches:
            self.branches.append(clone_env(self.branch_template))

    def restore_branches(self, snapshots: list[EnvSnapshot]) -> None:
        """
        Put branch ``i`` of this actor into the state ``snapshots[i]``, creating branch envs if needed.

        :param snapshots: One snapshot per branch
        """
        self.reserve_branches(len(snapshots))
        for env, snapshot in zip(self.branches, snapshots, strict=False):
            restore_snapshot(env, snapshot)

    def step_branches(self, slots: np.ndarray, actions: np.ndarray) -> BranchStep:
        """
        Advance some branches by one step each (no auto-reset).

        :param slots: Branch indices of this actor
        :param actions: One action per slot
        :return: Their transitions
        """
        transitions = [self.branches[slot].step(action) for slot, action in zip(slots, actions, strict=True)]
        observations, rewards, terminated, truncated, _ = zip(*transitions, strict=True)
        return BranchStep(list(observations), np.array(rewards), np.array(terminated), np.array(truncated))

    def replay_branches(self, snapshots: list[EnvSnapshot], steps: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """
        Rebuild the branches of a dead actor: restore them and replay the branch steps taken since.

        :param snapshots: The snapshots of the last ``restore_branches``
        :param steps: ``(slots, actions)`` of each ``step_branches`` call since then
        """
        self.restore_branches(snapshots)
        for slots, actions in steps:
            self.step_branches(slots, actions)
