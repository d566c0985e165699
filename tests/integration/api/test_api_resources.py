"""Every resource endpoint of /v1.0 over real HTTP, each response checked against the
reference component schemas."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from dialerd.api.app import set_api_config
from dialerd.model import NIL_UUID, NOT_DELETED
from tests.integration.api.api_conftest import (
    CUSTOMER_A,
    OUTPLAN_BODY,
    TARGET_BODY,
    ApiServer,
    api_config,
    conforming_page,
    conforms,
    create,
    error_of,
    running_api,
)


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[ApiServer]:
    with running_api(tmp_path) as server:
        yield server


async def test_outplan_create_get_list_update_and_delete(api_server: ApiServer) -> None:
    async with api_server.client() as client:
        outplan = conforms("outplan", await create(client, "/v1.0/outplans", OUTPLAN_BODY))
        assert outplan["customer_id"] == CUSTOMER_A
        assert outplan["source"] == {
            "type": "tel", "target": "+15559876543", "target_name": "", "name": "", "detail": ""
        }  # fmt: skip
        assert (outplan["max_try_count_0"], outplan["max_try_count_1"]) == (3, 2)
        assert outplan["tm_update"] is None
        assert outplan["tm_delete"] == NOT_DELETED
        path = f"/v1.0/outplans/{outplan['id']}"

        assert conforms("outplan", (await client.get(path)).json()) == outplan
        assert conforming_page("outplan", (await client.get("/v1.0/outplans")).json()) == [outplan]

        renamed = conforms("outplan", (await client.put(path, json={"name": "two"})).json())
        assert (renamed["name"], renamed["detail"]) == ("two", "retry every minute")
        assert renamed["tm_update"] is not None

        dial_info = {"try_interval": 5000, "max_try_count_4": 1, "source": {"target": "+1555"}}
        changed = conforms(
            "outplan", (await client.put(f"{path}/dial_info", json=dial_info)).json()
        )
        assert (changed["try_interval"], changed["max_try_count_4"]) == (5000, 1)
        assert (changed["dial_timeout"], changed["max_try_count_0"]) == (30000, 3)
        assert changed["source"]["target"] == "+1555"
        assert changed["name"] == "two"

        deleted = conforms("outplan", (await client.delete(path)).json())
        assert deleted["tm_delete"] != NOT_DELETED
        error_of(await client.get(path), 404)
        assert (await client.get("/v1.0/outplans")).json()["result"] == []


async def test_an_outplan_retries_by_outcome_and_refuses_an_unknown_outcome(
    api_server: ApiServer,
) -> None:
    by_outcome = {"busy": {"try_interval": 5000}, "machine": {"max_tries": 1}}
    async with api_server.client() as client:
        plain = await create(client, "/v1.0/outplans", OUTPLAN_BODY)
        assert "retry_by_outcome" not in plain  # the reference's shape when unused
        body = {**OUTPLAN_BODY, "retry_by_outcome": by_outcome}
        outplan = await create(client, "/v1.0/outplans", body)
        assert outplan["retry_by_outcome"] == by_outcome
        path = f"/v1.0/outplans/{outplan['id']}"
        changed = (
            await client.put(
                f"{path}/dial_info", json={"retry_by_outcome": {"no_answer": {"try_interval": 0}}}
            )
        ).json()
        assert changed["retry_by_outcome"] == {"no_answer": {"try_interval": 0}}

        wrong = {**OUTPLAN_BODY, "retry_by_outcome": {"bussy": {"try_interval": 5000}}}
        message = error_of(await client.post("/v1.0/outplans", json=wrong), 400)["message"]
        assert "bussy" in message
        assert "retry_by_outcome" in message
        negative = {"retry_by_outcome": {"busy": {"try_interval": -1}}}
        message = error_of(await client.put(f"{path}/dial_info", json=negative), 400)["message"]
        assert "retry_by_outcome" in message
        assert (await client.get(path)).json() == changed


async def test_outdial_create_get_list_update_and_delete(api_server: ApiServer) -> None:
    async with api_server.client() as client:
        outdial = conforms(
            "outdial", await create(client, "/v1.0/outdials", {"name": "leads", "data": "x"})
        )
        assert outdial["campaign_id"] == NIL_UUID
        assert (outdial["tm_update"], outdial["tm_delete"]) == (None, NOT_DELETED)
        path = f"/v1.0/outdials/{outdial['id']}"
        assert conforms("outdial", (await client.get(path)).json()) == outdial
        assert conforming_page("outdial", (await client.get("/v1.0/outdials")).json()) == [outdial]

        renamed = conforms("outdial", (await client.put(path, json={"detail": "spring"})).json())
        assert (renamed["name"], renamed["detail"], renamed["data"]) == ("leads", "spring", "x")
        data = conforms("outdial", (await client.put(f"{path}/data", json={"data": "y"})).json())
        assert data["data"] == "y"

        campaign = await create(client, "/v1.0/campaigns", {"name": "c"})
        linked = await client.put(f"{path}/campaign_id", json={"campaign_id": campaign["id"]})
        assert conforms("outdial", linked.json())["campaign_id"] == campaign["id"]
        unlinked = await client.put(f"{path}/campaign_id", json={"campaign_id": None})
        assert conforms("outdial", unlinked.json())["campaign_id"] == NIL_UUID

        conforms("outdial", (await client.delete(path)).json())
        error_of(await client.get(path), 404)


async def test_outdial_accepts_a_nil_campaign_id(api_server: ApiServer) -> None:
    async with api_server.client() as client:
        outdial = await create(client, "/v1.0/outdials", {"campaign_id": NIL_UUID})
        assert outdial["campaign_id"] == NIL_UUID


async def test_target_create_get_list_and_delete(api_server: ApiServer) -> None:
    async with api_server.client() as client:
        outdial = await create(client, "/v1.0/outdials", {"name": "leads"})
        targets = f"/v1.0/outdials/{outdial['id']}/targets"
        target = conforms("target", await create(client, targets, TARGET_BODY))
        assert target["status"] == "idle"
        assert target["destination_0"]["target"] == "+15551230001"
        assert [target[f"destination_{n}"] for n in range(1, 5)] == [None] * 4
        assert [target[f"try_count_{n}"] for n in range(5)] == [0] * 5
        assert (target["tm_update"], target["tm_delete"]) == (None, None)

        path = f"{targets}/{target['id']}"
        assert conforms("target", (await client.get(path)).json()) == target
        assert conforming_page("target", (await client.get(targets)).json()) == [target]
        deleted = conforms("target", (await client.delete(path)).json())
        assert deleted["tm_delete"] is not None
        error_of(await client.get(path), 404)
        assert (await client.get(targets)).json()["result"] == []


async def test_campaign_create_with_defaults_and_actions(api_server: ApiServer) -> None:
    async with api_server.client() as client:
        body = {
            "name": "spring",
            "actions": [{"type": "talk", "option": {"text": "hello", "language": "en-US"}}],
        }
        campaign = conforms("campaign", await create(client, "/v1.0/campaigns", body))
        assert campaign["status"] == "stop"
        assert (campaign["type"], campaign["end_handle"]) == ("call", "stop")
        assert campaign["service_level"] == 100
        assert campaign["actions"] == [
            {
                "type": "talk",
                "id": NIL_UUID,
                "next_id": NIL_UUID,
                "option": {"text": "hello", "language": "en-US"},
            }
        ]
        for field in ("outplan_id", "outdial_id", "queue_id", "next_campaign_id"):
            assert campaign[field] == NIL_UUID
        assert (campaign["tm_update"], campaign["tm_delete"]) == (None, NOT_DELETED)
        path = f"/v1.0/campaigns/{campaign['id']}"
        assert conforms("campaign", (await client.get(path)).json()) == campaign
        listed = conforming_page("campaign", (await client.get("/v1.0/campaigns")).json())
        assert listed == [campaign]


async def test_campaign_put_changes_only_the_fields_present(api_server: ApiServer) -> None:
    async with api_server.client() as client:
        outplan = await create(client, "/v1.0/outplans", OUTPLAN_BODY)
        campaign = await create(
            client,
            "/v1.0/campaigns",
            {
                "name": "spring",
                "detail": "leads",
                "service_level": 150,
                "outplan_id": outplan["id"],
            },
        )
        path = f"/v1.0/campaigns/{campaign['id']}"
        changed = conforms("campaign", (await client.put(path, json={"name": "summer"})).json())
        assert changed["name"] == "summer"
        assert (changed["detail"], changed["service_level"]) == ("leads", 150)
        assert changed["outplan_id"] == outplan["id"]
        assert changed["tm_update"] is not None
        assert (await client.get(path)).json() == changed


async def test_campaign_sub_resource_puts(api_server: ApiServer) -> None:
    async with api_server.client() as client:
        outplan = await create(client, "/v1.0/outplans", OUTPLAN_BODY)
        outdial = await create(client, "/v1.0/outdials", {})
        queue_id = "99bf739a-932f-433c-b1bf-103d33d7e9bb"
        campaign = await create(client, "/v1.0/campaigns", {"name": "spring"})
        following = await create(client, "/v1.0/campaigns", {"name": "summer"})
        path = f"/v1.0/campaigns/{campaign['id']}"

        async def put(part: str, body: dict[str, Any]) -> dict[str, Any]:
            response = await client.put(f"{path}/{part}", json=body)
            assert response.status_code == 200, response.text
            return conforms("campaign", response.json())

        assert (await put("service_level", {"service_level": 200}))["service_level"] == 200
        actions = [{"type": "hangup"}]
        assert (await put("actions", {"actions": actions}))["actions"][0]["type"] == "hangup"
        info = await put(
            "resource_info",
            {"outplan_id": outplan["id"], "outdial_id": outdial["id"], "queue_id": queue_id},
        )
        assert (info["outplan_id"], info["outdial_id"]) == (outplan["id"], outdial["id"])
        assert (info["queue_id"], info["next_campaign_id"]) == (queue_id, NIL_UUID)
        chained = await put("next_campaign_id", {"next_campaign_id": following["id"]})
        assert chained["next_campaign_id"] == following["id"]
        assert chained["outplan_id"] == outplan["id"]
        assert chained["service_level"] == 200


async def test_campaign_delete_when_stopped(api_server: ApiServer) -> None:
    async with api_server.client() as client:
        campaign = await create(client, "/v1.0/campaigns", {"name": "spring"})
        path = f"/v1.0/campaigns/{campaign['id']}"
        deleted = conforms("campaign", (await client.delete(path)).json())
        assert deleted["tm_delete"] != NOT_DELETED
        error_of(await client.get(path), 404)
        error_of(await client.delete(path), 404)
        assert (await client.get("/v1.0/campaigns")).json()["result"] == []


async def test_lists_page_newest_first_without_skips_or_repeats(api_server: ApiServer) -> None:
    async with api_server.client() as client:
        created = [
            (await create(client, "/v1.0/outdials", {"name": f"list {n}"}))["id"] for n in range(7)
        ]
        seen: list[str] = []
        token = ""
        for _ in range(10):
            params = {"page_size": "3", **({"page_token": token} if token else {})}
            page = (await client.get("/v1.0/outdials", params=params)).json()
            seen += [item["id"] for item in conforming_page("outdial", page)]
            token = page["next_page_token"]
            if not token:
                break
        assert seen == created[::-1]


async def test_accesskey_cookie_authenticates_as_voipbin_clients_send_it(
    api_server: ApiServer,
) -> None:
    async with api_server.client(token=None) as client:
        response = await client.get(
            "/v1.0/campaigns", headers={"cookie": "accesskey=token-of-customer-a"}
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"result": [], "next_page_token": ""}
        wrong = await client.get("/v1.0/campaigns", headers={"cookie": "accesskey=guessed-token"})
        assert error_of(wrong, 401)["reason"] == "TOKEN_INVALID"


@pytest.mark.parametrize("name", ["token", "accesskey"])
async def test_token_in_the_query_is_refused_by_default_saying_how_to_send_it(
    api_server: ApiServer, name: str
) -> None:
    async with api_server.client(token=None) as client:
        response = await client.get("/v1.0/campaigns", params={name: "token-of-customer-a"})
        error = error_of(response, 401)
        assert error["reason"] == "TOKEN_IN_QUERY"
        assert f"?{name}=" in error["message"]
        assert "Authorization: Bearer" in error["message"]
        assert "accesskey=<token>" in error["message"]
        assert "query_token" in error["message"]


@pytest.mark.parametrize("name", ["token", "accesskey"])
async def test_query_token_authenticates_like_the_reference_api_when_enabled(
    api_server: ApiServer, name: str
) -> None:
    config = msgspec.structs.replace(api_config(), query_token=True)
    api_server.call(set_api_config, api_server.app, config)
    async with api_server.client(token=None) as client:
        response = await client.get("/v1.0/campaigns", params={name: "token-of-customer-a"})
        assert response.status_code == 200, response.text
        assert response.json() == {"result": [], "next_page_token": ""}
        assert len(response.headers["x-request-id"]) == 36
        wrong = await client.get("/v1.0/campaigns", params={name: "guessed-token"})
        assert error_of(wrong, 401)["reason"] == "TOKEN_INVALID"
