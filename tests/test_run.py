"""TRPOVine end to end with SB3's machinery: spaces, policies, buffers, VecEnvs, callbacks, logger, seeds."""

import copy
import os

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback, CheckpointCallback, EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import (
    FakeImageEnv,
    IdentityEnv,
    IdentityEnvBox,
    IdentityEnvMultiBinary,
    IdentityEnvMultiDiscrete,
    SimpleMultiObsEnv,
)
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize

from sb3_trpo_vine import DictSinglePathRolloutBuffer, SinglePathRolloutBuffer, TRPOVine, VineRolloutBuffer
from sb3_trpo_vine import trpo_vine as trpo_vine_module
from sb3_trpo_vine.snapshot import SnapshotWrapper
from sb3_trpo_vine.trpo_vine import DEFAULT_TOTAL_TIMESTEPS

SMALL = dict(n_steps=64, batch_size=32, policy_kwargs=dict(net_arch=[16]), seed=0, rollout_buffer_class="single_path")
BUFFERS = {
    "single_path": dict(rollout_buffer_class="single_path"),
    "vine": dict(rollout_buffer_class="vine", rollout_buffer_kwargs=dict(n_rollout_states=8, rollout_length=8)),
}


@pytest.mark.parametrize(
    "env",
    [
        "CartPole-v1",
        "Pendulum-v1",
        IdentityEnv(4),
        IdentityEnvBox(ep_length=20),
        IdentityEnvMultiDiscrete(3),
        IdentityEnvMultiBinary(3),
    ],
    ids=["discrete", "box", "identity-discrete", "identity-box", "multidiscrete", "multibinary"],
)
@pytest.mark.parametrize("buffer", list(BUFFERS))
def test_action_spaces(env, buffer):
    model = TRPOVine("MlpPolicy", env, **{**SMALL, **BUFFERS[buffer]}).learn(256)
    if buffer == "single_path":
        assert model.num_timesteps == 256 and model._n_updates == 4
    else:  # branch steps count: fewer iterations for the same budget
        assert model.num_timesteps >= 256 and model._n_updates >= 1


def test_cnn_policy_on_images_and_critic_leaves_shared_extractor_alone():
    env = FakeImageEnv(screen_height=36, screen_width=36, n_channels=1, discrete=True)
    model = TRPOVine(
        "CnnPolicy",
        env,
        n_steps=32,
        batch_size=16,
        seed=0,
        rollout_buffer_class="single_path",
        policy_kwargs=dict(features_extractor_kwargs=dict(features_dim=16)),
    )
    model.learn(64)
    # The extractor is shared with the actor: the critic's optimizer must not hold it, so fitting V leaves
    # every actor parameter (extractor included) untouched and moves only the value head.
    actor_ids = {id(p) for p in model._actor_params}
    extractor = {id(p) for p in model.policy.features_extractor.parameters()}
    assert extractor <= actor_ids
    critic_ids = {id(p) for group in model.policy.optimizer.param_groups for p in group["params"]}
    assert not critic_ids & actor_ids
    actor_before = [p.detach().clone() for p in model._actor_params]
    value_before = model.policy.value_net.weight.detach().clone()
    _, observations, returns = model._policy_objective()
    model._fit_value_function(observations, returns)
    assert all(th.equal(a, p) for a, p in zip(actor_before, model._actor_params, strict=True))
    assert not th.equal(value_before, model.policy.value_net.weight)


def test_separate_extractors_critic_updates_its_own_extractor():
    env = FakeImageEnv(screen_height=36, screen_width=36, n_channels=1, discrete=True)
    model = TRPOVine(
        "CnnPolicy",
        env,
        n_steps=32,
        batch_size=16,
        seed=0,
        rollout_buffer_class="single_path",
        policy_kwargs=dict(share_features_extractor=False, features_extractor_kwargs=dict(features_dim=16)),
    )
    critic_ids = {id(p) for group in model.policy.optimizer.param_groups for p in group["params"]}
    assert {id(p) for p in model.policy.vf_features_extractor.parameters()} <= critic_ids
    model.learn(32)


