"""Unit tests of the trust-region step: CG, analytic KL, Fisher-vector products, line search."""

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from torch.distributions import Bernoulli, Categorical, Normal
from torch.distributions import kl_divergence as torch_kl

from sb3_trpo_vine.distributions import distribution_parameters, kl_divergence
from sb3_trpo_vine.trpo_vine import actor_parameters
from sb3_trpo_vine.trust_region import FisherVectorProduct, conjugate_gradient, flat_concat, trust_region_step

ACTION_SPACES = {
    "box": spaces.Box(-1.0, 1.0, (3,)),
    "discrete": spaces.Discrete(4),
    "multidiscrete": spaces.MultiDiscrete([3, 2]),
    "multibinary": spaces.MultiBinary(3),
}


def tiny_policy(action_space: spaces.Space, seed: int = 0) -> ActorCriticPolicy:
    th.manual_seed(seed)
    policy = ActorCriticPolicy(spaces.Box(-1.0, 1.0, (2,)), action_space, lambda _: 1e-3, net_arch=[4], log_std_init=-0.3)
    return policy


def test_conjugate_gradient_solves_spd_system():
    generator = th.Generator().manual_seed(0)
    m = th.randn(6, 6, generator=generator, dtype=th.float64)
    a = m @ m.T + 0.5 * th.eye(6, dtype=th.float64)
    b = th.randn(6, generator=generator, dtype=th.float64)
    x, residual = conjugate_gradient(lambda v: a @ v, b, max_steps=6)
    assert th.allclose(x, th.linalg.solve(a, b), atol=1e-8)
    assert residual < 1e-6
    # fewer iterations than the dimension: a worse but reported residual
    _, partial_residual = conjugate_gradient(lambda v: a @ v, b, max_steps=2)
    assert partial_residual > residual


@pytest.mark.parametrize("name", list(ACTION_SPACES))
def test_analytic_kl_matches_torch_distributions(name):
    policy = tiny_policy(ACTION_SPACES[name])
    observations = th.randn(5, 2)
    old = [p.detach() for p in distribution_parameters(policy.get_distribution(observations))]
    with th.no_grad():
        for param in policy.parameters():
            param.add_(0.3 * th.randn_like(param))
    distribution = policy.get_distribution(observations)
    new = distribution_parameters(distribution)
    ours = kl_divergence(distribution, old, new)
    if name == "box":
        reference = torch_kl(Normal(old[0], old[1].exp()), Normal(new[0], new[1].exp())).sum(dim=1)
    elif name == "multibinary":
        reference = torch_kl(Bernoulli(logits=old[0]), Bernoulli(logits=new[0])).sum(dim=1)
    else:
        reference = sum(torch_kl(Categorical(logits=o), Categorical(logits=n)) for o, n in zip(old, new, strict=True))
    assert ours.shape == (5,)
    assert th.allclose(ours, reference, atol=1e-5)
    assert bool((ours > 0).all())


@pytest.mark.parametrize("name", list(ACTION_SPACES))
def test_fisher_vector_product_matches_explicit_fisher(name):
    """F v from the double-vjp trick equals the explicit Hessian of the mean KL at theta_old (and J^T M J)."""
    policy = tiny_policy(ACTION_SPACES[name])
    params = actor_parameters(policy)
    observations = th.randn(7, 2)
    flat_old = th.nn.utils.parameters_to_vector(params).detach()
    distribution = policy.get_distribution(observations)
    old = [p.detach() for p in distribution_parameters(distribution)]
    damping = 0.05
    fvp = FisherVectorProduct(params, distribution, distribution_parameters(distribution), damping)

    names = {id(param): name for name, param in policy.named_parameters()}
    wrapper = _DistributionParameters(policy)

    def mean_kl(flat: th.Tensor) -> th.Tensor:
        state, offset = {}, 0
        for param in params:
            state[f"policy.{names[id(param)]}"] = flat[offset : offset + param.numel()].view_as(param)
            offset += param.numel()
        new = list(th.func.functional_call(wrapper, state, (observations,)))
        return kl_divergence(distribution, old, new).mean()

    hessian = th.autograd.functional.hessian(mean_kl, flat_old)
    explicit = hessian + damping * th.eye(len(flat_old))
    generator = th.Generator().manual_seed(1)
    for _ in range(3):
        vector = th.randn(len(flat_old), generator=generator)
        assert th.allclose(fvp(vector), explicit @ vector, atol=1e-5, rtol=1e-4)
    # the Fisher is symmetric positive semi-definite
    assert th.allclose(hessian, hessian.T, atol=1e-6)
    assert th.linalg.eigvalsh(hessian).min() > -1e-5


class _DistributionParameters(th.nn.Module):
    def __init__(self, policy: ActorCriticPolicy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, observations: th.Tensor) -> tuple[th.Tensor, ...]:
        return tuple(distribution_parameters(self.policy.get_distribution(observations)))


