"""
RL-Zoo (rl_zoo3) integration of TRPOVine.

``register_rl_zoo()`` adds the algorithm ``trpo_vine`` and its Optuna sampler to rl_zoo3, for your own scripts.

``python -m sb3_trpo_vine.zoo train|enjoy|record_video [rl_zoo3 flags]`` (console scripts ``trpo-vine-train``,
``trpo-vine-enjoy``, ``trpo-vine-record-video``) run rl_zoo3's scripts with every flag passed through unchanged
(except ``train``'s ``--scheme``, below), and these defaults when a flag is absent:

* ``--algo trpo_vine``;
* ``train``: ``-conf`` = the hyperparameter file of the sampling scheme shipped in this package (only for
  ``--algo trpo_vine``), ``hyperparams/single_path.yml`` or ``hyperparams/vine.yml``, chosen by the flag
  ``--scheme {single_path,vine}`` that this wrapper adds to ``train`` and removes before rl_zoo3 parses the flags
  (default ``single_path``, TRPOVine's default scheme). ``--scheme`` and an explicit ``-conf`` both select the file,
  so giving both is an error;
* ``enjoy`` / ``record_video``: ``-f logs``, the folder ``train`` writes to (the zoo's default, ``rl-trained-agents``,
  holds no TRPOVine agents).

``train`` runs rl_zoo3's ``ExperimentManager`` as :class:`VineExperimentManager`, which for TRPOVine:

* rejects unknown hyperparameter names, malformed files and a missing ``n_timesteps`` with a one-line message;
* reads ``target_kl: lin_<x>`` as the zoo reads ``learning_rate: lin_<x>``: a radius annealed linearly from x to 0;
* evaluates ``rollout_buffer_kwargs`` given as a Python string (``"dict(rollout_length=50)"``), as the zoo does for
  ``policy_kwargs``, and imports a ``rollout_buffer_class`` given as a dotted path;
* drops the vine-only ``rollout_buffer_kwargs`` when single-path sampling is selected, so
  ``--hyperparams rollout_buffer_class:"'single_path'"`` switches any vine entry to single-path;
* wraps every training env with :class:`~sb3_trpo_vine.snapshot.SnapshotWrapper` (outermost) when vine sampling runs
  on a ``--vec-env subproc``, whose envs are only reachable through ``env_method``.

Bad input (unknown env id, malformed hyperparameters, vine on an env that cannot be snapshotted, missing experiment
folder, ...) ends with a short ``error:`` message and exit code 1 instead of a traceback.

Step counts: ``-n`` / ``n_timesteps`` count every simulator step, trunk and vine branches. ``--eval-freq`` and
``--save-freq`` count callback calls times ``n_envs``: SB3 calls callbacks once per trunk step, so these count trunk
steps only, while ``--load-checkpoint`` takes the step count of the checkpoint's file name (all simulator steps).
"""

import argparse
import contextlib
import difflib
import importlib.resources
import inspect
import pathlib
import runpy
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import gymnasium as gym
import optuna
import rl_zoo3
import rl_zoo3.enjoy
import rl_zoo3.train
import yaml
from rl_zoo3.exp_manager import ExperimentManager
from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER, convert_onpolicy_params
from rl_zoo3.utils import SimpleLinearSchedule, get_class_by_name
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from sb3_trpo_vine.buffers import VineObjectiveMixin
from sb3_trpo_vine.snapshot import SnapshotWrapper
from sb3_trpo_vine.snapshot.core import snapshot_problems
from sb3_trpo_vine.trpo_vine import DEFAULT_ROLLOUT_BUFFER, ROLLOUT_BUFFER_ALIASES, VINE_SETTINGS, TRPOVine

