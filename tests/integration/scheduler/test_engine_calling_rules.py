"""Campaigns under the calling rules for two simulated days (issue 14's acceptance):
callees are called only while the hours hold in every one of their zones, a
do-not-call number never, and every target the rules hold back names its reason and its
next time correctly at each step. On the fake clock; the two-day runs on SQLite only
(the rules are decided in ``dialerd.core``, the same code on both stores; what each store
keeps of them, holds, due times and do-not-call numbers, is judged on both by the store
conformance suite), the shorter ones on both stores."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec
import pytest

from dialerd.core.hours import CallingHours, callee_zones, zone_in_target_data
from dialerd.core.targets import CallingRules
from dialerd.model import (
    Address,
    AddressType,
    Campaign,
    DncNumber,
    HangupReason,
    OutdialTarget,
    TargetStatus,
    parse_time,
)
from tests.integration.conftest import EPOCH, StoreMaker, tel
from tests.integration.scheduler.engine_harness import CUSTOMER, World, engine_on

OPEN, CLOSE = 9, 17  # local hours, every day
STEP = 600.0  # seconds between checks
DAYS = 2
RETRY = timedelta(hours=2)
# The suite's time: a two-day run ticks some 3,000 times on the fake clock.
two_day_run = pytest.mark.parametrize("new_store", ["sqlite"], indirect=True)

HOURS = CallingHours(**{day: ("09:00-17:00",) for day in (
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"
)})  # fmt: skip


def zones_of(target: OutdialTarget) -> tuple[str, ...]:
    assert target.destination_0 is not None
    zones = callee_zones((target.destination_0.target,), zone_in_target_data(target.data))
    assert zones, target
    return zones


def inside_hours(moment: datetime, zones: tuple[str, ...]) -> bool:
    """Whether the wall clock of every zone reads OPEN:00 to CLOSE:00."""
    return all(OPEN <= moment.astimezone(ZoneInfo(zone)).hour < CLOSE for zone in zones)


def target(number: str, zone: str = "") -> OutdialTarget:
    fresh = OutdialTarget.fresh("", (tel(number),), "2026-03-01 00:00:00.000000", name=number)
    return msgspec.structs.replace(fresh, data=f'{{"timezone": "{zone}"}}' if zone else "")


async def check_step(
    world: World, campaign: Campaign, rows: list[OutdialTarget], listed: dict[str, datetime]
) -> None:
    """What must hold at every step of the run."""
    now = world.clock.now()
    by_id = {row.id: row for row in rows}
    calls = await world.calls_of(campaign)
    for call in calls:
        made = parse_time(call.tm_create)
        assert inside_hours(made, zones_of(by_id[call.outdial_target_id])), call
        listed_at = listed.get(call.destination.target)
        assert listed_at is None or made < listed_at, f"called {call.destination} after DNC"
    for row in rows:
        stored = await world.target(row)
        if stored.status != TargetStatus.IDLE or not stored.hold_reason:
            continue
        next_try = parse_time(stored.tm_next_try)
        if stored.hold_reason == "calling_hours":
            # Held until the hours open in all its zones: open then, shut a minute before,
            # and shut until then.
            zones = zones_of(row)
            assert inside_hours(next_try, zones), stored
            assert not inside_hours(next_try - timedelta(minutes=1), zones), stored
            assert next_try > now - timedelta(seconds=STEP), stored
            if now < next_try:
                assert not inside_hours(now, zones), stored
        else:
            assert stored.hold_reason == "retry_interval", stored
            last = max(
                (call for call in calls if call.outdial_target_id == row.id),
                key=lambda call: call.tm_create,
            )
            assert last.tm_update is not None
            assert next_try == parse_time(last.tm_update) + RETRY, stored


async def two_days(
    world: World,
    rows: list[OutdialTarget],
    *,
    listed_first: str,
    listed_later: str,
    tries: int = 3,
) -> tuple[Campaign, list[OutdialTarget]]:
    """Run a campaign over ``rows`` for two days, every call busy; one number on the
    do-not-call list from the start, another listed a day in."""
    campaign, _, rows = await world.campaign(
        targets=rows, max_try_counts=(tries,),
        try_interval_ms=int(RETRY.total_seconds() * 1000), queue=False,
    )  # fmt: skip
    await world.store.add_dnc_numbers(
        [DncNumber(customer_id=CUSTOMER, number=listed_first, tm_create="")]
    )
    listed = {listed_first: world.clock.now()}
    await world.run(campaign)
    for step in range(int(DAYS * 86400 / STEP)):
        for call_id in world.calls.ringing():
            await world.calls.end(call_id, HangupReason.BUSY)
        await world.advance(STEP)
        await check_step(world, campaign, rows, listed)
        if step == int(86400 / STEP):
            await world.store.add_dnc_numbers(
                [DncNumber(customer_id=CUSTOMER, number=listed_later, tm_create="")]
            )
            listed[listed_later] = world.clock.now()
    return campaign, rows


def engine(
    new_store: StoreMaker, tmp_path: Path, epoch: datetime = EPOCH
) -> AbstractAsyncContextManager[World]:
    """The engine under the calling hours, a tick a minute (two days: 2,880 ticks)."""
    return engine_on(
        new_store,
        tmp_path,
        calling_rules=CallingRules(hours=HOURS),
        tick_interval=60.0,
        lease_ttl=300.0,
        epoch=epoch,
    )


@two_day_run
async def test_two_days_across_five_zones_call_nobody_outside_hours_or_listed(
    new_store: StoreMaker, tmp_path: Path
) -> None:
    zones = (
        "America/Los_Angeles",
        "America/New_York",
        "Europe/London",
        "Asia/Tokyo",
        "Australia/Sydney",
    )
    rows = [target(f"+1555010{n}{k:02d}", zone) for n, zone in enumerate(zones) for k in range(2)]
    listed_first, listed_later = rows[0].destination_0, rows[5].destination_0
    assert listed_first is not None
    assert listed_later is not None
    async with engine(new_store, tmp_path) as world:
        campaign, rows = await two_days(
            world, rows, listed_first=listed_first.target, listed_later=listed_later.target
        )
        calls = await world.calls_of(campaign)
        assert rows[0].id not in {call.outdial_target_id for call in calls}
        assert (await world.target(rows[0])).hold_reason == "dnc"
        # Every other callee was reached inside its hours, three times (busy each time),
        # except the number listed a day in, which was tried only before that.
        for row in rows[1:]:
            tries = [call for call in calls if call.outdial_target_id == row.id]
            assert tries, row.data
            if row.id != rows[5].id:
                assert len(tries) == 3, (row.data, tries)


@two_day_run
async def test_a_daylight_saving_change_and_a_number_in_two_zones(
    new_store: StoreMaker, tmp_path: Path
) -> None:
    """Saturday 2026-03-07 noon UTC to Monday: New York moves its clocks on Sunday
    (09:00 is 14:00 UTC on Saturday, 13:00 UTC from Sunday); an Idaho number is in the
    Mountain and Pacific zones, so it is called only from 09:00 Pacific to 17:00
    Mountain."""
    rows = [
        target("+12125550100", "America/New_York"),
        target("+12085550100"),  # Boise and Los Angeles
        target("+12085550101"),
        target("+12125550199", "America/New_York"),
    ]
    async with engine(new_store, tmp_path, datetime(2026, 3, 7, 12, 0, tzinfo=UTC)) as world:
        campaign, rows = await two_days(
            world, rows, listed_first="+12085550101", listed_later="+12125550199", tries=5
        )
        calls = await world.calls_of(campaign)

        def made(row: OutdialTarget) -> list[tuple[int, int, int]]:
            return sorted(
                (moment.day, moment.hour, moment.minute)
                for moment in (
                    parse_time(call.tm_create) for call in calls if call.outdial_target_id == row.id
                )
            )

        # Saturday from 14:00 UTC (09:00 EST) every two hours until 22:00 UTC (17:00 EST);
        # Sunday's 09:00 EDT is 13:00 UTC.
        assert [(day, hour) for day, hour, _ in made(rows[0])] == [
            (7, 14), (7, 16), (7, 18), (7, 20), (8, 13)
        ]  # fmt: skip
        assert made(rows[0])[0][2] == 0  # called the minute its hours opened
        # Both zones are open from 09:00 Pacific (17:00 UTC, then 16:00 UTC in summer
        # time) until 17:00 Mountain (00:00 UTC, then 23:00 UTC).
        assert [(day, hour) for day, hour, _ in made(rows[1])] == [
            (7, 17), (7, 19), (7, 21), (7, 23), (8, 16)
        ]  # fmt: skip
        assert made(rows[2]) == []


async def test_an_abandoned_call_locks_its_number_out_of_every_campaign_of_the_customer(
    new_store: StoreMaker, tmp_path: Path
) -> None:
    """The engine ends a call abandoned: its number is not called again, by this campaign
    or another of the customer's (where it is written as a sip address), until the
    lockout has passed; then it is."""
    lockout = timedelta(hours=1)
    rules = CallingRules(abandoned_lockout=lockout)
    number = "+12125550170"
    async with engine_on(
        new_store, tmp_path, calling_rules=rules, tick_interval=60.0, lease_ttl=300.0
    ) as world:
        first, _, (row,) = await world.campaign(
            targets=[target(number)], max_try_counts=(3,), queue=False
        )
        twin = msgspec.structs.replace(
            target(number), destination_0=Address(type=AddressType.SIP, target=number[1:])
        )
        second, _, (twin_row,) = await world.campaign(
            targets=[twin], max_try_counts=(3,), queue=False
        )
        await world.run(first)
        (ringing,) = world.calls.ringing()
        await world.calls.answer(ringing)
        await world.advance(5)
        abandoned_at = world.clock.now()
        await world.calls.end(ringing, HangupReason.ABANDONED)
        await world.advance(1)
        await world.run(second)
        for _ in range(58):
            await world.advance(60)
            assert world.calls.ringing() == []
        unlocked = abandoned_at + lockout
        for row_ in (row, twin_row):
            stored = await world.target(row_)
            assert stored.hold_reason == "abandoned_lockout", stored
            assert parse_time(stored.tm_next_try) == unlocked
        await world.advance(180)
        # Nothing else was dialed before the lockout ended; both lists went on after it.
        calls = [*await world.calls_of(first), *await world.calls_of(second)]
        later = [call for call in calls if call.id != ringing]
        assert {call.campaign_id for call in later} == {first.id, second.id}, calls
        assert all(parse_time(call.tm_create) >= unlocked for call in later), calls
