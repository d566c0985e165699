"""The calling rules a regulator asks for, applied by each store's claim through the core
(behaviour.md §10): calling hours in the callee's zone, do-not-call lists, the lockout
after an abandoned call and the attempts a number gets a day. A target they hold back
says why and until when, and holds up no other target."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import msgspec

from dialerd.core.hours import CallingHours
from dialerd.core.targets import CallingRules, RetryRule
from dialerd.model import (
    Address,
    AddressType,
    CampaigncallResult,
    DncNumber,
    OutdialTarget,
    SkippedDestination,
    TargetStatus,
)
from dialerd.store import AttemptPlan, Store
from tests.integration.conftest import Dialing

if TYPE_CHECKING:
    from datetime import datetime

    from tests.integration.conftest import Factory

# The tests' epoch is Monday 2026-03-02 09:00 UTC: 09:00 in London, 04:00 in New York.
NEW_YORK = '{"timezone": "America/New_York"}'
LONDON = '{"timezone": "Europe/London"}'
OFFICE_HOURS = CallingRules(hours=CallingHours())  # 08:00-21:00 every day


def in_zone(target: OutdialTarget, data: str) -> OutdialTarget:
    return msgspec.structs.replace(target, data=data)


def plan(dialing: Dialing, now: datetime, rules: CallingRules) -> AttemptPlan:
    return msgspec.structs.replace(dialing.plan(now), rules=rules)


async def claimed_target(
    store: Store, dialing: Dialing, now: datetime, rules: CallingRules
) -> str | None:
    call = await store.start_attempt(plan(dialing, now, rules))
    return None if call is None else call.outdial_target_id


async def held(store: Store, dialing: Dialing, target: OutdialTarget) -> tuple[str, str, str]:
    stored = await store.get_target(dialing.outdial.id, target.id)
    assert stored is not None
    return stored.status.value, stored.hold_reason, stored.tm_next_try


async def abandon_one(
    store: Store, dialing: Dialing, rules: CallingRules, claimed: datetime, ended: datetime
) -> None:
    """Claim the campaign's next target and end its call abandoned under ``rules``."""
    call = await store.start_attempt(plan(dialing, claimed, rules))
    assert call is not None
    await store.finish_attempt(
        call.id,
        CampaigncallResult.FAIL,
        "abandoned",
        RetryRule.of(dialing.outplan),
        ended,
        calling_rules=rules,
    )


async def test_a_callee_outside_its_hours_waits_for_them_and_holds_up_nobody(
    store: Store, make: Factory
) -> None:
    dialing = await make.dialing(store)
    new_york = in_zone(make.target(dialing.outdial.id, tm_create=make.stamp(0)), NEW_YORK)
    london = in_zone(make.target(dialing.outdial.id, tm_create=make.stamp(1)), LONDON)
    await store.create_targets([new_york, london])

    assert await claimed_target(store, dialing, make.at(10), OFFICE_HOURS) == london.id
    # 08:00 in New York is 13:00 UTC, four hours after the epoch.
    opens = make.stamp(4 * 3600)
    assert await held(store, dialing, new_york) == ("idle", "calling_hours", opens)
    counts = await store.target_counts(dialing.outdial.id, make.at(11))
    assert (counts.idle_waiting, counts.held) == (1, {"calling_hours": 1})
    assert await claimed_target(store, dialing, make.at(4 * 3600 - 1), OFFICE_HOURS) is None
    assert await claimed_target(store, dialing, make.at(4 * 3600), OFFICE_HOURS) == new_york.id


