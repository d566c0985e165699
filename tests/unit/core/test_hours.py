"""Calling hours in the callee's local time: zones, multi-zone numbers, DST, skips.

Expected moments are worked out by hand from the zones' offsets (New York EST -5,
EDT -4 from 2026-03-08 07:00 UTC to 2026-11-01 06:00 UTC; Los Angeles PST -8, PDT -7).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import cache
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialerd.core.hours import (
    HORIZON,
    WEEKDAYS,
    CallingHours,
    Window,
    callee_zones,
    calling_window,
    parse_calling_hours,
    zone_in_target_data,
)

NEW_YORK = ("America/New_York",)
LOS_ANGELES = ("America/Los_Angeles",)
DEFAULT = CallingHours()


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def every_day(*windows: str) -> dict[str, tuple[str, ...]]:
    return dict.fromkeys(WEEKDAYS, windows)


def closed(opens: datetime | None) -> Window:
    return Window(allowed=False, opens=opens, reason="calling_hours")


def open_until(until: datetime | None) -> Window:
    return Window(allowed=True, until=until)


# The rules: one zone.


def test_new_york_before_eight_opens_at_eight_local() -> None:
    # 2026-03-06 is a Friday, EST: 08:00 is 13:00 UTC, 21:00 is 02:00 UTC next day.
    assert calling_window(DEFAULT, NEW_YORK, utc(2026, 3, 6, 12, 59)) == closed(utc(2026, 3, 6, 13))
    assert calling_window(DEFAULT, NEW_YORK, utc(2026, 3, 6, 13)) == open_until(utc(2026, 3, 7, 2))


def test_window_end_is_excluded_and_the_next_day_opens() -> None:
    assert calling_window(DEFAULT, NEW_YORK, utc(2026, 3, 7, 2)) == closed(utc(2026, 3, 7, 13))


def test_window_crossing_midnight_utc() -> None:
    # Los Angeles in June (PDT): 08:00-21:00 local is 15:00-04:00 UTC.
    assert calling_window(DEFAULT, LOS_ANGELES, utc(2026, 6, 14, 23, 30)) == open_until(
        utc(2026, 6, 15, 4)
    )
    assert calling_window(DEFAULT, LOS_ANGELES, utc(2026, 6, 15, 3, 30)) == open_until(
        utc(2026, 6, 15, 4)
    )
    # 04:30 UTC is 21:30 the day before in Los Angeles: closed until 08:00 local.
    assert calling_window(DEFAULT, LOS_ANGELES, utc(2026, 6, 15, 4, 30)) == closed(
        utc(2026, 6, 15, 15)
    )


def test_weekday_windows_are_the_callees_weekday() -> None:
    # 2026-06-15 01:00 UTC is Sunday 18:00 in Los Angeles, Monday 01:00 in UTC.
    hours = CallingHours(sunday=("09:00-17:00",), monday=("08:00-21:00",))
    assert calling_window(hours, LOS_ANGELES, utc(2026, 6, 15, 1)) == closed(utc(2026, 6, 15, 15))


def test_several_windows_a_day_and_adjacent_windows_merge() -> None:
    hours = CallingHours(**every_day("09:00-12:00", "12:00-13:00", "14:00-18:00"))
    # London in January is UTC.
    london = ("Europe/London",)
    assert calling_window(hours, london, utc(2026, 1, 5, 10)) == open_until(utc(2026, 1, 5, 13))
    assert calling_window(hours, london, utc(2026, 1, 5, 13, 30)) == closed(utc(2026, 1, 5, 14))


def test_an_empty_weekday_skips_to_the_next_allowed_day() -> None:
    # 2026-01-10 is a Saturday.
    hours = CallingHours(saturday=(), sunday=())
    assert calling_window(hours, ("Europe/London",), utc(2026, 1, 10, 10)) == closed(
        utc(2026, 1, 12, 8)
    )


def test_a_whole_day_window_never_ends_within_the_horizon() -> None:
    hours = CallingHours(**every_day("00:00-24:00"))
    assert calling_window(hours, NEW_YORK, utc(2026, 3, 8, 7)) == open_until(None)


# Skip dates are the callee's local dates.


def test_skip_date_closes_the_whole_local_day() -> None:
    hours = CallingHours(skip_dates=(date(2026, 12, 25),))
    # 15:00 UTC is 10:00 EST on the 25th.
    assert calling_window(hours, NEW_YORK, utc(2026, 12, 25, 15)) == closed(utc(2026, 12, 26, 13))


def test_skip_date_follows_the_callees_date_not_utcs() -> None:
    hours = CallingHours(skip_dates=(date(2026, 12, 25),))
    # 2026-12-26 02:00 UTC is still the 25th (18:00 PST) in Los Angeles.
    assert calling_window(hours, LOS_ANGELES, utc(2026, 12, 26, 2)) == closed(utc(2026, 12, 26, 16))
    # 2026-12-25 01:00 UTC is still the 24th (20:00 EST) in New York: allowed until 21:00.
    assert calling_window(hours, NEW_YORK, utc(2026, 12, 25, 1)) == open_until(utc(2026, 12, 25, 2))


def test_every_day_skipped_is_never() -> None:
    start = date(2026, 1, 1)
    every = tuple(start + timedelta(days=n) for n in range(20))
    assert calling_window(CallingHours(skip_dates=every), NEW_YORK, utc(2026, 1, 1, 15)) == closed(
        None
    )


def test_no_window_any_weekday_is_never() -> None:
    assert calling_window(CallingHours(**every_day()), NEW_YORK, utc(2026, 1, 1, 15)) == closed(
        None
    )


def test_an_opening_just_inside_the_horizon_is_found() -> None:
    # Skipped 2026-01-01 .. 2026-01-14 (local London = UTC): 2026-01-15 08:00 opens,
    # 13 days 22 hours after 10:00 on the 1st.
    skipped = tuple(date(2026, 1, 1) + timedelta(days=n) for n in range(14))
    now = utc(2026, 1, 1, 10)
    window = calling_window(CallingHours(skip_dates=skipped), ("Europe/London",), now)
    assert window == closed(utc(2026, 1, 15, 8))
    assert window.opens is not None
    assert window.opens - now < HORIZON


# Daylight-saving changes: windows are wall time on the change day too.


def test_spring_forward_day_opens_at_eight_edt() -> None:
    # 2026-03-08: EDT from 07:00 UTC, so 08:00 local is 12:00 UTC, not 13:00.
    assert calling_window(DEFAULT, NEW_YORK, utc(2026, 3, 8, 11, 59)) == closed(utc(2026, 3, 8, 12))
    assert calling_window(DEFAULT, NEW_YORK, utc(2026, 3, 8, 12, 59)) == open_until(
        utc(2026, 3, 9, 1)
    )


def test_the_day_before_spring_forward_closes_at_nine_est() -> None:
    assert calling_window(DEFAULT, NEW_YORK, utc(2026, 3, 8, 1, 30)) == open_until(
        utc(2026, 3, 8, 2)
    )


def test_fall_back_day_opens_at_eight_est() -> None:
    # 2026-11-01: EST from 06:00 UTC, so 08:00 local is 13:00 UTC.
    assert calling_window(DEFAULT, NEW_YORK, utc(2026, 11, 1, 12, 30)) == closed(
        utc(2026, 11, 1, 13)
    )
    # The evening before is EDT: 21:00 local is 01:00 UTC.
    assert calling_window(DEFAULT, NEW_YORK, utc(2026, 11, 1, 0, 30)) == open_until(
        utc(2026, 11, 1, 1)
    )


def test_start_in_the_skipped_hour_opens_at_the_change() -> None:
    # 02:30 does not exist on 2026-03-08 in New York: 01:59 EST is followed by 03:00
    # EDT (07:00 UTC), the first instant the wall clock is past 02:30.
    hours = CallingHours(sunday=("02:30-21:00",))
    assert calling_window(hours, NEW_YORK, utc(2026, 3, 8, 6, 59)) == closed(utc(2026, 3, 8, 7))


def test_end_in_the_skipped_hour_ends_at_the_change() -> None:
    hours = CallingHours(sunday=("00:00-02:30", "05:00-21:00"))
    # 06:30 UTC is 01:30 EST: allowed until the clock jumps to 03:00 EDT.
    assert calling_window(hours, NEW_YORK, utc(2026, 3, 8, 6, 30)) == open_until(utc(2026, 3, 8, 7))


def test_start_in_the_repeated_hour_is_its_later_occurrence() -> None:
    # 2026-11-01 01:00-02:00 New York happens twice: EDT (05:00-06:00 UTC), then EST
    # (06:00-07:00 UTC). 05:45 UTC reads 01:45 but the clock will read 01:00 again.
    hours = CallingHours(sunday=("01:30-21:00",))
    assert calling_window(hours, NEW_YORK, utc(2026, 11, 1, 5, 45)) == closed(
        utc(2026, 11, 1, 6, 30)
    )


def test_end_in_the_repeated_hour_is_its_earlier_occurrence() -> None:
    hours = CallingHours(sunday=("00:00-01:30", "09:00-21:00"))
    assert calling_window(hours, NEW_YORK, utc(2026, 11, 1, 5)) == open_until(
        utc(2026, 11, 1, 5, 30)
    )


# Numbers spanning several zones: allowed only where every zone allows.


def test_two_zones_allow_only_the_intersection() -> None:
    both = NEW_YORK + LOS_ANGELES
    # June: New York 12:00-01:00 UTC, Los Angeles 15:00-04:00 UTC.
    assert calling_window(DEFAULT, both, utc(2026, 6, 15, 14)) == closed(utc(2026, 6, 15, 15))
    assert calling_window(DEFAULT, both, utc(2026, 6, 15, 20)) == open_until(utc(2026, 6, 16, 1))
    assert calling_window(DEFAULT, both, utc(2026, 6, 16, 2)) == closed(utc(2026, 6, 16, 15))


def test_russia_from_kaliningrad_to_kamchatka() -> None:
    # Kaliningrad +2: 06:00-19:00 UTC; Kamchatka +12: 20:00-09:00 UTC. Common: 06-09.
    zones = ("Europe/Kaliningrad", "Asia/Kamchatka")
    assert calling_window(DEFAULT, zones, utc(2026, 1, 15, 5)) == closed(utc(2026, 1, 15, 6))
    assert calling_window(DEFAULT, zones, utc(2026, 1, 15, 7)) == open_until(utc(2026, 1, 15, 9))
    assert calling_window(DEFAULT, zones, utc(2026, 1, 15, 10)) == closed(utc(2026, 1, 16, 6))


def test_zones_with_no_common_window_are_never() -> None:
    # Guam +10: 22:00-11:00 UTC; Pago Pago -11: 19:00-08:00 UTC; Reykjavik +0:
    # 08:00-21:00 UTC. Nothing is inside all three.
    zones = ("Pacific/Guam", "Pacific/Pago_Pago", "Atlantic/Reykjavik")
    assert calling_window(DEFAULT, zones, utc(2026, 1, 15, 7)) == closed(None)


def test_australian_toll_free_number_is_called_while_all_its_zones_allow() -> None:
    zones = callee_zones(("+611800123456",), None)
    assert {"Australia/Perth", "Australia/Sydney", "Australia/Lord_Howe"} <= set(zones)
    # January (summer DST in the east): Cocos +6:30 opens 01:30 UTC, the latest
    # opening; Sydney and Lord Howe +11 close at 10:00 UTC, the earliest closing.
    assert "Indian/Cocos" in zones
    assert calling_window(DEFAULT, zones, utc(2026, 1, 15, 1)) == closed(utc(2026, 1, 15, 1, 30))
    assert calling_window(DEFAULT, zones, utc(2026, 1, 15, 9)) == open_until(utc(2026, 1, 15, 10))


# Where the zones come from.


def test_a_number_with_an_area_code_has_its_zone() -> None:
    assert callee_zones(("+12125551234",), None) == NEW_YORK
    assert callee_zones(("+13105551234",), None) == LOS_ANGELES
    assert callee_zones(("+442079460000",), None) == ("Europe/London",)


def test_toll_free_numbers_span_many_zones() -> None:
    us = callee_zones(("+18005551234",), None)
    assert {"America/New_York", "America/Los_Angeles", "Pacific/Honolulu"} <= set(us)
    russia = callee_zones(("+78001234567",), None)
    assert {"Europe/Moscow", "Asia/Kamchatka"} <= set(russia)


def test_a_zone_in_the_data_narrows_the_numbers_zones_and_never_widens_them() -> None:
    # A New York number whose list says "Paris": both clocks must allow the call.
    both = callee_zones(("+12125551234",), "Europe/Paris")
    assert set(both) == {"America/New_York", "Europe/Paris"}
    # 15:00 UTC: 16:00 in Paris, 10:00 in New York; 22:30 UTC: 23:30 in Paris.
    assert calling_window(DEFAULT, both, utc(2026, 1, 15, 15)).allowed
    assert not calling_window(DEFAULT, both, utc(2026, 1, 15, 22, 30)).allowed
    # The data cannot make a New York night look like a Paris day.
    night = utc(2026, 1, 15, 9)  # 10:00 in Paris, 04:00 in New York
    assert calling_window(DEFAULT, ("Europe/Paris",), night).allowed
    assert not calling_window(DEFAULT, both, night).allowed
    assert set(callee_zones(("+18005551234",), "America/Chicago")) >= {
        "America/Chicago",
        "America/New_York",
        "Pacific/Honolulu",
    }


def test_an_operator_who_trusts_the_data_has_its_zone_replace_the_numbers() -> None:
    assert callee_zones(("+12125551234",), "Europe/Paris", trust_data_zone=True) == (
        "Europe/Paris",
    )
    assert callee_zones(("+12125551234",), None, trust_data_zone=True) == NEW_YORK
    assert "trust_data_zone" in CallingHours.__struct_fields__


def test_a_target_that_is_no_phone_number_has_the_datas_zone() -> None:
    assert callee_zones(("alice",), "Europe/Paris") == ("Europe/Paris",)
    assert callee_zones(("alice",), None) == ()


def test_every_reading_of_a_number_counts() -> None:
    zones = callee_zones(("+12125551234", "+442079460000"), None)
    assert set(zones) == {"America/New_York", "Europe/London"}


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "america/new_york", "../etc", "/etc/x"])
def test_an_invalid_explicit_zone_is_unknown(zone: str) -> None:
    assert callee_zones(("+12125551234",), zone) == ()


@pytest.mark.parametrize("number", ["+80012345678", "+999", "12125551234", "", "not a number"])
def test_a_number_without_a_zone_is_unknown(number: str) -> None:
    assert callee_zones((number,), None) == ()


def test_empty_explicit_zone_means_none_given() -> None:
    assert callee_zones(("+12125551234",), "") == NEW_YORK


@pytest.mark.parametrize(
    ("data", "zone"),
    [
        ('{"timezone": "America/Chicago", "crm": 7}', "America/Chicago"),
        ('  {"timezone": "Mars/Base"}', "Mars/Base"),
        ('{"timezone": ""}', None),
        ('{"timezone": 5}', None),
        ('{"tz": "America/Chicago"}', None),
        ('["America/Chicago"]', None),
        ("{not json", None),
        ("plain words", None),
        ("", None),
    ],
)
def test_zone_in_target_data(data: str, zone: str | None) -> None:
    assert zone_in_target_data(data) == zone


def test_unknown_zone_is_refused_without_a_fallback() -> None:
    assert calling_window(DEFAULT, (), utc(2026, 1, 15, 15)) == Window(
        allowed=False, reason="unknown_zone"
    )
    assert calling_window(CallingHours(fallback_zone=""), (), utc(2026, 1, 15, 15)).reason == (
        "unknown_zone"
    )


def test_unknown_zone_uses_the_fallback_zone() -> None:
    hours = CallingHours(fallback_zone="Europe/London")
    assert calling_window(hours, (), utc(2026, 1, 15, 7)) == closed(utc(2026, 1, 15, 8))
    assert calling_window(hours, (), utc(2026, 1, 15, 20)) == open_until(utc(2026, 1, 15, 21))
    # A known zone is used as it is, the fallback only for unknown ones.
    assert calling_window(hours, NEW_YORK, utc(2026, 1, 15, 20)) == open_until(utc(2026, 1, 16, 2))


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError, match="aware"):
        calling_window(DEFAULT, NEW_YORK, datetime(2026, 1, 15, 12))


def test_now_in_another_offset_is_the_same_instant() -> None:
    now = utc(2026, 3, 6, 12, 59).astimezone(ZoneInfo("Asia/Tokyo"))
    assert calling_window(DEFAULT, NEW_YORK, now) == closed(utc(2026, 3, 6, 13))


# Parsing from plain data: errors name the field.


def test_parse_gives_the_defaults_for_an_empty_table() -> None:
    hours = parse_calling_hours({})
    assert hours == DEFAULT
    assert hours.monday == ("08:00-21:00",)
    assert hours.fallback_zone is None


def test_parse_reads_windows_dates_and_fallback() -> None:
    hours = parse_calling_hours(
        {
            "saturday": ["10:00-14:00"],
            "sunday": [],
            "skip_dates": ["2026-12-25"],
            "fallback_zone": "Europe/London",
        }
    )
    assert hours.saturday == ("10:00-14:00",)
    assert hours.sunday == ()
    assert hours.skip_dates == (date(2026, 12, 25),)
    assert hours.fallback_zone == "Europe/London"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"monday": ["08:00-07:00"]}, "calling_hours.monday[0]: end 07:00 is before start 08:00"),
        ({"monday": ["08:00-08:00"]}, "calling_hours.monday[0]: end 08:00 is the start"),
        ({"friday": ["8-21"]}, "calling_hours.friday[0]: '8-21' is not a window HH:MM-HH:MM"),
        ({"friday": ["08:00-24:30"]}, "calling_hours.friday[0]: 24:30 is not a time of day"),
        ({"friday": ["24:00-24:00"]}, "calling_hours.friday[0]: 24:00 is not a time of day"),
        ({"friday": ["08:60-09:00"]}, "calling_hours.friday[0]: 08:60 is not a time of day"),
        (
            {"tuesday": ["08:00-11:00", "10:00-12:00"]},
            "calling_hours.tuesday[1]: 10:00-12:00 overlaps 08:00-11:00",
        ),
        (
            {"tuesday": ["10:00-12:00", "08:00-11:00"]},
            "calling_hours.tuesday[1]: 08:00-11:00 overlaps 10:00-12:00",
        ),
        ({"monday": "08:00-21:00"}, "calling_hours.monday: Expected `array`, got `str`"),
        ({"skip_dates": ["2026-02-30"]}, "calling_hours.skip_dates[0]: Invalid"),
        (
            {"fallback_zone": "Mars/Base"},
            "calling_hours.fallback_zone: 'Mars/Base' is not an IANA time zone",
        ),
        ({"mondy": []}, "calling_hours: Object contains unknown field `mondy`"),
    ],
)
def test_parse_errors_name_the_field(data: object, message: str) -> None:
    with pytest.raises(ValueError, match=r"^calling_hours") as raised:
        parse_calling_hours(data)
    assert str(raised.value).startswith(message)


def test_a_window_may_end_at_midnight() -> None:
    hours = parse_calling_hours({"friday": ["18:00-24:00"], "saturday": ["00:00-02:00"]})
    # London in January is UTC: Friday 2026-01-16 18:00 to Saturday 02:00 is one window.
    assert calling_window(hours, ("Europe/London",), utc(2026, 1, 16, 23)) == open_until(
        utc(2026, 1, 17, 2)
    )


# Properties over many zones, instants and hours.

ZONES = st.sampled_from(
    [
        "America/New_York",
        "America/Los_Angeles",
        "America/St_Johns",
        "America/Santiago",
        "Europe/London",
        "Europe/Dublin",
        "Australia/Lord_Howe",
        "Australia/Adelaide",
        "Asia/Kolkata",
        "Asia/Kathmandu",
        "Pacific/Chatham",
        "Pacific/Apia",
        "Asia/Kamchatka",
        "Africa/Casablanca",
    ]
)
HOURS = st.sampled_from(
    [
        DEFAULT,
        CallingHours(sunday=(), saturday=("10:00-14:00",)),
        CallingHours(**every_day("00:00-02:30", "03:00-08:00", "18:00-24:00")),
        CallingHours(**every_day("01:30-02:15")),
        CallingHours(skip_dates=(date(2026, 3, 8), date(2026, 10, 4), date(2026, 11, 1))),
    ]
)
INSTANTS = st.datetimes(
    min_value=datetime(2025, 12, 1), max_value=datetime(2027, 2, 1), timezones=st.just(UTC)
)


def inside_a_window(hours: CallingHours, zone: str, moment: datetime) -> bool:
    """The callee's wall clock at ``moment`` reads a time inside a window of that date."""
    local = moment.astimezone(ZoneInfo(zone))
    minutes = local.hour * 60 + local.minute + local.second / 60
    return any(start <= minutes < end for start, end in hours.spans(local.date()))