@pytest.mark.parametrize("share_features_extractor", [True, False])
def test_critic_fit_with_precomputed_features_equals_the_plain_fit(share_features_extractor):
    kwargs = dict(policy_kwargs=dict(net_arch=[16], share_features_extractor=share_features_extractor))
    model = TRPOVine("MlpPolicy", "Pendulum-v1", **{**SMALL, **kwargs}).learn(64)
    _, observations, returns = model._policy_objective()
    state = {key: value.clone() for key, value in model.policy.state_dict().items()}
    optimizer_state = copy.deepcopy(model.policy.optimizer.state_dict())
    np.random.seed(0)
    losses = model._fit_value_function(observations, returns)
    fitted = model.policy.value_net.weight.detach().clone()

    # reference: SB3's predict_values on raw observations, same minibatches
    model.policy.load_state_dict(state)
    model.policy.optimizer.load_state_dict(optimizer_state)
    np.random.seed(0)
    reference_losses = []
    for _ in range(model.n_critic_updates):
        permutation = th.from_numpy(np.random.permutation(len(returns)))
        for start in range(0, len(returns), model.batch_size):
            indices = permutation[start : start + model.batch_size]
            loss = th.nn.functional.mse_loss(returns[indices], model.policy.predict_values(observations[indices]).flatten())
            model.policy.optimizer.zero_grad()
            loss.backward()
            model.policy.optimizer.step()
            reference_losses.append(loss.item())
    np.testing.assert_allclose(losses, reference_losses, rtol=1e-5)
    assert th.allclose(fitted, model.policy.value_net.weight, atol=1e-6)


def test_multi_input_policy_uses_dict_buffer():
    model = TRPOVine("MultiInputPolicy", SimpleMultiObsEnv(random_start=False), **SMALL)
    assert isinstance(model.rollout_buffer, DictSinglePathRolloutBuffer)
    model.learn(128)


def test_gsde_and_sub_sampling():
    model = TRPOVine(
        "MlpPolicy",
        "Pendulum-v1",
        use_sde=True,
        sde_sample_freq=4,
        sub_sampling_factor=2,
        fisher_sub_sampling_factor=4,
        **SMALL,
    )
    model.learn(128)
    assert model.logger.name_to_value["train/is_line_search_success"] in (0.0, 1.0)


