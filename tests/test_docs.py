"""The documentation builds without warnings and its code examples run."""

import pathlib
import re
import subprocess
import sys

import pytest

from sb3_trpo_vine import TRPOVine

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLE_FILES = ["README.md", "docs/modules/trpo_vine.md"]


def test_sphinx_builds_with_warnings_as_errors(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(ROOT / "docs"), str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "modules" / "trpo_vine.html").exists()


def python_blocks(relative_path: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / relative_path).read_text(), flags=re.DOTALL)


@pytest.mark.parametrize(
    "relative_path, index",
    [(path, index) for path in EXAMPLE_FILES for index in range(len(python_blocks(path)))],
)
def test_code_examples_run(relative_path, index, tmp_path, monkeypatch):
    # The examples train for 1e5+ steps; the budget is capped so that they run end to end quickly.
    original_learn = TRPOVine.learn

    def short_learn(self, total_timesteps=1, *args, **kwargs):
        return original_learn(self, min(total_timesteps, 1024), *args, **kwargs)

    monkeypatch.setattr(TRPOVine, "learn", short_learn)
    monkeypatch.chdir(tmp_path)
    exec(compile(python_blocks(relative_path)[index], f"{relative_path}[{index}]", "exec"), {"__name__": "__example__"})
