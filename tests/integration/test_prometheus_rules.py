"""Example Prometheus config and alert rules: valid for promtool, and the alerts fire when due."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

PROMETHEUS = Path(__file__).resolve().parents[2] / "config" / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
ABANDONMENT = "DialerdHighAbandonmentRate"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args], capture_output=True, text=True, timeout=60, check=False
    )


def rule_test(tmp_path: Path, series: dict[str, str], alerts: list[dict[str, Any]]) -> str:
    """Run ``promtool test rules`` on ``series`` (one sample a minute); '' when it passes."""
    spec = {
        "rule_files": [str(ALERTS)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": name, "values": values} for name, values in series.items()
                ],
                "alert_rule_test": alerts,
            }
        ],
    }
    test_file = tmp_path / "test.yml"
    test_file.write_text(json.dumps(spec))  # JSON is YAML
    result = promtool("test", "rules", str(test_file))
    return "" if result.returncode == 0 else result.stdout + result.stderr


def test_alert_rules_pass_promtool_check() -> None:
    checked = promtool("check", "rules", str(ALERTS))

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 9 rules found" in checked.stdout


def test_example_scrape_config_is_valid_with_its_rules() -> None:
    checked = promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))

    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize(
    ("answered_per_minute", "abandoned_per_minute", "fires"),
    [(20, 1, True), (20, 0.4, False), (2, 1, False)],
    ids=["5%-fires", "2%-quiet", "too-few-calls-quiet"],
)
def test_abandonment_alert_fires_above_three_percent_of_answered_calls(
    tmp_path: Path, answered_per_minute: float, abandoned_per_minute: float, fires: bool
) -> None:
    expected = [
        {
            "exp_labels": {"severity": "page", "job": "dialerd"},
            "exp_annotations": {
                "summary": "5% of answered calls abandoned in 15 minutes",
                "description": "Lower the service_level of running campaigns or add agents.",
            },
        }
    ]
    failure = rule_test(
        tmp_path,
        {
            'dialerd_answered_total{job="dialerd", instance="a"}': f"0+{answered_per_minute}x30",
            'dialerd_abandoned_total{job="dialerd", instance="a"}': f"0+{abandoned_per_minute}x30",
        },
        [{"eval_time": "20m", "alertname": ABANDONMENT, "exp_alerts": expected if fires else []}],
    )

    assert failure == ""


def test_store_down_pages_after_a_minute(tmp_path: Path) -> None:
    alert = {
        "exp_labels": {"severity": "page", "job": "dialerd", "instance": "a"},
        "exp_annotations": {
            "summary": "dialerd on a cannot reach its store",
            "description": "No attempt can start or end while the store is unreachable.",
        },
    }
    failure = rule_test(
        tmp_path,
        {'dialerd_store_up{job="dialerd", instance="a"}': "1 1 0 0 0 0"},
        [
            {"eval_time": "2m", "alertname": "DialerdStoreDown", "exp_alerts": []},
            {"eval_time": "4m", "alertname": "DialerdStoreDown", "exp_alerts": [alert]},
        ],
    )

    assert failure == ""


def test_scheduler_stall_pages_when_campaigns_run_without_ticks(tmp_path: Path) -> None:
    alert = {
        "exp_labels": {"severity": "page", "instance": "a"},
        "exp_annotations": {
            "summary": "dialerd on a has running campaigns but does not tick",
        },
    }
    failure = rule_test(
        tmp_path,
        {
            'dialerd_campaigns{job="dialerd", instance="a", status="run"}': "2x40",
            # Ticks for ten minutes, then none.
            'dialerd_tick_duration_seconds_count{job="dialerd", instance="a"}': "0+60x10 600x30",
        },
        [
            {"eval_time": "10m", "alertname": "DialerdSchedulerStalled", "exp_alerts": []},
            {"eval_time": "25m", "alertname": "DialerdSchedulerStalled", "exp_alerts": [alert]},
        ],
    )

    assert failure == ""
