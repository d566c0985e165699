"""What an operator reads in the README and docs/ matches what dialerd answers."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import generate_latest

from dialerd import metrics
from dialerd.insight import DialingState

# A registry of every dialerd family, as the daemon makes one for /metrics.
REGISTRY = metrics.create_registry()
REPO = Path(__file__).resolve().parents[2]
# The states ``GET /campaigns/{id}/state`` answers for a campaign this instance does not
# run (dialerd/api/campaigns.py), besides those of a running loop (``DialingState``).
NOT_RUN_HERE = {"stopped", "starting", "run_elsewhere"}


def section(path: Path, heading: str) -> str:
    """The text of a Markdown section, from its heading to the next of its level or above."""
    text = path.read_text(encoding="utf-8")
    level = heading.split(" ", 1)[0]
    start = text.index(heading + "\n")
    rest = text[start + len(heading) + 1 :]
    end = re.search(rf"^#{{1,{len(level)}}} ", rest, re.MULTILINE)
    return rest[: end.start()] if end else rest


def test_every_state_the_api_answers_is_in_the_readmes_table() -> None:
    table = section(REPO / "README.md", "### Why a campaign is or is not dialing")
    documented = {
        state
        for row in table.splitlines()
        if row.startswith("| `")
        for state in re.findall(r"`([a-z_]+)`", row.split("|")[1])
    }
    answered = {state.value for state in DialingState} | NOT_RUN_HERE
    assert answered - documented == set()
    assert documented - answered == set()


def exported_families() -> set[str]:
    """The dialerd metric families a scrape of the real registry names (``# TYPE``)."""
    exposition = generate_latest(REGISTRY).decode()
    return set(re.findall(r"^# TYPE (dialerd_\w+) ", exposition, re.MULTILINE))


def metrics_table(path: Path) -> set[str]:
    """The series named in the first column of a doc's metrics table(s)."""
    names: set[str] = set()
    for row in path.read_text(encoding="utf-8").splitlines():
        cells = row.split("|")
        if row.startswith("| `dialerd_") and len(cells) > 2:
            names |= set(re.findall(r"`(dialerd_\w+)`", cells[1]))
    return names


def test_every_exported_metric_family_is_in_both_metrics_tables() -> None:
    exported = exported_families()
    assert len(exported) > 30
    for doc in (REPO / "README.md", REPO / "docs" / "operations.md"):
        documented = metrics_table(doc)
        assert exported - documented == set(), f"{doc.name} does not document them"
        assert documented - exported == set(), f"{doc.name} documents what is not exported"
