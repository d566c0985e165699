"""What the repository ships besides the code: the example configuration and the
package metadata say what the code does."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from dialerd.config import decode_config

ROOT = Path(__file__).resolve().parents[2]


def _uncommented(lines: list[str], header: str) -> list[str]:
    """The lines of ``header``'s table in the example config with its example entries
    (``# key = value`` lines) uncommented."""
    start = lines.index(header)
    out = []
    for line in lines[start + 1 :]:
        if line.startswith("[") or line.startswith("# [["):
            break
        if re.match(r'^# "?[\w.-]+"? *= ', line):
            out.append(line.removeprefix("# ").split("  #")[0])
    return out


def test_the_example_sim_agents_are_keyed_by_a_registered_queues_name() -> None:
    lines = (ROOT / "config" / "dialerd.toml").read_text().splitlines()
    queue = _uncommented(lines, "# [[queues]]")
    agents = _uncommented(lines, "[sim.agents]")
    assert agents, "the [sim.agents] example is gone"
    text = "\n".join(["[[queues]]", *queue, "[sim.agents]", *agents])
    config = decode_config(text, "config/dialerd.toml")
    names = {entry.name for entry in config.queues}
    assert set(config.sim.agents) <= names, (config.sim.agents, names)


def test_the_license_is_an_spdx_string_that_the_build_floor_understands() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    # setuptools reads project.license as an SPDX expression from 77.0.0 (PEP 639).
    floors = [
        requirement
        for requirement in project["build-system"]["requires"]
        if requirement.startswith("setuptools")
    ]
    assert floors, "setuptools is no longer the build backend's requirement"
    major = int(re.search(r">=\s*(\d+)", floors[0]).group(1))  # type: ignore[union-attr]
    assert major >= 77
