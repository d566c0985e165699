"""Campaign loops started or woken all together (a restart, a reload) go on ticking on
their own phase of the interval: not all in the same instant, and each still once an
interval. Each campaign's list is counted on its own offset of the counting period too."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path

from dialerd.config import EngineConfig
from dialerd.insight import TargetCounts
from dialerd.model import CampaignStatus
from dialerd.scheduler.supervisor import TARGET_COUNT_EVERY
from dialerd.store.sqlite import SqliteStore
from tests.integration.scheduler.engine_harness import World, running_engine

CAMPAIGNS = 100


async def tick_instants(world: World, seconds: float) -> list[float]:
    """When the ticks of the next ``seconds`` started, from now."""
    instants: list[float] = []
    start = world.clock.monotonic()
    world.engine.tick_observer = lambda lag, duration: instants.append(
        world.clock.monotonic() - start
    )
    await world.advance(seconds)
    world.engine.tick_observer = None
    return instants


def assert_spread(instants: list[float]) -> None:
    # Every campaign ticks once a second (from any instant on), as before...
    per_second = Counter(int(instant) for instant in instants)
    assert per_second == {0: CAMPAIGNS, 1: CAMPAIGNS, 2: CAMPAIGNS}
    # ...and not in one instant: spread over the second (by campaign id).
    assert len({round(instant, 6) for instant in instants if instant < 1}) > CAMPAIGNS // 2


async def test_campaigns_picked_up_at_a_restart_tick_spread_over_the_interval(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "dialerd.sqlite3")
    await store.open()
    try:
        async with running_engine(tmp_path, store=store) as world:
            # Queue campaigns with no agent free: each tick reads, decides 0, and waits.
            for _ in range(CAMPAIGNS):
                campaign, _, _ = await world.campaign()
                await world.run(campaign)
        async with running_engine(tmp_path, store=store) as world:
            assert world.engine.running_campaigns == CAMPAIGNS
            await world.advance(2.5)
            assert_spread(await tick_instants(world, 3.0))
    finally:
        await store.close()


async def test_campaigns_woken_by_a_reload_go_back_to_ticking_spread(tmp_path: Path) -> None:
    async with running_engine(tmp_path) as world:
        for _ in range(CAMPAIGNS):
            campaign, _, _ = await world.campaign()
            await world.run(campaign)
        world.engine.reconfigure(EngineConfig(stop_grace=30.0))
        await world.advance(2.5)
        assert_spread(await tick_instants(world, 3.0))


class CountsSeen(SqliteStore):
    """The store, noting each list count it is asked for: (when, which outdial)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.counted: list[tuple[datetime, str]] = []

    async def target_counts(self, outdial_id: str, now: datetime) -> TargetCounts:
        self.counted.append((now, outdial_id))
        return await super().target_counts(outdial_id, now)


async def test_each_list_is_counted_once_a_period_spread_over_its_seconds(
    tmp_path: Path,
) -> None:
    store = CountsSeen(tmp_path / "dialerd.sqlite3")
    await store.open()
    try:
        async with running_engine(tmp_path, store=store) as world:
            for _ in range(CAMPAIGNS):
                campaign, _, _ = await world.campaign()
                await world.run(campaign)
        running = await store.campaigns_with_status([CampaignStatus.RUN])
        outdials = {campaign.outdial_id for campaign in running}
        async with running_engine(tmp_path, store=store) as world:
            period = TARGET_COUNT_EVERY * 1.0
            await world.advance(period)
            store.counted.clear()
            await world.advance(2 * period)
        # Every running campaign's list, once a period...
        assert Counter(outdial for _, outdial in store.counted) == dict.fromkeys(outdials, 2)
        # ...each at its own instant (after its own tick), not a share of them at the
        # start of each housekeeping round, one read after the other.
        instants = {when for when, _ in store.counted}
        assert len(instants) > CAMPAIGNS
    finally:
        await store.close()
