"""The Store contract (dialerd/store/base.py, behaviour.md §4-§6), run on every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

import anyio
import msgspec
import pytest

from dialerd.core.abandonment import DayCount
from dialerd.core.targets import RetryRule
from dialerd.model import (
    NOT_DELETED,
    Address,
    AddressType,
    Campaigncall,
    CampaigncallResult,
    CampaigncallStatus,
    CampaignStatus,
    CampaignType,
    OutcomeRetry,
    OutdialTarget,
    ReferenceType,
    TargetStatus,
    format_time,
    new_id,
)
from dialerd.store.base import (
    MAX_PAGE_SIZE,
    CampaignChanged,
    Conflict,
    Fence,
    FinishResult,
    LeaseLost,
    Store,
    StoreError,
)
from tests.integration.conftest import SHORT_LEASE, Dialing, outlive_lease

if TYPE_CHECKING:
    from datetime import datetime

    from tests.integration.conftest import Factory, StoreMaker

FAIL = CampaigncallResult.FAIL
SUCCESS = CampaigncallResult.SUCCESS


async def claim(store: Store, dialing: Dialing, now: datetime) -> Campaigncall:
    """Start an attempt that must find a target."""
    campaigncall = await store.start_attempt(dialing.plan(now))
    assert campaigncall is not None
    return campaigncall


async def finish(store: Store, dialing: Dialing, campaigncall: Campaigncall, now: datetime) -> None:
    """End an attempt as failed (busy); it must not have ended before."""
    done = await store.finish_attempt(
        campaigncall.id, FAIL, "busy", RetryRule.of(dialing.outplan), now
    )
    assert done is not None
    assert done.finished


# -- round trips, scoping, soft delete --------------------------------------------------


async def test_resources_read_back_exactly_as_created(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    target = make.target(dialing.outdial.id, make.tel("+15550101"), None, make.tel("+15550103"))
    await store.create_targets([target])
    customer = dialing.campaign.customer_id
    campaigncall = await claim(store, dialing, make.at(1))

    assert msgspec.json.encode(
        await store.get_campaign(customer, dialing.campaign.id)
    ) == msgspec.json.encode(dialing.campaign)
    assert msgspec.json.encode(
        await store.get_outplan(customer, dialing.outplan.id)
    ) == msgspec.json.encode(dialing.outplan)
    assert msgspec.json.encode(
        await store.get_outdial(customer, dialing.outdial.id)
    ) == msgspec.json.encode(dialing.outdial)
    assert msgspec.json.encode(
        await store.get_campaigncall(customer, campaigncall.id)
    ) == msgspec.json.encode(campaigncall)
    stored = await store.get_target(dialing.outdial.id, target.id)
    expected = msgspec.structs.replace(
        target, status=TargetStatus.PROGRESSING, try_count_0=1, tm_update=make.stamp(1)
    )
    assert msgspec.json.encode(stored) == msgspec.json.encode(expected)


async def test_alive_resources_carry_the_not_deleted_sentinel(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    customer = dialing.campaign.customer_id
    campaign = await store.get_campaign(customer, dialing.campaign.id)
    outplan = await store.get_outplan(customer, dialing.outplan.id)
    outdial = await store.get_outdial(customer, dialing.outdial.id)
    assert campaign is not None
    assert outplan is not None
    assert outdial is not None
    assert (campaign.tm_delete, outplan.tm_delete, outdial.tm_delete) == (NOT_DELETED,) * 3


async def test_update_replaces_the_stored_resource(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    customer = dialing.campaign.customer_id
    renamed = msgspec.structs.replace(
        dialing.campaign, name="summer sale", status=CampaignStatus.STOP, tm_update=make.stamp(5)
    )
    assert await store.update_campaign(renamed) == renamed
    assert await store.get_campaign(customer, renamed.id) == renamed
    slower = msgspec.structs.replace(dialing.outplan, try_interval=60000)
    await store.update_outplan(slower)
    assert await store.get_outplan(customer, slower.id) == slower
    described = msgspec.structs.replace(dialing.outdial, detail="imported from CRM")
    await store.update_outdial(described)
    assert await store.get_outdial(None, described.id) == described


async def test_update_of_a_deleted_campaign_is_refused(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    customer = dialing.campaign.customer_id
    await store.update_campaign(
        msgspec.structs.replace(dialing.campaign, status=CampaignStatus.STOP)
    )
    await store.delete_campaign(customer, dialing.campaign.id, make.at(5))
    with pytest.raises(StoreError):
        await store.update_campaign(msgspec.structs.replace(dialing.campaign, name="again"))
    assert await store.get_campaign(None, dialing.campaign.id) is None


async def test_creating_an_existing_id_is_a_conflict(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    with pytest.raises(Conflict):
        await store.create_campaign(msgspec.structs.replace(dialing.campaign, name="copy"))
    stored = await store.get_campaign(None, dialing.campaign.id)
    assert stored is not None
    assert stored.name == dialing.campaign.name


async def test_another_customer_sees_nothing(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    stranger = new_id()
    assert await store.get_campaign(stranger, dialing.campaign.id) is None
    assert await store.get_outplan(stranger, dialing.outplan.id) is None
    assert await store.get_outdial(stranger, dialing.outdial.id) is None
    assert (await store.list_campaigns(stranger)).result == []
    assert (await store.list_outplans(stranger)).result == []
    assert (await store.list_outdials(stranger)).result == []
    assert await store.delete_campaign(stranger, dialing.campaign.id, make.at(1)) is None
    assert await store.delete_outplan(stranger, dialing.outplan.id, make.at(1)) is None
    assert await store.delete_outdial(stranger, dialing.outdial.id, make.at(1)) is None
    # The engine's reads (customer None) and the owner still see everything.
    assert await store.get_campaign(None, dialing.campaign.id) == dialing.campaign
    assert await store.get_outplan(dialing.campaign.customer_id, dialing.outplan.id) is not None


async def test_another_customer_sees_no_campaigncall(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    await store.create_targets([make.target(dialing.outdial.id)])
    campaigncall = await claim(store, dialing, make.at(1))
    await finish(store, dialing, campaigncall, make.at(2))
    stranger = new_id()
    assert await store.get_campaigncall(stranger, campaigncall.id) is None
    assert (await store.list_campaigncalls(stranger)).result == []
    assert await store.delete_campaigncall(stranger, campaigncall.id, make.at(3)) is None
    assert await store.get_campaigncall(None, campaigncall.id) is not None


async def test_deleted_resources_are_hidden(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    customer = dialing.campaign.customer_id
    await store.update_campaign(
        msgspec.structs.replace(dialing.campaign, status=CampaignStatus.STOP)
    )
    deleted = await store.delete_campaign(customer, dialing.campaign.id, make.at(7))
    assert deleted is not None
    assert deleted.tm_delete == make.stamp(7)
    outplan = await store.delete_outplan(customer, dialing.outplan.id, make.at(8))
    assert outplan is not None
    assert outplan.tm_delete == make.stamp(8)
    outdial = await store.delete_outdial(customer, dialing.outdial.id, make.at(9))
    assert outdial is not None
    assert outdial.tm_delete == make.stamp(9)

    assert await store.get_campaign(customer, dialing.campaign.id) is None
    assert await store.get_campaign(None, dialing.campaign.id) is None
    assert await store.get_outplan(None, dialing.outplan.id) is None
    assert await store.get_outdial(None, dialing.outdial.id) is None
    assert (await store.list_campaigns(customer)).result == []
    assert (await store.list_outplans(customer)).result == []
    assert (await store.list_outdials(customer)).result == []
    assert await store.campaigns_with_status([CampaignStatus.STOP]) == []
    assert await store.delete_campaign(customer, dialing.campaign.id, make.at(10)) is None


async def test_campaigns_with_status_spans_customers(store: Store, make: Factory) -> None:
    running = [
        await store.create_campaign(make.campaign(new_id(), status=CampaignStatus.RUN))
        for _ in range(2)
    ]
    stopping = await store.create_campaign(make.campaign(new_id(), status=CampaignStatus.STOPPING))
    stopped = await store.create_campaign(make.campaign(new_id(), status=CampaignStatus.STOP))
    gone = await store.create_campaign(make.campaign(new_id(), status=CampaignStatus.STOP))
    await store.delete_campaign(gone.customer_id, gone.id, make.at(1))

    found = await store.campaigns_with_status([CampaignStatus.RUN, CampaignStatus.STOPPING])
    assert {campaign.id for campaign in found} == {*(c.id for c in running), stopping.id}
    assert [c.id for c in await store.campaigns_with_status([CampaignStatus.STOP])] == [stopped.id]
    assert await store.campaigns_with_status([]) == []


# -- listing -----------------------------------------------------------------------------


async def test_listing_is_newest_first_in_pages(store: Store, make: Factory) -> None:
    customer = new_id()
    created = [
        await store.create_outplan(make.outplan(customer, tm_create=make.stamp(second)))
        for second in range(7)
    ]
    first = await store.list_outplans(customer, page_size=3)
    second = await store.list_outplans(customer, page_size=3, page_token=first.next_page_token)
    third = await store.list_outplans(customer, page_size=3, page_token=second.next_page_token)
    newest_first = [outplan.id for outplan in reversed(created)]
    assert [o.id for o in first.result] == newest_first[:3]
    assert [o.id for o in second.result] == newest_first[3:6]
    assert [o.id for o in third.result] == newest_first[6:]
    # Every non-empty page has a token (the last item's tm_create, as in the reference
    # API, when no later item shares it); the page after the last one is empty.
    assert first.next_page_token == created[4].tm_create
    assert third.next_page_token == created[0].tm_create
    end = await store.list_outplans(customer, page_size=3, page_token=third.next_page_token)
    assert end.result == []
    assert end.next_page_token == ""


async def test_a_bare_tm_create_token_returns_strictly_older_items(
    store: Store, make: Factory
) -> None:
    customer = new_id()
    for second in (1, 2, 2, 3):
        await store.create_outdial(make.outdial(customer, tm_create=make.stamp(second)))
    page = await store.list_outdials(customer, page_token=make.stamp(2))
    assert [outdial.tm_create for outdial in page.result] == [make.stamp(1)]


async def test_pages_skip_and_repeat_nothing_when_times_are_equal(
    store: Store, make: Factory
) -> None:
    customer = new_id()
    created = [
        await store.create_campaign(make.campaign(customer, tm_create=make.stamp(5)))
        for _ in range(11)
    ]
    created.append(await store.create_campaign(make.campaign(customer, tm_create=make.stamp(4))))
    seen: list[str] = []
    token = ""
    for _ in range(20):
        page = await store.list_campaigns(customer, page_size=4, page_token=token)
        assert len(page.result) <= 4
        if not page.result:
            break
        seen += [campaign.id for campaign in page.result]
        token = page.next_page_token
    assert len(seen) == 12
    # Ties in tm_create are ordered by id, descending; the older one comes last.
    assert seen[:11] == sorted((c.id for c in created[:11]), reverse=True)
    assert seen[11] == created[11].id


async def test_an_import_is_invisible_until_its_last_batch_then_all_there_in_order(
    store: Store, make: Factory
) -> None:
    dialing = await make.dialing(store)
    batches = [[make.target(dialing.outdial.id) for _ in range(3)] for _ in range(3)]
    seen_while_importing: list[int] = []

    async def staged() -> AsyncIterator[list[OutdialTarget]]:
        for batch in batches:
            yield batch
            listed = await store.list_targets(dialing.outdial.id)
            found = await store.get_target(dialing.outdial.id, batch[0].id)
            claimed = await store.start_attempt(dialing.plan(make.at(0.5)))
            seen_while_importing.append(
                len(listed.result) + (found is not None) + (claimed is not None)
            )

    assert await store.import_targets(staged()) == 9
    assert seen_while_importing == [0, 0, 0]
    listed = await store.list_targets(dialing.outdial.id)
    assert {t.id for t in listed.result} == {t.id for batch in batches for t in batch}
    claimed = await claim(store, dialing, make.at(1))
    assert claimed.outdial_target_id == batches[0][0].id


async def test_an_import_whose_batches_fail_leaves_nothing(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)

    async def failing() -> AsyncIterator[list[OutdialTarget]]:
        yield [make.target(dialing.outdial.id) for _ in range(4)]
        raise ValueError("line 9 is bad")

    with pytest.raises(ValueError, match="line 9 is bad"):
        await store.import_targets(failing())
    existing = make.target(dialing.outdial.id)
    await store.create_targets([existing])

    async def clashing() -> AsyncIterator[list[OutdialTarget]]:
        yield [make.target(dialing.outdial.id) for _ in range(4)]
        yield [existing]

    with pytest.raises(Conflict):
        await store.import_targets(clashing())
    assert [t.id for t in (await store.list_targets(dialing.outdial.id)).result] == [existing.id]
    # Only the existing target can be dialed: nothing staged is left to claim.
    assert (await claim(store, dialing, make.at(1))).outdial_target_id == existing.id
    assert await store.start_attempt(dialing.plan(make.at(2))) is None


async def test_page_size_is_clamped(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    await store.create_targets([make.target(dialing.outdial.id) for _ in range(MAX_PAGE_SIZE + 5)])
    assert len((await store.list_targets(dialing.outdial.id, page_size=1000)).result) == 100
    assert len((await store.list_targets(dialing.outdial.id, page_size=0)).result) == 1
    assert len((await store.list_targets(dialing.outdial.id, page_size=-3)).result) == 1


async def test_targets_list_pages_and_hide_deleted(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    targets = [make.target(dialing.outdial.id, tm_create=make.stamp(s % 3)) for s in range(9)]
    await store.create_targets(targets)
    removed = await store.delete_target(dialing.outdial.id, targets[4].id, make.at(10))
    assert removed is not None
    assert removed.tm_delete == make.stamp(10)
    assert await store.get_target(dialing.outdial.id, targets[4].id) is None

    listed: list[str] = []
    token = ""
    for _ in range(10):
        page = await store.list_targets(dialing.outdial.id, page_size=2, page_token=token)
        listed += [target.id for target in page.result]
        token = page.next_page_token
        if not token:
            break
    expected = sorted(
        (t for t in targets if t.id != targets[4].id),
        key=lambda t: (t.tm_create, t.id),
        reverse=True,
    )
    assert listed == [t.id for t in expected]
    assert (await store.list_targets(new_id())).result == []


async def test_campaigncalls_list_per_customer_and_campaign(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    other = await make.dialing(store, customer_id=dialing.campaign.customer_id)
    await store.create_targets([make.target(dialing.outdial.id) for _ in range(3)])
    await store.create_targets([make.target(other.outdial.id)])
    mine = [await claim(store, dialing, make.at(second)) for second in (1, 2, 3)]
    theirs = await claim(store, other, make.at(4))

    customer = dialing.campaign.customer_id
    everything = await store.list_campaigncalls(customer)
    assert [c.id for c in everything.result] == [theirs.id, *(c.id for c in reversed(mine))]
    first = await store.list_campaigncalls(customer, dialing.campaign.id, page_size=2)
    rest = await store.list_campaigncalls(
        customer, dialing.campaign.id, page_size=2, page_token=first.next_page_token
    )
    assert [c.id for c in first.result + rest.result] == [c.id for c in reversed(mine)]
    end = await store.list_campaigncalls(
        customer, dialing.campaign.id, page_size=2, page_token=rest.next_page_token
    )
    assert (end.result, end.next_page_token) == ([], "")


# -- targets and campaigncalls: deletion rules ---------------------------------------------


async def test_bulk_insert_is_all_or_nothing(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    existing = make.target(dialing.outdial.id)
    assert await store.create_targets([existing]) == 1
    batch = [make.target(dialing.outdial.id) for _ in range(5)]
    with pytest.raises(StoreError):
        await store.create_targets([*batch, existing])
    for target in batch:
        assert await store.get_target(dialing.outdial.id, target.id) is None
    assert len((await store.list_targets(dialing.outdial.id)).result) == 1


async def test_a_target_is_only_found_in_its_outdial(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    target = make.target(dialing.outdial.id)
    await store.create_targets([target])
    assert await store.get_target(new_id(), target.id) is None
    assert await store.get_target(dialing.outdial.id, target.id) == target


async def test_a_progressing_target_cannot_be_deleted(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    target = make.target(dialing.outdial.id)
    await store.create_targets([target])
    campaigncall = await claim(store, dialing, make.at(1))
    with pytest.raises(Conflict):
        await store.delete_target(dialing.outdial.id, target.id, make.at(2))
    await finish(store, dialing, campaigncall, make.at(3))
    assert await store.delete_target(dialing.outdial.id, target.id, make.at(4)) is not None


async def test_an_active_campaigncall_cannot_be_deleted(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    await store.create_targets([make.target(dialing.outdial.id)])
    customer = dialing.campaign.customer_id
    campaigncall = await claim(store, dialing, make.at(1))
    with pytest.raises(Conflict):
        await store.delete_campaigncall(customer, campaigncall.id, make.at(2))
    await store.mark_answered(campaigncall.id, make.at(2))
    with pytest.raises(Conflict):
        await store.delete_campaigncall(customer, campaigncall.id, make.at(3))
    await finish(store, dialing, campaigncall, make.at(4))
    deleted = await store.delete_campaigncall(customer, campaigncall.id, make.at(5))
    assert deleted is not None
    assert deleted.tm_delete == make.stamp(5)
    assert await store.get_campaigncall(None, campaigncall.id) is None
    assert (await store.list_campaigncalls(customer)).result == []


# -- start_attempt: order and choice (behaviour.md §4) --------------------------------------


async def test_never_tried_targets_go_in_creation_order(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    targets = [make.target(dialing.outdial.id, name=f"lead {n}") for n in range(20)]
    await store.create_targets(targets)
    claimed = [(await claim(store, dialing, make.at(1))).outdial_target_id for _ in targets]
    assert claimed == [target.id for target in targets]
    assert await store.start_attempt(dialing.plan(make.at(1))) is None


async def test_older_targets_go_first_whenever_they_were_added(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    later = make.target(dialing.outdial.id, tm_create=make.stamp(10))
    earlier = make.target(dialing.outdial.id, tm_create=make.stamp(5))
    await store.create_targets([later])
    await store.create_targets([earlier])
    assert (await claim(store, dialing, make.at(20))).outdial_target_id == earlier.id
    assert (await claim(store, dialing, make.at(20))).outdial_target_id == later.id


async def test_retried_targets_go_by_when_their_last_attempt_ended(
    store: Store, make: Factory
) -> None:
    dialing = await make.dialing(store)
    targets = [make.target(dialing.outdial.id) for _ in range(3)]
    await store.create_targets(targets)
    first, second, third = [await claim(store, dialing, make.at(1)) for _ in targets]
    await finish(store, dialing, third, make.at(2))
    await finish(store, dialing, first, make.at(3))
    await finish(store, dialing, second, make.at(4))
    order = [(await claim(store, dialing, make.at(5))).outdial_target_id for _ in targets]
    assert order == [targets[2].id, targets[0].id, targets[1].id]


async def test_a_retry_and_a_new_target_go_by_when_last_touched(
    store: Store, make: Factory
) -> None:
    dialing = await make.dialing(store)
    retried = make.target(dialing.outdial.id, tm_create=make.stamp(0))
    await store.create_targets([retried])
    await finish(store, dialing, await claim(store, dialing, make.at(1)), make.at(5))
    added_after = make.target(dialing.outdial.id, tm_create=make.stamp(10))
    added_before_end = make.target(dialing.outdial.id, tm_create=make.stamp(3))
    await store.create_targets([added_after, added_before_end])
    order = [(await claim(store, dialing, make.at(20))).outdial_target_id for _ in range(3)]
    assert order == [added_before_end.id, retried.id, added_after.id]


async def test_a_waiting_target_does_not_block_others(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store, try_interval=60_000)
    waiting, fresh = make.target(dialing.outdial.id), make.target(dialing.outdial.id)
    await store.create_targets([waiting, fresh])
    await finish(store, dialing, await claim(store, dialing, make.at(0)), make.at(10))
    assert (await claim(store, dialing, make.at(11))).outdial_target_id == fresh.id
    assert await store.start_attempt(dialing.plan(make.at(12))) is None
    assert (await claim(store, dialing, make.at(70))).outdial_target_id == waiting.id


async def test_the_retry_interval_runs_from_the_end_of_the_last_attempt(
    store: Store, make: Factory
) -> None:
    dialing = await make.dialing(store, try_interval=60_000)
    await store.create_targets([make.target(dialing.outdial.id)])
    await finish(store, dialing, await claim(store, dialing, make.at(0)), make.at(50))
    # 65 s after the start, but only 15 s after the end.
    assert await store.start_attempt(dialing.plan(make.at(65))) is None
    assert await store.start_attempt(dialing.plan(make.at(109.999))) is None
    assert (await claim(store, dialing, make.at(110))).try_count == 2


async def test_every_try_of_slot_0_comes_before_slot_1(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store, max_try_counts=(2, 1))
    first, second = make.tel("+15550001"), make.tel("+15550002")
    target = make.target(dialing.outdial.id, first, second)
    await store.create_targets([target])
    attempts = []
    for second_of_day in range(0, 40, 10):
        campaigncall = await store.start_attempt(dialing.plan(make.at(second_of_day)))
        if campaigncall is None:
            break
        attempts.append(
            (campaigncall.destination_index, campaigncall.destination, campaigncall.try_count)
        )
        await finish(store, dialing, campaigncall, make.at(second_of_day + 1))
    assert attempts == [(0, first, 1), (0, first, 2), (1, second, 1)]
    stored = await store.get_target(dialing.outdial.id, target.id)
    assert stored is not None
    assert stored.status == TargetStatus.DONE
    assert stored.try_counts == (2, 1, 0, 0, 0)


async def test_empty_destinations_are_skipped(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store, max_try_counts=(1, 1, 1, 1, 1))
    blank = Address(type=AddressType.TEL, target="", name="no number")
    dialable = make.tel("+15550004")
    target = make.target(dialing.outdial.id, blank, None, None, dialable)
    nothing = make.target(dialing.outdial.id, blank, None)
    await store.create_targets([nothing, target])
    campaigncall = await claim(store, dialing, make.at(1))
    assert (campaigncall.outdial_target_id, campaigncall.destination_index) == (target.id, 3)
    assert campaigncall.destination == dialable
    await finish(store, dialing, campaigncall, make.at(2))
    assert await store.start_attempt(dialing.plan(make.at(3))) is None
    assert await store.outdial_exhausted(dialing.campaign.id, dialing.outdial.id)


async def test_a_slot_with_no_tries_allowed_is_skipped(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store, max_try_counts=(0, 2))
    target = make.target(dialing.outdial.id, make.tel("+15550010"), make.tel("+15550011"))
    await store.create_targets([target])
    campaigncall = await claim(store, dialing, make.at(1))
    assert campaigncall.destination_index == 1


async def test_a_target_whose_slots_allow_no_try_is_never_dialed(
    store: Store, make: Factory
) -> None:
    dialing = await make.dialing(store, max_try_counts=(0, 2))
    only_slot_0 = make.target(dialing.outdial.id, make.tel("+15550010"))
    await store.create_targets([only_slot_0])
    assert await store.start_attempt(dialing.plan(make.at(1))) is None


async def test_a_deleted_target_is_not_dialed(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    deleted, kept = make.target(dialing.outdial.id), make.target(dialing.outdial.id)
    await store.create_targets([deleted, kept])
    await store.delete_target(dialing.outdial.id, deleted.id, make.at(1))
    assert (await claim(store, dialing, make.at(2))).outdial_target_id == kept.id
    assert await store.start_attempt(dialing.plan(make.at(3))) is None


async def test_start_attempt_on_an_empty_outdial_finds_nothing(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    assert await store.start_attempt(dialing.plan(make.at(1))) is None


async def test_a_call_attempt_records_what_is_dialed(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    target = make.target(dialing.outdial.id, make.tel("+15550020"))
    await store.create_targets([target])
    plan = dialing.plan(make.at(3))
    campaigncall = await store.start_attempt(plan)
    assert campaigncall is not None
    campaign = dialing.campaign
    assert campaigncall.id == plan.campaigncall_id
    assert (campaigncall.customer_id, campaigncall.campaign_id) == (
        campaign.customer_id,
        campaign.id,
    )
    assert (campaigncall.outplan_id, campaigncall.outdial_id) == (
        dialing.outplan.id,
        campaign.outdial_id,
    )
    assert campaigncall.outdial_target_id == target.id
    assert campaigncall.queue_id == campaign.queue_id
    assert campaigncall.reference_type == ReferenceType.CALL
    assert campaigncall.reference_id == plan.reference_id
    assert campaigncall.status == CampaigncallStatus.DIALING
    assert campaigncall.result == CampaigncallResult.NONE
    assert campaigncall.source == dialing.outplan.source
    assert campaigncall.destination == make.tel("+15550020")
    assert (campaigncall.destination_index, campaigncall.try_count) == (0, 1)
    assert (campaigncall.tm_create, campaigncall.tm_update, campaigncall.tm_delete) == (
        make.stamp(3),
        None,
        None,
    )
    stored = await store.get_target(dialing.outdial.id, target.id)
    assert stored is not None
    assert (stored.status, stored.try_count_0, stored.tm_update) == (
        TargetStatus.PROGRESSING,
        1,
        make.stamp(3),
    )


async def test_a_flow_attempt_references_its_activeflow(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store, type=CampaignType.FLOW)
    await store.create_targets([make.target(dialing.outdial.id)])
    plan = dialing.plan(make.at(1))
    campaigncall = await store.start_attempt(plan)
    assert campaigncall is not None
    assert campaigncall.reference_type == ReferenceType.FLOW
    assert campaigncall.reference_id == "00000000-0000-0000-0000-000000000000"
    assert campaigncall.activeflow_id == plan.activeflow_id


# -- finish_attempt and mark_answered (behaviour.md §5) --------------------------------------


async def test_success_finishes_the_target(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    target = make.target(dialing.outdial.id)
    await store.create_targets([target])
    campaigncall = await claim(store, dialing, make.at(1))
    done = await store.finish_attempt(
        campaigncall.id, SUCCESS, "normal", RetryRule.of(dialing.outplan), make.at(9)
    )
    assert done is not None
    assert done.finished
    assert (done.campaigncall.status, done.campaigncall.result) == (
        CampaigncallStatus.DONE,
        SUCCESS,
    )
    assert (done.campaigncall.reason, done.campaigncall.tm_update) == ("normal", make.stamp(9))
    assert done.target is not None
    assert (done.target.status, done.target.tm_update) == (TargetStatus.DONE, make.stamp(9))
    assert await store.get_campaigncall(None, campaigncall.id) == done.campaigncall
    assert await store.start_attempt(dialing.plan(make.at(10))) is None


async def test_a_failure_with_tries_left_makes_the_target_idle(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store, max_try_counts=(2,))
    await store.create_targets([make.target(dialing.outdial.id)])
    campaigncall = await claim(store, dialing, make.at(1))
    done = await store.finish_attempt(
        campaigncall.id, FAIL, "no_answer", RetryRule.of(dialing.outplan), make.at(2)
    )
    assert done is not None
    assert done.target is not None
    assert done.target.status == TargetStatus.IDLE
    assert done.campaigncall.reason == "no_answer"


async def test_a_failure_on_the_last_try_finishes_the_target(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store, max_try_counts=(1,))
    await store.create_targets([make.target(dialing.outdial.id)])
    campaigncall = await claim(store, dialing, make.at(1))
    done = await store.finish_attempt(
        campaigncall.id, FAIL, "busy", RetryRule.of(dialing.outplan), make.at(2)
    )
    assert done is not None
    assert done.target is not None
    assert done.target.status == TargetStatus.DONE


async def test_each_outcome_waits_its_own_interval_and_stops_at_its_own_limit(
    store: Store, make: Factory
) -> None:
    """An outplan's ``retry_by_outcome``: busy lines are retried after 5 s, unanswered
    calls after an hour (the outplan's own interval is a minute), and a number that
    reached an answering machine is not tried again once it has had two attempts."""
    dialing = await make.dialing(store, max_try_counts=(5,), try_interval=60_000)
    outplan = msgspec.structs.replace(
        dialing.outplan,
        retry_by_outcome={
            "busy": OutcomeRetry(try_interval=5_000),
            "no_answer": OutcomeRetry(try_interval=3_600_000),
            "machine": OutcomeRetry(max_tries=2),
        },
    )
    dialing = Dialing(campaign=dialing.campaign, outplan=outplan, outdial=dialing.outdial)
    busy, silent, machine = (
        make.target(dialing.outdial.id, tm_create=make.stamp(n), name=name)
        for n, name in enumerate(("busy line", "never answers", "machine"))
    )
    await store.create_targets([busy, silent, machine])
    rule = RetryRule.of(outplan)

    async def attempt(now: int, reason: str) -> str:
        call = await claim(store, dialing, make.at(now))
        result = SUCCESS if reason == "normal" else FAIL
        await store.finish_attempt(call.id, result, reason, rule, make.at(now))
        return call.outdial_target_id

    assert await attempt(10, "busy") == busy.id
    assert await attempt(10, "no_answer") == silent.id
    assert await attempt(10, "machine") == machine.id  # 1 attempt so far: retried
    waiting = await store.get_target(dialing.outdial.id, silent.id)
    assert waiting is not None
    assert (waiting.status, waiting.hold_reason, waiting.tm_next_try) == (
        TargetStatus.IDLE,
        "retry_interval",
        make.stamp(3_610),
    )
    assert await store.start_attempt(dialing.plan(make.at(14))) is None
    assert await attempt(15, "busy") == busy.id  # 5 s after its busy end
    assert await attempt(70, "machine") == machine.id  # the outplan's minute
    spent = await store.get_target(dialing.outdial.id, machine.id)
    assert spent is not None
    assert spent.status == TargetStatus.DONE
    assert await attempt(70, "normal") == busy.id  # due again since 20 s: answered
    assert await store.start_attempt(dialing.plan(make.at(3_609))) is None
    assert await attempt(3_610, "no_answer") == silent.id
    counts = await store.target_counts(dialing.outdial.id, make.at(3_610))
    assert (counts.idle_due, counts.idle_waiting, counts.done) == (0, 1, 2)


async def test_an_attempt_is_finished_exactly_once(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    target = make.target(dialing.outdial.id)
    await store.create_targets([target])
    campaigncall = await claim(store, dialing, make.at(1))
    first = await store.finish_attempt(
        campaigncall.id, SUCCESS, "normal", RetryRule.of(dialing.outplan), make.at(5)
    )
    again = await store.finish_attempt(
        campaigncall.id, FAIL, "lost", RetryRule.of(dialing.outplan), make.at(8)
    )
    assert first is not None
    assert again is not None
    assert not again.finished
    assert again.campaigncall == first.campaigncall
    assert again.target == first.target
    assert await store.get_campaigncall(None, campaigncall.id) == first.campaigncall
    assert await store.get_target(dialing.outdial.id, target.id) == first.target


async def test_finishing_an_unknown_attempt_finds_nothing(store: Store, make: Factory) -> None:
    result = await store.finish_attempt(
        new_id(), FAIL, "busy", RetryRule((1, 0, 0, 0, 0)), make.at(1)
    )
    assert result is None


async def test_only_a_dialing_attempt_can_be_answered(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    await store.create_targets([make.target(dialing.outdial.id)])
    campaigncall = await claim(store, dialing, make.at(1))
    answered = await store.mark_answered(campaigncall.id, make.at(2))
    assert answered is not None
    assert (answered.status, answered.tm_update) == (CampaigncallStatus.PROGRESSING, make.stamp(2))
    assert await store.get_campaigncall(None, campaigncall.id) == answered
    assert await store.mark_answered(campaigncall.id, make.at(3)) is None
    await finish(store, dialing, campaigncall, make.at(4))
    assert await store.mark_answered(campaigncall.id, make.at(5)) is None
    assert await store.mark_answered(new_id(), make.at(5)) is None


async def test_dialing_and_active_attempts_are_counted(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    other = await make.dialing(store)
    await store.create_targets([make.target(dialing.outdial.id) for _ in range(3)])
    await store.create_targets([make.target(other.outdial.id)])
    first, second, third = [await claim(store, dialing, make.at(1)) for _ in range(3)]
    elsewhere = await claim(store, other, make.at(1))
    assert await store.count_dialing(dialing.campaign.id) == 3
    await store.mark_answered(first.id, make.at(2))
    await finish(store, dialing, second, make.at(3))
    assert await store.count_dialing(dialing.campaign.id) == 1
    active = await store.active_attempts(dialing.campaign.id)
    assert {c.id: c.status for c in active} == {
        first.id: CampaigncallStatus.PROGRESSING,
        third.id: CampaigncallStatus.DIALING,
    }
    everywhere = await store.active_attempts()
    assert {c.id for c in everywhere} == {first.id, third.id, elsewhere.id}
    assert await store.count_dialing(new_id()) == 0


# -- exhaustion (behaviour.md §6) --------------------------------------------------------


async def test_the_outdial_is_exhausted_only_when_nothing_is_left(
    store: Store, make: Factory
) -> None:
    dialing = await make.dialing(store, max_try_counts=(2,), try_interval=60_000)
    await store.create_targets([make.target(dialing.outdial.id)])

    async def exhausted() -> bool:
        return await store.outdial_exhausted(dialing.campaign.id, dialing.outdial.id)

    assert not await exhausted()
    campaigncall = await claim(store, dialing, make.at(0))
    assert not await exhausted()  # an attempt is active
    await finish(store, dialing, campaigncall, make.at(10))
    assert await store.start_attempt(dialing.plan(make.at(20))) is None
    assert not await exhausted()  # the target waits for its retry
    campaigncall = await claim(store, dialing, make.at(70))
    await store.mark_answered(campaigncall.id, make.at(71))
    assert not await exhausted()
    await finish(store, dialing, campaigncall, make.at(80))
    assert await exhausted()


async def test_an_empty_outdial_is_exhausted(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    assert await store.outdial_exhausted(dialing.campaign.id, dialing.outdial.id)


# -- concurrency ------------------------------------------------------------------------------


async def test_concurrent_claimers_never_dial_one_target_twice(
    store: Store, twin_store: Store, make: Factory
) -> None:
    max_tries = 3
    dialing = await make.dialing(store, max_try_counts=(max_tries,))
    targets = [make.target(dialing.outdial.id) for _ in range(200)]
    await store.create_targets(targets)
    active: set[str] = set()
    attempts: dict[str, list[int]] = {target.id: [] for target in targets}
    overlaps: list[str] = []

    async def claimer(instance: Store) -> None:
        for _ in range(len(targets) * max_tries + 1):
            # One instant for everything: with try_interval 0 a failed target is due at once.
            campaigncall = await instance.start_attempt(dialing.plan(make.at(1)))
            if campaigncall is None:
                return
            target_id = campaigncall.outdial_target_id
            if target_id in active:
                overlaps.append(target_id)
            active.add(target_id)
            attempts[target_id].append(campaigncall.try_count)
            # Other claimers run while this attempt is answered, and must not take its target.
            answered = await instance.mark_answered(campaigncall.id, make.at(1))
            assert answered is not None
            # Leave the set before finishing: once finished, the target may be claimed again.
            active.discard(target_id)
            result = await instance.finish_attempt(
                campaigncall.id, FAIL, "busy", RetryRule.of(dialing.outplan), make.at(1)
            )
            assert result is not None
            assert result.finished

    with anyio.fail_after(60):
        async with anyio.create_task_group() as claimers:
            for number in range(32):
                claimers.start_soon(claimer, store if number % 2 else twin_store)

    assert overlaps == []
    assert all(sorted(counts) == [1, 2, 3] for counts in attempts.values())
    for target in targets:
        stored = await store.get_target(dialing.outdial.id, target.id)
        assert stored is not None
        assert (stored.status, stored.try_counts) == (TargetStatus.DONE, (3, 0, 0, 0, 0))
    assert await store.outdial_exhausted(dialing.campaign.id, dialing.outdial.id)
    assert await store.active_attempts(dialing.campaign.id) == []


# -- campaign leases and fencing -----------------------------------------------------------

ALICE, BOB, CAROL = "host-a:101:0a0a", "host-b:202:0b0b", "host-c:303:0c0c"
LONG_LEASE = 60.0


async def test_a_campaign_lease_has_one_owner_at_a_time(store: Store, make: Factory) -> None:
    now = make.at(0)
    fence = await store.acquire_lease("campaign-1", ALICE, LONG_LEASE, now)
    assert fence is not None
    assert (fence.campaign_id, fence.owner) == ("campaign-1", ALICE)
    assert await store.acquire_lease("campaign-1", BOB, LONG_LEASE, now) is None
    assert await store.lease_owner("campaign-1", now) == ALICE
    # Another campaign's lease is another matter.
    assert await store.lease_owner("campaign-2", now) is None
    other = await store.acquire_lease("campaign-2", BOB, LONG_LEASE, now)
    assert other is not None
    assert await store.lease_owner("campaign-2", now) == BOB


async def test_a_renewal_keeps_the_token_and_restarts_the_ttl(store: Store, make: Factory) -> None:
    now = make.at(0)
    first = await store.acquire_lease("campaign-1", ALICE, LONG_LEASE, now)
    # Renewed with a short ttl: the lease now ends soon, not LONG_LEASE after ``now``.
    renewed = await store.acquire_lease("campaign-1", ALICE, SHORT_LEASE, now)
    assert renewed == first
    later = await outlive_lease(store, "campaign-1", SHORT_LEASE, now)
    assert await store.lease_owner("campaign-1", later) is None


async def test_a_lapsed_lease_goes_to_the_next_owner_with_a_greater_token(
    store: Store, make: Factory
) -> None:
    now = make.at(0)
    tokens: list[int] = []
    for owner in (ALICE, BOB, CAROL, ALICE):
        fence = await store.acquire_lease("campaign-1", owner, SHORT_LEASE, now)
        assert fence is not None
        assert fence.owner == owner
        tokens.append(fence.token)
        for contender in sorted({ALICE, BOB, CAROL} - {owner}):
            assert await store.acquire_lease("campaign-1", contender, SHORT_LEASE, now) is None
        now = await outlive_lease(store, "campaign-1", SHORT_LEASE, now)
        assert await store.lease_owner("campaign-1", now) is None
    assert tokens == sorted(set(tokens))  # strictly increasing, even back to ALICE


async def test_an_owner_retaking_its_lapsed_lease_keeps_its_token(
    store: Store, make: Factory
) -> None:
    now = make.at(0)
    first = await store.acquire_lease("campaign-1", ALICE, SHORT_LEASE, now)
    later = await outlive_lease(store, "campaign-1", SHORT_LEASE, now)
    # Nobody held it in between, so nothing was written under another token.
    assert await store.acquire_lease("campaign-1", ALICE, LONG_LEASE, later) == first


async def test_a_released_lease_can_be_taken_at_once(store: Store, make: Factory) -> None:
    now = make.at(0)
    first = await store.acquire_lease("campaign-1", ALICE, LONG_LEASE, now)
    assert first is not None
    # Only the fence that holds the lease gives it up.
    await store.release_lease(Fence("campaign-1", ALICE, first.token + 1))
    await store.release_lease(Fence("campaign-1", BOB, first.token))
    await store.release_lease(Fence("no-such-campaign", ALICE, first.token))
    assert await store.lease_owner("campaign-1", now) == ALICE

    await store.release_lease(first)
    assert await store.lease_owner("campaign-1", now) is None
    taken = await store.acquire_lease("campaign-1", BOB, LONG_LEASE, now)
    assert taken is not None
    assert taken.token > first.token
    await store.release_lease(first)  # stale: the new holder keeps its lease
    assert await store.lease_owner("campaign-1", now) == BOB


async def snapshot(store: Store, dialing: Dialing) -> bytes:
    """Everything a write of the campaign could change, as comparable bytes."""
    customer = dialing.campaign.customer_id
    return msgspec.json.encode(
        [
            await store.get_campaign(None, dialing.campaign.id),
            (await store.list_campaigncalls(customer, dialing.campaign.id)).result,
            (await store.list_targets(dialing.outdial.id)).result,
            await store.active_attempts(dialing.campaign.id),
            await store.count_dialing(dialing.campaign.id),
        ]
    )


async def two_fenced_attempts(
    store: Store, dialing: Dialing, fence: Fence, now: datetime
) -> tuple[Campaigncall, Campaigncall]:
    """Start two attempts under ``fence``: one left dialing, one answered."""
    attempts = []
    for _ in range(2):
        campaigncall = await store.start_attempt(
            msgspec.structs.replace(dialing.plan(now), fence=fence)
        )
        assert campaigncall is not None
        attempts.append(campaigncall)
    assert await store.mark_answered(attempts[1].id, now, fence=fence) is not None
    return attempts[0], attempts[1]


def fenced_writes(
    store: Store,
    dialing: Dialing,
    attempts: tuple[Campaigncall, Campaigncall],
    fence: Fence,
    now: datetime,
) -> list[tuple[str, Callable[[], Awaitable[object]]]]:
    """Every fenced write the engine makes for the campaign, by name, ready to try."""
    dialed, answered = attempts
    limits = RetryRule.of(dialing.outplan)
    stopped = msgspec.structs.replace(
        dialing.campaign, status=CampaignStatus.STOP, tm_update=format_time(now)
    )
    plan = msgspec.structs.replace(dialing.plan(now), fence=fence)
    return [
        ("start_attempt", lambda: store.start_attempt(plan)),
        ("mark_answered", lambda: store.mark_answered(dialed.id, now, fence=fence)),
        (
            "finish_attempt of a dialing attempt",
            lambda: store.finish_attempt(dialed.id, FAIL, "busy", limits, now, fence=fence),
        ),
        (
            "finish_attempt of an answered attempt",
            lambda: store.finish_attempt(answered.id, SUCCESS, "normal", limits, now, fence=fence),
        ),
        ("update_campaign", lambda: store.update_campaign(stopped, fence=fence)),
    ]


async def test_fenced_writes_with_the_held_lease_succeed(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    await store.create_targets([make.target(dialing.outdial.id) for _ in range(3)])
    fence = await store.acquire_lease(dialing.campaign.id, ALICE, LONG_LEASE, make.at(1))
    assert fence is not None
    attempts = await two_fenced_attempts(store, dialing, fence, make.at(1))
    writes = dict(fenced_writes(store, dialing, attempts, fence, make.at(2)))

    started = await writes["start_attempt"]()
    assert isinstance(started, Campaigncall)
    assert started.status == CampaigncallStatus.DIALING
    answered = await writes["mark_answered"]()
    assert isinstance(answered, Campaigncall)
    assert answered.status == CampaigncallStatus.PROGRESSING
    for name in ("finish_attempt of a dialing attempt", "finish_attempt of an answered attempt"):
        finished = await writes[name]()
        assert isinstance(finished, FinishResult)
        assert finished.finished
    await writes["update_campaign"]()
    stored = await store.get_campaign(None, dialing.campaign.id)
    assert stored is not None
    assert stored.status == CampaignStatus.STOP
    assert [c.id for c in await store.active_attempts(dialing.campaign.id)] == [started.id]


@pytest.mark.parametrize("loss", ["expiry", "takeover", "release"])
async def test_a_stale_fence_writes_nothing(store: Store, make: Factory, loss: str) -> None:
    dialing = await make.dialing(store)
    await store.create_targets([make.target(dialing.outdial.id) for _ in range(3)])
    now = make.at(1)
    old = await store.acquire_lease(dialing.campaign.id, ALICE, SHORT_LEASE, now)
    assert old is not None
    attempts = await two_fenced_attempts(store, dialing, old, now)
    if loss == "release":
        await store.release_lease(old)
        later = now
    else:
        later = await outlive_lease(store, dialing.campaign.id, SHORT_LEASE, now)
    holder = ALICE
    if loss == "takeover":
        holder = BOB
        assert await store.acquire_lease(dialing.campaign.id, BOB, LONG_LEASE, later) is not None

    before = await snapshot(store, dialing)
    for name, write in fenced_writes(store, dialing, attempts, old, later):
        with pytest.raises(LeaseLost):
            await write()
        assert await snapshot(store, dialing) == before, f"{name} changed the store"

    # Whoever holds the lease now writes with its own fence.
    current = await store.acquire_lease(dialing.campaign.id, holder, LONG_LEASE, later)
    assert current is not None
    for name, write in fenced_writes(store, dialing, attempts, current, later):
        await write()
        assert await snapshot(store, dialing) != before, f"{name} changed nothing"
        before = await snapshot(store, dialing)


async def test_a_fence_that_is_not_the_campaigns_lease_is_refused(
    store: Store, make: Factory
) -> None:
    dialing = await make.dialing(store)
    await store.create_targets([make.target(dialing.outdial.id) for _ in range(3)])
    now = make.at(1)
    mine = await store.acquire_lease(dialing.campaign.id, ALICE, LONG_LEASE, now)
    elsewhere = await store.acquire_lease("another-campaign", ALICE, LONG_LEASE, now)
    assert mine is not None
    assert elsewhere is not None
    attempts = await two_fenced_attempts(store, dialing, mine, now)
    before = await snapshot(store, dialing)
    wrong = [
        elsewhere,
        Fence(dialing.campaign.id, ALICE, mine.token + 1),
        Fence(dialing.campaign.id, BOB, mine.token),
    ]
    for fence in wrong:
        for name, write in fenced_writes(store, dialing, attempts, fence, now):
            with pytest.raises(LeaseLost):
                await write()
            assert await snapshot(store, dialing) == before, f"{name} with {fence} wrote"


async def test_unfenced_writes_ignore_leases(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    await store.create_targets([make.target(dialing.outdial.id)])
    assert await store.acquire_lease(dialing.campaign.id, BOB, LONG_LEASE, make.at(0))
    campaigncall = await claim(store, dialing, make.at(1))
    assert await store.mark_answered(campaigncall.id, make.at(2)) is not None
    finished = await store.finish_attempt(
        campaigncall.id, SUCCESS, "normal", RetryRule.of(dialing.outplan), make.at(3)
    )
    assert finished is not None
    assert finished.finished
    paused = msgspec.structs.replace(dialing.campaign, status=CampaignStatus.STOP)
    assert await store.update_campaign(paused) == paused
    assert await store.get_campaign(None, dialing.campaign.id) == paused


async def test_a_conditional_campaign_write_refuses_a_campaign_changed_since_it_was_read(
    store: Store, make: Factory
) -> None:
    dialing = await make.dialing(store)
    read = dialing.campaign
    assert read.tm_update is None
    stopping = msgspec.structs.replace(
        read, status=CampaignStatus.STOPPING, tm_update=make.stamp(1)
    )
    await store.update_campaign(stopping, if_updated="")
    # A writer that read the campaign before that stop must not write it back.
    edited = msgspec.structs.replace(read, name="renamed", tm_update=make.stamp(2))
    with pytest.raises(CampaignChanged):
        await store.update_campaign(edited, if_updated="")
    assert await store.get_campaign(None, read.id) == stopping
    # Read again, the same edit goes through.
    edited = msgspec.structs.replace(stopping, name="renamed", tm_update=make.stamp(3))
    assert await store.update_campaign(edited, if_updated=make.stamp(1)) == edited


async def test_only_a_stopped_campaign_can_be_deleted(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    customer = dialing.campaign.customer_id
    with pytest.raises(Conflict):
        await store.delete_campaign(customer, dialing.campaign.id, make.at(5))
    assert await store.get_campaign(customer, dialing.campaign.id) == dialing.campaign
    stopped = msgspec.structs.replace(dialing.campaign, status=CampaignStatus.STOP)
    await store.update_campaign(stopped)
    assert await store.delete_campaign(customer, dialing.campaign.id, make.at(6)) is not None


# -- abandonment counts (behaviour.md §10) ----------------------------------------------


async def test_abandonment_counts_add_up_per_campaign_and_day(store: Store) -> None:
    campaign, other = new_id(), new_id()
    assert await store.abandonment_days(campaign, "2026-01-01") == []
    assert await store.add_abandonment(campaign, "2026-03-01", 1, 0) == DayCount(
        day="2026-03-01", live=1, abandoned=0
    )
    assert await store.add_abandonment(campaign, "2026-03-01", 1, 1) == DayCount(
        day="2026-03-01", live=2, abandoned=1
    )
    await store.add_abandonment(campaign, "2026-03-02", 3, 0)
    await store.add_abandonment(campaign, "2026-02-27", 5, 2)
    await store.add_abandonment(other, "2026-03-01", 7, 7)

    assert await store.abandonment_days(campaign, "2026-03-01") == [
        DayCount(day="2026-03-01", live=2, abandoned=1),
        DayCount(day="2026-03-02", live=3, abandoned=0),
    ]
    assert [day.day for day in await store.abandonment_days(campaign, "2026-01-01")] == [
        "2026-02-27",
        "2026-03-01",
        "2026-03-02",
    ]
    assert await store.abandonment_days(other, "2026-01-01") == [
        DayCount(day="2026-03-01", live=7, abandoned=7)
    ]


async def test_abandonment_counts_are_shared_by_instances_and_lose_no_concurrent_add(
    store: Store, twin_store: Store
) -> None:
    campaign = new_id()
    async with anyio.create_task_group() as task_group:
        for index in range(40):
            writer = store if index % 2 else twin_store
            abandoned = int(index % 4 == 0)
            task_group.start_soon(writer.add_abandonment, campaign, "2026-03-01", 1, abandoned)
    assert await twin_store.abandonment_days(campaign, "2026-03-01") == [
        DayCount(day="2026-03-01", live=40, abandoned=10)
    ]


async def test_abandonment_counts_survive_a_reopen(new_store: StoreMaker) -> None:
    campaign = new_id()
    first = new_store()
    await first.open()
    await first.add_abandonment(campaign, "2026-03-01", 100, 3)
    await first.close()
    again = new_store()
    await again.open()
    try:
        assert await again.abandonment_days(campaign, "2026-03-01") == [
            DayCount(day="2026-03-01", live=100, abandoned=3)
        ]
    finally:
        await again.close()


async def test_a_tick_reads_a_campaign_and_its_outplan_in_one_step(
    store: Store, make: Factory
) -> None:
    dialing = await make.dialing(store)
    assert await store.campaign_and_outplan(dialing.campaign.id) == (
        dialing.campaign,
        dialing.outplan,
    )
    assert await store.campaign_and_outplan(new_id()) == (None, None)
    # Another customer's outplan is not this campaign's.
    foreign = await store.create_outplan(make.outplan(new_id()))
    moved = await store.update_campaign(
        msgspec.structs.replace(dialing.campaign, outplan_id=foreign.id, tm_update=make.stamp(1))
    )
    assert await store.campaign_and_outplan(moved.id) == (moved, None)
    back = await store.update_campaign(
        msgspec.structs.replace(moved, outplan_id=dialing.outplan.id, tm_update=make.stamp(2))
    )
    await store.delete_outplan(dialing.campaign.customer_id, dialing.outplan.id, make.at(3))
    assert await store.campaign_and_outplan(back.id) == (back, None)
