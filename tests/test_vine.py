"""Vine sampling: estimators against closed forms, common random numbers, accounting, env isolation, errors."""

import pickle

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecFrameStack, VecNormalize

from sb3_trpo_vine import TRPOVine, VineRolloutBuffer
from sb3_trpo_vine.buffers import resolve_action_proposal
from sb3_trpo_vine.snapshot import SnapshotNotSupportedError, SnapshotWrapper, take_snapshot
from sb3_trpo_vine.vine import VineCollector, select_rollout_states

GAMMA = 0.9
HORIZON = 5
VALUE = 2.0  # constant critic used for the gamma^H V(s_H) bootstrap


class RewardIsActionEnv(gym.Env):
    """Constant observation; reward r(a) = a (Discrete) or -a^2 (Box); episodes end by time limit only."""

    def __init__(self, continuous: bool = False, episode_length: int = 1000):
        self.continuous = continuous
        self.observation_space = spaces.Box(-1.0, 1.0, (2,))
        self.action_space = spaces.Box(-10.0, 10.0, (1,)) if continuous else spaces.Discrete(2)
        self.episode_length = episode_length
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, dtype=np.float32), {}

    def step(self, action):
        self.t += 1
        reward = -(float(np.asarray(action).reshape(-1)[0]) ** 2) if self.continuous else float(action)
        return np.zeros(2, dtype=np.float32), reward, False, self.t >= self.episode_length, {}

    # snapshot protocol of sb3_trpo_vine.snapshot
    def get_snapshot_state(self):
        return self.t

    def set_snapshot_state(self, state):
        self.t = state


def constant_critic_model(env, **buffer_kwargs) -> TRPOVine:
    model = TRPOVine(
        "MlpPolicy",
        env,
        n_steps=64,
        batch_size=32,
        gamma=GAMMA,
        seed=0,
        n_critic_updates=0,
        policy_kwargs=dict(net_arch=[8]),
        rollout_buffer_kwargs=dict(n_rollout_states=32, rollout_length=HORIZON, **buffer_kwargs),
        rollout_buffer_class="vine",
    )
    with th.no_grad():
        model.policy.value_net.weight.zero_()
        model.policy.value_net.bias.fill_(VALUE)
    return model


def collect(model: TRPOVine) -> VineRolloutBuffer:
    _, callback = model._setup_learn(10**6)
    model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
    return model.rollout_buffer


def test_discrete_all_actions_q_and_surrogate_gradient_match_closed_form():
    model = constant_critic_model(DummyVecEnv([RewardIsActionEnv]))
    buffer = collect(model)
    assert buffer.action_proposal == "all" and buffer.q_values.shape == (32, 2)
    with th.no_grad():
        p1 = float(model.policy.get_distribution(th.zeros(1, 2)).distribution.probs[0, 1])
    tail = sum(GAMMA**h for h in range(1, HORIZON))
    # E[Q(s, a)] = a + p1 * sum_{h=1}^{H-1} gamma^h + gamma^H V
    expected = np.array([0.0, 1.0]) + p1 * tail + GAMMA**HORIZON * VALUE
    np.testing.assert_allclose(buffer.q_values.mean(axis=0), expected, atol=0.25)
    # common random numbers: both branches of a state replay the same later actions, so the difference is exact
    np.testing.assert_allclose(buffer.q_values[:, 1] - buffer.q_values[:, 0], 1.0, atol=1e-5)

    # Eq. 15 surrogate gradient == gradient of the true objective sum_a pi(a|s) Q(s, a) (differences are exact)
    surrogate, _, _ = buffer.policy_objective(normalize_advantage=True, sub_sampling_factor=1)
    params = model._actor_params
    vine_gradient = th.autograd.grad(surrogate(model.policy.get_distribution(surrogate.observations)), params)
    probs = model.policy.get_distribution(th.zeros(1, 2)).distribution.probs[0]
    true_gradient = th.autograd.grad(probs[1] * 1.0, params)
    for ours, reference in zip(vine_gradient, true_gradient, strict=True):
        assert th.allclose(ours, reference, atol=1e-5)


