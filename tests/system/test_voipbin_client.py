"""VoIPbin compatibility, checked by a client we did not write: ``voipbin-mcp`` (PyPI),
its ``VoIPbinClient`` and campaign and queue tools, against the daemon as a real
process, signing in as it does (the ``accesskey`` cookie), its auth unpatched."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import voipbin_mcp.client as voipbin_client
import voipbin_mcp.server as voipbin_server
import voipbin_mcp.tools.campaigns as campaign_tools
import voipbin_mcp.tools.queues as queue_tools

from tests.system.daemon_process import CUSTOMER, QUEUE, TOKEN, DaemonProcess

ACTIONS = [{"type": "talk", "option": {"text": "hello", "language": "en-US"}}]


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    process = DaemonProcess(tmp_path)
    try:
        process.wait_ready()
        yield process
    finally:
        process.close()


@pytest.fixture
async def client(daemon: DaemonProcess, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    """The client its tools use, configured only as its README says: by environment."""
    monkeypatch.setenv("VOIPBIN_API_KEY", TOKEN)
    monkeypatch.setenv("VOIPBIN_API_BASE_URL", f"{daemon.base}/v1.0")
    monkeypatch.delenv("VOIPBIN_AUTH_TRANSPORT", raising=False)
    made = voipbin_client.VoIPbinClient()
    assert made.auth_transport == "cookie"
    monkeypatch.setattr(voipbin_server, "_client", made)
    try:
        yield made
    finally:
        await made.close()


def loads(text: str) -> Any:
    return json.loads(text)


async def test_voipbin_clients_campaign_and_queue_tools_work_against_the_daemon(
    client: Any,
) -> None:
    outplan = await client.post(
        "/outplans",
        json={"name": "one try", "source": {"type": "tel", "target": "+15550000000"},
              "max_try_count_0": 1},
    )  # fmt: skip
    outdial = await client.post("/outdials", json={"name": "leads"})

    created = loads(
        await campaign_tools.create_campaign(
            name="spring",
            detail="made by voipbin-mcp",
            campaign_type="call",
            actions=ACTIONS,
            service_level=50,
            end_handle="stop",
            outplan_id=outplan["id"],
            outdial_id=outdial["id"],
            queue_id=QUEUE,
        )
    )
    assert created["customer_id"] == CUSTOMER
    assert created["status"] == "stop"
    campaign_id = created["id"]

    got = loads(await campaign_tools.get_campaign(campaign_id))
    assert got == created

    updated = loads(
        await campaign_tools.update_campaign(campaign_id, name="summer", service_level=80)
    )
    assert (updated["name"], updated["service_level"]) == ("summer", 80)
    assert updated["detail"] == "made by voipbin-mcp"

    new_actions = [{"type": "answer"}, *ACTIONS]
    with_actions = loads(await campaign_tools.update_campaign_actions(campaign_id, new_actions))
    assert [action["type"] for action in with_actions["actions"]] == ["answer", "talk"]

    listed = loads(await campaign_tools.list_campaigns(page_size=10))
    assert [campaign["id"] for campaign in listed["result"]] == [campaign_id]

    queues = loads(await queue_tools.list_queues(page_size=10))
    assert [queue["id"] for queue in queues["result"]] == [QUEUE]
    queue = loads(await queue_tools.get_queue(QUEUE))
    assert (queue["name"], queue["customer_id"]) == ("sales", CUSTOMER)
    assert queue["agents"]["available"] == 4  # [sim] default_agents
    assert queue["campaign_ids"] == []

    # What a VoIPbin client does to edit: GET the resource, change it, PUT it back whole.
    whole = await client.get(f"/campaigns/{campaign_id}")
    renamed = await client.put(f"/campaigns/{campaign_id}", json={**whole, "name": "autumn"})
    assert renamed["name"] == "autumn"
    assert renamed["tm_create"] == whole["tm_create"]

    deleted = loads(await campaign_tools.delete_campaign(campaign_id))
    assert deleted["id"] == campaign_id
    assert loads(await campaign_tools.list_campaigns(page_size=10))["result"] == []
    with pytest.raises(voipbin_client.VoIPbinAPIError) as missing:
        await campaign_tools.get_campaign(campaign_id)
    assert missing.value.status_code == 404


async def test_its_query_transport_is_refused_by_default_saying_how_to_send_the_key(
    daemon: DaemonProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOIPBIN_API_KEY", TOKEN)
    monkeypatch.setenv("VOIPBIN_API_BASE_URL", f"{daemon.base}/v1.0")
    monkeypatch.setenv("VOIPBIN_AUTH_TRANSPORT", "query")
    client = voipbin_client.VoIPbinClient()
    try:
        with pytest.raises(voipbin_client.VoIPbinAPIError) as refused:
            await client.get("/campaigns")
    finally:
        await client.close()
    assert refused.value.status_code == 401
    assert refused.value.reason == "TOKEN_IN_QUERY"
    assert "accesskey=<token>" in str(refused.value)


async def test_its_query_transport_works_when_the_operator_allows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = DaemonProcess(tmp_path, api="query_token = true")
    try:
        daemon.wait_ready()
        monkeypatch.setenv("VOIPBIN_API_KEY", TOKEN)
        monkeypatch.setenv("VOIPBIN_API_BASE_URL", f"{daemon.base}/v1.0")
        monkeypatch.setenv("VOIPBIN_AUTH_TRANSPORT", "query")
        client = voipbin_client.VoIPbinClient()
        try:
            assert (await client.get("/queues"))["result"][0]["id"] == QUEUE
        finally:
            await client.close()
    finally:
        daemon.close()
