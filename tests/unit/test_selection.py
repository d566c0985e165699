"""Which target is eligible and which of its numbers goes first (behaviour.md §4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from dialerd.model import (
    NOT_DELETED,
    Address,
    AddressType,
    OutdialTarget,
    Outplan,
    TargetStatus,
    format_time,
    new_id,
)
from dialerd.selection import has_tries_left, is_eligible, next_slot, touched_at

NOW = datetime(2026, 3, 2, 10, 0, 0, tzinfo=UTC)
MOBILE = Address(type=AddressType.TEL, target="+15551230001")
OFFICE = Address(type=AddressType.TEL, target="+15551230002")
BLANK = Address(type=AddressType.TEL, target="", name="no number on file")


def outplan(**changes: object) -> Outplan:
    """An outplan: 3 tries on the first number, 2 on the second, one minute apart."""
    base = Outplan(
        id=new_id(),
        customer_id=new_id(),
        name="renewals retry plan",
        detail="",
        source=Address(type=AddressType.TEL, target="+15559870000"),
        dial_timeout=30_000,
        try_interval=60_000,
        max_try_count_0=3,
        max_try_count_1=2,
        max_try_count_2=0,
        max_try_count_3=0,
        max_try_count_4=0,
        tm_create=format_time(NOW - timedelta(days=1)),
        tm_update=None,
        tm_delete=NOT_DELETED,
    )
    return msgspec.structs.replace(base, **changes)


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
        tm_create=format_time(NOW - timedelta(hours=1)),
        tm_update=None,
        tm_delete=None,
    )
    return msgspec.structs.replace(base, **changes)


LIMITS = (3, 2, 0, 0, 0)


def test_next_slot_is_the_first_number_with_tries_left() -> None:
    assert next_slot((MOBILE, OFFICE, None, None, None), (0, 0, 0, 0, 0), LIMITS) == 0


def test_all_tries_of_the_first_number_come_before_the_second() -> None:
    destinations = (MOBILE, OFFICE, None, None, None)
    assert next_slot(destinations, (1, 0, 0, 0, 0), LIMITS) == 0
    assert next_slot(destinations, (2, 0, 0, 0, 0), LIMITS) == 0
    assert next_slot(destinations, (3, 0, 0, 0, 0), LIMITS) == 1
    assert next_slot(destinations, (3, 1, 0, 0, 0), LIMITS) == 1
    assert next_slot(destinations, (3, 2, 0, 0, 0), LIMITS) is None


def test_missing_first_number_starts_with_the_next_one() -> None:
    assert next_slot((None, OFFICE, None, None, None), (0, 0, 0, 0, 0), LIMITS) == 1


def test_address_without_a_target_counts_as_absent() -> None:
    assert next_slot((BLANK, OFFICE, None, None, None), (0, 0, 0, 0, 0), LIMITS) == 1
    assert next_slot((BLANK, None, None, None, None), (0, 0, 0, 0, 0), LIMITS) is None


def test_number_whose_slot_allows_no_try_is_skipped() -> None:
    destinations = (MOBILE, OFFICE, OFFICE, None, None)
    assert next_slot(destinations, (0, 0, 0, 0, 0), (0, 0, 1, 0, 0)) == 2


def test_target_with_no_number_has_no_tries_left() -> None:
    empty = target(destination_0=None, destination_1=BLANK)
    assert not has_tries_left(empty, LIMITS)


def test_never_tried_idle_target_is_eligible_at_once() -> None:
    assert is_eligible(target(), outplan(), last_ended=None, now=NOW)


def test_target_being_dialed_or_done_is_not_eligible() -> None:
    assert not is_eligible(target(status=TargetStatus.PROGRESSING), outplan(), None, NOW)
    assert not is_eligible(target(status=TargetStatus.DONE), outplan(), None, NOW)


def test_deleted_target_is_not_eligible() -> None:
    deleted = target(tm_delete=format_time(NOW - timedelta(minutes=5)))
    assert not is_eligible(deleted, outplan(), None, NOW)


def test_target_without_tries_left_is_not_eligible() -> None:
    spent = target(try_count_0=3, try_count_1=2)
    assert not is_eligible(spent, outplan(), last_ended=None, now=NOW)


def test_target_without_a_dialable_number_is_not_eligible() -> None:
    blank = target(destination_0=BLANK, destination_1=None)
    assert not is_eligible(blank, outplan(), last_ended=None, now=NOW)


def test_retry_waits_try_interval_after_the_last_attempt_ended() -> None:
    retried = target(try_count_0=1)
    plan = outplan(try_interval=60_000)
    ended = NOW - timedelta(seconds=59, microseconds=999_000)
    assert not is_eligible(retried, plan, last_ended=ended, now=NOW)
    assert is_eligible(retried, plan, last_ended=NOW - timedelta(seconds=60), now=NOW)


def test_retry_interval_counts_from_the_end_not_the_start_of_the_attempt() -> None:
    # A 50-second call that started 70 s ago ended 20 s ago: a 1-minute interval is not over.
    retried = target(try_count_0=1)
    ended = NOW - timedelta(seconds=20)
    plan = outplan(try_interval=60_000)
    assert not is_eligible(retried, plan, last_ended=ended, now=NOW)
    assert is_eligible(retried, plan, last_ended=ended, now=ended + timedelta(seconds=60))


def test_zero_try_interval_allows_an_immediate_retry() -> None:
    assert is_eligible(target(try_count_0=1), outplan(try_interval=0), last_ended=NOW, now=NOW)


def test_target_is_touched_at_its_last_end_else_at_its_creation() -> None:
    fresh = target()
    assert touched_at(fresh, None) == NOW - timedelta(hours=1)
    assert touched_at(fresh, NOW) == NOW


addresses = st.one_of(
    st.none(),
    st.just(BLANK),
    st.builds(lambda n: Address(type=AddressType.TEL, target=f"+1555{n:07d}"), st.integers(0, 99)),
)
slots = st.tuples(*(st.tuples(addresses, st.integers(0, 5), st.integers(0, 5)) for _ in range(5)))


@settings(max_examples=200, deadline=None)
@given(slots)
def test_next_slot_never_returns_a_slot_at_its_maximum(
    drawn: tuple[tuple[Address | None, int, int], ...],
) -> None:
    destinations = [address for address, _, _ in drawn]
    try_counts = [tried for _, tried, _ in drawn]
    limits = [limit for _, _, limit in drawn]
    slot = next_slot(destinations, try_counts, limits)
    dialable = [
        index
        for index in range(5)
        if destinations[index] is not None
        and destinations[index] != BLANK
        and try_counts[index] < limits[index]
    ]
    if slot is None:
        assert dialable == []
    else:
        assert try_counts[slot] < limits[slot]
        assert slot == dialable[0]
