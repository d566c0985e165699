"""Issue 26: on a shared Asterisk, dialerd follows only the channels its application
placed under the ids it gave them, and sends no action JSON into channel variables."""

from __future__ import annotations

import uuid

import anyio
import httpx
import pytest
from httpx_ws import aconnect_ws

from dialerd.model import Action
from dialerd.ports import HangupReason
from tests.realpeer.harness import origination, running, telephony
from tests.realpeer.rig import Rig

pytestmark = pytest.mark.realpeer


async def _channel(client: httpx.AsyncClient, rig: Rig, channel_id: str) -> dict[str, object]:
    response = await client.get(f"{rig.ari_url}/ari/channels/{channel_id}")
    assert response.status_code == 200, response.text
    result: dict[str, object] = response.json()
    return result


async def test_a_uuid_named_channel_of_another_application_is_left_alone(rig: Rig) -> None:
    stranger_app = f"someone-else-{uuid.uuid4().hex[:8]}"
    stranger = str(uuid.uuid4())  # named like a campaigncall, placed by someone else
    async with (
        httpx.AsyncClient(auth=rig.ari_auth, timeout=5) as client,
        aconnect_ws(f"{rig.ari_url}/ari/events", client, params={"app": stranger_app}) as events,
    ):
        placed = await client.post(
            f"{rig.ari_url}/ari/channels",
            params={"endpoint": rig.endpoint("answer-0"), "app": stranger_app,
                    "channelId": stranger},
        )  # fmt: skip
        assert placed.status_code == 200, placed.text
        with anyio.fail_after(10):
            while '"StasisStart"' not in await events.receive_text():
                pass
        try:
            async with running(telephony(rig)) as calls:
                assert stranger not in await calls.backend.live_calls()
                # Still in the other application's hands: not continued into our dialplan.
                channel = await _channel(client, rig, stranger)
                assert channel["dialplan"]["app_name"] == "Stasis"  # type: ignore[index]
                assert channel["state"] == "Up"
        finally:
            await client.delete(f"{rig.ari_url}/ari/channels/{stranger}")


async def test_no_action_json_goes_into_a_channel_variable(rig: Rig) -> None:
    big = "x" * 4000
    actions = [Action(type="talk", option={"text": big}), Action(type="hangup")]
    async with (
        running(telephony(rig)) as calls,
        httpx.AsyncClient(auth=rig.ari_auth, timeout=5) as client,
    ):
        call = origination("noanswer-0", actions=actions)
        await calls.backend.originate(call)
        response = await client.get(
            f"{rig.ari_url}/ari/channels/{call.campaigncall_id}/variable",
            params={"variable": "DIALERD_ACTIONS"},
        )
        value = response.json().get("value", "") if response.status_code == 200 else ""
        assert value == ""
        app = await client.get(
            f"{rig.ari_url}/ari/channels/{call.campaigncall_id}/variable",
            params={"variable": "DIALERD_APP"},
        )
        assert app.json()["value"] == calls.backend.app
        await calls.backend.cancel(call.campaigncall_id)
        assert (await calls.ended(call.campaigncall_id)).reason == HangupReason.CANCELLED
