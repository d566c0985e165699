"""What only the Redis store does: its key namespace, staged imports and lost connections."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import msgspec
import pytest
import redis.asyncio

from dialerd import metrics
from dialerd.core.hours import CallingHours
from dialerd.core.predictive import PacingPrior
from dialerd.core.targets import CallingRules, RetryRule
from dialerd.events.model import event_of
from dialerd.model import (
    CampaigncallResult,
    CampaignStatus,
    DncNumber,
    OutdialTarget,
    TargetStatus,
)
from dialerd.store.base import (
    AsStored,
    AttemptEnd,
    CampaignNotRunning,
    Conflict,
    FinishResult,
    StoreBusy,
    StoreError,
    StoreUnavailable,
)
from dialerd.store.redis import RedisStore
from dialerd.store.redis.fields import LAYOUT, micros_of_stamp
from tests.conftest import RedisServer, free_port
from tests.integration.events.test_sender import until
from tests.integration.store.store_steps import finish

if TYPE_CHECKING:
    from tests.integration.conftest import Dialing, Factory


def redis_store(url: str, *, prefix: str = "dtest", import_chunk: int = 4) -> RedisStore:
    """A store whose imports are staged as soon as they exceed a few targets."""
    return RedisStore(url=url, prefix=prefix, pool_size=8, timeout=2.0, import_chunk=import_chunk)


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStore]:
    opened = redis_store(redis_url)
    await opened.open()
    yield opened
    await opened.close()


def tagged(customer: str, *parts: str) -> str:
    """A key of the customer's data in key layout 3 (prefix ``dtest``)."""
    return ":".join((f"dtest:{{c:{customer}}}", *parts))


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


async def test_a_deleted_campaigncall_leaves_no_key_to_find_it_by(
    store: RedisStore, make: Factory, redis_url: str
) -> None:
    """The keys that resolve an attempt's customer by its id alone do not outlive it:
    on a store that keeps every attempt they would grow with the attempts for ever."""
    dialing = await make.dialing(store)
    await store.create_targets([make.target(dialing.outdial.id) for _ in range(2)])
    kept, deleted = await store.start_attempts([dialing.plan(make.at(1)) for _ in range(2)])
    for call in (kept, deleted):
        await finish(store, dialing, call, make.at(2))
    customer = dialing.campaign.customer_id
    assert await store.delete_campaigncall(customer, deleted.id, make.at(3)) is not None

    keys = await all_keys(redis_url)
    assert f"dtest:where:{kept.id}" in keys
    assert f"dtest:where:{deleted.id}" not in keys
    other = redis_store(redis_url)
    await other.open()
    try:
        assert await other.get_campaigncall(None, deleted.id) is None
        assert await other.get_campaigncall(customer, deleted.id) is None
        found = await other.get_campaigncall(None, kept.id)
        assert found is not None
        assert found.id == kept.id
    finally:
        await other.close()


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


async def test_connections_the_server_closed_while_idle_are_opened_again(
    store: RedisStore, make: Factory, redis_url: str
) -> None:
    # The server (its idle ``timeout``, a proxy, an operator's CLIENT KILL) closes the
    # store's connections between two calls: the next claim and end go through, on
    # connections opened again, rather than failing as an outage.
    dialing = await make.dialing(store)
    await store.create_targets([make.target(dialing.outdial.id) for _ in range(2)])
    first = await store.start_attempt(dialing.plan(make.at(1)))
    assert first is not None
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        # The session's own redis-server: every connection but this one.
        assert await client.client_kill_filter(_type="normal", skipme=True) > 0
    finally:
        await client.aclose()
    second = await store.start_attempt(dialing.plan(make.at(2)))
    assert second is not None
    assert second.outdial_target_id != first.outdial_target_id
    await finish(store, dialing, first, make.at(3))


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
        # An empty server comes back (no persistence): a new primary, to which the
        # instance writes its leases and live attempts back before it claims again.
        server.start()
        with pytest.raises(StoreUnavailable, match="not written back yet"):
            await store.ping()
        with pytest.raises(StoreUnavailable, match="failed over"):
            await store.start_attempt(dialing.plan(make.at(1)))
        await store.write_back([], 15.0, [])
        await store.ping()
        assert await store.get_target(dialing.outdial.id, target.id) is None
        await store.create_targets([target])
        stored = await store.get_target(dialing.outdial.id, target.id)
        assert stored is not None
        assert stored.status == TargetStatus.IDLE
    finally:
        await store.close()
        server.stop()


async def test_a_close_cut_by_a_cancellation_still_closes_every_connection(
    tmp_path: Path, make: Factory
) -> None:
    server = RedisServer(tmp_path)
    store = redis_store(server.url)
    try:
        await store.open()
        dialing = await make.dialing(store)
        async with anyio.create_task_group() as group:
            for _ in range(3):
                group.start_soon(store.get_campaign, None, dialing.campaign.id)
        assert server.clients() >= 3
        with anyio.CancelScope() as scope:
            scope.cancel()
            await store.close()
        await until(lambda: server.clients() == 0, "every pooled connection closed")
    finally:
        await store.close()
        server.stop()


