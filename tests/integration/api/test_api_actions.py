"""A campaign's actions through the API: a 400 naming the action and field for an action
that could not run (nothing stored), a 409 at run for one this host cannot run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from dialerd.core.actions import OPTION_TYPES, Capability
from dialerd.model import Action
from tests.integration.api.api_conftest import (
    ApiServer,
    create,
    error_of,
    runnable_campaign,
    running_api,
)
from tests.integration.conftest import queue_of

MENU = "aaaaaaaa-0000-4000-8000-000000000001"
AGENT = "bbbbbbbb-0000-4000-8000-000000000002"
GOOD = [{"type": "talk", "option": {"text": "Hello"}}, {"type": "hangup"}]
EMAIL = {
    "type": "email_send",
    "option": {"destinations": [{"type": "email", "target": "ann@example.com"}]},
}


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[ApiServer]:
    with running_api(tmp_path) as server:
        yield server


def refused(response: httpx.Response, field: str) -> dict[str, Any]:
    """Assert a 400 whose message and details name ``field`` first."""
    error = error_of(response, 400)
    assert error["reason"] == "INVALID_ACTIONS", error
    assert f"at `{field}`" in error["message"]
    assert error["details"][0]["field"] == field
    return error


async def campaigns_of(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = (await client.get("/v1.0/campaigns")).json()["result"]
    return result


@pytest.mark.parametrize(
    ("actions", "field", "word"),
    [
        (
            [{"type": "beep"}, {"type": "answer"}, {"type": "talk", "option": {"text": ""}}],
            "$.actions[2].option.text",
            "length >= 1",
        ),
        (
            [{"type": "talk", "option": {"text": "hi", "bogus_field": 1}}],
            "$.actions[0].option.bogus_field",
            "unknown field",
        ),
        (
            [{"type": "goto", "option": {"target_id": MENU, "loop_count": 2}}],
            "$.actions[0].option.target_id",
            "no action has id",
        ),
        ([{"type": "beep", "next_id": MENU}], "$.actions[0].next_id", "no action has id"),
        (
            [{"type": "play", "option": {"stream_urls": ["https://m/" + "a" * 2048]}}],
            "$.actions[0].option.stream_urls[0]",
            "length <= 2048",
        ),
        (
            [
                {"type": "variable_set", "id": MENU, "option": {"key": "k", "value": "1"}},
                {"type": "branch", "option": {"variable": "k", "target_ids": {"1": MENU}}},
            ],
            "$.actions[1].option.target_ids.1",
            "loop with no step that waits",
        ),
    ],
)
async def test_creating_a_campaign_with_a_bad_action_is_a_400_naming_it_and_stores_nothing(
    api_server: ApiServer, actions: list[dict[str, Any]], field: str, word: str
) -> None:
    async with api_server.client() as client:
        response = await client.post("/v1.0/campaigns", json={"name": "x", "actions": actions})
        assert word in refused(response, field)["message"]
        assert await campaigns_of(client) == []


async def test_an_unsupported_type_is_a_400_naming_the_type(api_server: ApiServer) -> None:
    async with api_server.client() as client:
        body = {"actions": [{"type": "talk", "option": {"text": "a"}}, {"type": "ai_talk"}]}
        error = error_of(await client.post("/v1.0/campaigns", json=body), 400)
        assert "at `$.actions[1].type`" in error["message"]
        assert await campaigns_of(client) == []


async def test_every_bad_action_is_listed_in_the_details(api_server: ApiServer) -> None:
    async with api_server.client() as client:
        actions = [{"type": "sleep"}, {"type": "beep"}, {"type": "talk", "option": {}}]
        error = refused(
            await client.post("/v1.0/campaigns", json={"actions": actions}),
            "$.actions[0].option.duration",
        )
        assert [detail["index"] for detail in error["details"]] == [0, 2]
        assert error["details"][1]["field"] == "$.actions[2].option.text"


async def test_a_valid_ivr_is_stored_as_sent(api_server: ApiServer) -> None:
    actions = [
        {"type": "talk", "id": MENU, "option": {"text": "Press 1", "digits_handle": "next"}},
        {"type": "digits_receive", "option": {"duration": 5000, "length": 1}},
        {"type": "branch", "option": {"target_ids": {"1": AGENT}}},
        {"type": "goto", "option": {"target_id": MENU, "loop_count": 2}},
        {"type": "dnc_add", "option": {"detail": "opted out"}},
        {"type": "queue_join", "id": AGENT},
    ]
    async with api_server.client() as client:
        campaign = await create(client, "/v1.0/campaigns", {"actions": actions})
        stored = campaign["actions"]
        assert [action["type"] for action in stored] == [action["type"] for action in actions]
        assert stored[0]["option"] == actions[0]["option"]
        assert stored[5]["id"] == AGENT


@pytest.mark.parametrize("part", ["", "/actions"])
async def test_putting_bad_actions_is_a_400_and_changes_nothing(
    api_server: ApiServer, part: str
) -> None:
    async with api_server.client() as client:
        campaign = await create(client, "/v1.0/campaigns", {"name": "x", "actions": GOOD})
        path = f"/v1.0/campaigns/{campaign['id']}"
        bad = [*GOOD, {"type": "sleep", "option": {"duration": "long"}}]
        body: dict[str, Any] = {"actions": bad} if part else {"name": "y", "actions": bad}
        refused(await client.put(path + part, json=body), "$.actions[2].option.duration")
        assert (await client.get(path)).json() == campaign


async def test_a_flow_campaign_with_a_call_only_action_is_a_400(api_server: ApiServer) -> None:
    webhook = {"type": "webhook_send", "option": {"uri": "https://hooks.example.com/x"}}
    async with api_server.client() as client:
        body = {"type": "flow", "actions": [webhook, {"type": "talk", "option": {"text": "hi"}}]}
        error = refused(await client.post("/v1.0/campaigns", json=body), "$.actions[1].type")
        assert "needs a call" in error["message"]
        assert await campaigns_of(client) == []
        flow = await create(client, "/v1.0/campaigns", {"type": "flow", "actions": [webhook]})
        call = await create(client, "/v1.0/campaigns", {"actions": GOOD})
        talk = [{"type": "talk", "option": {"text": "hi"}}]
        flow_path = f"/v1.0/campaigns/{flow['id']}"
        refused(
            await client.put(f"{flow_path}/actions", json={"actions": talk}), "$.actions[0].type"
        )
        # Turning a call campaign with prompts into a flow campaign names its prompts.
        call_path = f"/v1.0/campaigns/{call['id']}"
        refused(await client.put(call_path, json={"type": "flow"}), "$.actions[0].type")
        assert (await client.get(flow_path)).json() == flow
        assert (await client.get(call_path)).json() == call


async def test_running_with_an_action_the_host_cannot_run_is_a_409_naming_it(
    api_server: ApiServer,
) -> None:
    async with api_server.client() as client:
        campaign = await runnable_campaign(client, actions=[GOOD[0], EMAIL])
        path = f"/v1.0/campaigns/{campaign['id']}"
        error = error_of(await client.put(f"{path}/status", json={"status": "run"}), 409)
        assert "action 1: 'email_send' needs email" in error["message"]
        assert "$.actions[1].type" in error["message"]
        assert (await client.get(path)).json()["status"] == "stop"
        # A host configured for email runs it.
        api_server.control.capabilities = api_server.control.capabilities | {Capability.EMAIL}
        running = await client.put(f"{path}/status", json={"status": "run"})
        assert running.status_code == 200, running.text
        assert running.json()["status"] == "run"


async def test_message_send_is_a_409_at_run_on_a_host_without_messaging(
    api_server: ApiServer,
) -> None:
    message = {
        "type": "message_send",
        "option": {"destinations": [{"type": "tel", "target": "+15551230001"}], "text": "hi"},
    }
    async with api_server.client() as client:
        campaign = await runnable_campaign(client, type="flow", actions=[message])
        path = f"/v1.0/campaigns/{campaign['id']}"
        error = error_of(await client.put(path, json={"status": "run"}), 409)
        assert "'message_send' needs message" in error["message"]


async def test_an_edit_of_a_running_campaign_adding_an_action_it_cannot_run_is_a_409(
    api_server: ApiServer,
) -> None:
    async with api_server.client() as client:
        campaign = await runnable_campaign(client, actions=GOOD)
        path = f"/v1.0/campaigns/{campaign['id']}"
        running = (await client.put(f"{path}/status", json={"status": "run"})).json()
        response = await client.put(f"{path}/actions", json={"actions": [*GOOD, EMAIL]})
        assert "needs email" in error_of(response, 409)["message"]
        assert (await client.get(path)).json() == running


async def test_queue_join_without_a_queue_is_a_409_at_run(api_server: ApiServer) -> None:
    async with api_server.client() as client:
        campaign = await runnable_campaign(client, actions=[{"type": "queue_join"}])
        path = f"/v1.0/campaigns/{campaign['id']}"
        error = error_of(await client.put(f"{path}/status", json={"status": "run"}), 409)
        assert "queue_join has no queue" in error["message"]
        queue_id = queue_of(campaign["customer_id"])
        response = await client.put(f"{path}/resource_info", json={"queue_id": queue_id})
        assert response.status_code == 200, response.text
        assert (await client.put(f"{path}/status", json={"status": "run"})).status_code == 200


async def test_actions_stored_before_the_check_are_named_at_run(api_server: ApiServer) -> None:
    async with api_server.client() as client:
        campaign = await runnable_campaign(client)
    stored = api_server.call(api_server.store.get_campaign, None, campaign["id"])
    legacy = msgspec.structs.replace(
        stored, actions=[Action(type="talk", option={"bogus": 1}), Action(type="ai_talk")]
    )
    api_server.call(api_server.store.update_campaign, legacy)
    async with api_server.client() as client:
        path = f"/v1.0/campaigns/{campaign['id']}"
        error = error_of(await client.put(f"{path}/status", json={"status": "run"}), 409)
        assert "$.actions[0].option.bogus" in error["message"]
        assert "$.actions[1].type" in error["message"]


async def test_a_talk_in_a_language_without_a_voice_is_a_400(api_server: ApiServer) -> None:
    api_server.control.has_voice = lambda language, gender: language.startswith("en")
    async with api_server.client() as client:
        body = {"actions": [{"type": "talk", "option": {"text": "Hallo", "language": "de-DE"}}]}
        error = refused(
            await client.post("/v1.0/campaigns", json=body), "$.actions[0].option.language"
        )
        assert "de-DE" in error["message"]


async def test_the_openapi_document_shows_each_actions_options(api_server: ApiServer) -> None:
    async with api_server.client() as client:
        document = (await client.get("/v1.0/openapi.json")).json()
    schemas = document["components"]["schemas"]
    assert set(schemas["ActionType"]["enum"]) == set(OPTION_TYPES)
    for kind, struct in OPTION_TYPES.items():
        assert schemas[struct.__name__]["additionalProperties"] is False
        assert (
            f"`{kind}`: #/components/schemas/{struct.__name__}"
            in (schemas["ActionBody"]["properties"]["option"]["description"])
        )
    talk = schemas["TalkOption"]
    assert talk["required"] == ["text"]
    assert set(talk["properties"]) == {"text", "language", "gender", "digits_handle", "async"}
    assert schemas["GotoOption"]["properties"]["loop_count"]["maximum"] == 100
