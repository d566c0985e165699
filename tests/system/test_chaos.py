"""A short chaos run per store: kill -9 the daemon mid-campaign, restart, check invariants.

The full scenarios (20 kills on 2,000 targets, redis outages, three instances) are run
by hand with scripts/chaos; these keep the same checks in every test run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.chaoslib.run import parse_args, scenario_kill


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_kill_9_mid_campaign_loses_and_doubles_nothing(tmp_path: Path, store: str) -> None:
    args = parse_args(["--targets", "300", "--kills", "3", "--speed", "30", "--seed", "5"])
    checks, note = scenario_kill(args, store, tmp_path)
    failed = [f"{check.name}: {check.detail}" for check in checks if not check.ok]
    assert not failed, failed
    assert note == "3 kills"
    assert {check.name for check in checks} >= {
        "every target done",
        "no campaigncall originated twice",
        "attempts per slot <= max_try_count_N",
        "never two live attempts on one target",
    }
