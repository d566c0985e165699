"""A short chaos run per store: kill -9 the daemon mid-campaign, restart it on the same
state, and check every invariant of scripts/chaos through the API and the sim's ledger.

The full scenarios (20 kills on 2,000 targets, redis outages, three instances) are run
by hand with scripts/chaos; these keep the same checks in every test run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from dialerd.adapters.sim import LedgerEntry
from dialerd.model import format_time
from scripts.chaoslib.invariants import Outage, check_outages, read_ledgers
from scripts.chaoslib.run import parse_args, scenario_kill


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_kill_9_mid_campaign_loses_and_doubles_nothing(tmp_path: Path, store: str) -> None:
    args = parse_args(["--targets", "300", "--kills", "3", "--speed", "30", "--seed", "5"])
    checks, note = scenario_kill(args, store, tmp_path)
    failed = [f"{check.name}: {check.detail}" for check in checks if not check.ok]
    assert not failed, failed
    assert note == "3 kills"
    counted = {check.name: check.count for check in checks}
    assert counted["every target done"] == 300
    assert counted["no campaigncall originated twice"] >= 300
    assert {
        "attempts per slot <= max_try_count_N",
        "attempts per slot == try_count_N",
        "every origination within its persisted attempt",
        "never two live attempts on one target",
    } <= counted.keys()


def _entry(call_id: str, at: datetime) -> LedgerEntry:
    return LedgerEntry(
        tm=format_time(at),
        kind="call",
        campaigncall_id=call_id,
        campaign_id="c",
        customer_id="u",
        reference_id="r",
        queue_id="q",
        destination="+15550000001",
    )


def test_outage_checks_catch_blind_dialing_and_a_slow_resume(tmp_path: Path) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    outage = Outage(start, start + timedelta(seconds=10))
    ledger = tmp_path / "originations.jsonl"
    ledger.write_bytes(
        b"".join(
            msgspec.json.encode(_entry(f"call-{n}", start + timedelta(seconds=s))) + b"\n"
            for n, s in enumerate([-1.0, 0.5, 4.0, 17.0])
        )
    )
    blind, slow = check_outages(read_ledgers([ledger, tmp_path / "absent.jsonl"]), [outage])
    assert not blind.ok
    assert blind.detail.startswith("1 while down")
    assert not slow.ok
    assert "7.0 s" in slow.detail