@pytest.mark.parametrize("continuous", [False, True])
def test_branch_value_targets_extend_the_critic_data(continuous):
    model = constant_critic_model(DummyVecEnv([lambda: RewardIsActionEnv(continuous=continuous)]), branch_value_targets=True)
    buffer = collect(model)
    _, observations, returns = buffer.policy_objective(normalize_advantage=True, sub_sampling_factor=1)
    assert len(observations) == len(returns) == 64 + 32
    if continuous:  # q = pi: the importance weights are 1 and V(s_n) is the mean over the K branches
        expected = buffer.q_values.mean(axis=1)
    else:  # every action branched: V(s_n) = sum_a pi_old(a|s_n) Q(s_n, a)
        with th.no_grad():
            probs = model.policy.get_distribution(th.zeros(1, 2)).distribution.probs[0].numpy()
        expected = (probs[None] * buffer.q_values).sum(axis=1)
    np.testing.assert_allclose(returns[-32:].numpy(), expected, rtol=1e-5)


def test_continuous_self_normalized_estimator_and_crn():
    model = constant_critic_model(
        DummyVecEnv([lambda: RewardIsActionEnv(continuous=True)]), n_actions_per_state=16, pooled_advantages=False
    )
    buffer = collect(model)
    assert buffer.action_proposal == "policy" and buffer.q_values.shape == (32, 16)
    actions = buffer.branch_actions[..., 0]
    clipped = np.clip(actions, -10, 10)
    # CRN: Q differences within a state are exactly the differences of the first rewards
    q_centered = buffer.q_values - buffer.q_values[:, :1]
    np.testing.assert_allclose(q_centered, -(clipped**2) + clipped[:, :1] ** 2, atol=1e-4)
    # the branched actions are drawn from pi and their log q is pi_old's log-probability
    with th.no_grad():
        distribution = model.policy.get_distribution(th.zeros(16, 2))
        log_prob = distribution.log_prob(th.as_tensor(actions[0]).reshape(16, 1))
    np.testing.assert_allclose(buffer.branch_log_proposal[0], log_prob.numpy(), atol=1e-5)

    # Eq. 16 gradient (self-normalised IS, no baseline) estimates grad E_{a~pi}[-a^2] = grad -(mu^2 + sigma^2)
    surrogate, _, _ = buffer.policy_objective(normalize_advantage=True, sub_sampling_factor=1)
    assert float(surrogate(model.policy.get_distribution(surrogate.observations)).detach()) == pytest.approx(
        float(buffer.q_values.mean()), rel=1e-5
    )
    log_std = model.policy.log_std
    estimate = th.autograd.grad(surrogate(model.policy.get_distribution(surrogate.observations)), log_std)[0]
    exact = th.autograd.grad(-(th.exp(2 * log_std)).sum(), log_std)[0]  # mu is ~0 at initialisation
    assert float(estimate) == pytest.approx(float(exact), rel=0.25)


def test_crn_off_gives_noisy_differences():
    model = constant_critic_model(DummyVecEnv([RewardIsActionEnv]), common_random_numbers=False)
    buffer = collect(model)
    differences = buffer.q_values[:, 1] - buffer.q_values[:, 0]
    assert differences.std() > 0.1  # independent later actions: the difference is no longer exactly 1


def test_time_limit_during_branch_bootstraps_and_counts_steps():
    # episodes of 10 steps: branches started near the end are cut by the time limit and bootstrapped with V
    model = constant_critic_model(DummyVecEnv([lambda: Monitor(RewardIsActionEnv(episode_length=10))]))
    buffer = collect(model)
    p1 = float(model.policy.get_distribution(th.zeros(1, 2)).distribution.probs[0, 1].detach())
    branch_steps = model.logger.name_to_value["vine/branch_steps"]
    assert model.num_timesteps == 64 + branch_steps
    assert branch_steps < 32 * 2 * HORIZON  # some branches hit the time limit
    assert model.logger.name_to_value["vine/trunk_steps"] == 64
    assert model.logger.name_to_value["vine/terminated_branch_fraction"] == 0.0
    # every Q is a + partial discounted tail + discounted V: within [a + gamma V * gamma^H-ish, a + tail + gamma V]
    assert buffer.q_values[:, 1] - buffer.q_values[:, 0] == pytest.approx(1.0, abs=1e-5)
    assert buffer.q_values.max() <= 1.0 + p1 * 0 + sum(GAMMA**h for h in range(1, HORIZON)) + GAMMA * VALUE + 1e-5


