"""Queue adapter ``asterisk``: free agents of an Asterisk queue (app_queue), read over AMI.

``available_agents`` asks ``QueueStatus`` each time (one round trip, no cache to go
stale after a pause) and counts the members Asterisk itself would ring now, as
app_queue.c's ``can_ring_entry`` decides: not paused, device state NOT_INUSE (1) or
UNKNOWN (0) (``member_status_available``), not on a queue call, and past wrap-up
(``LastCall`` + wrap-up time <= now). AMI reports a member's own ``Wrapuptime`` but not
the queue's; ``wrapup_time`` (configuration) stands in for the queue's.

Live queue events of dialerd's calls (channel ids that are campaigncall ids, UUIDs) feed
metrics: ``AgentConnect`` (seconds waited in the queue) and ``QueueCallerAbandon``.

Wrap-ups (``wrap_ups``, what the predictive model counts on): app_queue holds a member
back for its ``Wrapuptime`` (else the queue's) after each call. On ``AgentComplete`` of
one of dialerd's calls (``Queue``, ``Interface`` of the member) the adapter notes the
wrap-up that member now serves: its ``Wrapuptime`` as last reported (``QueueMember`` of
a ``QueueStatus`` reply, which names the interface ``Location``, or ``QueueMemberStatus``
and the like, ``Interface``), else ``wrapup_time``.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Final

import structlog

from dialerd import metrics
from dialerd.adapters.asterisk.ami import AmiClient, AmiError, AmiUnavailable
from dialerd.adapters.asterisk.ami_protocol import AmiMessage
from dialerd.ports import WRAP_UPS_KEPT, QueueUnavailable

log = structlog.get_logger("dialerd.queue")

# Device states (include/asterisk/devicestate.h) a member may be rung in.
AVAILABLE_STATES: Final = frozenset({0, 1})  # AST_DEVICE_UNKNOWN, AST_DEVICE_NOT_INUSE
# The channels dialerd originates are named by campaigncall id; others are not ours.
_CAMPAIGNCALL_ID: Final = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
)


def _int(message: AmiMessage, key: str) -> int:
    try:
        return int(message.get(key) or "0")
    except ValueError:
        return 0


def member_available(member: AmiMessage, *, now: float, wrapup_time: int) -> bool:
    """Whether app_queue would ring this ``QueueMember`` now (see the module docstring).

    A member whose fields are not numbers does not count: nothing can be told of it.
    """
    try:
        paused, in_call, status = (int(member.get(k)) for k in ("Paused", "InCall", "Status"))
        last_call = int(member.get("LastCall") or "0")
    except ValueError:
        return False
    if paused or in_call or status not in AVAILABLE_STATES:
        return False
    wrapup = _int(member, "Wrapuptime") or wrapup_time
    return not (last_call and wrapup and now - last_call < wrapup)


# Device states of a member that is logged out or unreachable: AST_DEVICE_INVALID,
# AST_DEVICE_UNAVAILABLE.
OFFLINE_STATES: Final = frozenset({4, 5})


def member_state(member: AmiMessage, *, now: float, wrapup_time: int) -> str:
    """The member's state for ``dialerd_queue_agents``: ``offline`` (device invalid or
    unavailable, or fields that are not numbers), ``paused``, ``busy`` (on a queue call,
    or its device in use, busy, ringing or on hold), ``wrap_up``, else ``available``
    (exactly the members ``member_available`` counts)."""
    try:
        paused, in_call, status = (int(member.get(k)) for k in ("Paused", "InCall", "Status"))
        int(member.get("LastCall") or "0")
    except ValueError:
        return "offline"
    if status in OFFLINE_STATES:
        return "offline"
    if paused:
        return "paused"
    if in_call or status not in AVAILABLE_STATES:
        return "busy"
    if not member_available(member, now=now, wrapup_time=wrapup_time):
        return "wrap_up"
    return "available"


def member_states(
    events: Iterable[AmiMessage], queue_name: str, *, now: float, wrapup_time: int = 0
) -> list[str]:
    """The state of every member of ``queue_name`` in a ``QueueStatus`` reply."""
    return [
        member_state(event, now=now, wrapup_time=wrapup_time)
        for event in events
        if event.event == "QueueMember" and event.get("Queue").lower() == queue_name.lower()
    ]


def count_available(
    events: Iterable[AmiMessage], queue_name: str, *, now: float, wrapup_time: int = 0
) -> int | None:
    """Available members of ``queue_name`` in a ``QueueStatus`` reply; None if Asterisk
    listed no such queue."""
    found = False
    available = 0
    for event in events:
        if event.get("Queue").lower() != queue_name.lower():
            continue
        if event.event == "QueueParams":
            found = True
        elif event.event == "QueueMember" and member_available(
            event, now=now, wrapup_time=wrapup_time
        ):
            available += 1
    return available if found else None


class AsteriskQueue:
    """Counts an Asterisk queue's free agents through an ``AmiClient`` it does not own."""

    name = "asterisk"

    def __init__(
        self, ami: AmiClient, *, wrapup_time: int = 0, clock: Callable[[], float] = time.time
    ) -> None:
        self.ami = ami
        self.wrapup_time = wrapup_time
        self._clock = clock
        self._missing: set[str] = set()
        # Per (queue, member interface), lower case: the member's own Wrapuptime (0: the
        # queue's); per queue, the wrap-ups after dialerd's latest calls.
        self._member_wrapup: dict[tuple[str, str], int] = {}
        self._wrap_ups: dict[str, deque[float]] = {}

    def wrap_ups(self, queue_name: str) -> Sequence[float]:
        """The wrap-ups app_queue applied after dialerd's latest calls on the queue
        (see the module docstring), oldest first."""
        return tuple(self._wrap_ups.get(queue_name.lower(), ()))

    def _note_member(self, member: AmiMessage) -> None:
        """Remember a member's own wrap-up, from any event or reply that reports it."""
        if "Wrapuptime" not in member:
            return
        interface = member.get("Interface") or member.get("Location")
        if interface:
            key = (member.get("Queue").lower(), interface.lower())
            self._member_wrapup[key] = _int(member, "Wrapuptime")

    async def available_agents(self, queue_name: str) -> int:
        """Members Asterisk would ring now; raise ``QueueUnavailable`` if AMI cannot tell."""
        events = await self._queue_status(queue_name)
        now = self._clock()
        count = count_available(events, queue_name, now=now, wrapup_time=self.wrapup_time)
        metrics.queue_agents(
            queue_name, member_states(events, queue_name, now=now, wrapup_time=self.wrapup_time)
        )
        if count is None:
            if queue_name not in self._missing:
                self._missing.add(queue_name)
                log.warning("Asterisk has no such queue; counting 0 available",
                            queue=queue_name)  # fmt: skip
            return 0
        self._missing.discard(queue_name)
        return count

    async def has_queue(self, queue_name: str) -> bool:
        """Whether Asterisk lists the queue; raise ``QueueUnavailable`` if AMI cannot tell."""
        events = await self._queue_status(queue_name)
        return count_available(events, queue_name, now=self._clock()) is not None

    async def _queue_status(self, queue_name: str) -> tuple[AmiMessage, ...]:
        try:
            reply = await self.ami.action("QueueStatus", {"Queue": queue_name})
        except (AmiUnavailable, AmiError) as exc:
            raise QueueUnavailable(f"queue {queue_name!r}: {exc}") from None
        except ValueError as exc:  # a name with a line break in it
            raise QueueUnavailable(f"queue {queue_name!r}: {exc}") from None
        for event in reply.events:
            if event.event == "QueueMember":
                self._note_member(event)
        return reply.events

    def on_event(self, event: AmiMessage) -> None:
        """Count the queue events of dialerd's calls, and note the wrap-ups after them
        (an ``AmiClient`` callback)."""
        if event.event.startswith("QueueMember"):
            self._note_member(event)
            return
        if not _CAMPAIGNCALL_ID.match(event.get("Uniqueid")):
            return
        queue = event.get("Queue")
        if event.event == "AgentComplete":
            member = (queue.lower(), event.get("Interface").lower())
            wrap_up = self._member_wrapup.get(member) or self.wrapup_time
            kept = self._wrap_ups.setdefault(queue.lower(), deque(maxlen=WRAP_UPS_KEPT))
            kept.append(float(wrap_up))
        elif event.event == "AgentConnect":
            metrics.queue_wait(queue, float(_int(event, "HoldTime")))
        elif event.event == "QueueCallerAbandon":
            metrics.queue_caller_abandoned(queue)
