"""The Redis store on a real Redis Cluster (three primaries, a replica each): one
customer's keys on one shard, many customers spread over the shards; a store of an older
layout refused with what to do; a primary killed: an outage of its customers, then
claims resume on the promoted replica once the live attempts are written back."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import anyio
import pytest
import redis.asyncio

from dialerd.core.targets import RetryRule
from dialerd.model import Campaigncall, CampaigncallResult, CampaigncallStatus
from dialerd.store.base import StoreError, StoreUnavailable
from dialerd.store.redis import RedisStore
from scripts.chaoslib.redis_cluster import RedisClusterRig, slot_of
from tests.integration.conftest import at
from tests.integration.store.store_steps import (
    claim,
    finish,
    held_until_the_later_attempt_ends,
    hold_next_claim,
)

if TYPE_CHECKING:
    from tests.integration.conftest import Factory


def cluster_store(url: str) -> RedisStore:
    return RedisStore(url=url, prefix="dtest", pool_size=8, timeout=2.0, cluster=True)


@pytest.fixture
async def store(redis_cluster_url: str) -> AsyncIterator[RedisStore]:
    opened = cluster_store(redis_cluster_url)
    await opened.open()
    yield opened
    await opened.close()


async def keys_by_node(rig: RedisClusterRig) -> dict[int, list[str]]:
    """Every key each primary holds, read from the primary itself."""
    found: dict[int, list[str]] = {}
    for port in rig.primaries():
        client = redis.asyncio.Redis(port=port, decode_responses=True)
        try:
            found[port] = [key async for key in client.scan_iter(count=1000)]
        finally:
            await client.aclose()
    return found


async def test_a_customers_keys_are_on_one_shard_and_customers_spread(
    store: RedisStore, make: Factory, redis_cluster: RedisClusterRig
) -> None:
    customers = []
    for _ in range(12):
        dialing = await make.dialing(store)
        customers.append(dialing.campaign.customer_id)
        await store.create_targets([make.target(dialing.outdial.id) for _ in range(3)])
        call = await store.start_attempt(dialing.plan(make.at(1)))
        assert call is not None
        rule = RetryRule.of(dialing.outplan)
        await store.finish_attempt(call.id, CampaigncallResult.FAIL, "busy", rule, make.at(2))

    nodes_of: dict[str, set[int]] = {customer: set() for customer in customers}
    for port, keys in (await keys_by_node(redis_cluster)).items():
        for key in keys:
            for customer in customers:
                if f"{{c:{customer}}}" in key:
                    nodes_of[customer].add(port)
    # Each customer's campaign, targets, attempts, indexes, events: one primary.
    assert all(len(ports) == 1 for ports in nodes_of.values())
    # Twelve customers over three primaries: more than one holds some.
    spread = Counter(next(iter(ports)) for ports in nodes_of.values())
    assert len(spread) > 1


async def test_a_store_of_an_older_layout_is_refused_on_a_cluster(
    redis_cluster_url: str, redis_cluster: RedisClusterRig
) -> None:
    client = redis.asyncio.RedisCluster.from_url(redis_cluster_url)
    try:
        await client.set("dtest:layout", 2)
    finally:
        await client.aclose()
    store = cluster_store(redis_cluster_url)
    with pytest.raises(StoreError, match=r"key layout 2: open it on a single Redis"):
        await store.open()


# -- a primary of the cluster dies: its replica is promoted ---------------------------------


@pytest.fixture(scope="module")
def own_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterRig]:
    """A cluster of this module's own: its failover test leaves the session's intact."""
    rig = RedisClusterRig(tmp_path_factory.mktemp("failover-cluster"))
    yield rig
    rig.stop()


async def test_a_dead_primary_is_an_outage_of_its_customers_then_claims_resume(
    own_cluster: RedisClusterRig, make: Factory
) -> None:
    store = RedisStore(
        url=own_cluster.url,
        prefix="dfail",
        pool_size=8,
        timeout=1.0,
        cluster=True,
        min_replicas=1,
        replica_timeout=0.3,
        failover_settle=0.0,
    )
    await store.open()
    try:
        dialing = await make.dialing(store)
        customer = dialing.campaign.customer_id
        await store.create_targets([make.target(dialing.outdial.id) for _ in range(3)])
        fence = await store.acquire_lease(dialing.campaign.id, "instance-a", 60, at(0))
        assert fence is not None
        first = await store.start_attempts([dialing.plan(at(1))])
        assert len(first) == 1

        shard = own_cluster.primary_of_slot(slot_of(store._tag(customer)))
        assert shard is not None
        own_cluster.kill(shard)
        with pytest.raises(StoreUnavailable):
            await store.start_attempts([dialing.plan(at(2))])
        own_cluster.wait_promoted(shard)
        deadline = time.monotonic() + 30
        while not store.failed_over:
            assert time.monotonic() < deadline, "the store never reached the promoted replica"
            with contextlib.suppress(StoreUnavailable):
                await store.start_attempts([dialing.plan(at(3))])
            await anyio.sleep(0.05)  # polls other processes (the cluster's nodes), bounded
        # The promoted replica is seen: nothing is claimed before the write-back.
        with pytest.raises(StoreUnavailable, match="failed over"):
            await store.start_attempts([dialing.plan(at(3))])
        with pytest.raises(StoreUnavailable, match="not written back"):
            await store.ping()

        # The promoted replica has no replica of its own: min_replicas = 1 cannot hold
        # until the dead node is back (as its replica).
        with pytest.raises(StoreUnavailable, match="0 of the 1 replicas"):
            await store.write_back([fence], 60, first)
        own_cluster.heal(shard)
        deadline = time.monotonic() + 10
        while store.failed_over:  # the rejoined replica acknowledges within a moment
            assert time.monotonic() < deadline, "the write-back was never acknowledged"
            with contextlib.suppress(StoreUnavailable):
                await store.write_back([fence], 60, first)
            await anyio.sleep(0.05)  # polls another process (the replica), bounded
        assert await store.acquire_lease(dialing.campaign.id, "instance-a", 60, at(4)) == fence
        # The claim before the kill stands: the other two targets, no target twice.
        more = await store.start_attempts([dialing.plan(at(4)) for _ in range(3)])
        claimed = [call.outdial_target_id for call in [*first, *more]]
        assert sorted(claimed) == sorted(set(claimed))
        assert len(claimed) == 3
        done = await store.finish_attempt(
            first[0].id, CampaigncallResult.FAIL, "busy", RetryRule.of(dialing.outplan), at(5)
        )
        assert done is not None
        assert done.finished
    finally:
        await store.close()
        own_cluster.heal(shard)


async def test_a_replica_promoted_is_seen_before_a_claim_on_a_connection_opened_to_it_earlier(
    own_cluster: RedisClusterRig, make: Factory
) -> None:
    """The cluster client keeps a connection it opened to the customer's replica (it asks
    any node for the slots). The primary takes a claim the replica never gets, dies, and
    the replica is promoted: the store sees the failover before anything is written on
    that old connection, so no claim is made until the live attempt is written back,
    and the target whose claim the promoted replica lost is not claimed again."""
    store = RedisStore(
        url=own_cluster.url,
        prefix="dpromoted",
        pool_size=8,
        timeout=1.0,
        cluster=True,
        failover_settle=0.0,
    )
    await store.open()
    shard = None
    try:
        dialing = await make.dialing(store)
        customer = dialing.campaign.customer_id
        await store.create_targets([make.target(dialing.outdial.id) for _ in range(2)])
        fence = await store.acquire_lease(dialing.campaign.id, "instance-a", 60, at(0))
        assert fence is not None
        shard = own_cluster.primary_of_slot(slot_of(store._tag(customer)))
        assert shard is not None
        replica = own_cluster.replica_of(shard)
        assert replica is not None
        # A connection to the replica, as a refresh of the slots opens one (a replica is
        # listed once the others know it has data: polled, bounded).
        client = store._connected()
        deadline = time.monotonic() + 30
        while f"127.0.0.1:{replica}" not in {node.name for node in client.get_replicas()}:
            assert time.monotonic() < deadline, "the cluster never listed the replica"
            await anyio.sleep(0.05)
            await client.nodes_manager.initialize()
        await client.ping(target_nodes=redis.asyncio.RedisCluster.REPLICAS)

        # The replica stops getting the primary's writes; the primary takes a claim.
        own_cluster.pause(replica)
        own_cluster.cut_replicas_of(shard)
        first = await store.start_attempts([dialing.plan(at(1))])
        assert len(first) == 1
        own_cluster.kill(shard)
        own_cluster.resume(replica)
        own_cluster.wait_promoted(shard)

        claimed_before_write_back: list[Campaigncall] = []
        deadline = time.monotonic() + 30
        while not store.failed_over and not claimed_before_write_back:
            assert time.monotonic() < deadline, "the store never saw the promoted replica"
            with contextlib.suppress(StoreUnavailable):
                claimed_before_write_back += await store.start_attempts([dialing.plan(at(2))])
            await anyio.sleep(0.05)  # polls other processes (the cluster's nodes), bounded
        # Nothing was claimed on the promoted replica before the store saw it (on the
        # old connection it would have claimed the first target again).
        assert claimed_before_write_back == []

        await store.write_back([fence], 60, first)
        more = await store.start_attempts([dialing.plan(at(3)) for _ in range(2)])
        claimed = [call.outdial_target_id for call in [*first, *more]]
        assert len(claimed) == 2
        assert sorted(claimed) == sorted(set(claimed))
    finally:
        await store.close()
        if shard is not None:
            own_cluster.heal(shard)


async def _until_failed_over(store: RedisStore) -> None:
    """Until the store has seen the promoted replica (polls the cluster, bounded)."""
    deadline = time.monotonic() + 30
    while not store.failed_over:
        assert time.monotonic() < deadline, "the store never saw the promoted replica"
        with contextlib.suppress(StoreUnavailable):
            await store.ping()
        await anyio.sleep(0.05)  # polls other processes (the cluster's nodes), bounded


async def test_a_lease_lost_with_the_primary_is_left_to_its_owner_while_the_failover_settles(
    own_cluster: RedisClusterRig, make: Factory
) -> None:
    """The owner's lease renewals did not reach the replica, so on the promoted replica
    the lease has expired. Another instance, written back first, does not take it
    while the failover settles (its owner's live attempts are not written back yet:
    their targets look free); the owner writes back and keeps its lease and token."""
    owner = RedisStore(
        url=own_cluster.url, prefix="dsettle", pool_size=8, timeout=1.0, cluster=True,
        failover_settle=0.0,
    )  # fmt: skip
    other = RedisStore(
        url=own_cluster.url, prefix="dsettle", pool_size=8, timeout=1.0, cluster=True,
        failover_settle=30.0,
    )  # fmt: skip
    await owner.open()
    await other.open()
    shard = None
    try:
        dialing = await make.dialing(owner)
        campaign_id = dialing.campaign.id
        fence = await owner.acquire_lease(campaign_id, "instance-a", 0.5, at(0))
        assert fence is not None
        shard = own_cluster.primary_of_slot(slot_of(owner._tag(dialing.campaign.customer_id)))
        assert shard is not None
        own_cluster.kill(shard)
        own_cluster.wait_promoted(shard)  # longer than the lease's half second

        await _until_failed_over(other)
        await other.write_back([], 60, [])
        assert await other.acquire_lease(campaign_id, "instance-b", 60, at(1)) is None

        await _until_failed_over(owner)
        await owner.write_back([fence], 60, [])
        assert await owner.lease_owner(campaign_id) == "instance-a"
        assert await owner.acquire_lease(campaign_id, "instance-a", 60, at(2)) == fence
        assert await other.acquire_lease(campaign_id, "instance-b", 60, at(2)) is None
    finally:
        await owner.close()
        await other.close()
        if shard is not None:
            own_cluster.heal(shard)


async def until_replicated(store: RedisStore, shard: int, customer: str) -> None:
    """Wait until the replica of ``shard`` has every write of its primary (a write on
    the customer's slot, then WAIT for it)."""
    primary = redis.asyncio.Redis(port=shard)
    try:
        await primary.incr(f"{store._tag(customer)}:sync")
        assert await primary.wait(1, 5000) == 1
    finally:
        await primary.aclose()


async def test_a_claim_begun_before_the_failover_is_not_made_on_the_promoted_replica(
    own_cluster: RedisClusterRig, make: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim begins (its guard passed: no failover seen yet) and waits for the store;
    meanwhile the primary, whose claim the replica never got, dies, the replica is
    promoted, and a read opens a connection to it (the failover is seen). The claim
    goes on: it must not be written on that connection, on a primary that lacks the
    first claim (it would claim the first target again, an attempt nobody dials, left
    live next to the first one once that is written back)."""
    store = RedisStore(
        url=own_cluster.url,
        prefix="dbegun",
        pool_size=8,
        timeout=1.0,
        cluster=True,
        failover_settle=0.0,
    )
    await store.open()
    shard = None
    try:
        dialing = await make.dialing(store)
        customer = dialing.campaign.customer_id
        await store.create_targets([make.target(dialing.outdial.id) for _ in range(2)])
        fence = await store.acquire_lease(dialing.campaign.id, "instance-a", 60, at(0))
        assert fence is not None
        shard = own_cluster.primary_of_slot(slot_of(store._tag(customer)))
        assert shard is not None
        replica = own_cluster.replica_of(shard)
        assert replica is not None
        # The replica has the campaign running and the targets before it is paused.
        await until_replicated(store, shard, customer)
        own_cluster.pause(replica)
        own_cluster.cut_replicas_of(shard)
        first = await store.start_attempts([dialing.plan(at(1))])
        assert len(first) == 1

        # The next claim is held once it has begun, before it reaches the store.
        held = hold_next_claim(store, monkeypatch)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(held.claim_into, store, dialing, at(2))
            await held.begun.wait()
            own_cluster.kill(shard)
            own_cluster.resume(replica)
            own_cluster.wait_promoted(shard)
            await _until_failed_over(store)  # a read reaches the promoted replica
            held.go.set()
        assert isinstance(held.outcome[0], StoreUnavailable)

        await store.write_back([fence], 60, first)
        more = await store.start_attempts([dialing.plan(at(3)) for _ in range(2)])
        claimed = [call.outdial_target_id for call in [*first, *more]]
        assert len(claimed) == 2
        assert sorted(claimed) == sorted(set(claimed))
        # No attempt is live but the two claims returned (and dialed).
        live = await store.active_attempts(dialing.campaign.id)
        assert sorted(call.id for call in live) == sorted(call.id for call in [*first, *more])
    finally:
        await store.close()
        if shard is not None:
            own_cluster.heal(shard)


async def test_an_end_the_promoted_replica_lost_is_written_again_after_the_later_claim(
    own_cluster: RedisClusterRig, make: Factory
) -> None:
    """The shard's replica has attempt A (claimed); then the primary alone takes A's end
    and the next attempt B of the same target, and dies. The promoted replica has A live
    and its target progressing for A; the write-back puts B back, then ends A as it
    ended (busy), without moving the target B holds: no claim takes it while B is up,
    and once B ends the next attempt is the only one live on it."""
    store = RedisStore(
        url=own_cluster.url,
        prefix="dended",
        pool_size=8,
        timeout=1.0,
        cluster=True,
        failover_settle=0.0,
    )
    await store.open()
    shard = None
    try:
        dialing = await make.dialing(store)
        customer = dialing.campaign.customer_id
        await store.create_targets([make.target(dialing.outdial.id)])
        fence = await store.acquire_lease(dialing.campaign.id, "instance-a", 60, at(0))
        assert fence is not None
        shard = own_cluster.primary_of_slot(slot_of(store._tag(customer)))
        assert shard is not None
        replica = own_cluster.replica_of(shard)
        assert replica is not None
        first = await claim(store, dialing, at(1))
        # The replica has the claim.
        await until_replicated(store, shard, customer)
        own_cluster.pause(replica)
        own_cluster.cut_replicas_of(shard)
        await finish(store, dialing, first, at(2))  # on the primary alone: lost
        second = await claim(store, dialing, at(3))
        assert second.outdial_target_id == first.outdial_target_id
        own_cluster.kill(shard)
        own_cluster.resume(replica)
        own_cluster.wait_promoted(shard)
        await _until_failed_over(store)

        await store.write_back([fence], 60, [second])
        ended = await store.get_campaigncall(customer, first.id)
        assert ended is not None
        assert (ended.status, ended.result, ended.reason) == (
            CampaigncallStatus.DONE,
            CampaigncallResult.FAIL,
            "busy",
        )
        await held_until_the_later_attempt_ends(store, dialing, second, at(4))
    finally:
        await store.close()
        if shard is not None:
            own_cluster.heal(shard)
