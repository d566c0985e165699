"""A campaign under the calling rules for two simulated days (issue 14's acceptance):
callees in five time zones are called only inside their hours, a do-not-call number
never, and every target the rules hold back names its reason and its next time
correctly at each step. On both stores, on the fake clock."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec

from dialerd.core.hours import CallingHours
from dialerd.core.targets import CallingRules
from dialerd.model import Campaign, DncNumber, HangupReason, OutdialTarget, TargetStatus, parse_time
from tests.integration.conftest import EPOCH, StoreMaker, tel
from tests.integration.engine_harness import CUSTOMER, World, engine_on

ZONES = (
    "America/Los_Angeles",
    "America/New_York",
    "Europe/London",
    "Asia/Tokyo",
    "Australia/Sydney",
)
OPEN, CLOSE = 9, 17  # local hours, every day
STEP = 600.0  # seconds between checks
DAYS = 2
RETRY = timedelta(hours=2)
HOURS = CallingHours(**{day: ("09:00-17:00",) for day in (
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"
)})  # fmt: skip


def inside_hours(moment: datetime, zone: str) -> bool:
    local = moment.astimezone(ZoneInfo(zone))
    return OPEN <= local.hour < CLOSE


def targets() -> list[OutdialTarget]:
    rows = []
    for n, zone in enumerate(ZONES):
        for k in range(2):
            target = OutdialTarget.fresh(
                "", (tel(f"+1555010{n}{k:02d}"),), "2026-03-01 00:00:00.000000", name=zone
            )
            rows.append(msgspec.structs.replace(target, data=f'{{"timezone": "{zone}"}}'))
    return rows


async def check_step(
    world: World, campaign: Campaign, rows: list[OutdialTarget], listed: dict[str, datetime]
) -> None:
    """What must hold at every step of the run."""
    now = world.clock.now()
    zone_of = {row.id: row.name for row in rows}
    number_of = {row.id: row.destination_0.target for row in rows if row.destination_0}
    for call in await world.calls_of(campaign):
        made = parse_time(call.tm_create)
        assert inside_hours(made, zone_of[call.outdial_target_id]), (call, zone_of)
        listed_at = listed.get(number_of[call.outdial_target_id])
        assert listed_at is None or made < listed_at, f"called {call.destination} after DNC"
    for row in rows:
        target = await world.target(row)
        if target.status != TargetStatus.IDLE or not target.hold_reason:
            continue
        next_try = parse_time(target.tm_next_try)
        if target.hold_reason == "calling_hours":
            # Held until the callee's hours open: 09:00 local, and shut until then.
            local = next_try.astimezone(ZoneInfo(row.name))
            assert (local.hour, local.minute) == (OPEN, 0), target
            assert next_try > now - timedelta(seconds=STEP), target
            if now < next_try:
                assert not inside_hours(now, row.name), target
        else:
            assert target.hold_reason == "retry_interval", target
            last = max(
                (c for c in await world.calls_of(campaign)
                 if c.outdial_target_id == row.id),
                key=lambda c: c.tm_create,
            )  # fmt: skip
            assert last.tm_update is not None
            assert next_try == parse_time(last.tm_update) + RETRY, target


async def test_two_days_across_five_zones_call_nobody_outside_hours_or_listed(
    new_store: StoreMaker, tmp_path: Path
) -> None:
    rules = CallingRules(hours=HOURS)
    # A tick a minute: two days are 2,880 ticks, not 172,800.
    async with engine_on(
        new_store, tmp_path, calling_rules=rules, tick_interval=60.0, lease_ttl=300.0
    ) as world:
        rows = targets()
        campaign, _, rows = await world.campaign(
            targets=rows, max_try_counts=(3,), try_interval_ms=int(RETRY.total_seconds() * 1000),
            queue=False,
        )  # fmt: skip
        # One number is on the list from the start, one is listed a day in.
        early, late = rows[0].destination_0, rows[5].destination_0
        assert early is not None
        assert late is not None
        await world.store.add_dnc_numbers(
            [DncNumber(customer_id=CUSTOMER, number=early.target, tm_create="")]
        )
        listed = {early.target: EPOCH}
        await world.run(campaign)
        for step in range(int(DAYS * 86400 / STEP)):
            for call_id in world.calls.ringing():
                await world.calls.end(call_id, HangupReason.BUSY)
            await world.advance(STEP)
            await check_step(world, campaign, rows, listed)
            if step == int(86400 / STEP):
                await world.store.add_dnc_numbers(
                    [DncNumber(customer_id=CUSTOMER, number=late.target, tm_create="")]
                )
                listed[late.target] = world.clock.now()

        calls = await world.calls_of(campaign)
        dialed = {call.outdial_target_id for call in calls}
        assert rows[0].id not in dialed
        assert (await world.target(rows[0])).hold_reason == "dnc"
        # Every other callee was reached inside its hours, three times (busy each time),
        # except the number listed a day in, which was tried only before that.
        for row in rows[1:]:
            tries = [call for call in calls if call.outdial_target_id == row.id]
            assert tries, row.name
            if row.id != rows[5].id:
                assert len(tries) == 3, (row.name, tries)
