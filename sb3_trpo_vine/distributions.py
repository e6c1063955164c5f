"""
Geometry of SB3's action distributions in their own parameters: the paper's KL and its Fisher metric.

Every SB3 distribution used by the actor-critic policies is described here by a list of tensors
("distribution parameters", one row per state):

- diagonal Gaussian (also gSDE): ``[mean, log_std]``, each ``(batch, action_dim)``;
- categorical: ``[logits]``; multi-categorical: ``[logits_1, ..., logits_m]``; Bernoulli: ``[logits]``.

The KL divergence is the paper's D_KL(pi_old(.|s) || pi_new(.|s)) between the *full* action
distributions, i.e. summed over action dimensions (Schulman et al. 2015, Eq. 12). The Fisher metric M
is its Hessian in the distribution parameters at pi_old, so the Fisher information of the policy is
F = E_s[J^T M J] with J the Jacobian of the distribution parameters w.r.t. the network weights
(Appendix C.1 of the paper).
"""

import math

import torch as th
from stable_baselines3.common.distributions import (
    BernoulliDistribution,
    CategoricalDistribution,
    DiagGaussianDistribution,
    Distribution,
    MultiCategoricalDistribution,
    StateDependentNoiseDistribution,
)
from torch.nn import functional as F

LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)

GAUSSIAN_DISTRIBUTIONS = (DiagGaussianDistribution, StateDependentNoiseDistribution)
LOGIT_DISTRIBUTIONS = (CategoricalDistribution, MultiCategoricalDistribution, BernoulliDistribution)


def distribution_parameters(distribution: Distribution) -> list[th.Tensor]:
    """
    Differentiable parameters of an SB3 distribution (see the module docstring for the layout).

    :param distribution: a distribution built by ``policy.get_distribution(obs)``
    :return: list of ``(batch, k)`` tensors
    """
    if isinstance(distribution, GAUSSIAN_DISTRIBUTIONS):
        normal = distribution.distribution
        return [normal.loc, th.log(normal.scale)]
    if isinstance(distribution, MultiCategoricalDistribution):
        return [categorical.logits for categorical in distribution.distribution]
    if isinstance(distribution, LOGIT_DISTRIBUTIONS):
        return [distribution.distribution.logits]
    raise TypeError(f"Unsupported action distribution {type(distribution).__name__}")


def kl_divergence(distribution: Distribution, old: list[th.Tensor], new: list[th.Tensor]) -> th.Tensor:
    """
    Per-state KL(pi_old || pi_new) of the full action distribution, summed over action dimensions.

    :param distribution: the SB3 distribution object (only its type is used)
    :param old: distribution parameters of pi_old
    :param new: distribution parameters of pi_new
    :return: ``(batch,)`` tensor
    """
    if isinstance(distribution, GAUSSIAN_DISTRIBUTIONS):
        (mean_old, log_std_old), (mean_new, log_std_new) = old, new
        # KL(N(m0, s0) || N(m1, s1)) = log(s1/s0) + (s0^2 + (m0 - m1)^2) / (2 s1^2) - 1/2
        variance_ratio = th.exp(2.0 * (log_std_old - log_std_new))
        mahalanobis = ((mean_old - mean_new) * th.exp(-log_std_new)).square()
        return (log_std_new - log_std_old + 0.5 * (variance_ratio + mahalanobis) - 0.5).sum(dim=1)
    if isinstance(distribution, BernoulliDistribution):
        (logits_old,), (logits_new,) = old, new
        p_old = th.sigmoid(logits_old)
        return (
            p_old * (F.logsigmoid(logits_old) - F.logsigmoid(logits_new))
            + (1.0 - p_old) * (F.logsigmoid(-logits_old) - F.logsigmoid(-logits_new))
        ).sum(dim=1)
    # categorical and multi-categorical: sum over the independent components
    kl = th.zeros(old[0].shape[0], device=old[0].device)
    for logits_old, logits_new in zip(old, new, strict=True):
        log_p_old = F.log_softmax(logits_old, dim=1)
        kl = kl + (log_p_old.exp() * (log_p_old - F.log_softmax(logits_new, dim=1))).sum(dim=1)
    return kl


def fisher_metric_product(distribution: Distribution, old: list[th.Tensor], tangent: list[th.Tensor]) -> list[th.Tensor]:
    """
    Product M u of the Fisher metric of the distribution (Hessian of the KL at pi_old) with a tangent u.

    :param distribution: the SB3 distribution object (only its type is used)
    :param old: distribution parameters of pi_old
    :param tangent: a tangent vector in distribution-parameter space, same layout as ``old``
    :return: M u, same layout as ``tangent``
    """
    if isinstance(distribution, GAUSSIAN_DISTRIBUTIONS):
        (_, log_std_old), (u_mean, u_log_std) = old, tangent
        # Gaussian Fisher in (mean, log_std): diag(1 / sigma^2, 2)
        return [u_mean * th.exp(-2.0 * log_std_old), 2.0 * u_log_std]
    if isinstance(distribution, BernoulliDistribution):
        p_old = th.sigmoid(old[0])
        return [p_old * (1.0 - p_old) * tangent[0]]
    products = []
    for logits_old, u in zip(old, tangent, strict=True):
        # softmax Fisher in logit space: diag(p) - p p^T
        p_old = F.softmax(logits_old, dim=1)
        products.append(p_old * u - p_old * (p_old * u).sum(dim=1, keepdim=True))
    return products
