"""``/v1.0/customer`` (webhook settings) and ``/v1.0/events/failed`` (events set aside)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dialerd.config import WebhooksConfig
from dialerd.model import new_id
from tests.integration.api.api_conftest import (
    CUSTOMER_A,
    TOKEN_B,
    ApiServer,
    error_of,
    running_api,
)


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