async def test_an_open_failing_in_its_recovery_leaves_nothing_open_and_is_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recovery at open (what a dead instance left half done) fails: the open fails
    with no connection left open, and the next try opens afresh and recovers."""
    server = RedisServer(tmp_path)
    store = redis_store(server.url)
    recoveries: list[int] = []

    async def lost_midway() -> None:
        recoveries.append(len(recoveries) + 1)
        if len(recoveries) == 1:
            raise StoreUnavailable("the connection dropped")

    monkeypatch.setattr(store, "_finish_dnc_imports", lost_midway)
    try:
        with pytest.raises(StoreUnavailable, match="dropped"):
            await store.open()
        await until(lambda: server.clients() == 0, "the failed try's connections closed")
        await store.open()
        assert len(recoveries) == 2
        await store.ping()
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


async def test_an_import_cut_before_its_discard_ended_is_removed_at_the_next_open(
    redis_url: str, make: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop cuts an import and its discard gets no time (bounded at a stop): the batch
    is abandoned at once (invisible, nothing claims it) and recorded, and the next open
    removes what it left."""
    store = redis_store(redis_url)
    await store.open()
    dialing = await make.dialing(store)
    cut = [make.target(dialing.outdial.id) for _ in range(8)]

    async def no_time(*args: object) -> None:
        pass

    async def cut_by_a_stop() -> AsyncIterator[list[OutdialTarget]]:
        yield cut[:4]
        yield cut[4:]
        raise ValueError("the daemon stops")

    monkeypatch.setattr(store, "_discard", no_time)
    try:
        with pytest.raises(ValueError, match="the daemon stops"):
            await store.import_targets(cut_by_a_stop())
        assert (await store.list_targets(dialing.outdial.id)).result == []
        left = [key for key in await all_keys(redis_url) if any(t.id in key for t in cut)]
        assert len(left) == len(cut)
    finally:
        await store.close()

    reopened = redis_store(redis_url)
    await reopened.open()  # the next start
    try:
        keys = await all_keys(redis_url)
        assert [key for key in keys if any(t.id in key for t in cut)] == []
        assert [key for key in keys if ":import" in key] == []
        assert await reopened.start_attempt(dialing.plan(make.at(1))) is None
    finally:
        await reopened.close()


async def test_an_import_cut_while_the_server_is_away_raises_what_cut_it(
    tmp_path: Path, make: Factory
) -> None:
    """The abandon and the discard of a cut import are best effort: with the server
    away, the caller still gets what cut the import (a bad row, a stop), not a store
    error from the clean-up in its place."""
    server = RedisServer(tmp_path)
    store = redis_store(server.url)
    try:
        await store.open()
        dialing = await make.dialing(store)

        async def cut_after_the_server_went() -> AsyncIterator[list[OutdialTarget]]:
            yield [make.target(dialing.outdial.id) for _ in range(4)]
            server.stop()
            raise ValueError("row 5: destination is not a number")

        with pytest.raises(ValueError, match="row 5"):
            await store.import_targets(cut_after_the_server_went())
    finally:
        await store.close()
        server.stop()


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
    await store._run("publish", "batch-1", customer=dialing.campaign.customer_id)
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
        await client.delete(tagged(dialing.campaign.customer_id, "import", "batch-2"))
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


# -- the core decides, the scripts write (no window, no "ran dry") ---------------------------


@pytest.fixture
async def bulk_store(redis_url: str) -> AsyncIterator[RedisStore]:
    """A store that writes thousands of targets in a few script calls."""
    opened = redis_store(redis_url, import_chunk=2000)
    await opened.open()
    yield opened
    await opened.close()


def spent(target: OutdialTarget) -> OutdialTarget:
    """The target after one try of its slot 0 (spent under an outplan allowing one)."""
    return msgspec.structs.replace(target, try_count_0=1)


async def test_thousands_of_spent_targets_at_the_head_do_not_hide_a_dialable_one(
    bulk_store: RedisStore, make: Factory
) -> None:
    store = bulk_store
    dialing = await make.dialing(store, max_try_counts=(1,))
    head = [spent(make.target(dialing.outdial.id, tm_create=make.stamp(0))) for _ in range(3000)]
    dialable = make.target(dialing.outdial.id, tm_create=make.stamp(5))
    await store.create_targets([*head, dialable])

    decisions = 0
    run = store._run

    async def counting(name: str, *args: object, customer: str) -> object:
        nonlocal decisions
        reply = await run(name, *args, customer=customer)
        if name == "start" and reply[0] == b"decide":
            decisions += len(reply[1])
        return reply

    store._run = counting  # type: ignore[method-assign]
    claimed = await store.start_attempt(dialing.plan(make.at(10)))
    assert claimed is not None
    assert claimed.outdial_target_id == dialable.id
    # Every spent target was decided by the core (done), in batches of 100 per script.
    assert decisions == len(head)
    for target in (head[0], head[-1]):
        stored = await store.get_target(dialing.outdial.id, target.id)
        assert stored is not None
        assert stored.status == TargetStatus.DONE
    counts = await store.target_counts(dialing.outdial.id, make.at(10))
    assert (counts.idle_due, counts.progressing, counts.done) == (0, 1, len(head))