ALGO_NAME = "trpo_vine"
# Sampling schemes with a packaged hyperparameter file hyperparams/<scheme>.yml (--scheme of train)
SCHEMES = tuple(ROLLOUT_BUFFER_ALIASES)
DEFAULT_LOG_FOLDER = "logs"
# Keys of a zoo hyperparameter entry that the ExperimentManager consumes instead of passing them to the algorithm
ZOO_KEYS = frozenset(
    {
        "n_envs",
        "n_timesteps",
        "normalize",
        "policy",
        "env_wrapper",
        "vec_env_wrapper",
        "frame_stack",
        "callback",
        "env_kwargs",
        "monitor_kwargs",
    }
)
# Algorithm arguments that the ExperimentManager sets itself
MANAGER_ARGUMENTS = frozenset({"env", "seed", "verbose", "device", "tensorboard_log", "_init_setup_model"})
# Exceptions that mean bad input to the zoo scripts: reported in one short message, without a traceback
INPUT_ERRORS = (ValueError, AssertionError, OSError, ImportError, gym.error.Error, yaml.YAMLError)


def hyperparams_file(scheme: str = DEFAULT_ROLLOUT_BUFFER) -> contextlib.AbstractContextManager[pathlib.Path]:
    """
    The RL-Zoo hyperparameter file of a sampling scheme shipped in this package (identical to the repository's copy
    in ``zoo_hyperparams/``).

    :param scheme: ``single_path`` or ``vine``
    :return: a context manager giving the path of the packaged ``hyperparams/<scheme>.yml``
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown sampling scheme {scheme!r}: expected one of {list(SCHEMES)}")
    return importlib.resources.as_file(importlib.resources.files("sb3_trpo_vine") / "hyperparams" / f"{scheme}.yml")


def convert_trpo_vine_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """
    Turn the values sampled by :func:`sample_trpo_vine_params` (an Optuna trial's ``params``) into hyperparameters.

    :param sampled_params: the sampled values
    :return: TRPOVine keyword arguments
    """
    vine_settings = {key: sampled_params[key] for key in VINE_SETTINGS if key in sampled_params}
    hyperparams = convert_onpolicy_params({key: value for key, value in sampled_params.items() if key not in vine_settings})
    # TRPOVine refuses a critic minibatch larger than the rollout; n_steps alone is a lower bound of the rollout
    hyperparams["batch_size"] = min(hyperparams["batch_size"], hyperparams["n_steps"])
    hyperparams["rollout_buffer_class"] = "vine"
    hyperparams["rollout_buffer_kwargs"] = vine_settings
    return hyperparams


def sample_trpo_vine_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """
    Sampler for TRPOVine hyperparameters: rl_zoo3's TRPO search space plus the vine settings N, K and H.

    ``target_kl`` is our KL, summed over action dimensions, so its range reaches higher than the zoo's TRPO range.
    ``n_steps`` is at least 64, the largest N, so that the rollout set fits in the trunk.

    :param trial: the Optuna trial
    :param n_actions: the action dimension of a Box action space (unused, as in the zoo's TRPO sampler)
    :param n_envs: the number of training envs (unused)
    :param additional_args: the zoo's extra arguments (unused)
    :return: TRPOVine keyword arguments
    """
    n_steps_pow = trial.suggest_int("n_steps_pow", 6, 12)
    batch_size_pow = trial.suggest_int("batch_size_pow", 2, 10)
    one_minus_gamma = trial.suggest_float("one_minus_gamma", 0.0001, 0.03, log=True)
    one_minus_gae_lambda = trial.suggest_float("one_minus_gae_lambda", 0.0001, 0.1, log=True)
    learning_rate = trial.suggest_float("learning_rate", 1e-5, 0.002, log=True)
    n_critic_updates = trial.suggest_int("n_critic_updates", 5, 30)
    cg_max_steps = trial.suggest_int("cg_max_steps", 5, 30)
    target_kl = trial.suggest_float("target_kl", 0.001, 0.3, log=True)
    net_arch = trial.suggest_categorical("net_arch", ["small", "medium"])
    activation_fn = trial.suggest_categorical("activation_fn", ["tanh", "relu"])
    n_rollout_states = trial.suggest_categorical("n_rollout_states", [16, 32, 64])
    n_actions_per_state = trial.suggest_categorical("n_actions_per_state", [2, 4, 8])
    rollout_length = trial.suggest_categorical("rollout_length", [10, 25, 50, 100])

    # Display true values
    trial.set_user_attr("gamma", 1 - one_minus_gamma)
    trial.set_user_attr("n_steps", 2**n_steps_pow)
    trial.set_user_attr("batch_size", 2**batch_size_pow)
    return convert_trpo_vine_params(
        {
            "n_steps_pow": n_steps_pow,
            "batch_size_pow": batch_size_pow,
            "one_minus_gamma": one_minus_gamma,
            "one_minus_gae_lambda": one_minus_gae_lambda,
            "learning_rate": learning_rate,
            "n_critic_updates": n_critic_updates,
            "cg_max_steps": cg_max_steps,
            "target_kl": target_kl,
            "net_arch": net_arch,
            "activation_fn": activation_fn,
            "n_rollout_states": n_rollout_states,
            "n_actions_per_state": n_actions_per_state,
            "rollout_length": rollout_length,
        }
    )


def register_rl_zoo() -> None:
    """
    Register TRPOVine as ``trpo_vine`` in rl_zoo3: algorithm table, Optuna sampler and converter (idempotent).

    ``rl_zoo3.ALGOS`` is one dict shared by ``rl_zoo3.train``, ``enjoy``, ``record_video`` and the
    ``ExperimentManager``, so updating it in place reaches all of them. Call it before ``rl_zoo3.train.train()``
    parses its arguments.
    """
    rl_zoo3.ALGOS[ALGO_NAME] = TRPOVine
    HYPERPARAMS_SAMPLER[ALGO_NAME] = sample_trpo_vine_params
    HYPERPARAMS_CONVERTER[ALGO_NAME] = convert_trpo_vine_params


def preprocess_target_kl(hyperparams: dict[str, Any]) -> dict[str, Any]:
    """
    Read ``target_kl`` as rl_zoo3 reads ``learning_rate``: ``lin_<x>`` is a linear schedule from x to 0.

    :param hyperparams: TRPOVine hyperparameters (updated in place)
    :return: the hyperparameters
    """
    target_kl = hyperparams.get("target_kl")
    if isinstance(target_kl, str):
        schedule, _, initial_value = target_kl.partition("_")
        try:
            if schedule != "lin":
                raise ValueError
            hyperparams["target_kl"] = SimpleLinearSchedule(float(initial_value))
        except ValueError as error:
            raise ValueError(
                f"target_kl {target_kl!r} is neither a number nor a schedule: use e.g. 0.03, or lin_0.03 for a radius "
                "annealed linearly from 0.03 to 0"
            ) from error
    return hyperparams


def uses_vine(rollout_buffer_class: str | type | None) -> bool:
    """
    Whether TRPOVine samples with the vine scheme for this ``rollout_buffer_class`` value.

    :param rollout_buffer_class: the hyperparameter (None selects TRPOVine's default)
    :return: True for the vine alias and vine buffer classes
    """
    if rollout_buffer_class is None:
        rollout_buffer_class = DEFAULT_ROLLOUT_BUFFER
    if isinstance(rollout_buffer_class, str):
        if rollout_buffer_class not in ROLLOUT_BUFFER_ALIASES:
            return False  # TRPOVine reports the unknown alias
        rollout_buffer_class = ROLLOUT_BUFFER_ALIASES[rollout_buffer_class][0]
    return isinstance(rollout_buffer_class, type) and issubclass(rollout_buffer_class, VineObjectiveMixin)


def _snapshot_wrapper_outermost(env_wrapper: Callable[[gym.Env], gym.Env] | None) -> Callable[[gym.Env], gym.Env]:
    def wrap_env(env: gym.Env) -> gym.Env:
        if env_wrapper is not None:
            env = env_wrapper(env)
        return SnapshotWrapper(env)

    return wrap_env


class VineExperimentManager(ExperimentManager):
    """
    rl_zoo3's ``ExperimentManager`` with TRPOVine's hyperparameter checks and conversions (see the module docstring).

    Other algorithms are handled exactly as by ``ExperimentManager``. Same arguments as ``ExperimentManager``.
    """

    # Whether the training envs must be snapshottable (set from the hyperparameters)
    vine_sampling = False

    def _is_trpo_vine(self) -> bool:
        return issubclass(rl_zoo3.ALGOS[self.algo], TRPOVine)

    def read_hyperparameters(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """
        Read the entry of the env (merged with ``--hyperparams``) and check it.

        :return: the hyperparameters, and the ones to save in ``config.yml``
        """
        try:
            hyperparams, saved_hyperparams = super().read_hyperparameters()
        except yaml.YAMLError as error:
            details = " ".join(line.strip() for line in str(error).splitlines())
            raise ValueError(f"{self.config} is not valid YAML: {details}") from error
        except (AttributeError, TypeError) as error:
            raise ValueError(
                f"{self.config} is not an RL-Zoo hyperparameter file: it must map env ids to mappings of "
                f"hyperparameters ({error})"
            ) from error
        if self._is_trpo_vine():
            self._check_hyperparameter_names(hyperparams)
        return hyperparams, saved_hyperparams

    def _check_hyperparameter_names(self, hyperparams: dict[str, Any]) -> None:
        where = f"the {self.env_name.gym_id} hyperparameters of {self.algo} (from {self.config} and --hyperparams)"
        parameters = inspect.signature(rl_zoo3.ALGOS[self.algo]).parameters
        known = (set(parameters) - MANAGER_ARGUMENTS) | ZOO_KEYS
        for name in hyperparams:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"expected one of {sorted(known)}"
                raise ValueError(f"unknown hyperparameter {name!r} in {where}: {hint}")
        required = {name for name, parameter in parameters.items() if parameter.default is inspect.Parameter.empty}
        for name in sorted(required - MANAGER_ARGUMENTS - set(hyperparams)):
            raise ValueError(f"missing hyperparameter {name!r} in {where}")
        if "n_timesteps" not in hyperparams and self.n_timesteps <= 0:
            raise ValueError(f"no n_timesteps in {where}: add it to the entry or pass -n")

    def _preprocess_hyperparams(
        self, hyperparams: dict[str, Any]
    ) -> tuple[dict[str, Any], Callable | None, list, Callable | None]:
        if not self._is_trpo_vine():
            return super()._preprocess_hyperparams(hyperparams)
        hyperparams = preprocess_target_kl(self._preprocess_rollout_buffer(hyperparams))
        hyperparams, env_wrapper, callbacks, vec_env_wrapper = super()._preprocess_hyperparams(hyperparams)
        self.vine_sampling = uses_vine(hyperparams.get("rollout_buffer_class"))
        if self.vine_sampling and self.vec_env_class is not DummyVecEnv:
            # Other VecEnvs reach their envs only through env_method, which needs SnapshotWrapper on top
            env_wrapper = _snapshot_wrapper_outermost(env_wrapper)
        return hyperparams, env_wrapper, callbacks, vec_env_wrapper

    def create_envs(self, n_envs: int, eval_env: bool = False, no_log: bool = False) -> VecEnv:
        """
        Create the environment and wrap it if necessary; fail in one line if vine sampling cannot snapshot it.

        :param n_envs: number of envs
        :param eval_env: whether it is an environment used for evaluation (never snapshotted)
        :param no_log: do not log training when doing hyperparameter optimization
        :return: the vectorized environment, with appropriate wrappers
        """
        env = super().create_envs(n_envs, eval_env=eval_env, no_log=no_log)
        if self.vine_sampling and not eval_env:
            # Every env is built alike: the first one tells what prevents snapshots
            base_env = env.unwrapped
            if isinstance(base_env, DummyVecEnv):
                problems = snapshot_problems(base_env.envs[0])
            else:
                problems = base_env.env_method("snapshot_problems", indices=0)[0]
            if problems:
                env.close()
                raise ValueError(
                    f"vine sampling cannot snapshot {self.env_name.gym_id}: {'; '.join(problems)}. Train it single-path "
                    "(--scheme single_path, or --hyperparams rollout_buffer_class:\"'single_path'\") or make it snapshottable "
                    "(sb3_trpo_vine.snapshot.register_snapshot_handler)"
                )
        return env

    def _preprocess_rollout_buffer(self, hyperparams: dict[str, Any]) -> dict[str, Any]:
        buffer_class = hyperparams.get("rollout_buffer_class")
        if isinstance(buffer_class, str) and "." in buffer_class:
            try:
                hyperparams["rollout_buffer_class"] = get_class_by_name(buffer_class)
            except (ImportError, AttributeError) as error:
                raise ValueError(f"cannot import rollout_buffer_class {buffer_class!r}: {error}") from error
        buffer_kwargs = hyperparams.get("rollout_buffer_kwargs")
        if isinstance(buffer_kwargs, str):
            try:
                buffer_kwargs = eval(buffer_kwargs, {})
            except Exception as error:
                raise ValueError(f"rollout_buffer_kwargs {buffer_kwargs!r} is not a Python expression: {error}") from error
        if buffer_kwargs is None:
            return hyperparams
        if not isinstance(buffer_kwargs, dict):
            raise ValueError(f"rollout_buffer_kwargs must be a mapping such as dict(rollout_length=50), got {buffer_kwargs!r}")
        if not uses_vine(hyperparams.get("rollout_buffer_class")):
            vine_settings = [key for key in buffer_kwargs if key in VINE_SETTINGS]
            if vine_settings and self.verbose > 0:
                print(f"Single-path sampling: ignoring the vine settings {vine_settings} of rollout_buffer_kwargs")
            buffer_kwargs = {key: value for key, value in buffer_kwargs.items() if key not in VINE_SETTINGS}
        hyperparams["rollout_buffer_kwargs"] = buffer_kwargs
        return hyperparams


def _train() -> None:
    rl_zoo3.train.train()


def _enjoy() -> None:
    rl_zoo3.enjoy.enjoy()


def _record_video() -> None:
    # rl_zoo3.record_video is a script without a function
    runpy.run_module("rl_zoo3.record_video", run_name="__main__")


SCRIPTS: dict[str, Callable[[], None]] = {"train": _train, "enjoy": _enjoy, "record_video": _record_video}


def _split_scheme(args: Sequence[str]) -> tuple[str | None, list[str]]:
    """
    Take ``--scheme`` out of ``train``'s flags: it is this wrapper's, not rl_zoo3's.

    :param args: the user's flags
    :return: the scheme (None when not given) and the other flags, in their order
    """
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    parser.add_argument("--scheme", choices=SCHEMES)
    try:
        given, rest = parser.parse_known_args(args)
    except argparse.ArgumentError as error:
        raise ValueError(str(error)) from None
    return given.scheme, rest


def _missing_defaults(script: str, args: Sequence[str], conf_file: str, scheme: str | None) -> list[str]:
    """
    The default flags to add to ``args`` (see the module docstring); a flag given explicitly wins.

    :param script: ``train``, ``enjoy`` or ``record_video``
    :param args: the user's flags, without ``--scheme``
    :param conf_file: path of the default hyperparameter file (the packaged file of the scheme)
    :param scheme: the ``--scheme`` given to ``train`` (None when not given)
    :return: the flags to add
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--algo")
    if script == "train":
        parser.add_argument("-conf", "--conf-file")
    else:
        parser.add_argument("-f", "--folder")
    given, _ = parser.parse_known_args(args)
    if scheme is not None and given.algo not in (None, ALGO_NAME):
        raise ValueError(f"--scheme selects a {ALGO_NAME} hyperparameter file: drop it with --algo {given.algo}")
    if scheme is not None and given.conf_file is not None:
        raise ValueError(
            f"--scheme {scheme} and -conf {given.conf_file} both select the hyperparameter file: drop -conf to use the "
            f"packaged {scheme}.yml, or drop --scheme to use {given.conf_file}"
        )
    defaults = [] if given.algo else ["--algo", ALGO_NAME]
    if script == "train" and given.conf_file is None and given.algo in (None, ALGO_NAME):
        defaults += ["-conf", conf_file]
    if script != "train" and given.folder is None:
        defaults += ["-f", DEFAULT_LOG_FOLDER]
    return defaults


@contextlib.contextmanager
def _zoo_script_context(prog: str, args: list[str]) -> Iterator[None]:
    """Set ``sys.argv`` for the zoo's argument parser and the ExperimentManager used by ``rl_zoo3.train``."""
    saved_argv, saved_manager = sys.argv, rl_zoo3.train.ExperimentManager
    sys.argv = [prog, *args]
    rl_zoo3.train.ExperimentManager = VineExperimentManager  # type: ignore[misc]
    try:
        yield
    finally:
        sys.argv = saved_argv
        rl_zoo3.train.ExperimentManager = saved_manager  # type: ignore[misc]


def run_zoo_script(script: str, args: Sequence[str], prog: str) -> None:
    """
    Run an rl_zoo3 script with TRPOVine registered and its defaults (see the module docstring).

    :param script: ``train``, ``enjoy`` or ``record_video``
    :param args: the rl_zoo3 flags, and for ``train`` this wrapper's ``--scheme``
    :param prog: program name shown in usage and error messages
    """
    register_rl_zoo()
    try:
        scheme, args = _split_scheme(args) if script == "train" else (None, list(args))
        with hyperparams_file(scheme or DEFAULT_ROLLOUT_BUFFER) as default_hyperparams_file:
            args = [*_missing_defaults(script, args, str(default_hyperparams_file), scheme), *args]
            with _zoo_script_context(prog, args):
                SCRIPTS[script]()
    except INPUT_ERRORS as error:
        raise SystemExit(f"{prog}: error: {error}") from None


def main(argv: Sequence[str] | None = None) -> None:
    """
    ``python -m sb3_trpo_vine.zoo train|enjoy|record_video [rl_zoo3 flags]``.

    :param argv: the arguments (default: ``sys.argv[1:]``)
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = (
        f"usage: python -m sb3_trpo_vine.zoo {{{','.join(SCRIPTS)}}} [rl_zoo3 flags; SCRIPT --help lists them]\n"
        f"       python -m sb3_trpo_vine.zoo train [--scheme {{{','.join(SCHEMES)}}}] [rl_zoo3 flags]  "
        f"(default scheme: {DEFAULT_ROLLOUT_BUFFER})"
    )
    if argv[:1] in (["-h"], ["--help"]):
        print(usage)
        return
    if not argv or argv[0] not in SCRIPTS:
        raise SystemExit(f"{usage}\nerror: unknown or missing script {argv[0] if argv else ''!r}")
    run_zoo_script(argv[0], argv[1:], prog=f"python -m sb3_trpo_vine.zoo {argv[0]}")


def train() -> None:
    """Console script ``trpo-vine-train``: ``rl_zoo3.train`` with TRPOVine defaults and ``--scheme``."""
    run_zoo_script("train", sys.argv[1:], prog="trpo-vine-train")


def enjoy() -> None:
    """Console script ``trpo-vine-enjoy``: ``rl_zoo3.enjoy`` with TRPOVine defaults."""
    run_zoo_script("enjoy", sys.argv[1:], prog="trpo-vine-enjoy")


def record_video() -> None:
    """Console script ``trpo-vine-record-video``: ``rl_zoo3.record_video`` with TRPOVine defaults."""
    run_zoo_script("record_video", sys.argv[1:], prog="trpo-vine-record-video")


if __name__ == "__main__":
    main()
