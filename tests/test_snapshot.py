"""Bit-exactness, bookkeeping and error tests of `sb3_trpo_vine.snapshot`."""

import copy
import pickle
from collections import deque
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces, wrappers
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import IdentityEnvBox
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize

from sb3_trpo_vine.snapshot import (
    EnvSnapshot,
    SnapshotMismatchError,
    SnapshotNotSupportedError,
    SnapshotWrapper,
    branch_mode,
    check_snapshot_supported,
    clone_env,
    is_snapshot_supported,
    register_attributes,
    register_snapshot_handler,
    register_stateless,
    restore_snapshot,
    take_snapshot,
    unsupported_layers,
    vec_check_snapshot_supported,
    vec_clone_envs,
    vec_take_snapshots,
)

Transition = tuple[Any, Any, bool, bool]


def _make_ale(env_id: str, **kwargs: Any) -> gym.Env:
    ale_py = pytest.importorskip("ale_py")
    gym.register_envs(ale_py)
    return gym.make(env_id, **kwargs)


def _make_sb3_atari() -> gym.Env:
    pytest.importorskip("cv2")
    from stable_baselines3.common.atari_wrappers import AtariWrapper

    # Stickiness lives in SB3's StickyActionEnv (restorable), not inside ALE (NoFrameskip-v4 has none)
    return AtariWrapper(_make_ale("PongNoFrameskip-v4"), action_repeat_probability=0.25)


def _make_gymnasium_atari() -> gym.Env:
    pytest.importorskip("cv2")
    env = _make_ale("ALE/Pong-v5", frameskip=1, repeat_action_probability=0.0)
    # Per-frame stickiness below the frame skip, as in Machado et al. (2018)
    return wrappers.AtariPreprocessing(wrappers.StickyAction(env, repeat_action_probability=0.25), frame_skip=4)


ENV_FACTORIES: dict[str, Callable[[], gym.Env]] = {
    "Hopper-v5": lambda: gym.make("Hopper-v5"),
    "HalfCheetah-v5": lambda: gym.make("HalfCheetah-v5"),
    "Walker2d-v5": lambda: gym.make("Walker2d-v5"),
    "Swimmer-v5": lambda: gym.make("Swimmer-v5"),
    "Ant-v5": lambda: gym.make("Ant-v5"),
    "Humanoid-v5": lambda: gym.make("Humanoid-v5"),
    "CartPole-v1": lambda: gym.make("CartPole-v1"),
    "Pendulum-v1": lambda: gym.make("Pendulum-v1"),
    "Acrobot-v1": lambda: gym.make("Acrobot-v1"),
    "MountainCarContinuous-v0": lambda: gym.make("MountainCarContinuous-v0"),
    "IdentityEnvBox": lambda: IdentityEnvBox(ep_length=30),
    "ALE/Pong-v5": lambda: _make_ale("ALE/Pong-v5", repeat_action_probability=0.0),
    "PongNoFrameskip-v4+AtariWrapper(sticky)": _make_sb3_atari,
    "Pong-v5+StickyAction+AtariPreprocessing": _make_gymnasium_atari,
}


def _rollout(env: gym.Env, actions: list[Any]) -> list[Transition]:
    """Step until the actions run out or the episode ends, recording copies of the transitions."""
    transitions = []
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(action)
        transitions.append((np.array(obs, copy=True), reward, terminated, truncated))
        if terminated or truncated:
            break
    return transitions


def _assert_same(reference: list[Transition], replay: list[Transition]) -> None:
    assert len(replay) == len(reference)
    for (obs, reward, *flags), (obs_2, reward_2, *flags_2) in zip(reference, replay, strict=True):
        assert np.array_equal(obs, obs_2)
        assert np.array_equal(np.asarray(reward), np.asarray(reward_2))
        assert flags == flags_2


def _actions(env: gym.Env, n_actions: int, seed: int) -> list[Any]:
    # A copy: some envs (SB3 IdentityEnv) draw their own randomness from their action space
    action_space = copy.deepcopy(env.action_space)
    action_space.seed(seed)
    return [action_space.sample() for _ in range(n_actions)]


