"""The customers' share of the process's calls, with the real scheduler on every store
(dialerd/scheduler/sharing.py, behaviour.md §10, Quotas): a ceiling of concurrent calls
is shared fairly between customers, whatever number of campaigns each runs, and each
customer is held to its own call quotas."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from dialerd import metrics
from dialerd.config import EngineConfig
from dialerd.core.fair_share import Ceiling
from dialerd.core.quotas import Quotas
from dialerd.model import CampaignStatus, HangupReason
from tests.integration.conftest import StoreMaker
from tests.integration.scheduler.engine_harness import CUSTOMER, World, engine_on

# A registry of every dialerd family, as the daemon makes one for /metrics.
REGISTRY = metrics.create_registry()
OTHER = "0b7e2d36-1c55-4f0e-9a33-2b8f0c6d1e47"
# Seconds a call rings before the test ends it unanswered.
RING = 3


class Calls:
    """Ends every call ``RING`` seconds after it started; counts live calls per customer."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.born: dict[str, float] = {}
        self.peak = 0

    def live_by_customer(self) -> Counter[str]:
        customers = {o.campaigncall_id: o.customer_id for o in self.world.calls.originated}
        return Counter(customers[call] for call in self.world.calls.live)

    async def second(self) -> Counter[str]:
        """One second of calls: end those that rang long enough, let the engine tick."""
        now = self.world.clock.monotonic()
        for origination in self.world.calls.originated:
            self.born.setdefault(origination.campaigncall_id, now)
        for call in list(self.world.calls.live):
            if now - self.born[call] >= RING:
                await self.world.calls.end(call, HangupReason.NO_ANSWER)
        await self.world.advance(1)
        live = self.live_by_customer()
        self.peak = max(self.peak, sum(live.values()))
        return live


async def test_a_customer_with_one_campaign_gets_its_share_beside_one_with_twenty(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path, ceiling=Ceiling(concurrent_calls=10)) as world:
        many = [(await world.campaign(targets=30, queue=False))[0] for _ in range(20)]
        (single, _, _) = await world.campaign(targets=200, queue=False, customer=OTHER)
        for campaign in many:
            await world.run(campaign)
        # The twenty campaigns took the whole ceiling before the other customer ran.
        assert sum(Calls(world).live_by_customer().values()) == 10
        await world.run(single)
        calls = Calls(world)

        seconds = [await calls.second() for _ in range(12)]

        assert calls.peak <= 10
        # Once the first calls ended, the customers share the ceiling half and half.
        for live in seconds[RING + 1 :]:
            assert live[OTHER] == 5, str([(s[OTHER], s[CUSTOMER]) for s in seconds])
            assert live[CUSTOMER] == 5, str([(s[OTHER], s[CUSTOMER]) for s in seconds])


async def test_what_a_customer_does_not_use_goes_to_the_other(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path, ceiling=Ceiling(concurrent_calls=10)) as world:
        (single, _, _) = await world.campaign(targets=100, queue=False, customer=OTHER)
        (few, _, _) = await world.campaign(targets=2, queue=False)
        await world.run(single)
        await world.run(few)
        calls = Calls(world)

        seconds = [await calls.second() for _ in range(8)]
        assert await world.status(few) == CampaignStatus.STOP
        seconds += [await calls.second() for _ in range(RING + 1)]

        # While the few calls of one customer ring, the other has the rest of the
        # ceiling; once they are done, all of it.
        assert [live[CUSTOMER] for live in seconds].count(2) >= RING, str(
            [(s[OTHER], s[CUSTOMER]) for s in seconds]
        )
        assert max(live[OTHER] for live in seconds if live[CUSTOMER] == 2) == 8, str(
            [(s[OTHER], s[CUSTOMER]) for s in seconds]
        )
        assert seconds[-1][OTHER] == 10, str([(s[OTHER], s[CUSTOMER]) for s in seconds])
        assert calls.peak <= 10


async def test_a_customer_is_held_to_its_concurrent_calls_and_rate_quotas(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    def quotas_of(customer_id: str) -> Quotas:
        if customer_id == CUSTOMER:
            return Quotas(concurrent_calls=3, calls_per_second=1.0)
        return Quotas()

    async with engine_on(new_store, tmp_path, quotas_of=quotas_of) as world:
        held = [(await world.campaign(targets=20, queue=False))[0] for _ in range(2)]
        (free, _, _) = await world.campaign(targets=20, queue=False, customer=OTHER)
        for campaign in (*held, free):
            await world.run(campaign)
        calls = Calls(world)

        first = calls.live_by_customer()
        seconds = [await calls.second() for _ in range(6)]

        # One call a second, at most three at once, over both of its campaigns.
        assert first[CUSTOMER] == 1
        assert max(live[CUSTOMER] for live in seconds) == 3
        started = [o for o in world.calls.originated if o.customer_id == CUSTOMER]
        assert len(started) <= 1 + len(seconds)
        # The use against the quota, as the operator sees it.
        labels = {"customer_id": CUSTOMER, "quota": "concurrent_calls"}
        assert REGISTRY.get_sample_value("dialerd_quota_limit", labels) == 3
        assert REGISTRY.get_sample_value("dialerd_quota_used", labels) == 3
        # The other customer has no quota: its campaign dials at its own ceilings.
        assert first[OTHER] == 20


async def test_the_rate_ceiling_is_shared_between_customers_too(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path, ceiling=Ceiling(calls_per_second=10.0)) as world:
        many = [(await world.campaign(targets=30, queue=False))[0] for _ in range(20)]
        (single, _, _) = await world.campaign(targets=200, queue=False, customer=OTHER)
        for campaign in (*many, single):
            await world.run(campaign)
        calls = Calls(world)
        for _ in range(2):
            await calls.second()
        before = len(world.calls.originated)
        for _ in range(10):
            await calls.second()

        started = Counter(o.customer_id for o in world.calls.originated[before:])

        # Ten calls a second in all, about five for each customer: a tick woken early by
        # an ended call finds its customer's budget a fraction short of a call, and one
        # woken late finds it full (one second's worth), so a few calls are lost.
        assert sum(started.values()) <= 100
        assert 40 <= started[OTHER] <= 50, str(started)
        assert 40 <= started[CUSTOMER] <= 50, str(started)


async def test_a_reloaded_ceiling_applies_from_the_next_tick(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path, ceiling=Ceiling(concurrent_calls=2)) as world:
        (campaign, _, _) = await world.campaign(targets=20, queue=False)
        await world.run(campaign)
        await world.advance(1)
        assert len(world.calls.live) == 2

        world.engine.reconfigure(
            EngineConfig(stop_grace=30.0),
            ceiling=Ceiling(concurrent_calls=5),
            quotas_of=lambda _: Quotas(),
        )
        await world.advance(1)

        assert len(world.calls.live) == 5
