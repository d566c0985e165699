"""The do-not-call list cannot be dialed around (issue 26): every destination is checked
as the number the trunk dials, and a claim records the numbers it skipped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialerd.core import dialed
from dialerd.core.hours import CallingHours
from dialerd.core.targets import (
    CallingRules,
    Claim,
    Held,
    NumberState,
    Placement,
    Queue,
    decide_claim,
    place_new,
    with_skipped,
)
from dialerd.model import (
    Address,
    AddressType,
    OutdialTarget,
    SkippedDestination,
    TargetStatus,
    format_time,
)

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # 10:00 in New York, 16:00 in Paris
LISTED = "+15557654322"
LIMITS = (2, 2, 2, 0, 0)


def contact(*destinations: Address, data: str = "") -> OutdialTarget:
    return OutdialTarget.fresh("outdial", destinations, format_time(NOW), data=data)


def sip(target: str) -> Address:
    return Address(type=AddressType.SIP, target=target)


def tel(target: str) -> Address:
    return Address(type=AddressType.TEL, target=target)


@pytest.mark.parametrize(
    "written",
    [
        "+15557654322",
        "15557654322",
        "sip:15557654322@carrier.example",
        "sips:+1 (555) 765-4322@carrier.example;user=phone",
        "tel:+1-555-765-4322",
        "*6715557654322",
        "0015557654322",
        "01115557654322",
        "+1.555.765.4322",
    ],
)
def test_every_way_of_writing_a_number_reads_as_its_e164_form(written: str) -> None:
    assert LISTED in dialed.readings(written)


def test_a_national_number_reads_under_the_country_of_the_caller_id() -> None:
    region = dialed.region_of(tel("+442071838750"))
    assert region == "GB"
    assert dialed.readings("020 7183 8750", region) == ("+442071838750",)
    assert "+442071838750" not in dialed.readings("020 7183 8750", None)
    assert dialed.region_of(tel("+15550000000")) == "US"
    assert dialed.region_of(sip("desk@example.org")) is None


@pytest.mark.parametrize("written", ["alice", "jo@example.org", "1001", ""])
def test_what_is_no_phone_number_is_kept_as_written(written: str) -> None:
    assert dialed.readings(written) == (written,)


def states(*listed: str) -> dict[str, NumberState]:
    return {number: NumberState(listed=True) for number in listed}


def test_a_sip_twin_of_a_listed_number_is_never_dialed() -> None:
    twin = contact(sip("sip:15557654322@carrier.example"))
    decision = decide_claim(twin, place_new(twin), LIMITS, NOW, numbers=states(LISTED))
    assert isinstance(decision, Placement)
    assert (decision.status, decision.held, decision.skipped) == (
        TargetStatus.DONE,
        Held.DNC,
        (0,),
    )


def test_a_claim_names_the_listed_numbers_it_stepped_over() -> None:
    target = contact(sip("15557654322"), tel("+15551230001"), tel("+15551230002"))
    decision = decide_claim(target, place_new(target), LIMITS, NOW, numbers=states(LISTED))
    assert decision == Claim(slot=1, try_count=1, skipped=(0,))
    recorded = with_skipped(target, decision.skipped)
    assert recorded.skipped_destinations == (SkippedDestination(destination_index=0, reason="dnc"),)
    shown = msgspec.json.decode(msgspec.json.encode(recorded))
    assert shown["skipped_destinations"] == [{"destination_index": 0, "reason": "dnc"}]
    # Nothing skipped: the field is absent, the reference shape unchanged.
    assert "skipped_destinations" not in msgspec.json.decode(msgspec.json.encode(target))


def test_a_listed_number_not_reached_yet_is_not_called_skipped() -> None:
    target = contact(tel("+15551230001"), sip("15557654322"))
    decision = decide_claim(target, place_new(target), LIMITS, NOW, numbers=states(LISTED))
    assert decision == Claim(slot=0, try_count=1)


def test_a_lock_on_any_reading_holds_the_number() -> None:
    until = NOW + timedelta(hours=72)
    target = contact(sip("sip:15557654322@carrier.example"))
    decision = decide_claim(
        target,
        place_new(target),
        LIMITS,
        NOW,
        rules=CallingRules(abandoned_lockout=timedelta(hours=72)),
        numbers={LISTED: NumberState(locked_until=until)},
    )
    assert isinstance(decision, Placement)
    assert (decision.queue, decision.held, decision.due) == (
        Queue.WAITING,
        Held.ABANDONED_LOCKOUT,
        until,
    )


def test_a_zone_in_the_data_cannot_widen_the_numbers_hours() -> None:
    rules = CallingRules(hours=CallingHours())
    night = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # 04:00 in New York, 10:00 in Paris
    paris = '{"timezone": "Europe/Paris"}'
    target = contact(tel("+12125551234"), data=paris)
    decision = decide_claim(target, place_new(target), LIMITS, night, rules=rules)
    assert isinstance(decision, Placement)
    assert decision.held == Held.CALLING_HOURS
    # 08:00 in New York: both clocks allow.
    assert decision.due == datetime(2026, 3, 2, 13, 0, tzinfo=UTC)
    # The sip twin of the same number is held the same way.
    twin = contact(sip("12125551234"), data=paris)
    assert decide_claim(twin, place_new(twin), LIMITS, night, rules=rules) == decision
    # An operator who trusts the lists' zones has the data's zone alone.
    trusting = CallingRules(hours=CallingHours(trust_data_zone=True))
    assert decide_claim(target, place_new(target), LIMITS, night, rules=trusting) == Claim(
        slot=0, try_count=1
    )


def _parsed_reading(text: str) -> list[str]:
    """What ``readings`` finds for an E.164 text by parsing it (no quick path)."""
    try:
        parsed = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        return []
    if not phonenumbers.is_possible_number(parsed):
        return []
    return [phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)]


@settings(max_examples=3000, deadline=None)
@given(
    st.one_of(
        st.text("0123456789", min_size=1, max_size=19),
        st.tuples(
            st.sampled_from(sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)),
            st.text("0123456789", max_size=16),
        ).map(lambda pair: f"{pair[0]}{pair[1]}"),
    )
)
def test_an_e164_number_reads_as_phonenumbers_parses_it(digits: str) -> None:
    """The readings of ``+<digits>`` (decided without parsing in the common case) are
    what parsing it finds: the claims' do-not-call, lockout and daily checks see the
    same numbers."""
    number = f"+{digits}"
    dialed.readings.cache_clear()
    assert list(dialed.readings(number)) == (_parsed_reading(number) or [number])
