"""Flow campaigns in a real daemon process: webhooks reach a real HTTP receiver, mail a
real SMTP server (aiosmtpd), both on loopback; no call is placed."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.receivers import http_receiver, smtp_server
from tests.system.daemon_process import CAMPAIGN_SECONDS, DaemonProcess


@pytest.fixture
def receiver() -> Iterator[Any]:
    with http_receiver() as running:
        yield running


def start(tmp_path: Path, extra_config: str) -> DaemonProcess:
    tmp_path.mkdir(parents=True, exist_ok=True)
    daemon = DaemonProcess(tmp_path, extra_config=extra_config)
    daemon.wait_ready()
    return daemon


def flow_campaign(http: httpx.Client, destinations: list[str], actions: list[Any]) -> str:
    outplan = http.post(
        "/v1.0/outplans",
        json={"source": {"type": "tel", "target": "+15550000000"}, "max_try_count_0": 1},
    ).json()
    outdial = http.post("/v1.0/outdials", json={"name": "flow leads"}).json()
    csv = "name,destination_0\n" + "".join(
        f"lead {n},{destination}\n" for n, destination in enumerate(destinations)
    )
    imported = http.post(
        f"/v1.0/outdials/{outdial['id']}/targets",
        content=csv,
        headers={"Content-Type": "text/csv"},
    )
    assert imported.status_code == 200, imported.text
    created = http.post(
        "/v1.0/campaigns",
        json={
            "type": "flow",
            "name": "flow",
            "end_handle": "stop",
            "actions": actions,
            "outplan_id": outplan["id"],
            "outdial_id": outdial["id"],
        },
    )
    assert created.status_code == 200, created.text
    campaign_id: str = created.json()["id"]
    return campaign_id


def run_to_stop(http: httpx.Client, campaign_id: str) -> list[dict[str, Any]]:
    started = http.put(f"/v1.0/campaigns/{campaign_id}/status", json={"status": "run"})
    assert started.status_code == 200, started.text
    deadline = time.monotonic() + CAMPAIGN_SECONDS
    status = "run"
    while status != "stop" and time.monotonic() < deadline:
        time.sleep(0.1)
        status = http.get(f"/v1.0/campaigns/{campaign_id}").json()["status"]
    assert status == "stop"
    calls: list[dict[str, Any]] = http.get(
        f"/v1.0/campaigns/{campaign_id}/campaigncalls?page_size=100"
    ).json()["result"]
    return calls


def test_a_flow_campaign_posts_one_webhook_per_target_and_places_no_call(
    tmp_path: Path, receiver: Any
) -> None:
    daemon = start(tmp_path, '[webhooks]\nallow_hosts = ["127.0.0.1"]\n')
    try:
        numbers = [f"+1555400{n:04d}" for n in range(5)]
        hook = {
            "type": "webhook_send",
            "option": {
                "uri": f"{receiver.url}/lead",
                "data": '{"name": "${target.name}", "number": "${target.destination}"}',
            },
        }
        calls = run_to_stop(daemon.http, flow_campaign(daemon.http, numbers, [hook]))
        assert daemon.stop() == 0
    finally:
        daemon.close()
    received = receiver.received()
    assert len(received) == 5
    assert sorted(json.loads(request.body)["number"] for request in received) == numbers
    assert {(call["result"], call["reason"]) for call in calls} == {("success", "normal")}
    # The simulated telephony placed no call: its ledger has no line.
    ledger = tmp_path / "state" / "originations.jsonl"
    assert not ledger.exists() or ledger.read_text() == ""


def test_an_internal_url_is_refused_and_the_attempt_fails(tmp_path: Path, receiver: Any) -> None:
    daemon = start(tmp_path, "")  # nothing allowed: loopback is internal
    try:
        hook = {"type": "webhook_send", "option": {"uri": f"{receiver.url}/lead"}}
        calls = run_to_stop(daemon.http, flow_campaign(daemon.http, ["+15554000001"], [hook]))
        assert daemon.stop() == 0
        logged = [line for line in daemon.log_lines() if line["event"] == "action failed"]
    finally:
        daemon.close()
    assert receiver.received() == []
    assert [call["reason"] for call in calls] == ["failed"]
    assert "allow_hosts" in str(logged[0]["reason"])


def test_email_send_needs_smtp_to_run_and_reaches_the_server_after_a_reload(
    tmp_path: Path,
) -> None:
    mail = {
        "type": "email_send",
        "option": {
            "destinations": [{"type": "email", "target": "sales@example.com"}],
            "subject": "Hello ${target.name}",
            "content": "We tried to reach you.",
        },
    }
    # A target whose destination is an email address (Address JSON in the CSV).
    alice = '"{""type"": ""email"", ""target"": ""alice@example.com""}"'
    with smtp_server() as inbox:
        daemon = start(tmp_path, "")
        try:
            campaign_id = flow_campaign(daemon.http, [alice], [mail])
            refused = daemon.http.put(
                f"/v1.0/campaigns/{campaign_id}/status", json={"status": "run"}
            )
            assert refused.status_code == 409
            assert "email_send" in refused.text
            # The operator adds [smtp] and reloads: the same campaign runs now.
            with daemon.config.open("a") as config:
                config.write(
                    f'[smtp]\nhost = "127.0.0.1"\nport = {inbox.port}\nstarttls = false\n'
                    'from = "dialer@example.com"\n'
                )
            daemon.process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + CAMPAIGN_SECONDS
            while time.monotonic() < deadline and not any(
                line["event"] == "config reloaded" for line in daemon.log_lines()
            ):
                time.sleep(0.05)
            calls = run_to_stop(daemon.http, campaign_id)
        finally:
            daemon.close()
        ((sender, recipients, message),) = inbox.received()
    assert sender == "dialer@example.com"
    assert sorted(recipients) == ["alice@example.com", "sales@example.com"]
    assert message["Subject"] == "Hello lead 0"
    assert [call["reason"] for call in calls] == ["normal"]
