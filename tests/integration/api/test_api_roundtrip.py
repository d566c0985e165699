"""A VoIPbin client that GETs a resource, changes a field and PUTs it back whole."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.api.api_conftest import (
    OUTPLAN_BODY,
    ApiServer,
    create,
    error_of,
    runnable_campaign,
    running_api,
)


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[ApiServer]:
    with running_api(tmp_path) as server:
        yield server


async def _resources(server: ApiServer) -> dict[str, dict[str, Any]]:
    async with server.client() as client:
        campaign = await runnable_campaign(client, queue_id=None)
        outplan = (await client.get(f"/v1.0/outplans/{campaign['outplan_id']}")).json()
        outdial = (await client.get(f"/v1.0/outdials/{campaign['outdial_id']}")).json()
    return {"campaigns": campaign, "outplans": outplan, "outdials": outdial}


# (resource, PUT path suffix, the field the endpoint sets, its new value)
ROUND_TRIPS = [
    ("campaigns", "", "name", "renamed"),
    ("campaigns", "/service_level", "service_level", 40),
    ("campaigns", "/actions", "actions", [{"type": "answer"}]),
    ("campaigns", "/resource_info", "next_campaign_id", ""),
    ("outplans", "", "name", "renamed"),
    ("outplans", "/dial_info", "dial_timeout", 12_000),
    ("outdials", "", "detail", "renamed"),
    ("outdials", "/data", "data", "new data"),
]


@pytest.mark.parametrize(("kind", "suffix", "field", "value"), ROUND_TRIPS)
async def test_a_resource_put_back_whole_with_one_change_is_200(
    api_server: ApiServer, kind: str, suffix: str, field: str, value: Any
) -> None:
    resources = await _resources(api_server)
    async with api_server.client() as client:
        stored = (await client.get(f"/v1.0/{kind}/{resources[kind]['id']}")).json()
        response = await client.put(
            f"/v1.0/{kind}/{stored['id']}{suffix}", json={**stored, field: value}
        )
        assert response.status_code == 200, response.text
        changed = response.json()
        again = (await client.get(f"/v1.0/{kind}/{stored['id']}")).json()
    assert again == changed
    if field == "actions":
        assert [action["type"] for action in changed["actions"]] == ["answer"]
    elif field == "next_campaign_id":
        assert changed[field] == "00000000-0000-0000-0000-000000000000"
    else:
        assert changed[field] == value
    untouched = {k for k in stored if k not in (field, "tm_update")}
    assert {k: changed[k] for k in untouched} == {k: stored[k] for k in untouched}


# (resource, PUT path suffix, field, a different value, what the 400 must say)
CHANGED_ECHOES = [
    ("campaigns", "", "id", "0d7e9a06-6f43-4b27-9b46-9b3f3a1f2c11", "it cannot be changed"),
    ("campaigns", "", "customer_id", "0b7e2d36-1c55-4f0e-9a33-2b8f0c6d1e47", "cannot be changed"),
    ("campaigns", "", "tm_create", "2020-01-01 00:00:00.000000", "it cannot be changed"),
    ("campaigns", "/actions", "name", "other", "PUT /v1.0/campaigns/{id} changes it"),
    ("campaigns", "/service_level", "status", "run", "PUT /v1.0/campaigns/{id} changes it"),
    ("outplans", "", "dial_timeout", 1, "PUT /v1.0/outplans/{id}/dial_info changes it"),
    ("outplans", "", "source", {"type": "tel", "target": "+15559999999"}, "dial_info"),
    ("outdials", "", "campaign_id", "0d7e9a06-6f43-4b27-9b46-9b3f3a1f2c11",
     "PUT /v1.0/outdials/{id}/campaign_id changes it"),
    ("outdials", "/data", "name", "other", "PUT /v1.0/outdials/{id} changes it"),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "suffix", "field", "value", "message"), CHANGED_ECHOES)
async def test_a_changed_field_the_endpoint_does_not_set_is_a_400_naming_it_and_its_setter(
    api_server: ApiServer, kind: str, suffix: str, field: str, value: Any, message: str
) -> None:
    resources = await _resources(api_server)
    async with api_server.client() as client:
        stored = (await client.get(f"/v1.0/{kind}/{resources[kind]['id']}")).json()
        response = await client.put(
            f"/v1.0/{kind}/{stored['id']}{suffix}", json={**stored, "name": stored["name"],
                                                          field: value}
        )  # fmt: skip
        error = error_of(response, 400)
        assert error["message"].startswith(f"{field}: "), error["message"]
        assert message in error["message"]
        assert (await client.get(f"/v1.0/{kind}/{stored['id']}")).json() == stored


async def test_fields_the_resource_does_not_have_stay_a_400(api_server: ApiServer) -> None:
    resources = await _resources(api_server)
    async with api_server.client() as client:
        for kind in ("campaigns", "outplans", "outdials"):
            stored = resources[kind]
            response = await client.put(f"/v1.0/{kind}/{stored['id']}", json={**stored, "x": 1})
            assert "unknown field `x`" in error_of(response, 400)["message"]


async def test_reference_ids_sent_back_as_empty_or_upper_case_count_as_unchanged(
    api_server: ApiServer,
) -> None:
    async with api_server.client() as client:
        outplan = await create(client, "/v1.0/outplans", OUTPLAN_BODY)
        outdial = await create(client, "/v1.0/outdials", {"name": "leads"})
        body = {**outdial, "id": outdial["id"].upper(), "campaign_id": "", "name": "x"}
        response = await client.put(f"/v1.0/outdials/{outdial['id']}", json=body)
        assert response.status_code == 200, response.text
        # An address sent back without its default fields is the same address.
        source = {"type": outplan["source"]["type"], "target": outplan["source"]["target"]}
        response = await client.put(
            f"/v1.0/outplans/{outplan['id']}", json={**outplan, "source": source, "name": "y"}
        )
        assert response.status_code == 200, response.text
