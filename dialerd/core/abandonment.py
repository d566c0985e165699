"""Abandonment as the law counts it, per campaign and per window of days. Pure.

- US, 47 CFR 64.1200(a)(7): at most 3 % of the calls *answered live* per campaign over
  30 days may be abandoned; a call is abandoned when the person is not connected to a
  live agent within 2 seconds of the completed greeting.
- UK, Ofcom: 3 % per campaign per day.

So: only live answers count (machines are excluded); an answered call not connected to
an agent within ``abandon_seconds`` counts abandoned even if an agent takes it later.
Counts are kept per campaign and calendar day (``DayCount``, persisted by the store) and
summed over each configured window: ``1`` is the current day, ``30`` the current day and
the 29 before it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Final

import msgspec

# The windows measured when none are configured: today (Ofcom) and 30 days (the FCC).
DEFAULT_WINDOWS: Final = (1, 30)


class AbandonmentPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """What a customer's campaigns measure and, when ``cap`` is set, are held to."""

    # Windows of days ending today the rate is summed over (and shown for).
    windows: tuple[int, ...] = DEFAULT_WINDOWS
    # The share of live answers the governor holds each window under; None: the
    # governor is not configured, abandonment is only measured (behaviour.md §3).
    cap: float | None = None


class DayCount(msgspec.Struct, frozen=True, kw_only=True):
    """Live answers and abandoned calls of one campaign on one day (``YYYY-MM-DD``)."""

    day: str
    live: int = 0
    abandoned: int = 0


class WindowCount(msgspec.Struct, frozen=True, kw_only=True):
    """One window's totals, as the API and metrics show them."""

    days: int
    live: int
    abandoned: int
    rate: float


def campaign_day(now: datetime, utc_offset_minutes: int = 0) -> str:
    """The calendar day a moment falls on, in the zone the day windows are kept in."""
    return (now + timedelta(minutes=utc_offset_minutes)).date().isoformat()


def first_day(today: str, days: int) -> str:
    """The oldest day a window of ``days`` ending ``today`` holds."""
    return (date.fromisoformat(today) - timedelta(days=max(1, days) - 1)).isoformat()


def windows(counts: Iterable[DayCount], today: str, spans: Sequence[int]) -> list[WindowCount]:
    """The totals of each window ending ``today``; days after ``today`` are ignored."""
    rows = list(counts)
    result = []
    for span in spans:
        oldest = first_day(today, span)
        live = sum(row.live for row in rows if oldest <= row.day <= today)
        abandoned = sum(row.abandoned for row in rows if oldest <= row.day <= today)
        result.append(
            WindowCount(days=span, live=live, abandoned=abandoned, rate=rate(abandoned, live))
        )
    return result


def rate(abandoned: int, live: int) -> float:
    """Abandoned over live answers; 0 with no live answer yet."""
    return abandoned / live if live else 0.0


def is_abandoned(wait_seconds: float | None, abandon_seconds: float) -> bool:
    """A live answer is abandoned unless an agent took it within ``abandon_seconds``
    (``None``: no agent ever did)."""
    return wait_seconds is None or wait_seconds > abandon_seconds


def added(counts: dict[str, DayCount], day: str, live: int, abandoned: int) -> DayCount:
    """``counts`` (by day) with one more change on ``day``; returns that day's new count."""
    old = counts.get(day, DayCount(day=day))
    new = DayCount(day=day, live=old.live + live, abandoned=old.abandoned + abandoned)
    counts[day] = new
    return new


def trimmed(counts: dict[str, DayCount], today: str, keep_days: int) -> None:
    """Forget the days no window reaches any more (keeps memory bounded)."""
    oldest = first_day(today, keep_days)
    for day in [day for day in counts if day < oldest]:
        del counts[day]
