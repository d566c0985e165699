"""The daemon as a real process: the operator's flow over HTTP, logs, and clean shutdown."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.daemon_process import CAMPAIGN_SECONDS, QUEUE, TOKEN, DaemonProcess


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    process = DaemonProcess(tmp_path)
    try:
        process.wait_ready()
        yield process
    finally:
        process.close()


def test_operator_flow_runs_a_campaign_to_stop_then_sigterm_exits_zero(
    daemon: DaemonProcess,
) -> None:
    http = daemon.http
    outplan = http.post(
        "/v1.0/outplans",
        json={
            "name": "two tries",
            "source": {"type": "tel", "target": "+15550000000"},
            "dial_timeout": 600,
            "try_interval": 200,
            "max_try_count_0": 2,
            "max_try_count_1": 1,
        },
    ).json()
    outdial = http.post("/v1.0/outdials", json={"name": "leads"}).json()
    csv = "name,destination_0,destination_1\n" + "".join(
        f"lead {n},+1555100{n:04d},{'+1555200' + format(n, '04d') if n % 3 == 0 else ''}\n"
        for n in range(30)
    )
    imported = http.post(
        f"/v1.0/outdials/{outdial['id']}/targets",
        content=csv,
        headers={"Content-Type": "text/csv"},
    )
    assert imported.status_code == 200, imported.text
    assert imported.json()["count"] == 30
    campaign = http.post(
        "/v1.0/campaigns",
        json={
            "type": "call",
            "name": "system test",
            "service_level": 100,
            "end_handle": "stop",
            "actions": [{"type": "talk", "option": {"text": "hello", "language": "en-US"}}],
            "outplan_id": outplan["id"],
            "outdial_id": outdial["id"],
            "queue_id": QUEUE,
        },
    ).json()
    started = http.put(f"/v1.0/campaigns/{campaign['id']}/status", json={"status": "run"})
    assert started.status_code == 200, started.text
    assert started.json()["status"] == "run"

    deadline = time.monotonic() + CAMPAIGN_SECONDS
    status = "run"
    while status != "stop" and time.monotonic() < deadline:
        time.sleep(0.2)
        status = http.get(f"/v1.0/campaigns/{campaign['id']}").json()["status"]
    assert status == "stop"

    targets = http.get(f"/v1.0/outdials/{outdial['id']}/targets?page_size=100").json()
    assert {target["status"] for target in targets["result"]} == {"done"}
    calls = http.get(f"/v1.0/campaigns/{campaign['id']}/campaigncalls?page_size=100").json()
    assert calls["result"]
    assert {call["status"] for call in calls["result"]} == {"done"}

    assert daemon.stop() == 0
    lines = daemon.log_lines()
    events = [line["event"] for line in lines]
    assert "dialerd ready" in events
    assert "dialerd stopped" in events
    for line in lines:
        if line["event"] in ("attempt started", "attempt ended", "campaign status changed"):
            assert line["campaign_id"] == campaign["id"]
    assert TOKEN not in daemon.stdout_path.read_text()


def test_sigterm_while_a_campaign_dials_exits_zero_and_restart_resumes(tmp_path: Path) -> None:
    first = DaemonProcess(tmp_path)
    try:
        first.wait_ready()
        http = first.http
        outplan = http.post(
            "/v1.0/outplans",
            json={"source": {"type": "tel", "target": "+15550000000"}, "max_try_count_0": 1},
        ).json()
        outdial = http.post("/v1.0/outdials", json={"name": "many"}).json()
        rows = "destination_0\n" + "".join(f"+1555300{n:04d}\n" for n in range(400))
        http.post(
            f"/v1.0/outdials/{outdial['id']}/targets",
            content=rows,
            headers={"Content-Type": "text/csv"},
        )
        campaign = http.post(
            "/v1.0/campaigns",
            json={"outplan_id": outplan["id"], "outdial_id": outdial["id"]},
        ).json()
        http.put(f"/v1.0/campaigns/{campaign['id']}", json={"status": "run"})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            calls = http.get(f"/v1.0/campaigns/{campaign['id']}/campaigncalls").json()
            if calls["result"]:
                break
            time.sleep(0.05)
        assert first.stop() == 0
    finally:
        first.close()

    second = DaemonProcess(tmp_path)
    try:
        second.wait_ready()
        deadline = time.monotonic() + CAMPAIGN_SECONDS
        status = "run"
        while status != "stop" and time.monotonic() < deadline:
            time.sleep(0.2)
            status = second.http.get(f"/v1.0/campaigns/{campaign['id']}").json()["status"]
        assert status == "stop"
        assert second.stop() == 0
    finally:
        second.close()
