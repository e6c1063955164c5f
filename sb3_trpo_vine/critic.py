"""
Fitting the critic: ``n_critic_updates`` epochs of minibatch regression of V(s) on the return targets.

``fit_value_function`` runs the regression with autograd and the policy's own optimizer, for any critic.
``NumpyMlpCriticFit`` runs the same regression for SB3's default MLP critic trained by Adam in numpy: explicit
backpropagation through the Linear/activation layers and torch's Adam update on one flat parameter vector.
At minibatches of ~100 samples a torch step costs mostly per-operation dispatch (a few hundred microseconds for
the autograd graph and the optimizer), three times the arithmetic; the critic takes hundreds of such steps per
iteration. The numpy fit reads the weights and Adam's state from torch before it starts and writes both back when it
ends, so saving, loading and the autograd path all see one consistent critic.
"""

import itertools
from collections.abc import Callable

import numpy as np
import torch as th
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import MlpExtractor
from stable_baselines3.common.type_aliases import PyTorchObs
from torch import nn
from torch.nn import functional as F

from sb3_trpo_vine.sampling import NUMPY_ACTIVATIONS

# derivative of each activation written in terms of its output
ACTIVATION_DERIVATIVES: dict[type[nn.Module], Callable[[np.ndarray], np.ndarray]] = {
    nn.Tanh: lambda out: 1.0 - out * out,
    nn.ReLU: lambda out: (out > 0.0).astype(out.dtype),
}


def _index_observations(observations: PyTorchObs, indices: th.Tensor) -> PyTorchObs:
    if isinstance(observations, dict):
        return {key: value[indices] for key, value in observations.items()}
    return observations[indices]


def fit_value_function(
    predict: Callable[[PyTorchObs], th.Tensor],
    inputs: PyTorchObs,
    returns: th.Tensor,
    optimizer: th.optim.Optimizer,
    n_epochs: int,
    batch_size: int,
) -> list[float]:
    """
    Minibatch regression of the critic with autograd (any critic, any optimizer).

    :param predict: maps a minibatch of ``inputs`` to values ``(batch, 1)``
    :param inputs: critic inputs (observations or precomputed features)
    :param returns: return targets
    :param optimizer: the critic's optimizer (gradients are computed for its parameters only)
    :param n_epochs: passes over the data, each in a fresh random order (numpy's global generator)
    :param batch_size: minibatch size
    :return: the minibatch losses
    """
    critic_params = [param for group in optimizer.param_groups for param in group["params"]]
    losses = []
    n_samples = len(returns)
    for _ in range(n_epochs):
        permutation = th.from_numpy(np.random.permutation(n_samples))
        for start in range(0, n_samples, batch_size):
            indices = permutation[start : start + batch_size]
            values = predict(_index_observations(inputs, indices)).flatten()
            value_loss = F.mse_loss(returns[indices], values)
            optimizer.zero_grad()
            value_loss.backward(inputs=critic_params)
            optimizer.step()
            losses.append(value_loss.detach())
    return [float(loss) for loss in losses]


class _DenseLayer:
    """One Linear layer (views into the flat parameter and gradient vectors) and the activation after it."""

    def __init__(
        self,
        weight: np.ndarray,
        bias: np.ndarray,
        weight_grad: np.ndarray,
        bias_grad: np.ndarray,
        activation: type[nn.Module] | None,
    ) -> None:
        self.weight, self.bias, self.weight_grad, self.bias_grad = weight, bias, weight_grad, bias_grad
        self.activation = None if activation is None else NUMPY_ACTIVATIONS[activation]
        self.derivative = None if activation is None else ACTIVATION_DERIVATIVES[activation]


