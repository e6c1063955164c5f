"""sb3-trpo-vine: Trust Region Policy Optimization with single-path and vine sampling for Stable-Baselines3."""

import os

from sb3_trpo_vine.buffers import (
    DictSinglePathRolloutBuffer,
    DictVineRolloutBuffer,
    SinglePathRolloutBuffer,
    VineRolloutBuffer,
)
from sb3_trpo_vine.finite import NonFiniteDataError
from sb3_trpo_vine.trpo_vine import TRPOVine

with open(os.path.join(os.path.dirname(__file__), "version.txt")) as file_handler:
    __version__ = file_handler.read().strip()

__all__ = [
    "DictSinglePathRolloutBuffer",
    "DictVineRolloutBuffer",
    "NonFiniteDataError",
    "SinglePathRolloutBuffer",
    "TRPOVine",
    "VineRolloutBuffer",
    "__version__",
]
