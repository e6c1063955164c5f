"""
Train TRPOVine, save the model, load it back and print its evaluation.

    python -m sb3_trpo_vine.quickstart --env CartPole-v1 --timesteps 100000

The model is written to ``--save-path`` (``trpo_vine_<env>.zip`` by default); an existing file is never
overwritten: a numbered name (``..._1.zip``) is used instead.
"""

import argparse
import pathlib

from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_trpo_vine.trpo_vine import TRPOVine


def free_path(path: pathlib.Path) -> pathlib.Path:
    """
    :param path: the wanted file name
    :return: ``path`` if it does not exist, else the first free ``<stem>_<n><suffix>``
    """
    candidate, number = path, 0
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.stem}_{number}{path.suffix}")
    return candidate


def main(argv: list[str] | None = None) -> None:
    """
    :param argv: command-line arguments (``sys.argv[1:]`` when None)
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="CartPole-v1", help="Gymnasium environment id")
    parser.add_argument("--timesteps", type=int, default=100_000, help="training budget in simulator steps")
    parser.add_argument("--n-envs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--save-path", type=pathlib.Path, default=None)
    args = parser.parse_args(argv)

    env = make_vec_env(args.env, n_envs=args.n_envs, seed=args.seed)
    # RL-Zoo's CartPole-v1 TRPO entry; the other defaults are sb3-contrib's
    hyperparams = dict(n_steps=512, batch_size=512, cg_damping=1e-3, gae_lambda=0.98, n_critic_updates=20)
    model = TRPOVine("MlpPolicy", env, seed=args.seed, verbose=0, **hyperparams)
    model.learn(args.timesteps)

    save_path = free_path(args.save_path or pathlib.Path(f"trpo_vine_{args.env}.zip"))
    model.save(save_path)
    loaded = TRPOVine.load(save_path)
    eval_env = make_vec_env(args.env, n_envs=1, seed=args.seed + 1000)
    mean_return, std_return = evaluate_policy(loaded, eval_env, n_eval_episodes=args.eval_episodes, deterministic=True)
    print(f"Saved {save_path}; evaluation over {args.eval_episodes} episodes: {mean_return:.1f} +/- {std_return:.1f}")


if __name__ == "__main__":
    main()
