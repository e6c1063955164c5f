"""RayVecEnv: same results as DummyVecEnv, VecEnv API, branch pool, recovery from dead actors, bounded waits."""

import importlib.util
import os
import shutil
import sys
import tempfile
import time

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.monitor import Monitor

import sb3_trpo_vine
from sb3_trpo_vine import TRPOVine
from sb3_trpo_vine.snapshot import SnapshotWrapper, vec_take_snapshots

ray = pytest.importorskip("ray")

from sb3_trpo_vine.distributed import RayActorFailedError, RayBranchPool, RayVecEnv  # noqa: E402

# Classes of this module (test wrappers) are shipped to the actors by value: the workers cannot import it
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

VINE_KWARGS = dict(n_rollout_states=8, n_actions_per_state=2, rollout_length=10)
SHORT_EPISODES = dict(max_episode_steps=5)


@pytest.fixture(scope="module", autouse=True)
def ray_instance():
    """One local Ray instance per test process: pytest-xdist workers each get their own, in their own directory."""
    if ray.is_initialized():
        yield
        return
    temp_dir = tempfile.mkdtemp(prefix="ray-")  # short: Ray's socket paths live under it
    # The actors must import the same sb3_trpo_vine as this process: Ray's processes inherit the environment of ray.init
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(sb3_trpo_vine.__file__)))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp_dir)
    yield
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)


def ray_vec_env(n_envs: int, **kwargs) -> RayVecEnv:
    """
    CartPole envs in actors that reserve a fraction of a CPU: several RayVecEnvs coexist in the 2-CPU instance. The
    startup timeout leaves room for a loaded machine: an actor's process took over 60 s to start next to two training
    runs and the two test workers on 2 cores.
    """
    return RayVecEnv("CartPole-v1", n_envs, actor_options={"num_cpus": 0.25}, startup_timeout=180.0, **kwargs)


@pytest.fixture(scope="module")
def short_episodes_env():
    """Three envs on two actors (uneven split), episodes truncated after 5 steps."""
    venv = ray_vec_env(3, n_actors=2, seed=0, env_kwargs=SHORT_EPISODES)
    yield venv
    venv.close()


@pytest.fixture(scope="module")
def cartpole_env():
    venv = ray_vec_env(2, n_actors=2, seed=0)
    yield venv
    venv.close()


class SlowDown(gym.Wrapper):
    """Sleeps ``delay`` seconds in every step (not snapshottable: no handler is registered)."""

    delay = 0.0

    def set_delay(self, delay: float) -> None:
        self.delay = delay

    def step(self, action):
        time.sleep(self.delay)
        return self.env.step(action)


def wait_until_dead(actor) -> None:
    """Wait until Ray reports the actor dead: `ray.kill` only sends the request."""
    for _ in range(100):
        try:
            ray.get(actor.describe.remote(), timeout=30)
        except ray.exceptions.RayActorError:
            return
        time.sleep(0.1)
    raise AssertionError("the actor kept answering after it was killed")


def kill(actor) -> None:
    ray.kill(actor)
    wait_until_dead(actor)


class KillActor(BaseCallback):
    """Kills an actor of the training RayVecEnv after a given trunk step."""

    def __init__(self, at_call: int, actor: int):
        super().__init__()
        self.at_call = at_call
        self.actor = actor

    def _on_step(self) -> bool:
        if self.n_calls == self.at_call:
            kill(self.training_env.actors[self.actor])
        return True


def learn(env, rollout_buffer_class: str, callback: BaseCallback | None = None) -> TRPOVine:
    kwargs = dict(rollout_buffer_kwargs=VINE_KWARGS) if rollout_buffer_class == "vine" else {}
    model = TRPOVine(
        "MlpPolicy",
        env,
        n_steps=64,
        batch_size=64,
        n_critic_updates=2,
        seed=0,
        policy_kwargs=dict(net_arch=[8]),
        rollout_buffer_class=rollout_buffer_class,
        **kwargs,
    )
    return model.learn(500, callback=callback)


def parameters(model: TRPOVine) -> np.ndarray:
    return th.nn.utils.parameters_to_vector(model.policy.parameters()).detach().numpy()


def assert_same_run(reference: TRPOVine, model: TRPOVine) -> None:
    assert model.num_timesteps == reference.num_timesteps
    assert np.array_equal(parameters(model), parameters(reference))
    assert [info["r"] for info in model.ep_info_buffer] == [info["r"] for info in reference.ep_info_buffer]


@pytest.mark.parametrize("rollout_buffer_class", ["vine", "single_path"])
def test_trpo_vine_matches_dummy_vec_env(cartpole_env, rollout_buffer_class):
    reference = learn(make_vec_env("CartPole-v1", 2, seed=0), rollout_buffer_class)
    monitor_steps = np.array(cartpole_env.get_attr("total_steps"))
    model = learn(cartpole_env, rollout_buffer_class)
    assert_same_run(reference, model)
    # Branch steps never reach the training envs' Monitors
    assert np.array_equal(cartpole_env.get_attr("total_steps") - monitor_steps, reference.env.get_attr("total_steps"))
    if rollout_buffer_class == "vine":
        assert isinstance(model._vine_collector.branch_pool, RayBranchPool)


