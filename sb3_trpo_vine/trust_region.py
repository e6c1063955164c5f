"""
The trust-region policy step of Schulman et al. (2015), shared by the single-path and vine schemes.

maximise L(theta) subject to D_KL(theta_old, theta) <= delta            (Eq. 14)

1. g = grad L at theta_old;
2. s ~= A^-1 g by conjugate gradient, A = F + damping * I with F the analytic Fisher (Appendix C);
3. full step beta * s with beta = sqrt(2 delta / s^T A s)                 (Appendix C)
4. backtracking line search: accept the first theta_old + shrink^i * beta * s whose surrogate improved and
   whose mean KL(pi_old || pi_theta) <= delta; restore theta_old when none is accepted.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch as th
from stable_baselines3.common.distributions import Distribution
from torch import nn

from sb3_trpo_vine.distributions import fisher_metric_product


def flat_concat(tensors: list[th.Tensor]) -> th.Tensor:
    """
    Concatenate tensors into one flat vector.

    :param tensors: tensors of any shapes
    :return: 1-D tensor
    """
    return th.cat([tensor.reshape(-1) for tensor in tensors])


def assign_flat(params: list[nn.Parameter], vector: th.Tensor) -> None:
    """
    Copy a flat vector into the parameters, in place: each keeps its own storage (``vector_to_parameters`` would
    rebind them to views of the vector, whose alignment can change float rounding in later matrix products).

    :param params: the parameters
    :param vector: their new values, concatenated in order
    """
    offset = 0
    for param in params:
        param.copy_(vector[offset : offset + param.numel()].view_as(param))
        offset += param.numel()


def conjugate_gradient(
    matrix_vector_product: Callable[[th.Tensor], th.Tensor],
    b: th.Tensor,
    max_steps: int,
    residual_tol: float = 1e-10,
) -> tuple[th.Tensor, float]:
    """
    Solve A x = b for a symmetric positive-definite A given only through products A v (starting at x = 0).

    :param matrix_vector_product: v -> A v
    :param b: right-hand side, 1-D
    :param max_steps: maximum number of CG iterations
    :param residual_tol: stop when the squared residual norm falls below this value
    :return: the approximate solution and the norm of the final residual b - A x
    """
    x = th.zeros_like(b)
    residual = b.clone()
    direction = b.clone()
    residual_sq = th.dot(residual, residual)
    for _ in range(max_steps):
        if residual_sq < residual_tol:
            break
        a_direction = matrix_vector_product(direction)
        alpha = residual_sq / th.dot(direction, a_direction)
        x += alpha * direction
        residual -= alpha * a_direction
        new_residual_sq = th.dot(residual, residual)
        direction = residual + (new_residual_sq / residual_sq) * direction
        residual_sq = new_residual_sq
    return x, float(residual_sq.sqrt())


class FisherVectorProduct:
    """
    Damped Fisher-vector product (F + damping I) v with F = mean_s J^T M J (Appendix C.1, "analytic" form).

    J is the Jacobian of the distribution parameters w.r.t. ``params`` (on the states the parameters were
    computed on) and M the Fisher metric of the distribution. J v is obtained with the double-vjp trick,
    J^T (M J v) with one backward pass, reusing the graph of a single forward pass for every CG iteration.

    :param params: the actor parameters theta
    :param distribution: the SB3 distribution object of the policy (selects the metric)
    :param new_parameters: distribution parameters computed from ``params`` with the graph attached
    :param damping: Tikhonov damping added to F (``cg_damping``)
    """

    def __init__(
        self, params: list[nn.Parameter], distribution: Distribution, new_parameters: list[th.Tensor], damping: float
    ) -> None:
        self.params = params
        self.distribution = distribution
        self.outputs = new_parameters
        self.old_parameters = [tensor.detach() for tensor in new_parameters]
        self.damping = damping
        self.batch_size = new_parameters[0].shape[0]
        self.param_shapes = [param.shape for param in params]
        self.param_sizes = [param.numel() for param in params]
        # J^T u as a (linear) function of u: differentiating it w.r.t. u gives J v.
        self.dual = [th.zeros_like(tensor, requires_grad=True) for tensor in new_parameters]
        self.transposed_jacobian_product = th.autograd.grad(
            self.outputs, self.params, grad_outputs=self.dual, create_graph=True, allow_unused=True, materialize_grads=True
        )

    def __call__(self, vector: th.Tensor) -> th.Tensor:
        """
        :param vector: flat vector in parameter space
        :return: (F + damping I) vector
        """
        tangent = [chunk.view(shape) for chunk, shape in zip(vector.split(self.param_sizes), self.param_shapes, strict=True)]
        jacobian_product = th.autograd.grad(
            self.transposed_jacobian_product, self.dual, grad_outputs=tangent, retain_graph=True, materialize_grads=True
        )
        metric_product = fisher_metric_product(self.distribution, self.old_parameters, list(jacobian_product))
        fisher_product = th.autograd.grad(
            self.outputs,
            self.params,
            grad_outputs=[product / self.batch_size for product in metric_product],
            retain_graph=True,
            allow_unused=True,
            materialize_grads=True,
        )
        return flat_concat(list(fisher_product)) + self.damping * vector


@dataclass
class TrustRegionStepInfo:
    """
    What one trust-region step did, for logging.

    :param accepted: whether the line search accepted a step (parameters changed)
    :param surrogate_before: surrogate objective at theta_old
    :param surrogate_after: surrogate objective at the accepted parameters (``surrogate_before`` if rejected)
    :param kl: mean KL(pi_old || pi_new) at the accepted parameters (0 if rejected)
    :param line_search_steps: number of candidate steps evaluated by the line search
    :param step_size: accepted step length ``shrink^i * beta`` (0 if rejected)
    :param cg_residual: norm of the conjugate-gradient residual b - A x
    :param skip_reason: why no step was attempted or accepted, None on success
    """

    accepted: bool
    surrogate_before: float
    surrogate_after: float
    kl: float
    line_search_steps: int
    step_size: float
    cg_residual: float
    skip_reason: str | None


def trust_region_step(
    params: list[nn.Parameter],
    evaluate: Callable[[], tuple[th.Tensor, th.Tensor]],
    fisher_vector_product: Callable[[th.Tensor], th.Tensor],
    target_kl: float,
    cg_max_steps: int,
    line_search_shrinking_factor: float,
    line_search_max_iter: int,
) -> TrustRegionStepInfo:
    """
    One TRPO policy update (Eq. 14 solved as in Appendix C), in place on ``params``.

    :param params: the actor parameters theta (updated in place)
    :param evaluate: returns (surrogate L(theta), mean KL(pi_old || pi_theta)) at the current parameters;
        called once with gradients enabled, then under ``no_grad`` for each line-search candidate
    :param fisher_vector_product: v -> (F + damping I) v at theta_old
    :param target_kl: the trust-region radius delta (no step when it is 0)
    :param cg_max_steps: conjugate-gradient iterations
    :param line_search_shrinking_factor: backtracking factor in (0, 1)
    :param line_search_max_iter: maximum number of candidate steps
    :return: what happened
    """
    surrogate, _ = evaluate()
    surrogate_before = float(surrogate.detach())
    gradient = flat_concat(list(th.autograd.grad(surrogate, params, allow_unused=True, materialize_grads=True)))

    def skipped(reason: str, cg_residual: float = float("nan")) -> TrustRegionStepInfo:
        return TrustRegionStepInfo(False, surrogate_before, surrogate_before, 0.0, 0, 0.0, cg_residual, reason)

    if target_kl <= 0.0:
        return skipped("target_kl is 0 (the end of its schedule): no policy step")
    if not (np.isfinite(surrogate_before) and bool(th.isfinite(gradient).all())):
        return skipped("non-finite surrogate or gradient")
    if not bool(gradient.any()):
        return skipped("zero surrogate gradient")

    search_direction, cg_residual = conjugate_gradient(fisher_vector_product, gradient, cg_max_steps)
    curvature = float(th.dot(search_direction, fisher_vector_product(search_direction)))  # s^T A s
    if not np.isfinite(curvature) or curvature <= 0.0:
        return skipped(f"non-positive or non-finite curvature s^T F s = {curvature:.3g}", cg_residual)
    max_step_size = float(np.sqrt(2.0 * target_kl / curvature))

    with th.no_grad():
        original = th.nn.utils.parameters_to_vector(params)
        step_size = max_step_size
        for line_search_step in range(1, line_search_max_iter + 1):
            assign_flat(params, original + step_size * search_direction)
            new_surrogate, kl = evaluate()
            new_surrogate_value, kl_value = float(new_surrogate), float(kl)
            if np.isfinite(new_surrogate_value) and kl_value <= target_kl and new_surrogate_value > surrogate_before:
                return TrustRegionStepInfo(
                    True, surrogate_before, new_surrogate_value, kl_value, line_search_step, step_size, cg_residual, None
                )
            step_size *= line_search_shrinking_factor
        assign_flat(params, original)
    result = skipped("line search found no step that improves the surrogate within the KL bound", cg_residual)
    result.line_search_steps = line_search_max_iter
    return result