def counting_script_calls(store: RedisStore) -> list[str]:
    """The names of the scripts the store runs from now on, in order."""
    names: list[str] = []
    run = store._run

    async def counting(name: str, *args: object, customer: str) -> object:
        names.append(name)
        return await run(name, *args, customer=customer)

    store._run = counting  # type: ignore[method-assign]
    return names


async def test_a_batch_claims_the_first_ready_targets_in_order_in_one_script_call(
    store: RedisStore, make: Factory
) -> None:
    dialing = await make.dialing(store)
    targets = [make.target(dialing.outdial.id, tm_create=make.stamp(n)) for n in range(12)]
    await store.create_targets(targets)
    calls = counting_script_calls(store)

    plans = [dialing.plan(make.at(20)) for _ in range(8)]
    claimed = await store.start_attempts(plans)

    assert calls == ["start"]
    assert [call.id for call in claimed] == [plan.campaigncall_id for plan in plans]
    assert [call.outdial_target_id for call in claimed] == [t.id for t in targets[:8]]
    for call in claimed:
        assert await store.get_campaigncall(None, call.id) == call
    # A bigger batch than the targets left: the rest, then the list ends.
    rest = await store.start_attempts([dialing.plan(make.at(21)) for _ in range(6)])
    assert [call.outdial_target_id for call in rest] == [t.id for t in targets[8:]]
    assert calls == ["start", "start"]
    # Each claim is finished from what the claim left (no read).
    await store.finish_attempt(
        claimed[3].id, CampaigncallResult.FAIL, "busy", RetryRule.of(dialing.outplan), make.at(22)
    )
    assert calls == ["start", "start", "finish"]


async def test_a_claim_on_the_read_a_tick_kept_is_one_script_call(
    store: RedisStore, make: Factory
) -> None:
    """The claim checks the campaign and outplan are still stored as read, in its own
    step: no read before it; a change is answered by that same call (nothing claimed),
    and the next claim on what it answered is one call again."""
    dialing = await make.dialing(store)
    await store.create_targets([make.target(dialing.outdial.id) for _ in range(4)])
    campaign, outplan = await store.campaign_and_outplan(dialing.campaign.id)
    assert campaign is not None
    assert outplan is not None
    calls = counting_script_calls(store)

    plan = msgspec.structs.replace(dialing.plan(make.at(1)), campaign=campaign, outplan=outplan)
    claimed = await store.start_attempts_if_unchanged([plan])
    assert calls == ["start"]
    assert isinstance(claimed, list)
    assert len(claimed) == 1

    renamed = await store.update_campaign(msgspec.structs.replace(campaign, name="renamed"))
    calls.clear()
    plan = msgspec.structs.replace(dialing.plan(make.at(2)), campaign=campaign, outplan=outplan)
    assert await store.start_attempts_if_unchanged([plan]) == AsStored(renamed, outplan)
    assert calls == ["start"]

    calls.clear()
    plan = msgspec.structs.replace(dialing.plan(make.at(3)), campaign=renamed, outplan=outplan)
    claimed = await store.start_attempts_if_unchanged([plan])
    assert calls == ["start"]
    assert isinstance(claimed, list)
    assert len(claimed) == 1


async def test_a_burst_of_ends_is_one_script_call_on_the_server(
    store: RedisStore, make: Factory
) -> None:
    """The ends of one burst (one customer's) are written by one script run, not one
    each: each attempt ended once, its target placed for its retry."""
    dialing = await make.dialing(store, max_try_counts=(2,))
    await store.create_targets([make.target(dialing.outdial.id) for _ in range(30)])
    claimed = await store.start_attempts([dialing.plan(make.at(1)) for _ in range(30)])
    assert len(claimed) == 30
    rule = RetryRule.of(dialing.outplan)
    fail = CampaigncallResult.FAIL
    ends = [
        AttemptEnd(campaigncall_id=call.id, result=fail, reason="busy", rule=rule, now=make.at(2))
        for call in claimed
    ]
    client = redis.asyncio.Redis.from_url(store.url)
    try:
        await client.config_resetstat()
        done = await store.finish_attempts(ends)
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    assert stats["cmdstat_evalsha"]["calls"] == 1
    assert [isinstance(end, FinishResult) and end.finished for end in done] == [True] * 30
    assert [
        end.target.status if isinstance(end, FinishResult) and end.target else None for end in done
    ] == [TargetStatus.IDLE] * 30
    assert await store.active_attempts(dialing.campaign.id) == []


