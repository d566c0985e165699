"""The ``Resources`` and ``Campaigncalls`` ports (dialerd/store/ports.py): campaigns,
outplans and outdials created, read, replaced, deleted and listed, and the attempts as the
API reads them; run on every backend."""

from __future__ import annotations

import contextlib
from functools import partial
from typing import TYPE_CHECKING

import anyio
import msgspec
import pytest

from dialerd.model import (
    NOT_DELETED,
    Campaign,
    CampaignStatus,
    TargetStatus,
    format_time,
    new_id,
)
from dialerd.store import (
    MAX_PAGE_SIZE,
    CampaignChanged,
    Conflict,
    InUse,
    Store,
    StoreError,
)
from tests.integration.conftest import Dialing
from tests.integration.store.store_steps import claim, finish

if TYPE_CHECKING:
    from datetime import datetime

    from tests.integration.conftest import Factory


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


async def test_page_size_is_clamped(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    await store.create_targets([make.target(dialing.outdial.id) for _ in range(MAX_PAGE_SIZE + 5)])
    assert len((await store.list_targets(dialing.outdial.id, page_size=1000)).result) == 100
    assert len((await store.list_targets(dialing.outdial.id, page_size=0)).result) == 1
    assert len((await store.list_targets(dialing.outdial.id, page_size=-3)).result) == 1


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


# -- an outplan or outdial is deleted only while no running campaign uses it -------------


async def stopped_dialing(store: Store, make: Factory) -> Dialing:
    """A stopped campaign with its outplan and outdial."""
    dialing = await make.dialing(store)
    stopped = await store.update_campaign(
        msgspec.structs.replace(
            dialing.campaign, status=CampaignStatus.STOP, tm_update=make.stamp(1)
        )
    )
    return Dialing(campaign=stopped, outplan=dialing.outplan, outdial=dialing.outdial)


async def delete_used(store: Store, dialing: Dialing, kind: str, now: datetime) -> object:
    customer = dialing.campaign.customer_id
    if kind == "outplan":
        return await store.delete_outplan(customer, dialing.outplan.id, now)
    return await store.delete_outdial(customer, dialing.outdial.id, now)


async def alive(store: Store, dialing: Dialing, kind: str) -> bool:
    customer = dialing.campaign.customer_id
    if kind == "outplan":
        return await store.get_outplan(customer, dialing.outplan.id) is not None
    return await store.get_outdial(customer, dialing.outdial.id) is not None


async def run(store: Store, campaign: Campaign, now: datetime) -> Campaign:
    """What a run writes once it has checked the outplan and outdial: status ``run``,
    only if nobody wrote the campaign since it was read (the version check)."""
    return await store.update_campaign(
        msgspec.structs.replace(campaign, status=CampaignStatus.RUN, tm_update=format_time(now)),
        if_updated=campaign.tm_update or "",
    )


@pytest.mark.parametrize("kind", ["outplan", "outdial"])
@pytest.mark.parametrize("status", [CampaignStatus.RUN, CampaignStatus.STOPPING])
async def test_an_outplan_or_outdial_a_running_campaign_uses_is_not_deleted(
    store: Store, make: Factory, kind: str, status: CampaignStatus
) -> None:
    dialing = await make.dialing(store)
    if status is CampaignStatus.STOPPING:
        await store.update_campaign(
            msgspec.structs.replace(dialing.campaign, status=status, tm_update=make.stamp(1))
        )
    # Another customer's campaign and a stopped one do not hold it.
    await store.create_campaign(
        make.campaign(
            dialing.campaign.customer_id,
            outplan_id=dialing.outplan.id,
            outdial_id=dialing.outdial.id,
            status=CampaignStatus.STOP,
        )
    )
    with pytest.raises(InUse) as refused:
        await delete_used(store, dialing, kind, make.at(2))
    assert refused.value.users == (dialing.campaign.id,)
    assert await alive(store, dialing, kind)


@pytest.mark.parametrize("kind", ["outplan", "outdial"])
async def test_a_run_after_the_delete_of_its_outplan_or_outdial_is_refused(
    store: Store, twin_store: Store, make: Factory, kind: str
) -> None:
    dialing = await stopped_dialing(store, make)
    # The run read the campaign and found its outplan and outdial; then, on another
    # instance, the delete went first.
    read = await store.get_campaign(dialing.campaign.customer_id, dialing.campaign.id)
    assert read is not None
    assert await delete_used(twin_store, dialing, kind, make.at(2)) is not None
    with pytest.raises(CampaignChanged):
        await run(store, read, make.at(3))
    stored = await store.get_campaign(dialing.campaign.customer_id, dialing.campaign.id)
    assert stored is not None
    assert stored.status == CampaignStatus.STOP


@pytest.mark.parametrize("kind", ["outplan", "outdial"])
async def test_a_delete_after_a_run_is_refused(
    store: Store, twin_store: Store, make: Factory, kind: str
) -> None:
    dialing = await stopped_dialing(store, make)
    running = await run(store, dialing.campaign, make.at(2))
    with pytest.raises(InUse) as refused:
        await delete_used(twin_store, dialing, kind, make.at(3))
    assert refused.value.users == (running.id,)
    assert await alive(store, dialing, kind)


async def try_run(store: Store, campaign: Campaign, now: datetime) -> None:
    with contextlib.suppress(CampaignChanged):
        await run(store, campaign, now)


async def try_delete(store: Store, dialing: Dialing, kind: str, now: datetime) -> None:
    with contextlib.suppress(InUse):
        await delete_used(store, dialing, kind, now)


@pytest.mark.parametrize("kind", ["outplan", "outdial"])
async def test_runs_racing_deletes_never_leave_a_running_campaign_without_them(
    store: Store, twin_store: Store, make: Factory, kind: str
) -> None:
    outcomes: set[tuple[bool, bool]] = set()
    for round_ in range(20):
        dialing = await stopped_dialing(store, make)
        now = make.at(10 + round_)

        async with anyio.create_task_group() as group:
            starts = [
                partial(try_run, store, dialing.campaign, now),
                partial(try_delete, twin_store, dialing, kind, now),
            ]
            for step in starts if round_ % 2 else reversed(starts):
                group.start_soon(step)
        stored = await store.get_campaign(dialing.campaign.customer_id, dialing.campaign.id)
        assert stored is not None
        running = stored.status == CampaignStatus.RUN
        kept = await alive(store, dialing, kind)
        assert kept or not running, f"round {round_}: a running campaign lost its {kind}"
        outcomes.add((running, kept))
    # Exactly one of the two won each round.
    assert outcomes <= {(True, True), (False, False)}