def _warm_up(env: gym.Env, n_steps: int, seed: int) -> None:
    """Reset and step to the middle of an episode."""
    env.reset(seed=seed)
    for action in _actions(env, n_steps, seed):
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()


def _drive_elsewhere(env: gym.Env, seed: int) -> None:
    """Pollute every kind of state: other episodes, other actions."""
    _warm_up(env, 6, seed)
    _warm_up(env, 4, seed + 1)


# Output buffers, fully overwritten before being read
_SCRATCH_ATTRIBUTES = {"env", "stacked_obs"}
# Bookkeeping: not restored by design; under branch_mode it goes to throw-away copies that are swapped back on exit
_BOOKKEEPING_ATTRIBUTES = {
    Monitor: {"episode_returns", "episode_lengths", "episode_times", "total_steps"},
    wrappers.RecordEpisodeStatistics: {"episode_count", "episode_start_time", "time_queue", "return_queue", "length_queue"},
}


def _wrapper_attributes(env: gym.Env) -> list[dict[str, Any]]:
    """Copies of the attributes of every wrapper layer, to catch state a handler forgot (even if unused by a replay)."""
    attributes = []
    while isinstance(env, gym.Wrapper):
        skipped = _SCRATCH_ATTRIBUTES | _BOOKKEEPING_ATTRIBUTES.get(type(env), set())
        attributes.append({name: copy.deepcopy(value) for name, value in vars(env).items() if name not in skipped})
        env = env.env
    return attributes


def _assert_deep_equal(value: Any, other: Any, path: str = "") -> None:
    assert type(value) is type(other), path
    if isinstance(value, dict):
        assert value.keys() == other.keys(), path
        for key in value:
            _assert_deep_equal(value[key], other[key], f"{path}.{key}")
    elif isinstance(value, list | tuple | deque):
        assert len(value) == len(other), path
        for index, (item, other_item) in enumerate(zip(value, other, strict=True)):
            _assert_deep_equal(item, other_item, f"{path}[{index}]")
    elif isinstance(value, np.ndarray | np.generic):
        assert np.array_equal(value, other), path
    elif type(value).__eq__ is object.__eq__ and hasattr(value, "__dict__"):
        # Objects compared by identity (e.g. RunningMeanStd): compare their attributes
        _assert_deep_equal(vars(value), vars(other), path)
    elif not callable(value):
        assert value == other, path


@pytest.mark.parametrize("env_name", list(ENV_FACTORIES))
def test_restore_replays_bit_exact(env_name: str) -> None:
    make_env = ENV_FACTORIES[env_name]
    env = make_env()
    _warm_up(env, 10, seed=3)
    snapshot = take_snapshot(env)
    attributes = _wrapper_attributes(env)
    actions = _actions(env, 15, seed=2)
    reference = _rollout(env, actions)

    _drive_elsewhere(env, seed=10)
    restore_snapshot(env, snapshot)
    _assert_deep_equal(attributes, _wrapper_attributes(env))
    _assert_same(reference, _rollout(env, actions))

    # Another instance, after a pickle round trip (as through a SubprocVecEnv pipe)
    other = make_env()
    other.reset(seed=20)
    _drive_elsewhere(other, seed=21)
    restore_snapshot(other, pickle.loads(pickle.dumps(snapshot)))
    _assert_same(reference, _rollout(other, actions))

    # A clone continues where its source is, and stepping it leaves the source alone
    restore_snapshot(env, snapshot)
    clone = clone_env(env)
    assert clone is not env and clone.unwrapped is not env.unwrapped
    _assert_same(reference, _rollout(clone, actions))
    _assert_same(reference, _rollout(env, actions))


