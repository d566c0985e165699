"""The Redis store on a real Redis Cluster (three primaries, a replica each): one
customer's keys on one shard, many customers spread over the shards; a store of an older
layout refused with what to do."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
import redis.asyncio

from dialerd.core.targets import RetryRule
from dialerd.model import CampaigncallResult
from dialerd.store.base import StoreError
from dialerd.store.redis import RedisStore
from scripts.chaoslib.redis_cluster import RedisClusterRig

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