async def test_a_batch_goes_on_after_the_heads_the_core_decides(
    store: RedisStore, make: Factory
) -> None:
    dialing = await make.dialing(store, max_try_counts=(1,))
    fresh = [make.target(dialing.outdial.id, tm_create=make.stamp(n)) for n in (0, 1, 4, 5)]
    used = [spent(make.target(dialing.outdial.id, tm_create=make.stamp(n))) for n in (2, 3)]
    await store.create_targets([*fresh, *used])
    calls = counting_script_calls(store)

    claimed = await store.start_attempts([dialing.plan(make.at(20)) for _ in range(5)])

    # Two claimed, the spent heads decided (done) and placed, then the rest claimed.
    assert [call.outdial_target_id for call in claimed] == [t.id for t in fresh]
    assert calls == ["start", "place", "start"]
    for target in used:
        stored = await store.get_target(dialing.outdial.id, target.id)
        assert stored is not None
        assert stored.status == TargetStatus.DONE


async def test_a_stop_stored_before_the_call_refuses_the_batch(
    store: RedisStore, make: Factory
) -> None:
    dialing = await make.dialing(store)
    await store.create_targets([make.target(dialing.outdial.id) for _ in range(4)])
    await store.update_campaign(
        msgspec.structs.replace(dialing.campaign, status=CampaignStatus.STOP)
    )

    with pytest.raises(CampaignNotRunning):
        await store.start_attempts([dialing.plan(make.at(20)) for _ in range(3)])

    assert await store.active_attempts(dialing.campaign.id) == []
    counts = await store.target_counts(dialing.outdial.id, make.at(20))
    assert (counts.progressing, counts.idle_due) == (0, 4)


async def test_a_batch_meeting_an_existing_campaigncall_keeps_the_claims_before_it(
    store: RedisStore, make: Factory
) -> None:
    dialing = await make.dialing(store)
    await store.create_targets([make.target(dialing.outdial.id) for _ in range(4)])
    taken = await store.start_attempt(dialing.plan(make.at(10)))
    assert taken is not None
    plans = [dialing.plan(make.at(20)), dialing.plan(make.at(20), taken.id)]

    with pytest.raises(Conflict, match=taken.id):
        await store.start_attempts(plans)

    # As plan by plan: the first claim was made before the second was refused.
    active = await store.active_attempts(dialing.campaign.id)
    assert {call.id for call in active} == {taken.id, plans[0].campaigncall_id}


async def test_more_than_a_thousand_spent_targets_end_in_exhaustion(
    bulk_store: RedisStore, make: Factory
) -> None:
    store = bulk_store
    dialing = await make.dialing(store, max_try_counts=(1,))
    await store.create_targets([spent(make.target(dialing.outdial.id)) for _ in range(1500)])

    async def exhausted() -> bool:
        return await store.outdial_exhausted(dialing.campaign.id, dialing.outdial.id)

    # Ready until a claim reaches them and the core finds them spent.
    assert not await exhausted()
    assert await store.start_attempt(dialing.plan(make.at(1))) is None
    assert await exhausted()


async def test_many_waiting_targets_keep_the_outdial_from_exhaustion_until_spent(
    bulk_store: RedisStore, make: Factory
) -> None:
    store = bulk_store
    dialing = await make.dialing(store, max_try_counts=(2,), try_interval=60_000)
    rule = RetryRule.of(dialing.outplan)
    size = 1200
    await store.create_targets([make.target(dialing.outdial.id) for _ in range(size)])

    async def exhausted() -> bool:
        return await store.outdial_exhausted(dialing.campaign.id, dialing.outdial.id)

    async def dial_all(at: float) -> None:
        calls = [await store.start_attempt(dialing.plan(make.at(at))) for _ in range(size)]
        for call in calls:
            assert call is not None
            await store.finish_attempt(
                call.id, CampaigncallResult.FAIL, "busy", rule, make.at(at + 1)
            )

    await dial_all(0)
    assert await store.start_attempt(dialing.plan(make.at(30))) is None
    counts = await store.target_counts(dialing.outdial.id, make.at(30))
    assert (counts.idle_due, counts.idle_waiting) == (0, size)
    assert not await exhausted()
    await dial_all(100)  # due since 61 s
    assert await exhausted()
    counts = await store.target_counts(dialing.outdial.id, make.at(200))
    assert (counts.idle_due, counts.idle_waiting, counts.done) == (0, 0, size)


async def test_a_decision_on_a_target_changed_since_it_was_read_is_not_written(
    store: RedisStore, make: Factory
) -> None:
    dialing = await make.dialing(store, max_try_counts=(1,))
    target = spent(make.target(dialing.outdial.id))
    await store.create_targets([target])
    await store.delete_target(dialing.outdial.id, target.id, make.at(1))
    # The core's "done" for the version created (1) finds the target deleted since (2).
    customer = dialing.campaign.customer_id
    written = await store._run(
        "place", target.id, "1", b"{}", "", 0, 0, "", -1, "", customer=customer
    )
    assert int(written) == 0
    stored = await store._fields(tagged(customer, "target", target.id), "x", "k")
    assert stored == [b"1", b""]