def quadratic_problem(curvature_scale: float = 1.0):
    """Surrogate g.x with KL 0.5 x^T A x: the exact TRPO step is known in closed form."""
    x = th.nn.Parameter(th.zeros(3))
    a = th.diag(th.tensor([1.0, 2.0, 4.0]))
    g = th.tensor([1.0, -1.0, 0.5])

    def evaluate():
        return g @ x, 0.5 * x @ a @ x

    return x, a, g, evaluate, (lambda v: curvature_scale * (a @ v))


def test_trust_region_step_quadratic_closed_form():
    x, a, g, evaluate, fvp = quadratic_problem()
    info = trust_region_step(
        [x], evaluate, fvp, target_kl=0.01, cg_max_steps=10, line_search_shrinking_factor=0.8, line_search_max_iter=10
    )
    direction = th.linalg.solve(a, g)
    expected = np.sqrt(2 * 0.01 / float(direction @ a @ direction)) * direction
    assert info.accepted and info.line_search_steps == 1 and info.skip_reason is None
    assert th.allclose(x.detach(), expected, atol=1e-6)
    assert info.kl == pytest.approx(0.01, rel=1e-4)


def test_zero_radius_makes_no_step():
    # the end of a target_kl schedule annealed to 0
    x, _, _, evaluate, fvp = quadratic_problem()
    before = x.detach().clone()
    info = trust_region_step(
        [x], evaluate, fvp, target_kl=0.0, cg_max_steps=10, line_search_shrinking_factor=0.8, line_search_max_iter=10
    )
    assert not info.accepted and info.line_search_steps == 0 and "schedule" in info.skip_reason
    assert th.equal(x.detach(), before)


def test_line_search_rejects_kl_violating_steps():
    # the Fisher-vector product underestimates curvature 10x: the full step violates the KL bound
    x, a, _, evaluate, fvp = quadratic_problem(curvature_scale=0.1)
    info = trust_region_step(
        [x], evaluate, fvp, target_kl=0.01, cg_max_steps=10, line_search_shrinking_factor=0.8, line_search_max_iter=20
    )
    assert info.accepted
    assert info.line_search_steps > 1
    assert float(0.5 * x.detach() @ a @ x.detach()) <= 0.01
    # the previous (larger) candidate violated the bound
    assert 0.5 * (info.step_size / 0.8) ** 2 * float(_direction(a, 0.1) @ a @ _direction(a, 0.1)) > 0.01


def _direction(a: th.Tensor, scale: float) -> th.Tensor:
    return th.linalg.solve(scale * a, th.tensor([1.0, -1.0, 0.5]))


def test_line_search_reverts_when_nothing_improves():
    x = th.nn.Parameter(th.tensor([0.5, -0.2]))

    def evaluate():
        # the gradient is non-zero, but every line-search candidate scores worse than theta_old
        if th.is_grad_enabled():
            return x.sum(), th.tensor(0.0)
        return x.sum() - 100.0, th.tensor(0.0)

    info = trust_region_step(
        [x], evaluate, lambda v: v, target_kl=0.01, cg_max_steps=5, line_search_shrinking_factor=0.5, line_search_max_iter=4
    )
    assert not info.accepted
    assert info.line_search_steps == 4
    assert "line search" in info.skip_reason
    assert th.equal(x.detach(), th.tensor([0.5, -0.2]))


@pytest.mark.parametrize(
    "fvp, reason",
    [(lambda v: -v, "curvature"), (lambda v: v * float("nan"), "curvature")],
)
def test_non_positive_or_nan_curvature_skips_update(fvp, reason):
    x = th.nn.Parameter(th.tensor([1.0, 2.0]))
    info = trust_region_step(
        [x],
        lambda: (x.sum(), th.tensor(0.0)),
        fvp,
        target_kl=0.01,
        cg_max_steps=3,
        line_search_shrinking_factor=0.8,
        line_search_max_iter=10,
    )
    assert not info.accepted and reason in info.skip_reason
    assert th.equal(x.detach(), th.tensor([1.0, 2.0]))


def test_non_finite_gradient_skips_update():
    x = th.nn.Parameter(th.tensor([1.0, 2.0]))
    info = trust_region_step(
        [x],
        lambda: ((x * float("inf")).sum(), th.tensor(0.0)),
        lambda v: v,
        target_kl=0.01,
        cg_max_steps=3,
        line_search_shrinking_factor=0.8,
        line_search_max_iter=10,
    )
    assert not info.accepted and "non-finite" in info.skip_reason
    assert th.equal(x.detach(), th.tensor([1.0, 2.0]))


def test_flat_concat():
    assert th.equal(flat_concat([th.ones(2, 2), th.zeros(3)]), th.tensor([1.0, 1, 1, 1, 0, 0, 0]))
