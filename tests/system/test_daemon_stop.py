"""Stop and restart, as an operator sees them on the real daemon (simulated centre whose
trunk takes time to place and to end calls)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from dialerd.model import parse_time
from tests.system.daemon_process import CAMPAIGN_SECONDS, DaemonProcess

# A trunk that takes 0.1-0.2 s (at the test daemon's speed) to place and to end a call,
# and callees that ring for seconds: a stop finds calls ringing or being placed.
SLOW_TRUNK = """
[sim.place_time]
min = 5.0
max = 10.0
[sim.release_time]
min = 5.0
max = 10.0
[sim.outcomes]
machine = 0.0
busy = 0.0
no_answer = 0.0
failure = 0.0
[sim.outcomes.ring_time]
min = 100.0
max = 200.0
"""


def _campaign(http: httpx.Client, targets: int) -> dict[str, Any]:
    """An agentless campaign of ``targets`` numbers, one try each, stopped."""
    outplan = http.post(
        "/v1.0/outplans",
        json={
            "source": {"type": "tel", "target": "+15550000000"},
            "max_try_count_0": 1,
            "dial_timeout": 3_600_000,
        },
    ).json()
    outdial = http.post("/v1.0/outdials", json={"name": "many"}).json()
    rows = "destination_0\n" + "".join(f"+1555300{n:04d}\n" for n in range(targets))
    imported = http.post(
        f"/v1.0/outdials/{outdial['id']}/targets",
        content=rows,
        headers={"Content-Type": "text/csv"},
    )
    assert imported.status_code == 200, imported.text
    campaign: dict[str, Any] = http.post(
        "/v1.0/campaigns", json={"outplan_id": outplan["id"], "outdial_id": outdial["id"]}
    ).json()
    return campaign


def _calls(http: httpx.Client, campaign_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    token = ""
    while True:
        page = http.get(
            f"/v1.0/campaigns/{campaign_id}/campaigncalls",
            params={"page_size": 100, "page_token": token},
        ).json()
        found.extend(page["result"])
        token = page.get("next_page_token") or ""
        if not token or not page["result"]:
            return found


def _wait_status(http: httpx.Client, campaign_id: str, status: str) -> None:
    deadline = time.monotonic() + CAMPAIGN_SECONDS
    current = ""
    while current != status and time.monotonic() < deadline:
        time.sleep(0.1)
        current = http.get(f"/v1.0/campaigns/{campaign_id}").json()["status"]
    assert current == status


def test_run_then_stop_at_once_starts_nothing_after_the_stop(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path, extra_config=SLOW_TRUNK)
    try:
        daemon.wait_ready()
        http = daemon.http
        campaign = _campaign(http, 100)
        path = f"/v1.0/campaigns/{campaign['id']}"
        assert http.put(f"{path}/status", json={"status": "run"}).status_code == 200
        deadline = time.monotonic() + 10
        while not _calls(http, campaign["id"]) and time.monotonic() < deadline:
            pass  # stop as soon as dialing has begun: ticks are under way
        stopped = http.put(f"{path}/status", json={"status": "stop"}).json()
        stopped_at = parse_time(stopped["tm_update"])
        _wait_status(http, campaign["id"], "stop")

        calls = _calls(http, campaign["id"])
        assert all(parse_time(call["tm_create"]) <= stopped_at for call in calls)
        assert {call["status"] for call in calls} <= {"done"}
        ledger = tmp_path / "state" / "originations.jsonl"
        lines = ledger.read_text().splitlines() if ledger.exists() else []
        placed = {json.loads(line)["campaigncall_id"] for line in lines}
        assert placed <= {call["id"] for call in calls}
        # Nobody lost a try to the stop: a call it cancelled left its target as it was.
        targets = {
            target["id"]: target
            for target in http.get(
                f"/v1.0/outdials/{campaign['outdial_id']}/targets", params={"page_size": 100}
            ).json()["result"]
        }
        cancelled = [call for call in calls if call["reason"] == "cancelled"]
        assert cancelled
        for call in cancelled:
            target = targets[call["outdial_target_id"]]
            assert (target["status"], target["try_count_0"]) == ("idle", 0)
        assert daemon.stop() == 0
    finally:
        daemon.close()


def test_a_daemon_restarted_after_kill_9_resumes_its_campaign_at_once(tmp_path: Path) -> None:
    # A lease far longer than the test may run: only a daemon that is the same
    # instance as the killed one can dial again before it expires.
    engine = "lease_ttl = 600.0"
    first = DaemonProcess(tmp_path, engine=engine)
    try:
        first.wait_ready()
        campaign = _campaign(first.http, 300)
        path = f"/v1.0/campaigns/{campaign['id']}"
        assert first.http.put(f"{path}/status", json={"status": "run"}).status_code == 200
        deadline = time.monotonic() + 10
        while not _calls(first.http, campaign["id"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        first.kill()
    finally:
        first.close()
    killed_at = time.time()

    second = DaemonProcess(tmp_path, engine=engine)
    try:
        second.wait_ready()
        deadline = time.monotonic() + 20
        calls: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            calls = _calls(second.http, campaign["id"])
            if any(parse_time(call["tm_create"]).timestamp() > killed_at for call in calls):
                break
            time.sleep(0.1)
        older = [call for call in calls if parse_time(call["tm_create"]).timestamp() <= killed_at]
        assert len(older) < len(calls), "the restarted daemon dialed nothing"
        # The killed process's calls were settled at once: none is left dialing.
        assert {call["status"] for call in older} == {"done"}
        assert second.stop() == 0
    finally:
        second.close()
