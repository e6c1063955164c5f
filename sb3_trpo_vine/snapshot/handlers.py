"""
Built-in snapshot handlers: MuJoCo, ALE and classic-control envs, gymnasium, SB3 and sb3-contrib wrappers.

Each wrapper was classified by reading its gymnasium 1.4 / SB3 2.9 source:

* episode state (restored): ``TimeLimit``, ``OrderEnforcing`` / ``PassiveEnvChecker`` flags, ``Autoreset``,
  ``FrameStackObservation``, ``DelayObservation``, ``TimeAwareObservation``, ``StickyAction``,
  ``AtariPreprocessing`` (lives and the max-pool frames, which are read again when an episode ends early),
  ``MaxAndSkip*`` (same reason), ``NormalizeReward.discounted_reward``, the per-episode fields of ``Monitor``
  and ``RecordEpisodeStatistics``, SB3 ``StickyActionEnv`` / ``EpisodicLifeEnv``, sb3-contrib ``TimeFeatureWrapper``;
* bookkeeping (never restored, frozen by ``branch_mode``): ``obs_rms``, ``return_rms``, Monitor episode lists,
  ``total_steps`` and CSV file, RecordEpisodeStatistics queues and counters;
* stateless: the transform, clip, rescale, reshape, dtype, discretize and array-conversion wrappers,
  ``RepeatAction``, ``AddRenderObservation``, ``AddWhiteNoise`` / ``ObstructView`` (they draw from the base
  env's ``np_random``, which every snapshot holds), SB3 ``NoopResetEnv``, ``FireResetEnv``, ``ClipRewardEnv``,
  ``WarpFrame``, ``AtariWrapper`` (its sub-wrappers are layers of their own) and sb3-contrib ``ActionMasker``.

Envs: MuJoCo (integration state, warm start included, plus the derived arrays ``step()`` reads before simulating;
the v5 envs keep no other per-episode Python attribute that ``step()`` reads: Reacher's ``goal`` and Pusher's
``goal_pos`` / ``cylinder_pos`` are only used by ``reset_model``), ALE (emulator state with its RNG), classic control
(``state``, CartPole ``steps_beyond_terminated``, Pendulum ``last_u``) and SB3's ``IdentityEnv`` family. The base
env's ``np_random`` is saved by the core for every env.

``RecordVideo``, ``RenderCollection`` and ``HumanRendering`` are left unregistered on purpose: they would
record or display every branch step. Remove them from the training env (or register them yourself).

Handlers of optional packages (MuJoCo, ALE, sb3-contrib, SB3 Atari wrappers) register themselves the first
time one of their classes is resolved, so importing this module imports none of them.
"""

import importlib
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
from gymnasium import wrappers
from stable_baselines3.common.monitor import Monitor

from sb3_trpo_vine.snapshot.core import (
    SnapshotHandler,
    add_family_loader,
    add_handler,
    copy_value,
    register_attributes,
    register_stateless,
)

# Derived MuJoCo arrays restored on top of the integration state. `mj_step` recomputes every derived quantity
# before integrating, so only what Python code reads *before* stepping matters: v5 Ant and Humanoid read body
# positions (`xpos`, `xipos`); site/geom poses, subtree centers of mass and sensors are common in custom envs.
# Recomputing them with `mj_forward` is not exact: after `mj_step` they belong to the start of the last substep.
MUJOCO_DERIVED_FIELDS = (
    "xpos",
    "xquat",
    "xmat",
    "xipos",
    "ximat",
    "geom_xpos",
    "geom_xmat",
    "site_xpos",
    "site_xmat",
    "subtree_com",
    "sensordata",
)