def test_step_and_reset_match_dummy_vec_env(short_episodes_env):
    reference = make_vec_env("CartPole-v1", 3, seed=0, env_kwargs=SHORT_EPISODES)
    short_episodes_env.seed(3)
    reference.seed(3)
    assert np.array_equal(short_episodes_env.reset(), reference.reset())
    rng = np.random.default_rng(0)
    truncations = 0
    for _ in range(12):
        actions = rng.integers(0, 2, size=3)
        observations, rewards, dones, infos = short_episodes_env.step(actions)
        expected_observations, expected_rewards, expected_dones, expected_infos = reference.step(actions)
        assert np.array_equal(observations, expected_observations) and observations.dtype == expected_observations.dtype
        assert np.array_equal(rewards, expected_rewards) and rewards.dtype == expected_rewards.dtype
        assert np.array_equal(dones, expected_dones)
        for info, expected in zip(infos, expected_infos, strict=True):
            assert info.keys() == expected.keys()
            assert info["TimeLimit.truncated"] == expected["TimeLimit.truncated"]
            truncations += info["TimeLimit.truncated"]
            if "terminal_observation" in expected:
                assert np.array_equal(info["terminal_observation"], expected["terminal_observation"])
                assert info["episode"]["r"] == expected["episode"]["r"]
        assert short_episodes_env.reset_infos == reference.reset_infos
    assert truncations > 0  # the 5-step time limit was hit


def test_attributes_and_methods_follow_indices(short_episodes_env):
    venv = short_episodes_env
    venv.reset()
    venv.step(np.zeros(3, dtype=int))
    # resolved through the wrappers, in the order of the indices, across actors
    assert venv.get_attr("_elapsed_steps", indices=[2, 0]) == [1, 1]
    assert venv.get_attr("spec", indices=1)[0].id == "CartPole-v1"
    venv.set_attr("note", "set", indices=[2])
    assert venv.get_attr("note", indices=[2]) == ["set"]
    assert not venv.has_attr("note")
    with pytest.raises(AttributeError):
        venv.get_attr("note", indices=[0])
    assert venv.env_method("get_wrapper_attr", "note", indices=[2, 2]) == ["set", "set"]
    states = venv.env_method("get_wrapper_attr", "state", indices=[1, 2])
    assert np.array_equal(states[1], venv.get_attr("state", indices=2)[0])
    assert venv.env_is_wrapped(Monitor) == [True, True, True]
    assert venv.env_is_wrapped(SnapshotWrapper, indices=[1]) == [True]
    assert venv.env_is_wrapped(gym.wrappers.FrameStackObservation) == [False, False, False]
    if importlib.util.find_spec("pygame") is not None:  # CartPole renders with pygame
        images = venv.get_images()
        assert len(images) == 3 and images[0].ndim == 3


def test_dead_actors_are_replaced_and_work_redone(cartpole_env, monkeypatch):
    """Kill actors in the trunk and during branch rollouts: the run is identical to an undisturbed DummyVecEnv run."""
    reference = learn(make_vec_env("CartPole-v1", 2, seed=0), "vine")
    step = RayBranchPool.step
    calls = []

    def step_after_killing(pool, indices, actions):
        calls.append(len(indices))
        if len(calls) == 4:
            kill(pool.venv.actors[1])
        return step(pool, indices, actions)

    # An older pool on the same actors' branch envs: only the pool in use may be replayed after a death
    cartpole_env.reset()
    stale_pool = cartpole_env.make_branch_pool()
    stale_pool.restore(vec_take_snapshots(cartpole_env, [0, 1]))
    stale_pool.step(np.arange(2), np.ones(2, dtype=int))
    monkeypatch.setattr(RayBranchPool, "step", step_after_killing)
    restarts = np.array(cartpole_env.restarts)
    with pytest.warns(UserWarning, match="actor 0 .* died during `step`"):
        model = learn(cartpole_env, "vine", callback=KillActor(at_call=40, actor=0))
    assert np.array_equal(cartpole_env.restarts - restarts, [1, 1])
    assert_same_run(reference, model)


def test_death_without_recovery_raises_clear_error():
    venv = ray_vec_env(2, n_actors=1, seed=0, max_restarts=0)
    venv.reset()
    kill(venv.actors[0])
    with pytest.raises(RayActorFailedError, match=r"actor 0 .*holding envs \[0, 1\]: died during `step`.*max_restarts"):
        venv.step(np.zeros(2, dtype=int))
    with pytest.raises(RayActorFailedError):  # the VecEnv stays failed
        venv.reset()
    venv.close()


def test_envs_without_snapshots_cannot_be_recovered():
    venv = ray_vec_env(1, seed=0, wrapper_class=SlowDown)
    assert venv.snapshot_problems  # SlowDown has no snapshot handler
    venv.reset()
    kill(venv.actors[0])
    with pytest.raises(RayActorFailedError, match="cannot be snapshotted"):
        venv.step(np.zeros(1, dtype=int))
    venv.close()


def test_hung_actor_times_out_and_close_stops_actors():
    venv = ray_vec_env(2, n_actors=2, seed=0, wrapper_class=SlowDown, timeout=1.0)
    venv.reset()
    venv.env_method("set_delay", 30.0, indices=[1])
    start = time.perf_counter()
    with pytest.raises(RayActorFailedError, match=r"actor 1 .* did not answer `step` within timeout=1.0 s"):
        venv.step(np.zeros(2, dtype=int))
    assert time.perf_counter() - start < 10
    venv.close()
    venv.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        venv.step(np.zeros(2, dtype=int))
    for actor in venv.actors:
        wait_until_dead(actor)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="n_actors"):
        ray_vec_env(2, n_actors=3)
