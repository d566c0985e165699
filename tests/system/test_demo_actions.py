"""``dialerd demo --actions ivr|webhook`` as a user runs it: the IVR's choices and
opt-outs, the webhook per target, and their checks in the summary."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any


def demo(*args: str) -> tuple[int, dict[str, Any]]:
    completed = subprocess.run(
        [sys.executable, "-m", "dialerd.cli", "demo", "--targets", "40", "--speed", "60",
         "--json", *args],
        capture_output=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    summary: dict[str, Any] = json.loads(completed.stdout.decode().splitlines()[-1])
    return completed.returncode, summary


def test_the_ivr_demo_shows_the_choices_and_never_dials_an_opted_out_number() -> None:
    code, summary = demo("--actions", "ivr")
    assert code == 0
    assert (summary["status"], summary["targets_done"]) == ("stop", 40)
    chosen = summary["chosen"]
    assert set(chosen) <= {"1", "9", "other"}
    assert chosen["1"] > 0
    assert chosen["9"] > 0
    # Every 9 put the number on the list; none of them was dialed again.
    assert summary["opt_outs"] == chosen["9"] == summary["dnc_listed"]
    assert summary["dialed_after_opt_out"] == 0


def test_the_webhook_demo_posts_once_per_target_without_calls() -> None:
    code, summary = demo("--actions", "webhook")
    assert code == 0
    assert summary["webhooks_received"] == 40
    assert summary["answered"] == 0
    assert summary["success"] == 40


def test_the_events_demo_prints_each_event_the_webhook_would_get() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "dialerd.cli", "demo", "--targets", "10", "--speed", "60",
         "--json", "--events"],
        capture_output=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert completed.returncode == 0
    lines = [json.loads(line) for line in completed.stdout.decode().splitlines()]
    summary, events = lines[-1], lines[:-1]
    assert summary["events"] == len(events)
    types = [event["type"] for event in events]
    assert types[0] == "campaign_created"
    assert types.count("campaigncall_created") == summary["attempts"]
    # Each attempt: created, then ended (and answered when it was), then its target.
    assert types.count("outdialtarget_updated") == summary["attempts"]
    assert types[-1] == "campaign_updated"
    assert events[-1]["data"]["status"] == "stop"
    for event in events:
        assert (
            {"type", "data", "id", "time"} <= set(event) <= {"type", "data", "id", "time", "cause"}
        )
    # The campaign's stop says why.
    assert events[-1]["cause"] == "outdial exhausted"
