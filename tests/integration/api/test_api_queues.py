"""``GET /v1.0/queues``: the token's customer's registered queues, read only, in
VoIPbin's queue shape with the agents by state and the campaigns running on them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from dialerd.adapters.sim import SimCallCentre
from dialerd.config import SimConfig
from dialerd.model import NOT_DELETED
from dialerd.service.clock import SystemClock
from tests.integration.api.api_conftest import (
    CUSTOMER_A,
    CUSTOMER_B,
    TOKEN_A,
    TOKEN_B,
    ApiServer,
    error_of,
    runnable_campaign,
    running_api,
)
from tests.integration.api.test_api_client import dialerd
from tests.integration.conftest import queue_of
from tests.unit.reference import component_schemas, reference_available

SALES = queue_of(CUSTOMER_A, "sales")
SUPPORT = queue_of(CUSTOMER_A, "support")


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[ApiServer]:
    with running_api(tmp_path) as server:
        yield server


def with_sim_agents(server: ApiServer, **agents: int) -> None:
    """The API's queue adapter: a simulated centre with these agents per queue name."""
    world = SimCallCentre(SimConfig(default_agents=0, agents=agents), SystemClock())
    server.control.queue_adapter = world.queue


async def test_queues_are_listed_in_voipbins_shape_with_agents_and_running_campaigns(
    api_server: ApiServer,
) -> None:
    with_sim_agents(api_server, sales=3, support=0)
    async with api_server.client() as client:
        campaign = await runnable_campaign(client, queue_id=SALES, service_level=100)
        started = await client.put(
            f"/v1.0/campaigns/{campaign['id']}/status", json={"status": "run"}
        )
        assert started.status_code == 200, started.text
        page = (await client.get("/v1.0/queues")).json()
    assert page["next_page_token"] == ""
    queues = {queue["id"]: queue for queue in page["result"]}
    assert set(queues) == {SALES, SUPPORT}
    sales = queues[SALES]
    assert sales["customer_id"] == CUSTOMER_A
    assert sales["name"] == "sales"
    assert sales["tm_delete"] == NOT_DELETED
    assert sales["queue_adapter"] == "sim"
    assert sales["agents"] == {"available": 3, "busy": 0, "wrap_up": 0, "paused": 0, "offline": 0}
    assert sales["agents_detail"] == ""
    assert sales["campaign_ids"] == [campaign["id"]]
    assert queues[SUPPORT]["agents"]["available"] == 0
    assert queues[SUPPORT]["campaign_ids"] == []
    if reference_available():
        # VoIPbin's queue fields that apply carry their names and types.
        reference = component_schemas()["QueueManagerQueue"]["properties"]
        for field in ("id", "customer_id", "name", "detail", "tm_delete"):
            assert reference[field]["type"] == "string"
            assert isinstance(sales[field], str)


async def test_a_queue_is_read_by_id_and_another_customers_queue_is_a_404(
    api_server: ApiServer,
) -> None:
    async with api_server.client() as client:
        queue = (await client.get(f"/v1.0/queues/{SALES}")).json()
        assert queue["id"] == SALES
        theirs = await client.get(f"/v1.0/queues/{queue_of(CUSTOMER_B)}")
        assert error_of(theirs, 404)["reason"] == "QUEUE_NOT_FOUND"
        unknown = await client.get("/v1.0/queues/0d7e9a06-6f43-4b27-9b46-9b3f3a1f2c11")
        assert error_of(unknown, 404)["message"] == theirs.json()["error"]["message"].replace(
            queue_of(CUSTOMER_B), "0d7e9a06-6f43-4b27-9b46-9b3f3a1f2c11"
        )
        assert error_of(await client.get("/v1.0/queues/sales"), 400)
        for method in ("POST", "PUT", "DELETE"):
            refused = await client.request(method, f"/v1.0/queues/{SALES}", json={})
            assert error_of(refused, 405)
    async with api_server.client(token=TOKEN_B) as client:
        mine = (await client.get("/v1.0/queues")).json()["result"]
        assert {queue["customer_id"] for queue in mine} == {CUSTOMER_B}
        assert error_of(await client.get(f"/v1.0/queues/{SALES}"), 404)


async def test_agent_counts_the_adapter_cannot_tell_are_null_and_say_why(
    api_server: ApiServer,
) -> None:
    async with api_server.client() as client:
        queue = (await client.get(f"/v1.0/queues/{SALES}")).json()
    assert queue["agents"] == dict.fromkeys(
        ("available", "busy", "wrap_up", "paused", "offline"), None
    )
    assert "no queue adapter" in queue["agents_detail"]


async def test_queues_are_paged_by_id(api_server: ApiServer) -> None:
    async with api_server.client() as client:
        first = (await client.get("/v1.0/queues", params={"page_size": 1})).json()
        assert len(first["result"]) == 1
        assert first["next_page_token"] == first["result"][0]["id"]
        second = (
            await client.get(
                "/v1.0/queues", params={"page_size": 1, "page_token": first["next_page_token"]}
            )
        ).json()
        assert [q["id"] for q in first["result"] + second["result"]] == sorted([SALES, SUPPORT])
        assert second["next_page_token"] == ""
        bad = await client.get("/v1.0/queues", params={"page_token": "yesterday"})
        assert "page_token" in error_of(bad, 400)["message"]


def test_cli_lists_and_shows_queues_with_their_agents(
    api_server: ApiServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with_sim_agents(api_server, sales=2)
    monkeypatch.setenv("DIALERD_TOKEN", TOKEN_A)
    assert dialerd("queue", "list", "--api", api_server.url) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == [
        "ID", "NAME", "AVAILABLE", "BUSY", "WRAP_UP", "PAUSED", "OFFLINE", "CAMPAIGNS"
    ]  # fmt: skip
    assert sorted(row.split() for row in rows) == sorted(
        [[SALES, "sales", "2", "0", "0", "0", "0", "0"],
         [SUPPORT, "support", "0", "0", "0", "0", "0", "0"]]
    )  # fmt: skip
    assert dialerd("queue", "list", "-q", "--api", api_server.url) == 0
    assert sorted(capsys.readouterr().out.split()) == sorted([SALES, SUPPORT])
    assert dialerd("queue", "show", SALES, "--api", api_server.url) == 0
    shown = capsys.readouterr().out
    assert "agents available  2" in shown
    assert "name" in shown
    assert dialerd("queue", "show", SALES, "--json", "--api", api_server.url) == 0
    assert json.loads(capsys.readouterr().out)["agents"]["available"] == 2
    assert dialerd("queue", "show", queue_of(CUSTOMER_B), "--api", api_server.url) == 1
    assert "404" in capsys.readouterr().err