def test_time_limit_truncates_at_same_step() -> None:
    env = Monitor(gym.make("Pendulum-v1", max_episode_steps=20))
    env.reset(seed=0)
    _rollout(env, _actions(env, 15, seed=0))
    snapshot = take_snapshot(env)
    actions = _actions(env, 10, seed=1)
    reference = _rollout(env, actions)
    assert len(reference) == 5 and reference[-1][3]
    assert env.needs_reset

    restore_snapshot(env, snapshot)
    assert not env.needs_reset
    _assert_same(reference, _rollout(env, actions))


def test_mujoco_snapshot_is_small() -> None:
    env = gym.make("Hopper-v5")
    env.reset(seed=0)
    _rollout(env, _actions(env, 5, seed=0))
    snapshot = take_snapshot(env)
    assert isinstance(snapshot, EnvSnapshot)
    assert len(pickle.dumps(snapshot)) < 8_000


def _hopper_with_wrappers(monitor_file: str) -> gym.Env:
    from sb3_contrib.common.wrappers import TimeFeatureWrapper

    env = Monitor(gym.make("Hopper-v5", max_episode_steps=200), filename=monitor_file)
    env = TimeFeatureWrapper(env)
    # Its own info key: Monitor already uses "episode"
    env = wrappers.RecordEpisodeStatistics(env, stats_key="episode_statistics")
    env = wrappers.NormalizeObservation(env)
    env = wrappers.NormalizeReward(env)
    env = wrappers.TimeAwareObservation(env)
    env = wrappers.FrameStackObservation(env, stack_size=3)
    env = wrappers.DelayObservation(env, delay=1)
    env = wrappers.FlattenObservation(env)
    return wrappers.ClipAction(env)


def test_wrapper_chain_replays_under_branch_mode(tmp_path: Any) -> None:
    env = _hopper_with_wrappers(str(tmp_path / "hopper"))
    assert is_snapshot_supported(env)
    env.reset(seed=0)
    _rollout(env, _actions(env, 8, seed=0))
    snapshot = take_snapshot(env)
    actions = _actions(env, 12, seed=1)
    # Statistics are frozen while branching, so the same frozen normalization applies to every replay
    with branch_mode(env):
        attributes = _wrapper_attributes(env)
        reference = _rollout(env, actions)
        _drive_elsewhere(env, seed=5)
        restore_snapshot(env, snapshot)
        _assert_deep_equal(attributes, _wrapper_attributes(env))
        _assert_same(reference, _rollout(env, actions))
        restore_snapshot(env, snapshot)
        _assert_same(reference, _rollout(clone_env(env), actions))


def _layer(env: gym.Env, layer_class: type) -> Any:
    while not isinstance(env, layer_class):
        env = env.env  # type: ignore[attr-defined]
    return env


def _bookkeeping(env: gym.Env) -> dict[str, Any]:
    monitor = _layer(env, Monitor)
    episode_statistics = _layer(env, wrappers.RecordEpisodeStatistics)
    obs_rms = _layer(env, wrappers.NormalizeObservation).obs_rms
    return_rms = _layer(env, wrappers.NormalizeReward).return_rms
    return {
        "monitor": (list(monitor.episode_returns), list(monitor.episode_lengths), monitor.total_steps),
        "obs_rms": (obs_rms.mean.copy(), obs_rms.var.copy(), obs_rms.count),
        "return_rms": (return_rms.mean.copy(), return_rms.var.copy(), return_rms.count),
        "episode_statistics": (list(episode_statistics.return_queue), episode_statistics.episode_count),
    }


def _assert_same_bookkeeping(before: dict[str, Any], after: dict[str, Any]) -> None:
    for key, values in before.items():
        for value, value_after in zip(values, after[key], strict=True):
            assert np.array_equal(value, value_after), key


def _cartpole_with_bookkeeping(monitor_file: str) -> gym.Env:
    env = Monitor(gym.make("CartPole-v1"), filename=monitor_file)
    env = wrappers.RecordEpisodeStatistics(env, stats_key="episode_statistics")
    env = wrappers.NormalizeObservation(env)
    return wrappers.NormalizeReward(env)


