"""Drives dialerd's Asterisk adapters directly in real-peer tests: events collected by id."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.abc import ObjectReceiveStream

from dialerd.adapters.asterisk.ari import AriTelephony
from dialerd.adapters.asterisk.ari_http import AriHttp, connect_events
from dialerd.model import NIL_UUID, Action, Address
from dialerd.ports import AgentConnected, Answered, Ended, Origination, TelephonyEvent
from tests.realpeer.rig import Rig

# An app of our own: another process's tests on the same rig use "dialerd", and Asterisk
# gives an app's events to one websocket only.
TEST_APP = f"dialerd-test-{os.getpid()}"


def telephony(rig: Rig, **overrides: Any) -> AriTelephony:
    settings: dict[str, Any] = {
        "url": rig.ari_url,
        "username": rig.ari_user,
        "password": rig.ari_password,
        "app": TEST_APP,
        "endpoint": rig.endpoint_template,
        "queue_timeout": 3,
        "connect_timeout": 2.0,
        "request_timeout": 2.0,
    }
    settings.update(overrides)
    return AriTelephony(**settings)


def origination(
    number: str,
    *,
    queue: str = "",
    dial_timeout_ms: int = 10_000,
    actions: list[Action] | None = None,
    customer_id: str | None = None,
) -> Origination:
    """An attempt to ``number``; ``queue``: the Asterisk queue its campaign names."""
    campaigncall_id = str(uuid.uuid4())
    campaign_id = str(uuid.uuid4())
    return Origination(
        campaigncall_id=campaigncall_id,
        campaign_id=campaign_id,
        customer_id=customer_id or str(uuid.uuid4()),
        reference_id=str(uuid.uuid4()),
        queue_id=str(uuid.uuid4()) if queue else NIL_UUID,
        queue_name=queue,
        source=Address(target="+15550100000", target_name="dialerd test"),
        destination=Address(target=number),
        actions=actions or [],
        dial_timeout_ms=dial_timeout_ms,
        variables={
            "campaign.id": campaign_id,
            "campaigncall.id": campaigncall_id,
            "target.destination": number,
        },
    )


class Harness:
    """A running ``AriTelephony`` and the events it sent, waited for with timeouts."""

    def __init__(self, backend: AriTelephony, events: ObjectReceiveStream[TelephonyEvent]) -> None:
        self.backend = backend
        self._events = events
        self.seen: list[TelephonyEvent] = []
        # Seconds each answered call waited for an agent (``AgentConnected``), by id.
        self.agent_waits: dict[str, float] = {}

    async def next_event(self, campaigncall_id: str, within: float = 10.0) -> TelephonyEvent:
        """The next event of this call not returned before."""
        with anyio.fail_after(within):
            while True:
                for index, event in enumerate(self.seen):
                    if event.campaigncall_id == campaigncall_id:
                        return self.seen.pop(index)
                self.seen.append(await self._events.receive())

    async def answered(self, campaigncall_id: str, within: float = 10.0) -> None:
        event = await self.next_event(campaigncall_id, within)
        assert event == Answered(campaigncall_id)

    async def ended(self, campaigncall_id: str, within: float = 10.0) -> Ended:
        """The call's end; an agent connection before it is kept in ``agent_waits``."""
        event = await self.next_event(campaigncall_id, within)
        if isinstance(event, AgentConnected):
            self.agent_waits[campaigncall_id] = event.wait_seconds
            event = await self.next_event(campaigncall_id, within)
        assert isinstance(event, Ended), event
        return event

    async def no_more_events(self, campaigncall_id: str, wait: float = 0.3) -> None:
        with anyio.move_on_after(wait):
            event = await self.next_event(campaigncall_id, wait + 1)
            raise AssertionError(f"unexpected event {event}")


@asynccontextmanager
async def running(backend: AriTelephony) -> AsyncIterator[Harness]:
    """The backend connected to ARI; on leaving, stopped and its websocket session ended
    in Asterisk, so that the next start (same app) is not unregistered by the old one."""
    send, receive = anyio.create_memory_object_stream[TelephonyEvent](1000)
    async with receive, anyio.create_task_group() as task_group:
        await task_group.start(backend.run, send)
        yield Harness(backend, receive)
        task_group.cancel_scope.cancel()
    await anyio.to_thread.run_sync(Rig().wait_connections_ended, backend.app)


async def eventually(condition: Any, within: float = 5.0, what: str = "condition") -> None:
    """Wait until ``condition()`` is true: it reads state (metrics) that no event signals."""
    with anyio.fail_after(within):
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.02)


async def take_registration(rig: Rig, app: str) -> None:
    """A second websocket session for ``app``, opened and ended: it takes the application's
    registration from the adapter's session, and its end unregisters the application in
    Asterisk, while the adapter's websocket stays up (what an older session of the same
    name ending late does)."""
    http = AriHttp(
        f"{rig.ari_url}/ari",
        rig.ari_user,
        rig.ari_password,
        size=1,
        connect_timeout=2.0,
        request_timeout=2.0,
    )
    try:
        session = await connect_events(
            http, "/events", {"app": app, "subscribeAll": "false"},
            ping_interval=10.0, ping_timeout=10.0,
        )  # fmt: skip
        await session.aclose()
    finally:
        await http.aclose()
