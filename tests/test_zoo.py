"""RL-Zoo integration: registration, the packaged hyperparameters, and the train / enjoy / record_video scripts."""

import argparse
import ast
import contextlib
import json
import os
import pathlib
import subprocess
import sys

import ale_py
import gymnasium as gym
import numpy as np
import optuna
import pytest
import rl_zoo3
import rl_zoo3.enjoy
import rl_zoo3.exp_manager
import rl_zoo3.train
import torch
import yaml
from gymnasium import spaces
from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER

from benchmarks.returns import apply_overrides, make_env, model_hyperparams, normalize_kwargs, parse_overrides, zoo_entry
from sb3_trpo_vine import SinglePathRolloutBuffer, TRPOVine, VineRolloutBuffer
from sb3_trpo_vine.buffers import VineObjectiveMixin
from sb3_trpo_vine.zoo import (
    VineExperimentManager,
    convert_trpo_vine_params,
    hyperparams_file,
    main,
    preprocess_target_kl,
    register_rl_zoo,
    sample_trpo_vine_params,
)

gym.register_envs(ale_py)

REPO = pathlib.Path(__file__).resolve().parents[1]
SCHEMES = ("single_path", "vine")
# One hyperparameter file per scheme, in two identical copies
USER_HYPERPARAMS = {scheme: REPO / "zoo_hyperparams" / f"{scheme}.yml" for scheme in SCHEMES}
PACKAGED_HYPERPARAMS = {scheme: REPO / "sb3_trpo_vine" / "hyperparams" / f"{scheme}.yml" for scheme in SCHEMES}
HYPERPARAMS = {scheme: yaml.safe_load(path.read_text()) for scheme, path in USER_HYPERPARAMS.items()}
ENV_IDS = {scheme: [key for key in entries if key not in ("default", "atari")] for scheme, entries in HYPERPARAMS.items()}
# Recorded benchmark runs that can back a "# Tuned" entry
RECORDED_RUNS = [REPO / "docs" / "results" / "returns", REPO / "docs" / "results" / "sweeps"]
# Shrink every entry to a fast run: vine with N=4, H=10 (K stays 4 where it applies)
SMALL = ["n_steps:64", "batch_size:64", "rollout_buffer_kwargs:dict(n_rollout_states=4,rollout_length=10)"]
SINGLE_PATH = ["rollout_buffer_class:'single_path'"]
ZOO_FLAGS = ["--seed", "0", "--num-threads", "1"]


