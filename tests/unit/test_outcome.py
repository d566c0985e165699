"""The end of an attempt (behaviour.md §5): its result and what becomes of its target."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialerd.model import Address, AddressType, CampaigncallResult, TargetStatus
from dialerd.outcome import result_for, target_status_after
from dialerd.ports import HangupReason
from dialerd.selection import next_slot

MOBILE = Address(type=AddressType.TEL, target="+15551230001")
OFFICE = Address(type=AddressType.TEL, target="+15551230002")
BLANK = Address(type=AddressType.TEL, target="")
TWO_NUMBERS = (MOBILE, OFFICE, None, None, None)
LIMITS = (2, 1, 0, 0, 0)


def test_answered_call_that_ended_normally_is_a_success() -> None:
    assert result_for(HangupReason.NORMAL) == CampaigncallResult.SUCCESS


@pytest.mark.parametrize(
    "reason", [reason for reason in HangupReason if reason != HangupReason.NORMAL]
)
def test_every_other_hangup_reason_is_a_failure(reason: HangupReason) -> None:
    assert result_for(reason) == CampaigncallResult.FAIL


def test_success_ends_the_target_even_with_tries_left() -> None:
    status = target_status_after(CampaigncallResult.SUCCESS, TWO_NUMBERS, (1, 0, 0, 0, 0), LIMITS)
    assert status == TargetStatus.DONE


def test_failure_with_tries_left_on_the_same_number_leaves_the_target_idle() -> None:
    status = target_status_after(CampaigncallResult.FAIL, TWO_NUMBERS, (1, 0, 0, 0, 0), LIMITS)
    assert status == TargetStatus.IDLE


def test_failure_with_tries_left_on_another_number_leaves_the_target_idle() -> None:
    status = target_status_after(CampaigncallResult.FAIL, TWO_NUMBERS, (2, 0, 0, 0, 0), LIMITS)
    assert status == TargetStatus.IDLE


def test_failure_of_the_last_try_exhausts_the_target() -> None:
    status = target_status_after(CampaigncallResult.FAIL, TWO_NUMBERS, (2, 1, 0, 0, 0), LIMITS)
    assert status == TargetStatus.DONE


def test_tries_left_on_a_blank_number_do_not_keep_the_target_idle() -> None:
    destinations = (MOBILE, BLANK, None, None, None)
    status = target_status_after(CampaigncallResult.FAIL, destinations, (2, 0, 0, 0, 0), LIMITS)
    assert status == TargetStatus.DONE


addresses = st.sampled_from([None, BLANK, MOBILE, OFFICE])


@settings(max_examples=200, deadline=None)
@given(
    destinations=st.tuples(*(addresses for _ in range(5))),
    limits=st.tuples(*(st.integers(0, 4) for _ in range(5))),
    answered_at=st.one_of(st.none(), st.integers(0, 25)),
)
def test_retries_never_exceed_max_try_count_and_end_exactly_when_spent(
    destinations: tuple[Address | None, ...],
    limits: tuple[int, ...],
    answered_at: int | None,
) -> None:
    try_counts = [0] * 5
    tried_slots: list[int] = []
    status = TargetStatus.IDLE
    # A target with nothing to dial is never picked; the loop is bounded by the tries it has.
    while status == TargetStatus.IDLE:
        slot = next_slot(destinations, try_counts, limits)
        if slot is None:
            break
        try_counts[slot] += 1
        tried_slots.append(slot)
        answered = answered_at is not None and len(tried_slots) > answered_at
        result = CampaigncallResult.SUCCESS if answered else CampaigncallResult.FAIL
        status = target_status_after(result, destinations, try_counts, limits)
        if result == CampaigncallResult.FAIL:
            tries_left = any(
                destinations[index] not in (None, BLANK) and try_counts[index] < limits[index]
                for index in range(5)
            )
            assert (status == TargetStatus.DONE) == (not tries_left)

    assert all(tried <= limit for tried, limit in zip(try_counts, limits, strict=True))
    assert tried_slots == sorted(tried_slots)
    spent = next_slot(destinations, try_counts, limits) is None
    if answered_at is None or len(tried_slots) <= answered_at:
        # Only failures: the target is done exactly when no slot has tries left.
        assert spent
        assert (status == TargetStatus.DONE) == bool(tried_slots)
        dialable = [slot for slot in range(5) if destinations[slot] not in (None, BLANK)]
        assert sum(try_counts) == sum(limits[slot] for slot in dialable)
    else:
        assert status == TargetStatus.DONE
        assert len(tried_slots) == answered_at + 1
