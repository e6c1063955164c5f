"""
Snapshot protocol and handler registry: take and restore the episode state of a whole gymnasium wrapper chain.

Vine sampling (Schulman et al., 2015, Sect. 5.2) restarts several short branch rollouts from states visited
by the main rollout. This needs an *exact* copy of everything ``step()`` reads: the simulator state, the
base env's ``np_random``, and the per-episode state of every wrapper (``TimeLimit`` step counter, frame
stacks, sticky actions, ...). Each layer of the chain (outermost wrapper to base env) is covered by the
registrations found along the MRO of its class:

* **full handler** (:func:`register_snapshot_handler`): gets and sets the whole state of the layer.
  Inherited by subclasses (MRO lookup), so a subclass that adds state must register its own handler.
* **extension** (:func:`register_attributes` or the ``get_snapshot_state`` / ``set_snapshot_state``
  protocol): the state the class *adds*. Inherited by subclasses, and combined with the nearest handler
  of a parent class, so ``register_attributes(MyHopper, ["target"])`` keeps the MuJoCo physics handler.
* **stateless** (:func:`register_stateless`): exact class only. A subclass of a stateless wrapper is
  *unknown* until registered itself, so a subclass that adds state never silently passes as stateless.

Any layer without a handler is unknown and makes the chain unsupported. Snapshots hold the *episode* scope
only: running statistics and bookkeeping (``NormalizeObservation.obs_rms``, Monitor episode lists, ...)
are never rolled back; :func:`branch_mode` freezes them while branches are stepped instead.
"""

import copy
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

import cloudpickle
import gymnasium as gym
import numpy as np

GetState = Callable[[Any], Any]
SetState = Callable[[Any, Any], None]
# Called on entry with the layer, returns the function that undoes what it changed
Hook = Callable[[Any], Callable[[], None]]

PROTOCOL_GET = "get_snapshot_state"
PROTOCOL_SET = "set_snapshot_state"

# Types whose instances are immutable, so a snapshot can hold them without copying
_IMMUTABLE_TYPES = (bool, int, float, complex, str, bytes, type(None), np.generic)


class SnapshotNotSupportedError(ValueError):
    """The environment has a layer whose state cannot be snapshotted."""


class SnapshotMismatchError(ValueError):
    """A snapshot was restored into a wrapper chain built differently from the one it was taken from."""


@dataclass(frozen=True)
class EnvSnapshot:
    """
    Episode state of a whole wrapper chain, picklable so it can cross SubprocVecEnv pipes.

    :param layer_types: Qualified class name of each layer, outermost wrapper first and base env last
    :param layer_states: State of each layer in the same order, ``None`` for stateless layers
    :param rng_state: Bit-generator state and seed of the base env's ``np_random`` (``None`` if it was never seeded)
    """

    layer_types: tuple[str, ...]
    layer_states: tuple[Any, ...]
    rng_state: tuple[dict[str, Any], int | None] | None


@dataclass(frozen=True)
class SnapshotHandler:
    """
    How to snapshot the state of one layer class.

    :param get_state: Returns a copy of the layer's episode state (``None``: the layer has no episode state)
    :param set_state: Restores a state returned by ``get_state``; it must copy anything it hands to the layer
        because the same snapshot can be restored many times
    :param freeze: Optional hook run by :func:`branch_mode`: stops the layer's running statistics and bookkeeping
        and returns the function that undoes it
    :param detach: Optional hook run while :func:`clone_env` pickles the chain: removes what a clone must not
        share (open files) and returns the function that puts it back
    :param problem: Optional check returning why a layer instance cannot be snapshotted, or ``None``
    """

    get_state: GetState | None
    set_state: SetState | None
    freeze: Hook | None = None
    detach: Hook | None = None
    problem: Callable[[Any], str | None] | None = None


class _Plan(NamedTuple):
    """Resolved handling of one layer class, cached per class."""

    tag: str
    supported: bool
    handler: SnapshotHandler | None