def _register_mujoco() -> None:
    """Physics handler for every ``gymnasium.envs.mujoco.MujocoEnv`` subclass."""
    import mujoco
    from gymnasium.envs.mujoco.mujoco_env import MujocoEnv

    # Time, qpos, qvel, act, history, plugin and user inputs, plus `qacc_warmstart`: without the warm start the
    # solver converges to a (slightly) different solution and replays drift
    integration = mujoco.mjtState.mjSTATE_INTEGRATION

    def get_state(env: Any) -> tuple[np.ndarray, list[np.ndarray]]:
        model, data = env.model, env.data
        physics = np.empty(mujoco.mj_stateSize(model, integration))
        mujoco.mj_getState(model, data, physics, integration)
        return physics, [getattr(data, name).copy() for name in MUJOCO_DERIVED_FIELDS]

    def set_state(env: Any, state: tuple[np.ndarray, list[np.ndarray]]) -> None:
        physics, derived = state
        model, data = env.model, env.data
        mujoco.mj_setState(model, data, physics, integration)
        for name, value in zip(MUJOCO_DERIVED_FIELDS, derived, strict=True):
            getattr(data, name)[...] = value

    add_handler(MujocoEnv, SnapshotHandler(get_state, set_state))


def _ale_sticky_problem(env: Any) -> str | None:
    """ALE's own sticky actions repeat an action that ``ALEState`` does not hold, so they cannot be restored."""
    probability = env.ale.getFloat("repeat_action_probability")
    if probability <= 0:
        return None
    return (
        f"ALE-internal sticky actions (repeat_action_probability={probability:g}) cannot be restored exactly, "
        "because the last applied action is not part of the ALE state. Make the env with repeat_action_probability=0 "
        "and add stickiness in a Python wrapper, which snapshots restore: gymnasium `StickyAction(env, "
        "repeat_action_probability=0.25)` below `AtariPreprocessing(frame_skip=4)` on an env made with frameskip=1, "
        "or SB3 `AtariWrapper(env, action_repeat_probability=0.25)` on a `NoFrameskip-v4` env"
    )


def _register_ale() -> None:
    """Emulator handler for ``ale_py.env.AtariEnv``: ``cloneState(include_rng=True)`` / ``restoreState``."""
    from ale_py.env import AtariEnv

    def get_state(env: Any) -> Any:
        return env.ale.cloneState(include_rng=True)

    def set_state(env: Any, state: Any) -> None:
        env.ale.restoreState(state)

    add_handler(AtariEnv, SnapshotHandler(get_state, set_state, problem=_ale_sticky_problem))


def _freeze_running_mean(layer: Any) -> Callable[[], None]:
    """Stop the running mean/std updates of NormalizeObservation / NormalizeReward."""
    previous = layer.update_running_mean
    layer.update_running_mean = False

    def undo() -> None:
        layer.update_running_mean = previous

    return undo


def _get_discounted_reward(layer: Any) -> np.ndarray:
    return layer.discounted_reward.copy()


def _set_discounted_reward(layer: Any, state: np.ndarray) -> None:
    layer.discounted_reward = state.copy()


def _get_episode_statistics(layer: Any) -> tuple[Any, Any]:
    return layer.episode_returns, layer.episode_lengths


def _set_episode_statistics(layer: Any, state: tuple[Any, Any]) -> None:
    layer.episode_returns, layer.episode_lengths = state


def _freeze_episode_statistics(layer: Any) -> Callable[[], None]:
    """Make RecordEpisodeStatistics record finished branch episodes into throw-away queues."""
    saved = (layer.episode_count, layer.episode_start_time, layer.time_queue, layer.return_queue, layer.length_queue)
    layer.time_queue = deque(maxlen=layer.time_queue.maxlen)
    layer.return_queue = deque(maxlen=layer.return_queue.maxlen)
    layer.length_queue = deque(maxlen=layer.length_queue.maxlen)

    def undo() -> None:
        layer.episode_count, layer.episode_start_time, layer.time_queue, layer.return_queue, layer.length_queue = saved

    return undo


def _get_monitor_episode(layer: Monitor) -> tuple[list[float], bool, dict[str, Any]]:
    # Monitor appends Python floats, so a shallow copy is a full copy
    return list(layer.rewards), layer.needs_reset, dict(layer.current_reset_info)


def _set_monitor_episode(layer: Monitor, state: tuple[list[float], bool, dict[str, Any]]) -> None:
    rewards, layer.needs_reset, current_reset_info = state
    layer.rewards = list(rewards)
    layer.current_reset_info = dict(current_reset_info)


