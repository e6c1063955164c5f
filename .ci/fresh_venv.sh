#!/usr/bin/env bash
# Run a command in a brand-new virtual environment inside the checkout (.venvs/NAME), as a newcomer would:
#   bash .ci/fresh_venv.sh NAME 'COMMAND'
# The venv starts empty (no system site-packages), so a dependency missing from an extra fails here.
set -euo pipefail
cd "$(dirname "$0")/.."
name="$1"
command="$2"
rm -rf ".venvs/$name"
python3 -m venv ".venvs/$name"
# shellcheck disable=SC1090
source ".venvs/$name/bin/activate"
python -m pip install -q --upgrade pip
echo "[$name] $command"
bash -euo pipefail -c "$command"