class NumpyMlpCriticFit:
    """
    The critic regression of ``fit_value_function`` for an MLP critic (``MlpExtractor.value_net`` + ``value_net``)
    optimised by ``torch.optim.Adam``, computed in numpy.

    Build it with :meth:`from_policy`, which returns None when the critic or its optimizer is anything else.

    :param policy: the policy whose critic is fitted
    :param modules: the critic's layers, in order: ``nn.Linear`` each optionally followed by a supported activation
    """

    def __init__(self, policy: ActorCriticPolicy, modules: list[nn.Module]) -> None:
        self.optimizer = policy.optimizer
        self.linears = [module for module in modules if isinstance(module, nn.Linear)]
        activations: list[type[nn.Module] | None] = []
        for module in modules:
            if isinstance(module, nn.Linear):
                activations.append(None)
            elif type(module) is not nn.Identity:
                activations[-1] = type(module)
        self.params = [param for linear in self.linears for param in (linear.weight, linear.bias)]
        sizes = [param.numel() for param in self.params]
        self.flat = np.empty(sum(sizes), dtype=np.float32)
        self.grad = np.empty_like(self.flat)
        # where each parameter lives in the flat vectors (parameters, gradients, Adam moments)
        self.slices = [slice(start, end) for start, end in itertools.pairwise(np.cumsum([0, *sizes]))]
        self.param_views = [self.flat[part].reshape(p.shape) for part, p in zip(self.slices, self.params, strict=True)]
        grad_views = [self.grad[part].reshape(p.shape) for part, p in zip(self.slices, self.params, strict=True)]
        self.layers = [
            _DenseLayer(*self.param_views[2 * i : 2 * i + 2], *grad_views[2 * i : 2 * i + 2], activation)
            for i, activation in enumerate(activations)
        ]

    @classmethod
    def from_policy(cls, policy: ActorCriticPolicy) -> "NumpyMlpCriticFit | None":
        """
        :param policy: an actor-critic policy whose ``optimizer`` fits the critic
        :return: the numpy fit, or None if the critic is not a plain float32 CPU MLP trained by plain Adam
        """
        if type(policy.mlp_extractor) is not MlpExtractor or type(policy.value_net) is not nn.Linear:
            return None
        modules = [*policy.mlp_extractor.value_net, policy.value_net]
        supported_modules = (nn.Linear, nn.Identity, *ACTIVATION_DERIVATIVES)
        if any(type(module) not in supported_modules for module in modules) or not isinstance(modules[0], nn.Linear):
            return None
        if any(
            type(module) in ACTIVATION_DERIVATIVES and type(previous) in ACTIVATION_DERIVATIVES
            for previous, module in itertools.pairwise(modules)
        ):
            return None
        optimizer = policy.optimizer
        if type(optimizer) is not th.optim.Adam or len(optimizer.param_groups) != 1:
            return None
        group = optimizer.param_groups[0]
        if group["amsgrad"] or group["maximize"] or group.get("decoupled_weight_decay", False) or th.is_tensor(group["lr"]):
            return None
        critic_params = [param for module in modules if isinstance(module, nn.Linear) for param in module.parameters()]
        if {id(param) for param in group["params"]} != {id(param) for param in critic_params} or len(critic_params) != len(
            group["params"]
        ):
            return None
        if any(param.device.type != "cpu" or param.dtype != th.float32 for param in critic_params):
            return None
        steps = {float(optimizer.state[param]["step"]) for param in critic_params if "step" in optimizer.state[param]}
        if len(steps) > 1:
            return None
        return cls(policy, modules)

    def _load(self) -> tuple[np.ndarray, np.ndarray, int]:
        for view, param in zip(self.param_views, self.params, strict=True):
            view[...] = param.detach().numpy()
        exp_avg, exp_avg_sq = np.zeros_like(self.flat), np.zeros_like(self.flat)
        step = 0
        for part, param in zip(self.slices, self.params, strict=True):
            state = self.optimizer.state[param]
            if state:
                exp_avg[part] = state["exp_avg"].numpy().ravel()
                exp_avg_sq[part] = state["exp_avg_sq"].numpy().ravel()
                step = int(state["step"])
        return exp_avg, exp_avg_sq, step

    def _store(self, exp_avg: np.ndarray, exp_avg_sq: np.ndarray, step: int) -> None:
        scalar_dtype = th.float64 if th.get_default_dtype() == th.float64 else th.float32  # what torch's Adam uses
        with th.no_grad():
            for part, view, param in zip(self.slices, self.param_views, self.params, strict=True):
                param.copy_(th.from_numpy(view))
                state = self.optimizer.state[param]
                state["step"] = th.tensor(float(step), dtype=scalar_dtype)
                state["exp_avg"] = th.from_numpy(exp_avg[part].reshape(param.shape).copy())
                state["exp_avg_sq"] = th.from_numpy(exp_avg_sq[part].reshape(param.shape).copy())

    def _gradient(self, inputs: np.ndarray, targets: np.ndarray) -> float:
        """Fill ``self.grad`` with the gradient of the mean squared error on one minibatch; return the loss."""
        outputs = [inputs]
        for layer in self.layers:
            pre_activation = outputs[-1] @ layer.weight.T + layer.bias
            outputs.append(pre_activation if layer.activation is None else layer.activation(pre_activation))
        residual = outputs[-1][:, 0] - targets
        batch = len(targets)
        delta = (2.0 / batch) * residual[:, None]  # d loss / d V
        for index in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[index]
            if layer.derivative is not None:
                delta = delta * layer.derivative(outputs[index + 1])
            np.matmul(delta.T, outputs[index], out=layer.weight_grad)
            np.sum(delta, axis=0, out=layer.bias_grad)
            if index > 0:
                delta = delta @ layer.weight
        return float(residual @ residual) / batch

    def fit(self, features: th.Tensor, returns: th.Tensor, n_epochs: int, batch_size: int) -> list[float]:
        """
        Same regression as ``fit_value_function`` (same minibatches, same Adam update), weights written back to torch.

        :param features: critic inputs ``(n, features_dim)``
        :param returns: return targets ``(n,)``
        :param n_epochs: passes over the data, each in a fresh random order (numpy's global generator)
        :param batch_size: minibatch size
        :return: the minibatch losses
        """
        group = self.optimizer.param_groups[0]
        learning_rate, (beta1, beta2), eps, weight_decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        exp_avg, exp_avg_sq, step = self._load()
        scratch = np.empty_like(self.flat)
        inputs_all, targets_all = features.detach().numpy(), returns.detach().numpy()
        n_samples = len(targets_all)
        losses = []
        for _ in range(n_epochs):
            permutation = np.random.permutation(n_samples)
            inputs_epoch, targets_epoch = inputs_all[permutation], targets_all[permutation]
            for start in range(0, n_samples, batch_size):
                losses.append(
                    self._gradient(inputs_epoch[start : start + batch_size], targets_epoch[start : start + batch_size])
                )
                gradient = self.grad + weight_decay * self.flat if weight_decay else self.grad
                step += 1
                # Adam (Kingma & Ba 2015, Algorithm 1), in torch's arrangement of the bias corrections
                np.subtract(gradient, exp_avg, out=scratch)
                scratch *= 1.0 - beta1
                exp_avg += scratch
                exp_avg_sq *= beta2
                np.multiply(gradient, gradient, out=scratch)
                scratch *= 1.0 - beta2
                exp_avg_sq += scratch
                np.sqrt(exp_avg_sq, out=scratch)
                scratch /= np.sqrt(1.0 - beta2**step)
                scratch += eps
                np.divide(exp_avg, scratch, out=scratch)
                scratch *= learning_rate / (1.0 - beta1**step)
                self.flat -= scratch
        self._store(exp_avg, exp_avg_sq, step)
        return losses
