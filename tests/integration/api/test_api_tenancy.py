"""Customer B never sees, changes or deletes customer A's resources, whatever the route."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from dialerd.api.routes import ENDPOINTS, PREFIX, Endpoint
from tests.integration.api.api_conftest import (
    CUSTOMER_A,
    TARGET_BODY,
    TOKEN_B,
    ApiServer,
    create,
    error_of,
    runnable_campaign,
    running_api,
    start_attempt,
)
from tests.integration.conftest import queue_of


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[ApiServer]:
    with running_api(tmp_path) as server:
        yield server


BODIES: dict[str, dict[str, Any]] = {
    "update_campaign": {"name": "hijacked", "status": "stop"},
    "update_campaign_status": {"status": "stop"},
    "update_service_level": {"service_level": 1},
    "update_actions": {"actions": []},
    "update_resource_info": {"queue_id": None},
    "update_next_campaign_id": {"next_campaign_id": None},
    "update_outplan": {"name": "hijacked"},
    "update_dial_info": {"try_interval": 1},
    "update_outdial": {"name": "hijacked"},
    "update_outdial_campaign_id": {"campaign_id": None},
    "update_outdial_data": {"data": "hijacked"},
    "create_targets": TARGET_BODY,
}
BY_ID = [e for e in ENDPOINTS if "{id}" in e.path]


async def customer_a_world(server: ApiServer) -> dict[str, str]:
    """Customer A's campaign (running, one attempt), outplan, outdial and target ids."""
    async with server.client() as client:
        campaign = await runnable_campaign(client)
        await client.put(f"/v1.0/campaigns/{campaign['id']}/status", json={"status": "run"})
        attempt = start_attempt(server, campaign["id"])
        # One of A's events set aside as failed (what redeliver acts on).
        store, now = server.store, datetime.now(UTC)
        entry = server.call(store.read_events, CUSTOMER_A, "", 1)[0]
        fence = server.call(store.acquire_lease, f"events:{CUSTOMER_A}", "test", 30.0, now)
        server.call(store.set_aside, entry, "HTTP 500", now, fence)
        return {
            "campaign": campaign["id"],
            "outplan": campaign["outplan_id"],
            "outdial": campaign["outdial_id"],
            "target": attempt["outdial_target_id"],
            "campaigncall": attempt["id"],
            "queue": queue_of(CUSTOMER_A),
            "event": entry.position,
        }


async def snapshot(client: httpx.AsyncClient, ids: dict[str, str]) -> list[Any]:
    """Everything customer A can read about its resources."""
    paths = [
        f"/v1.0/campaigns/{ids['campaign']}",
        f"/v1.0/outplans/{ids['outplan']}",
        f"/v1.0/outdials/{ids['outdial']}",
        f"/v1.0/outdials/{ids['outdial']}/targets",
        f"/v1.0/campaigncalls/{ids['campaigncall']}",
        "/v1.0/events/failed",
        "/v1.0/customer",
    ]
    return [(await client.get(path)).json() for path in paths]


def concrete(endpoint: Endpoint, ids: dict[str, str]) -> str:
    kind = endpoint.path.split("/")[1].removesuffix("s")
    path = endpoint.path.replace("{id}", ids[kind]).replace("{target_id}", ids["target"])
    return PREFIX + path


@pytest.mark.parametrize("endpoint", BY_ID, ids=lambda e: f"{e.method} {e.path}")
async def test_another_customers_resource_is_404_and_unchanged(
    api_server: ApiServer, endpoint: Endpoint
) -> None:
    ids = await customer_a_world(api_server)
    async with api_server.client() as owner, api_server.client(TOKEN_B) as intruder:
        before = await snapshot(owner, ids)
        body = BODIES.get(endpoint.handler.__name__)
        response = await intruder.request(
            endpoint.method, concrete(endpoint, ids), json=body if body is not None else None
        )
        assert error_of(response, 404)["status"] == "NOT_FOUND"
        assert await snapshot(owner, ids) == before


async def test_lists_show_only_the_callers_resources(api_server: ApiServer) -> None:
    await customer_a_world(api_server)
    async with api_server.client(TOKEN_B) as intruder:
        for path in ("/v1.0/campaigns", "/v1.0/outplans", "/v1.0/outdials", "/v1.0/campaigncalls"):
            assert (await intruder.get(path)).json() == {"result": [], "next_page_token": ""}


async def test_references_to_another_customers_resources_are_refused(
    api_server: ApiServer,
) -> None:
    ids = await customer_a_world(api_server)
    async with api_server.client(TOKEN_B) as intruder:
        for field in ("outplan", "outdial"):
            response = await intruder.post("/v1.0/campaigns", json={f"{field}_id": ids[field]})
            error_of(response, 400)
        response = await intruder.post("/v1.0/outdials", json={"campaign_id": ids["campaign"]})
        error_of(response, 400)
        own = await create(intruder, "/v1.0/campaigns", {"name": "b"})
        response = await intruder.put(
            f"/v1.0/campaigns/{own['id']}/next_campaign_id",
            json={"next_campaign_id": ids["campaign"]},
        )
        error_of(response, 400)
        assert len((await intruder.get("/v1.0/campaigns")).json()["result"]) == 1
