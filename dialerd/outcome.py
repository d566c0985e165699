"""The end of an attempt (behaviour.md §5): its result and what becomes of its target."""

from __future__ import annotations

from collections.abc import Sequence

from dialerd.model import Address, CampaigncallResult, TargetStatus
from dialerd.ports import HangupReason
from dialerd.selection import next_slot


def result_for(reason: HangupReason) -> CampaigncallResult:
    """Only an answered call that ended normally is a success."""
    return CampaigncallResult.SUCCESS if reason == HangupReason.NORMAL else CampaigncallResult.FAIL


def target_status_after(
    result: CampaigncallResult,
    destinations: Sequence[Address | None],
    try_counts: Sequence[int],
    max_try_counts: Sequence[int],
) -> TargetStatus:
    """Success ends the target; a failure leaves it idle while any slot has tries left."""
    if result == CampaigncallResult.SUCCESS:
        return TargetStatus.DONE
    if next_slot(destinations, try_counts, max_try_counts) is None:
        return TargetStatus.DONE
    return TargetStatus.IDLE


def gives_try_back(reason: HangupReason, *, answered: bool, stopped: bool) -> bool:
    """A call that a stop cancelled before it was answered never reached anyone: its
    try is not spent (the campaigncall keeps the record), so a later run dials it."""
    return stopped and not answered and reason == HangupReason.CANCELLED
