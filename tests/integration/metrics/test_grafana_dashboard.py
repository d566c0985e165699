"""The Grafana dashboard in config/grafana: every query parses and names only series
dialerd exports, and it covers what an operator looks at."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.integration.known_metrics import known_series, series_in

DASHBOARD = Path(__file__).resolve().parents[3] / "config" / "grafana" / "dialerd.json"


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> list[dict[str, Any]]:
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def queries() -> list[str]:
    """Every PromQL expression of the panels."""
    return [target["expr"] for panel in panels() for target in panel["targets"]]


def variable_queries() -> list[str]:
    """The series the template variables read: label_values(<selector>, <label>)."""
    found = []
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"]["query"])
            assert match is not None, variable
            found.append(match.group(1))
    return found


def as_prometheus_sees_it(expression: str) -> str:
    """Grafana's variables replaced by what Grafana would put there."""
    return (
        expression.replace("$__rate_interval", "1m")
        .replace("$window", "15m")
        .replace("$campaign", ".*")
        .replace("$queue", ".*")
    )


def test_every_query_names_only_series_dialerd_exports() -> None:
    known = known_series()
    for expression in queries() + variable_queries():
        read = series_in(expression)
        assert read, expression
        assert read - known == set(), expression


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{index}", "expr": as_prometheus_sees_it(query)}
                    for index, query in enumerate(queries() + variable_queries())
                ],
            }
        ]
    }
    file = tmp_path / "dashboard_rules.yml"
    file.write_text(yaml.safe_dump(rules))
    checked = subprocess.run(
        ["promtool", "check", "rules", str(file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_it_covers_campaigns_pacing_abandonment_agents_outcomes_and_timings() -> None:
    rows = {panel["title"] for panel in dashboard()["panels"] if panel["type"] == "row"}
    assert rows >= {"Campaigns", "Pacing", "Abandonment", "Agents per queue", "Outcomes", "Timings"}
    text = " ".join(queries())
    for series in (
        "dialerd_campaign_state",
        "dialerd_campaign_targets",
        "dialerd_campaign_service_level",
        "dialerd_campaign_attempts_ended_total",
        "dialerd_campaign_answered_total",
        "dialerd_queue_agents",
        "dialerd_answer_to_agent_seconds_bucket",
    ):
        assert series in text, series
    assert "[$window]" in text  # abandonment over a window the viewer picks


def test_panels_have_unique_ids_a_data_source_and_a_description() -> None:
    ids = [panel["id"] for panel in dashboard()["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels():
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["description"], panel["title"]
        assert panel["targets"], panel["title"]
