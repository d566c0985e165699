"""Events out with the real daemon: a loopback receiver (allowed by the config's
``[webhooks] allow_hosts``) gets every event, signed, at least once and in order,
across kill -9 of the daemon in the middle of delivering and a restart."""

from __future__ import annotations

import time
from pathlib import Path

import anyio

from dialerd.events.receivers import EVENT_ID_HEADER, SIGNATURE_HEADER, verify
from dialerd.store.sqlite import SqliteStore
from tests.receivers import HttpReceiver, http_receiver
from tests.system.daemon_process import CAMPAIGN_SECONDS, CUSTOMER, DaemonProcess, create_campaign

EVENTS_CONFIG = """
[webhooks]
allow_hosts = ["127.0.0.1"]
[events]
poll_interval = 0.05
first_backoff = 0.05
max_backoff = 0.2
lease_ttl = 2.0
timeout = 1.0
"""


def taken_ids(receiver: HttpReceiver) -> list[int]:
    return [
        int(request.headers[EVENT_ID_HEADER.lower()])
        for request in receiver.received()
        if request.status == 200
    ]


def wait(condition: object, what: str, seconds: float = CAMPAIGN_SECONDS) -> None:
    assert callable(condition)
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


def test_every_event_arrives_in_order_across_kill_9_and_restart(tmp_path: Path) -> None:
    with http_receiver() as receiver:
        # A receiver a little slower than the campaign: a backlog builds up.
        receiver.delay = 0.02
        first = DaemonProcess(tmp_path, extra_config=EVENTS_CONFIG)
        try:
            first.wait_ready()
            put = first.http.put("/v1.0/customer", json={"webhook_uri": receiver.url + "/in"})
            assert put.status_code == 200, put.text
            secret = put.json()["webhook_secret"]
            campaign = create_campaign(first.http, 30)
            first.http.put(f"/v1.0/campaigns/{campaign['id']}", json={"status": "run"})
            wait(lambda: len(taken_ids(receiver)) >= 15, "the first events delivered")
            first.kill()
            delivered_before = len(taken_ids(receiver))
        finally:
            first.close()

        second = DaemonProcess(tmp_path, extra_config=EVENTS_CONFIG)
        try:
            second.wait_ready()

            def stopped() -> bool:
                shown = second.http.get(f"/v1.0/campaigns/{campaign['id']}").json()
                return bool(shown["status"] == "stop")

            wait(stopped, "the campaign ends")
            assert second.stop() == 0
        finally:
            second.close()

        store = SqliteStore(tmp_path / "state" / "dialerd.sqlite3")

        async def written() -> list[int]:
            await store.open()
            try:
                return [int(e.position) for e in await store.read_events(CUSTOMER, "", 100_000)]
            finally:
                await store.close()

        positions = anyio.run(written)
        third = DaemonProcess(tmp_path, extra_config=EVENTS_CONFIG)
        try:
            third.wait_ready()
            wait(lambda: set(positions) <= set(taken_ids(receiver)), "every event delivered")
        finally:
            third.close()
        got = taken_ids(receiver)
        requests = [r for r in receiver.received() if r.status == 200]

    assert len(got) > delivered_before
    # At least once: every event of the outbox; in order: the first arrival of each
    # event follows the outbox order (a re-send after the kill repeats a few).
    first_arrivals = list(dict.fromkeys(got))
    assert first_arrivals[: len(positions)] == positions
    for request in requests:
        header = request.headers[SIGNATURE_HEADER.lower()]
        assert verify(secret, header, request.body, time.time())
    types = {r.body.split(b'"type":"', 1)[1].split(b'"', 1)[0] for r in requests}
    assert {b"campaign_created", b"campaigncall_created", b"campaigncall_updated"} <= types
