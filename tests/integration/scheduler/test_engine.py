"""The engine against behaviour.md, one test per rule, on a fake clock and a real store."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import anyio
import msgspec
import pytest
import structlog

from dialerd import metrics
from dialerd.campaigns import RunRefused
from dialerd.model import (
    NIL_UUID,
    Campaign,
    CampaigncallResult,
    CampaigncallStatus,
    CampaignStatus,
    CampaignType,
    EndHandle,
    Outplan,
    TargetStatus,
    parse_time,
)
from dialerd.ports import Answered, Ended, HangupReason
from dialerd.store import Store
from dialerd.store.base import StoreUnavailable
from tests.fakes.clock import settle
from tests.integration.conftest import EPOCH, StoreMaker, tel
from tests.integration.scheduler.engine_harness import CUSTOMER, engine_on, running_engine

REGISTRY = metrics.create_registry()

# -- §2 run validation and status -------------------------------------------------


async def test_run_is_refused_without_an_outplan_and_names_it(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path) as world:
        campaign, _, _ = await world.campaign()
        await world.control.edit(CUSTOMER, campaign.id, outplan_id=NIL_UUID)
        with pytest.raises(RunRefused, match="outplan_id is not set"):
            await world.control.run(CUSTOMER, campaign.id)
        assert await world.status(campaign) == CampaignStatus.STOP
        assert world.calls.originated == []


async def test_run_is_refused_when_the_outplan_allows_no_try(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path) as world:
        campaign, _, _ = await world.campaign(max_try_counts=(0, 0, 0, 0, 0))
        with pytest.raises(RunRefused, match="allows no try"):
            await world.control.run(CUSTOMER, campaign.id)
        assert await world.status(campaign) == CampaignStatus.STOP


async def test_run_is_refused_when_the_outdial_was_deleted(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path) as world:
        campaign, _, _ = await world.campaign()
        await world.store.delete_outdial(CUSTOMER, campaign.outdial_id, world.clock.now())
        with pytest.raises(RunRefused, match=f"outdial {campaign.outdial_id} does not exist"):
            await world.control.run(CUSTOMER, campaign.id)


async def test_a_run_stored_while_the_loop_ends_its_last_tick_dials_at_once(
    tmp_path: Path, new_store: StoreMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An edit wakes the stopped campaign's loop; its tick reads the campaign stopped and
    # ends the loop. A run stored after that read (a client's edit, then its run) must
    # still tick at once, not wait for housekeeping to find the campaign an interval on.
    async with engine_on(new_store, tmp_path) as world:
        world.queue.available = 1
        campaign, _, _ = await world.campaign()
        read = world.store.campaign_and_outplan
        was_read, let_go = anyio.Event(), anyio.Event()

        async def read_then_wait(campaign_id: str) -> tuple[Campaign | None, Outplan | None]:
            found = await read(campaign_id)
            was_read.set()
            await let_go.wait()
            return found

        monkeypatch.setattr(world.store, "campaign_and_outplan", read_then_wait)
        await world.control.edit(CUSTOMER, campaign.id, name="renamed")
        await was_read.wait()
        monkeypatch.undo()
        await world.control.run(CUSTOMER, campaign.id)
        let_go.set()
        await settle(busy=world.store_busy)
        assert len(world.calls.originated) == 1
        assert world.engine.running_campaigns == 1


async def test_a_run_stored_while_the_loop_gives_its_lease_back_keeps_the_lease(
    tmp_path: Path, new_store: StoreMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stopped campaign's loop ends by giving its lease back. A run stored while the
    # store still writes that release must not start a loop that takes the same lease
    # meanwhile: the release then lands after it, and the new loop's writes are fenced
    # off ("attempt left to the campaign's new owner", with no other owner). It dials
    # once the release is written, and every attempt's end is written as it came.
    async with engine_on(new_store, tmp_path) as world:
        world.queue.available = 1
        campaign, _, _ = await world.campaign(targets=3)
        await world.run(campaign)
        [first] = world.calls.ringing()
        world.queue.available = 0  # nothing dialed after it: the stop ends the loop
        await world.calls.end(first, HangupReason.BUSY)
        release = world.store.release_lease
        releasing, let_go = anyio.Event(), anyio.Event()

        async def release_then_wait(fence: Any) -> None:
            releasing.set()
            await let_go.wait()
            await release(fence)

        monkeypatch.setattr(world.store, "release_lease", release_then_wait)
        with structlog.testing.capture_logs() as logs:
            await world.stop(campaign)
            await world.advance(1)
            assert releasing.is_set()
            monkeypatch.undo()
            world.queue.available = 1
            await world.control.run(CUSTOMER, campaign.id)
            await settle(busy=world.store_busy)
            let_go.set()
            await settle(busy=world.store_busy)
            [second] = world.calls.ringing()
            await world.calls.end(second, HangupReason.BUSY)
            await world.advance(1)
            [third] = world.calls.ringing()
            await world.calls.end(third, HangupReason.BUSY)
            await world.advance(1)
        calls = await world.calls_of(campaign)
        assert [(call.status, call.reason) for call in calls] == [
            (CampaigncallStatus.DONE, HangupReason.BUSY.value)
        ] * 3
        assert len({call.destination.target for call in calls}) == 3
        assert [entry for entry in logs if entry["log_level"] == "warning"] == []


# -- §3 pacing ---------------------------------------------------------------------


async def test_one_tick_starts_as_many_attempts_as_the_rule_allows(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path) as world:
        world.queue.available = 5
        campaign, _, _ = await world.campaign(targets=20)
        await world.run(campaign)
        assert len(world.calls.originated) == 5
        assert len(await world.calls_of(campaign)) == 5


async def test_attempt_ids_are_time_ordered_uuids_in_the_order_they_were_made(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    # UUID version 7: the id of a later attempt sorts after an earlier one's (the
    # stores' id indexes take each new attempt at their end, not on a random page).
    async with engine_on(new_store, tmp_path) as world:
        world.queue.available = 3
        campaign, _, _ = await world.campaign(targets=20)
        await world.run(campaign)
        for call in world.calls.ringing():
            await world.calls.end(call, HangupReason.BUSY)
        await world.advance(1)
        made = [call.campaigncall_id for call in world.calls.originated]
        assert len(made) == 6
        assert made == sorted(made)
        assert all(uuid.UUID(made_id).version == 7 for made_id in made)
        assert sorted(call.id for call in await world.calls_of(campaign)) == made


async def test_every_attempt_of_a_claim_has_ids_of_its_own(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    # One claim's ids are drawn together: each attempt still has its own campaigncall,
    # call (reference) and activeflow id, and no id is used twice anywhere.
    async with engine_on(new_store, tmp_path) as world:
        world.queue.available = 8
        campaign, _, _ = await world.campaign(targets=20)
        await world.run(campaign)
        for call in world.calls.ringing():
            await world.calls.end(call, HangupReason.BUSY)
        await world.advance(1)
        calls = await world.calls_of(campaign)
        assert len(calls) == 16
        ids = [made for call in calls for made in (call.id, call.reference_id, call.activeflow_id)]
        assert len(set(ids)) == 3 * len(calls)
        assert all(uuid.UUID(call.reference_id).version == 4 for call in calls)
        assert all(uuid.UUID(call.activeflow_id).version == 4 for call in calls)
        originated = {call.campaigncall_id: call.reference_id for call in world.calls.originated}
        assert originated == {call.id: call.reference_id for call in calls}


@pytest.mark.parametrize(
    ("service_level", "expected"),
    [(100, 4), (200, 2), (50, 8), (0, 10)],
)
async def test_service_level_sets_lines_per_available_agent(
    tmp_path: Path, new_store: StoreMaker, service_level: int, expected: int
) -> None:
    # 4 agents: 100 -> one line each, 200 -> one per two, 50 -> two each; 0 is held
    # only by the concurrency ceiling (10 here).
    async with engine_on(new_store, tmp_path, max_concurrent_attempts=10) as world:
        world.queue.available = 4
        campaign, _, _ = await world.campaign(targets=20, service_level=service_level)
        await world.run(campaign)
        await world.advance(3)
        assert len(world.calls.originated) == expected


async def test_answered_attempts_no_longer_count_as_dialing(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path) as world:
        world.queue.available = 2
        campaign, _, _ = await world.campaign(targets=10)
        await world.run(campaign)
        assert len(world.calls.originated) == 2
        for call in world.calls.ringing():
            await world.calls.answer(call)
        await world.advance(1)
        # Both agents are still reported free, nothing is dialing: two more lines.
        assert len(world.calls.originated) == 4
        statuses = [call.status for call in await world.calls_of(campaign)]
        assert statuses.count(CampaigncallStatus.PROGRESSING) == 2


async def test_a_line_freed_by_an_ended_attempt_is_refilled_before_the_next_tick(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    # Ticks once a second; no campaign time passes after the ends: the freed lines are
    # claimed and dialed by the ends themselves, never more than the ceiling allows.
    async with engine_on(new_store, tmp_path, max_concurrent_attempts=3) as world:
        campaign, _, _ = await world.campaign(targets=10, queue=False)
        await world.run(campaign)
        first = [call.campaigncall_id for call in world.calls.originated]
        assert len(first) == 3
        await world.calls.end(first[0], HangupReason.BUSY)
        await settle(busy=world.store_busy)
        assert len(world.calls.originated) == 4
        world.calls.report_together(
            [Ended(first[1], HangupReason.BUSY), Ended(first[2], HangupReason.BUSY)]
        )
        await settle(busy=world.store_busy)
        assert len(world.calls.originated) == 6
        statuses = [call.status for call in await world.calls_of(campaign)]
        assert statuses.count(CampaigncallStatus.DIALING) == 3


async def test_a_stored_stop_ends_refills_as_it_ends_ticks(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path, max_concurrent_attempts=2) as world:
        campaign, _, _ = await world.campaign(targets=10, queue=False)
        await world.run(campaign)
        assert len(world.calls.originated) == 2
        # The stop is stored, the loop has not seen it yet: the end's refill is refused.
        await world.store.update_campaign(
            msgspec.structs.replace(campaign, status=CampaignStatus.STOPPING)
        )
        await world.calls.end(world.calls.originated[0].campaigncall_id, HangupReason.BUSY)
        await settle(busy=world.store_busy)
        assert len(world.calls.originated) == 2


async def test_the_answers_of_one_burst_are_written_in_one_store_step(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path, max_concurrent_attempts=4) as world:
        campaign, _, _ = await world.campaign(targets=4, queue=False)
        await world.run(campaign)
        ringing = world.calls.ringing()
        assert len(ringing) == 4
        backend = world.store.backend
        before = _store_steps("mark_answered", backend)
        world.calls.report_together([Answered(call) for call in ringing])
        await settle(busy=world.store_busy)
        assert _store_steps("mark_answered", backend) - before == 1
        statuses = [call.status for call in await world.calls_of(campaign)]
        assert statuses == [CampaigncallStatus.PROGRESSING] * 4


def _store_steps(operation: str, backend: str) -> float:
    """Store calls made so far for ``operation`` (dialerd_store_operation_seconds)."""
    labels = {"operation": operation, "backend": backend}
    return REGISTRY.get_sample_value("dialerd_store_operation_seconds_count", labels) or 0.0


async def test_agentless_campaign_is_held_by_the_concurrency_ceiling(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path, max_concurrent_attempts=3) as world:
        campaign, _, _ = await world.campaign(targets=10, queue=False)
        await world.run(campaign)
        await world.advance(5)
        assert len(world.calls.originated) == 3
        assert world.queue.reads == 0


async def test_agentless_campaign_is_held_by_the_attempts_per_second_ceiling(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path, max_attempts_per_second=2.0) as world:
        campaign, _, _ = await world.campaign(targets=50, queue=False)
        await world.run(campaign)
        assert len(world.calls.originated) == 2
        await world.advance(1)
        assert len(world.calls.originated) == 4
        await world.advance(3)
        assert len(world.calls.originated) == 10


async def test_no_attempt_starts_while_the_queue_adapter_is_unreachable(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path) as world:
        world.queue.available = 5
        campaign, _, _ = await world.campaign(targets=5)
        world.queue.reachable = False
        await world.store.update_campaign(
            msgspec.structs.replace(campaign, status=CampaignStatus.RUN)
        )
        world.engine.wake(campaign.id)
        await world.advance(5)
        assert world.calls.originated == []
        world.queue.reachable = True
        await world.advance(1)
        assert len(world.calls.originated) == 5


async def test_a_failing_campaign_is_retried_and_never_stops_another(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    with (
        structlog.testing.capture_logs(
            processors=[structlog.contextvars.merge_contextvars]
        ) as logs,
    ):
        broken_id = await _one_campaign_failing(tmp_path, new_store)
    failures = [entry for entry in logs if entry["event"] == "campaign tick failed"]
    assert failures
    assert {(entry["campaign_id"], entry["error_type"]) for entry in failures} == {
        (broken_id, "RuntimeError")
    }


async def _one_campaign_failing(tmp_path: Path, new_store: StoreMaker) -> str:
    """Two campaigns, one whose queue reads fail; returns the failing one's id."""
    async with engine_on(new_store, tmp_path, backoff_initial=2.0) as world:
        world.queue.available = 1
        broken, _, _ = await world.campaign(targets=3, queue="support")
        healthy, _, _ = await world.campaign(targets=3)
        world.queue.broken.add("support")
        await world.run(broken)
        await world.run(healthy)
        reads = world.queue.reads
        await world.advance(1.5)
        assert [call.campaign_id for call in world.calls.originated] == [healthy.id]
        assert world.queue.reads == reads + 1  # the broken one waits for its back-off
        world.queue.broken.clear()
        await world.advance(1)
        assert {call.campaign_id for call in world.calls.originated} == {healthy.id, broken.id}
        assert await world.status(broken) == CampaignStatus.RUN
        return broken.id