_FULL_HANDLERS: dict[type, SnapshotHandler] = {}
_EXTENSIONS: dict[type, SnapshotHandler] = {}
_STATELESS: set[type] = set()
# Handlers of optional env families are registered the first time their module is imported
_FAMILY_LOADERS: dict[str, Callable[[], None]] = {}
_PLANS: dict[type, _Plan] = {}


def copy_value(value: Any) -> Any:
    """
    Copy a value for a snapshot: immutable values are shared, arrays copied, anything else deep-copied.

    :param value: The attribute value
    :return: A copy that later mutations of ``value`` cannot change
    """
    if isinstance(value, _IMMUTABLE_TYPES):
        return value
    if type(value) is np.ndarray:
        return value.copy()
    if type(value) is tuple and all(isinstance(item, _IMMUTABLE_TYPES) for item in value):
        return value
    return copy.deepcopy(value)


def _forget(cls: Any) -> None:
    """Check that ``cls`` is a class and drop whatever was registered for it."""
    if not isinstance(cls, type):
        raise TypeError(f"Expected an env or wrapper class, got {cls!r}")
    _FULL_HANDLERS.pop(cls, None)
    _EXTENSIONS.pop(cls, None)
    _STATELESS.discard(cls)
    _PLANS.clear()


def add_handler(cls: type, handler: SnapshotHandler, extension: bool = False) -> None:
    """
    Register a handler object (used by :func:`register_snapshot_handler` and the built-in handlers).

    :param cls: The env or wrapper class
    :param handler: How to snapshot instances of ``cls``
    :param extension: Whether the handler only covers the state ``cls`` adds to its parent classes
    """
    _forget(cls)
    (_EXTENSIONS if extension else _FULL_HANDLERS)[cls] = handler


def add_family_loader(module_name: str, loader: Callable[[], None]) -> None:
    """
    Defer the registration of an optional env family until its module is imported.

    :param module_name: Module that defines the family's classes (e.g. ``"ale_py.env"``)
    :param loader: Registers the family's handlers; called once, the first time a class is resolved after
        ``module_name`` appears in ``sys.modules``
    """
    _FAMILY_LOADERS[module_name] = loader
    _PLANS.clear()


def register_snapshot_handler(cls: type, get_state: GetState, set_state: SetState, freeze: Hook | None = None) -> None:
    """
    Make ``cls`` and its subclasses snapshottable with a full handler that covers the whole layer.

    The base env's ``np_random`` is always saved separately, the handler need not save it.
    A subclass that adds state must register its own handler (or an extension).

    :param cls: The env or wrapper class
    :param get_state: ``get_state(layer)`` returns a picklable copy of the layer's episode state
    :param set_state: ``set_state(layer, state)`` restores it (copying whatever it hands to the layer)
    :param freeze: Optional ``freeze(layer)`` used by :func:`branch_mode`: stops running statistics / bookkeeping
        and returns a function that switches them back on
    """
    add_handler(cls, SnapshotHandler(get_state, set_state, freeze=freeze))


def register_stateless(cls: type) -> None:
    """
    Declare that ``cls`` adds no episode state to its parent classes.

    Only the exact class is covered: a subclass is unknown until it is registered itself. If a parent class
    has a handler, that handler still applies to ``cls``.

    :param cls: The env or wrapper class
    """
    _forget(cls)
    _STATELESS.add(cls)


def register_attributes(cls: type, episode_attrs: Sequence[str]) -> None:
    """
    Make the listed instance attributes of ``cls`` part of the snapshot (copied with :func:`copy_value`).

    Inherited by subclasses and combined with the handler of the nearest registered parent class
    (e.g. the MuJoCo physics handler for a ``MujocoEnv`` subclass). Attributes missing at snapshot time
    are deleted again on restore.

    :param cls: The env or wrapper class
    :param episode_attrs: Names of the attributes that change during an episode
    """
    if isinstance(episode_attrs, str):
        raise TypeError(f"episode_attrs must be a sequence of attribute names, got the string {episode_attrs!r}")
    names = tuple(episode_attrs)
    missing = object()

    def get_state(layer: Any) -> dict[str, Any]:
        state = {}
        for name in names:
            value = getattr(layer, name, missing)
            if value is not missing:
                state[name] = copy_value(value)
        return state

    def set_state(layer: Any, state: dict[str, Any]) -> None:
        for name in names:
            if name in state:
                setattr(layer, name, copy_value(state[name]))
            else:
                layer.__dict__.pop(name, None)

    add_handler(cls, SnapshotHandler(get_state, set_state), extension=True)