def _count_lines(path: Any) -> int:
    with open(path) as file:
        return len(file.readlines())


def test_branch_mode_and_clones_leave_bookkeeping_alone(tmp_path: Any) -> None:
    monitor_file = tmp_path / "cartpole"
    csv_path = tmp_path / "cartpole.monitor.csv"
    env = _cartpole_with_bookkeeping(str(monitor_file))
    env.reset(seed=0)
    # Finish one live episode so that every statistic holds something
    while not _rollout(env, [0] * 200)[-1][2]:
        pass
    env.reset(seed=1)
    _rollout(env, [1, 0, 1])
    snapshot = take_snapshot(env)
    before = _bookkeeping(env)
    n_lines = _count_lines(csv_path)

    with branch_mode(env) as branch_env:
        assert branch_env is env
        # Always pushing left ends the episode: a terminal step inside the branch
        assert _rollout(env, [0] * 100)[-1][2]
        env.reset(seed=2)
        assert _rollout(env, [1] * 100)[-1][2]
    _assert_same_bookkeeping(before, _bookkeeping(env))
    assert _count_lines(csv_path) == n_lines
    assert _layer(env, wrappers.NormalizeObservation).update_running_mean
    assert _layer(env, wrappers.NormalizeReward).update_running_mean
    assert _layer(env, Monitor).results_writer is not None

    clone = clone_env(env)
    assert _layer(clone, Monitor).results_writer is None
    clone.reset(seed=3)
    assert _rollout(clone, [0] * 100)[-1][2]
    _assert_same_bookkeeping(before, _bookkeeping(env))
    assert _count_lines(csv_path) == n_lines

    # Back to the live episode: statistics and the CSV are updated again
    restore_snapshot(env, snapshot)
    assert _rollout(env, [0] * 100)[-1][2]
    assert _layer(env, wrappers.NormalizeObservation).obs_rms.count > before["obs_rms"][2]
    assert len(_layer(env, Monitor).episode_returns) == len(before["monitor"][0]) + 1
    env.close()
    assert _count_lines(csv_path) == n_lines + 1


@pytest.mark.parametrize("vec_env_cls", [DummyVecEnv, SubprocVecEnv])
def test_vec_env_clones_continue_like_live_envs(vec_env_cls: type) -> None:
    n_envs = 2
    venv = make_vec_env("Hopper-v5", n_envs=n_envs, seed=0, vec_env_cls=vec_env_cls, wrapper_class=SnapshotWrapper)
    try:
        venv.reset()
        venv.action_space.seed(0)
        for _ in range(5):
            venv.step(np.stack([venv.action_space.sample() for _ in range(n_envs)]))
        vec_check_snapshot_supported(venv)
        snapshots = vec_take_snapshots(venv)
        clones = vec_clone_envs(venv)
        assert len(snapshots) == len(clones) == n_envs
        # A separately made env of the same chain, restored from the snapshot
        restored = SnapshotWrapper(Monitor(gym.make("Hopper-v5")))
        restore_snapshot(restored, snapshots[1])

        actions = np.stack([np.stack([venv.action_space.sample() for _ in range(n_envs)]) for _ in range(10)])
        running = [True] * n_envs
        for step_actions in actions:
            obs, rewards, dones, infos = venv.step(step_actions)
            for index in range(n_envs):
                if not running[index]:
                    continue
                envs = [clones[index], restored] if index == 1 else [clones[index]]
                for branch_env in envs:
                    obs_2, reward_2, terminated, truncated, _ = branch_env.step(step_actions[index])
                    live_obs = infos[index]["terminal_observation"] if dones[index] else obs[index]
                    assert np.array_equal(live_obs, obs_2)
                    # DummyVecEnv stores rewards as float32
                    assert rewards[index] == rewards.dtype.type(reward_2)
                    assert dones[index] == (terminated or truncated)
                running[index] = not dones[index]
    finally:
        venv.close()