# -- §4 selection ---------------------------------------------------------------


async def test_a_target_waiting_for_its_retry_does_not_block_the_others(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path) as world:
        world.queue.available = 1
        campaign, _, targets = await world.campaign(
            targets=3, max_try_counts=(2, 0, 0, 0, 0), try_interval_ms=60_000
        )
        await world.run(campaign)
        first = world.calls.originated[0]
        await world.calls.end(first.campaigncall_id, HangupReason.BUSY)
        await world.advance(0.1)
        second = world.calls.originated[1]
        await world.calls.end(second.campaigncall_id, HangupReason.BUSY)
        await world.advance(0.1)
        dialed = [call.destination.target for call in world.calls.originated]
        assert dialed == [
            targets[0].destination_0.target,  # type: ignore[union-attr]
            targets[1].destination_0.target,  # type: ignore[union-attr]
            targets[2].destination_0.target,  # type: ignore[union-attr]
        ]


async def test_retry_interval_runs_from_the_end_of_the_last_attempt(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path) as world:
        world.queue.available = 1
        campaign, _, _ = await world.campaign(
            targets=1, max_try_counts=(2, 0, 0, 0, 0), try_interval_ms=60_000
        )
        await world.run(campaign)
        await world.advance(20)  # it rings for 20 s, then the line is busy
        await world.calls.end(world.calls.originated[0].campaigncall_id, HangupReason.BUSY)
        await world.advance(59)  # 79 s after the start, 59 s after the end
        assert len(world.calls.originated) == 1
        await world.advance(2)
        assert len(world.calls.originated) == 2