def _freeze_monitor(layer: Monitor) -> Callable[[], None]:
    """Make Monitor write no CSV row and record finished branch episodes and steps into throw-away lists."""
    saved = (layer.results_writer, layer.episode_returns, layer.episode_lengths, layer.episode_times, layer.total_steps)
    layer.results_writer = None
    layer.episode_returns, layer.episode_lengths, layer.episode_times = [], [], []

    def undo() -> None:
        (layer.results_writer, layer.episode_returns, layer.episode_lengths, layer.episode_times, layer.total_steps) = saved

    return undo


def _detach_monitor_file(layer: Monitor) -> Callable[[], None]:
    """Keep the open CSV file out of a clone (it cannot be pickled, and clones must not write to it)."""
    results_writer = layer.results_writer
    layer.results_writer = None

    def undo() -> None:
        layer.results_writer = results_writer

    return undo


def _get_queue(queue: deque) -> list[Any]:
    return [copy_value(item) for item in queue]


def _get_frame_stack(layer: Any) -> tuple[list[Any], Any]:
    return _get_queue(layer.obs_queue), copy_value(layer.padding_value)


def _set_frame_stack(layer: Any, state: tuple[list[Any], Any]) -> None:
    frames, padding_value = state
    layer.obs_queue = deque((copy_value(frame) for frame in frames), maxlen=layer.stack_size)
    layer.padding_value = copy_value(padding_value)


def _get_delay_queue(layer: Any) -> list[Any]:
    return _get_queue(layer.observation_queue)


def _set_delay_queue(layer: Any, state: list[Any]) -> None:
    # The queue is declared `Final`: refill it in place
    layer.observation_queue.clear()
    layer.observation_queue.extend(copy_value(item) for item in state)


def _get_atari_preprocessing(layer: Any) -> tuple[int, bool, list[np.ndarray]]:
    return layer.lives, layer.game_over, [frame.copy() for frame in layer.obs_buffer]


def _set_atari_preprocessing(layer: Any, state: tuple[int, bool, list[np.ndarray]]) -> None:
    layer.lives, layer.game_over, frames = state
    for buffer, frame in zip(layer.obs_buffer, frames, strict=True):
        np.copyto(buffer, frame)


def _register_gymnasium_wrappers() -> None:
    register_attributes(wrappers.TimeLimit, ["_elapsed_steps"])
    register_attributes(wrappers.OrderEnforcing, ["_has_reset"])
    # One-shot API-check flags: restoring them keeps a restored fresh env from re-running the first-call checks
    register_attributes(
        wrappers.PassiveEnvChecker, ["checked_reset", "checked_step", "checked_render", "checked_data_reuse", "_previous_data"]
    )
    register_attributes(wrappers.Autoreset, ["autoreset"])
    register_attributes(wrappers.TimeAwareObservation, ["timesteps"])
    register_attributes(wrappers.StickyAction, ["last_action", "is_sticky_actions", "num_repeats", "repeats_taken"])
    register_attributes(wrappers.MaxAndSkipObservation, ["_obs_buffer"])
    add_handler(wrappers.FrameStackObservation, SnapshotHandler(_get_frame_stack, _set_frame_stack))
    add_handler(wrappers.DelayObservation, SnapshotHandler(_get_delay_queue, _set_delay_queue))
    add_handler(wrappers.AtariPreprocessing, SnapshotHandler(_get_atari_preprocessing, _set_atari_preprocessing))
    add_handler(wrappers.NormalizeObservation, SnapshotHandler(None, None, freeze=_freeze_running_mean))
    add_handler(
        wrappers.NormalizeReward,
        SnapshotHandler(_get_discounted_reward, _set_discounted_reward, freeze=_freeze_running_mean),
    )
    add_handler(
        wrappers.RecordEpisodeStatistics,
        SnapshotHandler(_get_episode_statistics, _set_episode_statistics, freeze=_freeze_episode_statistics),
    )
    for stateless in (
        wrappers.TransformObservation,
        wrappers.FilterObservation,
        wrappers.FlattenObservation,
        wrappers.GrayscaleObservation,
        wrappers.ResizeObservation,
        wrappers.ReshapeObservation,
        wrappers.RescaleObservation,
        wrappers.DtypeObservation,
        wrappers.DiscretizeObservation,
        wrappers.AddRenderObservation,
        wrappers.TransformAction,
        wrappers.ClipAction,
        wrappers.RescaleAction,
        wrappers.DiscretizeAction,
        wrappers.TransformReward,
        wrappers.ClipReward,
        wrappers.RepeatAction,
        wrappers.AddWhiteNoise,
        wrappers.ObstructView,
    ):
        register_stateless(stateless)


