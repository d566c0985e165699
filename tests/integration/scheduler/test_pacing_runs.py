"""Pacing on the simulated centre under a fake clock, on each store: the seed's rule is
exact without an abandonment cap (§3); with one, the governor holds it when the
campaign's list changes under it, and the measurement survives a restart; the model's
prior is kept at a day's rollover and when a loop ends, and read by the next (§10)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio
import msgspec
import pytest

from dialerd.adapters.sim import SimCallCentre
from dialerd.config import EngineConfig, Range, SimConfig, SimOutcomes
from dialerd.core import abandonment
from dialerd.core.abandonment import AbandonmentPolicy
from dialerd.core.predictive import PacingPrior
from dialerd.insight import CampaignInsight, DialingState
from dialerd.model import Campaign, PacingMode
from dialerd.queues import QueueRef, QueueRegistry
from dialerd.scheduler import Engine
from dialerd.store import Store
from tests.fakes.clock import FakeClock
from tests.fakes.engine import sim_engine
from tests.fakes.store import InFlight
from tests.integration.conftest import EPOCH, Factory, StoreMaker, tel
from tests.integration.scheduler.engine_harness import CUSTOMER

QUEUE = "0b9a3f8e-5c1d-4e2f-9a7b-6c5d4e3f2a1b"
CAP = 0.03


def mix(live: float) -> SimOutcomes:
    """``live`` answered live; the rest machines, busy lines and no answers."""
    rest = 1.0 - live
    return SimOutcomes(
        machine=0.3 * rest,
        busy=0.3 * rest,
        no_answer=0.4 * rest,
        failure=0.0,
        ring_time=Range(min=2.0, max=12.0),
        talk_time=Range(min=60.0, max=300.0),
    )


def centre_config(agents: int, live: float) -> SimConfig:
    return SimConfig(seed=5, default_agents=agents, wrap_up=Range(min=3.0, max=10.0),
                     outcomes=mix(live))  # fmt: skip


@dataclass
class Run:
    store: Store
    clock: FakeClock
    centre: SimCallCentre
    engine: Engine
    campaign: Campaign

    async def windows(self) -> list[abandonment.WindowCount]:
        today = abandonment.campaign_day(self.clock.now())
        days = await self.store.abandonment_days(self.campaign.id, "0000-00-00")
        return abandonment.windows(days, today, [1, 30])

    async def advance(self, seconds: float, every: Callable[[], None] | None = None) -> None:
        end = self.clock.monotonic() + seconds
        while self.clock.monotonic() < end:
            await self.clock.sleep_until(min(end, self.clock.monotonic() + 1.0))
            if every is not None:
                every()


@asynccontextmanager
async def running(
    new_store: StoreMaker,
    centre: SimConfig,
    *,
    mode: PacingMode = PacingMode.PREDICTIVE,
    service_level: int = 100,
    targets: int = 3000,
    campaign: Campaign | None = None,
    clock: FakeClock | None = None,
    cap: float | None = CAP,
    max_concurrent_attempts: int = 500,
) -> AsyncIterator[Run]:
    """An engine on a store (``new_store``: each backend, one data set per test) and the
    simulated centre, with one running campaign on the queue (made, unless ``campaign``
    is one stored before); ``cap`` is the configured ``[abandonment]`` cap (None: no
    table)."""
    clock = clock or FakeClock(EPOCH)
    store = opened = new_store()
    await store.open()
    busy: Callable[[], bool] | None = None
    if store.backend != "sqlite":
        # Its calls wait on a socket, which the clock's settling cannot see: counted, so
        # that time does not move while one is in flight.
        store = counted = InFlight(store)  # type: ignore[assignment]
        busy = counted.busy
    world = SimCallCentre(centre, clock)
    engine = sim_engine(
        store,
        clock,
        world,
        queues=QueueRegistry([QueueRef(id=QUEUE, customer_id=CUSTOMER, name=QUEUE)]),
        config=EngineConfig(
            max_concurrent_attempts=max_concurrent_attempts, max_attempts_per_second=1000.0
        ),
        abandonment=lambda customer: AbandonmentPolicy(cap=cap),
    )
    if campaign is None:
        make = Factory()
        outplan = msgspec.structs.replace(
            make.outplan(CUSTOMER, max_try_counts=(1, 0, 0, 0, 0)), dial_timeout=20_000
        )
        await store.create_outplan(outplan)
        outdial = await store.create_outdial(make.outdial(CUSTOMER))
        await store.create_targets(
            [make.target(outdial.id, tel(f"+1555{n:07d}")) for n in range(targets)]
        )
        campaign = msgspec.structs.replace(
            make.campaign(CUSTOMER, outplan_id=outplan.id, outdial_id=outdial.id),
            queue_id=QUEUE,
            service_level=service_level,
            pacing_mode=mode,
            actions=[],  # answered calls join the queue at once
        )
        await store.create_campaign(campaign)
    try:
        async with (
            anyio.create_task_group() as task_group,
            clock.autojump(max_seconds=6 * 3600, busy=busy),
        ):
            await task_group.start(engine.run)
            await engine.control.run(CUSTOMER, campaign.id)
            yield Run(store, clock, world, engine, campaign)
            task_group.cancel_scope.cancel()
    finally:
        await opened.close()


# The long scenarios (tens of simulated minutes, thousands of calls) run on SQLite only.
# What they judge is the governor, which is the same code on both stores; on Redis the
# store's real latency interleaves with the fake clock, so the sim's draws differ from
# run to run and a loaded machine can move the clock while a store call is answered
# (issue 24's closing note). The store's part of pacing (windows, priors) is judged on
# both stores by the shorter runs below, and the governor on Redis by the burst and
# dial-harder runs.
long_run = pytest.mark.parametrize("new_store", ["sqlite"], indirect=True)


@long_run
async def test_governor_holds_the_cap_when_live_answers_jump_from_15_to_50_percent(
    new_store: StoreMaker,
) -> None:
    async with running(new_store, centre_config(20, 0.15)) as run:
        await run.advance(20 * 60)
        before = await run.windows()
        # The list turns: three times as many dials reach a person, all at once.
        run.centre.reconfigure(centre_config(20, 0.50))
        await run.advance(30 * 60)
        after = await run.windows()
    assert before[0].live > 50
    assert after[0].live > before[0].live + 120
    assert all(window.rate <= CAP for window in after), after


async def test_governor_holds_the_cap_when_agents_log_out_in_a_burst(new_store: StoreMaker) -> None:
    async with running(new_store, centre_config(30, 0.30)) as run:
        await run.advance(15 * 60)
        # Two thirds of the team leave at once, while the lines dialed for them ring.
        run.centre.reconfigure(centre_config(10, 0.30))
        await run.advance(20 * 60)
        after = await run.windows()
    assert after[0].live > 200
    assert all(window.rate <= CAP for window in after), after


async def test_a_dial_harder_service_level_is_governed_too(new_store: StoreMaker) -> None:
    # Service level 25 rings four lines per free agent: with half the dials answered
    # live that abandons most callers, unless the governor holds it.
    async with running(
        new_store, centre_config(20, 0.5), mode=PacingMode.SERVICE_LEVEL, service_level=25
    ) as run:
        await run.advance(40 * 60)
        after = await run.windows()
        insight = run.engine.insight(run.campaign.id)
    assert after[0].live > 200
    assert all(window.rate <= CAP for window in after), after
    assert insight is not None
    assert insight.abandonment == after


async def test_abandonment_windows_survive_a_restart_and_govern_the_next_engine(
    new_store: StoreMaker,
) -> None:
    clock = FakeClock(EPOCH)
    async with running(new_store, centre_config(10, 0.5), clock=clock) as run:
        await run.advance(10 * 60)
        measured = await run.windows()
        campaign = run.campaign
    assert measured[0].live > 20
    # Another engine (a restart) on the same store: at the cap already today.
    store = new_store()
    await store.open()
    today = abandonment.campaign_day(clock.now())
    live, abandoned = measured[0].live, measured[0].abandoned
    # Enough abandoned calls to put the day at the cap (3 %) once more.
    await store.add_abandonment(campaign.id, today, 0, max(0, round(live * CAP) + 1 - abandoned))
    await store.close()
    peak = 0

    async with running(new_store, centre_config(10, 0.5), campaign=campaign, clock=clock) as run:

        def watch() -> None:
            nonlocal peak
            peak = max(peak, run.engine.max_dialing)

        await run.advance(5 * 60, every=watch)
        insight = run.engine.insight(campaign.id)
        windows = await run.windows()
    assert insight is not None
    assert insight.abandonment[0].live >= live  # it went on from the stored counts
    assert windows[0].live >= live
    # At the cap: never more lines ringing than agents (10), though predictive would.
    assert peak <= 10


async def peak_dialing(run: Run, seconds: float) -> int:
    peak = 0

    def watch() -> None:
        nonlocal peak
        peak = max(peak, run.engine.max_dialing)

    await run.advance(seconds, every=watch)
    return peak


async def test_without_a_cap_service_level_50_rings_two_lines_per_free_agent(
    new_store: StoreMaker,
) -> None:
    async with running(
        new_store, centre_config(10, 0.3), mode=PacingMode.SERVICE_LEVEL, service_level=50,
        cap=None,
    ) as run:  # fmt: skip
        peak = await peak_dialing(run, 120)
        insight = run.engine.insight(run.campaign.id)
    assert peak == 20  # behaviour.md §3: two lines per free agent, from the first tick
    assert insight is not None
    # Still measured and shown, never blamed.
    assert [window.days for window in insight.abandonment] == [1, 30]
    assert insight.abandonment[0].live > 0
    assert insight.governor_pressure == 0.0
    assert insight.state != DialingState.GOVERNED
    assert "abandonment" not in insight.detail


async def test_without_a_cap_service_level_0_is_bounded_by_the_ceiling_only(
    new_store: StoreMaker,
) -> None:
    async with running(
        new_store, centre_config(10, 0.3), mode=PacingMode.SERVICE_LEVEL, service_level=0,
        cap=None, max_concurrent_attempts=60,
    ) as run:  # fmt: skip
        peak = await peak_dialing(run, 30)
    assert peak == 60


async def test_with_a_cap_a_new_campaign_starts_at_one_line_per_free_agent(
    new_store: StoreMaker,
) -> None:
    seen: list[CampaignInsight] = []
    async with running(
        new_store, centre_config(10, 0.3), mode=PacingMode.SERVICE_LEVEL, service_level=50
    ) as run:

        def watch() -> None:
            insight = run.engine.insight(run.campaign.id)
            if insight is not None:
                seen.append(insight)

        await run.advance(30, every=watch)
    assert run.engine.max_dialing == 10  # the documented cold-start floor
    held = [insight for insight in seen if insight.state == DialingState.GOVERNED]
    assert held, [insight.state for insight in seen]
    assert all(insight.governor_pressure == 1.0 for insight in held)
    assert all("no room for an abandoned call" in insight.detail for insight in held)


async def minute_by_minute(run: Run, minutes: int) -> list[abandonment.WindowCount]:
    """Each window sampled at the end of each minute, once one abandoned call fits
    under the cap in it (before that the governor rings one line per free agent)."""
    judged: list[abandonment.WindowCount] = []
    for _ in range(minutes):
        await run.advance(60)
        judged += [window for window in await run.windows() if CAP * window.live >= 1]
    return judged


@long_run
async def test_a_big_team_is_never_above_the_cap_at_any_minute(new_store: StoreMaker) -> None:
    # Issue 24, defect 1: with a big team the running day rate went above the cap in the
    # first minutes (a campaign stopped then closes its day in breach).
    async with running(new_store, centre_config(400, 0.25), targets=20_000,
                       max_concurrent_attempts=6000) as run:  # fmt: skip
        judged = await minute_by_minute(run, 6)
    assert len(judged) >= 10
    assert all(window.rate <= CAP for window in judged), " ".join(
        f"{w.abandoned}/{w.live}" for w in judged
    )


# On Redis, in about 1 run of 6 one minute after the jump went to 7/217 (3.2 %): a known
# defect of the pacing (issue 24's closing note).
@long_run
async def test_a_jump_in_live_answers_never_puts_a_minute_above_the_cap(
    new_store: StoreMaker,
) -> None:
    async with running(new_store, centre_config(40, 0.15), targets=8000) as run:
        judged = await minute_by_minute(run, 15)
        run.centre.reconfigure(centre_config(40, 0.50))
        judged += await minute_by_minute(run, 10)
    assert all(window.rate <= CAP for window in judged), " ".join(
        f"{w.abandoned}/{w.live}" for w in judged
    )


# -- the model's prior, kept in the store (issue 24, item 2) ------------------------------


async def kept_prior(new_store: StoreMaker, campaign_id: str) -> PacingPrior | None:
    store = new_store()
    await store.open()
    try:
        return await store.pacing_prior(campaign_id)
    finally:
        await store.close()


async def test_a_campaign_run_again_paces_from_the_prior_its_last_run_kept(
    new_store: StoreMaker,
) -> None:
    clock = FakeClock(EPOCH)
    async with running(new_store, centre_config(20, 0.3), clock=clock) as run:
        await run.advance(10 * 60)
        campaign = run.campaign
    # The loop ended (the engine stopped): what the model learnt is in the store.
    prior = await kept_prior(new_store, campaign.id)
    assert prior is not None
    assert prior.day == "2026-03-02"
    assert 0.2 < prior.live_rate < 0.4
    assert prior.talks_seen > 20
    # The next engine: two seconds in, no live answer of its own yet (they ring 2-12 s),
    # yet it knows the campaign (a fresh model knows nothing for a minute or so).
    async with running(new_store, centre_config(20, 0.3), campaign=campaign, clock=clock) as run:
        await run.advance(2)
        insight = run.engine.insight(campaign.id)
    assert insight is not None
    assert insight.live_rate is not None
    assert 0.2 < insight.live_rate < 0.4
    assert insight.talk_seconds is not None
    assert 60 < insight.talk_seconds < 300


async def test_the_prior_is_kept_at_the_day_s_rollover_while_the_campaign_runs(
    new_store: StoreMaker,
) -> None:
    clock = FakeClock(datetime(2026, 3, 2, 23, 50, tzinfo=UTC))
    async with running(new_store, centre_config(20, 0.3), clock=clock) as run:
        await run.advance(15 * 60)
        prior = await run.store.pacing_prior(run.campaign.id)
    assert prior is not None
    assert prior.day == "2026-03-02"  # the day that ended, kept at midnight
    assert 0.2 < prior.live_rate < 0.5  # 30 %, from the ten minutes before midnight
    assert prior.dials > 50


async def test_state_talk_seconds_counts_the_calls_still_running(new_store: StoreMaker) -> None:
    # Calls of 10-20 minutes, 6 minutes in: none ended yet. Pacing counts the running
    # ones (at least as long as they already lasted); /state says the same.
    long_calls = msgspec.structs.replace(
        centre_config(20, 0.3),
        outcomes=msgspec.structs.replace(mix(0.3), talk_time=Range(min=600.0, max=1200.0)),
    )
    async with running(new_store, long_calls) as run:
        await run.advance(6 * 60)
        insight = run.engine.insight(run.campaign.id)
    assert insight is not None
    assert insight.talk_seconds is not None
    assert insight.talk_seconds > 150  # (main said 0: no call had ended)