@settings(max_examples=300, deadline=None)
@given(hours=HOURS, zones=st.lists(ZONES, min_size=1, max_size=3, unique=True), now=INSTANTS)
def test_decisions_agree_with_the_callees_wall_clocks(
    hours: CallingHours, zones: list[str], now: datetime
) -> None:
    window = calling_window(hours, zones, now)
    if window.allowed:
        assert window.reason == ""
        assert window.opens is None
        assert all(inside_a_window(hours, zone, now) for zone in zones)
        if window.until is not None:
            assert window.until > now
            last = window.until - timedelta(seconds=1)
            assert all(inside_a_window(hours, zone, last) for zone in zones)
            assert not calling_window(hours, zones, window.until).allowed
    else:
        assert window.reason == "calling_hours"
        assert window.until is None
        if window.opens is not None:
            assert now < window.opens <= now + HORIZON
            assert calling_window(hours, zones, window.opens).allowed
            assert all(inside_a_window(hours, zone, window.opens) for zone in zones)
            assert not calling_window(hours, zones, window.opens - timedelta(seconds=1)).allowed


@settings(max_examples=50, deadline=None)
@given(now=INSTANTS)
def test_us_toll_free_numbers_are_called_only_inside_every_zones_hours(now: datetime) -> None:
    zones = callee_zones(("+18005551234",), None)
    window = calling_window(DEFAULT, zones, now)
    moment = now if window.allowed else window.opens
    if moment is not None:
        assert all(inside_a_window(DEFAULT, zone, moment) for zone in zones)


