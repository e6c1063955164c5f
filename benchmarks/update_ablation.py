"""
Paired update ablation: do sb3-contrib's line-search KL direction and CG starting point change TRPOVine's steps?

Trains single path with the package's zoo entry and, at every iteration, computes the policy step three times from
the same parameters on the same batch: as TRPOVine does it, with the line search checking KL(pi_new || pi_old)
(``reverse-kl``), and with conjugate gradient started from 1e-4 * N(0, I) (``cg-noise-start``). Training goes on
with TRPOVine's step, so every comparison is paired. Per variant it reports how far its step lands from TRPOVine's
(||d_variant - d_ours|| / ||d_ours||, d = the parameter change), how often the line search ends differently
(accepted or not, or after another number of shrinks), and the ratio of the surrogate improvements. Learning curves
of the variants (whole runs) are in docs/results/sweeps/ under the tags ``paired-baseline``, ``reverse-kl`` and
``cg-noise-start``. Writes docs/results/update_ablation.json and the "update-ablation" section of
docs/benchmarks.md (with ``--set``, a file and a section of their own, named after the settings).

    python -m benchmarks.update_ablation [--envs Hopper-v5 Walker2d-v5] [--steps 300000] [--seed 0] [--set target_kl=0.24]
"""

import argparse
from typing import Any

import numpy as np
import torch
from torch.nn.utils import parameters_to_vector

from benchmarks.common import machine_description, markdown_table, save_json, write_section
from benchmarks.returns import algorithm_setup, apply_overrides, code_version, make_env, model_hyperparams, parse_overrides
from benchmarks.update_variants import VARIANTS
from sb3_trpo_vine import TRPOVine
from sb3_trpo_vine.surrogates import SurrogateObjective
from sb3_trpo_vine.trust_region import TrustRegionStepInfo, assign_flat


class PairedUpdates(TRPOVine):
    """TRPOVine that also computes each variant's step from the same parameters and batch, then takes its own."""

    def _setup_model(self) -> None:
        super()._setup_model()
        self.paired_steps: list[dict[str, Any]] = []

    def _policy_step(self, surrogate: SurrogateObjective) -> TrustRegionStepInfo:
        params = self._actor_params
        with torch.no_grad():
            start = parameters_to_vector(params).clone()
        variant_steps = {}
        for name, variant in VARIANTS.items():
            with variant():
                info = super()._policy_step(surrogate)
            with torch.no_grad():
                variant_steps[name] = (parameters_to_vector(params) - start, info)
                assign_flat(params, start)
        info = super()._policy_step(surrogate)
        with torch.no_grad():
            ours = parameters_to_vector(params) - start
        record: dict[str, Any] = dict(accepted=info.accepted, shrinks=info.line_search_steps, kl=info.kl)
        norm = float(ours.norm())
        for name, (step, variant_info) in variant_steps.items():
            record[name] = dict(
                relative_distance=float((step - ours).norm()) / norm if norm > 0 else float(step.norm() > 0),
                same_line_search=(variant_info.accepted, variant_info.line_search_steps)
                == (info.accepted, info.line_search_steps),
                improvement_ratio=(variant_info.surrogate_after - variant_info.surrogate_before)
                / (info.surrogate_after - info.surrogate_before)
                if info.accepted
                else float("nan"),
            )
        self.paired_steps.append(record)
        return info


def summarise(env_id: str, records: list[dict[str, Any]]) -> list[list[Any]]:
    """
    :param env_id: the task
    :param records: ``PairedUpdates.paired_steps``
    :return: one table row per variant
    """
    rows = []
    for name in VARIANTS:
        distances = np.array([record[name]["relative_distance"] for record in records])
        ratios = np.array([record[name]["improvement_ratio"] for record in records])
        same = np.mean([record[name]["same_line_search"] for record in records])
        rows.append(
            [
                env_id,
                name,
                len(records),
                f"{np.median(distances):.1e}",
                f"{np.percentile(distances, 90):.1e}",
                f"{distances.max():.1e}",
                f"{1 - same:.1%}",
                f"{np.nanmedian(ratios):.4f}",
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["Hopper-v5", "Walker2d-v5"])
    parser.add_argument("--steps", type=int, default=300_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="hyperparameters replacing the entry's")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows, results = [], {}
    for env_id in args.envs:
        entry = apply_overrides(algorithm_setup(env_id, "single_path")[1], parse_overrides(args.set))
        hyperparams = model_hyperparams(entry)
        env = make_env(env_id, entry, args.seed, training=True)
        model = PairedUpdates(entry["policy"], env, seed=args.seed, **hyperparams)
        model.learn(args.steps)
        results[env_id] = dict(hyperparams=repr(hyperparams), seed=args.seed, steps=args.steps, updates=model.paired_steps)
        rows += summarise(env_id, model.paired_steps)
    header = [
        "env",
        "variant",
        "updates",
        "median distance",
        "90th pct distance",
        "max distance",
        "line search ends differently",
        "median improvement ratio",
    ]
    table = markdown_table(header, rows)
    print(table)
    suffix = "".join(f"__{assignment}" for assignment in args.set)  # one result file and section per setting
    save_json(f"update_ablation{suffix}", dict(machine=machine_description(), commit=code_version(), results=results))
    write_section(
        f"update-ablation{suffix}",
        "## Paired update ablation: line-search KL direction and CG start\n\n"
        f"`python -m benchmarks.update_ablation --envs {' '.join(args.envs)} --steps {args.steps} --seed {args.seed}"
        + (f" --set {' '.join(args.set)}" if args.set else "")
        + "`; "
        f"machine: {machine_description()}. Single path with the zoo entry; at every update each variant's step is "
        "computed from the same parameters and batch as TRPOVine's, and training continues with TRPOVine's. Distance = "
        "||d_variant - d_ours|| / ||d_ours|| of the parameter changes; improvement ratio = the variant's surrogate "
        "improvement over ours (accepted updates).\n\n" + table + "\n",
    )


if __name__ == "__main__":
    main()