class CountingBuffer(RolloutBuffer):
    """A user's own RolloutBuffer subclass with an extra constructor argument."""

    def __init__(self, *args, marker: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.marker = marker
        self.n_adds = 0

    def add(self, *args, **kwargs):
        self.n_adds += 1
        super().add(*args, **kwargs)


def test_rollout_buffer_class_choices():
    defaults = {key: value for key, value in SMALL.items() if key != "rollout_buffer_class"}
    assert type(TRPOVine("MlpPolicy", "CartPole-v1", **defaults).rollout_buffer) is SinglePathRolloutBuffer
    vine = TRPOVine("MlpPolicy", "CartPole-v1", **{**defaults, "rollout_buffer_class": "vine"}).rollout_buffer
    assert type(vine) is VineRolloutBuffer
    model = TRPOVine(
        "MlpPolicy", "CartPole-v1", rollout_buffer_class=CountingBuffer, rollout_buffer_kwargs=dict(marker=7), **defaults
    ).learn(128)
    assert model.rollout_buffer.marker == 7 and model.rollout_buffer.n_adds == 128  # two rollouts of 64 steps
    with pytest.raises(ValueError, match=r"\['n_rollout_states'\] are vine settings.*pass rollout_buffer_class='vine'"):
        TRPOVine("MlpPolicy", "CartPole-v1", rollout_buffer_kwargs=dict(n_rollout_states=8), **defaults)
    with pytest.raises(ValueError, match="Unknown rollout_buffer_class 'mystery'"):
        TRPOVine("MlpPolicy", "CartPole-v1", **{**SMALL, "rollout_buffer_class": "mystery"})


@pytest.mark.parametrize("buffer", list(BUFFERS))
def test_vec_envs_and_vec_normalize(buffer):
    # SnapshotWrapper lets the vine collector reach the envs inside SubprocVecEnv workers
    subproc = make_vec_env("CartPole-v1", n_envs=2, vec_env_cls=SubprocVecEnv, seed=0, wrapper_class=SnapshotWrapper)
    try:
        TRPOVine("MlpPolicy", subproc, **{**SMALL, **BUFFERS[buffer]}).learn(256)
    finally:
        subproc.close()
    normalized = VecNormalize(make_vec_env("Pendulum-v1", n_envs=2, seed=0))
    TRPOVine("MlpPolicy", normalized, **{**SMALL, **BUFFERS[buffer]}).learn(256)
    assert normalized.obs_rms.count >= 128  # trunk steps only: branch observations never update the statistics


def test_time_limit_truncation_bootstraps_with_the_value_function():
    model = TRPOVine("MlpPolicy", "Pendulum-v1", n_steps=200, batch_size=50, seed=0, policy_kwargs=dict(net_arch=[8]))
    with th.no_grad():
        model.policy.value_net.bias.fill_(100.0)  # V = 100 + small: the bootstrapped reward is visible
        model.policy.value_net.weight.zero_()
    model.learn(200)
    rewards = model.rollout_buffer.rewards[:, 0]
    # Pendulum rewards are in [-16.3, 0]; the 200th step is a time-limit cut and gets + gamma * V(s_T)
    assert rewards[:-1].max() <= 0.0
    assert rewards[-1] == pytest.approx(model.gamma * 100.0, abs=17.0)


class StepCounter(BaseCallback):
    def __init__(self):
        super().__init__()
        self.n_calls_seen = 0
        self.rollout_ends = 0

    def _on_step(self) -> bool:
        self.n_calls_seen += 1
        return True

    def _on_rollout_end(self) -> None:
        self.rollout_ends += 1


def test_callbacks_progress_bar_logger_and_tensorboard(tmp_path):
    counter = StepCounter()
    eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=5)
    evaluation = EvalCallback(
        eval_env,
        eval_freq=64,
        n_eval_episodes=2,
        best_model_save_path=str(tmp_path / "best"),
        log_path=str(tmp_path / "eval"),
        verbose=0,
    )
    checkpoint = CheckpointCallback(save_freq=64, save_path=str(tmp_path / "ckpt"), name_prefix="trpo_vine")
    model = TRPOVine("MlpPolicy", "CartPole-v1", tensorboard_log=str(tmp_path / "tb"), **SMALL)
    model.learn(192, callback=[counter, evaluation, checkpoint], progress_bar=True)
    assert counter.n_calls_seen == 192 and counter.rollout_ends == 3
    np.testing.assert_array_equal(np.load(tmp_path / "eval" / "evaluations.npz")["timesteps"], [64, 128, 192])
    assert (tmp_path / "best" / "best_model.zip").exists()
    assert sorted(os.listdir(tmp_path / "ckpt")) == [f"trpo_vine_{n}_steps.zip" for n in (128, 192, 64)]
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(tmp_path / "tb" / "TRPOVine_1"))


def test_logged_keys(tmp_path):
    model = TRPOVine("MlpPolicy", "Pendulum-v1", **SMALL)
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(128)
    header = (tmp_path / "progress.csv").read_text().splitlines()[0].split(",")
    for key in (
        "train/policy_objective",
        "train/kl_divergence_loss",
        "train/value_loss",
        "train/explained_variance",
        "train/is_line_search_success",
        "train/std",
        "train/line_search_steps",
        "train/cg_residual",
        "train/step_size",
        "train/surrogate_improvement",
        "train/learning_rate",
        "time/fps",
    ):
        assert key in header, key


@pytest.mark.parametrize("buffer", list(BUFFERS))
def test_save_load_predict_and_resume(tmp_path, buffer):
    model = TRPOVine("MlpPolicy", "Pendulum-v1", **{**SMALL, **BUFFERS[buffer]}).learn(128)
    observations = np.random.default_rng(0).uniform(-1, 1, (10, 3)).astype(np.float32)
    actions, _ = model.predict(observations, deterministic=True)
    model.save(tmp_path / "model.zip")
    loaded = TRPOVine.load(tmp_path / "model.zip", env=make_vec_env("Pendulum-v1", n_envs=1, seed=0))
    np.testing.assert_array_equal(loaded.predict(observations, deterministic=True)[0], actions)
    assert loaded.target_kl == model.target_kl and loaded.n_steps == model.n_steps
    for p, q in zip(model.policy.state_dict().values(), loaded.policy.state_dict().values(), strict=True):
        assert th.equal(p, q)
    assert loaded.policy.optimizer.state_dict()["state"].keys() == model.policy.optimizer.state_dict()["state"].keys()
    assert type(loaded.rollout_buffer) is type(model.rollout_buffer)
    steps_before = loaded.num_timesteps
    loaded.learn(64, reset_num_timesteps=False)
    assert loaded.num_timesteps >= steps_before + 64 and loaded._n_updates == model._n_updates + 1


