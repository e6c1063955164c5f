"""Non-finite environment data stops training with a clear error before it touches a parameter (both schemes)."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from sb3_trpo_vine import NonFiniteDataError, TRPOVine
from sb3_trpo_vine.trpo_vine import CriticState

N_STEPS = 128


class FaultAt(gym.Wrapper):
    """Returns one NaN or inf reward or observation at the ``fault_step``-th step (counted across episodes)."""

    def __init__(self, env: gym.Env, fault_step: int, field: str, value: float) -> None:
        super().__init__(env)
        self.fault_step, self.field, self.value = fault_step, field, value
        self.steps = 0

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        if self.steps == self.fault_step:
            if self.field == "reward":
                reward = self.value
            else:
                observation = np.full_like(observation, self.value)
        return observation, reward, terminated, truncated, info

    def get_snapshot_state(self):  # the step count belongs to the snapshot: branches continue it
        return self.steps

    def set_snapshot_state(self, state):
        self.steps = state


class ParametersAtRolloutStart(BaseCallback):
    """Keeps the policy parameters and critic optimizer state as they were when the last rollout began."""

    def _on_rollout_start(self) -> None:
        self.parameters = {name: param.detach().clone() for name, param in self.model.policy.named_parameters()}
        self.optimizer_state = [
            value.clone() for state in self.model.policy.optimizer.state.values() for value in state.values()
        ]

    def _on_step(self) -> bool:
        return True


def faulty_model(scheme: str, fault_step: int, field: str, value: float, normalize: bool = False) -> TRPOVine:
    fault = dict(fault_step=fault_step, field=field, value=value)
    env = make_vec_env("Pendulum-v1", n_envs=1, seed=0, wrapper_class=FaultAt, wrapper_kwargs=fault)
    if normalize:
        env = VecNormalize(env)
    vine_kwargs = dict(n_rollout_states=N_STEPS, rollout_length=10)  # every trunk state branches
    return TRPOVine(
        "MlpPolicy",
        env,
        n_steps=N_STEPS,
        batch_size=64,
        seed=0,
        policy_kwargs=dict(net_arch=[16]),
        rollout_buffer_class=scheme,
        rollout_buffer_kwargs=vine_kwargs if scheme == "vine" else None,
    )


def assert_last_good_iteration_kept(model: TRPOVine, snapshot: ParametersAtRolloutStart, tmp_path) -> None:
    for name, param in model.policy.named_parameters():
        assert th.isfinite(param).all(), name
        assert th.equal(param, snapshot.parameters[name]), name
    optimizer_state = [value for state in model.policy.optimizer.state.values() for value in state.values()]
    assert len(optimizer_state) == len(snapshot.optimizer_state) > 0
    for current, saved in zip(optimizer_state, snapshot.optimizer_state, strict=True):
        assert th.equal(current, saved)
    model.save(tmp_path / "after_error")
    loaded = TRPOVine.load(tmp_path / "after_error")
    for name, param in loaded.policy.named_parameters():
        assert th.equal(param, snapshot.parameters[name]), name
    observation = np.zeros((1, 3), dtype=np.float32)
    np.testing.assert_array_equal(
        loaded.predict(observation, deterministic=True)[0], model.predict(observation, deterministic=True)[0]
    )


# Trunk faults: the 300th env step lies in the third rollout of 128 steps (trunk step 300 - 257 = 43 there), after two
# good iterations. Vine branches every trunk state for 10 steps, so a branch from an earlier trunk state of the same
# rollout could meet the fault first... except that branches run after the trunk. They can reach it earlier only from
# the previous rollout: branches of rollout 3 (steps 257-384) end at step 394, so the vine fault at step 500
# (rollout 4, trunk step 500 - 385 = 115) is met by the trunk first.
@pytest.mark.parametrize("scheme", ["single_path", "vine"])
@pytest.mark.parametrize(
    "field, value, normalize, expected",
    [
        ("reward", np.nan, False, "Non-finite trunk reward"),
        ("reward", np.inf, False, "Non-finite trunk reward"),
        ("observation", np.nan, False, "Non-finite trunk observation"),
        ("observation", np.inf, True, "Non-finite trunk observation"),
    ],
    ids=["nan-reward", "inf-reward", "nan-observation", "inf-observation-vecnormalize"],
)
def test_trunk_fault_raises_and_keeps_the_last_good_iteration(scheme, field, value, normalize, expected, tmp_path):
    fault_step, trunk_step = (300, 43) if scheme == "single_path" else (500, 115)
    trunk_step += field == "observation"  # the observation a step returns is the one the next trunk step acts on
    model = faulty_model(scheme, fault_step, field, value, normalize)
    snapshot = ParametersAtRolloutStart()
    with pytest.raises(NonFiniteDataError, match=expected) as error:
        model.learn(10 * N_STEPS * (12 if scheme == "vine" else 1), callback=snapshot)
    message = str(error.value)
    assert f"env 0 at trunk step {trunk_step} " in message and "VecCheckNan" in message
    assert isinstance(error.value, ValueError)
    assert model._n_updates >= 2
    assert_last_good_iteration_kept(model, snapshot, tmp_path)


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("reward", np.nan, "Non-finite branch estimate Q"),
        ("reward", np.inf, "Non-finite branch estimate Q"),
        ("observation", np.nan, "Non-finite branch observation"),
        ("observation", np.inf, "Non-finite branch observation"),
    ],
)
def test_vine_branch_fault_raises_and_keeps_the_last_good_iteration(field, value, expected, tmp_path):
    # the 258th step is never reached by the trunks of rollouts 1-2 (steps 1-256), only by branches of rollout 2 that
    # start from trunk states 249-256 (branches of rollout 1 end at step 138)
    model = faulty_model("vine", 258, field, value)
    snapshot = ParametersAtRolloutStart()
    with pytest.raises(NonFiniteDataError, match=expected) as error:
        model.learn(100 * N_STEPS, callback=snapshot)
    assert "vine branch" in str(error.value) and "rollout state" in str(error.value)
    assert model._n_updates == 1
    assert_last_good_iteration_kept(model, snapshot, tmp_path)


def test_non_finite_critic_fit_is_undone(capsys):
    # Adam with lr 1e38 moves every critic weight by ~1e38 in the first minibatch: the next forward overflows
    model = TRPOVine("MlpPolicy", "Pendulum-v1", n_steps=N_STEPS, batch_size=64, seed=0, learning_rate=1e38, verbose=1)
    critic = CriticState(model.policy.optimizer)
    model.learn(N_STEPS)
    assert "critic fit 1 undone: non-finite critic loss" in capsys.readouterr().out
    for param, saved in zip(critic.parameters, critic.saved_parameters, strict=True):
        assert th.equal(param, saved)
    assert model.policy.optimizer.state_dict() == critic.saved_optimizer_state  # Adam's state: still empty
    assert all(th.isfinite(param).all() for param in model.policy.parameters())
    assert model._n_updates == 1


def test_finite_critic_fit_is_kept():
    model = TRPOVine("MlpPolicy", "Pendulum-v1", n_steps=N_STEPS, batch_size=64, seed=0)
    model.learn(N_STEPS)
    critic = CriticState(model.policy.optimizer)
    losses = model._fit_value_function(*model._policy_objective()[1:])
    assert critic.restore_if_non_finite(losses) is None
    assert any(not th.equal(param, saved) for param, saved in zip(critic.parameters, critic.saved_parameters, strict=True))
