"""Calling hours in the callee's local time (issue 14): may a number be called now?

A customer's ``CallingHours`` allow windows of local wall time per weekday (default
08:00-21:00 every day) and skip whole local dates. The callee's zones come from the
number (``phonenumbers``) and from the target (an IANA zone in its ``data``): a callee
may be called only while the hours hold in every zone it may be in, so a target's data
narrows the hours and never widens them (unless the operator trusts it).
``calling_window`` says whether a call is allowed now and until when, or when it next
will be.

Local times that the clock skips or repeats on a daylight-saving change are read so
that no call ever falls outside a window by the callee's wall clock:

- a window bound inside a skipped hour (spring forward) falls at the change itself,
  the first instant whose wall time is past the bound;
- a start inside a repeated hour (fall back) is its later occurrence, an end its
  earlier one, so the repeated hour is inside a window only when both readings are.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from itertools import pairwise
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import phonenumbers
from phonenumbers import timezone as phone_zones

WEEKDAYS: Final = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DEFAULT_WINDOWS: Final = ("08:00-21:00",)
# How far ahead calling_window looks for an opening before it answers "never".
HORIZON: Final = timedelta(days=14)

_WINDOW_TEXT = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
_FIELD_FIRST = re.compile(r"^[a-z_]+(\[\d+\])?: ")

# An interval of instants [start, end), both aware UTC datetimes.
_Interval = tuple[datetime, datetime]


class CallingHours(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Allowed windows of local time per weekday, local dates to skip, the zone
    assumed for a callee whose zone is unknown (None or "": refuse such callees), and
    whether a zone in a target's data replaces its number's (else both must allow).

    A window is ``"HH:MM-HH:MM"``, start included and end excluded; ``24:00`` ends at
    midnight. An empty list allows no call that weekday.
    """

    monday: tuple[str, ...] = DEFAULT_WINDOWS
    tuesday: tuple[str, ...] = DEFAULT_WINDOWS
    wednesday: tuple[str, ...] = DEFAULT_WINDOWS
    thursday: tuple[str, ...] = DEFAULT_WINDOWS
    friday: tuple[str, ...] = DEFAULT_WINDOWS
    saturday: tuple[str, ...] = DEFAULT_WINDOWS
    sunday: tuple[str, ...] = DEFAULT_WINDOWS
    skip_dates: tuple[date, ...] = ()
    fallback_zone: str | None = None
    # Read a target's data zone instead of its number's (the operator trusts the lists).
    trust_data_zone: bool = False

    def __post_init__(self) -> None:
        for day in WEEKDAYS:
            _spans(getattr(self, day), day)
        if self.fallback_zone and not is_known_zone(self.fallback_zone):
            raise ValueError(f"fallback_zone: {self.fallback_zone!r} is not an IANA time zone")

    def spans(self, day: date) -> tuple[tuple[int, int], ...]:
        """The allowed [start, end) minutes after local midnight on ``day``."""
        if day in self.skip_dates:
            return ()
        return _spans(getattr(self, WEEKDAYS[day.weekday()]), WEEKDAYS[day.weekday()])


class Window(msgspec.Struct, frozen=True, kw_only=True):
    """The decision for one callee at one moment.

    Allowed: ``until`` is when the first of its zones leaves its window (None: not
    within ``HORIZON``). Not allowed: ``opens`` is the first moment all its zones are
    inside a window (None: never within ``HORIZON``, or the zone is unknown).
    ``reason`` is "" when allowed, else "calling_hours" or "unknown_zone".
    """

    allowed: bool
    until: datetime | None = None
    opens: datetime | None = None
    reason: str = ""


def parse_calling_hours(data: object, where: str = "calling_hours") -> CallingHours:
    """``CallingHours`` from plain data (decoded JSON or TOML); raise ``ValueError``
    naming the bad field, e.g. ``calling_hours.monday[0]: end 07:00 is before ...``."""
    try:
        return msgspec.convert(data, CallingHours, strict=False)
    except msgspec.ValidationError as exc:
        message, at, path = str(exc).rpartition(" - at `$")
        if at:
            raise ValueError(f"{where}{path.removesuffix('`')}: {message}") from None
        # A check of __post_init__ names its own field first ("monday[0]: ...").
        separator = "." if _FIELD_FIRST.match(str(exc)) else ": "
        raise ValueError(f"{where}{separator}{exc}") from None


