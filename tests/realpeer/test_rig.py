"""Smoke tests of the rig itself, with raw ARI (httpx + httpx-ws) and raw AMI."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from httpx_ws import AsyncWebSocketSession, aconnect_ws

from tests.realpeer.rig import Rig

pytestmark = pytest.mark.realpeer


class AriEvents:
    """The Stasis app's event stream, read on demand."""

    def __init__(self, ws: AsyncWebSocketSession) -> None:
        self._ws = ws
        self.seen: list[dict[str, Any]] = []

    async def wait_for(self, type_: str, channel_id: str, seconds: float = 10.0) -> dict[str, Any]:
        """The next event of this type about this channel (others are kept in seen)."""
        with anyio.fail_after(seconds):
            while True:
                event = json.loads(await self._ws.receive_text())
                self.seen.append(event)
                if event.get("type") == type_ and _channel_id(event) == channel_id:
                    return event


def _channel_id(event: dict[str, Any]) -> str | None:
    channel = event.get("channel")
    return channel.get("id") if isinstance(channel, dict) else None


@asynccontextmanager
async def ari(rig: Rig) -> AsyncIterator[tuple[httpx.AsyncClient, AriEvents]]:
    async with httpx.AsyncClient(base_url=rig.ari_url, auth=rig.ari_auth, timeout=10) as http:
        params = {"app": rig.ari_app}
        async with aconnect_ws(f"{rig.ari_url}/ari/events", http, params=params) as ws:
            yield http, AriEvents(ws)


async def originate(http: httpx.AsyncClient, rig: Rig, number: str, call_id: str) -> None:
    response = await http.post(
        "/ari/channels",
        params={
            "endpoint": rig.endpoint(number),
            "app": rig.ari_app,
            "channelId": call_id,
            "timeout": 10,
        },
        json={"variables": {"DIALERD_ID": call_id, "PJSIP_HEADER(add,X-Dialerd-Id)": call_id}},
    )
    assert response.status_code == 200, response.text


def new_id() -> str:
    return f"rig-{uuid.uuid4()}"


async def test_answered_call_reaches_stasis_and_ledger_carries_our_id(rig: Rig) -> None:
    mark = rig.ledger_mark()
    call_id = new_id()
    async with ari(rig) as (http, events):
        await originate(http, rig, "answer-0", call_id)
        start = await events.wait_for("StasisStart", call_id)
        assert start["channel"]["state"] == "Up"
        response = await http.delete(f"/ari/channels/{call_id}")
        assert response.status_code == 204
        destroyed = await events.wait_for("ChannelDestroyed", call_id)
        assert destroyed["cause"] == 16

    entries = rig.wait_ledger(mark, lambda es: any(e.event == "caller-bye" for e in es))
    ours = [e for e in entries if e.dialerd_id == call_id]
    assert [e.event for e in ours] == ["invite", "answered", "caller-bye"]
    assert ours[0].number == "answer-0"
    assert len({e.call_id for e in ours}) == 1


async def test_busy_callee_ends_with_cause_17(rig: Rig) -> None:
    mark = rig.ledger_mark()
    call_id = new_id()
    async with ari(rig) as (http, events):
        await originate(http, rig, "busy-0", call_id)
        destroyed = await events.wait_for("ChannelDestroyed", call_id)
    assert destroyed["cause"] == 17
    dials = [e for e in events.seen if e["type"] == "Dial" and e["peer"]["id"] == call_id]
    assert dials[-1]["dialstatus"] == "BUSY"
    entries = rig.wait_ledger(mark, lambda es: any(e.event == "busy" for e in es))
    assert [e.event for e in entries if e.dialerd_id == call_id] == ["invite", "busy"]


def ami_action(rig: Rig, action: str, fields: dict[str, str], until: str) -> list[dict[str, str]]:
    """Send one AMI action; collect its response and events up to the event named until."""
    action_id = uuid.uuid4().hex
    lines = [f"Action: {action}", f"ActionID: {action_id}"]
    lines += [f"{key}: {value}" for key, value in fields.items()]
    sock = rig.ami_login()
    try:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        buf = b""
        messages: list[dict[str, str]] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            assert chunk, "AMI closed the connection"
            buf += chunk
            while b"\r\n\r\n" in buf:
                block, buf = buf.split(b"\r\n\r\n", 1)
                message = dict(
                    line.split(": ", 1) for line in block.decode().split("\r\n") if ": " in line
                )
                if message.get("ActionID") != action_id:
                    continue
                messages.append(message)
                if message.get("Event") == until or message.get("Response") == "Error":
                    return messages
        raise AssertionError(f"no {until} from AMI: {messages}")
    finally:
        sock.close()


def test_ami_queue_status_lists_the_sales_members(fresh_rig: Rig) -> None:
    messages = ami_action(fresh_rig, "QueueStatus", {"Queue": "sales"}, "QueueStatusComplete")
    assert messages[0]["Response"] == "Success"
    members = {m["Name"]: m for m in messages if m.get("Event") == "QueueMember"}
    assert set(members) == {"agent1", "agent2"}
    assert members["agent1"]["Location"] == "Local/agent1@dialerd-rig-agents"
    assert members["agent1"]["StateInterface"] == "Custom:agent1"
    assert all(m["Paused"] == "0" and m["Status"] == "1" for m in members.values())


def test_pause_and_agent_state_show_in_queue_status(fresh_rig: Rig) -> None:
    fresh_rig.pause("sales", "agent1")
    fresh_rig.set_agent_state("agent2", "UNAVAILABLE")
    messages = ami_action(fresh_rig, "QueueStatus", {"Queue": "sales"}, "QueueStatusComplete")
    members = {m["Name"]: m for m in messages if m.get("Event") == "QueueMember"}
    assert members["agent1"]["Paused"] == "1"
    assert members["agent2"]["Status"] == "5"  # AST_DEVICE_UNAVAILABLE
