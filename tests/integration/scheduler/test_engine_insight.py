"""Why a campaign is not dialing: the state each tick leaves, and its per-campaign series."""

from __future__ import annotations

from pathlib import Path

from dialerd import metrics
from dialerd.model import EndHandle
from dialerd.ports import Answered, Ended, HangupReason
from tests.fakes.clock import settle
from tests.integration.scheduler.engine_harness import CUSTOMER, World, running_engine

# A registry of every dialerd family, as the daemon makes one for /metrics.
REGISTRY = metrics.create_registry()


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def state_of(world: World, campaign_id: str) -> str:
    insight = world.engine.insight(campaign_id)
    assert insight is not None
    return insight.state


async def test_each_reason_a_campaign_does_not_dial_is_named(tmp_path: Path) -> None:
    async with running_engine(tmp_path, max_concurrent_attempts=2) as world:
        world.queue.available = 0
        campaign, _, _ = await world.campaign(
            targets=3, max_try_counts=(2, 0, 0, 0, 0), try_interval_ms=60_000,
            end_handle=EndHandle.CONTINUE,
        )  # fmt: skip
        await world.run(campaign)
        await world.advance(1)
        assert state_of(world, campaign.id) == "waiting_for_agents"
        assert sample("dialerd_campaign_state", campaign_id=campaign.id,
                      state="waiting_for_agents") == 1  # fmt: skip

        world.queue.available = 1
        await world.advance(1)
        assert state_of(world, campaign.id) == "dialing"
        await world.advance(1)
        # One agent, one line ringing for it: the service level holds the rest.
        assert state_of(world, campaign.id) == "paced"
        assert sample("dialerd_campaign_available_agents", campaign_id=campaign.id) == 1
        assert sample("dialerd_campaign_dialing", campaign_id=campaign.id) == 1

        world.queue.available = 10
        await world.advance(1)
        await world.advance(1)
        assert state_of(world, campaign.id) == "concurrency_ceiling"
        insight = world.engine.insight(campaign.id)
        assert insight is not None
        assert (insight.dialing, insight.available_agents) == (2, 10)

        async def end_ringing() -> None:
            for call_id in world.calls.ringing():
                await world.calls.end(call_id, HangupReason.BUSY)
            await world.advance(1)

        await end_ringing()  # the third target is dialed
        await end_ringing()
        # Every target waits for its retry interval.
        assert state_of(world, campaign.id) == "no_eligible_target"
        await world.advance(60)
        for _ in range(4):
            await end_ringing()
        assert state_of(world, campaign.id) == "exhausted"
        assert sample("dialerd_campaign_attempts_started_total", campaign_id=campaign.id) == 6
        assert sample("dialerd_campaign_attempts_ended_total", campaign_id=campaign.id,
                      result="fail", reason="busy") == 6  # fmt: skip


async def test_the_dialing_and_talking_series_follow_starts_answers_and_ends_in_bursts(
    tmp_path: Path,
) -> None:
    # A claim's starts, a burst's answers and a burst's ends are each published once:
    # what is scraped after each is the count of the calls as they are.
    async with running_engine(tmp_path) as world:
        world.queue.available = 4
        campaign, _, _ = await world.campaign(targets=10)
        await world.run(campaign)

        def activity() -> tuple[float | None, ...]:
            return (
                sample("dialerd_campaign_dialing", campaign_id=campaign.id),
                sample("dialerd_campaign_talking", campaign_id=campaign.id),
                sample("dialerd_attempts_active", status="dialing"),
                sample("dialerd_attempts_active", status="progressing"),
            )

        assert activity() == (4, 0, 4, 0)
        calls = world.calls.ringing()
        world.calls.report_together([Answered(calls[0]), Answered(calls[1]), Answered(calls[2])])
        await settle(busy=world.store_busy)
        assert activity() == (1, 3, 1, 3)
        world.calls.report_together(
            [Ended(calls[0], HangupReason.NORMAL), Ended(calls[3], HangupReason.BUSY)]
        )
        await settle(busy=world.store_busy)
        # Nothing rings any more: the refill dials a line per free agent again.
        assert activity() == (4, 2, 4, 2)


