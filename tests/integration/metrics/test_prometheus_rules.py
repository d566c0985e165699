"""Example Prometheus config and alert rules: valid for promtool, every rule unit-tested in
config/prometheus/alerts_test.yml (fires when due, quiet otherwise, several instances),
every rule explained, and every series a rule reads exported by dialerd."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.known_metrics import known_series, series_in

PROMETHEUS = Path(__file__).resolve().parents[3] / "config" / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
ALERTS_TEST = PROMETHEUS / "alerts_test.yml"


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args], capture_output=True, text=True, timeout=120, check=False, cwd=cwd
    )


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_alert_rules_pass_promtool_check() -> None:
    checked = promtool("check", "rules", str(ALERTS))

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout


def test_example_scrape_config_is_valid_with_its_rules() -> None:
    checked = promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))

    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_unit_tests_of_the_rules_pass() -> None:
    tested = promtool("test", "rules", ALERTS_TEST.name, cwd=PROMETHEUS)

    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_rule_has_a_firing_and_a_quiet_case() -> None:
    cases = yaml.safe_load(ALERTS_TEST.read_text())["tests"]
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in cases:
        for check in case["alert_rule_test"]:
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
            # A case with several instances or campaigns shows who does not fire too.
    names = {rule["alert"] for rule in rules()}

    assert names - fired == set(), "rules never shown firing"
    assert names - quiet == set(), "rules never shown quiet"
    several = [case for case in cases if "b:9108" in str(case["input_series"])]
    assert {check["alertname"] for case in several for check in case["alert_rule_test"]} == names


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: str(rule["alert"]))
def test_every_rule_says_what_it_means_and_what_to_do(rule: dict[str, Any]) -> None:
    annotations = rule["annotations"]

    assert annotations["summary"]
    assert len(annotations["description"]) > 40
    assert len(annotations["runbook"]) > 20
    assert rule["labels"]["severity"] in ("page", "warning")
    # Templates that depend on $value would make the unit tests' expectations brittle.
    assert "$value" not in str(annotations)


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: str(rule["alert"]))
def test_every_rule_reads_only_series_dialerd_exports(rule: dict[str, Any]) -> None:
    read = series_in(rule["expr"])

    assert read
    assert read - known_series() == set()


def test_recipes_in_annotations_read_a_real_journal() -> None:
    for rule in rules():
        runbook = rule["annotations"]["runbook"]
        if "| jq" in runbook:
            assert "jq -cR 'fromjson? | objects" in runbook, rule["alert"]
