"""The numpy critic fit against autograd + torch's Adam: gradients, whole fits, optimizer state, and when it applies."""

import copy

import numpy as np
import pytest
import threadpoolctl
import torch as th
from torch import nn

from sb3_trpo_vine import TRPOVine
from sb3_trpo_vine.critic import NumpyMlpCriticFit, fit_value_function

SMALL = dict(n_steps=64, batch_size=32, n_critic_updates=3, seed=0, rollout_buffer_class="single_path")


def critic_model(**policy_kwargs) -> TRPOVine:
    return TRPOVine("MlpPolicy", "Pendulum-v1", policy_kwargs=policy_kwargs, **SMALL)


def regression_data(model: TRPOVine, n_samples: int = 200) -> tuple[th.Tensor, th.Tensor]:
    generator = th.Generator().manual_seed(1)
    features = th.randn(n_samples, model.policy.features_dim, generator=generator)
    return features, 3.0 * th.randn(n_samples, generator=generator) + 5.0


def autograd_fit(model: TRPOVine, features: th.Tensor, returns: th.Tensor) -> list[float]:
    policy = model.policy

    def predict(batch: th.Tensor) -> th.Tensor:
        return policy.value_net(policy.mlp_extractor.forward_critic(batch))

    return fit_value_function(predict, features, returns, policy.optimizer, n_epochs=4, batch_size=48)


def critic_state(model: TRPOVine) -> tuple[list[th.Tensor], dict]:
    params = [param.detach().clone() for group in model.policy.optimizer.param_groups for param in group["params"]]
    return params, copy.deepcopy(model.policy.optimizer.state_dict())


@pytest.mark.parametrize(
    "policy_kwargs",
    [
        dict(),
        dict(net_arch=dict(pi=[8], vf=[32, 16, 8]), activation_fn=nn.ReLU),
        dict(net_arch=dict(pi=[8], vf=[])),  # linear critic
        dict(optimizer_kwargs=dict(weight_decay=1e-2, betas=(0.8, 0.95), eps=1e-6)),
    ],
    ids=["default", "relu-deep", "linear", "adam-options"],
)
def test_numpy_fit_equals_autograd_fit(policy_kwargs):
    """Two consecutive fits (the second from a non-empty Adam state): same losses, weights and optimizer state."""
    model = critic_model(**policy_kwargs)
    features, returns = regression_data(model)
    initial = copy.deepcopy(model.policy.state_dict()), copy.deepcopy(model.policy.optimizer.state_dict())

    np.random.seed(0)
    numpy_fit = NumpyMlpCriticFit.from_policy(model.policy)
    assert numpy_fit is not None
    numpy_losses = [numpy_fit.fit(features, returns, n_epochs=4, batch_size=48) for _ in range(2)]
    numpy_params, numpy_optimizer = critic_state(model)

    model.policy.load_state_dict(initial[0])
    model.policy.optimizer.load_state_dict(initial[1])
    np.random.seed(0)
    torch_losses = [autograd_fit(model, features, returns) for _ in range(2)]
    torch_params, torch_optimizer = critic_state(model)

    assert len(numpy_losses[0]) == 4 * 5  # 200 samples in minibatches of 48: the last one has 8
    np.testing.assert_allclose(numpy_losses, torch_losses, rtol=1e-4)
    assert numpy_losses[1][-1] < numpy_losses[0][0]  # the fit fits
    for numpy_param, torch_param in zip(numpy_params, torch_params, strict=True):
        th.testing.assert_close(numpy_param, torch_param, rtol=1e-4, atol=1e-5)
    for key, numpy_state in numpy_optimizer["state"].items():
        torch_state = torch_optimizer["state"][key]
        assert float(numpy_state["step"]) == float(torch_state["step"]) == 2 * 4 * 5
        assert numpy_state["step"].dtype == torch_state["step"].dtype
        th.testing.assert_close(numpy_state["exp_avg"], torch_state["exp_avg"], rtol=1e-4, atol=1e-6)
        th.testing.assert_close(numpy_state["exp_avg_sq"], torch_state["exp_avg_sq"], rtol=1e-4, atol=1e-8)


def test_minibatch_gradient_equals_autograd():
    model = critic_model(net_arch=dict(pi=[8], vf=[16, 16]), activation_fn=nn.Tanh)
    features, returns = regression_data(model, n_samples=37)
    numpy_fit = NumpyMlpCriticFit.from_policy(model.policy)
    numpy_fit._load()
    loss = numpy_fit._gradient(features.numpy(), returns.numpy())

    policy = model.policy
    values = policy.value_net(policy.mlp_extractor.forward_critic(features)).flatten()
    torch_loss = th.nn.functional.mse_loss(values, returns)
    gradients = th.autograd.grad(torch_loss, numpy_fit.params)
    assert loss == pytest.approx(torch_loss.item(), rel=1e-5)
    np.testing.assert_allclose(numpy_fit.grad, th.cat([g.flatten() for g in gradients]).numpy(), rtol=1e-4, atol=1e-6)


