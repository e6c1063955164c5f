"""Shared helpers of the benchmark scripts: machine description and result sections of docs/benchmarks.md."""

import datetime
import json
import os
import pathlib
import platform
import re
from typing import Any

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
RESULTS = DOCS / "results"
REPORT = DOCS / "benchmarks.md"


def machine_description() -> str:
    """
    :return: one line naming the machine, date and package versions
    """
    import gymnasium
    import mujoco
    import sb3_contrib
    import stable_baselines3
    import torch

    import sb3_trpo_vine

    return (
        f"{datetime.date.today().isoformat()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"SB3 {stable_baselines3.__version__}, sb3-contrib {sb3_contrib.__version__}, gymnasium {gymnasium.__version__}, "
        f"mujoco {mujoco.__version__}, sb3-trpo-vine {sb3_trpo_vine.__version__}"
    )


def save_json(name: str, payload: Any) -> pathlib.Path:
    """
    :param name: result file stem
    :param payload: JSON-serialisable results
    :return: the written path
    """
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2))
    return path


def write_section(name: str, markdown: str, path: pathlib.Path = REPORT) -> None:
    """
    Replace (or append) the ``name`` section of a Markdown page, leaving the rest of the page untouched.

    :param name: section marker
    :param markdown: the section body
    :param path: the page (default docs/benchmarks.md)
    """
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{markdown.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n\nMeasured on this project's CI-class machine.\n"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.DOTALL)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else f"{text.rstrip()}\n\n{block}\n"
    path.write_text(text)


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    """
    :param header: column names
    :param rows: table rows
    :return: a Markdown table
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
