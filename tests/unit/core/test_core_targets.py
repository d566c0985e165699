"""The pure dialing rules (behaviour.md §4-§6) of ``dialerd.core.targets``: which number
goes first, what a claim decides, what becomes of a target when its attempt ends."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialerd.core.targets import (
    NO_SLOT,
    Claim,
    Held,
    Placement,
    Queue,
    RetryRule,
    Settled,
    decide_claim,
    exhausted,
    gives_try_back,
    has_destination,
    next_slot,
    place_after,
    place_new,
    result_for,
)
from dialerd.model import (
    NOT_DELETED,
    Address,
    AddressType,
    CampaigncallResult,
    HangupReason,
    OutdialTarget,
    Outplan,
    TargetStatus,
    format_time,
    new_id,
)

NOW = datetime(2026, 3, 2, 10, 0, 0, tzinfo=UTC)
CREATED = NOW - timedelta(hours=1)
MOBILE = Address(type=AddressType.TEL, target="+15551230001")
OFFICE = Address(type=AddressType.TEL, target="+15551230002")
BLANK = Address(type=AddressType.TEL, target="", name="no number on file")
LIMITS = (3, 2, 0, 0, 0)
RULE = RetryRule(LIMITS, 60_000)
FAIL = CampaigncallResult.FAIL
SUCCESS = CampaigncallResult.SUCCESS


def target(**changes: object) -> OutdialTarget:
    """An idle, never-tried contact with a mobile and an office number."""
    base = OutdialTarget(
        id=new_id(),
        outdial_id=new_id(),
        name="Ada Lovelace",
        detail="",
        data="",
        status=TargetStatus.IDLE,
        destination_0=MOBILE,
        destination_1=OFFICE,
        destination_2=None,
        destination_3=None,
        destination_4=None,
        try_count_0=0,
        try_count_1=0,
        try_count_2=0,
        try_count_3=0,
        try_count_4=0,
        tm_create=format_time(CREATED),
        tm_update=None,
        tm_delete=None,
    )
    return msgspec.structs.replace(base, **changes)


def claimed(before: OutdialTarget, slot: int) -> OutdialTarget:
    """The target as a claim of ``slot`` leaves it: progressing, with one more try."""
    count = before.try_counts[slot] + 1
    return msgspec.structs.replace(
        before, status=TargetStatus.PROGRESSING, **{f"try_count_{slot}": count}
    )


# -- which number: slot order and blank addresses -----------------------------------------


def test_next_slot_is_the_first_number_with_tries_left() -> None:
    assert next_slot((MOBILE, OFFICE, None, None, None), (0, 0, 0, 0, 0), LIMITS) == 0


def test_all_tries_of_the_first_number_come_before_the_second() -> None:
    destinations = (MOBILE, OFFICE, None, None, None)
    assert next_slot(destinations, (1, 0, 0, 0, 0), LIMITS) == 0
    assert next_slot(destinations, (2, 0, 0, 0, 0), LIMITS) == 0
    assert next_slot(destinations, (3, 0, 0, 0, 0), LIMITS) == 1
    assert next_slot(destinations, (3, 1, 0, 0, 0), LIMITS) == 1
    assert next_slot(destinations, (3, 2, 0, 0, 0), LIMITS) is None


def test_without_limits_next_slot_is_the_first_number_at_all() -> None:
    assert next_slot((None, BLANK, OFFICE, None, None), (0, 0, 9, 0, 0), None) == 2


def test_a_missing_first_number_starts_with_the_next_one() -> None:
    assert next_slot((None, OFFICE, None, None, None), (0, 0, 0, 0, 0), LIMITS) == 1


def test_a_blank_address_is_no_destination() -> None:
    assert not has_destination(BLANK)
    assert not has_destination(Address())
    assert not has_destination(None)
    assert has_destination(MOBILE)
    assert next_slot((BLANK, OFFICE, None, None, None), (0, 0, 0, 0, 0), LIMITS) == 1
    assert next_slot((BLANK, None, None, None, None), (0, 0, 0, 0, 0), LIMITS) is None


def test_a_number_whose_slot_allows_no_try_is_skipped() -> None:
    assert next_slot((MOBILE, OFFICE, OFFICE, None, None), (0, 0, 0, 0, 0), (0, 0, 1, 0, 0)) == 2


# -- a new target ------------------------------------------------------------------------


def test_a_new_target_is_ready_at_once_in_creation_order_on_its_first_number() -> None:
    placement = place_new(target(destination_0=BLANK))
    assert placement == Placement(
        status=TargetStatus.IDLE, queue=Queue.READY, touched=CREATED, due=CREATED, slot=1
    )


def test_a_new_target_with_nothing_to_dial_is_idle_in_no_queue() -> None:
    placement = place_new(target(destination_0=BLANK, destination_1=None))
    assert placement.status == TargetStatus.IDLE
    assert placement.queue == Queue.NONE
    assert placement.held == Held.NOTHING_TO_DIAL
    assert placement.slot == NO_SLOT


def test_an_imported_done_or_deleted_target_is_in_no_queue() -> None:
    assert place_new(target(status=TargetStatus.DONE)).queue == Queue.NONE
    assert place_new(target(tm_delete=format_time(NOW))).queue == Queue.NONE


def test_a_waiting_placement_becomes_ready_when_its_due_has_come() -> None:
    waiting = Placement(
        status=TargetStatus.IDLE,
        queue=Queue.WAITING,
        touched=NOW,
        due=NOW + timedelta(minutes=1),
        slot=0,
        held=Held.RETRY_INTERVAL,
    )
    assert waiting.ready_at(NOW + timedelta(seconds=59)) == waiting
    ready = waiting.ready_at(NOW + timedelta(minutes=1))
    assert (ready.queue, ready.held, ready.touched, ready.due) == (
        Queue.READY,
        Held.NONE,
        NOW,
        NOW + timedelta(minutes=1),
    )


# -- a claim -------------------------------------------------------------------------------


def test_a_claim_dials_the_first_number_with_tries_left_and_counts_the_try() -> None:
    tried = target(try_count_0=3, try_count_1=1)
    assert decide_claim(tried, place_new(tried), LIMITS, NOW) == Claim(slot=1, try_count=2)


def test_a_claim_under_a_lowered_outplan_finds_the_target_done() -> None:
    tried = target(try_count_0=2)
    placement = place_new(tried)
    decision = decide_claim(tried, placement, (2, 0, 0, 0, 0), NOW)
    assert decision == Placement(
        status=TargetStatus.DONE, queue=Queue.NONE, touched=CREATED, due=CREATED
    )
    # Under the outplan it was imported with, the same target is dialed.
    assert decide_claim(tried, placement, (3, 0, 0, 0, 0), NOW) == Claim(slot=0, try_count=3)


# -- the end of an attempt ---------------------------------------------------------------


def test_answered_and_ended_normally_is_a_success() -> None:
    assert result_for(HangupReason.NORMAL) == SUCCESS


@pytest.mark.parametrize("reason", [r for r in HangupReason if r != HangupReason.NORMAL])
def test_every_other_hangup_reason_is_a_failure(reason: HangupReason) -> None:
    assert result_for(reason) == FAIL


def test_success_ends_the_target_even_with_tries_left() -> None:
    before = place_new(target())
    settled = place_after(
        claimed(target(), 0), 0, SUCCESS, RULE, NOW, reason="busy", give_back=False, before=before
    )
    assert settled == Settled(
        (1, 0, 0, 0, 0),
        Placement(status=TargetStatus.DONE, queue=Queue.NONE, touched=NOW, due=NOW),
    )


def test_a_failure_with_tries_left_waits_try_interval_then_is_ready() -> None:
    before = place_new(target())
    settled = place_after(
        claimed(target(), 0), 0, FAIL, RULE, NOW, reason="busy", give_back=False, before=before
    )
    placement = settled.placement
    assert settled.try_counts == (1, 0, 0, 0, 0)
    assert placement == Placement(
        status=TargetStatus.IDLE,
        queue=Queue.WAITING,
        touched=NOW,
        due=NOW + timedelta(minutes=1),
        slot=0,
        held=Held.RETRY_INTERVAL,
    )
    assert placement.ready_at(NOW + timedelta(milliseconds=59_999)).queue == Queue.WAITING
    assert placement.ready_at(NOW + timedelta(minutes=1)).queue == Queue.READY


def test_a_failure_with_no_interval_is_ready_at_once_on_the_next_number() -> None:
    tried = target(try_count_0=2)
    settled = place_after(
        claimed(tried, 0),
        0,
        FAIL,
        RetryRule(LIMITS, 0),
        NOW,
        reason="busy",
        give_back=False,
        before=place_new(tried),
    )
    assert settled.placement.queue == Queue.READY
    assert settled.placement.slot == 1
    assert settled.placement.touched == NOW


def test_the_last_try_spent_ends_the_target() -> None:
    tried = target(try_count_0=3, try_count_1=1)
    settled = place_after(
        claimed(tried, 1),
        1,
        FAIL,
        RULE,
        NOW,
        reason="busy",
        give_back=False,
        before=place_new(tried),
    )
    assert settled.try_counts == (3, 2, 0, 0, 0)
    assert settled.placement.status == TargetStatus.DONE
    assert settled.placement.queue == Queue.NONE


def test_tries_left_on_a_blank_number_do_not_keep_the_target_idle() -> None:
    tried = target(destination_1=BLANK, try_count_0=2)
    settled = place_after(
        claimed(tried, 0),
        0,
        FAIL,
        RULE,
        NOW,
        reason="busy",
        give_back=False,
        before=place_new(tried),
    )
    assert settled.placement.status == TargetStatus.DONE


def test_no_outplan_left_means_no_retry() -> None:
    assert RetryRule.of(None) == RetryRule((0, 0, 0, 0, 0))
    settled = place_after(
        claimed(target(), 0), 0, FAIL, RetryRule.of(None), NOW, reason="busy", give_back=False,
        before=place_new(target()),
    )  # fmt: skip
    assert settled.placement.status == TargetStatus.DONE


def test_the_rule_of_an_outplan_is_its_counts_and_interval() -> None:
    outplan = Outplan(
        id=new_id(), customer_id=new_id(), name="", detail="", source=MOBILE,
        dial_timeout=30_000, try_interval=5_000, max_try_count_0=3, max_try_count_1=2,
        max_try_count_2=0, max_try_count_3=1, max_try_count_4=0,
        tm_create=format_time(NOW), tm_update=None, tm_delete=NOT_DELETED,
    )  # fmt: skip
    assert RetryRule.of(outplan) == RetryRule((3, 2, 0, 1, 0), 5_000)


def test_a_try_given_back_restores_the_previous_placement_and_count() -> None:
    # Tried once an hour ago; its retry was due; a stop cancelled the second try.
    tried = target(try_count_0=1)
    before = Placement(
        status=TargetStatus.IDLE,
        queue=Queue.READY,
        touched=NOW - timedelta(hours=1),
        due=NOW - timedelta(minutes=59),
        slot=0,
    )
    settled = place_after(
        claimed(tried, 0), 0, FAIL, RULE, NOW, reason="busy", give_back=True, before=before
    )
    assert settled == Settled((1, 0, 0, 0, 0), before)


def test_a_try_given_back_before_its_due_waits_again() -> None:
    before = Placement(
        status=TargetStatus.IDLE,
        queue=Queue.WAITING,
        touched=NOW,
        due=NOW + timedelta(minutes=1),
        slot=0,
        held=Held.RETRY_INTERVAL,
    )
    settled = place_after(
        claimed(target(), 0), 0, FAIL, RULE, NOW, reason="busy", give_back=True, before=before
    )
    assert settled == Settled((0, 0, 0, 0, 0), before)


def test_a_success_is_never_given_back() -> None:
    settled = place_after(
        claimed(target(), 0),
        0,
        SUCCESS,
        RULE,
        NOW,
        reason="busy",
        give_back=True,
        before=place_new(target()),
    )
    assert settled.try_counts == (1, 0, 0, 0, 0)
    assert settled.placement.status == TargetStatus.DONE


def test_only_a_stop_that_cancelled_an_unanswered_call_gives_the_try_back() -> None:
    cancelled = HangupReason.CANCELLED
    assert gives_try_back(cancelled, answered=False, stopped=True)
    assert not gives_try_back(cancelled, answered=True, stopped=True)
    assert not gives_try_back(cancelled, answered=False, stopped=False)
    assert not gives_try_back(HangupReason.LOST, answered=False, stopped=True)
    assert not gives_try_back(HangupReason.NO_ANSWER, answered=False, stopped=True)


def test_exhausted_only_when_nothing_is_dialable_progressing_or_active() -> None:
    assert exhausted(dialable=False, progressing=False, active=False)
    for flags in [(True, False, False), (False, True, False), (False, False, True)]:
        dialable, progressing, active = flags
        assert not exhausted(dialable=dialable, progressing=progressing, active=active)


# -- properties ------------------------------------------------------------------------------

addresses = st.one_of(
    st.none(),
    st.just(BLANK),
    st.just(Address()),
    st.builds(lambda n: Address(type=AddressType.TEL, target=f"+1555{n:07d}"), st.integers(0, 99)),
)
five_addresses = st.tuples(*(addresses for _ in range(5)))
five_counts = st.tuples(*(st.integers(0, 4) for _ in range(5)))


@settings(max_examples=200, deadline=None)
@given(destinations=five_addresses, try_counts=five_counts, limits=five_counts)
def test_next_slot_is_the_first_dialable_slot_below_its_maximum(
    destinations: tuple[Address | None, ...],
    try_counts: tuple[int, ...],
    limits: tuple[int, ...],
) -> None:
    dialable = [
        slot
        for slot in range(5)
        if has_destination(destinations[slot]) and try_counts[slot] < limits[slot]
    ]
    assert next_slot(destinations, try_counts, limits) == (dialable[0] if dialable else None)


@settings(max_examples=200, deadline=None)
@given(
    destinations=five_addresses,
    limits=five_counts,
    interval=st.sampled_from([0, 1, 60_000]),
    answered_at=st.one_of(st.none(), st.integers(0, 25)),
    gaps=st.lists(st.integers(0, 120_000), min_size=25, max_size=25),
)
def test_a_target_is_tried_slot_by_slot_up_to_its_limits_then_done(
    destinations: tuple[Address | None, ...],
    limits: tuple[int, int, int, int, int],
    interval: int,
    answered_at: int | None,
    gaps: list[int],
) -> None:
    """Claims and ends as a store would apply them: no slot goes past its limit, the
    slots are tried in order, a failure waits the interval, and the target ends done
    exactly when it succeeds or no try is left."""
    rule = RetryRule(limits, interval)
    current = target(
        destination_0=destinations[0], destination_1=destinations[1],
        destination_2=destinations[2], destination_3=destinations[3],
        destination_4=destinations[4],
    )  # fmt: skip
    placement = place_new(current)
    now = CREATED
    tried_slots: list[int] = []
    for gap in gaps:
        now += timedelta(milliseconds=gap)
        if placement.queue == Queue.NONE:
            break
        placement = placement.ready_at(now)
        if placement.queue != Queue.READY:
            assert placement.due > now
            continue
        decision = decide_claim(current, placement, limits, now)
        if isinstance(decision, Placement):
            placement = decision
            break
        tried_slots.append(decision.slot)
        current = claimed(current, decision.slot)
        assert current.try_counts[decision.slot] == decision.try_count
        answered = answered_at is not None and len(tried_slots) > answered_at
        now += timedelta(milliseconds=gap)
        settled = place_after(
            current, decision.slot, SUCCESS if answered else FAIL, rule, now,
            reason="busy", give_back=False, before=placement,
        )  # fmt: skip
        current = msgspec.structs.replace(current, status=settled.placement.status)
        placement = settled.placement
        assert settled.try_counts == current.try_counts
        if settled.placement.status == TargetStatus.IDLE:
            assert settled.placement.due == now + timedelta(milliseconds=interval)
    assert all(tried <= limit for tried, limit in zip(current.try_counts, limits, strict=True))
    assert tried_slots == sorted(tried_slots)
    if placement.status == TargetStatus.DONE:
        succeeded = answered_at is not None and len(tried_slots) > answered_at
        assert succeeded or next_slot(destinations, current.try_counts, limits) is None
    if not any(has_destination(address) for address in destinations):
        assert placement.held == Held.NOTHING_TO_DIAL
        assert tried_slots == []


@settings(max_examples=200, deadline=None)
@given(destinations=five_addresses, try_counts=five_counts, slot=st.integers(0, 4))
def test_a_try_given_back_undoes_exactly_the_claim(
    destinations: tuple[Address | None, ...], try_counts: tuple[int, ...], slot: int
) -> None:
    base = target(
        destination_0=destinations[0], destination_1=destinations[1],
        destination_2=destinations[2], destination_3=destinations[3],
        destination_4=destinations[4], try_count_0=try_counts[0], try_count_1=try_counts[1],
        try_count_2=try_counts[2], try_count_3=try_counts[3], try_count_4=try_counts[4],
    )  # fmt: skip
    before = place_new(base)
    settled = place_after(
        claimed(base, slot), slot, FAIL, RULE, NOW + timedelta(hours=1),
        reason="busy", give_back=True, before=before,
    )  # fmt: skip
    assert settled.try_counts == base.try_counts
    assert settled.placement == before


# -- the core is pure ------------------------------------------------------------------------


def test_importing_the_core_imports_no_io() -> None:
    code = (
        "import pkgutil, importlib, sys\n"
        "import dialerd.core\n"
        "for info in pkgutil.iter_modules(dialerd.core.__path__):\n"
        "    importlib.import_module('dialerd.core.' + info.name)\n"
        "banned = ('anyio', 'redis', 'sqlite3', '_sqlite3', 'httpx', 'asyncio')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in banned))\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert found.stdout.strip() == "[]", f"dialerd.core imports I/O: {found.stdout}"
