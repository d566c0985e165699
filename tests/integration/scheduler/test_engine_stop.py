"""Stop means stop (behaviour.md §2), on both stores, with a trunk that takes its time.

Each test drives the engine on a fake clock through a scripted backend that takes time
to place and to end calls, and can lose or fail requests, as a real trunk does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

from dialerd.model import CampaigncallStatus, CampaignStatus, TargetStatus, parse_time
from dialerd.ports import HangupReason
from dialerd.store import AttemptPlan, Store
from tests.integration.conftest import StoreMaker
from tests.integration.scheduler.engine_harness import CUSTOMER, engine_on, running_engine


async def test_no_attempt_is_claimed_once_a_stop_is_stored(
    new_store: StoreMaker, tmp_path: Path
) -> None:
    async with engine_on(new_store, tmp_path, max_attempts_per_second=3.0) as world:
        world.queue.available = 100
        campaign, _, _ = await world.campaign(targets=100)
        store_claims = world.store.start_attempts
        batches: list[int] = []

        async def claim_then_stop(plans: Sequence[AttemptPlan]) -> Any:
            # The API stores a stop while this tick is still at work (its claims are in).
            claimed = await store_claims(plans)
            batches.append(len(claimed))
            if len(batches) == 1:
                await world.control.stop(CUSTOMER, campaign.id)
            return claimed

        world.store.start_attempts = claim_then_stop  # type: ignore[method-assign]
        await world.run(campaign)
        await world.advance(5)

        calls = await world.calls_of(campaign)
        assert batches == [3]  # one tick's claims (the rate ceiling), none after the stop
        assert len(calls) == 3
        stored = await world.store.get_campaign(CUSTOMER, campaign.id)
        assert stored is not None
        assert stored.tm_update is not None
        stopped_at = parse_time(stored.tm_update)
        assert all(parse_time(call.tm_create) <= stopped_at for call in calls)
        assert await world.status(campaign) == CampaignStatus.STOP


async def test_a_call_placed_after_the_stop_is_cancelled_as_soon_as_it_is_placed(
    new_store: StoreMaker, tmp_path: Path
) -> None:
    async with engine_on(new_store, tmp_path) as world:
        world.calls.place_time = 0.5
        world.queue.available = 1
        campaign, _, _ = await world.campaign(targets=1, dial_timeout_ms=60_000)
        await world.run(campaign)
        await world.advance(0.1)
        assert world.calls.originated == []  # the origination is in flight
        await world.stop(campaign)
        await world.advance(0.5)

        (call,) = await world.calls_of(campaign)
        assert world.calls.cancelled == [call.id]
        assert (call.status, call.reason) == (CampaigncallStatus.DONE, "cancelled")
        assert await world.status(campaign) == CampaignStatus.STOP


async def test_a_call_a_stop_cancelled_before_answer_gives_its_try_back(
    new_store: StoreMaker, tmp_path: Path
) -> None:
    async with engine_on(new_store, tmp_path) as world:
        world.queue.available = 1
        campaign, _, (target,) = await world.campaign(targets=1, max_try_counts=(1, 0, 0, 0, 0))
        await world.run(campaign)
        await world.advance(1)
        await world.stop(campaign)
        await world.advance(1)
        (cancelled,) = await world.calls_of(campaign)
        assert cancelled.reason == "cancelled"
        held = await world.target(target)
        assert (held.status, held.try_count_0) == (TargetStatus.IDLE, 0)

        # Running again dials the same number: nobody was lost by the stop.
        await world.run(campaign)
        await world.advance(1)
        calls = await world.calls_of(campaign)
        assert len(calls) == 2
        assert (calls[1].outdial_target_id, calls[1].try_count) == (target.id, 1)


async def test_cancels_are_repeated_until_the_backend_confirms_the_end(
    new_store: StoreMaker, tmp_path: Path
) -> None:
    async with engine_on(new_store, tmp_path) as world:
        world.queue.available = 1
        world.calls.release_time = 0.2
        campaign, _, _ = await world.campaign(targets=1, dial_timeout_ms=60_000)
        await world.run(campaign)
        await world.advance(1)
        (ringing,) = world.calls.ringing()
        world.calls.lose_releases = 2
        world.calls.failing_releases = 1
        await world.stop(campaign)
        await world.advance(10)

        assert world.calls.release_requests.count(ringing) >= 4
        assert world.calls.cancelled == [ringing]
        assert await world.status(campaign) == CampaignStatus.STOP


async def test_an_end_never_confirmed_is_ended_lost_after_the_release_timeout(
    new_store: StoreMaker, tmp_path: Path
) -> None:
    async with engine_on(new_store, tmp_path, release_timeout=20.0) as world:
        world.queue.available = 1
        campaign, _, _ = await world.campaign(targets=1, dial_timeout_ms=0)
        await world.run(campaign)
        await world.advance(1)
        world.calls.lose_releases = 1_000
        await world.stop(campaign)
        await world.advance(19)
        assert await world.status(campaign) == CampaignStatus.STOPPING
        await world.advance(2)

        (call,) = await world.calls_of(campaign)
        assert (call.status, call.reason) == (CampaigncallStatus.DONE, "lost")
        assert await world.status(campaign) == CampaignStatus.STOP


async def test_an_answered_call_whose_hangup_failed_is_hung_up_again(
    new_store: StoreMaker, tmp_path: Path
) -> None:
    async with engine_on(new_store, tmp_path, stop_grace=5.0) as world:
        world.queue.available = 1
        campaign, _, _ = await world.campaign(targets=1)
        await world.run(campaign)
        await world.advance(1)
        (call_id,) = world.calls.ringing()
        await world.calls.answer(call_id)
        world.calls.failing_releases = 1
        await world.stop(campaign)
        await world.advance(7)

        assert world.calls.hung_up == [call_id]
        assert await world.status(campaign) == CampaignStatus.STOP


async def test_the_stop_grace_counts_from_the_latest_stop(
    new_store: StoreMaker, tmp_path: Path
) -> None:
    async with engine_on(new_store, tmp_path, stop_grace=30.0) as world:
        world.queue.available = 1
        campaign, _, _ = await world.campaign(targets=2)
        await world.run(campaign)
        await world.advance(1)
        (call_id,) = world.calls.ringing()
        await world.calls.answer(call_id)
        await world.stop(campaign)
        await world.advance(14)
        await world.run(campaign)
        await world.advance(2)
        await world.stop(campaign)

        await world.advance(29)
        assert world.calls.hung_up == []
        await world.advance(2)
        assert world.calls.hung_up == [call_id]


async def test_a_restarted_instance_resumes_its_campaigns_at_once(
    new_store: StoreMaker, tmp_path: Path
) -> None:
    store = new_store()
    await store.open()
    try:
        async with running_engine(tmp_path, store=store, owner="host-a:1") as first:
            first.queue.available = 2
            campaign, _, _ = await first.campaign(targets=4, dial_timeout_ms=0)
            await first.run(campaign)
            await first.advance(1)
            assert len(first.calls.ringing()) == 2
            # kill -9: the lease is not given back and the calls die with the process.
            first.engine.store = _NoRelease(store)  # type: ignore[assignment]

        async with running_engine(tmp_path, store=store, owner="host-a:1") as second:
            second.queue.available = 2
            await second.advance(1)
            calls = await second.calls_of(campaign)
            lost = [call for call in calls if call.reason == "lost"]
            assert len(lost) == 2
            # Well within lease_ttl (15 s): the same instance takes its lease back.
            assert len(second.calls.ringing()) == 2
    finally:
        await store.close()


class _NoRelease:
    """The store as a killed process leaves it: its lease is never released."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def release_lease(self, fence: Any) -> None:
        return None