def test_learning_rate_comes_from_the_optimizer():
    """TRPOVine sets the optimizer's learning rate from the schedule; the fit reads it there."""
    model = TRPOVine("MlpPolicy", "Pendulum-v1", learning_rate=lambda progress: 1e-3 * progress, **SMALL)
    model.learn(128)  # the last iteration ran at progress_remaining 0
    assert model.policy.optimizer.param_groups[0]["lr"] == 0.0
    features, returns = regression_data(model)
    before = critic_state(model)[0]
    NumpyMlpCriticFit.from_policy(model.policy).fit(features, returns, n_epochs=2, batch_size=50)
    for param, old in zip(critic_state(model)[0], before, strict=True):
        assert th.equal(param, old)


def test_first_adam_step_is_lr_times_gradient_sign():
    """From a fresh state, Adam's first step is lr * g / (|g| + eps): elementwise about lr against the gradient."""
    model = critic_model(optimizer_kwargs=dict(eps=1e-12))
    features, returns = regression_data(model)
    numpy_fit = NumpyMlpCriticFit.from_policy(model.policy)
    numpy_fit._load()
    numpy_fit._gradient(features.numpy(), returns.numpy())
    gradient, before = numpy_fit.grad.copy(), numpy_fit.flat.copy()
    numpy_fit.fit(features, returns, n_epochs=1, batch_size=len(returns))
    after = np.concatenate([param.detach().numpy().ravel() for param in numpy_fit.params])
    np.testing.assert_allclose(after - before, -1e-3 * np.sign(gradient), atol=1e-6)


@pytest.mark.parametrize(
    "policy_kwargs",
    [
        dict(optimizer_class=th.optim.RMSprop),
        dict(optimizer_kwargs=dict(amsgrad=True)),
        dict(optimizer_kwargs=dict(maximize=True)),
        dict(activation_fn=nn.ELU),
    ],
    ids=["rmsprop", "amsgrad", "maximize", "elu"],
)
def test_other_critics_and_optimizers_use_autograd(policy_kwargs):
    model = critic_model(**policy_kwargs)
    assert NumpyMlpCriticFit.from_policy(model.policy) is None
    model.learn(64)  # the autograd path trains them


def test_cnn_critic_with_its_own_extractor_uses_autograd():
    from stable_baselines3.common.envs import FakeImageEnv

    env = FakeImageEnv(screen_height=36, screen_width=36, n_channels=1, discrete=True)
    model = TRPOVine("CnnPolicy", env, policy_kwargs=dict(share_features_extractor=False), **SMALL)
    vf_extractor = [param.detach().clone() for param in model.policy.vf_features_extractor.parameters()]
    model.learn(64)
    changed = [not th.equal(a, b) for a, b in zip(vf_extractor, model.policy.vf_features_extractor.parameters(), strict=True)]
    assert all(changed)  # trained by the critic's regression (autograd path)


def test_numpy_blas_is_single_threaded_during_train_only(monkeypatch):
    def blas_threads() -> set[int]:
        return {info["num_threads"] for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"}

    seen = []
    fit = TRPOVine._fit_value_function

    def recording_fit(self, *args):
        seen.append(blas_threads())
        return fit(self, *args)

    monkeypatch.setattr(TRPOVine, "_fit_value_function", recording_fit)
    model = critic_model()
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        model.learn(128)
        assert blas_threads() == {2}  # the user's setting is back after each update
    assert seen == [{1}, {1}]


def test_critic_fit_alongside_the_policy_step_is_bit_identical_to_sequential():
    runs = []
    for alongside in (True, False):
        np.random.seed(0)
        model = critic_model()
        assert model._critic_fit_runs_alongside()
        if not alongside:
            model._critic_fit_runs_alongside = lambda: False
        model.learn(192)
        runs.append((model.policy.state_dict(), model.policy.optimizer.state_dict()["state"], model.logger.name_to_value))
    (params, optimizer_state, logs), (reference_params, reference_optimizer_state, reference_logs) = runs
    for name, value in params.items():
        assert th.equal(value, reference_params[name]), name
    for key, state in optimizer_state.items():
        assert all(th.equal(state[name], reference_optimizer_state[key][name]) for name in state)
    assert logs["train/value_loss"] == reference_logs["train/value_loss"]


def test_critic_fit_reading_a_shared_extractor_waits_for_the_policy_step():
    from stable_baselines3.common.envs import FakeImageEnv

    env = FakeImageEnv(screen_height=36, screen_width=36, n_channels=1, discrete=True)
    shared = TRPOVine("CnnPolicy", env, **SMALL)  # the critic reads the actor's CNN features after the step
    assert not shared._critic_fit_runs_alongside()
    assert not critic_model(optimizer_class=th.optim.RMSprop)._critic_fit_runs_alongside()