async def bump_version(url: str, customer: str, target_id: str) -> None:
    """Another writer changes the target (its version) behind the store's back."""
    client = redis.asyncio.Redis.from_url(url)
    try:
        await client.hincrby(tagged(customer, "target", target_id), "v", 1)
    finally:
        await client.aclose()


@pytest.mark.parametrize("claimed_here", [True, False])
async def test_finish_decides_again_when_the_target_changed_in_between(
    store: RedisStore,
    make: Factory,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    claimed_here: bool,
) -> None:
    dialing = await make.dialing(store, max_try_counts=(2,))
    target = make.target(dialing.outdial.id)
    await store.create_targets([target])
    call = await store.start_attempt(dialing.plan(make.at(1)))
    assert call is not None
    finisher = store if claimed_here else redis_store(redis_url)
    await finisher.open()
    reads = []
    run = finisher._run

    async def meddling(name: str, *args: object, customer: str) -> object:
        reply = await run(name, *args, customer=customer)
        if name == "attempt":
            reads.append(reply)
            if len(reads) == 1 and not claimed_here:
                await bump_version(redis_url, dialing.campaign.customer_id, target.id)
        return reply

    monkeypatch.setattr(finisher, "_run", meddling)
    if claimed_here:
        # The decision made from what the claim left is refused: read, decide again.
        await bump_version(redis_url, dialing.campaign.customer_id, target.id)
    done = await finisher.finish_attempt(
        call.id, CampaigncallResult.FAIL, "busy", RetryRule.of(dialing.outplan), make.at(2)
    )
    assert len(reads) == (1 if claimed_here else 2)
    assert done is not None
    assert done.finished
    assert done.target is not None
    assert (done.target.status, done.target.try_count_0) == (TargetStatus.IDLE, 1)
    if not claimed_here:
        await finisher.close()


async def test_calling_hours_are_decided_by_the_core_not_the_short_cut(
    store: RedisStore, make: Factory
) -> None:
    dialing = await make.dialing(store)
    # make.at(0) is 09:00 UTC: this callee (in UTC) may be called from 10:00 only.
    late = ("10:00-21:00",)
    rules = CallingRules(
        hours=CallingHours(
            monday=late,
            tuesday=late,
            wednesday=late,
            thursday=late,
            friday=late,
            saturday=late,
            sunday=late,
        )
    )
    target = msgspec.structs.replace(make.target(dialing.outdial.id), data='{"timezone": "UTC"}')
    await store.create_targets([target])
    plan = msgspec.structs.replace(dialing.plan(make.at(60)), rules=rules)
    assert await store.start_attempt(plan) is None
    held = await store.get_target(dialing.outdial.id, target.id)
    assert held is not None
    assert (held.status, held.hold_reason, held.tm_next_try) == (
        TargetStatus.IDLE,
        "calling_hours",
        make.stamp(3600),
    )
    assert (await store.list_targets(dialing.outdial.id)).result == [held]
    assert not await store.outdial_exhausted(dialing.campaign.id, dialing.outdial.id)
    opened = msgspec.structs.replace(dialing.plan(make.at(3600)), rules=rules)
    call = await store.start_attempt(opened)
    assert call is not None
    assert call.outdial_target_id == target.id