async def test_every_try_of_the_first_number_comes_before_the_second(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path) as world:
        world.queue.available = 1
        outdial_target = world.make.target(NIL_UUID, tel("+15550001"), tel("+15550002"))
        campaign, _, _ = await world.campaign(
            targets=[outdial_target], max_try_counts=(2, 1, 0, 0, 0)
        )
        await world.run(campaign)
        for _ in range(3):
            await world.calls.end(world.calls.originated[-1].campaigncall_id, HangupReason.BUSY)
            await world.advance(1)
        calls = await world.calls_of(campaign)
        assert [(call.destination_index, call.try_count) for call in calls] == [
            (0, 1),
            (0, 2),
            (1, 1),
        ]
        assert await world.status(campaign) == CampaignStatus.STOP


# -- §5 the end of an attempt --------------------------------------------------------


async def test_answered_and_ended_normally_is_a_success_and_ends_the_target(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path) as world:
        world.queue.available = 1
        campaign, _, targets = await world.campaign(targets=1, max_try_counts=(3, 0, 0, 0, 0))
        await world.run(campaign)
        call_id = world.calls.originated[0].campaigncall_id
        await world.calls.answer(call_id)
        await world.advance(0.1)
        assert (await world.calls_of(campaign))[0].status == CampaigncallStatus.PROGRESSING
        await world.calls.end(call_id, HangupReason.NORMAL)
        await world.advance(0.1)
        (call,) = await world.calls_of(campaign)
        assert (call.status, call.result, call.reason) == ("done", "success", "normal")
        assert (await world.target(targets[0])).status == TargetStatus.DONE


