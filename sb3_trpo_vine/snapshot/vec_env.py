"""
Snapshots of the envs inside SB3 VecEnvs.

``DummyVecEnv`` envs are reached directly (``venv.envs[i]``). Any other VecEnv, ``SubprocVecEnv`` in
particular, is reached through ``env_method``, whose worker only runs ``env.get_wrapper_attr(name)(*args)``:
each env must therefore be wrapped, outermost, with :class:`SnapshotWrapper`. ``VecEnvWrapper`` layers
(``VecNormalize``, ...) are skipped: their state is not part of the env snapshots, and branch work on clones
never updates their statistics.
"""

import weakref
from collections.abc import Iterable

import gymnasium as gym
from gymnasium.core import ActType, ObsType
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices

from sb3_trpo_vine.snapshot.core import (
    EnvSnapshot,
    SnapshotNotSupportedError,
    clone_env,
    dump_clone_payload,
    format_not_supported,
    load_clone_payload,
    register_stateless,
    restore_snapshot,
    snapshot_problems,
    take_snapshot,
)

# Attribute set on the outermost wrapper by `VecEnv.set_attr` to find out whether it is a SnapshotWrapper
_OUTERMOST_PROBE = "_snapshot_outermost_probe"

_MISSING_WRAPPER_FIX = (
    "wrap each env with `sb3_trpo_vine.snapshot.SnapshotWrapper` as the outermost wrapper, e.g. "
    "`make_vec_env(env_id, n_envs, vec_env_cls=SubprocVecEnv, wrapper_class=SnapshotWrapper)` or "
    "`SubprocVecEnv([lambda: SnapshotWrapper(make_env()), ...])`; or use a DummyVecEnv; "
    'or train without snapshots: rollout_buffer_class="single_path".'
)

# VecEnvs whose workers were already checked (the wrapper chain of a worker cannot change)
_CHECKED_VEC_ENVS: "weakref.WeakSet[VecEnv]" = weakref.WeakSet()


class SnapshotWrapper(gym.Wrapper[ObsType, ActType, ObsType, ActType]):
    """
    Transparent wrapper that makes the snapshot functions reachable through ``VecEnv.env_method``.

    It must be the outermost wrapper (``make_vec_env(..., wrapper_class=SnapshotWrapper)`` puts it there):
    its methods act on the chain below it. ``step`` and ``reset`` are unchanged and it holds no state.
    No method raises inside a worker once :func:`vec_check_snapshot_supported` passed, so a SubprocVecEnv
    worker never dies from a snapshot call.

    :param env: The environment to wrap
    """

    def take_snapshot(self) -> EnvSnapshot:
        """
        Snapshot the episode state of this chain.

        :return: The snapshot
        """
        return take_snapshot(self)

    def restore_snapshot(self, snapshot: EnvSnapshot) -> None:
        """
        Restore the episode state of this chain.

        :param snapshot: A snapshot of an identically built chain
        """
        restore_snapshot(self, snapshot)

    def clone_payload(self) -> bytes:
        """
        Serialize this chain and its snapshot, to be rebuilt in another process.

        :return: The payload for :func:`sb3_trpo_vine.snapshot.core.load_clone_payload`
        """
        return dump_clone_payload(self)

    def snapshot_problems(self) -> list[str]:
        """
        Describe the layers of this chain that cannot be snapshotted.

        :return: One line per offending layer
        """
        return snapshot_problems(self)

    def snapshot_wrapper_is_outermost(self) -> bool:
        """
        Consume the probe that ``VecEnv.set_attr`` sets on the outermost wrapper.

        :return: Whether the probe was set on this wrapper, i.e. whether it is the outermost one
        """
        return bool(self.__dict__.pop(_OUTERMOST_PROBE, False))


register_stateless(SnapshotWrapper)


def _indices(venv: VecEnv, indices: VecEnvIndices) -> list[int]:
    if indices is None:
        return list(range(venv.num_envs))
    if isinstance(indices, int):
        return [indices]
    assert isinstance(indices, Iterable)
    return list(indices)


def _check_workers(venv: VecEnv) -> None:
    """Check, once per VecEnv, that each worker's outermost wrapper is a SnapshotWrapper over a supported chain."""
    if venv in _CHECKED_VEC_ENVS:
        return
    missing = [index for index, wrapped in enumerate(venv.env_is_wrapped(SnapshotWrapper)) if not wrapped]
    if missing:
        raise SnapshotNotSupportedError(
            f"The envs {missing} of this {type(venv).__name__} have no SnapshotWrapper, so their snapshot functions "
            f"cannot be reached from the main process. Fix: {_MISSING_WRAPPER_FIX}"
        )
    venv.set_attr(_OUTERMOST_PROBE, True)
    inner = [index for index, outermost in enumerate(venv.env_method("snapshot_wrapper_is_outermost")) if not outermost]
    if inner:
        raise SnapshotNotSupportedError(
            f"In the envs {inner} of this {type(venv).__name__}, SnapshotWrapper is not the outermost wrapper, so the "
            f"wrappers above it would be missing from snapshots. Fix: {_MISSING_WRAPPER_FIX}"
        )
    _raise_problems(venv.env_method("snapshot_problems"))
    _CHECKED_VEC_ENVS.add(venv)


def _raise_problems(problems_per_env: list[list[str]]) -> None:
    problems = [f"env {index}: {problem}" for index, problems in enumerate(problems_per_env) for problem in problems]
    if problems:
        raise SnapshotNotSupportedError(format_not_supported(problems))


def vec_check_snapshot_supported(venv: VecEnv) -> None:
    """
    Raise if some env of ``venv`` cannot be snapshotted from the main process.

    :param venv: A DummyVecEnv, or any VecEnv whose envs are wrapped with :class:`SnapshotWrapper`,
        possibly wrapped by ``VecEnvWrapper`` s such as ``VecNormalize``
    :raises SnapshotNotSupportedError: naming each offending env, class and the fixes
    """
    venv = venv.unwrapped
    if isinstance(venv, DummyVecEnv):
        _raise_problems([snapshot_problems(env) for env in venv.envs])
    else:
        _check_workers(venv)


def vec_take_snapshots(venv: VecEnv, indices: VecEnvIndices = None) -> list[EnvSnapshot]:
    """
    Snapshot the episode state of envs of ``venv``.

    :param venv: See :func:`vec_check_snapshot_supported`
    :param indices: Which envs (default: all)
    :return: One snapshot per index
    """
    venv = venv.unwrapped
    if isinstance(venv, DummyVecEnv):
        return [take_snapshot(venv.envs[index]) for index in _indices(venv, indices)]
    _check_workers(venv)
    return venv.env_method("take_snapshot", indices=indices)


def vec_clone_envs(venv: VecEnv, indices: VecEnvIndices = None) -> list[gym.Env]:
    """
    Build independent clones, in the main process, of envs of ``venv`` at their current state.

    Stepping a clone changes nothing in ``venv`` (Monitor, VecNormalize statistics, ...); its Monitor writes no CSV.

    :param venv: See :func:`vec_check_snapshot_supported`
    :param indices: Which envs (default: all)
    :return: One clone per index
    """
    venv = venv.unwrapped
    if isinstance(venv, DummyVecEnv):
        return [clone_env(venv.envs[index]) for index in _indices(venv, indices)]
    _check_workers(venv)
    return [load_clone_payload(payload) for payload in venv.env_method("clone_payload", indices=indices)]