def run_zoo(*args: str, cwd: pathlib.Path) -> subprocess.CompletedProcess:
    """Run ``python -m sb3_trpo_vine.zoo`` in a subprocess (cwd: the test's temp folder)."""
    return subprocess.run(
        [sys.executable, "-m", "sb3_trpo_vine.zoo", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def check_ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def stated_scheme(scheme: str, env_id: str) -> str:
    """The scheme an entry of ``<scheme>.yml`` states: its file's, but Box2D (LunarLander) cannot be snapshotted."""
    return "single_path" if env_id == "LunarLander-v3" else scheme


@pytest.mark.parametrize("scheme", SCHEMES)
def test_packaged_hyperparams_identical_to_user_copy(scheme):
    user_copy = USER_HYPERPARAMS[scheme].read_bytes()
    assert PACKAGED_HYPERPARAMS[scheme].read_bytes() == user_copy
    with hyperparams_file(scheme) as path:
        assert path.read_bytes() == user_copy
    with hyperparams_file() as path:  # TRPOVine's default scheme
        assert path.name == "single_path.yml"


@pytest.mark.parametrize("scheme", SCHEMES)
def test_hyperparams_cover_the_required_envs(scheme):
    required = {
        "CartPole-v1",
        "Pendulum-v1",
        "Acrobot-v1",
        "MountainCarContinuous-v0",
        "LunarLander-v3",
        *(f"{name}-v5" for name in ("Hopper", "HalfCheetah", "Walker2d", "Swimmer", "Ant", "Humanoid")),
        *(f"{name}-v5" for name in ("InvertedPendulum", "InvertedDoublePendulum", "Reacher", "Pusher")),
    }
    env_ids = ENV_IDS[scheme]
    assert required <= set(env_ids)
    assert {"default", "atari"} <= set(HYPERPARAMS[scheme])
    assert any(rl_zoo3.exp_manager.ExperimentManager.is_atari(env_id) for env_id in env_ids)
    for env_id in env_ids:
        assert env_id in gym.envs.registry, f"{env_id} is not a registered Gymnasium id"
    # Both files cover the same envs
    assert set(HYPERPARAMS[scheme]) == set(HYPERPARAMS["single_path"])


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_entry_states_its_scheme(scheme):
    for env_id, entry in HYPERPARAMS[scheme].items():
        assert entry["rollout_buffer_class"] == stated_scheme(scheme, env_id), env_id
        if entry["rollout_buffer_class"] == "single_path":
            assert "rollout_buffer_kwargs" not in entry, f"{env_id}: vine settings in a single-path entry"


def tuning_marks(path: pathlib.Path) -> dict[str, list[str]]:
    """The ``# Tuned`` / ``# To be tuned`` comment lines between an entry and the previous one, by entry."""
    marks: dict[str, list[str]] = {}
    pending: list[str] = []
    for line in path.read_text().splitlines():
        if line in ("# Tuned", "# To be tuned"):
            pending.append(line)
        elif line and not line.startswith(("#", " ")):  # a top-level key: an entry
            marks[line.split(":")[0]] = pending
            pending = []
    return marks


@pytest.mark.parametrize("scheme", SCHEMES)
def test_tuned_entries_are_backed_by_recorded_runs(scheme):
    # "# Tuned" needs a recorded benchmarks.returns run (or sweep) of that env, with the scheme the entry states and
    # exactly the entry's hyperparameters
    recorded: dict[tuple[str, str], list[dict]] = {}
    for folder in RECORDED_RUNS:
        for path in folder.glob("*.json"):
            run = json.loads(path.read_text())
            with contextlib.suppress(ValueError, SyntaxError):  # reprs of schedules and classes are not literals
                recorded.setdefault((run["env"], run["algo"]), []).append(ast.literal_eval(run["hyperparams"]))
    marks = tuning_marks(USER_HYPERPARAMS[scheme])
    assert set(marks) == set(HYPERPARAMS[scheme])
    for env_id, entry_marks in marks.items():
        assert len(entry_marks) == 1, f"{env_id} needs one '# Tuned' or '# To be tuned' line, has {entry_marks}"
        if entry_marks == ["# Tuned"]:
            hyperparams = model_hyperparams(zoo_entry(USER_HYPERPARAMS[scheme], env_id))
            run_scheme = stated_scheme(scheme, env_id)
            assert hyperparams in recorded.get((env_id, run_scheme), []), (
                f"{env_id} is marked '# Tuned' in {scheme}.yml without a {run_scheme} run of it with its "
                f"hyperparameters {hyperparams} in docs/results/returns or docs/results/sweeps"
            )


def make_manager(env_id: str, log_folder: pathlib.Path, scheme: str, **kwargs) -> VineExperimentManager:
    register_rl_zoo()
    return VineExperimentManager(
        argparse.Namespace(),
        "trpo_vine",
        env_id,
        str(log_folder),
        eval_freq=-1,
        config=str(PACKAGED_HYPERPARAMS[scheme]),
        verbose=0,
        **kwargs,
    )


# default: an env without an entry; atari: an Atari id without an entry
@pytest.mark.parametrize(
    "scheme, env_id",
    [(scheme, env_id) for scheme in SCHEMES for env_id in [*ENV_IDS[scheme], "MountainCar-v0", "BreakoutNoFrameskip-v4"]],
)
def test_every_entry_constructs_a_model(scheme, env_id, tmp_path):
    hyperparams = HYPERPARAMS[scheme]
    entry = hyperparams.get(env_id, hyperparams["atari" if "NoFrameskip" in env_id else "default"])
    model, saved_hyperparams = make_manager(env_id, tmp_path, scheme).setup_experiment()
    try:
        assert isinstance(model, TRPOVine)
        # Each entry states its sampling scheme and runs it
        assert saved_hyperparams["rollout_buffer_class"] == stated_scheme(scheme, env_id)
        is_vine = isinstance(model.rollout_buffer, VineObjectiveMixin)
        assert is_vine == (stated_scheme(scheme, env_id) == "vine")
        if is_vine:
            # Unless rollout_buffer_kwargs say otherwise, the buffer's defaults: pooled advantages on 1/32 of the trunk
            # states for Box actions, Eq. 15/16 on a quarter of them otherwise; K = 2, H = 10
            buffer, settings = model.rollout_buffer, entry.get("rollout_buffer_kwargs", {})
            assert buffer.pooled_advantages == settings.get("pooled_advantages", isinstance(model.action_space, spaces.Box))
            trunk_states = model.n_steps * model.n_envs
            default_n = max(1, trunk_states // (32 if buffer.pooled_advantages else 4))
            assert buffer.n_rollout_states == settings.get("n_rollout_states", default_n)
            assert buffer.rollout_length == settings.get("rollout_length", 10)
            if buffer.action_proposal != "all":  # K is only stated where not every action is branched
                assert buffer.n_actions_per_state == settings.get("n_actions_per_state", 2)
                assert buffer.action_proposal == settings.get("action_proposal", "policy")
        else:
            assert type(model.rollout_buffer) is SinglePathRolloutBuffer and model.rollout_buffer_kwargs == {}
    finally:
        model.env.close()


def test_sweep_overrides_replace_merge_remove_and_evaluate_policy_kwargs():
    entry = zoo_entry(USER_HYPERPARAMS["single_path"], "Walker2d-v5")
    swept = apply_overrides(entry, parse_overrides(["target_kl=lin_0.09", "policy_kwargs.ortho_init=false", "n_envs=null"]))
    assert swept["target_kl"] == "lin_0.09" and "n_envs" not in swept
    assert swept["policy_kwargs"] == {**entry["policy_kwargs"], "ortho_init": False}
    # A policy_kwargs string is read like the zoo reads it, so a sweep can name torch classes
    swept = apply_overrides(entry, parse_overrides(["policy_kwargs=dict(activation_fn=nn.ReLU, ortho_init=False)"]))
    assert swept["policy_kwargs"] == {"activation_fn": torch.nn.ReLU, "ortho_init": False}
    assert entry["target_kl"] == 0.06 and "n_envs" in entry  # the entry itself is untouched
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["target_kl"])


@pytest.mark.parametrize(
    "normalize", [True, "dict(norm_obs=True, norm_reward=False)", "dict(norm_reward=True, clip_obs=5.0)", {"norm_obs": True}]
)
def test_benchmark_envs_normalize_as_rl_zoo_does(normalize):
    entry = {"normalize": normalize, "gamma": 0.995, "n_envs": 2}
    zoo = argparse.Namespace(normalize_kwargs={})
    # rl_zoo3 writes gamma into a mapping it is given: hand it a copy
    zoo_normalize = dict(normalize) if isinstance(normalize, dict) else normalize
    rl_zoo3.exp_manager.ExperimentManager._preprocess_normalization(zoo, {**entry, "normalize": zoo_normalize})
    assert normalize_kwargs(entry, training=True) == {**zoo.normalize_kwargs, "training": True}
    # the evaluation env, like rl_zoo3's: raw rewards, frozen statistics
    assert normalize_kwargs(entry, training=False) == {**zoo.normalize_kwargs, "norm_reward": False, "training": False}
    assert zoo.normalize_kwargs["gamma"] == 0.995 and normalize_kwargs({"gamma": 0.995}, training=True) is None
    eval_env = make_env("Pendulum-v1", entry, seed=0, training=False)
    try:
        assert eval_env.num_envs == 1 and not eval_env.norm_reward and not eval_env.training
    finally:
        eval_env.close()


def test_register_rl_zoo_is_idempotent():
    register_rl_zoo()
    algos, samplers = dict(rl_zoo3.ALGOS), dict(HYPERPARAMS_SAMPLER)
    register_rl_zoo()
    assert rl_zoo3.ALGOS == algos and HYPERPARAMS_SAMPLER == samplers
    assert rl_zoo3.ALGOS["trpo_vine"] is TRPOVine
    assert HYPERPARAMS_SAMPLER["trpo_vine"] is sample_trpo_vine_params
    assert HYPERPARAMS_CONVERTER["trpo_vine"] is convert_trpo_vine_params
    # One shared table: every zoo script sees the registration
    for module in (rl_zoo3.train, rl_zoo3.enjoy, rl_zoo3.exp_manager):
        assert module.ALGOS is rl_zoo3.ALGOS


def test_sampler_and_converter_agree():
    trial = optuna.trial.FixedTrial(
        {
            "n_steps_pow": 6,
            "batch_size_pow": 10,
            "one_minus_gamma": 0.01,
            "one_minus_gae_lambda": 0.05,
            "learning_rate": 1e-3,
            "n_critic_updates": 5,
            "cg_max_steps": 10,
            "target_kl": 0.02,
            "net_arch": "small",
            "activation_fn": "tanh",
            "n_rollout_states": 64,
            "n_actions_per_state": 2,
            "rollout_length": 10,
        }
    )
    sampled = sample_trpo_vine_params(trial, n_actions=1, n_envs=1, additional_args={})
    assert sampled == convert_trpo_vine_params(trial.params)
    assert sampled["n_steps"] == 64 and sampled["batch_size"] == 64  # the minibatch never exceeds the rollout
    assert sampled["rollout_buffer_class"] == "vine"
    assert sampled["rollout_buffer_kwargs"] == dict(n_rollout_states=64, n_actions_per_state=2, rollout_length=10)
    model = TRPOVine("MlpPolicy", "Pendulum-v1", **sampled)
    assert isinstance(model.rollout_buffer, VineRolloutBuffer)
    assert np.isclose(model.gamma, 0.99)


def test_rollout_buffer_strings_and_single_path_switch(tmp_path):
    # A zoo-style string is evaluated; selecting single-path drops the vine-only settings
    manager = make_manager(
        "CartPole-v1",
        tmp_path,
        "vine",
        hyperparams={"rollout_buffer_kwargs": "dict(n_rollout_states=8, rollout_length=5)"},
    )
    model, _ = manager.setup_experiment()
    assert model.rollout_buffer.n_rollout_states == 8 and model.rollout_buffer.rollout_length == 5
    model.env.close()
    manager = make_manager(
        "CartPole-v1", tmp_path, "vine", hyperparams={"rollout_buffer_class": "sb3_trpo_vine.buffers.SinglePathRolloutBuffer"}
    )
    model, _ = manager.setup_experiment()
    assert type(model.rollout_buffer) is SinglePathRolloutBuffer
    model.env.close()


def test_target_kl_schedule_string(tmp_path):
    # target_kl: lin_<x> is read as the zoo reads learning_rate: lin_<x>
    manager = make_manager("Pendulum-v1", tmp_path, "single_path", hyperparams={"target_kl": "lin_0.02"})
    model, _ = manager.setup_experiment()
    assert model.target_kl_schedule(1.0) == pytest.approx(0.02) and model.target_kl_schedule(0.25) == pytest.approx(0.005)
    model.env.close()
    assert preprocess_target_kl({"target_kl": 0.03}) == {"target_kl": 0.03}
    for malformed in ("cos_0.1", "lin_x", "0.03x"):
        with pytest.raises(ValueError, match=r"lin_0\.03 for a radius annealed"):
            preprocess_target_kl({"target_kl": malformed})


# Evaluate twice per run on CartPole and Pendulum, which makes a best_model.zip for --load-best
EVALUATE = ["--eval-freq", "256", "--eval-episodes", "2"]


def train_and_enjoy(tmp_path: pathlib.Path, env_id: str, train_flags: list[str], enjoy_flags: list[list[str]]) -> pathlib.Path:
    """Train, then enjoy the saved models (``[]``: last, ``["--load-best"]``: best); return the last model's zip."""
    check_ok(run_zoo("train", "--env", env_id, "-f", "logs", *ZOO_FLAGS, *train_flags, cwd=tmp_path))
    for extra in enjoy_flags:
        output = check_ok(run_zoo("enjoy", "--env", env_id, "--no-render", "-n", "400", *extra, cwd=tmp_path))
        assert "Mean reward" in output
    return tmp_path / "logs" / "trpo_vine" / f"{env_id}_1" / f"{env_id}.zip"


def conf_file_of(model_path: pathlib.Path) -> str:
    """The file name of the ``-conf`` that rl_zoo3 recorded for the run of ``model_path``."""
    saved_args = yaml.load((model_path.parent / model_path.stem / "args.yml").read_text(), Loader=yaml.UnsafeLoader)
    return pathlib.Path(saved_args["conf_file"]).name


def test_train_and_enjoy_pendulum_vine_subproc(tmp_path):
    # --scheme vine reads vine.yml (and is not passed on to rl_zoo3). With --vec-env subproc, SnapshotWrapper is added
    # on top of each env so vine can reach the workers' simulators
    train_flags = ["-n", "1500", "--scheme", "vine", "--eval-freq", "-1", "--vec-env", "subproc", "--hyperparams", *SMALL]
    model_path = train_and_enjoy(tmp_path, "Pendulum-v1", train_flags, [[]])
    assert conf_file_of(model_path) == "vine.yml"
    model = TRPOVine.load(model_path)
    assert model.rollout_buffer_class is VineRolloutBuffer
    action, _ = model.predict(np.zeros(3, dtype=np.float32), deterministic=True)
    assert action.shape == (1,)


def test_train_and_enjoy_pendulum_vine_entry_switched_to_single_path(tmp_path):
    # rollout_buffer_class:'single_path' on a vine entry drops its vine settings
    train_flags = ["-n", "1500", *EVALUATE, "--scheme=vine", "--hyperparams", *SMALL, *SINGLE_PATH]
    model = TRPOVine.load(train_and_enjoy(tmp_path, "Pendulum-v1", train_flags, [["--load-best"]]))
    assert model.rollout_buffer_class is SinglePathRolloutBuffer and model.rollout_buffer_kwargs == {}
    assert model.predict(np.zeros(3, dtype=np.float32))[0].shape == (1,)


def test_train_and_enjoy_cartpole_twice(tmp_path):
    """
    Without --scheme, single_path.yml: two runs in one folder get the experiment ids 1 and 2; the zip loads and
    predicts; record_video works.
    """
    logs = tmp_path / "logs"
    model_path = train_and_enjoy(
        tmp_path, "CartPole-v1", ["-n", "1000", *EVALUATE, "--hyperparams", *SMALL], [[], ["--load-best"]]
    )
    assert conf_file_of(model_path) == "single_path.yml"
    first_run = model_path.read_bytes()
    main(["train", "--env", "CartPole-v1", "-n", "500", "-f", str(logs), "--eval-freq", "-1", "--hyperparams", *SMALL])
    assert sorted(path.name for path in (logs / "trpo_vine").iterdir()) == ["CartPole-v1_1", "CartPole-v1_2"]
    assert model_path.read_bytes() == first_run
    model = TRPOVine.load(model_path)
    assert model.rollout_buffer_class is SinglePathRolloutBuffer and model.rollout_buffer_kwargs == {}
    assert model.predict(np.zeros(4, dtype=np.float32))[0] in (0, 1)
    main(["record_video", "--env", "CartPole-v1", "-f", str(logs), "--exp-id", "2", "-n", "20"])
    assert list((logs / "trpo_vine" / "CartPole-v1_2" / "videos").glob("*.mp4"))


def test_atari_entry_trains(tmp_path):
    # The Atari stack (Python sticky actions, env-level frame stacking) with CnnPolicy, over two vine iterations
    flags = ["--env", "PongNoFrameskip-v4", "--scheme", "vine", "-n", "300", "-f", "logs", "--eval-freq", "-1", *ZOO_FLAGS]
    flags += ["--hyperparams"]
    flags += ["n_envs:2", "n_steps:32", "batch_size:64"]
    flags += ["rollout_buffer_kwargs:dict(n_rollout_states=4,rollout_length=8,action_proposal='uniform')"]
    output = check_ok(run_zoo("train", *flags, cwd=tmp_path))
    assert "branch_steps" in output
    model = TRPOVine.load(tmp_path / "logs" / "trpo_vine" / "PongNoFrameskip-v4_1" / "PongNoFrameskip-v4.zip")
    assert model.observation_space.shape == (4, 84, 84)


def test_optimize(tmp_path):
    flags = ["--env", "CartPole-v1", "-n", "300", "-f", "logs", "-optimize", "--n-trials", "2", "--n-evaluations", "1"]
    flags += ["--eval-episodes", "1", "--sampler", "random", "--pruner", "none", "--no-optim-plots", *ZOO_FLAGS]
    output = check_ok(run_zoo("train", *flags, cwd=tmp_path))
    assert "Number of finished trials:  2" in output
    assert list((tmp_path / "logs" / "trpo_vine").glob("report_CartPole-v1_2-trials-300-random-none_*.csv"))


def test_explicit_algo_and_conf_win(tmp_path):
    conf = tmp_path / "ppo.yml"
    conf.write_text("CartPole-v1:\n  n_timesteps: 64\n  policy: 'MlpPolicy'\n  n_steps: 32\n")
    main(
        [
            "train",
            "--algo",
            "ppo",
            "--env",
            "CartPole-v1",
            "-f",
            str(tmp_path / "logs"),
            "--eval-freq",
            "-1",
            "-conf",
            str(conf),
        ]
    )
    assert (tmp_path / "logs" / "ppo" / "CartPole-v1_1" / "CartPole-v1.zip").is_file()


def zoo_error(*argv: str) -> str:
    """Run ``python -m sb3_trpo_vine.zoo ARGV`` in this process; return its one-line error message."""
    with pytest.raises(SystemExit) as error:
        main(list(argv))
    message = str(error.value.code)
    assert message.startswith(f"python -m sb3_trpo_vine.zoo {argv[0]}: error: ")
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    "yaml_text, fragments",
    [
        ("CartPole-v1:\n  n_timesteps: 100\n  n_stepz: 64\n", ["unknown hyperparameter 'n_stepz'", "did you mean 'n_steps'?"]),
        ("CartPole-v1:\n  policy: [MlpPolicy\n", ["is not valid YAML", "line 2"]),
        ("CartPole-v1: 5\n", ["is not an RL-Zoo hyperparameter file"]),
        ("CartPole-v1:\n  policy: 'MlpPolicy'\n", ["no n_timesteps"]),
        ("CartPole-v1:\n  n_timesteps: 100\n", ["missing hyperparameter 'policy'"]),
        (
            "CartPole-v1:\n  n_timesteps: 100\n  policy: MlpPolicy\n  rollout_buffer_kwargs: 'dict(n_rollout_states='\n",
            ["not a Python"],
        ),
    ],
)
def test_malformed_hyperparameters(tmp_path, yaml_text, fragments):
    conf = tmp_path / "bad.yml"
    conf.write_text(yaml_text)
    message = zoo_error("train", "--env", "CartPole-v1", "-f", str(tmp_path / "logs"), "-conf", str(conf))
    for fragment in fragments:
        assert fragment in message
    assert not (tmp_path / "logs").exists()  # rejected before any experiment folder is made


@pytest.mark.parametrize(
    "flags, fragments",
    [
        (["--scheme", "vine", "-conf", "my.yml"], ["--scheme vine and -conf my.yml", "drop -conf", "drop --scheme"]),
        (["--conf-file", "my.yml", "--scheme", "single_path"], ["drop -conf to use the packaged single_path.yml"]),
        (["--scheme", "vine", "--algo", "ppo"], ["--scheme selects a trpo_vine hyperparameter file"]),
        (["--scheme", "tree"], ["argument --scheme: invalid choice: 'tree'"]),
    ],
)
def test_scheme_conflicts(tmp_path, flags, fragments):
    # --scheme and -conf both select the hyperparameter file: one line names the fix, before any experiment folder
    message = zoo_error("train", "--env", "CartPole-v1", "-f", str(tmp_path / "logs"), *flags)
    for fragment in fragments:
        assert fragment in message
    assert not (tmp_path / "logs").exists()


def test_vine_on_env_without_snapshots(tmp_path):
    # Box2D cannot be snapshotted: the LunarLander entry is single-path, and asking for vine fails in one line
    flags = ["-f", str(tmp_path / "logs"), "-n", "100", "--hyperparams", "rollout_buffer_class:'vine'"]
    message = zoo_error("train", "--env", "LunarLander-v3", *flags)
    assert "vine sampling cannot snapshot LunarLander-v3" in message and "rollout_buffer_class" in message


def test_enjoy_without_experiment(tmp_path):
    assert "logs/trpo_vine folder was not found" in zoo_error("enjoy", "--env", "CartPole-v1", "-f", str(tmp_path / "logs"))


def test_unknown_env_id_exits_with_a_short_error(tmp_path):
    # As a user sees it: exit code 1 and one line on stderr, no traceback
    result = run_zoo("train", "--env", "CartPol-v1", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "python -m sb3_trpo_vine.zoo train: error: CartPol-v1 not found in gym registry, you maybe meant CartPole-v1?"
    )
