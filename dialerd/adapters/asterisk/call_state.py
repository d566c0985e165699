"""What dialerd knows about each call placed through Asterisk, and how ARI events change it.

A call is placed one of two ways: into our Stasis application (answered = ``StasisStart``,
then handed on to the dialplan, or its actions run), or straight into the dialplan
(``direct``: a campaign without actions; answered = its channel's state goes ``Up``,
Asterisk runs the dialplan itself and nothing is handed on).

Pure: ``step(call, event)`` returns the call's new state, the engine events to send and
whether to hand the answered channel on to the dialplan. The I/O shell (``ari``) routes
each ARI event to the calls it names and applies the result.

How a call's end maps to a ``HangupReason`` (see docs/telephony.md for the table):

- never answered: ``cancelled`` if dialerd ended it; else by the Q.850 cause (17 busy;
  18, 19 and 21 no answer, 21 being a 603 Decline; everything else failed), the Dial
  status breaking a tie when the cause says nothing (16 or 0);
- answered: ``machine`` if the dialplan's AMD said so (``DIALERD_OUTCOME=machine``);
  ``normal`` if dialerd hung it up; ``abandoned`` if it went to a queue
  (``DIALERD_OUTCOME`` queued or abandoned) and no agent ever answered; else ``normal``.
  The cause is not used once answered: a callee's BYE shows as cause 0 or 16.
"""

from __future__ import annotations

import enum
from typing import Final

import msgspec

from dialerd.adapters.asterisk.ari_events import (
    AriEvent,
    ChannelDestroyed,
    ChannelStateChange,
    ChannelVarset,
    Dial,
    StasisStart,
)
from dialerd.ports import Answered, Ended, HangupReason, TelephonyEvent

OUTCOME_VARIABLE: Final = "DIALERD_OUTCOME"  # in ari_events.READ_VARIABLES

# Q.850 causes of an unanswered call that are not failures.
_BUSY_CAUSES: Final = frozenset({17})  # user busy (SIP 486, 600)
# no user responding (408), no answer (480, ring timeout), call rejected (603 Decline)
_NO_ANSWER_CAUSES: Final = frozenset({18, 19, 21})
_QUEUE_OUTCOMES: Final = frozenset({"queued", "abandoned"})


class Phase(enum.Enum):
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"


class Agent(enum.Enum):
    """Whether an agent answered the call: unknown for a call followed after a restart."""

    NONE = "none"
    CONNECTED = "connected"
    UNKNOWN = "unknown"


class CallState(msgspec.Struct, frozen=True, kw_only=True):
    """One call: ``id`` is its campaigncall id and its ARI channel id."""

    id: str
    phase: Phase = Phase.RINGING
    # Where the answered channel goes: the queue context or the agentless one.
    to_queue: bool = False
    # Placed straight into the dialplan (no Stasis on answer): answered when Up.
    direct: bool = False
    # dialerd asked Asterisk to end it (cancel or hangup).
    ended_by_us: bool = False
    # Last Dial status of the originating dial (our channel as the peer).
    dial_status: str = ""
    # DIALERD_OUTCOME as last set by the dialplan.
    outcome: str = ""
    agent: Agent = Agent.NONE


class Step(msgspec.Struct, frozen=True):
    """What one event did to a call."""

    call: CallState
    events: tuple[TelephonyEvent, ...] = ()
    # Hand the (just answered) channel on to the dialplan.
    continue_in_dialplan: bool = False


def placed(campaigncall_id: str, *, to_queue: bool, direct: bool = False) -> CallState:
    """A call just originated: ringing."""
    return CallState(id=campaigncall_id, to_queue=to_queue, direct=direct)


def adopted(
    campaigncall_id: str,
    *,
    channel_state: str,
    outcome: str = "",
    to_queue: bool = False,
    direct: bool = False,
) -> CallState:
    """A live call found in Asterisk that this process did not place (placed before a
    restart, or followed again after a reconnect): its past is unknown."""
    if channel_state == "Up":
        return CallState(
            id=campaigncall_id,
            phase=Phase.ANSWERED,
            to_queue=to_queue,
            direct=direct,
            outcome=outcome,
            agent=Agent.UNKNOWN,
        )
    return CallState(id=campaigncall_id, to_queue=to_queue, direct=direct, outcome=outcome)


