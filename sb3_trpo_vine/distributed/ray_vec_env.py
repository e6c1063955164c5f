"""
``RayVecEnv``: an SB3 VecEnv whose environments live in Ray actors, and the Ray branch pool used by vine sampling.

The learner (policy forwards, updates, VecNormalize) stays in the driver process. Each actor holds a contiguous
slice of the training envs and a pool of branch envs; every VecEnv or branch-pool operation is one remote call
per actor, sent to all actors before any answer is awaited, and every wait is bounded by a timeout.

Fault tolerance: the driver keeps, per actor, snapshots of its envs taken every ``checkpoint_interval`` steps (and
after each reset or state-changing ``env_method``) plus the actions stepped since. When an actor dies, a new one is
started with the same env ranks, restored from the checkpoint, the actions are replayed, the branch pool in use
replays its branches, and the interrupted call is sent again: the run continues with the same trajectories. Actors that
do not answer in time, that died more than ``max_restarts`` times, or whose envs cannot be snapshotted raise
:class:`RayActorFailedError`.
"""

import warnings
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn
from stable_baselines3.common.vec_env.util import dict_to_obs

from sb3_trpo_vine.distributed.worker import BranchStep, EnvRecipe, EnvWorker, WorkerInfo, WorkerStep
from sb3_trpo_vine.snapshot import EnvSnapshot

try:
    import ray
    from ray.actor import ActorHandle
    from ray.exceptions import GetTimeoutError, RayActorError
except ImportError as error:  # pragma: no cover
    raise ImportError("sb3_trpo_vine.distributed needs Ray: pip install 'sb3-trpo-vine[ray]'") from error

# Actors do their own recovery (restore + replay), so Ray must not restart them behind our back
_RemoteEnvWorker = ray.remote(max_restarts=0)(EnvWorker)

DEFAULT_ACTOR_OPTIONS: dict[str, Any] = {"num_cpus": 1, "scheduling_strategy": "SPREAD"}

# env_method calls that leave the envs' episode state unchanged, so they need no new checkpoint
READ_ONLY_METHODS = frozenset({"take_snapshot", "clone_payload", "snapshot_problems", "snapshot_wrapper_is_outermost"})


class RayActorFailedError(RuntimeError):
    """An env actor of a ``RayVecEnv`` died or stopped answering, and its envs could not be recovered."""


def connect(address: str | None, num_cpus: int | None, init_kwargs: dict[str, Any]) -> None:
    """
    Connect to Ray unless already connected: to the cluster at ``address``, or to a new local instance.

    :param address: ``None`` (start a local instance, unless ``RAY_ADDRESS`` is set), ``"auto"`` (the cluster
        started on this machine with ``ray start``) or ``"ray://host:10001"`` (Ray Client)
    :param num_cpus: CPUs of a local instance (``None``: all of them); ignored when connecting to a cluster
    :param init_kwargs: Extra keyword arguments of ``ray.init`` (e.g. ``runtime_env``)
    """
    if ray.is_initialized():
        return
    if address is None:
        ray.init(**{"num_cpus": num_cpus, "include_dashboard": False, **init_kwargs})
    else:
        ray.init(address=address, **init_kwargs)


def _split(n_envs: int, n_actors: int) -> list[list[int]]:
    """Contiguous, balanced slices of the env indices, one per actor."""
    return [chunk.tolist() for chunk in np.array_split(np.arange(n_envs), n_actors)]