def is_known_zone(name: str) -> bool:
    """Whether ``name`` is a time zone of the IANA database (``America/New_York``)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def zone_in_target_data(data: str) -> str | None:
    """The explicit zone a target's ``data`` names: its ``timezone`` key when ``data``
    is a JSON object with a non-empty string there, else None."""
    if not data.lstrip().startswith("{"):
        return None
    try:
        decoded = json.loads(data)
    except ValueError:
        return None
    zone = decoded.get("timezone") if isinstance(decoded, dict) else None
    return zone if isinstance(zone, str) and zone else None


def check_zone_in_target_data(data: str) -> None:
    """Raise ``ValueError`` naming ``timezone`` when ``data`` is a JSON object whose
    ``timezone`` key is not an IANA zone name (a string; "" counts as absent)."""
    if not data.lstrip().startswith("{"):
        return
    try:
        decoded = json.loads(data)
    except ValueError:
        return
    if not isinstance(decoded, dict) or "timezone" not in decoded:
        return
    zone = decoded["timezone"]
    if not isinstance(zone, str):
        raise ValueError(f"timezone: {zone!r} is not a time zone name (like America/New_York)")
    if zone and not is_known_zone(zone):
        raise ValueError(
            f"timezone: {zone[:60]!r} is not an IANA time zone (like America/New_York)"
        )


def callee_zones(
    numbers: Sequence[str], data_zone: str | None, *, trust_data_zone: bool = False
) -> tuple[str, ...]:
    """Every IANA zone the callee may be in: the zones of each of ``numbers`` (the
    E.164 readings of what is dialed, ``+`` first) and the zone ``data_zone`` the
    target's data names. The data narrows the hours, never widens them: its zone is
    added to the number's, and replaces them only with ``trust_data_zone`` (or when
    the number has no zones to read: not a phone number).

    Empty means unknown: a data zone that is not an IANA zone (the data is wrong, and
    does not fall back to the number's), or no zone at all, or a zone the host's
    time-zone database lacks."""
    if data_zone and not is_known_zone(data_zone):
        return ()
    if data_zone and trust_data_zone:
        return (data_zone,)
    found: dict[str, None] = {}
    for number in numbers:
        zones = _number_zones(number)
        if zones is None:
            return (data_zone,) if data_zone else ()
        found.update(dict.fromkeys(zones))
    if data_zone:
        found[data_zone] = None
    return tuple(found)


@lru_cache(maxsize=65536)
def _number_zones(number: str) -> tuple[str, ...] | None:
    """The zones of an E.164 number, or None when it has none this host knows."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return None
    zones = tuple(phone_zones.time_zones_for_number(parsed))
    # A zone this host's database lacks would go unchecked: the callee is unknown.
    if not zones or not all(
        zone != phone_zones.UNKNOWN_TIMEZONE and is_known_zone(zone) for zone in zones
    ):
        return None
    return zones


def calling_window(hours: CallingHours, zones: Sequence[str], now: datetime) -> Window:
    """May a callee in all of ``zones`` be called at ``now`` (aware)? When ``zones`` is
    empty, ``hours.fallback_zone`` stands for it, or the call is refused."""
    if not zones:
        if not hours.fallback_zone:
            return Window(allowed=False, reason="unknown_zone")
        zones = (hours.fallback_zone,)
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    now = now.astimezone(UTC)
    # Most answers lie within two days; look further only when they do not.
    for days in (2, HORIZON.days):
        horizon = now + timedelta(days=days)
        common = _intersect(_allowed(hours, zone, now, horizon) for zone in zones)
        if not common:
            continue
        start, end = common[0]
        if start > now:
            return Window(allowed=False, opens=start, reason="calling_hours")
        if end < horizon:
            return Window(allowed=True, until=end)
        if days == HORIZON.days:
            return Window(allowed=True)
    return Window(allowed=False, reason="calling_hours")


def _allowed(hours: CallingHours, zone: str, now: datetime, horizon: datetime) -> list[_Interval]:
    """The instants from ``now`` to ``horizon`` inside a window in ``zone``, merged."""
    tz = ZoneInfo(zone)
    first = now.astimezone(tz).date() - timedelta(days=1)
    last = horizon.astimezone(tz).date() + timedelta(days=1)
    intervals: list[_Interval] = []
    for offset in range((last - first).days + 1):
        day = first + timedelta(days=offset)
        for start, end in _day_intervals(zone, day, hours.spans(day)):
            start, end = max(start, now), min(end, horizon)
            if start >= end:
                continue
            if intervals and start <= intervals[-1][1]:
                intervals[-1] = (intervals[-1][0], max(end, intervals[-1][1]))
            else:
                intervals.append((start, end))
    return intervals


@lru_cache(maxsize=8192)
def _day_intervals(
    zone: str, day: date, spans: tuple[tuple[int, int], ...]
) -> tuple[_Interval, ...]:
    """The instants of ``day`` in ``zone`` inside ``spans``, a window a DST change
    emptied left out."""
    tz = ZoneInfo(zone)
    midnight = datetime.combine(day, time())
    intervals = []
    for start_minute, end_minute in spans:
        start = _instant(midnight + timedelta(minutes=start_minute), tz, later=True)
        end = _instant(midnight + timedelta(minutes=end_minute), tz, later=False)
        if start < end:
            intervals.append((start, end))
    return tuple(intervals)


def _intersect(each_zone: Iterable[list[_Interval]]) -> list[_Interval]:
    """The instants inside every list of sorted, disjoint intervals."""
    common: list[_Interval] | None = None
    for intervals in each_zone:
        if common is None:
            common = intervals
            continue
        both: list[_Interval] = []
        i = j = 0
        while i < len(common) and j < len(intervals):
            start = max(common[i][0], intervals[j][0])
            end = min(common[i][1], intervals[j][1])
            if start < end:
                both.append((start, end))
            if common[i][1] < intervals[j][1]:
                i += 1
            else:
                j += 1
        common = both
    return common or []


def _instant(wall: datetime, zone: ZoneInfo, *, later: bool) -> datetime:
    """The UTC instant at which the wall clock of ``zone`` shows ``wall`` (naive).

    Repeated (fall back): the later occurrence if ``later``, else the earlier. Skipped
    (spring forward): the change itself, the first instant whose wall time is past it.
    """
    earlier = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    other = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if earlier == other:
        return earlier
    if earlier.astimezone(zone).replace(tzinfo=None) == wall:
        return other if later else earlier
    # Skipped: the wall time is before ``wall`` up to the change and past it after.
    low, high = min(earlier, other), max(earlier, other)
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        middle = middle.replace(microsecond=0)
        if middle.astimezone(zone).replace(tzinfo=None) > wall:
            high = middle
        else:
            low = middle
    return high


@lru_cache(maxsize=256)
def _spans(windows: tuple[str, ...], day: str) -> tuple[tuple[int, int], ...]:
    """Parse one weekday's windows into sorted [start, end) minutes; raise ValueError
    naming ``day[index]`` when one is malformed, empty or overlaps another."""
    parsed: list[tuple[int, int, int]] = []
    for index, text in enumerate(windows):
        field = f"{day}[{index}]"
        match = _WINDOW_TEXT.match(text)
        if match is None:
            raise ValueError(f"{field}: {text!r} is not a window HH:MM-HH:MM")
        start_hour, start_minute, end_hour, end_minute = (int(part) for part in match.groups())
        start = _minutes(start_hour, start_minute, field, allow_midnight=False)
        end = _minutes(end_hour, end_minute, field, allow_midnight=True)
        if end < start:
            raise ValueError(f"{field}: end {_clock(end)} is before start {_clock(start)}")
        if end == start:
            raise ValueError(f"{field}: end {_clock(end)} is the start: the window is empty")
        parsed.append((start, end, index))
    parsed.sort()
    for earlier, later in pairwise(parsed):
        if later[0] < earlier[1]:
            # Name the window listed last: the one added to a list that was fine.
            culprit, other = sorted((earlier, later), key=lambda window: window[2])[::-1]
            raise ValueError(
                f"{day}[{culprit[2]}]: {_clock(culprit[0])}-{_clock(culprit[1])}"
                f" overlaps {_clock(other[0])}-{_clock(other[1])}"
            )
    return tuple((start, end) for start, end, _ in parsed)


def _minutes(hour: int, minute: int, field: str, *, allow_midnight: bool) -> int:
    if minute > 59 or hour > 24 or (hour == 24 and (minute or not allow_midnight)):
        raise ValueError(f"{field}: {hour:02}:{minute:02} is not a time of day")
    return hour * 60 + minute


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02}:{minutes % 60:02}"


__all__ = [
    "DEFAULT_WINDOWS",
    "HORIZON",
    "WEEKDAYS",
    "CallingHours",
    "Window",
    "callee_zones",
    "calling_window",
    "check_zone_in_target_data",
    "is_known_zone",
    "parse_calling_hours",
    "zone_in_target_data",
]