def end_requested(call: CallState) -> CallState:
    """dialerd asked for the call to end (cancel while ringing, hangup once answered)."""
    return msgspec.structs.replace(call, ended_by_us=True)


def vanished(call: CallState) -> Step:
    """The call is gone from Asterisk and its end was not seen (events lost): ``lost``,
    unless dialerd asked for the end itself (then as if the end had been seen)."""
    if call.phase is Phase.ENDED:
        return Step(call)
    reason = end_reason(call, 0) if call.ended_by_us else HangupReason.LOST
    return Step(msgspec.structs.replace(call, phase=Phase.ENDED), (Ended(call.id, reason),))


def step(call: CallState, event: AriEvent) -> Step:
    """Apply one ARI event that names this call's channel (as channel, peer or caller)."""
    if call.phase is Phase.ENDED:
        return Step(call)
    if isinstance(event, StasisStart) and event.channel.id == call.id:
        return _answered(call)
    if (
        call.direct
        and isinstance(event, ChannelStateChange)
        and event.channel.id == call.id
        and event.channel.state == "Up"
    ):
        return _answered(call)
    if isinstance(event, Dial):
        return Step(_dialled(call, event))
    if isinstance(event, ChannelVarset) and event.variable == OUTCOME_VARIABLE:
        return Step(msgspec.structs.replace(call, outcome=event.value))
    if isinstance(event, ChannelDestroyed) and event.channel.id == call.id:
        reason = end_reason(call, event.cause)
        return Step(msgspec.structs.replace(call, phase=Phase.ENDED), (Ended(call.id, reason),))
    return Step(call)


def answered_elsewhere(call: CallState) -> Step:
    """The channel is Up though no StasisStart was seen (found on a reconnect)."""
    if call.phase is not Phase.RINGING:
        return Step(call)
    return Step(
        msgspec.structs.replace(call, phase=Phase.ANSWERED, agent=Agent.UNKNOWN),
        (Answered(call.id),),
    )


def end_reason(call: CallState, cause: int) -> HangupReason:
    """Why the call ended, from what was seen of it and the channel's hangup cause."""
    if call.phase is Phase.ANSWERED:
        if call.outcome == "machine":
            return HangupReason.MACHINE
        if call.ended_by_us:
            return HangupReason.NORMAL
        if call.outcome in _QUEUE_OUTCOMES and call.agent is Agent.NONE:
            return HangupReason.ABANDONED
        return HangupReason.NORMAL
    if call.ended_by_us:
        return HangupReason.CANCELLED
    if cause in _BUSY_CAUSES:
        return HangupReason.BUSY
    if cause in _NO_ANSWER_CAUSES:
        return HangupReason.NO_ANSWER
    if cause in (0, 16):
        # Normal clearing of a call never answered says nothing; the dial status may.
        if call.dial_status == "BUSY":
            return HangupReason.BUSY
        if call.dial_status == "NOANSWER":
            return HangupReason.NO_ANSWER
    return HangupReason.FAILED


def _answered(call: CallState) -> Step:
    if call.phase is Phase.ANSWERED:
        return Step(call)  # a second StasisStart (the channel came back to our app)
    return Step(
        msgspec.structs.replace(call, phase=Phase.ANSWERED),
        (Answered(call.id),),
        # A direct call is in the dialplan already.
        continue_in_dialplan=not call.direct,
    )


def _dialled(call: CallState, event: Dial) -> CallState:
    if event.peer.id == call.id and event.dialstatus:
        return msgspec.structs.replace(call, dial_status=event.dialstatus)
    answered_by_agent = (
        event.caller is not None
        and event.caller.id == call.id
        and event.peer.id != call.id
        and event.dialstatus == "ANSWER"
    )
    if answered_by_agent and call.phase is Phase.ANSWERED:
        return msgspec.structs.replace(call, agent=Agent.CONNECTED)
    return call
