"""Sharing a ceiling of calls fairly between customers (behaviour.md §10, Quotas).

Pure. A ceiling (concurrent calls, or calls per second) is split by max-min fairness
("water filling"): every customer that wants some gets an equal part, a customer that
wants less than its part keeps only what it wants, and what it leaves is split again
between the others. So a customer with twenty campaigns gets no more than one with a
single campaign while both want more than half, and no capacity idles while someone
wants it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import msgspec


def shares(capacity: int, demands: Mapping[str, int]) -> dict[str, int]:
    """Each customer's whole share of ``capacity`` concurrent calls, given what each
    wants in all (its active calls plus those it would start now).

    The shares never add up to more than ``capacity``; a remainder that cannot be split
    evenly goes one each to the customers that still want more, in id order."""
    result = {customer: 0 for customer in demands}
    wanting = sorted(customer for customer, demand in demands.items() if demand > 0)
    left = max(0, capacity)
    while wanting and left > 0:
        part = left // len(wanting)
        if part == 0:
            for customer in wanting[:left]:
                result[customer] += 1
            break
        still: list[str] = []
        for customer in wanting:
            taken = min(part, demands[customer] - result[customer])
            result[customer] += taken
            left -= taken
            if result[customer] < demands[customer]:
                still.append(customer)
        wanting = still
    return result


def rate_shares(rate: float, limits: Mapping[str, float | None]) -> dict[str, float]:
    """Each wanting customer's share of ``rate`` calls per second, where a customer's
    own limit (its quota, None for none) caps its share and what it leaves goes to the
    others."""
    result = {customer: 0.0 for customer in limits}
    wanting = sorted(limits)
    left = rate
    while wanting and left > 1e-9:
        part = left / len(wanting)
        still: list[str] = []
        for customer in wanting:
            cap = limits[customer]
            room = math.inf if cap is None else cap - result[customer]
            taken = min(part, room)
            result[customer] += taken
            left -= taken
            if taken == part and (cap is None or result[customer] < cap):
                still.append(customer)
        if len(still) == len(wanting):
            break  # everyone took a full part: nothing left to split again
        wanting = still
    return result


class Ceiling(msgspec.Struct, frozen=True, kw_only=True):
    """The process's ceiling of calls (its own and its trunk's, whichever is lower);
    None: no ceiling."""

    concurrent_calls: int | None = None
    calls_per_second: float | None = None

    @property
    def unlimited(self) -> bool:
        return self.concurrent_calls is None and self.calls_per_second is None


def lower(first: int | float | None, second: int | float | None) -> float | None:
    """The lower of two optional limits (None: no limit)."""
    given = [value for value in (first, second) if value is not None]
    return min(given) if given else None


class Grant(msgspec.Struct, frozen=True, kw_only=True):
    """How many attempts a campaign may start now after the customer's share, and what
    held it back when that is fewer than its pacing allowed ("" when nothing did)."""

    attempts: int
    held_by: str = ""


def grant(
    wanted: int,
    *,
    concurrent_room: int | None,
    rate_room: int | None,
) -> Grant:
    """Cut ``wanted`` to the room the concurrency and rate shares leave (None: no limit)."""
    attempts = wanted
    held_by = ""
    if concurrent_room is not None and concurrent_room < attempts:
        attempts, held_by = max(0, concurrent_room), "concurrent_calls"
    if rate_room is not None and rate_room < attempts:
        attempts, held_by = max(0, rate_room), "calls_per_second"
    return Grant(attempts=attempts, held_by=held_by)
