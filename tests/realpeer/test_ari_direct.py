"""Issue 25: a campaign without actions dials straight into the dialplan (one request a
call). Its answer and end are read from the events of the trunk's endpoint, and an
answered call reaches the dialplan even when no dialerd listens at that moment."""

from __future__ import annotations

import anyio
import httpx
import pytest

from dialerd.ports import HangupReason
from tests.realpeer.harness import origination, running, telephony
from tests.realpeer.rig import LedgerEntry, Rig

pytestmark = pytest.mark.realpeer


async def _variable(client: httpx.AsyncClient, rig: Rig, channel_id: str, name: str) -> str:
    response = await client.get(
        f"{rig.ari_url}/ari/channels/{channel_id}/variable", params={"variable": name}
    )
    return str(response.json().get("value", "")) if response.status_code == 200 else ""


async def _outcome(client: httpx.AsyncClient, rig: Rig, channel_id: str) -> str:
    """DIALERD_OUTCOME once the dialplan has set it (the channel polled, 10 s at most)."""
    with anyio.fail_after(10):
        for _ in range(1000):
            value = await _variable(client, rig, channel_id, "DIALERD_OUTCOME")
            if value:
                return value
            await anyio.sleep(0.05)
    return ""


def _invites(rig: Rig, campaigncall_id: str) -> list[LedgerEntry]:
    return [e for e in rig.ledger() if e.dialerd_id == campaigncall_id and e.event == "invite"]


async def test_a_call_answered_while_no_dialerd_listens_still_reaches_the_dialplan(
    rig: Rig,
) -> None:
    call = origination("answer-1500")  # agentless: dialerd-agentless, then hung up
    async with running(telephony(rig)) as calls:
        await calls.backend.originate(call)
    # dialerd's event stream is closed while the call still rings. Through Stasis, the
    # answered call would find no application and be hung up at once (a silent call).
    async with httpx.AsyncClient(auth=rig.ari_auth, timeout=5) as client:
        outcome = await _outcome(client, rig, call.campaigncall_id)
    assert outcome == "agentless"
    # A new process follows it to its end, which the dialplan makes (Wait, Hangup).
    async with running(telephony(rig)) as after:
        assert call.campaigncall_id in await after.backend.live_calls()
        await after.answered(call.campaigncall_id)
        assert (await after.ended(call.campaigncall_id)).reason == HangupReason.NORMAL
    assert len(_invites(rig, call.campaigncall_id)) == 1


async def test_a_direct_call_still_ringing_at_a_restart_is_followed_to_its_answer(
    rig: Rig,
) -> None:
    call = origination("answer-2000")
    async with running(telephony(rig)) as before:
        await before.backend.originate(call)
    async with running(telephony(rig)) as after:
        assert call.campaigncall_id in await after.backend.live_calls()
        await after.answered(call.campaigncall_id, within=10)
        await after.backend.hangup(call.campaigncall_id)
        assert (await after.ended(call.campaigncall_id)).reason == HangupReason.NORMAL
    assert len(_invites(rig, call.campaigncall_id)) == 1


async def test_a_dial_string_without_a_trunk_goes_through_the_application(rig: Rig) -> None:
    # As with a dial string that names no endpoint (Local/..., PJSIP/{number}): no
    # subscription; the answered call enters Stasis and is handed on with a continue.
    backend = telephony(rig)
    backend._trunk = None
    async with (
        running(backend) as calls,
        httpx.AsyncClient(auth=rig.ari_auth, timeout=5) as client,
    ):
        call = origination("answer-0")
        await backend.originate(call)
        await calls.answered(call.campaigncall_id)
        assert await _outcome(client, rig, call.campaigncall_id) == "agentless"
        assert await _variable(client, rig, call.campaigncall_id, "DIALERD_DIRECT") == ""
        assert (await calls.ended(call.campaigncall_id)).reason == HangupReason.NORMAL


async def _endpoints_of(client: httpx.AsyncClient, rig: Rig, app: str) -> list[str]:
    response = await client.get(f"{rig.ari_url}/ari/applications/{app}")
    if response.status_code == 404:
        return []
    return list(response.json().get("endpoint_ids", []))


async def test_a_stopped_dialerd_leaves_no_subscription_behind(rig: Rig) -> None:
    # Left subscribed, Asterisk would build every event of the trunk for an application
    # no one listens to, for as long as it runs.
    backend = telephony(rig)
    async with httpx.AsyncClient(auth=rig.ari_auth, timeout=5) as client:
        for _ in range(2):  # a second start finds nothing left, and subscribes once
            async with running(backend):
                assert await _endpoints_of(client, rig, backend.app) == ["PJSIP/callee"]
            assert await _endpoints_of(client, rig, backend.app) == []
