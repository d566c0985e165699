"""How ARI events of a call map to Answered and exactly one Ended with the right reason.

The sequences are those seen from Asterisk 22 (docs/telephony.md, the research table).
"""

from __future__ import annotations

import pytest

from dialerd.adapters.asterisk import call_state
from dialerd.adapters.asterisk.ari_events import (
    AriEvent,
    Channel,
    ChannelDestroyed,
    ChannelHangupRequest,
    ChannelStateChange,
    ChannelVarset,
    Dial,
    StasisEnd,
    StasisStart,
)
from dialerd.adapters.asterisk.call_state import Agent, CallState, Phase
from dialerd.ports import Answered, Ended, HangupReason, TelephonyEvent

ID = "3b1f0c9e-8a4e-4a43-9a51-5a2f0c7e1d11"
US = Channel(id=ID, state="Up")
AGENT = Channel(id="1733000000.42", name="Local/agent1@dialerd-rig-agents-00000001;1")


def run(
    events: list[AriEvent], *, call: CallState | None = None
) -> tuple[CallState, list[TelephonyEvent], int]:
    """Apply events in order; the final state, the engine events and how many continues."""
    call = call or call_state.placed(ID, to_queue=True)
    sent: list[TelephonyEvent] = []
    continues = 0
    for event in events:
        step = call_state.step(call, event)
        call = step.call
        sent.extend(step.events)
        continues += step.continue_in_dialplan
    return call, sent, continues


def dial(status: str) -> Dial:
    return Dial(peer=US, dialstatus=status)


def destroyed(cause: int) -> ChannelDestroyed:
    return ChannelDestroyed(channel=US, cause=cause)


def outcome(value: str) -> ChannelVarset:
    return ChannelVarset(variable="DIALERD_OUTCOME", value=value, channel=US)


def agent_dial(status: str) -> Dial:
    return Dial(peer=AGENT, caller=US, dialstatus=status)


def test_answered_then_our_hangup_is_normal() -> None:
    call, sent, continues = run([dial(""), dial("RINGING"), dial("ANSWER"), StasisStart(US)])
    assert sent == [Answered(ID)]
    assert continues == 1
    call = call_state.end_requested(call)
    call, sent, _ = run([destroyed(16)], call=call)
    assert sent == [Ended(ID, HangupReason.NORMAL)]
    assert call.phase is Phase.ENDED


def test_callee_bye_with_cause_unknown_is_normal() -> None:
    events = [
        dial("ANSWER"),
        StasisStart(US),
        StasisEnd(US),
        ChannelHangupRequest(US),
        destroyed(0),
    ]
    assert run(events, call=call_state.placed(ID, to_queue=False))[1] == [
        Answered(ID),
        Ended(ID, HangupReason.NORMAL),
    ]


@pytest.mark.parametrize(
    ("dial_status", "cause", "reason"),
    [
        ("BUSY", 17, HangupReason.BUSY),  # 486
        ("CONGESTION", 34, HangupReason.FAILED),  # 503
        ("NOANSWER", 21, HangupReason.NO_ANSWER),  # 603 Decline
        ("", 19, HangupReason.NO_ANSWER),  # rang past the originate timeout (480)
        ("", 18, HangupReason.NO_ANSWER),
        ("CHANUNAVAIL", 20, HangupReason.FAILED),
        ("", 1, HangupReason.FAILED),  # 404
        ("", 38, HangupReason.FAILED),
        ("BUSY", 16, HangupReason.BUSY),  # the dial status breaks a tie on normal clearing
        ("NOANSWER", 16, HangupReason.NO_ANSWER),
        ("", 16, HangupReason.FAILED),
    ],
)
def test_unanswered_ends_by_cause(dial_status: str, cause: int, reason: HangupReason) -> None:
    events: list[AriEvent] = [dial(""), dial("RINGING")]
    if dial_status:
        events.append(dial(dial_status))
    assert run([*events, destroyed(cause)])[1] == [Ended(ID, reason)]


def test_our_cancel_while_ringing_is_cancelled_whatever_the_cause() -> None:
    call, _, _ = run([dial("RINGING")])
    call = call_state.end_requested(call)
    assert run([dial("NOANSWER"), destroyed(16)], call=call)[1] == [
        Ended(ID, HangupReason.CANCELLED)
    ]


def test_queue_with_an_agent_is_normal() -> None:
    events = [StasisStart(US), StasisEnd(US), outcome("queued"), agent_dial("RINGING"),
              agent_dial("ANSWER"), destroyed(16)]  # fmt: skip
    _call, sent, _ = run(events)
    assert sent[-1] == Ended(ID, HangupReason.NORMAL)


def test_queue_without_an_agent_is_abandoned() -> None:
    for last_outcome in ("queued", "abandoned"):
        events = [StasisStart(US), outcome("queued"), agent_dial("NOANSWER"),
                  outcome(last_outcome), destroyed(16)]  # fmt: skip
        assert run(events)[1][-1] == Ended(ID, HangupReason.ABANDONED)


def test_our_hangup_in_the_queue_is_normal() -> None:
    call, _, _ = run([StasisStart(US), outcome("queued")])
    assert run([destroyed(16)], call=call_state.end_requested(call))[1] == [
        Ended(ID, HangupReason.NORMAL)
    ]