def trunk_q(buffer: VineRolloutBuffer, state: int, value: float) -> float:
    """Q of the trunk's action at a rollout state, from the trunk's next HORIZON rewards (no VecNormalize, no episode end)."""
    step, env = buffer.trunk_positions[state]
    discounts = GAMMA ** np.arange(HORIZON)
    return float(discounts @ buffer.rewards[step : step + HORIZON, env] + GAMMA**HORIZON * value)


def test_trunk_branch_reads_q_from_the_trunk_and_siblings_replay_its_noise():
    model = constant_critic_model(DummyVecEnv([lambda: RewardIsActionEnv(continuous=True)]), trunk_branch=True)
    buffer = collect(model)
    steps, envs = buffer.trunk_positions.T
    from_trunk = steps + HORIZON <= 64  # the trunk's continuation exists; never cut by the 1000-step limit here
    assert 0 < from_trunk.sum() < 32
    assert model.logger.name_to_value["vine/trunk_branch_fraction"] == pytest.approx(from_trunk.mean())
    # only the other branch of those states is simulated
    assert model.logger.name_to_value["vine/branch_steps"] == HORIZON * (from_trunk.sum() + 2 * (~from_trunk).sum())
    # branch 0 is the trunk's own action, with the trunk's Q
    actions = buffer.branch_actions[..., 0]
    np.testing.assert_allclose(actions[from_trunk, 0], buffer.actions[steps, envs, 0][from_trunk], atol=1e-5)
    expected = [trunk_q(buffer, state, VALUE) for state in np.flatnonzero(from_trunk)]
    np.testing.assert_allclose(buffer.q_values[from_trunk, 0], expected, rtol=1e-5)
    # the simulated sibling replays the trunk's later noise (CRN): the Q difference is the first rewards' difference
    clipped = np.clip(actions, -10, 10)
    first_rewards = -(clipped**2)
    q_differences = buffer.q_values[:, 1] - buffer.q_values[:, 0]
    np.testing.assert_allclose(q_differences, first_rewards[:, 1] - first_rewards[:, 0], atol=1e-4)


def test_trunk_branch_skips_states_whose_continuation_hits_a_time_limit():
    model = constant_critic_model(
        DummyVecEnv([lambda: RewardIsActionEnv(continuous=True, episode_length=10)]), trunk_branch=True
    )
    buffer = collect(model)
    steps = buffer.trunk_positions[:, 0]
    cut = [any((step + offset + 1) % 10 == 0 for offset in range(HORIZON)) for step in steps]
    from_trunk = (steps + HORIZON <= 64) & ~np.array(cut)
    assert 0 < from_trunk.sum() < 32
    assert model.logger.name_to_value["vine/trunk_branch_fraction"] == pytest.approx(from_trunk.mean())
    expected = [trunk_q(buffer, state, VALUE) for state in np.flatnonzero(from_trunk)]
    np.testing.assert_allclose(buffer.q_values[from_trunk, 0], expected, rtol=1e-5)


def test_trunk_branch_equals_a_simulated_branch_under_running_vec_normalize():
    # every action is the same constant (mean independent of the observation, sigma ~ 0): the trunk's continuation and
    # a simulated branch are the same trajectory, so their Q agree only if the trunk's rewards and V(s_H) go through
    # the statistics frozen at branch time, as the branch's do (they change at every trunk step in the first rollout)
    venv = VecNormalize(make_vec_env("Pendulum-v1", n_envs=2, seed=0))
    model = TRPOVine(
        "MlpPolicy",
        venv,
        n_steps=64,
        batch_size=32,
        seed=0,
        policy_kwargs=dict(net_arch=[8]),
        rollout_buffer_kwargs=dict(n_rollout_states=32, rollout_length=HORIZON, trunk_branch=True),
        rollout_buffer_class="vine",
    )
    with th.no_grad():
        model.policy.action_net.weight.zero_()
        model.policy.action_net.bias.fill_(0.5)
        model.policy.log_std.fill_(-20.0)
    buffer = collect(model)
    from_trunk = buffer.trunk_positions[:, 0] + HORIZON <= 64
    assert from_trunk.sum() > 10
    assert np.abs(buffer.q_values[:, 0]).max() > 0.1
    np.testing.assert_allclose(buffer.q_values[from_trunk, 0], buffer.q_values[from_trunk, 1], rtol=1e-4, atol=1e-5)


