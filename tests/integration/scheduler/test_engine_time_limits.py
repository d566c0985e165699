"""Many attempts' time limits at once (one heap of limits, one task serving it): each
unanswered call ends at its own dial timeout as ``no_answer``, in the order of its
limit; answered and stopped ones are not touched by it; flows end at their limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from dialerd.model import Campaigncall, CampaigncallStatus, CampaignType
from tests.fakes.clock import FakeClock
from tests.integration.conftest import StoreMaker
from tests.integration.scheduler.engine_harness import engine_on


def ended_at(clock: FakeClock, call: Campaigncall) -> float:
    """The fake clock's seconds at the attempt's last change (its end)."""
    assert call.tm_update is not None
    ended = datetime.fromisoformat(call.tm_update).replace(tzinfo=UTC)
    start = clock.now() - timedelta(seconds=clock.monotonic())
    return (ended - start).total_seconds()


async def test_a_hundred_ringing_calls_end_at_their_own_dial_timeouts_in_order(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path) as world:
        world.queue.available = 100
        late, _, _ = await world.campaign(targets=50, dial_timeout_ms=20_000)
        stopped, _, _ = await world.campaign(targets=20, dial_timeout_ms=20_000)
        await world.run(late)
        await world.run(stopped)
        placed = {o.campaigncall_id for o in world.calls.originated}
        assert len(placed) == 70
        # A limit earlier than every one set so far, set two seconds later.
        await world.advance(2)
        early, _, _ = await world.campaign(targets=30, dial_timeout_ms=5_000)
        await world.run(early)
        early_ids = {o.campaigncall_id for o in world.calls.originated} - placed
        assert len(early_ids) == 30
        late_calls = await world.calls_of(late)
        answered = [call.id for call in late_calls[:10]]
        for call_id in answered:
            await world.calls.answer(call_id)
        await world.stop(stopped)
        await world.advance(1)

        stopped_calls = await world.calls_of(stopped)
        assert {(c.status, c.reason) for c in stopped_calls} == {("done", "cancelled")}
        await world.advance(3.9)  # 6.9 s: the early limit (7 s) has not come
        assert all(c.status == CampaigncallStatus.DIALING for c in await world.calls_of(early))
        await world.advance(0.2)
        early_calls = await world.calls_of(early)
        assert {(c.status, c.reason) for c in early_calls} == {("done", "no_answer")}
        assert {ended_at(world.clock, c) for c in early_calls} == {7.0}
        assert all(c.status == CampaigncallStatus.DIALING for c in await world.calls_of(late)
                   if c.id not in answered)  # fmt: skip

        await world.advance(13)  # 20.1 s
        late_calls = await world.calls_of(late)
        unanswered = [c for c in late_calls if c.id not in answered]
        assert {(c.status, c.reason) for c in unanswered} == {("done", "no_answer")}
        assert {ended_at(world.clock, c) for c in unanswered} == {20.0}
        talking = [c for c in late_calls if c.id in answered]
        assert {c.status for c in talking} == {CampaigncallStatus.PROGRESSING}
        assert set(world.calls.cancelled) == {c.id for c in early_calls + unanswered} | {
            c.id for c in stopped_calls
        }
        assert set(world.calls.talking()) == set(answered)


async def test_an_answer_then_end_before_the_limit_is_not_ended_again_by_it(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path) as world:
        world.queue.available = 2
        campaign, _, _ = await world.campaign(targets=2, dial_timeout_ms=10_000)
        await world.run(campaign)
        first, second = (o.campaigncall_id for o in world.calls.originated)
        await world.calls.answer(first)
        await world.advance(11)
        calls = {c.id: c for c in await world.calls_of(campaign)}
        assert calls[first].status == CampaigncallStatus.PROGRESSING
        assert (calls[second].status, calls[second].reason) == ("done", "no_answer")
        assert world.calls.cancelled == [second]


async def test_flows_end_at_their_time_limit_in_order_of_start(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path, flow_timeout=20.0) as world:
        first, _, _ = await world.campaign(targets=3, type=CampaignType.FLOW, queue=False)
        await world.run(first)
        await world.advance(5)
        second, _, _ = await world.campaign(targets=3, type=CampaignType.FLOW, queue=False)
        await world.run(second)
        await world.advance(15.5)  # 20.5 s
        assert {(c.result, c.reason) for c in await world.calls_of(first)} == {("fail", "timeout")}
        assert {c.status for c in await world.calls_of(second)} == {CampaigncallStatus.DIALING}
        await world.advance(5)
        assert {(c.result, c.reason) for c in await world.calls_of(second)} == {("fail", "timeout")}
        assert {ended_at(world.clock, c) for c in await world.calls_of(first)} == {20.0}
        assert {ended_at(world.clock, c) for c in await world.calls_of(second)} == {25.0}


async def test_a_backend_that_takes_time_to_place_gets_the_ticks_calls_placed_together(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path) as world:
        world.calls.place_time = 5.0  # like ARI: each originate waits on the backend
        world.queue.available = 3
        campaign, _, _ = await world.campaign(targets=3, dial_timeout_ms=10_000)
        await world.run(campaign)
        await world.advance(5.1)
        assert len(world.calls.originated) == 3  # not one after the other (15 s)
        await world.advance(9.8)  # 14.9 s: the dial timeout runs from the placing
        assert {c.status for c in await world.calls_of(campaign)} == {CampaigncallStatus.DIALING}
        await world.advance(0.2)
        calls = await world.calls_of(campaign)
        assert {(c.status, c.reason) for c in calls} == {("done", "no_answer")}
        assert {ended_at(world.clock, c) for c in calls} == {15.0}