def _lazy_stateless(module_name: str, class_name: str) -> None:
    """Declare a class of an optional module stateless once that module is imported."""

    def load() -> None:
        register_stateless(getattr(importlib.import_module(module_name), class_name))

    add_family_loader(module_name, load)


def _lazy_attributes(module_name: str, class_name: str, episode_attrs: list[str]) -> None:
    """Register the episode attributes of a class of an optional module once that module is imported."""

    def load() -> None:
        register_attributes(getattr(importlib.import_module(module_name), class_name), episode_attrs)

    add_family_loader(module_name, load)


def _register_sb3_atari_wrappers() -> None:
    from stable_baselines3.common import atari_wrappers

    register_attributes(atari_wrappers.StickyActionEnv, ["_sticky_action"])
    register_attributes(atari_wrappers.EpisodicLifeEnv, ["lives", "was_real_done"])
    register_attributes(atari_wrappers.MaxAndSkipEnv, ["_obs_buffer"])
    for stateless in (
        atari_wrappers.NoopResetEnv,
        atari_wrappers.FireResetEnv,
        atari_wrappers.ClipRewardEnv,
        atari_wrappers.WarpFrame,
        atari_wrappers.AtariWrapper,
    ):
        register_stateless(stateless)


def _get_identity_env(env: Any) -> tuple[Any, int, dict[str, Any]]:
    # The next target is drawn from the action space's own generator
    return copy_value(env.state), env.current_step, env.action_space.np_random.bit_generator.state


def _set_identity_env(env: Any, state: tuple[Any, int, dict[str, Any]]) -> None:
    target, env.current_step, rng_state = state
    env.state = copy_value(target)
    env.action_space.np_random.bit_generator.state = rng_state


def _register_sb3_identity_envs() -> None:
    from stable_baselines3.common.envs.identity_env import IdentityEnv

    add_handler(IdentityEnv, SnapshotHandler(_get_identity_env, _set_identity_env))


def _register_all() -> None:
    _register_gymnasium_wrappers()
    add_handler(
        Monitor,
        SnapshotHandler(_get_monitor_episode, _set_monitor_episode, freeze=_freeze_monitor, detach=_detach_monitor_file),
    )
    classic_control = "gymnasium.envs.classic_control"
    _lazy_attributes(f"{classic_control}.cartpole", "CartPoleEnv", ["state", "steps_beyond_terminated"])
    _lazy_attributes(f"{classic_control}.pendulum", "PendulumEnv", ["state", "last_u"])
    _lazy_attributes(f"{classic_control}.acrobot", "AcrobotEnv", ["state"])
    _lazy_attributes(f"{classic_control}.mountain_car", "MountainCarEnv", ["state"])
    _lazy_attributes(f"{classic_control}.continuous_mountain_car", "Continuous_MountainCarEnv", ["state"])
    add_family_loader("gymnasium.envs.mujoco.mujoco_env", _register_mujoco)
    add_family_loader("ale_py.env", _register_ale)
    add_family_loader("stable_baselines3.common.atari_wrappers", _register_sb3_atari_wrappers)
    add_family_loader("stable_baselines3.common.envs.identity_env", _register_sb3_identity_envs)
    _lazy_attributes("sb3_contrib.common.wrappers.time_feature", "TimeFeatureWrapper", ["_current_step"])
    _lazy_stateless("sb3_contrib.common.wrappers.action_masker", "ActionMasker")
    for module_name, class_name in (
        ("gymnasium.wrappers.array_conversion", "ArrayConversion"),
        ("gymnasium.wrappers.numpy_to_torch", "NumpyToTorch"),
        ("gymnasium.wrappers.jax_to_numpy", "JaxToNumpy"),
        ("gymnasium.wrappers.jax_to_torch", "JaxToTorch"),
    ):
        _lazy_stateless(module_name, class_name)


_register_all()