async def test_campaigns_on_one_queue_share_its_agents(
    new_store: StoreMaker, tmp_path: Path
) -> None:
    async with engine_on(new_store, tmp_path) as world:
        world.queue.available = 10
        first, _, _ = await world.campaign(targets=20, service_level=100)
        second, _, _ = await world.campaign(targets=20, service_level=100)
        await world.run(first)
        await world.run(second)
        await world.advance(3)
        assert len(world.calls.ringing()) == 10

        # Two lines per agent on the second: together they fill the agents, never more
        # than one attempt past the line (Σ dialing × service_level ≤ 10 × 100).
        await world.control.edit(CUSTOMER, second.id, service_level=50)
        for call_id in world.calls.ringing():
            await world.calls.end(call_id, HangupReason.BUSY)
        await world.advance(3)
        ringing = set(world.calls.ringing())
        dialing = {
            campaign.id: sum(
                1
                for o in world.calls.originated
                if o.campaign_id == campaign.id and o.campaigncall_id in ringing
            )
            for campaign in (first, second)
        }
        demand = dialing[first.id] * 100 + dialing[second.id] * 50
        assert 10 * 100 <= demand < 10 * 100 + 100


async def test_shutdown_cancels_ringing_calls_and_lets_answered_ones_finish_in_the_grace(
    new_store: StoreMaker, tmp_path: Path
) -> None:
    async with engine_on(new_store, tmp_path, stop_grace=10.0) as world:
        world.queue.available = 2
        world.calls.release_time = 0.3
        campaign, _, targets = await world.campaign(targets=4, dial_timeout_ms=0)
        await world.run(campaign)
        await world.advance(1)
        ringing, answered = world.calls.ringing()
        await world.calls.answer(answered)
        draining = anyio.Event()

        async def drain() -> None:
            await world.engine.drain()
            draining.set()

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(drain)
            await world.advance(1)
            assert world.calls.cancelled == [ringing]
            # The answered call talks on; it ends by itself before the grace is over.
            await world.advance(5)
            assert not draining.is_set()
            await world.calls.end(answered, HangupReason.NORMAL)
            await world.advance(0.5)
            assert draining.is_set()

        assert world.calls.hung_up == []
        assert len(world.calls.originated) == 2  # nothing new started while draining
        calls = {call.id: call for call in await world.calls_of(campaign)}
        assert (calls[ringing].reason, calls[answered].reason) == ("cancelled", "normal")
        by_id = {target.id: await world.target(target) for target in targets}
        cancelled_target = by_id[calls[ringing].outdial_target_id]
        assert (cancelled_target.status, cancelled_target.try_count_0) == (TargetStatus.IDLE, 0)
        assert await world.status(campaign) == CampaignStatus.RUN


async def test_shutdown_hangs_up_answered_calls_when_the_grace_ends(
    new_store: StoreMaker, tmp_path: Path
) -> None:
    async with engine_on(new_store, tmp_path, stop_grace=10.0) as world:
        world.queue.available = 1
        campaign, _, _ = await world.campaign(targets=2, dial_timeout_ms=0)
        await world.run(campaign)
        await world.advance(1)
        (answered,) = world.calls.ringing()
        await world.calls.answer(answered)
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(world.engine.drain)
            await world.advance(9.5)
            assert world.calls.hung_up == []
            await world.advance(1)
            assert world.calls.hung_up == [answered]
        (call,) = await world.calls_of(campaign)
        assert call.reason == "normal"
