"""
Exact snapshots of gymnasium environments, for vine sampling.

``take_snapshot`` / ``restore_snapshot`` save and restore the *episode* state of a whole wrapper chain
(simulator, base env ``np_random``, per-episode wrapper state); ``branch_mode`` freezes running statistics and
bookkeeping while branches are stepped; ``clone_env`` builds an independent copy. Custom envs and wrappers are
made snapshottable with the registry functions or the ``get_snapshot_state`` / ``set_snapshot_state`` protocol.
"""

from sb3_trpo_vine.snapshot import handlers as _handlers  # noqa: F401  (registers the built-in handlers)
from sb3_trpo_vine.snapshot.core import (
    EnvSnapshot,
    SnapshotMismatchError,
    SnapshotNotSupportedError,
    branch_mode,
    check_snapshot_supported,
    clone_env,
    is_snapshot_supported,
    register_attributes,
    register_snapshot_handler,
    register_stateless,
    restore_snapshot,
    take_snapshot,
    unsupported_layers,
)
from sb3_trpo_vine.snapshot.vec_env import (
    SnapshotWrapper,
    vec_check_snapshot_supported,
    vec_clone_envs,
    vec_take_snapshots,
)

__all__ = [
    "EnvSnapshot",
    "SnapshotMismatchError",
    "SnapshotNotSupportedError",
    "SnapshotWrapper",
    "branch_mode",
    "check_snapshot_supported",
    "clone_env",
    "is_snapshot_supported",
    "register_attributes",
    "register_snapshot_handler",
    "register_stateless",
    "restore_snapshot",
    "take_snapshot",
    "unsupported_layers",
    "vec_check_snapshot_supported",
    "vec_clone_envs",
    "vec_take_snapshots",
]