def _protocol_get_state(layer: Any) -> Any:
    return getattr(layer, PROTOCOL_GET)()


def _protocol_set_state(layer: Any, state: Any) -> None:
    getattr(layer, PROTOCOL_SET)(state)


_PROTOCOL_HANDLER = SnapshotHandler(_protocol_get_state, _protocol_set_state)


def _combine(handlers: list[SnapshotHandler]) -> SnapshotHandler:
    """Chain the handlers found along an MRO (extensions first, full handler last) into one handler."""
    if len(handlers) == 1:
        return handlers[0]
    # Only a full handler has hooks, and it is always the last one found
    hooks = handlers[-1]
    parts = [handler for handler in handlers if handler.get_state is not None]
    if len(parts) <= 1:
        get_state = parts[0].get_state if parts else None
        set_state = parts[0].set_state if parts else None
        return SnapshotHandler(get_state, set_state, freeze=hooks.freeze, detach=hooks.detach, problem=hooks.problem)

    def get_combined_state(layer: Any) -> tuple[Any, ...]:
        return tuple(part.get_state(layer) for part in parts)  # type: ignore[misc]

    def set_combined_state(layer: Any, state: tuple[Any, ...]) -> None:
        for part, part_state in zip(parts, state, strict=True):
            part.set_state(layer, part_state)  # type: ignore[misc]

    return SnapshotHandler(
        get_combined_state, set_combined_state, freeze=hooks.freeze, detach=hooks.detach, problem=hooks.problem
    )


def _resolve_plan(cls: type) -> _Plan:
    """Walk the MRO of ``cls``: collect extensions until the first full handler (see the module docstring)."""
    for module_name in [name for name in _FAMILY_LOADERS if name in sys.modules]:
        _FAMILY_LOADERS.pop(module_name)()
    tag = f"{cls.__module__}.{cls.__qualname__}"
    has_protocol = callable(getattr(cls, PROTOCOL_GET, None)) and callable(getattr(cls, PROTOCOL_SET, None))
    handlers: list[SnapshotHandler] = []
    known = False
    for klass in cls.__mro__:
        if klass in _FULL_HANDLERS:
            handlers.append(_FULL_HANDLERS[klass])
            break
        if klass in _EXTENSIONS:
            handlers.append(_EXTENSIONS[klass])
        elif has_protocol and (PROTOCOL_GET in vars(klass) or PROTOCOL_SET in vars(klass)):
            # The protocol methods are looked up on the instance, so they count once, at the most derived class
            handlers.append(_PROTOCOL_HANDLER)
            has_protocol = False
        elif klass is cls and klass in _STATELESS:
            known = True
    if not handlers:
        return _Plan(tag, known, None)
    return _Plan(tag, True, _combine(handlers))


def _plan(cls: type) -> _Plan:
    plan = _PLANS.get(cls)
    if plan is None:
        plan = _PLANS[cls] = _resolve_plan(cls)
    return plan


def env_layers(env: gym.Env) -> list[gym.Env]:
    """
    List the layers of a wrapper chain.

    :param env: The outermost env
    :return: The layers, outermost wrapper first and base env last
    """
    layers = [env]
    while isinstance(env, gym.Wrapper):
        env = env.env
        layers.append(env)
    return layers


