"""What only the Redis store does: its key namespace, staged imports and lost connections."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis.asyncio

from dialerd.core.targets import RetryRule
from dialerd.model import CampaigncallResult, TargetStatus
from dialerd.store.base import CampaignNotRunning, Conflict, StoreError, StoreUnavailable
from dialerd.store.redis import RedisStore
from tests.conftest import RedisServer, free_port

if TYPE_CHECKING:
    from tests.integration.conftest import Factory


def redis_store(url: str, *, prefix: str = "dtest", import_chunk: int = 4) -> RedisStore:
    """A store whose imports are staged as soon as they exceed a few targets."""
    return RedisStore(url=url, prefix=prefix, pool_size=8, timeout=2.0, import_chunk=import_chunk)


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStore]:
    opened = redis_store(redis_url)
    await opened.open()
    yield opened
    await opened.close()


async def all_keys(url: str) -> list[str]:
    """Every key of the database, read with a client of our own."""
    client = redis.asyncio.Redis.from_url(url, decode_responses=True)
    try:
        return [key async for key in client.scan_iter(count=1000)]
    finally:
        await client.aclose()


async def test_a_staged_import_is_published_whole_in_creation_order(
    store: RedisStore, make: Factory
) -> None:
    dialing = await make.dialing(store)
    targets = [make.target(dialing.outdial.id, name=f"lead {n}") for n in range(10)]
    assert await store.create_targets(targets) == 10

    listed = await store.list_targets(dialing.outdial.id)
    assert {target.id for target in listed.result} == {target.id for target in targets}
    assert await store.get_target(dialing.outdial.id, targets[7].id) == targets[7]
    claimed = []
    for _ in targets:
        campaigncall = await store.start_attempt(dialing.plan(make.at(1)))
        assert campaigncall is not None
        claimed.append(campaigncall.outdial_target_id)
    assert claimed == [target.id for target in targets]


async def test_an_import_failing_midway_leaves_nothing_behind(
    store: RedisStore, make: Factory, redis_url: str
) -> None:
    dialing = await make.dialing(store)
    existing = make.target(dialing.outdial.id)
    await store.create_targets([existing])
    keys_before = set(await all_keys(redis_url))
    # Two chunks are staged before the third one meets the duplicate.
    batch = [make.target(dialing.outdial.id) for _ in range(9)]

    with pytest.raises(Conflict, match=existing.id):
        await store.create_targets([*batch, existing])

    for target in batch:
        assert await store.get_target(dialing.outdial.id, target.id) is None
    assert [t.id for t in (await store.list_targets(dialing.outdial.id)).result] == [existing.id]
    assert set(await all_keys(redis_url)) == keys_before
    # The only dialable target is the one that existed before.
    campaigncall = await store.start_attempt(dialing.plan(make.at(1)))
    assert campaigncall is not None
    assert campaigncall.outdial_target_id == existing.id
    assert await store.start_attempt(dialing.plan(make.at(1))) is None
    # The same batch imports cleanly once the duplicate is left out.
    assert await store.create_targets(batch) == 9


async def test_every_key_is_under_the_prefix(
    store: RedisStore, make: Factory, redis_url: str
) -> None:
    dialing = await make.dialing(store)
    await store.create_targets([make.target(dialing.outdial.id) for _ in range(6)])
    campaigncall = await store.start_attempt(dialing.plan(make.at(1)))
    assert campaigncall is not None
    await store.mark_answered(campaigncall.id, make.at(2))
    await store.finish_attempt(
        campaigncall.id, CampaigncallResult.FAIL, "busy", RetryRule.of(dialing.outplan), make.at(3)
    )

    keys = await all_keys(redis_url)
    assert keys
    assert all(key.startswith("dtest:") for key in keys)
    neighbour = redis_store(redis_url, prefix="neighbour")
    await neighbour.open()
    try:
        assert await neighbour.get_campaign(None, dialing.campaign.id) is None
        with pytest.raises(CampaignNotRunning):
            await neighbour.start_attempt(dialing.plan(make.at(4)))
    finally:
        await neighbour.close()


async def test_scripts_flushed_from_the_server_are_loaded_again(
    store: RedisStore, make: Factory, redis_url: str
) -> None:
    dialing = await make.dialing(store)
    target = make.target(dialing.outdial.id)
    await store.create_targets([target])
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        await client.script_flush()
    finally:
        await client.aclose()
    campaigncall = await store.start_attempt(dialing.plan(make.at(1)))
    assert campaigncall is not None
    assert campaigncall.outdial_target_id == target.id


async def test_an_unreachable_server_is_reported_without_its_password() -> None:
    url = f"redis://dialer:s3cret-word@127.0.0.1:{free_port()}/0"
    store = redis_store(url)
    with pytest.raises(StoreUnavailable) as raised:
        await store.open()
    assert "s3cret-word" not in str(raised.value)
    assert "dialer:***@127.0.0.1" in str(raised.value)
    await store.close()


async def test_a_lost_server_is_unavailable_until_it_is_back(tmp_path: Path, make: Factory) -> None:
    server = RedisServer(tmp_path)
    store = redis_store(server.url)
    try:
        await store.open()
        dialing = await make.dialing(store)
        target = make.target(dialing.outdial.id)
        await store.create_targets([target])
        server.stop()
        with pytest.raises(StoreUnavailable):
            await store.ping()
        with pytest.raises(StoreUnavailable):
            await store.start_attempt(dialing.plan(make.at(1)))
        # An empty server comes back (no persistence): the store works again at once.
        server.start()
        await store.ping()
        assert await store.get_target(dialing.outdial.id, target.id) is None
        await store.create_targets([target])
        stored = await store.get_target(dialing.outdial.id, target.id)
        assert stored is not None
        assert stored.status == TargetStatus.IDLE
    finally:
        await store.close()
        server.stop()


async def test_close_is_idempotent_and_a_closed_store_refuses_calls(redis_url: str) -> None:
    store = redis_store(redis_url)
    await store.open()
    await store.close()
    await store.close()
    with pytest.raises(StoreError, match="not open"):
        await store.ping()


# A crash cannot be provoked through the public methods, so the next two tests drive the
# import steps themselves: one chunk written, then published or abandoned.


async def test_an_import_in_progress_is_invisible_until_published(
    store: RedisStore, make: Factory
) -> None:
    dialing = await make.dialing(store)
    staged = [make.target(dialing.outdial.id) for _ in range(3)]
    await store._insert_targets("batch-1", staged)

    assert await store.get_target(dialing.outdial.id, staged[0].id) is None
    assert (await store.list_targets(dialing.outdial.id)).result == []
    assert await store.start_attempt(dialing.plan(make.at(1))) is None
    await store._run("publish", "batch-1")
    assert await store.get_target(dialing.outdial.id, staged[0].id) == staged[0]
    assert len((await store.list_targets(dialing.outdial.id)).result) == 3
    campaigncall = await store.start_attempt(dialing.plan(make.at(1)))
    assert campaigncall is not None
    assert campaigncall.outdial_target_id == staged[0].id


async def test_claims_drop_the_leftovers_of_an_abandoned_import(
    store: RedisStore, make: Factory, redis_url: str
) -> None:
    dialing = await make.dialing(store)
    # The abandoned targets are older, so they sit at the head of the dialing queue.
    abandoned = [make.target(dialing.outdial.id, tm_create=make.stamp(0)) for _ in range(100)]
    await store._insert_targets("batch-2", abandoned)
    # The importer died: its marker expired.
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        await client.delete("dtest:import:batch-2")
    finally:
        await client.aclose()
    kept = make.target(dialing.outdial.id, tm_create=make.stamp(5))
    await store.create_targets([kept])

    # More leftovers than one claim steps over: within two claims the target is dialed.
    claims = [await store.start_attempt(dialing.plan(make.at(10))) for _ in range(2)]
    assert [claim.outdial_target_id for claim in claims if claim is not None] == [kept.id]
    assert [t.id for t in (await store.list_targets(dialing.outdial.id)).result] == [kept.id]
    assert await store.get_target(dialing.outdial.id, abandoned[0].id) is None
    # Ids of abandoned targets can be imported again.
    assert await store.create_targets(abandoned[:2]) == 2