class EndsRefused:
    """A real store that answers every call but the writes of attempt ends (or those
    named in ``writes``) while ``away`` (refused as unreachable, as a store outage does)."""

    def __init__(
        self, store: Store, writes: tuple[str, ...] = ("finish_attempt", "finish_attempts")
    ) -> None:
        self._store = store
        self._writes = writes
        self.away = False
        self.refused = 0
        # The time the first refused end was to record.
        self.first_refused_at: datetime | None = None

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if not (self.away and name in self._writes):
            return attribute

        async def refused(*args: Any, **kwargs: Any) -> Any:
            self.refused += 1
            if self.first_refused_at is None and name == "finish_attempt":
                self.first_refused_at = args[4]
            raise StoreUnavailable("the store cannot be reached (test)")

        return refused


async def test_an_end_written_after_the_store_was_away_records_when_it_was_seen(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    store = new_store()
    await store.open()
    flaky = EndsRefused(store)
    try:
        async with running_engine(tmp_path, store=cast(Store, flaky)) as world:
            world.queue.available = 1
            campaign, _, _ = await world.campaign(targets=1)
            await world.run(campaign)
            await world.advance(20)  # it rings for 20 s, then the line is busy
            call_id = world.calls.originated[0].campaigncall_id
            flaky.away = True
            seen = world.clock.now()
            await world.calls.end(call_id, HangupReason.BUSY)
            await world.advance(10)  # the end's write is tried again while the store is away
            assert flaky.refused >= 5
            flaky.away = False
            await world.advance(2)
            stored = await store.get_campaigncall(CUSTOMER, call_id)
            assert stored is not None
            assert (stored.status, stored.reason) == (CampaigncallStatus.DONE, "busy")
            assert stored.tm_update is not None
            assert parse_time(stored.tm_update) == seen
    finally:
        await store.close()


async def test_answers_written_after_the_store_was_away_record_when_they_were_seen(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    store = new_store()
    await store.open()
    flaky = EndsRefused(store, writes=("mark_answered_many",))
    try:
        async with running_engine(tmp_path, store=cast(Store, flaky)) as world:
            world.queue.available = 2
            campaign, _, _ = await world.campaign(targets=2)
            await world.run(campaign)
            first, second = (call.campaigncall_id for call in world.calls.originated)
            await world.advance(5)
            flaky.away = True
            first_seen = world.clock.now()
            await world.calls.answer(first)
            await world.advance(3.5)  # its write is tried again while the store is away
            second_seen = world.clock.now()
            await world.calls.answer(second)  # seen between two tries
            await world.advance(6)
            assert flaky.refused >= 8
            flaky.away = False
            await world.advance(2)
            for call_id, seen in ((first, first_seen), (second, second_seen)):
                stored = await store.get_campaigncall(CUSTOMER, call_id)
                assert stored is not None
                assert stored.status == CampaigncallStatus.PROGRESSING
                assert stored.tm_update is not None
                assert parse_time(stored.tm_update) == seen
    finally:
        await store.close()


async def test_a_lost_end_written_after_the_store_was_away_records_when_it_was_seen(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    store = new_store()
    await store.open()
    flaky = EndsRefused(store)
    try:
        async with running_engine(tmp_path, store=store) as world:
            world.queue.available = 1
            campaign, _, _ = await world.campaign(targets=1, max_try_counts=(2, 0, 0, 0, 0))
            await world.run(campaign)
            (call,) = world.calls.originated
        # Another process holds the campaign a while, then gives it up; this one takes it
        # over and finds the attempt not live: lost, its end refused while the store is away.
        fence = await store.acquire_lease(campaign.id, "elsewhere", 600.0, EPOCH)
        assert fence is not None
        flaky.away = True
        async with running_engine(tmp_path, store=cast(Store, flaky)) as world:
            world.queue.available = 1
            await world.advance(3)
            assert flaky.refused == 0
            await store.release_lease(fence)
            await world.advance(16)
            seen = flaky.first_refused_at
            assert seen is not None
            await world.advance(14)  # the take-over is tried again while the store is away
            assert flaky.refused >= 3
            flaky.away = False
            await world.advance(40)
            stored = await store.get_campaigncall(CUSTOMER, call.campaigncall_id)
            assert stored is not None
            assert (stored.status, stored.reason) == (CampaigncallStatus.DONE, "lost")
            assert stored.tm_update is not None
            assert parse_time(stored.tm_update) == seen
            assert world.clock.now() - seen > timedelta(seconds=40)
    finally:
        await store.close()


async def test_a_repeated_hangup_changes_nothing(tmp_path: Path, new_store: StoreMaker) -> None:
    async with engine_on(new_store, tmp_path) as world:
        world.queue.available = 1
        campaign, _, _targets = await world.campaign(targets=1, max_try_counts=(3, 0, 0, 0, 0))
        await world.run(campaign)
        call_id = world.calls.originated[0].campaigncall_id
        await world.calls.end(call_id, HangupReason.BUSY)
        await world.calls.end(call_id, HangupReason.NORMAL)
        await world.advance(0.1)
        first = await world.store.get_campaigncall(CUSTOMER, call_id)
        assert first is not None
        assert (first.result, first.reason) == ("fail", "busy")
        assert world.engine.stats.attempts_finished == len(await world.calls_of(campaign)) - 1


async def test_dial_timeout_cancels_an_unanswered_call_as_no_answer(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path) as world:
        world.queue.available = 1
        campaign, _, _ = await world.campaign(targets=1, dial_timeout_ms=10_000)
        await world.run(campaign)
        call_id = world.calls.originated[0].campaigncall_id
        await world.advance(9.9)
        assert (await world.calls_of(campaign))[0].status == CampaigncallStatus.DIALING
        await world.advance(0.2)
        (call,) = await world.calls_of(campaign)
        assert (call.status, call.result, call.reason) == ("done", "fail", "no_answer")
        assert world.calls.cancelled == [call_id]


async def test_a_flow_attempt_that_never_reports_ends_as_timeout(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path, flow_timeout=20.0) as world:
        campaign, _, _ = await world.campaign(targets=1, type=CampaignType.FLOW, queue=False)
        await world.run(campaign)
        assert len(world.flows.originated) == 1
        await world.advance(21)
        (call,) = await world.calls_of(campaign)
        assert (call.reference_type, call.result, call.reason) == ("flow", "fail", "timeout")
        assert await world.status(campaign) == CampaignStatus.STOP


async def test_a_failed_origination_fails_the_attempt_not_the_campaign(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path, backoff_initial=5.0) as world:
        world.queue.available = 1
        world.calls.failures_to_come = 1
        campaign, _, targets = await world.campaign(targets=1, max_try_counts=(2, 0, 0, 0, 0))
        await world.run(campaign)
        await world.advance(0.1)
        (failed,) = await world.calls_of(campaign)
        assert (failed.result, failed.reason) == ("fail", "error")
        assert await world.status(campaign) == CampaignStatus.RUN
        await world.advance(4)  # backing off
        assert len(await world.calls_of(campaign)) == 1
        await world.advance(2)
        assert len(world.calls.originated) == 1  # the retry reached the backend
        assert (await world.target(targets[0])).try_count_0 == 2


# -- §6 exhaustion and end_handle ----------------------------------------------------


async def test_a_pending_retry_keeps_the_campaign_running(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path) as world:
        world.queue.available = 1
        campaign, _, _ = await world.campaign(
            targets=1, max_try_counts=(2, 0, 0, 0, 0), try_interval_ms=60_000
        )
        await world.run(campaign)
        await world.calls.end(world.calls.originated[0].campaigncall_id, HangupReason.NO_ANSWER)
        await world.advance(30)
        assert await world.status(campaign) == CampaignStatus.RUN
        await world.advance(31)
        await world.calls.end(world.calls.originated[1].campaigncall_id, HangupReason.NO_ANSWER)
        await world.advance(1)
        assert await world.status(campaign) == CampaignStatus.STOP


async def test_end_handle_stop_stops_when_every_target_is_done(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path) as world:
        world.queue.available = 3
        campaign, _, targets = await world.campaign(targets=3)
        await world.run(campaign)
        for call in world.calls.originated:
            await world.calls.answer(call.campaigncall_id)
            await world.calls.end(call.campaigncall_id, HangupReason.NORMAL)
        await world.advance(1)
        assert await world.status(campaign) == CampaignStatus.STOP
        assert {(await world.target(t)).status for t in targets} == {TargetStatus.DONE}


async def test_the_outplans_of_campaigns_no_loop_runs_any_more_are_not_kept(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    # A long-running process runs campaign after campaign, each with its outplan: what
    # it keeps of an outplan (the outplan, its retry rule) goes with the last loop using it.
    async with engine_on(new_store, tmp_path) as world:
        calls = world.engine._calls
        world.queue.available = 3
        first, first_plan, _ = await world.campaign(targets=1)
        second, second_plan, _ = await world.campaign(targets=1)
        third, third_plan, _ = await world.campaign(targets=1)
        await world.control.edit(CUSTOMER, third.id, outplan_id=first_plan.id)
        for campaign in (first, second, third):
            await world.run(campaign)
        await world.advance(1)
        assert set(calls._outplans) == {first_plan.id, second_plan.id}
        originated = {c.campaign_id: c.campaigncall_id for c in world.calls.originated}
        assert len(originated) == 3

        async def ended(campaign: Campaign) -> None:
            await world.calls.end(originated[campaign.id], HangupReason.BUSY)
            await world.advance(2)
            assert await world.status(campaign) == CampaignStatus.STOP

        await ended(first)  # the third campaign's loop still uses its outplan
        assert set(calls._outplans) == {first_plan.id, second_plan.id}
        assert set(calls._retry_rules) == {first_plan.id}
        await ended(second)
        assert set(calls._outplans) == set(calls._retry_rules) == {first_plan.id}
        # The running campaign moves to another outplan: the one it left is not kept.
        await world.control.edit(CUSTOMER, third.id, outplan_id=third_plan.id)
        await world.advance(1)
        assert set(calls._outplans) == {third_plan.id}
        assert calls._retry_rules == {}
        # Its call, placed with the outplan it left, ends by that outplan's rule (read
        # again from the store); then its loop ends, and nothing is kept.
        await ended(third)
        assert calls._outplans == {}
        assert calls._retry_rules == {}


async def test_end_handle_continue_keeps_polling_for_new_targets(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path) as world:
        world.queue.available = 1
        campaign, _, _ = await world.campaign(targets=1, end_handle=EndHandle.CONTINUE)
        await world.run(campaign)
        await world.calls.end(world.calls.originated[0].campaigncall_id, HangupReason.BUSY)
        await world.advance(10)
        assert await world.status(campaign) == CampaignStatus.RUN
        late = world.make.target(campaign.outdial_id, tel("+15559999"))
        await world.store.create_targets([late])
        await world.advance(1)
        assert world.calls.originated[-1].destination.target == "+15559999"


# -- §2 stop -------------------------------------------------------------------------


async def test_stop_cancels_ringing_calls_and_waits_for_answered_ones(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path, stop_grace=30.0) as world:
        world.queue.available = 2
        campaign, _, _ = await world.campaign(targets=5)
        await world.run(campaign)
        talking, ringing = (call.campaigncall_id for call in world.calls.originated)
        await world.calls.answer(talking)
        await world.advance(0.1)
        stopped = await world.control.stop(CUSTOMER, campaign.id)
        assert stopped.status == CampaignStatus.STOPPING
        await world.advance(0.1)
        assert world.calls.cancelled == [ringing]
        assert await world.status(campaign) == CampaignStatus.STOPPING
        await world.advance(20)
        assert world.calls.hung_up == []
        await world.advance(11)
        assert world.calls.hung_up == [talking]
        await world.advance(1)
        assert await world.status(campaign) == CampaignStatus.STOP
        assert len(world.calls.originated) == 2


async def test_stop_without_active_attempts_is_immediate(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path) as world:
        campaign, _, _ = await world.campaign(targets=2)  # no agent free: nothing dials
        await world.run(campaign)
        stopped = await world.control.stop(CUSTOMER, campaign.id)
        assert stopped.status == CampaignStatus.STOP


# -- §7 chaining -------------------------------------------------------------------------


async def test_exhausted_campaign_starts_its_next_campaign(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path) as world:
        world.queue.available = 1
        second, _, _ = await world.campaign(targets=1)
        first, _, _ = await world.campaign(targets=1, next_campaign_id=second.id)
        await world.run(first)
        await world.calls.end(world.calls.originated[0].campaigncall_id, HangupReason.BUSY)
        await world.advance(1)
        assert await world.status(first) == CampaignStatus.STOP
        assert await world.status(second) == CampaignStatus.RUN
        assert world.calls.originated[1].campaign_id == second.id


async def test_a_user_stop_does_not_chain(tmp_path: Path, new_store: StoreMaker) -> None:
    async with engine_on(new_store, tmp_path) as world:
        second, _, _ = await world.campaign(targets=1)
        first, _, _ = await world.campaign(targets=1, next_campaign_id=second.id)
        await world.run(first)
        await world.control.stop(CUSTOMER, first.id)
        await world.advance(2)
        assert await world.status(second) == CampaignStatus.STOP


async def test_a_cycle_of_chained_campaigns_with_nothing_to_dial_does_not_spin(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path) as world:
        world.queue.available = 1
        first, _, _ = await world.campaign(targets=1)
        second, _, _ = await world.campaign(targets=0, next_campaign_id=first.id)
        await world.control.edit(CUSTOMER, first.id, next_campaign_id=second.id)
        await world.run(first)
        await world.calls.end(world.calls.originated[0].campaigncall_id, HangupReason.BUSY)
        await world.advance(5)
        assert await world.status(first) == CampaignStatus.STOP
        assert await world.status(second) == CampaignStatus.STOP
        assert len(world.calls.originated) == 1


# -- restart -------------------------------------------------------------------------


async def test_restart_picks_up_running_campaigns_and_ends_lost_attempts(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path) as world:
        world.queue.available = 1
        campaign, _, targets = await world.campaign(targets=1, max_try_counts=(2, 0, 0, 0, 0))
        await world.run(campaign)
        assert len(world.calls.originated) == 1
    # A new process: the backend knows no call; the store says one is dialing.
    async with engine_on(new_store, tmp_path) as world:
        world.queue.available = 1
        await world.advance(1)
        calls = await world.calls_of(campaign)
        assert (calls[0].result, calls[0].reason) == (CampaigncallResult.FAIL, "lost")
        assert len(world.calls.originated) == 1  # the retry, dialed by the new engine
        assert (await world.target(targets[0])).try_count_0 == 2


async def test_a_queue_the_queue_backend_does_not_know_is_refused_at_run(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path) as world:
        campaign, _, _ = await world.campaign(targets=1)
        world.queue.known.discard("sales")
        with pytest.raises(RunRefused, match=r"\(sales\) is unknown to the fixed backend"):
            await world.run(campaign)
        assert await world.status(campaign) == CampaignStatus.STOP
        assert world.calls.originated == []


async def test_a_call_whose_end_event_is_lost_is_ended_lost_by_the_sweep(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path) as world:
        world.queue.available = 1
        campaign, _, _ = await world.campaign(targets=1, dial_timeout_ms=0)
        await world.run(campaign)
        await world.advance(1)
        (call_id,) = world.calls.ringing()
        await world.calls.answer(call_id)
        world.calls.vanish(call_id)
        await world.advance(9)
        (call,) = await world.calls_of(campaign)
        assert call.status == "progressing"  # one sweep missed it: an end may be on its way
        await world.advance(11)
        (call,) = await world.calls_of(campaign)
        assert (call.status, call.reason) == ("done", "lost")


async def test_events_out_of_order_and_twice_end_an_attempt_once(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path) as world:
        world.queue.available = 1
        campaign, _, (target,) = await world.campaign(targets=1, dial_timeout_ms=0)
        await world.run(campaign)
        await world.advance(1)
        (call_id,) = world.calls.ringing()
        # The end overtakes the answer, then comes again; the answer arrives last.
        await world.calls.report(Ended(call_id, HangupReason.BUSY))
        await world.calls.report(Ended(call_id, HangupReason.NORMAL))
        await world.calls.report(Answered(call_id))
        await world.advance(1)
        (call,) = await world.calls_of(campaign)
        assert (call.status, call.result, call.reason) == ("done", "fail", "busy")
        assert (await world.target(target)).status == TargetStatus.DONE
        assert world.engine.active_attempts == 0


async def test_an_origination_names_the_queue_as_the_backend_knows_it(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path) as world:
        world.queue.available = 1
        queued, _, _ = await world.campaign(targets=1, queue="support")
        agentless, _, _ = await world.campaign(targets=1, queue=False)
        await world.run(queued)
        await world.run(agentless)
        await world.advance(1)
        names = {o.campaign_id: (o.queue_id, o.queue_name) for o in world.calls.originated}
        assert names[queued.id] == (queued.queue_id, "support")
        assert names[agentless.id] == (NIL_UUID, "")