def snapshot_problems(env: gym.Env) -> list[str]:
    """
    Describe every layer of ``env`` that prevents a snapshot.

    :param env: The outermost env
    :return: One line per offending layer (empty if the chain is supported)
    """
    problems = []
    for layer in env_layers(env):
        plan = _plan(type(layer))
        name = f"{type(layer).__name__} ({plan.tag})"
        if not plan.supported:
            problems.append(f"{name}: unknown state, no snapshot handler is registered for this class")
        elif plan.handler is not None and plan.handler.problem is not None:
            reason = plan.handler.problem(layer)
            if reason is not None:
                problems.append(f"{name}: {reason}")
    return problems


def format_not_supported(problems: Sequence[str]) -> str:
    """
    Build the error message for an unsupported env, naming both fixes.

    :param problems: Lines returned by :func:`snapshot_problems`
    :return: The message
    """
    lines = "\n".join(f"  - {problem}" for problem in problems)
    return (
        "Vine sampling needs exact snapshots of the environment, but these layers cannot be snapshotted:\n"
        f"{lines}\n"
        "Fix one of:\n"
        "  1. make each listed class snapshottable with `sb3_trpo_vine.snapshot.register_snapshot_handler(cls, "
        "get_state, set_state)`, `register_attributes(cls, episode_attrs)` or `register_stateless(cls)`, or define "
        "`get_snapshot_state(self)` and `set_snapshot_state(self, state)` on the class;\n"
        '  2. or train without snapshots: rollout_buffer_class="single_path".'
    )


def unsupported_layers(env: gym.Env) -> list[str]:
    """
    Class names of the layers of ``env`` that cannot be snapshotted (unknown state, or refused by their handler).

    :param env: The outermost env
    :return: The class names, outermost first (empty if the chain is supported)
    """
    names = []
    for layer in env_layers(env):
        plan = _plan(type(layer))
        handler = plan.handler
        if not plan.supported or (handler is not None and handler.problem is not None and handler.problem(layer)):
            names.append(type(layer).__name__)
    return names


def is_snapshot_supported(env: gym.Env) -> bool:
    """
    Check whether every layer of ``env`` can be snapshotted.

    :param env: The outermost env
    :return: True if :func:`take_snapshot` works on ``env``
    """
    return not unsupported_layers(env)


def check_snapshot_supported(env: gym.Env) -> None:
    """
    Raise if some layer of ``env`` cannot be snapshotted.

    :param env: The outermost env
    :raises SnapshotNotSupportedError: naming each offending class and the fixes
    """
    problems = snapshot_problems(env)
    if problems:
        raise SnapshotNotSupportedError(format_not_supported(problems))


def take_snapshot(env: gym.Env) -> EnvSnapshot:
    """
    Copy the episode state of ``env`` and of every wrapper below it, plus the base env's ``np_random``.

    :param env: The outermost env
    :return: The snapshot
    :raises SnapshotNotSupportedError: if a layer cannot be snapshotted
    """
    layers = env_layers(env)
    tags = []
    states = []
    for layer in layers:
        plan = _plan(type(layer))
        handler = plan.handler
        if handler is None:
            if not plan.supported:
                check_snapshot_supported(env)
            states.append(None)
        else:
            if handler.problem is not None and handler.problem(layer) is not None:
                check_snapshot_supported(env)
            states.append(None if handler.get_state is None else handler.get_state(layer))
        tags.append(plan.tag)
    rng = getattr(layers[-1], "_np_random", None)
    rng_state = None if rng is None else (rng.bit_generator.state, getattr(layers[-1], "_np_random_seed", None))
    return EnvSnapshot(tuple(tags), tuple(states), rng_state)


def _is_or_inherits(cls: type, tag: str) -> bool:
    return any(f"{base.__module__}.{base.__qualname__}" == tag for base in cls.__mro__)


