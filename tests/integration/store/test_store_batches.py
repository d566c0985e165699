"""Claims and ends in batches (``start_attempts``, ``finish_attempts``): a batch decides
and writes exactly what the same claims or ends made one at a time would, however the
store groups its work: the targets a batch steps over (listed, spent, locked, over the
day's limit, outside the calling hours) are held as one claim holds them, a number
dialed earlier in the batch counts for the claims after it, and an attempt or a target
that comes twice in one burst of ends sees what the first end wrote."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import msgspec

from dialerd.core.hours import CallingHours
from dialerd.core.targets import CallingRules, RetryRule
from dialerd.model import (
    Address,
    CampaigncallResult,
    DncNumber,
    OutdialTarget,
)
from dialerd.store import AttemptEnd, AttemptPlan, FinishResult, Store
from tests.integration.conftest import Dialing
from tests.integration.store.store_steps import FAIL, SUCCESS

if TYPE_CHECKING:
    from datetime import datetime

    from tests.integration.conftest import Factory

# The tests' epoch is Monday 2026-03-02 09:00 UTC: 04:00 in New York.
NEW_YORK = '{"timezone": "America/New_York"}'
LONDON = '{"timezone": "Europe/London"}'
RULES = CallingRules(hours=CallingHours(), abandoned_lockout=timedelta(hours=72), daily_attempts=1)
LISTED = "+15550202"
LOCKED = "+15550204"


def plans(
    dialing: Dialing, now: datetime, count: int, rules: CallingRules | None = RULES
) -> list[AttemptPlan]:
    """``count`` plans of one tick (one moment, the same rules)."""
    return [msgspec.structs.replace(dialing.plan(now), rules=rules) for _ in range(count)]


async def tricky_outdial(store: Store, make: Factory) -> tuple[Dialing, list[OutdialTarget]]:
    """A customer whose outdial's first targets are each held back by another rule,
    between targets that may be dialed; ``LISTED`` is on its list and ``LOCKED`` locked
    after an abandoned call (on another campaign of the customer)."""
    dialing = await make.dialing(store, max_try_counts=(2, 2, 0))
    customer = dialing.campaign.customer_id
    await store.add_dnc_numbers(
        [DncNumber(customer_id=customer, number=LISTED, tm_create=make.stamp(0))]
    )
    earlier = await make.dialing(store, customer_id=customer)
    await store.create_targets([make.target(earlier.outdial.id, make.tel(LOCKED))])
    call = await store.start_attempt(earlier.plan(make.at(1)))
    assert call is not None
    await store.finish_attempt(
        call.id, FAIL, "abandoned", RetryRule.of(earlier.outplan), make.at(2), calling_rules=RULES
    )

    def target(n: int, *destinations: Address | None, data: str = LONDON) -> OutdialTarget:
        made = make.target(dialing.outdial.id, *destinations, tm_create=make.stamp(n))
        return msgspec.structs.replace(made, data=data)

    tel = make.tel
    made = [
        target(0, tel("+15550201")),  # dialed
        target(1, tel("+15550201")),  # the same number: over the day's limit once 0 is
        target(2, tel(LISTED)),  # listed: done
        target(3, tel(LISTED), tel("+15550203")),  # dialed on slot 1, slot 0 skipped
        target(4, None, None, tel("+15550208")),  # its only slot allows no try: done
        target(5, tel(LOCKED)),  # locked: waits
        target(6, tel("+15550205"), data=NEW_YORK),  # outside its hours: waits
        target(7, tel("+15550206")),  # dialed
        target(8, tel("+15550207")),  # dialed
        target(9, tel("+15550209")),  # left ready
    ]
    await store.create_targets(made)
    return dialing, made


async def states(store: Store, dialing: Dialing, made: list[OutdialTarget]) -> list[object]:
    found = []
    for target in made:
        stored = await store.get_target(dialing.outdial.id, target.id)
        assert stored is not None
        found.append(
            (
                stored.status.value,
                stored.try_counts,
                stored.hold_reason,
                stored.tm_next_try,
                [skip.destination_index for skip in stored.skipped_destinations],
            )
        )
    return found


async def test_a_batch_of_claims_holds_back_and_dials_what_claims_one_by_one_do(
    store: Store, make: Factory
) -> None:
    batched, batched_targets = await tricky_outdial(store, make)
    alone, alone_targets = await tricky_outdial(store, make)

    in_batch = await store.start_attempts(plans(batched, make.at(10), 4))
    one_by_one = []
    for plan in plans(alone, make.at(10), 4):
        call = await store.start_attempt(plan)
        assert call is not None
        one_by_one.append(call)

    position = {target.id: n for n, target in enumerate(batched_targets)}
    assert [position[call.outdial_target_id] for call in in_batch] == [0, 3, 7, 8]
    assert [(call.destination.target, call.destination_index) for call in in_batch] == [
        ("+15550201", 0), ("+15550203", 1), ("+15550206", 0), ("+15550207", 0),
    ]  # fmt: skip
    alone_position = {target.id: n for n, target in enumerate(alone_targets)}
    assert [alone_position[call.outdial_target_id] for call in one_by_one] == [0, 3, 7, 8]
    held = await states(store, batched, batched_targets)
    assert held == await states(store, alone, alone_targets)
    midnight, unlocked, opens = (
        make.stamp(15 * 3600),
        make.stamp(2 + 72 * 3600),
        make.stamp(4 * 3600),
    )
    assert [(status, reason, until) for status, _, reason, until, _ in held] == [
        ("progressing", "", ""),
        ("idle", "daily_limit", midnight),
        ("done", "dnc", ""),
        ("progressing", "", ""),
        ("done", "", ""),
        ("idle", "abandoned_lockout", unlocked),
        ("idle", "calling_hours", opens),
        ("progressing", "", ""),
        ("progressing", "", ""),
        ("idle", "", ""),
    ]  # fmt: skip
    assert held[3][4] == [0]  # the listed slot the claim stepped over
    # A batch larger than what is ready: the ready ones, then nothing.
    rest = await store.start_attempts(plans(batched, make.at(11), 5))
    assert [position[call.outdial_target_id] for call in rest] == [9]
    assert await store.start_attempts(plans(batched, make.at(12), 3)) == []


async def test_one_number_in_two_targets_of_a_batch_is_dialed_once_a_day(
    store: Store, make: Factory
) -> None:
    """The second target's claim sees the attempt the first claim of the batch counted."""
    dialing = await make.dialing(store)
    same = [
        msgspec.structs.replace(
            make.target(dialing.outdial.id, make.tel("+15550301"), tm_create=make.stamp(n)),
            data=LONDON,
        )
        for n in range(3)
    ]
    await store.create_targets(same)
    claimed = await store.start_attempts(plans(dialing, make.at(10), 3))
    assert [call.outdial_target_id for call in claimed] == [same[0].id]
    later = await store.start_attempts(plans(dialing, make.at(24 * 3600), 3))
    assert [call.outdial_target_id for call in later] == [same[1].id]