class RayVecEnv(VecEnv):
    """
    Vectorized env whose environments live in Ray actors, several per actor, anywhere in the cluster.

    Each env is built inside its actor like ``make_vec_env`` builds it (``gym.make`` or the factory, action space
    seeded with ``seed + rank``, ``Monitor``, ``wrapper_class``) and wrapped outermost with
    :class:`~sb3_trpo_vine.snapshot.SnapshotWrapper`, so vine sampling works unchanged. With the same seed and
    number of envs, trajectories are identical to ``make_vec_env(env_id, n_envs, seed=seed)`` (a DummyVecEnv),
    whatever the number of actors.

    :param env_id: Registered env id, or a callable returning an env (shipped to the actors with cloudpickle)
    :param n_envs: Number of environments
    :param n_actors: Number of actors (``None``: one per CPU of the cluster, at most ``n_envs``); the envs are split
        into contiguous, balanced slices
    :param seed: Seed of the first reset (``seed + index`` per env, as ``make_vec_env``) and of the action spaces
    :param start_index: Rank of the first env (Monitor file names and action-space seeds)
    :param env_kwargs: Keyword arguments of the env constructor
    :param wrapper_class: Wrapper applied over ``Monitor``, as in ``make_vec_env``
    :param wrapper_kwargs: Keyword arguments of ``wrapper_class``
    :param monitor: Whether to wrap each env in SB3's ``Monitor``
    :param monitor_dir: Folder for the Monitor CSV files, on the machine of each actor (``None``: no files)
    :param monitor_kwargs: Keyword arguments of ``Monitor``
    :param address: Ray cluster to connect to when Ray is not initialized yet: ``None`` starts a local instance,
        ``"auto"`` joins the cluster started with ``ray start`` on this machine, ``"ray://host:10001"`` uses Ray Client
    :param num_cpus: CPUs of a local Ray instance started here (``None``: all)
    :param init_kwargs: Extra keyword arguments of ``ray.init`` (e.g. ``runtime_env``)
    :param actor_options: Options of the actors (``ray.remote`` options such as ``num_cpus``, ``resources``,
        ``scheduling_strategy``), merged over ``{"num_cpus": 1, "scheduling_strategy": "SPREAD"}``
    :param timeout: Seconds to wait for any answer of a running actor before raising :class:`RayActorFailedError`
    :param startup_timeout: Seconds to wait for an actor to be scheduled and build its envs
    :param max_restarts: How many times each actor may be replaced after dying (0: fail on the first death)
    :param checkpoint_interval: Steps between two snapshots of the envs kept for recovery (a dead actor's envs are
        restored from the last one, then the steps since are replayed)
    """

    def __init__(
        self,
        env_id: str | Callable[..., gym.Env],
        n_envs: int = 1,
        n_actors: int | None = None,
        seed: int | None = None,
        start_index: int = 0,
        env_kwargs: dict[str, Any] | None = None,
        wrapper_class: Callable[..., gym.Env] | None = None,
        wrapper_kwargs: dict[str, Any] | None = None,
        monitor: bool = True,
        monitor_dir: str | None = None,
        monitor_kwargs: dict[str, Any] | None = None,
        address: str | None = None,
        num_cpus: int | None = None,
        init_kwargs: dict[str, Any] | None = None,
        actor_options: dict[str, Any] | None = None,
        timeout: float = 60.0,
        startup_timeout: float = 300.0,
        max_restarts: int = 3,
        checkpoint_interval: int = 100,
    ) -> None:
        if n_envs < 1:
            raise ValueError(f"n_envs must be at least 1, got {n_envs}")
        if checkpoint_interval < 1:
            raise ValueError(f"checkpoint_interval must be at least 1, got {checkpoint_interval}")
        connect(address, num_cpus, init_kwargs or {})
        if n_actors is None:
            n_actors = min(n_envs, max(1, int(ray.cluster_resources().get("CPU", 1))))
        if not 1 <= n_actors <= n_envs:
            raise ValueError(f"n_actors must be between 1 and n_envs={n_envs}, got {n_actors}")
        self.recipe = EnvRecipe(
            env_id,
            seed,
            env_kwargs or {},
            monitor,
            monitor_dir,
            monitor_kwargs or {},
            wrapper_class,
            wrapper_kwargs or {},
        )
        self.start_index = start_index
        self.actor_options = {**DEFAULT_ACTOR_OPTIONS, **(actor_options or {})}
        self.timeout = timeout
        self.startup_timeout = startup_timeout
        self.max_restarts = max_restarts
        self.checkpoint_interval = checkpoint_interval
        self.closed = False
        self._failure: RayActorFailedError | None = None
        # env index -> (actor, local index), and the env indices of each actor
        self.actor_envs = _split(n_envs, n_actors)
        self._location = [(actor, local) for actor, envs in enumerate(self.actor_envs) for local in range(len(envs))]
        self.restarts = [0] * n_actors
        # Recovery state per actor: snapshots of its envs at the last checkpoint and the actions stepped since
        self._checkpoints: list[list[EnvSnapshot] | None] = [None] * n_actors
        self._actions_log: list[list[np.ndarray]] = [[] for _ in range(n_actors)]
        self._started = False
        # The branch envs of an actor are shared by the pools of this VecEnv: the last one restored owns their state
        self._active_branch_pool: weakref.ref[RayBranchPool] | None = None
        self._step_refs: dict[int, ray.ObjectRef] = {}
        self._step_args: dict[int, tuple[Any, ...]] = {}
        # Where each actor runs, known once it answered
        self.hosts: list[str | None] = [None] * n_actors

        self.actors: list[ActorHandle] = [self._spawn(actor, resumed=False) for actor in range(n_actors)]
        infos = [self._await_ready(actor) for actor in range(n_actors)]
        self.snapshot_problems = infos[0].snapshot_problems
        super().__init__(n_envs, infos[0].observation_space, infos[0].action_space)
        self.seed(seed)

    def _spawn(self, actor: int, resumed: bool) -> ActorHandle:
        ranks = [self.start_index + index for index in self.actor_envs[actor]]
        return _RemoteEnvWorker.options(**self.actor_options).remote(self.recipe, ranks, resumed)

    def _describe(self, actor: int) -> str:
        where = "" if self.hosts[actor] is None else f" on {self.hosts[actor]}"
        return f"RayVecEnv actor {actor}{where}, holding envs {self.actor_envs[actor]}"

    def _fail(self, actors: list[int], reason: str, fix: str) -> RayActorFailedError:
        """Kill the given actors, put the VecEnv in the failed state and return the error to raise."""
        for actor in actors:
            ray.kill(self.actors[actor], no_restart=True)
        details = "; ".join(self._describe(actor) for actor in actors)
        self._failure = RayActorFailedError(f"{details}: {reason}. The iteration cannot continue. {fix}")
        return self._failure

    def _await_ready(self, actor: int) -> WorkerInfo:
        """Wait until the actor has built its envs; a failure to build them propagates as ``RayActorError``."""
        try:
            info: WorkerInfo = ray.get(self.actors[actor].describe.remote(), timeout=self.startup_timeout)
        except GetTimeoutError:
            raise self._fail(
                [actor],
                f"was not running within startup_timeout={self.startup_timeout} s",
                f"The cluster may lack the resources asked for by actor_options={self.actor_options} "
                f"(available: {ray.available_resources()}); lower n_actors or actor_options['num_cpus'], add nodes, "
                "or raise startup_timeout.",
            ) from None
        self.hosts[actor] = f"{info.host} (pid {info.pid})"
        return info

    def _check_usable(self) -> None:
        if self.closed:
            raise RuntimeError("This RayVecEnv is closed")
        if self._failure is not None:
            raise self._failure

    def _submit(self, method: str, args: dict[int, tuple[Any, ...]]) -> dict[int, ray.ObjectRef]:
        return {actor: getattr(self.actors[actor], method).remote(*actor_args) for actor, actor_args in args.items()}

    def _await(self, method: str, args: dict[int, tuple[Any, ...]], refs: dict[int, ray.ObjectRef]) -> dict[int, Any]:
        """
        Gather the answers of ``refs``; replace the actors that died and send them their call again.

        :param method: Name of the worker method that was called
        :param args: Its arguments per actor (to call it again after a recovery)
        :param refs: The pending results per actor
        :return: The results per actor
        """
        results: dict[int, Any] = {}
        while refs:
            _, late = ray.wait(list(refs.values()), num_returns=len(refs), timeout=self.timeout)
            if late:
                raise self._fail(
                    [actor for actor, ref in refs.items() if ref in late],
                    f"did not answer `{method}` within timeout={self.timeout} s",
                    "If the env is just slow, raise `timeout`; otherwise look for a hang in the env (the actor's log is "
                    "in the Ray session logs). Restart training from your last saved model with a new RayVecEnv.",
                )
            died = []
            for actor, ref in refs.items():
                try:
                    results[actor] = ray.get(ref, timeout=self.timeout)
                except RayActorError:
                    died.append(actor)
            for actor in died:
                self._recover(actor, method)
            refs = self._submit(method, {actor: args[actor] for actor in died})
        return results

    def _call(self, method: str, args: dict[int, tuple[Any, ...]]) -> dict[int, Any]:
        self._check_usable()
        return self._await(method, args, self._submit(method, args))

    def _recover(self, actor: int, method: str) -> None:
        """Replace a dead actor by a new one in the same state (checkpoint, replayed steps and branches)."""
        while True:
            if self.restarts[actor] >= self.max_restarts:
                raise self._fail(
                    [actor],
                    f"died during `{method}` after {self.restarts[actor]} restarts (max_restarts={self.max_restarts})",
                    "Look at why the actor dies (out of memory, node lost: see the Ray session logs), raise max_restarts "
                    "if deaths are expected, and restart training from your last saved model with a new RayVecEnv.",
                )
            if self._started and self.snapshot_problems:
                raise self._fail(
                    [actor],
                    f"died during `{method}`; its envs cannot be rebuilt because they cannot be snapshotted "
                    f"({'; '.join(self.snapshot_problems)})",
                    "Make the env snapshottable (see the snapshot guide) to get automatic recovery, and restart "
                    "training from your last saved model with a new RayVecEnv.",
                )
            self.restarts[actor] += 1
            warnings.warn(f"{self._describe(actor)} died during `{method}`; replacing it (restart {self.restarts[actor]})")
            ray.kill(self.actors[actor], no_restart=True)
            self.actors[actor] = self._spawn(actor, resumed=True)
            try:
                self._await_ready(actor)
                if self._checkpoints[actor] is not None or self._actions_log[actor]:
                    self._await_one(actor, "recover", self._checkpoints[actor], self._actions_log[actor])
                pool = None if self._active_branch_pool is None else self._active_branch_pool()
                if pool is not None:
                    pool.replay(actor)
                return
            except RayActorError:
                continue

    def _await_one(self, actor: int, method: str, *args: Any) -> Any:
        """Call one actor during a recovery; a death propagates as ``RayActorError``."""
        try:
            return ray.get(getattr(self.actors[actor], method).remote(*args), timeout=self.timeout)
        except GetTimeoutError:
            raise self._fail(
                [actor],
                f"did not answer `{method}` within timeout={self.timeout} s while being recovered",
                "Raise `timeout` if replaying the steps since the last checkpoint is slow (or lower checkpoint_interval).",
            ) from None

    def _commit(self, actor: int, checkpoint: list[EnvSnapshot] | None, actions: np.ndarray | None = None) -> None:
        """Record what the actor's envs went through since the last checkpoint."""
        if checkpoint is not None:
            self._checkpoints[actor] = checkpoint
            self._actions_log[actor] = []
        elif actions is not None and not self.snapshot_problems:
            self._actions_log[actor].append(actions)

    def _wants_checkpoint(self, actor: int) -> bool:
        return not self.snapshot_problems and len(self._actions_log[actor]) + 1 >= self.checkpoint_interval

    def _group(self, indices: VecEnvIndices) -> tuple[int, dict[int, tuple[list[int], list[int]]]]:
        """
        :param indices: Env indices (SB3 semantics: ``None`` is all, an int is one)
        :return: The number of indices, and per actor the positions in ``indices`` and the local env indices
        """
        targets = list(self._get_indices(indices))
        groups: dict[int, tuple[list[int], list[int]]] = {}
        for position, index in enumerate(targets):
            actor, local = self._location[index]
            positions, locals_ = groups.setdefault(actor, ([], []))
            positions.append(position)
            locals_.append(local)
        return len(targets), groups

    @staticmethod
    def _scatter(size: int, groups: dict[int, tuple[list[int], list[int]]], results: dict[int, list[Any]]) -> list[Any]:
        output: list[Any] = [None] * size
        for actor, (positions, _) in groups.items():
            for position, value in zip(positions, results[actor], strict=True):
                output[position] = value
        return output

    def _observations(self, results: dict[int, WorkerStep]) -> VecEnvObs:
        parts = [results[actor].observations for actor in range(len(self.actors))]
        batches = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
        return dict_to_obs(self.observation_space, batches)

    def _update_reset_infos(self, results: dict[int, WorkerStep]) -> None:
        for actor, result in results.items():
            for local, info in result.reset_infos.items():
                self.reset_infos[self.actor_envs[actor][local]] = info

    def reset(self) -> VecEnvObs:
        """
        Reset every env with the seeds and options set by ``seed()`` and ``set_options()`` (used once, as in SB3).

        :return: The first observations
        """
        checkpoint = not self.snapshot_problems
        args = {
            actor: ([self._seeds[index] for index in envs], [self._options[index] for index in envs], checkpoint)
            for actor, envs in enumerate(self.actor_envs)
        }
        results = self._call("reset", args)
        for actor, result in results.items():
            self._commit(actor, result.checkpoint)
        self._started = True
        self._update_reset_infos(results)
        self._reset_seeds()
        self._reset_options()
        return self._observations(results)

    def step_async(self, actions: np.ndarray) -> None:
        """
        Send each actor its slice of the actions, in one call per actor.

        :param actions: One action per env
        """
        self._check_usable()
        actions = np.asarray(actions)
        # Copies: the slices are kept for replays after a recovery
        self._step_args = {
            actor: (actions[envs[0] : envs[-1] + 1].copy(), self._wants_checkpoint(actor))
            for actor, envs in enumerate(self.actor_envs)
        }
        self._step_refs = self._submit("step", self._step_args)

    def step_wait(self) -> VecEnvStepReturn:
        """
        Gather the actors' results (replacing dead actors and stepping them again).

        :return: Observations, rewards, dones and infos, with SB3's auto-reset semantics
        """
        self._check_usable()
        results: dict[int, WorkerStep] = self._await("step", self._step_args, self._step_refs)
        self._step_refs = {}
        for actor, result in results.items():
            self._commit(actor, result.checkpoint, self._step_args[actor][0])
        self._update_reset_infos(results)
        order = range(len(self.actors))
        return (
            self._observations(results),
            np.concatenate([results[actor].rewards for actor in order]),
            np.concatenate([results[actor].dones for actor in order]),
            [info for actor in order for info in results[actor].infos],
        )

    def close(self) -> None:
        """Close the envs (flushing Monitor files) and stop the actors; closing twice does nothing."""
        if self.closed:
            return
        self.closed = True
        refs = [actor.close.remote() for actor in self.actors]
        ray.wait(refs, num_returns=len(refs), timeout=self.timeout)
        for actor in self.actors:
            ray.kill(actor, no_restart=True)

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """
        :param attr_name: Attribute, resolved through the wrappers (``get_wrapper_attr``) as in SB3's VecEnvs
        :param indices: Which envs (default: all)
        :return: Its value in each env
        """
        size, groups = self._group(indices)
        return self._scatter(size, groups, self._call("get_attr", {a: (local, attr_name) for a, (_, local) in groups.items()}))

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """
        Set an attribute on the outermost wrapper of some envs (SB3 semantics; not replayed after a recovery).

        :param attr_name: Attribute name
        :param value: New value
        :param indices: Which envs (default: all)
        """
        _, groups = self._group(indices)
        self._call("set_attr", {actor: (local, attr_name, value) for actor, (_, local) in groups.items()})

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        """
        Call a method, resolved through the wrappers (``get_wrapper_attr``), of some envs.

        After the first reset, unless the method is known to be read-only, the envs of the called actors are
        checkpointed after the call (it may have changed their state).

        :param method_name: Method name
        :param method_args: Positional arguments
        :param indices: Which envs (default: all)
        :param method_kwargs: Keyword arguments
        :return: The return value of each call
        """
        size, groups = self._group(indices)
        checkpoint = self._started and not self.snapshot_problems and method_name not in READ_ONLY_METHODS
        results = self._call(
            "env_method",
            {actor: (local, method_name, method_args, method_kwargs, checkpoint) for actor, (_, local) in groups.items()},
        )
        for actor, (_, snapshots) in results.items():
            self._commit(actor, snapshots)
        return self._scatter(size, groups, {actor: values for actor, (values, _) in results.items()})

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        """
        :param wrapper_class: Wrapper class
        :param indices: Which envs (default: all)
        :return: Whether each env's chain contains it
        """
        size, groups = self._group(indices)
        return self._scatter(
            size, groups, self._call("env_is_wrapped", {actor: (local, wrapper_class) for actor, (_, local) in groups.items()})
        )

    def get_images(self) -> Sequence[np.ndarray | None]:
        """
        :return: One ``rgb_array`` frame per env (``None`` each if the render mode is not ``rgb_array``)
        """
        if self.render_mode != "rgb_array":
            warnings.warn(f"The render mode is {self.render_mode}, but get_images needs `rgb_array`")
            return [None] * self.num_envs
        size, groups = self._group(None)
        return self._scatter(size, groups, self._call("render", {actor: (local,) for actor, (_, local) in groups.items()}))

    def make_branch_pool(self) -> "RayBranchPool":
        """
        :return: A branch pool whose branch envs live in this VecEnv's actors (used by vine sampling)
        """
        return RayBranchPool(self)