def restore_snapshot(env: gym.Env, snapshot: EnvSnapshot) -> None:
    """
    Put ``env`` and every wrapper below it back into the episode state saved in ``snapshot``.

    Running statistics and bookkeeping (normalization statistics, Monitor episode lists) keep their live values.
    ``env`` may be another instance than the one the snapshot was taken from, built the same way.

    :param env: The outermost env
    :param snapshot: A snapshot returned by :func:`take_snapshot`
    :raises SnapshotMismatchError: if the chain's classes differ from the snapshot's
    """
    layers = env_layers(env)
    plans = [_plan(type(layer)) for layer in layers]
    tags = tuple(plan.tag for plan in plans)
    # A layer may be a subclass of the recorded class, e.g. rl_zoo3 replaces gymnasium's TimeLimit by its
    # PatchedTimeLimit subclass in the processes that import it, but not in SubprocVecEnv workers.
    if len(layers) != len(snapshot.layer_types) or not all(
        _is_or_inherits(type(layer), tag) for layer, tag in zip(layers, snapshot.layer_types, strict=True)
    ):
        raise SnapshotMismatchError(
            "Cannot restore a snapshot into a differently built wrapper chain.\n"
            f"  snapshot: {' -> '.join(snapshot.layer_types)}\n"
            f"  env:      {' -> '.join(tags)}"
        )
    for layer, plan, state in zip(layers, plans, snapshot.layer_states, strict=True):
        if plan.handler is not None and plan.handler.set_state is not None:
            plan.handler.set_state(layer, state)
    base = layers[-1]
    if snapshot.rng_state is None:
        base._np_random = None
        base._np_random_seed = None
        return
    bit_generator_state, seed = snapshot.rng_state
    rng = base._np_random
    if rng is None or type(rng.bit_generator).__name__ != bit_generator_state["bit_generator"]:
        rng = np.random.Generator(getattr(np.random, bit_generator_state["bit_generator"])())
        base._np_random = rng
    rng.bit_generator.state = bit_generator_state
    # Also restore the seed: reading `np_random_seed` while it is None would replace the generator
    base._np_random_seed = seed


@contextmanager
def branch_mode(env: gym.Env) -> Iterator[gym.Env]:
    """
    Context manager under which stepping ``env`` changes no running statistics or bookkeeping.

    Normalization statistics are frozen, Monitor writes no CSV row and records no episode, RecordEpisodeStatistics
    records nothing. On exit they are switched back on, with the live values they had on entry. Episode state is
    *not* restored on exit: take a snapshot before branching and restore it afterwards.

    :param env: The outermost env
    :return: ``env``
    """
    with ExitStack() as stack:
        for layer in env_layers(env):
            handler = _plan(type(layer)).handler
            if handler is not None and handler.freeze is not None:
                stack.callback(handler.freeze(layer))
        yield env


def dump_clone_payload(env: gym.Env) -> bytes:
    """
    Serialize ``env`` with its snapshot so that :func:`load_clone_payload` rebuilds an independent clone.

    Simulators are rebuilt from their constructor arguments (MuJoCo and ALE envs are ``EzPickle``) and then
    restored from the snapshot; open files (Monitor CSV) are left out, so clones never write to them.

    :param env: The outermost env
    :return: The payload
    """
    snapshot = take_snapshot(env)
    with ExitStack() as stack:
        for layer in env_layers(env):
            handler = _plan(type(layer)).handler
            if handler is not None and handler.detach is not None:
                stack.callback(handler.detach(layer))
        return cloudpickle.dumps((env, snapshot))


def load_clone_payload(payload: bytes) -> gym.Env:
    """
    Rebuild the clone serialized by :func:`dump_clone_payload`.

    :param payload: The payload
    :return: The clone, in the state its source had when the payload was made
    """
    env, snapshot = cloudpickle.loads(payload)
    restore_snapshot(env, snapshot)
    return env


def clone_env(env: gym.Env) -> gym.Env:
    """
    Build an independent copy of the whole wrapper chain that continues exactly where ``env`` is.

    Unlike ``copy.deepcopy`` (which rebuilds MuJoCo envs from their constructor arguments but copies the
    wrapper counters), every layer is restored from :func:`take_snapshot`. The clone's Monitor writes no CSV.
    Step it under :func:`branch_mode` to also freeze its own normalization statistics.

    :param env: The outermost env
    :return: The clone
    """
    return load_clone_payload(dump_clone_payload(env))