def test_vec_normalize_untouched_by_clones() -> None:
    venv = VecNormalize(make_vec_env("Pendulum-v1", n_envs=2, seed=0))
    venv.reset()
    for _ in range(5):
        venv.step(np.stack([venv.action_space.sample() for _ in range(2)]))
    obs_rms, ret_rms, returns = venv.obs_rms.mean.copy(), venv.ret_rms.var.copy(), venv.returns.copy()
    snapshots = vec_take_snapshots(venv, indices=[1])
    clones = vec_clone_envs(venv, indices=1)
    assert len(snapshots) == len(clones) == 1
    for clone in clones:
        _rollout(clone, _actions(clone, 30, seed=0))
    assert np.array_equal(obs_rms, venv.obs_rms.mean)
    assert np.array_equal(ret_rms, venv.ret_rms.var)
    assert np.array_equal(returns, venv.returns)


def test_subproc_without_snapshot_wrapper_raises() -> None:
    venv = SubprocVecEnv([lambda: Monitor(gym.make("CartPole-v1")), lambda: Monitor(SnapshotWrapper(gym.make("CartPole-v1")))])
    try:
        venv.reset()
        with pytest.raises(SnapshotNotSupportedError, match="SnapshotWrapper"):
            vec_take_snapshots(venv)
        with pytest.raises(SnapshotNotSupportedError, match="SnapshotWrapper"):
            vec_clone_envs(venv)
        # No worker died
        venv.step(np.zeros(2, dtype=np.int64))
    finally:
        venv.close()
    venv = SubprocVecEnv([lambda: Monitor(SnapshotWrapper(gym.make("CartPole-v1")))])
    try:
        with pytest.raises(SnapshotNotSupportedError, match="outermost"):
            vec_check_snapshot_supported(venv)
        venv.reset()
        venv.step(np.zeros(1, dtype=np.int64))
    finally:
        venv.close()