def annealed_radius(progress_remaining: float) -> float:
    return 0.02 * progress_remaining


def test_target_kl_schedule_sets_each_update_radius(tmp_path, monkeypatch):
    steps = []

    def recording_step(*args, **kwargs):
        info = trust_region_step(*args, **kwargs)
        steps.append((kwargs["target_kl"], info))
        return info

    trust_region_step = trpo_vine_module.trust_region_step
    monkeypatch.setattr(trpo_vine_module, "trust_region_step", recording_step)
    model = TRPOVine("MlpPolicy", "Pendulum-v1", **{**SMALL, "target_kl": annealed_radius})
    model.learn(4 * 64)
    # the radius at the progress remaining after each rollout: 3/4, 1/2, 1/4, 0 of 0.02
    assert [radius for radius, _ in steps] == pytest.approx([0.015, 0.01, 0.005, 0.0])
    for radius, info in steps[:-1]:
        assert info.accepted and 0.3 * radius < info.kl <= radius
    assert not steps[-1][1].accepted and "schedule" in steps[-1][1].skip_reason
    assert model.logger.name_to_value["train/target_kl"] == 0.0

    model.save(tmp_path / "model.zip")
    loaded = TRPOVine.load(tmp_path / "model.zip")
    assert loaded.target_kl_schedule(0.5) == pytest.approx(0.01)


def test_evaluate_policy_on_loaded_model(tmp_path):
    from stable_baselines3.common.evaluation import evaluate_policy

    model = TRPOVine("MlpPolicy", "CartPole-v1", **SMALL).learn(64)
    model.save(tmp_path / "m")
    mean_reward, _ = evaluate_policy(TRPOVine.load(tmp_path / "m"), make_vec_env("CartPole-v1", n_envs=1), n_eval_episodes=2)
    assert mean_reward > 0


def test_same_seed_same_parameters():
    def run(seed):
        env = VecNormalize(make_vec_env("Pendulum-v1", n_envs=2, seed=seed))
        return TRPOVine("MlpPolicy", env, **{**SMALL, "seed": seed}).learn(256).policy.state_dict()

    first, second, other = run(1), run(1), run(2)
    assert all(th.equal(first[k], second[k]) for k in first)
    assert not all(th.equal(first[k], other[k]) for k in first)


class StopAfterFirstRollout(BaseCallback):
    def _on_rollout_end(self) -> None:
        self.stop = True

    def _on_step(self) -> bool:
        return not getattr(self, "stop", False)


def test_learn_without_arguments_uses_the_documented_budget():
    model = TRPOVine("MlpPolicy", "CartPole-v1", **SMALL)
    model.learn(callback=StopAfterFirstRollout())  # the callback ends it early; the budget is what learn() set
    assert model._total_timesteps == DEFAULT_TOTAL_TIMESTEPS


class NoSnapshotDict(gym.Env):
    observation_space = gym.spaces.Box(-1, 1, (2,))
    action_space = gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(2)))

    def reset(self, *, seed=None, options=None):
        return np.zeros(2, dtype=np.float32), {}

    def step(self, action):
        return np.zeros(2, dtype=np.float32), 0.0, False, False, {}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(target_kl=0.0), "target_kl must be > 0"),
        (dict(target_kl=-1.0), "target_kl"),
        (dict(target_kl=lambda progress_remaining: 0.0), "target_kl must be > 0"),
        (dict(cg_max_steps=0), "cg_max_steps must be an integer >= 1"),
        (dict(line_search_shrinking_factor=1.0), "line_search_shrinking_factor must be strictly between 0 and 1"),
        (dict(line_search_shrinking_factor=0.0), "line_search_shrinking_factor"),
        (dict(line_search_max_iter=0), "line_search_max_iter"),
        (dict(cg_damping=-0.1), "cg_damping"),
        (dict(gamma=1.5), "gamma must be in"),
        (dict(sub_sampling_factor=0), "sub_sampling_factor"),
        (dict(n_steps=64, batch_size=65), "batch_size=65 is larger than the rollout"),
        (dict(n_steps=1, batch_size=1), "n_steps \\* n_envs must be greater than 1"),
    ],
)
def test_hyperparameter_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TRPOVine("MlpPolicy", "CartPole-v1", **{**dict(n_steps=64, batch_size=32), **kwargs})


