"""Which target and which of its numbers to dial next (behaviour.md §4), as pure rules.

The stores evaluate the same rules with indexes; these functions are the reference the
conformance and property tests hold them to.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from dialerd.model import Address, OutdialTarget, Outplan, TargetStatus, parse_time


def has_destination(address: Address | None) -> bool:
    """A slot counts only if its address has a target to dial."""
    return address is not None and not address.is_empty


def next_slot(
    destinations: Sequence[Address | None],
    try_counts: Sequence[int],
    max_try_counts: Sequence[int],
) -> int | None:
    """The first slot 0..4 with a destination and tries left; all tries of 0 come first."""
    for slot, (address, tried, limit) in enumerate(
        zip(destinations, try_counts, max_try_counts, strict=True)
    ):
        if has_destination(address) and tried < limit:
            return slot
    return None


def has_tries_left(target: OutdialTarget, max_try_counts: Sequence[int]) -> bool:
    """Whether any slot of the target can still be dialed under these limits."""
    return next_slot(target.destinations, target.try_counts, max_try_counts) is not None


def is_eligible(
    target: OutdialTarget, outplan: Outplan, last_ended: datetime | None, now: datetime
) -> bool:
    """Eligible now: idle, not deleted, tries left, and never tried or its interval passed."""
    if target.status != TargetStatus.IDLE or target.tm_delete is not None:
        return False
    if not has_tries_left(target, outplan.max_try_counts):
        return False
    if last_ended is None:
        return True
    return now - last_ended >= timedelta(milliseconds=outplan.try_interval)


def touched_at(target: OutdialTarget, last_ended: datetime | None) -> datetime:
    """When the target was last touched: its last attempt's end, else its creation."""
    return last_ended if last_ended is not None else parse_time(target.tm_create)