@cache
def dst_changes(zone: str) -> tuple[datetime, ...]:
    """The instants of 2026 at which ``zone`` changes its offset (to the hour)."""
    tz = ZoneInfo(zone)
    hours = [utc(2026, 1, 1, 0) + timedelta(hours=n) for n in range(365 * 24)]
    return tuple(
        later
        for earlier, later in pairwise(hours)
        if earlier.astimezone(tz).utcoffset() != later.astimezone(tz).utcoffset()
    )


@settings(max_examples=300, deadline=None)
@given(
    hours=HOURS,
    zone=ZONES.filter(lambda zone: bool(dst_changes(zone))),
    change=st.integers(min_value=0, max_value=1),
    minutes=st.integers(min_value=-240, max_value=240),
)
def test_decisions_near_dst_changes_agree_with_the_wall_clock(
    hours: CallingHours, zone: str, change: int, minutes: int
) -> None:
    changes = dst_changes(zone)
    now = changes[change % len(changes)] + timedelta(minutes=minutes)
    window = calling_window(hours, (zone,), now)
    moment = now if window.allowed else window.opens
    if moment is not None:
        assert inside_a_window(hours, zone, moment)
    if window.until is not None:
        assert inside_a_window(hours, zone, window.until - timedelta(seconds=1))
        assert not calling_window(hours, (zone,), window.until).allowed
