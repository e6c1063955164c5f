"""
What differs between TRPOVine's training and sb3-contrib's, as context managers that patch it in (ablations).

- ``reverse-kl``: the line search checks KL(pi_new || pi_old), sb3-contrib's direction, instead of the paper's
  KL(pi_old || pi_new) (in our units: summed over action dimensions, so the bound stays ``target_kl``);
- ``cg-noise-start``: conjugate gradient starts from 1e-4 * N(0, I) drawn from torch's RNG, as sb3-contrib's does,
  instead of from 0;
- ``sb3-collection``: rollouts are collected by SB3's own ``OnPolicyAlgorithm.collect_rollouts`` (torch forward
  pass and sampling, the buffer's ``add``) instead of TRPOVine's numpy sampler; single path only (no vine branches).
"""

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

from sb3_trpo_vine import TRPOVine, distributions, trpo_vine, trust_region
from sb3_trpo_vine.buffers import VineObjectiveMixin


@contextlib.contextmanager
def reverse_kl_line_search() -> Iterator[None]:
    """The line search checks KL(pi_new || pi_old) instead of KL(pi_old || pi_new)."""
    paper_direction = trpo_vine.kl_divergence
    trpo_vine.kl_divergence = lambda distribution, old, new: distributions.kl_divergence(distribution, new, old)
    try:
        yield
    finally:
        trpo_vine.kl_divergence = paper_direction


@contextlib.contextmanager
def noisy_cg_start() -> Iterator[None]:
    """Conjugate gradient starts from x0 = 1e-4 * N(0, I) (torch's RNG) instead of x0 = 0."""
    solve_from_zero = trust_region.conjugate_gradient

    def conjugate_gradient(matrix_vector_product: Any, b: torch.Tensor, max_steps: int, residual_tol: float = 1e-10) -> Any:
        start = 1e-4 * torch.randn_like(b)  # solve A y = b - A x0 from 0, then x = x0 + y
        solution, residual = solve_from_zero(matrix_vector_product, b - matrix_vector_product(start), max_steps, residual_tol)
        return start + solution, residual

    trust_region.conjugate_gradient = conjugate_gradient
    try:
        yield
    finally:
        trust_region.conjugate_gradient = solve_from_zero


@contextlib.contextmanager
def sb3_collection() -> Iterator[None]:
    """TRPOVine collects its single-path rollouts with SB3's ``OnPolicyAlgorithm.collect_rollouts``."""
    numpy_collection = TRPOVine.collect_rollouts

    def collect_rollouts(self: TRPOVine, env: Any, callback: Any, rollout_buffer: Any, n_rollout_steps: int) -> bool:
        if isinstance(rollout_buffer, VineObjectiveMixin):
            raise ValueError("the sb3-collection variant collects single-path rollouts only (no vine branches)")
        return OnPolicyAlgorithm.collect_rollouts(self, env, callback, rollout_buffer, n_rollout_steps)

    TRPOVine.collect_rollouts = collect_rollouts  # type: ignore[method-assign]
    try:
        yield
    finally:
        TRPOVine.collect_rollouts = numpy_collection  # type: ignore[method-assign]


VARIANTS: dict[str, Callable[[], contextlib.AbstractContextManager[None]]] = {
    "reverse-kl": reverse_kl_line_search,
    "cg-noise-start": noisy_cg_start,
}
# variants of the data an update sees (not of one update: ``benchmarks.update_ablation`` pairs only the above)
COLLECTION_VARIANTS: dict[str, Callable[[], contextlib.AbstractContextManager[None]]] = {
    "sb3-collection": sb3_collection,
}