async def test_a_queue_read_failure_shows_as_queue_unreachable(tmp_path: Path) -> None:
    async with running_engine(tmp_path) as world:
        world.queue.available = 1
        campaign, _, _ = await world.campaign(targets=2)
        await world.run(campaign)
        world.queue.reachable = False
        await world.advance(1)
        insight = world.engine.insight(campaign.id)
        assert insight is not None
        assert insight.state == "queue_unreachable"
        assert "unreachable" in insight.detail


async def test_a_stopped_campaign_drops_its_series(tmp_path: Path) -> None:
    async with running_engine(tmp_path) as world:
        world.queue.available = 1
        campaign, _, _ = await world.campaign(targets=2)
        await world.run(campaign)
        await world.advance(1)
        assert sample("dialerd_campaign_attempts_started_total", campaign_id=campaign.id) == 1
        await world.control.stop(CUSTOMER, campaign.id)
        await world.advance(2)
        assert world.engine.insight(campaign.id) is None
        assert sample("dialerd_campaign_attempts_started_total", campaign_id=campaign.id) is None
        assert sample("dialerd_campaign_state", campaign_id=campaign.id, state="stopping") is None


async def test_the_list_progress_is_counted(tmp_path: Path) -> None:
    async with running_engine(tmp_path) as world:
        world.queue.available = 1
        campaign, _, _ = await world.campaign(
            targets=4, max_try_counts=(2, 0, 0, 0, 0), try_interval_ms=600_000
        )
        await world.run(campaign)
        await world.advance(1)
        (call_id,) = world.calls.ringing()
        await world.calls.end(call_id, HangupReason.BUSY)
        await world.advance(16)  # the list is counted every 15 housekeeping rounds
        insight = world.engine.insight(campaign.id)
        assert insight is not None
        assert insight.targets is not None
        assert (insight.targets.idle_waiting, insight.targets.progressing) == (1, 1)
        assert insight.targets.idle_due == 2
        assert sample("dialerd_campaign_targets", campaign_id=campaign.id,
                      status="idle_waiting") == 1  # fmt: skip


async def test_a_running_campaigns_counters_exist_at_zero_until_their_first_event(
    tmp_path: Path,
) -> None:
    async with running_engine(tmp_path) as world:
        world.queue.available = 0  # nothing is dialed: every counter stays at 0
        campaign, _, _ = await world.campaign(targets=2)
        await world.run(campaign)
        await world.advance(1)
        assert state_of(world, campaign.id) == "waiting_for_agents"
        # The abandonment ratio an operator graphs reads 0, not "no data".
        assert sample("dialerd_campaign_attempts_ended_total", campaign_id=campaign.id,
                      result="fail", reason="abandoned") == 0  # fmt: skip
        assert sample("dialerd_campaign_attempts_ended_total", campaign_id=campaign.id,
                      result="success", reason="normal") == 0  # fmt: skip
        for reason in HangupReason:
            result = "success" if reason is HangupReason.NORMAL else "fail"
            assert sample("dialerd_campaign_attempts_ended_total", campaign_id=campaign.id,
                          result=result, reason=reason.value) == 0, reason  # fmt: skip
        assert sample("dialerd_campaign_attempts_started_total", campaign_id=campaign.id) == 0
        assert sample("dialerd_campaign_answered_total", campaign_id=campaign.id) == 0
        await world.control.stop(CUSTOMER, campaign.id)
        await world.advance(2)
        assert world.engine.insight(campaign.id) is None
        assert sample("dialerd_campaign_attempts_ended_total", campaign_id=campaign.id,
                      result="fail", reason="abandoned") is None  # fmt: skip
        assert sample("dialerd_campaign_answered_total", campaign_id=campaign.id) is None


async def test_the_state_names_this_instance_by_its_opaque_id(tmp_path: Path) -> None:
    async with running_engine(tmp_path, owner="db-7.internal.example:0123456789ab") as world:
        campaign, _, _ = await world.campaign(targets=1)
        await world.run(campaign)
        await world.advance(1)
        insight = world.engine.insight(campaign.id)
    assert insight is not None
    assert insight.instance == "0123456789ab"
