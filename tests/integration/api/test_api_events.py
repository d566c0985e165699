"""``/v1.0/customer`` (webhook settings) and ``/v1.0/events/failed`` (events set aside)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dialerd.client.http import ApiClient
from dialerd.config import WebhooksConfig
from dialerd.model import new_id
from tests.integration.api.api_conftest import (
    CUSTOMER_A,
    TOKEN_A,
    TOKEN_B,
    ApiServer,
    error_of,
    runnable_campaign,
    running_api,
)
from tests.integration.api.test_api_client import dialerd


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[ApiServer]:
    with running_api(tmp_path) as server:
        yield server


@pytest.mark.parametrize(
    "uri",
    [
        "http://crm.example.com/hook",
        "https://127.0.0.1/hook",
        "https://localhost:8443/hook",
        "https://10.1.2.3/hook",
        "https://192.168.0.9/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://user:pw@crm.example.com/hook",
        "ftp://crm.example.com/hook",
        "not a url",
    ],
)
async def test_a_webhook_uri_to_an_internal_or_plain_address_is_refused(
    api_server: ApiServer, uri: str
) -> None:
    async with api_server.client() as client:
        response = await client.put("/v1.0/customer", json={"webhook_uri": uri})
        error = error_of(response, 400)
        assert "webhook_uri" in error["message"]
        shown = (await client.get("/v1.0/customer")).json()
    assert shown["webhook_uri"] == ""


async def test_webhook_settings_are_set_with_a_secret_shown_once(api_server: ApiServer) -> None:
    async with api_server.client() as client:
        fresh = (await client.get("/v1.0/customer")).json()
        assert fresh == {
            "id": CUSTOMER_A,
            "webhook_method": "",
            "webhook_uri": "",
            "webhook_secret_set": False,
            "tm_update": "",
        }
        response = await client.put(
            "/v1.0/customer", json={"webhook_uri": "https://crm.example.com/dialer"}
        )
        assert response.status_code == 200, response.text
        set_ = response.json()
        assert set_["webhook_method"] == "POST"
        assert set_["webhook_secret_set"] is True
        assert len(set_["webhook_secret"]) >= 32
        shown = (await client.get("/v1.0/customer")).json()
        assert "webhook_secret" not in shown
        assert shown["webhook_uri"] == "https://crm.example.com/dialer"
        own = await client.put("/v1.0/customer", json={"webhook_secret": "x" * 40})
        assert "webhook_secret" not in own.json()
        short = await client.put("/v1.0/customer", json={"webhook_secret": "short"})
        assert "webhook_secret" in error_of(short, 400)["message"]
        wrong = await client.put("/v1.0/customer", json={"webhook_method": "PATCH"})
        assert "webhook_method" in error_of(wrong, 400)["message"]
    stored = api_server.call(api_server.store.get_webhook, CUSTOMER_A)
    assert stored.webhook_secret == "x" * 40
    async with api_server.client(TOKEN_B) as other:
        assert (await other.get("/v1.0/customer")).json()["webhook_uri"] == ""


async def test_http_to_an_allowed_host_is_accepted(api_server: ApiServer) -> None:
    api_server.app.state.ctx.webhooks = WebhooksConfig(allow_hosts=["127.0.0.1"])
    async with api_server.client() as client:
        response = await client.put(
            "/v1.0/customer", json={"webhook_uri": "http://127.0.0.1:9/hook"}
        )
        assert response.status_code == 200, response.text


async def test_a_failed_event_is_listed_and_can_be_redelivered(api_server: ApiServer) -> None:
    store = api_server.store
    campaign_id = new_id()
    api_server.call(store.append_event, "campaign_state", CUSTOMER_A, campaign_id, b'{"a":1}')
    (entry,) = api_server.call(store.read_events, CUSTOMER_A, "", 10)
    fence = api_server.call(
        store.acquire_lease,
        f"events:{CUSTOMER_A}",
        "sender",
        30.0,
        api_server.app.state.ctx.clock.now(),
    )
    api_server.call(store.set_aside, entry, "HTTP 503", api_server.app.state.ctx.clock.now(), fence)
    async with api_server.client() as client:
        listed = (await client.get("/v1.0/events/failed")).json()["result"]
        assert [item["event"]["id"] for item in listed] == [entry.position]
        assert listed[0]["event"]["data"] == {"a": 1}
        assert listed[0]["error"] == "HTTP 503"
        again = await client.post(f"/v1.0/events/failed/{entry.position}/redeliver")
        assert again.status_code == 200, again.text
        assert again.json()["redeliver"] is True
        missing = await client.post("/v1.0/events/failed/999999/redeliver")
        error_of(missing, 404)
    async with api_server.client(TOKEN_B) as other:
        assert (await other.get("/v1.0/events/failed")).json()["result"] == []
        error_of(await other.post(f"/v1.0/events/failed/{entry.position}/redeliver"), 404)


# -- the live stream: GET /v1.0/events (Server-Sent Events) ---------------------------


async def read_stream(
    client: httpx.AsyncClient, headers: dict[str, str] | None = None, **params: str
) -> list[dict[str, str]]:
    """The SSE messages up to the ``caught up`` comment."""
    messages: list[dict[str, str]] = []
    current: dict[str, str] = {}
    async with client.stream(
        "GET", "/v1.0/events", params=params, headers=headers or {}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line == ": caught up":
                return messages
            if not line:
                if "data" in current:
                    messages.append(current)
                current = {}
                continue
            name, _, value = line.partition(": ")
            current[name] = value
    raise AssertionError("the stream ended before catching up")


async def test_the_stream_gives_the_callers_events_and_resumes_after_the_last_id(
    api_server: ApiServer,
) -> None:
    async with api_server.client() as client:
        one = await runnable_campaign(client)
        two = await runnable_campaign(client)
        everything = await read_stream(client)
        assert [m["event"] for m in everything] == ["campaign_created", "campaign_created"]
        data = [json.loads(m["data"]) for m in everything]
        assert [d["data"]["id"] for d in data] == [one["id"], two["id"]]
        assert data[0]["data"] == one
        assert [d["id"] for d in data] == [m["id"] for m in everything]
        await client.put(f"/v1.0/campaigns/{one['id']}", json={"name": "renamed"})
        resumed = await read_stream(client, {"last-event-id": everything[-1]["id"]})
        assert [m["event"] for m in resumed] == ["campaign_updated"]
        assert json.loads(resumed[0]["data"])["data"]["name"] == "renamed"
        await client.put(f"/v1.0/campaigns/{two['id']}/status", json={"status": "run"})
        run = await read_stream(client, {"last-event-id": resumed[-1]["id"]})
        started = json.loads(run[0]["data"])
        assert (started["data"]["status"], started["cause"]) == ("run", "request")
        only_two = await read_stream(client, campaign_id=two["id"])
        assert {json.loads(m["data"])["data"]["id"] for m in only_two} == {two["id"]}
        bad = await client.get("/v1.0/events", headers={"last-event-id": "yesterday"})
        assert "Last-Event-ID" in error_of(bad, 400)["message"]
        bad_campaign = await client.get("/v1.0/events", params={"campaign_id": "x"})
        assert "campaign_id" in error_of(bad_campaign, 400)["message"]
    async with api_server.client(TOKEN_B) as other:
        assert await read_stream(other) == []
    async with api_server.client(None) as nobody:
        error_of(await nobody.get("/v1.0/events"), 401)


def test_the_cli_prints_the_events_and_resumes_after_an_id(
    api_server: ApiServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DIALERD_API", api_server.url)
    monkeypatch.setenv("DIALERD_TOKEN", TOKEN_A)
    campaign_id = new_id()
    for n in range(3):
        api_server.call(
            api_server.store.append_event, "campaign_state", CUSTOMER_A, campaign_id,
            json.dumps({"id": campaign_id, "state": f"s{n}", "time": "t"}).encode(),
        )  # fmt: skip
    assert dialerd("events", "--json") == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["data"]["state"] for line in lines] == ["s0", "s1", "s2"]
    assert dialerd("events", "--after", lines[0]["id"], "--campaign", campaign_id) == 0
    shown = capsys.readouterr().out.splitlines()
    assert len(shown) == 2
    assert "campaign_state" in shown[0]
    assert "state=s1" in shown[0]


def test_a_following_client_sees_every_event_through_a_dropped_stream(
    api_server: ApiServer,
) -> None:
    store = api_server.store
    campaign_id = new_id()

    def append(n: int) -> None:
        body = json.dumps({"id": campaign_id, "state": f"s{n}", "since": "t"}).encode()
        api_server.call(store.append_event, "campaign_state", CUSTOMER_A, campaign_id, body)

    # The server ends open streams once when asked (as it does when the daemon stops).
    drop = threading.Event()

    def closing() -> bool:
        if drop.is_set():
            drop.clear()
            return True
        return False

    api_server.app.state.ctx.closing = closing
    for n in range(3):
        append(n)
    client = ApiClient(api_server.url, TOKEN_A)
    seen: list[str] = []
    try:
        events = client.events(None, "", follow=True)
        for event in events:
            seen.append(event["data"]["state"])
            if len(seen) == 3:
                drop.set()
                # Written while the stream is down: the reconnect (Last-Event-ID) gets them.
                for n in range(3, 6):
                    append(n)
            if len(seen) == 6:
                break
    finally:
        client.close()
    # The stream was dropped once (the flag consumed before s3 existed), and nothing was
    # missed or repeated across the reconnect.
    assert not drop.is_set()
    assert seen == [f"s{n}" for n in range(6)]