class _CounterEnv(gym.Env[np.ndarray, int]):
    """Custom env whose state is unknown to the registry: a counter and a noisy position."""

    observation_space = spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float64)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.count = 0
        self.position = self.np_random.uniform(-1, 1)
        return self._obs(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.count += 1
        self.position += action - 0.5 + 0.1 * self.np_random.normal()
        return self._obs(), self.position * self.count, self.count >= 40, False, {}

    def _obs(self) -> np.ndarray:
        return np.array([self.position, self.count], dtype=np.float64)


class _AttributesEnv(_CounterEnv):
    pass


class _HandlerEnv(_CounterEnv):
    pass


class _ProtocolEnv(_CounterEnv):
    def get_snapshot_state(self) -> tuple[int, float]:
        return self.count, self.position

    def set_snapshot_state(self, state: tuple[int, float]) -> None:
        self.count, self.position = state


class _StatelessWrapper(gym.Wrapper):
    pass


class _CountingWrapper(_StatelessWrapper):
    """Subclass of a stateless wrapper that adds state: must not pass as stateless."""

    def step(self, action: int) -> tuple[Any, Any, bool, bool, dict]:
        self.steps = getattr(self, "steps", 0) + 1
        return self.env.step(action)


def _assert_replays(env: gym.Env) -> None:
    _warm_up(env, 3, seed=0)
    snapshot = take_snapshot(env)
    actions = _actions(env, 10, seed=0)
    reference = _rollout(env, actions)
    _drive_elsewhere(env, seed=4)
    restore_snapshot(env, snapshot)
    _assert_same(reference, _rollout(env, actions))


def test_unknown_state_is_refused_with_both_fixes() -> None:
    env = gym.make("CartPole-v1")
    custom = _CounterEnv()
    for unsupported, name in ((custom, "_CounterEnv"), (wrappers.ClipReward(_CountingWrapper(env), 0, 1), "_CountingWrapper")):
        assert not is_snapshot_supported(unsupported)
        assert unsupported_layers(unsupported) == [name]
        with pytest.raises(SnapshotNotSupportedError) as error:
            check_snapshot_supported(unsupported)
        message = str(error.value)
        for expected in (name, "register_snapshot_handler", "register_attributes", "register_stateless", "get_snapshot_state"):
            assert expected in message
        assert 'rollout_buffer_class="single_path"' in message
        with pytest.raises(SnapshotNotSupportedError):
            take_snapshot(unsupported)
    # `register_stateless` covers the exact class only
    register_stateless(_StatelessWrapper)
    assert is_snapshot_supported(_StatelessWrapper(env))
    assert unsupported_layers(_CountingWrapper(env)) == ["_CountingWrapper"]


def test_registry_makes_custom_envs_snapshottable() -> None:
    register_attributes(_AttributesEnv, ["count", "position"])

    def get_state(env: _HandlerEnv) -> tuple[int, float]:
        return env.count, env.position

    def set_state(env: _HandlerEnv, state: tuple[int, float]) -> None:
        env.count, env.position = state

    register_snapshot_handler(_HandlerEnv, get_state, set_state)

    class _AttributesSubclass(_AttributesEnv):
        pass

    for env_class in (_AttributesEnv, _AttributesSubclass, _HandlerEnv, _ProtocolEnv):
        env = gym.wrappers.TimeLimit(env_class(), max_episode_steps=30)
        assert is_snapshot_supported(env), env_class
        _assert_replays(env)


def test_attributes_extend_the_parent_handler() -> None:
    from gymnasium.envs.mujoco.hopper_v5 import HopperEnv

    class _TargetHopper(HopperEnv):
        """Reward depends on a per-episode target: both the physics and the target must be restored."""

        def reset_model(self) -> np.ndarray:
            self.target = self.np_random.uniform(0.5, 1.5)
            return super().reset_model()

        def step(self, action: np.ndarray) -> tuple[Any, Any, bool, bool, dict]:
            obs, reward, terminated, truncated, info = super().step(action)
            self.target += 0.01
            return obs, reward - abs(self.data.qpos[1] - self.target), terminated, truncated, info

    register_attributes(_TargetHopper, ["target"])
    _assert_replays(_TargetHopper())


def test_ale_sticky_actions_are_refused_with_the_fix() -> None:
    env = _make_ale("ALE/Pong-v5")
    env.reset(seed=0)
    assert unsupported_layers(env) == ["AtariEnv"]
    with pytest.raises(SnapshotNotSupportedError, match="repeat_action_probability=0") as error:
        check_snapshot_supported(env)
    assert "StickyAction" in str(error.value) and "AtariWrapper" in str(error.value)
    with pytest.raises(SnapshotNotSupportedError):
        take_snapshot(env)


def test_restore_into_mismatched_chain_raises() -> None:
    env = gym.make("CartPole-v1")
    env.reset(seed=0)
    snapshot = take_snapshot(env)
    for other in (Monitor(gym.make("CartPole-v1")), gym.make("Pendulum-v1")):
        with pytest.raises(SnapshotMismatchError, match="CartPoleEnv"):
            restore_snapshot(other, snapshot)


def test_restore_into_a_subclass_layer_of_the_recorded_one():
    # rl_zoo3 patches gymnasium's TimeLimit with a subclass in the processes that import it (not in SubprocVecEnv
    # workers): a snapshot taken under TimeLimit must restore into PatchedTimeLimit and replay identically.
    from gymnasium.wrappers import TimeLimit

    from sb3_trpo_vine.snapshot import restore_snapshot, take_snapshot

    class PatchedTimeLimit(TimeLimit):
        pass

    source = TimeLimit(gym.make("CartPole-v1").unwrapped, max_episode_steps=30)
    source.reset(seed=3)
    for _ in range(5):
        source.step(0)
    target = PatchedTimeLimit(gym.make("CartPole-v1").unwrapped, max_episode_steps=30)
    target.reset(seed=9)
    snapshot = take_snapshot(source)
    restore_snapshot(target, snapshot)
    for action in [1, 0, 1, 1]:
        expected, got = source.step(action), target.step(action)
        assert np.array_equal(expected[0], got[0]) and expected[1:4] == got[1:4]
