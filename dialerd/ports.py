"""Ports of the engine: the clock, the queue adapter, the telephony backend, the flow runner.

The scheduler depends only on these Protocols; adapters (``dialerd.adapters.*``) are
chosen by configuration. Events flow back from backends as small frozen structs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Final, Protocol

import msgspec
from anyio.abc import ObjectSendStream, TaskStatus

from dialerd.core.actions import Capability, EmailSendOption, WebhookSendOption
from dialerd.model import Action, Address
from dialerd.model import HangupReason as HangupReason


class Clock(Protocol):
    """Time, injected so tests can run hours of campaign time in milliseconds."""

    def now(self) -> datetime:
        """The current wall-clock time, timezone-aware UTC."""

    def monotonic(self) -> float:
        """Seconds on a monotonic scale; deadlines are expressed on it."""

    async def sleep_until(self, deadline: float) -> None:
        """Return once ``monotonic()`` has reached ``deadline``."""


class QueueUnavailable(Exception):
    """The queue adapter could not tell how many agents are available."""


class QueueAdapter(Protocol):
    """Reads how many agents of a queue are available right now.

    Queues are named as the backend knows them (``QueueRef.name``, for example an
    Asterisk queue); which customer may use which queue is the registry's business.
    """

    name: str

    async def available_agents(self, queue_name: str) -> int:
        """Agents of the queue whose status is ``available``; raise ``QueueUnavailable``."""

    async def has_queue(self, queue_name: str) -> bool:
        """Whether the backend knows this queue; raise ``QueueUnavailable`` if it cannot tell."""


class MeasuresWrapUp(Protocol):
    """A queue adapter that also reports its agents' wrap-ups (``sim``, ``asterisk``):
    the predictive model then counts on them instead of ``engine.predictive_wrap_up``."""

    def wrap_ups(self, queue_name: str) -> Sequence[float]:
        """The seconds of wrap-up after the latest calls of the queue's agents (at most
        ``WRAP_UPS_KEPT``, oldest first); empty while none was seen."""


# The wrap-ups a queue adapter keeps per queue: the latest calls'.
WRAP_UPS_KEPT: Final = 100


class Origination(msgspec.Struct, frozen=True, kw_only=True):
    """A request to the backend to start one attempt.

    ``campaigncall_id`` is the idempotency key: a backend asked twice with the same id
    must not place a second call.
    """

    campaigncall_id: str
    campaign_id: str
    customer_id: str
    reference_id: str
    queue_id: str
    source: Address
    destination: Address
    actions: list[Action]
    dial_timeout_ms: int
    # The queue as the backend knows it (the registry's ``name``); "" without a queue.
    queue_name: str = ""
    # What the actions' ``${name}`` refer to (``dialerd.core.flow.call_variables``):
    # campaign.id, campaign.name, campaigncall.id, customer.id, target.id,
    # target.destination; target.name, target.data, target.data.<key> when the actions
    # refer to the target's name or data.
    variables: dict[str, str] = msgspec.field(default_factory=dict)


class Answered(msgspec.Struct, frozen=True, tag=True):
    """The callee answered; the attempt is now ``progressing``."""

    campaigncall_id: str


class AgentConnected(msgspec.Struct, frozen=True, tag=True):
    """An answered call reached an agent ``wait_seconds`` after the answer.

    What the abandonment measurement reads (behaviour.md §10): a live answer that waits
    longer than ``engine.abandon_seconds`` counts abandoned, even though an agent took it.
    Backends that send it say so with a class attribute ``reports_agent_connect = True``
    (the engine governs only what it can measure); others never send it.
    """

    campaigncall_id: str
    wait_seconds: float


class Ended(msgspec.Struct, frozen=True, tag=True):
    """The attempt ended (hangup, failure, cancel, flow completion) with a reason."""

    campaigncall_id: str
    reason: HangupReason
    # Where the call's recording is (a recording_start action), as the backend names it:
    # for Asterisk, the file under its recording directory ("dialerd/<campaign>/<id>.wav").
    recording: str = ""


TelephonyEvent = Answered | AgentConnected | Ended


class OriginationError(Exception):
    """The backend refused or failed to start the attempt; the text says why."""


class TelephonyUnavailable(Exception):
    """The backend cannot be reached, so it cannot tell (or do) what was asked."""


class Telephony(Protocol):
    """A telephony backend that places calls and reports what happens to them.

    A backend whose ``originate`` never waits on anything (no network round trip, no
    delay) says so with an attribute ``originates_at_once = True``: the engine then
    places a tick's calls one after the other in one task. Others get a task per call,
    so a slow origination holds up no other.
    """

    name: str

    async def run(
        self, events: ObjectSendStream[TelephonyEvent], *, task_status: TaskStatus[None]
    ) -> None:
        """Run the backend's background work until cancelled, sending events to ``events``.

        Calls ``task_status.started()`` once ``originate`` may be called.
        """

    async def originate(self, origination: Origination) -> None:
        """Start the call; raise ``OriginationError`` if it could not be started."""

    async def cancel(self, campaigncall_id: str) -> None:
        """Cancel an unanswered call; it then ends with reason ``cancelled``."""

    async def hangup(self, campaigncall_id: str) -> None:
        """Hang up an answered call; it then ends with reason ``normal``."""

    async def live_calls(self) -> set[str]:
        """Ids of the campaigncalls the backend still has a live call for.

        Raises ``TelephonyUnavailable`` when it cannot tell: an empty set would end
        every followed attempt as lost."""

    def unavailable_reason(self) -> str | None:
        """None while calls can be placed; otherwise why not (shown by ``/readyz``)."""


class FlowRunner(Protocol):
    """Runs a flow campaign's actions for a target without a voice call (type ``flow``).

    The end is reported as ``Ended`` on the same event stream as telephony events:
    ``normal`` when the flow completed, ``failed`` when a step failed, ``cancelled``
    after ``stop_flow``; the engine ends attempts that report nothing in time
    (``engine.flow_timeout``). ``originates_at_once``: as for ``Telephony``.
    """

    name: str

    async def run(
        self, events: ObjectSendStream[TelephonyEvent], *, task_status: TaskStatus[None]
    ) -> None: ...

    async def start_flow(self, origination: Origination) -> None:
        """Start executing ``origination.actions`` for its destination."""

    async def stop_flow(self, campaigncall_id: str) -> None:
        """Stop a running flow; it then ends with reason ``cancelled``."""

    async def live_calls(self) -> set[str]: ...


class ActionFailed(Exception):
    """An action's side effect could not be done; the text says why."""


class ActionServices(Protocol):
    """The side effects an action may have outside the call: shared by every executor."""

    async def webhook_send(self, option: WebhookSendOption, variables: Mapping[str, str]) -> int:
        """Send it; return the HTTP status. Raise ``ActionFailed`` (refused URL, timeout...)."""

    async def email_send(self, option: EmailSendOption, variables: Mapping[str, str]) -> None:
        """Send it; raise ``ActionFailed`` when the mail server refuses it or cannot be reached."""

    async def dnc_add(self, customer_id: str, number: str, detail: str) -> None:
        """Put ``number`` on the customer's do-not-call list at once, with ``detail``."""

    def capabilities(self) -> frozenset[Capability]:
        """What this host can run (``Capability``): a campaign needing more is a 409 at run."""
