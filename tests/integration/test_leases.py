"""Campaign leases and fencing tokens, on every backend (dialerd/store/base.py)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import anyio
import msgspec
import pytest

from dialerd.model import CampaigncallResult, CampaignStatus, TargetStatus
from dialerd.store.base import Fence, LeaseLost, Store
from tests.integration.conftest import Factory

TTL = 0.3
ALICE, BOB = "host-a:1:aaaa", "host-b:2:bbbb"


async def expire(store: Store, campaign_id: str, owner: str, now: datetime) -> datetime:
    """Let the lease of ``owner`` run out; return the moment after which it has."""
    later = now + timedelta(seconds=TTL * 2)
    if store.backend == "sqlite":
        return later  # SQLite leases follow the ``now`` the caller passes
    deadline = time.monotonic() + 10
    while await store.lease_owner(campaign_id, now) == owner:
        assert time.monotonic() < deadline, "lease never expired"
        await anyio.sleep(0.05)
    return later


async def test_a_lease_has_one_owner_until_it_expires(store: Store, make: Factory) -> None:
    now = make.at(0)
    first = await store.acquire_lease("c1", ALICE, TTL, now)
    assert first is not None
    assert await store.acquire_lease("c1", BOB, TTL, now) is None
    assert await store.lease_owner("c1", now) == ALICE
    renewed = await store.acquire_lease("c1", ALICE, TTL, now)
    assert renewed == first  # a renewal keeps the token

    later = await expire(store, "c1", ALICE, now)
    taken = await store.acquire_lease("c1", BOB, TTL, later)
    assert taken is not None
    assert taken.owner == BOB
    assert taken.token > first.token
    assert await store.lease_owner("c1", later) == BOB


async def test_a_released_lease_can_be_taken_at_once(store: Store, make: Factory) -> None:
    now = make.at(0)
    first = await store.acquire_lease("c2", ALICE, 60, now)
    assert first is not None
    await store.release_lease(first)
    assert await store.lease_owner("c2", now) is None
    taken = await store.acquire_lease("c2", BOB, 60, now)
    assert taken is not None
    assert taken.token > first.token
    # A stale release does not drop the new holder's lease.
    await store.release_lease(first)
    assert await store.lease_owner("c2", now) == BOB


async def test_leases_of_different_campaigns_are_independent(store: Store, make: Factory) -> None:
    now = make.at(0)
    assert await store.acquire_lease("c3", ALICE, 60, now) is not None
    assert await store.acquire_lease("c4", BOB, 60, now) is not None


async def test_fenced_writes_succeed_with_the_held_lease(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    await store.create_targets([make.target(dialing.outdial.id)])
    now = make.at(1)
    fence = await store.acquire_lease(dialing.campaign.id, ALICE, 60, now)
    assert fence is not None
    plan = msgspec.structs.replace(dialing.plan(now), fence=fence)
    call = await store.start_attempt(plan)
    assert call is not None
    assert await store.mark_answered(call.id, make.at(2), fence=fence) is not None
    finished = await store.finish_attempt(
        call.id, CampaigncallResult.SUCCESS, "normal", (3, 0, 0, 0, 0), make.at(3), fence=fence
    )
    assert finished is not None
    assert finished.finished
    stopped = msgspec.structs.replace(
        dialing.campaign, status=CampaignStatus.STOP, tm_update=make.stamp(4)
    )
    assert (await store.update_campaign(stopped, fence=fence)).status == CampaignStatus.STOP


async def test_an_old_owner_cannot_write_after_a_takeover(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    target = make.target(dialing.outdial.id)
    await store.create_targets([target, make.target(dialing.outdial.id)])
    now = make.at(1)
    old = await store.acquire_lease(dialing.campaign.id, ALICE, TTL, now)
    assert old is not None
    call = await store.start_attempt(msgspec.structs.replace(dialing.plan(now), fence=old))
    assert call is not None

    later = await expire(store, dialing.campaign.id, ALICE, now)
    new = await store.acquire_lease(dialing.campaign.id, BOB, 60, later)
    assert new is not None

    with pytest.raises(LeaseLost):
        await store.start_attempt(msgspec.structs.replace(dialing.plan(later), fence=old))
    with pytest.raises(LeaseLost):
        await store.mark_answered(call.id, later, fence=old)
    with pytest.raises(LeaseLost):
        await store.finish_attempt(
            call.id, CampaigncallResult.FAIL, "busy", (3, 0, 0, 0, 0), later, fence=old
        )
    stopped = msgspec.structs.replace(dialing.campaign, status=CampaignStatus.STOP)
    with pytest.raises(LeaseLost):
        await store.update_campaign(stopped, fence=old)

    # Nothing changed: still one attempt, dialing, on a progressing target.
    assert [c.id for c in await store.active_attempts(dialing.campaign.id)] == [call.id]
    stored_call = await store.get_campaigncall(None, call.id)
    assert stored_call is not None
    assert stored_call.status == "dialing"
    stored_target = await store.get_target(dialing.outdial.id, call.outdial_target_id)
    assert stored_target is not None
    assert stored_target.status == TargetStatus.PROGRESSING
    campaign = await store.get_campaign(None, dialing.campaign.id)
    assert campaign is not None
    assert campaign.status == CampaignStatus.RUN

    # The new owner's fence works.
    finished = await store.finish_attempt(
        call.id, CampaigncallResult.FAIL, "lost", (3, 0, 0, 0, 0), later, fence=new
    )
    assert finished is not None
    assert finished.finished


async def test_a_fence_of_another_campaign_is_refused(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    await store.create_targets([make.target(dialing.outdial.id)])
    now = make.at(1)
    other = await store.acquire_lease("another-campaign", ALICE, 60, now)
    assert other is not None
    mine = await store.acquire_lease(dialing.campaign.id, ALICE, 60, now)
    assert mine is not None
    call = await store.start_attempt(msgspec.structs.replace(dialing.plan(now), fence=mine))
    assert call is not None
    with pytest.raises(LeaseLost):
        await store.finish_attempt(
            call.id, CampaigncallResult.FAIL, "busy", (3, 0, 0, 0, 0), now, fence=other
        )
    wrong = Fence(dialing.campaign.id, ALICE, mine.token + 1)
    with pytest.raises(LeaseLost):
        await store.mark_answered(call.id, now, fence=wrong)


async def test_two_instances_never_hold_one_campaign_at_once(
    store: Store, twin_store: Store, make: Factory
) -> None:
    campaigns = [f"race-{n}" for n in range(20)]
    now = make.at(0)
    holders: dict[str, set[str]] = {campaign: set() for campaign in campaigns}

    async def compete(instance: Store, owner: str) -> None:
        for campaign in campaigns:
            if await instance.acquire_lease(campaign, owner, 60, now) is not None:
                holders[campaign].add(owner)

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(compete, store, ALICE)
        task_group.start_soon(compete, twin_store, BOB)
    assert all(len(owners) == 1 for owners in holders.values())
