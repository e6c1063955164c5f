#!/usr/bin/env bash
# Install one extra alone into a fresh virtual environment and run what it is for:
#   bash .ci/check_extra.sh zoo|tests|benchmarks|ray|docs
# From the source tree by default; EXTRA_WHEEL=path/to/sb3_trpo_vine-*.whl installs that wheel instead (what PyPI
# users get; several checks can then run at once without sharing the source tree's build/ folder).
set -euo pipefail
cd "$(dirname "$0")/.."
extra="$1"
install="pip install -q torch==2.13.0 && pip install -q \"${EXTRA_WHEEL:-.}[$extra]\""
case "$extra" in
  zoo)
    run="python -m sb3_trpo_vine.zoo train --env CartPole-v1 -n 3000 --seed 0 --log-folder .venvs/zoo-logs \
      && python -m sb3_trpo_vine.zoo enjoy --env CartPole-v1 --folder .venvs/zoo-logs --no-render -n 200" ;;
  tests)
    run="python -m pytest -n 2 -q tests/test_docs.py tests/test_parity.py" ;;
  benchmarks)
    run="python -m benchmarks.report --help && python -m benchmarks.returns --help && python -m benchmarks.speed --help \
      && python -c 'import benchmarks.atari, benchmarks.vine_throughput, benchmarks.update_ablation, rliable.library'" ;;
  ray)
    run="python -c 'from sb3_trpo_vine import TRPOVine; from sb3_trpo_vine.distributed import RayVecEnv
env = RayVecEnv(\"CartPole-v1\", n_envs=2, n_actors=2, seed=0, num_cpus=2)
model = TRPOVine(\"MlpPolicy\", env, n_steps=64, batch_size=64, seed=0).learn(128)
assert model.num_timesteps == 128, model.num_timesteps
env.close(); print(\"RayVecEnv: one iteration trained\")'" ;;
  docs)
    run="python -m sphinx -W -q -b html docs .venvs/docs-html && test -f .venvs/docs-html/index.html" ;;
  *)
    echo "unknown extra $extra (zoo, tests, benchmarks, ray, docs)" >&2; exit 2 ;;
esac
bash .ci/fresh_venv.sh "extra-$extra" "$install && $run"