def test_trunk_branch_refuses_gsde():
    model = TRPOVine(
        "MlpPolicy",
        "Pendulum-v1",
        n_steps=64,
        batch_size=32,
        use_sde=True,
        rollout_buffer_kwargs=dict(n_rollout_states=8, trunk_branch=True),
        rollout_buffer_class="vine",
    )
    with pytest.raises(ValueError, match="use_sde=False or trunk_branch=False"):
        model.learn(64)


def test_trunk_branch_refuses_a_vec_normalize_whose_original_data_is_not_raw():
    venv = VecNormalize(VecNormalize(make_vec_env("Pendulum-v1", n_envs=2, seed=0)))
    model = TRPOVine(
        "MlpPolicy",
        venv,
        n_steps=64,
        batch_size=32,
        rollout_buffer_kwargs=dict(n_rollout_states=8, trunk_branch=True),
        rollout_buffer_class="vine",
    )
    with pytest.raises(ValueError, match="wrap VecNormalize directly around the base VecEnv"):
        model.learn(64)


def test_branching_leaves_training_env_monitor_and_vec_normalize_untouched(tmp_path):
    venv = VecNormalize(make_vec_env("Pendulum-v1", n_envs=2, seed=0, monitor_dir=str(tmp_path)))
    model = TRPOVine(
        "MlpPolicy",
        venv,
        n_steps=200,
        batch_size=100,
        seed=0,
        rollout_buffer_kwargs=dict(n_rollout_states=16, rollout_length=30),
        rollout_buffer_class="vine",
    )
    original_branch = VineCollector.branch
    seen, branch_steps = {}, []

    def checked_branch(self, buffer, trunk_noise=None):
        before = [pickle.dumps(take_snapshot(env)) for env in venv.venv.envs]
        stats = (venv.obs_rms.mean.copy(), venv.obs_rms.count, venv.ret_rms.var.copy(), venv.returns.copy())
        monitors = [(len(env.get_episode_rewards()), env.get_total_steps()) for env in venv.venv.envs]
        result = original_branch(self, buffer, trunk_noise)
        seen["same_env_state"] = before == [pickle.dumps(take_snapshot(env)) for env in venv.venv.envs]
        after = (venv.obs_rms.mean, venv.obs_rms.count, venv.ret_rms.var, venv.returns)
        seen["same_stats"] = all(np.array_equal(a, b) for a, b in zip(stats, after, strict=True))
        seen["same_monitors"] = monitors == [(len(env.get_episode_rewards()), env.get_total_steps()) for env in venv.venv.envs]
        branch_steps.append(result["branch_steps"])
        return result

    VineCollector.branch = checked_branch
    try:
        model.learn(400)
    finally:
        VineCollector.branch = original_branch
    assert seen == {"same_env_state": True, "same_stats": True, "same_monitors": True}
    # one iteration (its branch steps exhaust the budget): only the 2 trunk episodes of 200 steps reach Monitor CSVs
    # and ep_info_buffer, none of the 16 x 4 branches
    rows = sum(len(path.read_text().splitlines()) - 2 for path in tmp_path.glob("*.monitor.csv"))
    assert rows == 2 and len(model.ep_info_buffer) == 2
    assert branch_steps[0] > 0 and model.num_timesteps == 400 + branch_steps[0]


def test_subproc_vec_env_with_snapshot_wrapper_matches_dummy():
    def run(vec_env_cls):
        venv = make_vec_env("CartPole-v1", n_envs=2, seed=0, vec_env_cls=vec_env_cls, wrapper_class=SnapshotWrapper)
        model = TRPOVine(
            "MlpPolicy",
            venv,
            n_steps=64,
            batch_size=64,
            seed=0,
            policy_kwargs=dict(net_arch=[8]),
            rollout_buffer_kwargs=dict(n_rollout_states=8, rollout_length=20),
            rollout_buffer_class="vine",
        )
        model.learn(600)
        venv.close()
        return model.policy.state_dict(), model.num_timesteps

    (dummy, dummy_steps), (subproc, subproc_steps) = run(DummyVecEnv), run(SubprocVecEnv)
    assert dummy_steps == subproc_steps
    assert all(th.equal(dummy[k], subproc[k]) for k in dummy)


