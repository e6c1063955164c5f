"""
Guards against non-finite (NaN or inf) data, checked where it enters training and before it touches a parameter.

Every check is one vectorised ``isfinite`` over a whole array per iteration. A failed check raises
``NonFiniteDataError`` (a ``ValueError``) that says what was non-finite, where, and how to find the source; the
model is then still that of the last good iteration, so ``model.save()`` right after the exception writes a usable
model.
"""

from collections.abc import Callable

import numpy as np

HOW_TO_FIND_THE_SOURCE = (
    "Find the source by wrapping the training env in stable_baselines3.common.vec_env.VecCheckNan(env, raise_exception="
    "True), which raises at the first step that returns NaN or inf; a diverging observation can also be bounded with "
    "VecNormalize's clip_obs. The model still holds the parameters of the last good iteration (model.save() keeps "
    "them); VecNormalize statistics, if any, may already contain the bad value."
)


class NonFiniteDataError(ValueError):
    """NaN or inf in data that training would use (rewards, observations, values, returns, advantages, Q-values)."""


def first_non_finite(array: np.ndarray) -> tuple[int, ...] | None:
    """
    :param array: any numeric array
    :return: the index of the first NaN or inf (in C order), None if every entry is finite
    """
    finite = np.isfinite(array)
    if finite.all():
        return None
    return tuple(int(i) for i in np.unravel_index(int(np.argmin(finite.reshape(-1))), array.shape))


def check_finite(
    named_arrays: list[tuple[str, np.ndarray | dict[str, np.ndarray]]], locate: Callable[[tuple[int, ...]], str]
) -> None:
    """
    Raise ``NonFiniteDataError`` if any array holds a NaN or inf, naming the earliest bad entry.

    :param named_arrays: ``(what it holds, array or dict of arrays)``; the arrays share their leading dimensions
        (e.g. ``(n_steps, n_envs)``) and the bad entry with the smallest leading index is reported (the first in
        time), earlier pairs winning ties (list causes before their consequences)
    :param locate: turns the index of the bad entry into a place (``"env 1 at trunk step 43"``)
    """
    earliest: tuple[tuple[int, ...], int, str, float] | None = None
    for order, (name, array) in enumerate(named_arrays):
        for key, values in array.items() if isinstance(array, dict) else [(None, array)]:
            values = np.asarray(values)
            index = first_non_finite(values)
            if index is not None and (earliest is None or (index[:2], order) < (earliest[0][:2], earliest[1])):
                earliest = (index, order, name if key is None else f"{name}[{key!r}]", float(values[index]))
    if earliest is not None:
        index, _, what, value = earliest
        raise NonFiniteDataError(f"Non-finite {what} ({value}) in {locate(index)}. {HOW_TO_FIND_THE_SOURCE}")
