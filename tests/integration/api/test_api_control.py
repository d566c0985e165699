"""Running and stopping campaigns through the API, and the campaigncalls it shows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dialerd.core.targets import RetryRule
from dialerd.model import CampaigncallResult, new_id
from tests.integration.api.api_conftest import (
    CUSTOMER_A,
    CUSTOMER_B,
    OUTPLAN_BODY,
    ApiServer,
    conforming_page,
    conforms,
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


async def test_put_status_runs_and_stops_a_campaign(api_server: ApiServer) -> None:
    async with api_server.client() as client:
        campaign = await runnable_campaign(client)
        path = f"/v1.0/campaigns/{campaign['id']}"
        running = await client.put(f"{path}/status", json={"status": "run"})
        assert conforms("campaign", running.json())["status"] == "run"
        assert (await client.get(path)).json()["status"] == "run"
        stopped = await client.put(f"{path}/status", json={"status": "stop"})
        assert conforms("campaign", stopped.json())["status"] == "stop"


async def test_put_campaign_with_status_applies_fields_then_runs(api_server: ApiServer) -> None:
    async with api_server.client() as client:
        campaign = await runnable_campaign(client)
        path = f"/v1.0/campaigns/{campaign['id']}"
        running = (await client.put(path, json={"status": "run", "name": "go"})).json()
        assert (running["status"], running["name"]) == ("run", "go")
        stopped = (await client.put(path, json={"status": "stop"})).json()
        assert (stopped["status"], stopped["name"]) == ("stop", "go")


async def test_running_an_invalid_campaign_is_a_409_naming_what_is_missing(
    api_server: ApiServer,
) -> None:

    async with api_server.client() as client:
        campaign = await create(client, "/v1.0/campaigns", {"name": "bare"})
        path = f"/v1.0/campaigns/{campaign['id']}"
        error = error_of(await client.put(f"{path}/status", json={"status": "run"}), 409)
        assert error["status"] == "FAILED_PRECONDITION"
        assert "outplan_id is not set" in error["message"]
        assert "outdial_id is not set" in error["message"]
        assert (await client.get(path)).json()["status"] == "stop"


async def test_a_refused_run_in_put_changes_no_field(api_server: ApiServer) -> None:
    async with api_server.client() as client:
        campaign = await runnable_campaign(client)
        path = f"/v1.0/campaigns/{campaign['id']}"
        no_tries = {**OUTPLAN_BODY, "max_try_count_0": 0, "max_try_count_1": 0}
        useless = await create(client, "/v1.0/outplans", no_tries)
        response = await client.put(
            path, json={"name": "renamed", "outplan_id": useless["id"], "status": "run"}
        )
        assert "allows no try" in error_of(response, 409)["message"]
        assert (await client.get(path)).json() == campaign


async def test_stopping_is_not_a_status_a_client_may_set(api_server: ApiServer) -> None:
    async with api_server.client() as client:
        campaign = await runnable_campaign(client)
        response = await client.put(
            f"/v1.0/campaigns/{campaign['id']}/status", json={"status": "stopping"}
        )
        assert "$.status" in error_of(response, 400)["message"]


async def test_deleting_a_running_campaign_is_a_409(api_server: ApiServer) -> None:
    async with api_server.client() as client:
        campaign = await runnable_campaign(client)
        path = f"/v1.0/campaigns/{campaign['id']}"
        await client.put(f"{path}/status", json={"status": "run"})
        error = error_of(await client.delete(path), 409)
        assert "stop it" in error["message"]
        assert (await client.get(path)).json()["status"] == "run"


async def test_outplan_and_outdial_of_a_running_campaign_cannot_be_deleted(
    api_server: ApiServer,
) -> None:
    async with api_server.client() as client:
        campaign = await runnable_campaign(client)
        await client.put(f"/v1.0/campaigns/{campaign['id']}/status", json={"status": "run"})
        for kind in ("outplan", "outdial"):
            path = f"/v1.0/{kind}s/{campaign[f'{kind}_id']}"
            error = error_of(await client.delete(path), 409)
            assert campaign["id"] in error["message"]
            assert (await client.get(path)).status_code == 200
        await client.put(f"/v1.0/campaigns/{campaign['id']}/status", json={"status": "stop"})
        assert (await client.delete(f"/v1.0/outplans/{campaign['outplan_id']}")).status_code == 200


async def test_campaigncalls_are_listed_read_and_deleted_only_when_done(
    api_server: ApiServer,
) -> None:
    async with api_server.client() as client:
        campaign = await runnable_campaign(client)
        other = await runnable_campaign(client)
        for c in (campaign, other):
            await client.put(f"/v1.0/campaigns/{c['id']}/status", json={"status": "run"})
        attempt = start_attempt(api_server, campaign["id"])
        start_attempt(api_server, other["id"])

        listed = conforming_page(
            "campaigncall",
            (await client.get(f"/v1.0/campaigns/{campaign['id']}/campaigncalls")).json(),
        )
        assert [c["id"] for c in listed] == [attempt["id"]]
        assert listed[0]["status"] == "dialing"
        everything = conforming_page(
            "campaigncall", (await client.get("/v1.0/campaigncalls")).json()
        )
        assert len(everything) == 2
        filtered = await client.get("/v1.0/campaigncalls", params={"campaign_id": campaign["id"]})
        assert [c["id"] for c in filtered.json()["result"]] == [attempt["id"]]

        path = f"/v1.0/campaigncalls/{attempt['id']}"
        assert conforms("campaigncall", (await client.get(path)).json())["id"] == attempt["id"]
        error = error_of(await client.delete(path), 409)
        assert "active" in error["message"]

        target_path = (
            f"/v1.0/outdials/{campaign['outdial_id']}/targets/{attempt['outdial_target_id']}"
        )
        assert "being dialed" in error_of(await client.delete(target_path), 409)["message"]

        api_server.call(
            api_server.store.finish_attempt,
            attempt["id"],
            CampaigncallResult.FAIL,
            "busy",
            RetryRule((3, 0, 0, 0, 0)),
            api_server.control.clock.now(),
        )
        deleted = conforms("campaigncall", (await client.delete(path)).json())
        assert deleted["tm_delete"] is not None
        error_of(await client.get(path), 404)
        assert (await client.delete(target_path)).status_code == 200


async def test_running_with_an_unregistered_or_foreign_queue_is_a_409(
    api_server: ApiServer,
) -> None:
    async with api_server.client() as client:
        for queue_id, problem in (
            (new_id(), "is not registered for this customer"),
            (queue_of(CUSTOMER_B), "is not registered for this customer"),
        ):
            campaign = await runnable_campaign(client, queue_id=queue_id)
            path = f"/v1.0/campaigns/{campaign['id']}"
            error = error_of(await client.put(f"{path}/status", json={"status": "run"}), 409)
            assert f"queue {queue_id} {problem}" in error["message"]
            assert (await client.get(path)).json() == campaign


async def test_an_edit_that_a_running_campaign_cannot_run_with_is_a_409_and_changes_nothing(
    api_server: ApiServer,
) -> None:
    async with api_server.client() as client:
        campaign = await runnable_campaign(client, queue_id=queue_of(CUSTOMER_A))
        path = f"/v1.0/campaigns/{campaign['id']}"
        running = (await client.put(f"{path}/status", json={"status": "run"})).json()
        assert running["status"] == "run"
        for body, problem in (
            ({"outplan_id": None}, "outplan_id is not set"),
            ({"outdial_id": None}, "outdial_id is not set"),
            ({"queue_id": new_id()}, "is not registered for this customer"),
        ):
            response = await client.put(f"{path}/resource_info", json=body)
            assert problem in error_of(response, 409)["message"]
            assert (await client.get(path)).json() == running
        # A valid edit of a running campaign goes through.
        edited = await client.put(
            f"{path}/resource_info", json={"queue_id": queue_of(CUSTOMER_A, "support")}
        )
        assert edited.status_code == 200, edited.text
        assert edited.json()["status"] == "run"


async def test_a_campaign_another_instance_runs_names_it_without_its_host(
    api_server: ApiServer,
) -> None:
    async with api_server.client() as client:
        campaign = await runnable_campaign(client)
        path = f"/v1.0/campaigns/{campaign['id']}"
        assert (await client.put(f"{path}/status", json={"status": "run"})).status_code == 200
        # Another dialerd sharing the store holds the campaign's lease.
        now = datetime.now(UTC)
        other = "db-7.internal.example:0123456789ab"
        fence = api_server.call(api_server.store.acquire_lease, campaign["id"], other, 60.0, now)
        assert fence is not None
        state = (await client.get(f"{path}/state")).json()
    assert state["state"] == "run_elsewhere"
    assert state["instance"] == "0123456789ab"
    assert state["detail"] == "run by instance 0123456789ab; ask its API"
    assert "internal.example" not in str(state)
