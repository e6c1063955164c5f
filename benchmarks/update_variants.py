"""
sb3-contrib's two update details that differ from TRPOVine's, as context managers that patch them in (ablations).

- ``reverse-kl``: the line search checks KL(pi_new || pi_old), sb3-contrib's direction, instead of the paper's
  KL(pi_old || pi_new) (in our units: summed over action dimensions, so the bound stays ``target_kl``);
- ``cg-noise-start``: conjugate gradient starts from 1e-4 * N(0, I) drawn from torch's RNG, as sb3-contrib's does,
  instead of from 0.
"""

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

from sb3_trpo_vine import distributions, trpo_vine, trust_region


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


VARIANTS: dict[str, Callable[[], contextlib.AbstractContextManager[None]]] = {
    "reverse-kl": reverse_kl_line_search,
    "cg-noise-start": noisy_cg_start,
}