def test_unsupported_action_space_error():
    with pytest.raises(ValueError, match="supports Box, Discrete, MultiDiscrete and MultiBinary"):
        TRPOVine("MlpPolicy", DummyVecEnv([NoSnapshotDict]))


def test_corrupt_and_foreign_saved_models(tmp_path):
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes(b"this is not a zip file")
    with pytest.raises(ValueError, match="not a valid SB3 zip"):
        TRPOVine.load(corrupt)
    from stable_baselines3 import PPO

    PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32).save(tmp_path / "ppo")
    with pytest.raises(ValueError, match="was not saved by TRPOVine"):
        TRPOVine.load(tmp_path / "ppo.zip")
    # a TRPOVine zip whose weights do not fit its policy (e.g. edited or truncated by hand)
    model = TRPOVine("MlpPolicy", "CartPole-v1", **SMALL)
    model.save(tmp_path / "ours")
    import zipfile

    with zipfile.ZipFile(tmp_path / "ours.zip") as source, zipfile.ZipFile(tmp_path / "bad.zip", "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "policy.pth":
                other = TRPOVine("MlpPolicy", "CartPole-v1", policy_kwargs=dict(net_arch=[8]), n_steps=64, batch_size=32)
                other.save(tmp_path / "other")
                with zipfile.ZipFile(tmp_path / "other.zip") as other_zip:
                    data = other_zip.read("policy.pth")
            target.writestr(item, data)
    with pytest.raises(ValueError, match="parameters do not match"):
        TRPOVine.load(tmp_path / "bad.zip")


def test_every_sb3_contrib_trpo_hyperparameter_has_the_same_name_and_default():
    import inspect

    from sb3_contrib import TRPO

    ours = inspect.signature(TRPOVine.__init__).parameters
    theirs = inspect.signature(TRPO.__init__).parameters
    for name, parameter in theirs.items():
        assert name in ours, name
        assert ours[name].default == parameter.default, name


@pytest.mark.parametrize(
    "observation_space, action_space",
    [
        (gym.spaces.Box(-1, 1, (3, 2)), gym.spaces.Box(-1, 1, (2,))),
        (gym.spaces.Discrete(5), gym.spaces.Discrete(3)),
        (gym.spaces.Box(-1, 1, (4,)), gym.spaces.MultiDiscrete([2, 3])),
        (gym.spaces.Box(-1, 1, (4,)), gym.spaces.MultiBinary(3)),
    ],
    ids=["box", "discrete", "multidiscrete", "multibinary"],
)
def test_direct_add_stores_what_sb3_add_stores(observation_space, action_space):
    n_envs, n_steps = 3, 4
    ours = SinglePathRolloutBuffer(n_steps, observation_space, action_space, n_envs=n_envs)
    reference = RolloutBuffer(n_steps, observation_space, action_space, n_envs=n_envs)
    for _ in range(n_steps):
        observations = np.stack([observation_space.sample() for _ in range(n_envs)])
        actions = np.stack([action_space.sample() for _ in range(n_envs)])
        if isinstance(action_space, gym.spaces.Discrete):
            actions = actions.reshape(-1, 1)  # as on-policy collection hands it over
        step = (observations, actions, np.random.randn(n_envs), np.random.rand(n_envs) < 0.5)
        values, log_probs = th.randn(n_envs, 1), th.randn(n_envs)
        reference.add(*step, values, log_probs)
        ours.add(*step, values.numpy(), log_probs)  # numpy or tensor values
    assert ours.full and reference.full
    for name in ("observations", "actions", "rewards", "episode_starts", "values", "log_probs"):
        np.testing.assert_array_equal(getattr(ours, name), getattr(reference, name), err_msg=name)
