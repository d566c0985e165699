"""Scripted backends for the engine's rule tests: the test decides what each call does.

They implement the real ports (``Telephony``, ``FlowRunner``, ``QueueAdapter``) so the
engine cannot tell them from a PBX; randomized whole-campaign runs use the ``sim``
adapters instead.
"""

from __future__ import annotations

import math

import anyio
from anyio.abc import ObjectSendStream, TaskStatus

from dialerd.ports import (
    Answered,
    Ended,
    HangupReason,
    Origination,
    OriginationError,
    QueueUnavailable,
    TelephonyEvent,
)


class ScriptedCalls:
    """Calls that ring until the test answers or ends them."""

    def __init__(self, name: str = "scripted") -> None:
        self.name = name
        self.originated: list[Origination] = []
        self.live: dict[str, bool] = {}  # campaigncall id -> answered
        self.failures_to_come = 0
        self.cancelled: list[str] = []
        self.hung_up: list[str] = []
        self._events: ObjectSendStream[TelephonyEvent] | None = None

    async def run(
        self, events: ObjectSendStream[TelephonyEvent], *, task_status: TaskStatus[None]
    ) -> None:
        self._events = events
        task_status.started()
        async with events:
            await anyio.sleep(math.inf)

    async def originate(self, origination: Origination) -> None:
        if self.failures_to_come:
            self.failures_to_come -= 1
            raise OriginationError("trunk refused the call")
        self.originated.append(origination)
        self.live[origination.campaigncall_id] = False

    start_flow = originate

    async def cancel(self, campaigncall_id: str) -> None:
        if self.live.get(campaigncall_id) is False:
            self.cancelled.append(campaigncall_id)
            await self.end(campaigncall_id, HangupReason.CANCELLED)

    async def hangup(self, campaigncall_id: str) -> None:
        if self.live.get(campaigncall_id):
            self.hung_up.append(campaigncall_id)
            await self.end(campaigncall_id, HangupReason.NORMAL)

    async def stop_flow(self, campaigncall_id: str) -> None:
        if campaigncall_id in self.live:
            self.cancelled.append(campaigncall_id)
            await self.end(campaigncall_id, HangupReason.CANCELLED)

    async def live_calls(self) -> set[str]:
        return set(self.live)

    def unavailable_reason(self) -> str | None:
        return None

    # -- what the test does ------------------------------------------------------
    async def answer(self, campaigncall_id: str) -> None:
        assert self._events is not None
        self.live[campaigncall_id] = True
        await self._events.send(Answered(campaigncall_id))

    async def end(self, campaigncall_id: str, reason: HangupReason) -> None:
        assert self._events is not None
        self.live.pop(campaigncall_id, None)
        await self._events.send(Ended(campaigncall_id, reason))

    def ringing(self) -> list[str]:
        return [call for call, answered in self.live.items() if not answered]

    def talking(self) -> list[str]:
        return [call for call, answered in self.live.items() if answered]


class FixedQueue:
    """A queue adapter whose available agents the test sets."""

    name = "fixed"

    def __init__(self, available: int = 0) -> None:
        self.available = available
        self.reachable = True
        self.reads = 0
        # Queues whose read fails with an unexpected error (a bug in an adapter, say).
        self.broken: set[str] = set()
        # The queues the backend knows, by name.
        self.known: set[str] = {"sales", "support"}

    async def available_agents(self, queue_name: str) -> int:
        self.reads += 1
        if queue_name in self.broken:
            raise RuntimeError(f"adapter bug on queue {queue_name}")
        if not self.reachable:
            raise QueueUnavailable("queue manager unreachable")
        return self.available

    async def has_queue(self, queue_name: str) -> bool:
        if not self.reachable:
            raise QueueUnavailable("queue manager unreachable")
        return queue_name in self.known