async def test_without_calling_rules_the_hours_do_not_apply(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    new_york = in_zone(make.target(dialing.outdial.id), NEW_YORK)
    await store.create_targets([new_york])
    call = await store.start_attempt(dialing.plan(make.at(10)))
    assert call is not None
    assert call.outdial_target_id == new_york.id


async def test_a_listed_number_is_never_dialed_even_when_listed_after_the_import(
    store: Store, make: Factory
) -> None:
    dialing = await make.dialing(store, max_try_counts=(2, 2))
    customer = dialing.campaign.customer_id
    both = make.target(dialing.outdial.id, make.tel("+15550101"), make.tel("+15550102"))
    only_listed = make.target(dialing.outdial.id, make.tel("+15550101"), tm_create=make.stamp(1))
    await store.create_targets([both, only_listed])
    await store.add_dnc_numbers(
        [DncNumber(customer_id=customer, number="+15550101", tm_create=make.stamp(5))]
    )
    rules = CallingRules()

    first = await store.start_attempt(plan(dialing, make.at(10), rules))
    assert first is not None
    assert (first.outdial_target_id, first.destination.target) == (both.id, "+15550102")
    assert await store.start_attempt(plan(dialing, make.at(11), rules)) is None
    assert await held(store, dialing, only_listed) == ("done", "dnc", "")
    counts = await store.target_counts(dialing.outdial.id, make.at(11))
    assert (counts.done, counts.held) == (1, {"dnc": 1})
    # Another customer's list does not apply.
    other = await make.dialing(store)
    await store.create_targets([make.target(other.outdial.id, make.tel("+15550101"))])
    call = await store.start_attempt(plan(other, make.at(12), rules))
    assert call is not None
    assert call.destination.target == "+15550101"


async def test_an_abandoned_call_locks_its_number_for_the_customer(
    store: Store, make: Factory
) -> None:
    rules = CallingRules(abandoned_lockout=timedelta(hours=72))
    dialing = await make.dialing(store, max_try_counts=(3,))
    customer = dialing.campaign.customer_id
    # A second campaign of the same customer, on its own list, with the same number.
    second = await make.dialing(store, customer_id=customer)
    first_target = make.target(dialing.outdial.id, make.tel("+15550111"))
    second_target = make.target(second.outdial.id, make.tel("+15550111"))
    await store.create_targets([first_target, second_target])

    await abandon_one(store, dialing, rules, make.at(10), make.at(20))
    unlocked = make.stamp(20 + 72 * 3600)
    assert await claimed_target(store, second, make.at(30), rules) is None
    assert await held(store, second, second_target) == ("idle", "abandoned_lockout", unlocked)
    assert await claimed_target(store, dialing, make.at(40), rules) is None
    assert await claimed_target(store, second, make.at(20 + 72 * 3600), rules) == (second_target.id)


async def test_a_number_gets_at_most_the_daily_attempts_across_campaigns(
    store: Store, make: Factory
) -> None:
    rules = CallingRules(daily_attempts=2)
    dialing = await make.dialing(store)
    other = await make.dialing(store, customer_id=dialing.campaign.customer_id)
    same = [make.target(dialing.outdial.id, make.tel("+15550121"), tm_create=make.stamp(n))
            for n in range(3)]  # fmt: skip
    elsewhere = make.target(other.outdial.id, make.tel("+15550121"))
    await store.create_targets([*same, elsewhere])

    assert await claimed_target(store, dialing, make.at(10), rules) == same[0].id
    assert await claimed_target(store, other, make.at(11), rules) == elsewhere.id
    assert await claimed_target(store, dialing, make.at(12), rules) is None
    # The next UTC day starts 15 hours after the epoch (09:00 UTC).
    midnight = make.stamp(15 * 3600)
    assert await held(store, dialing, same[1]) == ("idle", "daily_limit", midnight)
    assert await claimed_target(store, dialing, make.at(15 * 3600), rules) == same[1].id
    assert await held(store, dialing, same[2]) == ("idle", "", "")
    assert (await store.get_target(dialing.outdial.id, same[0].id)) is not None
    statuses = [await held(store, dialing, target) for target in same]
    assert [status for status, _, _ in statuses] == [
        TargetStatus.PROGRESSING.value,
        TargetStatus.PROGRESSING.value,
        TargetStatus.IDLE.value,
    ]


async def test_the_rules_hold_across_instances_on_one_store(
    store: Store, twin_store: Store, make: Factory
) -> None:
    """A lockout written and a number listed through one instance hold for claims made
    through another (each checks the shared store in its claim's atomic step)."""
    rules = CallingRules(abandoned_lockout=timedelta(hours=72), daily_attempts=1)
    dialing = await make.dialing(store, max_try_counts=(3,))
    customer = dialing.campaign.customer_id
    other = await make.dialing(store, customer_id=customer)
    abandoned = make.target(dialing.outdial.id, make.tel("+15550131"))
    listed = make.target(dialing.outdial.id, make.tel("+15550132"), tm_create=make.stamp(1))
    again = make.target(other.outdial.id, make.tel("+15550131"))
    await store.create_targets([abandoned, listed, again])

    await abandon_one(store, dialing, rules, make.at(10), make.at(20))
    await store.add_dnc_numbers(
        [DncNumber(customer_id=customer, number="+15550132", tm_create=make.stamp(21))]
    )
    assert await twin_store.start_attempt(plan(dialing, make.at(30), rules)) is None
    assert await twin_store.start_attempt(plan(other, make.at(30), rules)) is None
    assert (await held(twin_store, dialing, listed))[1] == "dnc"
    assert (await held(twin_store, other, again))[1] == "abandoned_lockout"


# -- the number the trunk dials (issue 26): sip and tel twins are one number -------------

LISTED = "+12125550147"


def sip(target: str) -> Address:
    return Address(type=AddressType.SIP, target=target)


async def test_a_sip_twin_of_a_listed_number_is_never_dialed_and_the_skip_is_recorded(
    store: Store, make: Factory
) -> None:
    dialing = await make.dialing(store, max_try_counts=(2, 2))
    customer = dialing.campaign.customer_id
    await store.add_dnc_numbers(
        [DncNumber(customer_id=customer, number=LISTED, tm_create=make.stamp(0))]
    )
    twin = make.target(dialing.outdial.id, sip("12125550147"))
    uri = make.target(
        dialing.outdial.id,
        sip("sip:+1-212-555-0147@carrier.example"),
        make.tel("+12125550148"),
        tm_create=make.stamp(1),
    )
    await store.create_targets([twin, uri])
    call = await store.start_attempt(plan(dialing, make.at(10), CallingRules()))
    assert call is not None
    assert (call.outdial_target_id, call.destination.target) == (uri.id, "+12125550148")
    assert await store.start_attempt(plan(dialing, make.at(11), CallingRules())) is None
    assert await held(store, dialing, twin) == ("done", "dnc", "")

    # The target's JSON explains every number: the first was skipped, as listed.
    skipped = (SkippedDestination(destination_index=0, reason="dnc"),)
    shown = await store.get_target(dialing.outdial.id, uri.id)
    assert shown is not None
    assert shown.skipped_destinations == skipped
    done = await store.get_target(dialing.outdial.id, twin.id)
    assert done is not None
    assert done.skipped_destinations == skipped
    # It stays through the end of the attempt, and in the listing.
    ended = await store.finish_attempt(
        call.id, CampaigncallResult.FAIL, "busy", RetryRule.of(dialing.outplan), make.at(20)
    )
    assert ended is not None
    assert ended.target is not None
    assert ended.target.skipped_destinations == skipped
    listing = await store.list_targets(dialing.outdial.id)
    assert {t.id: t.skipped_destinations for t in listing.result} == {
        uri.id: skipped,
        twin.id: skipped,
    }


async def test_an_abandoned_call_on_a_sip_twin_locks_the_tel_number(
    store: Store, make: Factory
) -> None:
    rules = CallingRules(abandoned_lockout=timedelta(hours=72))
    dialing = await make.dialing(store)
    other = await make.dialing(store, customer_id=dialing.campaign.customer_id)
    twin = make.target(dialing.outdial.id, sip("sip:12125550147@carrier.example"))
    number = make.target(other.outdial.id, make.tel(LISTED))
    await store.create_targets([twin, number])
    await abandon_one(store, dialing, rules, make.at(10), make.at(20))
    assert await claimed_target(store, other, make.at(30), rules) is None
    unlocked = make.stamp(20 + 72 * 3600)
    assert await held(store, other, number) == ("idle", "abandoned_lockout", unlocked)


async def test_housekeeping_prunes_the_locks_that_ended_and_keeps_the_others(
    store: Store, make: Factory
) -> None:
    rules = CallingRules(abandoned_lockout=timedelta(hours=1))
    dialing = await make.dialing(store, max_try_counts=(3,))
    early = make.target(dialing.outdial.id, make.tel("+12125550150"))
    late = make.target(dialing.outdial.id, make.tel("+12125550151"), tm_create=make.stamp(1))
    await store.create_targets([early, late])
    await abandon_one(store, dialing, rules, make.at(10), make.at(20))
    await abandon_one(store, dialing, rules, make.at(30), make.at(1800))

    assert await store.prune_locks(make.at(3600)) == 0
    assert await store.prune_locks(make.at(20 + 3600)) == 1
    assert await store.prune_locks(make.at(20 + 3600)) == 0
    # The lock that has not ended holds as before; the pruned one no longer counts.
    assert await claimed_target(store, dialing, make.at(3700), rules) == early.id
    assert await claimed_target(store, dialing, make.at(3701), rules) is None
    assert await held(store, dialing, late) == ("idle", "abandoned_lockout", make.stamp(5400))
    assert await store.prune_locks(make.at(5400)) == 1


async def test_a_zone_in_the_data_narrows_the_hours_of_the_number(
    store: Store, make: Factory
) -> None:
    dialing = await make.dialing(store)
    # A New York number whose list says London: 09:00 in London is 04:00 in New York.
    claimed_london = in_zone(make.target(dialing.outdial.id, make.tel("+12125550160")), LONDON)
    await store.create_targets([claimed_london])
    assert await claimed_target(store, dialing, make.at(10), OFFICE_HOURS) is None
    assert await held(store, dialing, claimed_london) == (
        "idle",
        "calling_hours",
        make.stamp(4 * 3600),
    )
    trusting = CallingRules(hours=CallingHours(trust_data_zone=True))
    later = make.target(dialing.outdial.id, make.tel("+12125550161"), tm_create=make.stamp(1))
    await store.create_targets([in_zone(later, LONDON)])
    assert await claimed_target(store, dialing, make.at(20), trusting) == later.id
