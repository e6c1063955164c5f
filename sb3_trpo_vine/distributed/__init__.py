"""
Distributed collection on Ray: :class:`RayVecEnv` runs the training envs, and the vine branch envs, in Ray actors.

Needs the ``ray`` extra: ``pip install 'sb3-trpo-vine[ray]'``. See ``docs/guide/ray.md``.
"""

from sb3_trpo_vine.distributed.ray_vec_env import RayActorFailedError, RayBranchPool, RayVecEnv
from sb3_trpo_vine.distributed.worker import EnvRecipe, EnvWorker

__all__ = ["EnvRecipe", "EnvWorker", "RayActorFailedError", "RayBranchPool", "RayVecEnv"]
