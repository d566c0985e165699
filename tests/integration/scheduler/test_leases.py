"""Campaign leases between several instances on one Redis, and what only SQLite does.

The lease contract itself (acquire, renew, expire, release, fencing) is in the
conformance suites, tests/integration/store/test_store_*.py, run on both backends.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path

import anyio
import msgspec
import pytest

from dialerd.model import Campaign, CampaignStatus, format_time, new_id
from dialerd.store.base import Fence, LeaseLost
from dialerd.store.redis import RedisStore
from dialerd.store.sqlite import SqliteStore
from tests.integration.conftest import EPOCH, Factory

ALICE, BOB = "host-a:101:0a0a", "host-b:202:0b0b"
TTL = 0.5
# How long an instance waits between two rounds of renewals.
ROUND = 0.05
# Leeway for a takeover after the lease ran out: the next round, and a loaded machine.
LATE = 0.4
CAMPAIGNS = 20


class Instance:
    """One dialerd process as far as leases go: each round it takes or renews the lease of
    every campaign it can, and proves it with a fenced write."""

    def __init__(self, store: RedisStore, owner: str, campaigns: Sequence[Campaign]) -> None:
        self.store = store
        self.owner = owner
        self.campaigns = campaigns
        self.fences: dict[str, Fence] = {}
        # campaign id -> monotonic times just before and after its latest renewal
        self.renewed: dict[str, tuple[float, float]] = {}
        # campaign id -> the same for the first time this instance got the lease
        self.taken: dict[str, tuple[float, float]] = {}
        self.stopped = anyio.Event()

    async def run(self) -> None:
        """Renew until stopped, like an engine that stops ticking (or is paused)."""
        while True:
            for campaign in self.campaigns:
                if self.stopped.is_set():
                    return
                before = time.monotonic()
                fence = await self.store.acquire_lease(campaign.id, self.owner, TTL, EPOCH)
                after = time.monotonic()
                if fence is None:
                    continue
                known = self.fences.setdefault(campaign.id, fence)
                assert fence == known, "the token changed while this instance kept its lease"
                self.taken.setdefault(campaign.id, (before, after))
                self.renewed[campaign.id] = (before, after)
                ticked = msgspec.structs.replace(campaign, detail=f"ticked by {self.owner}")
                await self.store.update_campaign(ticked, fence=fence)
            await anyio.sleep(ROUND)


@pytest.fixture
async def redis_stores(redis_url: str) -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    """Two separately opened Redis stores on one server: two dialerd processes."""
    first, second = (
        RedisStore(url=redis_url, prefix="dtest", pool_size=8, timeout=2.0) for _ in range(2)
    )
    await first.open()
    await second.open()
    yield first, second
    await first.close()
    await second.close()


async def test_two_instances_share_campaigns_and_one_takes_over_when_the_other_stops(
    redis_stores: tuple[RedisStore, RedisStore], make: Factory
) -> None:
    first_store, second_store = redis_stores
    customer = new_id()
    campaigns = [
        await first_store.create_campaign(make.campaign(customer, status=CampaignStatus.RUN))
        for _ in range(CAMPAIGNS)
    ]
    # Opposite orders: both contend for every campaign, meeting in the middle.
    alice = Instance(first_store, ALICE, campaigns)
    bob = Instance(second_store, BOB, campaigns[::-1])
    every = {campaign.id for campaign in campaigns}

    with anyio.fail_after(TTL * 2 + LATE + 10):
        async with anyio.create_task_group() as instances:
            instances.start_soon(alice.run)
            instances.start_soon(bob.run)
            # Both renew for longer than a lease lasts: nothing changes hands.
            await anyio.sleep(TTL * 2)
            assert set(alice.fences) | set(bob.fences) == every
            assert set(alice.fences) & set(bob.fences) == set()
            assert alice.fences
            assert bob.fences
            kept = dict(alice.fences)

            alice.stopped.set()
            stopped_at = time.monotonic()
            while set(bob.fences) != every:
                assert time.monotonic() < stopped_at + TTL + LATE, (
                    f"{len(every - set(bob.fences))} campaigns not taken over within the lease"
                )
                await anyio.sleep(ROUND / 2)
            bob.stopped.set()

    for campaign_id, old in kept.items():
        before, after = alice.renewed[campaign_id]
        taken_before, taken_after = bob.taken[campaign_id]
        # Not before the old lease ran out (ms rounding on the server), and soon after.
        assert taken_after >= before + TTL - 0.005
        assert taken_before <= after + TTL + LATE
        assert bob.fences[campaign_id].token > old.token
    # The stopped instance wakes up: every write it tries is fenced off.
    for campaign in campaigns:
        if campaign.id in kept:
            stale = msgspec.structs.replace(campaign, detail=f"ticked by {ALICE} again")
            with pytest.raises(LeaseLost):
                await first_store.update_campaign(stale, fence=kept[campaign.id])
        stored = await first_store.get_campaign(None, campaign.id)
        assert stored is not None
        assert stored.detail == f"ticked by {BOB}"
        assert await first_store.lease_owner(campaign.id) == BOB


async def test_instances_racing_for_a_free_lease_get_one_winner_each(
    redis_stores: tuple[RedisStore, RedisStore],
) -> None:
    winners: dict[str, list[str]] = {f"race-{n}": [] for n in range(CAMPAIGNS)}

    async def contend(store: RedisStore, owner: str) -> None:
        for campaign_id in winners:
            if await store.acquire_lease(campaign_id, owner, 60, EPOCH) is not None:
                winners[campaign_id].append(owner)

    async with anyio.create_task_group() as instances:
        instances.start_soon(contend, redis_stores[0], ALICE)
        instances.start_soon(contend, redis_stores[1], BOB)
    assert all(len(owners) == 1 for owners in winners.values()), winners


# -- SQLite: one host, leases follow the ``now`` the caller passes ----------------------------


async def test_sqlite_leases_expire_at_now_plus_ttl(tmp_path: Path, make: Factory) -> None:
    store = SqliteStore(tmp_path / "dialerd.sqlite3")
    await store.open()
    try:
        dialing = await make.dialing(store)
        await store.create_targets([make.target(dialing.outdial.id) for _ in range(2)])
        start = make.at(0)
        fence = await store.acquire_lease(dialing.campaign.id, ALICE, 10, start)
        assert fence is not None
        last_moment = start + timedelta(seconds=10) - timedelta(microseconds=1)
        assert await store.lease_owner(dialing.campaign.id, last_moment) == ALICE
        assert await store.acquire_lease(dialing.campaign.id, BOB, 10, last_moment) is None
        plan = msgspec.structs.replace(dialing.plan(last_moment), fence=fence)
        assert await store.start_attempt(plan) is not None

        expiry = start + timedelta(seconds=10)
        assert await store.lease_owner(dialing.campaign.id, expiry) is None
        with pytest.raises(LeaseLost):
            await store.start_attempt(msgspec.structs.replace(dialing.plan(expiry), fence=fence))
        # update_campaign has no ``now``: the campaign's tm_update is the moment of the write.
        early = msgspec.structs.replace(dialing.campaign, tm_update=format_time(last_moment))
        assert await store.update_campaign(early, fence=fence) == early
        late = msgspec.structs.replace(dialing.campaign, tm_update=format_time(expiry))
        with pytest.raises(LeaseLost):
            await store.update_campaign(late, fence=fence)
    finally:
        await store.close()