class RayBranchPool:
    """
    Vine branch envs in the actors of a :class:`RayVecEnv`: branch ``i`` lives in actor ``i % n_actors``.

    Each actor keeps clones of its env chain, created once and grown on demand (``reserve``); ``restore`` sends each
    actor its snapshots in one call and ``step`` sends each actor its slice of (branches, actions) in one call. Branch
    steps never touch the training envs, their Monitor files or statistics. The pool remembers the snapshots and
    actions since the last ``restore`` so that a replaced actor's branches can be replayed. The pools of one VecEnv
    share the actors' branch envs: the last one restored is the one in use.

    :param venv: The VecEnv whose actors simulate the branches
    """

    def __init__(self, venv: RayVecEnv) -> None:
        self.venv = venv
        n_actors = len(venv.actors)
        self.snapshots: list[list[EnvSnapshot]] = [[] for _ in range(n_actors)]
        self.steps: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(n_actors)]

    def reserve(self, n_branches: int) -> None:
        """
        Make sure the actors hold at least ``n_branches`` branch envs in total, in one call per actor.

        :param n_branches: Number of branches of the coming ``restore``
        """
        n_actors = len(self.venv.actors)
        counts = {actor: len(range(actor, n_branches, n_actors)) for actor in range(n_actors)}
        self.venv._call("reserve_branches", {actor: (count,) for actor, count in counts.items() if count > 0})

    def restore(self, snapshots: list[EnvSnapshot]) -> None:
        """
        Put branch ``i`` into the state ``snapshots[i]``.

        :param snapshots: One snapshot per branch
        """
        n_actors = len(self.venv.actors)
        self.snapshots = [snapshots[actor::n_actors] for actor in range(n_actors)]
        self.steps = [[] for _ in range(n_actors)]
        self.venv._active_branch_pool = weakref.ref(self)
        self.venv._call(
            "restore_branches", {actor: (self.snapshots[actor],) for actor in range(n_actors) if self.snapshots[actor]}
        )

    def step(self, indices: np.ndarray, actions: np.ndarray) -> tuple[list[Any], np.ndarray, np.ndarray, np.ndarray]:
        """
        Advance the given branches by one step each (no auto-reset).

        :param indices: Branch indices
        :param actions: One environment action per index
        :return: Observations, rewards, terminated and truncated flags of those branches, in the order of ``indices``
        """
        indices = np.asarray(indices)
        n_actors = len(self.venv.actors)
        owners = indices % n_actors
        masks = {actor: owners == actor for actor in np.unique(owners).tolist()}
        args = {actor: (indices[mask] // n_actors, actions[mask]) for actor, mask in masks.items()}
        results: dict[int, BranchStep] = self.venv._call("step_branches", args)
        for actor, actor_args in args.items():
            self.steps[actor].append(actor_args)

        observations: list[Any] = [None] * len(indices)
        rewards = np.zeros(len(indices))
        terminated = np.zeros(len(indices), dtype=bool)
        truncated = np.zeros(len(indices), dtype=bool)
        for actor, mask in masks.items():
            result = results[actor]
            for position, observation in zip(np.flatnonzero(mask), result.observations, strict=True):
                observations[position] = observation
            rewards[mask], terminated[mask], truncated[mask] = result.rewards, result.terminated, result.truncated
        return observations, rewards, terminated, truncated

    def replay(self, actor: int) -> None:
        """
        Rebuild the branches of a replaced actor: restore its snapshots and replay its branch steps.

        :param actor: The actor index
        """
        if self.snapshots[actor]:
            self.venv._await_one(actor, "replay_branches", self.snapshots[actor], self.steps[actor])
