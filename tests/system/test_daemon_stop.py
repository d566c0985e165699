"""Stop and restart, as an operator sees them on the real daemon (simulated centre whose
trunk takes time to place and to end calls)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from dialerd.model import parse_time
from tests.system.daemon_process import (
    CAMPAIGN_SECONDS,
    DaemonProcess,
    callees_always_answer,
    create_campaign,
)

# A trunk that takes 0.1-0.2 s (at the test daemon's speed) to place and to end a call,
# and callees that ring for seconds: a stop finds calls ringing or being placed.
SLOW_TRUNK = (
    "[sim.place_time]\nmin = 5.0\nmax = 10.0\n[sim.release_time]\nmin = 5.0\nmax = 10.0\n"
    + callees_always_answer(ring=(100.0, 200.0))
)


def _calls(http: httpx.Client, campaign_id: str) -> list[dict[str, Any]]:
    return _every(http, f"/v1.0/campaigns/{campaign_id}/campaigncalls")


def _targets(http: httpx.Client, outdial_id: str) -> dict[str, dict[str, Any]]:
    return {target["id"]: target for target in _every(http, f"/v1.0/outdials/{outdial_id}/targets")}


def _every(http: httpx.Client, path: str) -> list[dict[str, Any]]:
    """Every item of a listing, page after page."""
    found: list[dict[str, Any]] = []
    token = ""
    while True:
        page = http.get(path, params={"page_size": 100, "page_token": token}).json()
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
        campaign = create_campaign(http, 100, outplan={"dial_timeout": 3_600_000})
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
        targets = _targets(http, campaign["outdial_id"])
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
        campaign = create_campaign(first.http, 300, outplan={"dial_timeout": 3_600_000})
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


def test_sigterm_ends_every_call_within_the_grace_and_a_restart_redials_nothing(
    tmp_path: Path,
) -> None:
    # Callees answer at once and talk for 1-2 s: SIGTERM finds calls answered.
    quick_answers = callees_always_answer(ring=(0.0, 1.0), talk=(50.0, 100.0))
    first = DaemonProcess(tmp_path, extra_config=quick_answers)
    try:
        first.wait_ready()
        campaign = create_campaign(first.http, 200)
        path = f"/v1.0/campaigns/{campaign['id']}"
        assert first.http.put(f"{path}/status", json={"status": "run"}).status_code == 200
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if any(c["status"] == "progressing" for c in _calls(first.http, campaign["id"])):
                break
            time.sleep(0.05)
        assert first.stop() == 0
        stopped_at = time.time()
        lines = first.log_lines()
    finally:
        first.close()
    ended = [line for line in lines if line["event"] == "shutdown: calls ended"]
    assert len(ended) == 1
    assert ended[0]["still_up"] == 0

    second = DaemonProcess(tmp_path, extra_config=quick_answers)
    try:
        second.wait_ready()
        every_call = _calls(second.http, campaign["id"])
        calls = [c for c in every_call if parse_time(c["tm_create"]).timestamp() < stopped_at]
        assert calls
        # The first daemon ended all of its calls itself.
        assert {call["status"] for call in calls} == {"done"}
        assert not [call for call in calls if call["reason"] == "lost"]
        assert second.stop() == 0
    finally:
        second.close()