async def test_an_attempt_ended_twice_in_one_burst_is_ended_once(
    store: Store, make: Factory
) -> None:
    dialing = await make.dialing(store, max_try_counts=(3,))
    target = make.target(dialing.outdial.id)
    await store.create_targets([target])
    (call,) = await store.start_attempts(plans(dialing, make.at(1), 1, None))
    rule = RetryRule.of(dialing.outplan)

    def end(result: CampaigncallResult, reason: str, seconds: float) -> AttemptEnd:
        return AttemptEnd(
            campaigncall_id=call.id, result=result, reason=reason, rule=rule, now=make.at(seconds)
        )

    first, second = await store.finish_attempts([end(FAIL, "busy", 5), end(SUCCESS, "normal", 6)])
    assert isinstance(first, FinishResult)
    assert isinstance(second, FinishResult)
    assert first.finished
    assert not second.finished
    assert (second.campaigncall.result, second.campaigncall.reason) == (FAIL, "busy")
    assert second.target == first.target
    stored = await store.get_target(dialing.outdial.id, target.id)
    assert stored is not None
    assert (stored.status.value, stored.try_counts) == ("idle", (1, 0, 0, 0, 0))
    events = await store.read_events(dialing.campaign.customer_id, "", 100)
    assert [event.type for event in events] == [
        "campaign_created",
        "campaigncall_created",
        "campaigncall_updated",
        "outdialtarget_updated",
    ]


async def test_a_burst_of_ends_writes_its_events_in_the_order_of_the_ends(
    store: Store, make: Factory
) -> None:
    dialing = await make.dialing(store, max_try_counts=(1,))
    await store.create_targets([make.target(dialing.outdial.id) for _ in range(3)])
    calls = await store.start_attempts(plans(dialing, make.at(1), 3, None))
    rule = RetryRule.of(dialing.outplan)
    ends = [
        AttemptEnd(
            campaigncall_id=call.id,
            result=SUCCESS,
            reason="normal",
            rule=rule,
            now=make.at(5),
            answered=n == 1,
        )
        for n, call in enumerate(reversed(calls))
    ]
    await store.finish_attempts(ends)
    events = await store.read_events(dialing.campaign.customer_id, "", 100)
    ended = [
        (event.type, msgspec.json.decode(event.body)["id"])
        for event in events
        if event.type != "campaign_created" and event.type != "campaigncall_created"
    ]
    expected = []
    for n, call in enumerate(reversed(calls)):
        if n == 1:
            expected.append(("campaigncall_updated", call.id))
        expected += [
            ("campaigncall_updated", call.id),
            ("outdialtarget_updated", call.outdial_target_id),
        ]
    assert ended == expected
    answered = [
        msgspec.json.decode(event.body)["status"]
        for event in events
        if event.type == "campaigncall_updated"
    ]
    assert answered == ["done", "progressing", "done", "done"]
