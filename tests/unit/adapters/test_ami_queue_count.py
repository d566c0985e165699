"""Which members of an Asterisk queue count as available (app_queue's own rule)."""

from __future__ import annotations

from dialerd.adapters.asterisk.ami_protocol import AmiMessage
from dialerd.adapters.asterisk.ami_queue import (
    count_available,
    member_available,
    member_state,
    member_states,
)

NOW = 1_800_000_000.0


def member(queue: str = "sales", **fields: object) -> AmiMessage:
    values = {"Status": 1, "Paused": 0, "InCall": 0, "LastCall": 0, "Wrapuptime": 0, **fields}
    pairs = [("Event", "QueueMember"), ("Queue", queue), ("Name", "agent")]
    return AmiMessage(tuple(pairs + [(k, str(v)) for k, v in values.items()]))


def params(queue: str = "sales") -> AmiMessage:
    return AmiMessage((("Event", "QueueParams"), ("Queue", queue), ("Calls", "0")))


def test_a_free_member_is_available() -> None:
    assert member_available(member(), now=NOW, wrapup_time=0)
    assert member_available(member(Status=0), now=NOW, wrapup_time=0)  # UNKNOWN counts too


def test_paused_in_call_or_busy_members_are_not() -> None:
    assert not member_available(member(Paused=1), now=NOW, wrapup_time=0)
    assert not member_available(member(InCall=1), now=NOW, wrapup_time=0)
    for status in (2, 3, 4, 5, 6, 7, 8):  # INUSE BUSY INVALID UNAVAILABLE RINGING ...
        assert not member_available(member(Status=status), now=NOW, wrapup_time=0)


def test_wrap_up_of_the_member_else_of_the_queue() -> None:
    recent = member(LastCall=int(NOW) - 5)
    assert member_available(recent, now=NOW, wrapup_time=0)
    assert not member_available(recent, now=NOW, wrapup_time=10)
    assert member_available(recent, now=NOW, wrapup_time=5)  # wrap-up elapsed exactly
    own = member(LastCall=int(NOW) - 5, Wrapuptime=30)
    assert not member_available(own, now=NOW, wrapup_time=0)


def test_a_member_whose_fields_are_not_numbers_does_not_count() -> None:
    assert not member_available(member(Paused="yes"), now=NOW, wrapup_time=0)
    assert not member_available(member(Status=""), now=NOW, wrapup_time=0)


def test_every_member_has_one_state_and_available_is_what_counts() -> None:
    cases = {
        "available": [member(), member(Status=0), member(LastCall=int(NOW) - 50)],
        "busy": [member(InCall=1)] + [member(Status=s) for s in (2, 3, 6, 7, 8)],
        "wrap_up": [member(LastCall=int(NOW) - 5, Wrapuptime=30)],
        "paused": [member(Paused=1), member(Paused=1, InCall=1)],
        "offline": [member(Status=4), member(Status=5, Paused=1), member(Paused="yes")],
    }
    for state, members in cases.items():
        for one in members:
            assert member_state(one, now=NOW, wrapup_time=10) == state, one
            available = member_available(one, now=NOW, wrapup_time=10)
            assert available == (state == "available"), one
    reply = [params(), member(), member(Paused=1), member("other", InCall=1)]
    assert member_states(reply, "SALES", now=NOW) == ["available", "paused"]


def test_count_only_the_asked_queue_and_none_when_it_is_not_listed() -> None:
    events = [params("sales"), member(), member(Paused=1), params("support"), member("support")]
    assert count_available(events, "sales", now=NOW) == 1
    assert count_available(events, "SALES", now=NOW) == 1  # Asterisk matches names so
    assert count_available(events, "support", now=NOW) == 1
    assert count_available(events, "nosuch", now=NOW) is None
    assert count_available([params("empty")], "empty", now=NOW) == 0