def test_vine_is_deterministic_and_loads_like_any_model(tmp_path):
    def run():
        return TRPOVine(
            "MlpPolicy",
            "Pendulum-v1",
            n_steps=64,
            batch_size=32,
            seed=3,
            policy_kwargs=dict(net_arch=[8]),
            rollout_buffer_kwargs=dict(n_rollout_states=8, rollout_length=10),
            rollout_buffer_class="vine",
        ).learn(500)

    first, second = run(), run()
    assert all(th.equal(first.policy.state_dict()[k], second.policy.state_dict()[k]) for k in first.policy.state_dict())
    assert isinstance(first.rollout_buffer, VineRolloutBuffer)
    first.save(tmp_path / "vine")
    loaded = TRPOVine.load(tmp_path / "vine", env=make_vec_env("Pendulum-v1", n_envs=1, seed=0))
    assert isinstance(loaded.rollout_buffer, VineRolloutBuffer) and loaded.rollout_buffer.n_rollout_states == 8
    obs = np.zeros((4, 3), dtype=np.float32)
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], first.predict(obs, deterministic=True)[0])
    loaded.learn(200, reset_num_timesteps=False)


@pytest.mark.parametrize(
    "env_id, kwargs",
    [
        ("Pendulum-v1", dict(use_sde=True, sde_sample_freq=4)),
        ("CartPole-v1", dict(rollout_buffer_kwargs=dict(action_proposal="uniform", n_actions_per_state=3))),
        ("CartPole-v1", dict(rollout_buffer_kwargs=dict(action_proposal="policy"))),
        ("CartPole-v1", dict(rollout_buffer_kwargs=dict(action_proposal="policy", trunk_branch=True))),
        ("Pendulum-v1", dict(rollout_buffer_kwargs=dict(trunk_branch=True, antithetic=True, n_actions_per_state=4))),
    ],
    ids=["gsde", "uniform-q", "policy-q-discrete", "trunk-branch-discrete", "trunk-branch-antithetic"],
)
def test_vine_variants_run(env_id, kwargs):
    kwargs.setdefault("rollout_buffer_kwargs", {})
    kwargs["rollout_buffer_kwargs"] = {"n_rollout_states": 8, "rollout_length": 10, **kwargs["rollout_buffer_kwargs"]}
    model = TRPOVine(
        "MlpPolicy",
        env_id,
        n_steps=64,
        batch_size=32,
        seed=0,
        policy_kwargs=dict(net_arch=[8]),
        **kwargs,
        rollout_buffer_class="vine",
    )
    model.learn(300)
    assert model.logger.name_to_value["train/n_updates"] >= 1


def test_vine_multi_input_policy():
    from stable_baselines3.common.envs import SimpleMultiObsEnv

    from sb3_trpo_vine.snapshot import register_attributes

    register_attributes(SimpleMultiObsEnv, ["state", "count"])
    model = TRPOVine(
        "MultiInputPolicy",
        SimpleMultiObsEnv(random_start=False),
        n_steps=64,
        batch_size=32,
        seed=0,
        rollout_buffer_kwargs=dict(n_rollout_states=8, rollout_length=10),
        rollout_buffer_class="vine",
    )
    model.learn(200)


def test_rollout_state_selection_is_uniform_without_replacement():
    mask = select_rollout_states(np.random.default_rng(0), 50, 4, 60)
    assert mask.shape == (50, 4) and mask.sum() == 60
    counts = sum(select_rollout_states(np.random.default_rng(seed), 10, 2, 5).astype(int) for seed in range(2000))
    np.testing.assert_allclose(counts / 2000, 0.25, atol=0.05)


class OpaqueEnv(RewardIsActionEnv):
    """Same dynamics, but no snapshot support."""

    get_snapshot_state = None
    set_snapshot_state = None


def test_unsnapshottable_env_errors_name_both_fixes():
    with pytest.raises(SnapshotNotSupportedError, match="OpaqueEnv") as error:
        TRPOVine("MlpPolicy", DummyVecEnv([OpaqueEnv]), n_steps=64, batch_size=32, rollout_buffer_class="vine")
    assert "register" in str(error.value) and "single_path" in str(error.value)
    TRPOVine("MlpPolicy", DummyVecEnv([OpaqueEnv]), n_steps=64, batch_size=32, rollout_buffer_class="single_path").learn(64)