def test_machine_wins_over_everything() -> None:
    call, _, _ = run([StasisStart(US), outcome("machine")])
    assert run([destroyed(16)], call=call)[1] == [Ended(ID, HangupReason.MACHINE)]
    assert run([destroyed(16)], call=call_state.end_requested(call))[1] == [
        Ended(ID, HangupReason.MACHINE)
    ]


def test_agentless_is_normal() -> None:
    events = [StasisStart(US), outcome("agentless"), destroyed(16)]
    assert run(events, call=call_state.placed(ID, to_queue=False))[1][-1] == Ended(
        ID, HangupReason.NORMAL
    )


def test_exactly_one_ended_and_one_answered() -> None:
    events = [StasisStart(US), StasisStart(US), destroyed(16), destroyed(16), outcome("machine")]
    call, sent, continues = run(events)
    assert sent == [Answered(ID), Ended(ID, HangupReason.NORMAL)]
    assert continues == 1
    assert call_state.vanished(call).events == ()


def test_events_of_other_channels_change_nothing() -> None:
    other = Channel(id="other")
    call = call_state.placed(ID, to_queue=True)
    for event in (StasisStart(other), ChannelDestroyed(other, cause=17), Dial(peer=other)):
        assert call_state.step(call, event).call == call


def test_an_agent_dial_before_answer_is_not_an_agent() -> None:
    call, _, _ = run([agent_dial("ANSWER")])
    assert call.agent is Agent.NONE


def test_a_variable_of_another_name_is_ignored() -> None:
    call, _, _ = run([ChannelVarset(variable="QUEUESTATUS", value="TIMEOUT", channel=US)])
    assert call.outcome == ""


def test_vanished_call_is_lost_once() -> None:
    step = call_state.vanished(call_state.placed(ID, to_queue=False))
    assert step.events == (Ended(ID, HangupReason.LOST),)
    assert call_state.vanished(step.call).events == ()


def test_a_call_dialerd_ended_that_vanished_ends_as_dialerd_ended_it() -> None:
    # The hangup went through while the event stream was down: its end was not seen.
    answered = call_state.step(call_state.placed(ID, to_queue=False), StasisStart(Channel(id=ID)))
    hung_up = call_state.end_requested(answered.call)
    assert call_state.vanished(hung_up).events == (Ended(ID, HangupReason.NORMAL),)
    ringing = call_state.end_requested(call_state.placed(ID, to_queue=False))
    assert call_state.vanished(ringing).events == (Ended(ID, HangupReason.CANCELLED),)


def test_adopted_answered_call_in_a_queue_without_known_agent_is_normal() -> None:
    call = call_state.adopted(ID, channel_state="Up", outcome="queued", to_queue=True)
    assert call.phase is Phase.ANSWERED
    assert call.agent is Agent.UNKNOWN
    assert run([destroyed(16)], call=call)[1] == [Ended(ID, HangupReason.NORMAL)]
    machine = call_state.adopted(ID, channel_state="Up", outcome="machine")
    assert run([destroyed(16)], call=machine)[1] == [Ended(ID, HangupReason.MACHINE)]


def test_adopted_ringing_call_is_answered_later_as_usual() -> None:
    call = call_state.adopted(ID, channel_state="Ringing")
    assert run([StasisStart(US), destroyed(0)], call=call)[1] == [
        Answered(ID),
        Ended(ID, HangupReason.NORMAL),
    ]


def test_answered_while_away_is_reported_once() -> None:
    call = call_state.placed(ID, to_queue=True)
    step = call_state.answered_elsewhere(call)
    assert step.events == (Answered(ID),)
    assert call_state.answered_elsewhere(step.call).events == ()


def test_a_direct_call_is_answered_when_its_channel_is_up_and_not_handed_on() -> None:
    # Placed straight into the dialplan: no StasisStart comes, Asterisk runs the dialplan.
    ringing = Channel(id=ID, state="Ringing")
    events = [dial(""), ChannelStateChange(ringing), dial("RINGING"), ChannelStateChange(US),
              dial("ANSWER"), outcome("queued"), agent_dial("ANSWER"), destroyed(16)]  # fmt: skip
    call, sent, continues = run(events, call=call_state.placed(ID, to_queue=True, direct=True))
    assert sent == [Answered(ID), Ended(ID, HangupReason.NORMAL)]
    assert continues == 0
    assert call.agent is Agent.CONNECTED


def test_a_direct_call_never_answered_ends_by_its_cause() -> None:
    ringing = Channel(id=ID, state="Ringing")
    events = [dial(""), ChannelStateChange(ringing), dial("BUSY"), destroyed(17)]
    direct = call_state.placed(ID, to_queue=False, direct=True)
    assert run(events, call=direct)[1] == [Ended(ID, HangupReason.BUSY)]


def test_a_channel_up_says_nothing_of_a_call_placed_into_stasis() -> None:
    # Through the application, the answer is StasisStart (then the call is handed on).
    call, sent, continues = run([ChannelStateChange(US)])
    assert (sent, continues, call.phase) == ([], 0, Phase.RINGING)


def test_an_adopted_ringing_direct_call_is_answered_when_up() -> None:
    call = call_state.adopted(ID, channel_state="Ringing", direct=True)
    _call, sent, continues = run([ChannelStateChange(US), destroyed(0)], call=call)
    assert sent == [Answered(ID), Ended(ID, HangupReason.NORMAL)]
    assert continues == 0
