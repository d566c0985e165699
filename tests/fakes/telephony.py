"""Scripted backends for the engine's rule tests: the test decides what each call does.

They implement the real ports (``Telephony``, ``FlowRunner``, ``QueueAdapter``) so the
engine cannot tell them from a PBX; randomized whole-campaign runs use the ``sim``
adapters instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio
from anyio.abc import ObjectSendStream, TaskGroup, TaskStatus

from dialerd.ports import (
    Answered,
    Clock,
    Ended,
    HangupReason,
    Origination,
    OriginationError,
    QueueUnavailable,
    TelephonyEvent,
)


class ScriptedCalls:
    """Calls that ring until the test answers or ends them.

    Like a real trunk it can take time: ``place_time`` seconds (on ``clock``) before an
    originate returns, ``release_time`` before a cancel or hang-up takes effect; it can
    lose the next ``lose_releases`` cancel/hang-up requests, and fail the next
    ``failing_releases`` with an error.
    """

    def __init__(self, name: str = "scripted", clock: Clock | None = None) -> None:
        self.name = name
        self.clock = clock
        self.originated: list[Origination] = []
        self.live: dict[str, bool] = {}  # campaigncall id -> answered
        self.failures_to_come = 0
        self.cancelled: list[str] = []
        self.hung_up: list[str] = []
        # Every cancel or hang-up asked for, acted on or not.
        self.release_requests: list[str] = []
        self.place_time = 0.0
        self.release_time = 0.0
        self.lose_releases = 0
        self.failing_releases = 0
        self._events: ObjectSendStream[TelephonyEvent] | None = None
        self._task_group: TaskGroup | None = None

    async def run(
        self, events: ObjectSendStream[TelephonyEvent], *, task_status: TaskStatus[None]
    ) -> None:
        self._events = events
        async with events, anyio.create_task_group() as task_group:
            self._task_group = task_group
            task_status.started()
            await anyio.sleep_forever()

    @property
    def originates_at_once(self) -> bool:
        """Like the sim: placing waits for nothing unless ``place_time`` is set (the
        engine then gives each origination a task of its own)."""
        return self.place_time <= 0

    async def _take(self, seconds: float) -> None:
        if seconds > 0:
            assert self.clock is not None, "a double that takes time needs the clock"
            await self.clock.sleep_until(self.clock.monotonic() + seconds)

    async def originate(self, origination: Origination) -> None:
        if self.failures_to_come:
            self.failures_to_come -= 1
            raise OriginationError("trunk refused the call")
        await self._take(self.place_time)
        self.originated.append(origination)
        self.live[origination.campaigncall_id] = False

    start_flow = originate

    async def cancel(self, campaigncall_id: str) -> None:
        if self._release_dropped(campaigncall_id):
            return
        if self.live.get(campaigncall_id) is False:
            self._later(campaigncall_id, self.cancelled, HangupReason.CANCELLED)

    async def hangup(self, campaigncall_id: str) -> None:
        if self._release_dropped(campaigncall_id):
            return
        if self.live.get(campaigncall_id):
            self._later(campaigncall_id, self.hung_up, HangupReason.NORMAL)

    async def stop_flow(self, campaigncall_id: str) -> None:
        if campaigncall_id in self.live:
            self.cancelled.append(campaigncall_id)
            await self.end(campaigncall_id, HangupReason.CANCELLED)

    async def live_calls(self) -> set[str]:
        return set(self.live)

    def unavailable_reason(self) -> str | None:
        return None

    def _release_dropped(self, campaigncall_id: str) -> bool:
        self.release_requests.append(campaigncall_id)
        if self.failing_releases:
            self.failing_releases -= 1
            raise RuntimeError("trunk did not answer the request")
        if self.lose_releases:
            self.lose_releases -= 1
            return True
        return False

    def _later(self, campaigncall_id: str, record: list[str], reason: HangupReason) -> None:
        """End the call ``release_time`` from now, as the trunk would."""

        async def release() -> None:
            await self._take(self.release_time)
            if campaigncall_id in self.live and campaigncall_id not in record:
                record.append(campaigncall_id)
                await self.end(campaigncall_id, reason)

        assert self._task_group is not None
        self._task_group.start_soon(release)

    # -- what the test does ------------------------------------------------------
    async def answer(self, campaigncall_id: str) -> None:
        assert self._events is not None
        self.live[campaigncall_id] = True
        await self._events.send(Answered(campaigncall_id))

    async def end(self, campaigncall_id: str, reason: HangupReason) -> None:
        assert self._events is not None
        self.live.pop(campaigncall_id, None)
        await self._events.send(Ended(campaigncall_id, reason))

    def vanish(self, campaigncall_id: str) -> None:
        """The call ends but its end event is lost on the way (as a websocket can)."""
        self.live.pop(campaigncall_id, None)

    async def report(self, event: TelephonyEvent) -> None:
        """Send any event, in any order, as often as the test likes (disorder)."""
        assert self._events is not None
        await self._events.send(event)

    def report_together(self, events: Sequence[TelephonyEvent]) -> None:
        """Send events in one go, without yielding (one read of a real backend's stream):
        the engine takes them as one burst."""
        assert self._events is not None
        for event in events:
            self._events.send_nowait(event)

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