def test_subproc_without_snapshot_wrapper_and_vec_frame_stack_are_refused():
    venv = make_vec_env("CartPole-v1", n_envs=2, vec_env_cls=SubprocVecEnv)
    try:
        with pytest.raises(SnapshotNotSupportedError, match="SnapshotWrapper"):
            TRPOVine("MlpPolicy", venv, n_steps=64, batch_size=32, rollout_buffer_class="vine")
    finally:
        venv.close()
    with pytest.raises(ValueError, match="FrameStackObservation"):
        TRPOVine(
            "MlpPolicy", VecFrameStack(make_vec_env("CartPole-v1"), 2), n_steps=64, batch_size=32, rollout_buffer_class="vine"
        )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_rollout_states=0), "n_rollout_states must be between 1 and the trunk size"),
        (dict(n_rollout_states=1000), "n_rollout_states"),
        (dict(n_actions_per_state=1, action_proposal="policy"), "n_actions_per_state must be >= 2"),
        (dict(rollout_length=0), "rollout_length must be >= 1"),
        (dict(action_proposal="best"), "action_proposal must be one of"),
        (dict(trunk_branch=True), "trunk_branch=True reuses the trunk's own action"),  # CartPole: every action branched
    ],
)
def test_vine_setting_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TRPOVine(
            "MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, rollout_buffer_kwargs=kwargs, rollout_buffer_class="vine"
        )


def test_proposal_rules():
    assert resolve_action_proposal("auto", spaces.Discrete(4)) == "all"
    assert resolve_action_proposal("auto", spaces.Discrete(18)) == "policy"
    assert resolve_action_proposal("auto", spaces.Box(-1, 1, (2,))) == "policy"
    with pytest.raises(ValueError, match="finite action space"):
        resolve_action_proposal("uniform", spaces.Box(-1, 1, (2,)))
    with pytest.raises(ValueError, match="enumerates a Discrete"):
        resolve_action_proposal("all", spaces.MultiBinary(3))


def test_vine_atari_cnn_policy_with_frame_stack_and_restorable_stickiness(tmp_path):
    import ale_py
    from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation, StickyAction

    gym.register_envs(ale_py)

    def make_atari():
        # ALE-level stickiness is not restorable: it is off there and done by gymnasium's StickyAction instead
        env = gym.make("ALE/Pong-v5", frameskip=1, repeat_action_probability=0.0)
        env = StickyAction(env, repeat_action_probability=0.25)
        env = AtariPreprocessing(env, frame_skip=4, screen_size=84, grayscale_obs=True)
        return FrameStackObservation(env, 4)

    venv = make_vec_env(make_atari, n_envs=2, seed=0)
    model = TRPOVine(
        "CnnPolicy",
        venv,
        n_steps=32,
        batch_size=32,
        seed=0,
        rollout_buffer_kwargs=dict(n_rollout_states=4, rollout_length=8, action_proposal="uniform", n_actions_per_state=3),
        rollout_buffer_class="vine",
    )
    model.learn(300)
    assert model.rollout_buffer.branch_actions.shape == (4, 3)
    assert model.num_timesteps > 64
    model.save(tmp_path / "pong")
    loaded = TRPOVine.load(tmp_path / "pong")
    observation = venv.reset()
    assert loaded.predict(observation)[0].shape == (2,)

    with pytest.raises(ValueError, match="repeat_action_probability"):
        TRPOVine(
            "CnnPolicy",
            make_vec_env(lambda: FrameStackObservation(AtariPreprocessing(gym.make("ALE/Pong-v5", frameskip=1)), 4), n_envs=1),
            n_steps=32,
            batch_size=32,
            rollout_buffer_class="vine",
        )


def test_loaded_vine_model_evaluates_on_any_vec_env_and_checks_snapshots_only_to_learn(tmp_path):
    TRPOVine("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, rollout_buffer_class="vine").save(tmp_path / "vine")
    venv = make_vec_env("CartPole-v1", n_envs=2, vec_env_cls=SubprocVecEnv)  # no SnapshotWrapper
    try:
        model = TRPOVine.load(tmp_path / "vine", env=venv)
        assert model.predict(venv.reset())[0].shape == (2,)
        with pytest.raises(SnapshotNotSupportedError, match="SnapshotWrapper"):
            model.learn(64)
    finally:
        venv.close()