async def test_a_number_listed_between_the_decision_and_the_claim_is_not_dialed(
    store: RedisStore, make: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    dialing = await make.dialing(store)
    # Calling hours: no short cut, every head is decided in Python.
    rules = CallingRules(hours=CallingHours())
    target = msgspec.structs.replace(
        make.target(dialing.outdial.id, make.tel("+15550131")), data='{"timezone": "UTC"}'
    )
    await store.create_targets([target])
    run = store._run
    replies: list[bytes] = []

    async def listing_meanwhile(name: str, *args: object, customer: str) -> object:
        if name == "start" and replies == [b"decide"]:
            # Decided dialable on what was read: the number is listed before the claim.
            listed = DncNumber(
                customer_id=dialing.campaign.customer_id,
                number="+15550131",
                tm_create=make.stamp(1),
            )
            await store.add_dnc_numbers([listed])
        reply = await run(name, *args, customer=customer)
        if name == "start":
            replies.append(reply[0])
        return reply

    monkeypatch.setattr(store, "_run", listing_meanwhile)
    plan = msgspec.structs.replace(dialing.plan(make.at(10)), rules=rules)
    assert await store.start_attempt(plan) is None
    # Decided dialable, refused at the claim (listed meanwhile), decided again: done.
    assert replies[:3] == [b"decide", b"changed", b"decide"]
    stored = await store.get_target(dialing.outdial.id, target.id)
    assert stored is not None
    assert (stored.status, stored.hold_reason) == (TargetStatus.DONE, "dnc")


async def test_the_waiting_by_reason_index_follows_its_targets(
    store: RedisStore, make: Factory, redis_url: str
) -> None:
    dialing = await make.dialing(store, try_interval=60_000)
    rule = RetryRule.of(dialing.outplan)
    promoted, deleted = make.target(dialing.outdial.id), make.target(dialing.outdial.id)
    await store.create_targets([promoted, deleted])
    for _ in range(2):
        call = await store.start_attempt(dialing.plan(make.at(0)))
        assert call is not None
        await store.finish_attempt(call.id, CampaigncallResult.FAIL, "busy", rule, make.at(1))
    counts = await store.target_counts(dialing.outdial.id, make.at(2))
    assert (counts.idle_waiting, counts.held) == (2, {"retry_interval": 2})
    await store.delete_target(dialing.outdial.id, deleted.id, make.at(3))
    call = await store.start_attempt(dialing.plan(make.at(61)))  # promoted, then claimed
    assert call is not None
    assert call.outdial_target_id == promoted.id
    counts = await store.target_counts(dialing.outdial.id, make.at(61))
    assert (counts.idle_waiting, counts.progressing, counts.held) == (0, 1, {})
    keys = await all_keys(redis_url)
    assert not [key for key in keys if ":waiting:" in key or ":ready:" in key]


# -- layout 1 (fresh / retry) is migrated at open ---------------------------------------------


async def test_a_layout_1_store_is_migrated_at_open(redis_url: str, make: Factory) -> None:
    setup = redis_store(redis_url)
    await setup.open()
    setup._tagged = False  # the resources as layouts 1 and 2 named them
    try:
        dialing = await make.dialing(setup, max_try_counts=(3,), try_interval=60_000)
    finally:
        await setup.close()
    outdial = dialing.outdial.id
    fresh = make.target(outdial, tm_create=make.stamp(0))
    retried = msgspec.structs.replace(
        make.target(outdial, tm_create=make.stamp(1)), try_count_0=1, tm_update=make.stamp(5)
    )
    later = make.target(outdial, tm_create=make.stamp(10))
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        await client.delete("dtest:layout")
        for n, (target, queue, score) in enumerate(
            [
                (fresh, "f", micros_of_stamp(make.stamp(0))),
                (retried, "r", micros_of_stamp(make.stamp(5))),
                (later, "f", micros_of_stamp(make.stamp(10))),
            ],
            start=1,
        ):
            member = f"{n:015d}:{target.id}"
            listed = f"{target.tm_create}|{target.id}"
            await client.hset(
                f"dtest:target:{target.id}",
                mapping={
                    "b": msgspec.json.encode(target),
                    "o": outdial,
                    "m": member,
                    "k": queue,
                    "l": listed,
                },
            )
            await client.zadd(f"dtest:targets:{outdial}", {listed: 0})
            await client.zadd(
                f"dtest:{'fresh' if queue == 'f' else 'retry'}:{outdial}", {member: score}
            )
        await client.set(f"dtest:seq:{outdial}", 3)
    finally:
        await client.aclose()

    store = redis_store(redis_url)
    await store.open()
    try:
        keys = await all_keys(redis_url)
        assert not [key for key in keys if key.startswith(("dtest:fresh:", "dtest:retry:"))]
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            assert int(await client.get("dtest:layout") or 0) == LAYOUT
        finally:
            await client.aclose()
        assert not await store.outdial_exhausted(dialing.campaign.id, outdial)
        # The retried target is due 60 s after its last attempt ended (at 5 s).
        first = await store.start_attempt(dialing.plan(make.at(20)))
        second = await store.start_attempt(dialing.plan(make.at(20)))
        assert [call.outdial_target_id for call in (first, second) if call] == [
            fresh.id,
            later.id,
        ]
        assert await store.start_attempt(dialing.plan(make.at(64))) is None
        third = await store.start_attempt(dialing.plan(make.at(65)))
        assert third is not None
        assert (third.outdial_target_id, third.try_count) == (retried.id, 2)
    finally:
        await store.close()


async def test_a_finish_answers_the_target_as_stored_with_or_without_the_claim_at_hand(
    store: RedisStore, make: Factory, redis_url: str
) -> None:
    dialing = await make.dialing(store)
    await store.create_targets([make.target(dialing.outdial.id) for _ in range(2)])
    mine, theirs = await store.start_attempts([dialing.plan(make.at(1)) for _ in range(2)])
    other = redis_store(redis_url)
    await other.open()
    try:
        rule = RetryRule.of(dialing.outplan)
        for finisher, call in ((store, mine), (other, theirs)):
            finished = await finisher.finish_attempt(
                call.id, CampaigncallResult.FAIL, "busy", rule, make.at(2)
            )
            assert finished is not None
            assert finished.finished
            assert finished.target is not None
            assert finished.target.try_count_0 == 1
            assert finished.target == await store.get_target(
                dialing.outdial.id, call.outdial_target_id
            )
            assert finished.campaigncall == await store.get_campaigncall(None, call.id)
    finally:
        await other.close()


async def test_a_target_claimed_without_naming_its_live_attempt_ends_as_before(
    store: RedisStore, make: Factory, redis_url: str
) -> None:
    """A target claimed by a dialerd that did not record which attempt it is progressing
    for (no field ``a``; the upgrade migrates nothing), or whose record names an attempt
    that ended (an older dialerd claimed it during a rolling upgrade), is moved on by
    its attempt's end, with the claim at hand or read."""
    dialing = await make.dialing(store)
    await store.create_targets([make.target(dialing.outdial.id) for _ in range(3)])
    mine, theirs, ended = await store.start_attempts([dialing.plan(make.at(1)) for _ in range(3)])
    await finish(store, dialing, ended, make.at(1))
    customer = dialing.campaign.customer_id
    client = redis.asyncio.Redis.from_url(redis_url)
    other = redis_store(redis_url)
    await other.open()
    try:
        assert await client.hdel(tagged(customer, "target", mine.outdial_target_id), "a")
        await client.hset(tagged(customer, "target", theirs.outdial_target_id), "a", ended.id)
        rule = RetryRule.of(dialing.outplan)
        for finisher, call in ((store, mine), (other, theirs)):
            finished = await finisher.finish_attempt(
                call.id, CampaigncallResult.FAIL, "busy", rule, make.at(2)
            )
            assert finished is not None
            assert finished.target is not None
            assert finished.target.status == TargetStatus.IDLE
        again = await store.start_attempts([dialing.plan(make.at(3)) for _ in range(3)])
        assert sorted(call.outdial_target_id for call in again) == sorted(
            call.outdial_target_id for call in (mine, theirs, ended)
        )
    finally:
        await client.aclose()
        await other.close()


# -- layout 2 (one key space) is migrated to layout 3 (tagged per customer) at open ----------


async def layout_2_answers(store: RedisStore, make: Factory, dialings: list[Dialing]) -> object:
    """What a user sees of two customers' data, through the port."""
    answers: list[object] = [
        [c.id for c in await store.campaigns_with_status([CampaignStatus.RUN])],
        sorted(c.id for c in await store.active_attempts(None)),
    ]
    for dialing in dialings:
        customer = dialing.campaign.customer_id
        answers += [
            await store.get_campaign(None, dialing.campaign.id),
            await store.campaign_and_outplan(dialing.campaign.id),
            await store.list_targets(dialing.outdial.id),
            await store.target_counts(dialing.outdial.id, make.at(30)),
            await store.list_campaigncalls(customer),
            await store.quota_usage(customer, dialing.outdial.id),
            await store.dnc_listed(customer, ["+15550100", "+15550199"]),
            await store.list_dnc_numbers(customer),
            await store.read_events(customer, "", 100),
            await store.delivered_position(customer),
            await store.lease_owner(dialing.campaign.id),
            await store.abandonment_days(dialing.campaign.id, "2026-01-01"),
            await store.pacing_prior(dialing.campaign.id),
            await store.outdial_exhausted(dialing.campaign.id, dialing.outdial.id),
        ]
    return answers


async def test_a_layout_2_store_opens_as_layout_3_and_answers_the_same(
    redis_url: str, make: Factory
) -> None:
    old = redis_store(redis_url)
    await old.open()
    old._tagged = False  # writes layout 2's names
    dialings = []
    for n in range(2):
        dialing = await make.dialing(old)
        dialings.append(dialing)
        customer = dialing.campaign.customer_id
        await old.create_targets([make.target(dialing.outdial.id) for _ in range(4)])
        first = await old.start_attempt(dialing.plan(make.at(1)))
        second = await old.start_attempt(dialing.plan(make.at(1)))
        assert first is not None
        assert second is not None
        await old.mark_answered(first.id, make.at(2))
        rule = RetryRule.of(dialing.outplan)
        await old.finish_attempt(first.id, CampaigncallResult.SUCCESS, "normal", rule, make.at(3))
        await old.add_dnc_numbers(
            [DncNumber(customer_id=customer, number="+15550100", tm_create=make.stamp(4))]
        )
        position = await old.append_event("test", customer, dialing.campaign.id, b"{}")
        fence = await old.acquire_lease(f"events:{customer}", "sender", 60, make.at(5))
        assert fence is not None
        await old.mark_delivered(customer, position, 1, fence, make.at(5))
        assert await old.acquire_lease(dialing.campaign.id, f"owner-{n}", 60, make.at(5))
        await old.add_abandonment(dialing.campaign.id, "2026-03-02", 3, 1)
        await old.save_pacing_prior(dialing.campaign.id, prior_of("2026-03-02"))
    before = await layout_2_answers(old, make, dialings)
    await old.close()
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    try:
        # Layout 2 had no registry of customers nor where keys; it had event_customers.
        await client.delete(
            "dtest:customers", *[k async for k in client.scan_iter("dtest:where:*")]
        )
        await client.sadd("dtest:event_customers", *(d.campaign.customer_id for d in dialings))
        await client.set("dtest:layout", 2)
        assert any(key.startswith("dtest:target:") for key in await all_keys(redis_url))
    finally:
        await client.aclose()

    for _ in range(2):  # the second open finds layout 3: nothing to do
        store = redis_store(redis_url)
        await store.open()
        try:
            assert await layout_2_answers(store, make, dialings) == before
            untagged = [
                key
                for key in await all_keys(redis_url)
                if not key.startswith("dtest:{c:")
                and key.split(":")[1] not in ("layout", "customers", "where")
            ]
            assert untagged == []
            assert int(await store._connected().get("dtest:layout")) == LAYOUT
        finally:
            await store.close()
    # Each customer's keys carry its tag, and its attempt finishes on layout 3.
    store = redis_store(redis_url)
    await store.open()
    try:
        for dialing in dialings:
            customer = dialing.campaign.customer_id
            (active,) = await store.active_attempts(dialing.campaign.id)
            done = await store.finish_attempt(
                active.id,
                CampaigncallResult.FAIL,
                "busy",
                RetryRule.of(dialing.outplan),
                make.at(6),
            )
            assert done is not None
            assert done.finished
            assert await store.start_attempt(dialing.plan(make.at(7))) is not None
            keys = [k for k in await all_keys(redis_url) if dialing.outdial.id in k]
            assert keys
            assert all(k.startswith(f"dtest:{{c:{customer}}}:") for k in keys if "where" not in k)
    finally:
        await store.close()


def prior_of(day: str) -> PacingPrior:
    return PacingPrior(
        day=day,
        live_rate=0.25,
        dials=10,
        live_rings=(1.0, 2.0, 3.0, 4.0),
        live_rings_seen=4,
        other_rings=(1.0, 2.0),
        other_rings_seen=6,
        talks=(10.0, 20.0, 30.0),
        talks_seen=3,
    )


async def test_an_answer_carried_by_an_end_is_kept_when_its_target_changed_meanwhile(
    store: RedisStore, make: Factory
) -> None:
    """An end of a burst whose target changed since the claim is decided and written
    again on its own; the answer that came with it is still written (its event first)."""
    dialing = await make.dialing(store)
    customer = dialing.campaign.customer_id
    target = make.target(dialing.outdial.id)
    await store.create_targets([target])
    (call,) = await store.start_attempts([dialing.plan(make.at(1))])
    client = redis.asyncio.Redis.from_url(store.url)
    try:
        # Something else wrote the target after the claim (its version moved on).
        await client.hincrby(tagged(customer, "target", target.id), "v", 1)
    finally:
        await client.aclose()
    end = AttemptEnd(
        campaigncall_id=call.id, result=CampaigncallResult.SUCCESS, reason="normal",
        rule=RetryRule.of(dialing.outplan), now=make.at(3), answered=True,
    )  # fmt: skip

    (done,) = await store.finish_attempts([end])

    assert isinstance(done, FinishResult)
    assert done.finished
    entries = await store.read_events(customer, "", 100)
    statuses = [
        msgspec.json.decode(event_of(entry).data)["status"]
        for entry in entries
        if entry.type.startswith("campaigncall")
    ]
    assert statuses == ["dialing", "progressing", "done"]


async def test_a_pool_with_every_connection_busy_says_so_not_that_redis_is_unreachable(
    redis_url: str, make: Factory
) -> None:
    registry = metrics.create_registry()

    def exhausted() -> float:
        return registry.get_sample_value("dialerd_store_pool_exhausted_total") or 0.0

    # A pool of 2 holds none back for the script calls: both are the pool's.
    store = RedisStore(url=redis_url, prefix="dtest", pool_size=2, timeout=0.2)
    await store.open()
    try:
        dialing = await make.dialing(store)
        pool = store._connected().connection_pool
        # The server is up; every connection of the pool is taken (as by calls whose
        # replies the process has not read yet).
        taken = [await pool.get_connection() for _ in range(2)]
        before = exhausted()
        try:
            for call in (
                lambda: store.get_campaign(None, dialing.campaign.id),  # a command
                lambda: store.campaign_and_outplan(dialing.campaign.id),  # a script
            ):
                with pytest.raises(StoreBusy) as raised:
                    await call()
                said = str(raised.value)
                assert "cannot be reached" not in said
                assert "is busy: all 2 connections of this process's pool" in said
                assert "in use for 0.2 s" in said
                assert "[store.redis] pool_size" in said
            assert exhausted() == before + 2
        finally:
            for connection in taken:
                await pool.release(connection)
        # A connection free again: the same calls answer.
        assert await store.get_campaign(None, dialing.campaign.id) == dialing.campaign
        assert (await store.campaign_and_outplan(dialing.campaign.id))[0] == dialing.campaign
    finally:
        await store.close()
