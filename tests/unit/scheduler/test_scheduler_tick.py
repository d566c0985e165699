"""The tick part over the fakes: claims of campaigns sharing a queue go one at a time,
and the locks that make them do are dropped once no claim holds or waits on them."""

from __future__ import annotations

import anyio

from dialerd.model import Address, Campaign, Outplan
from dialerd.queues import QueueRef, QueueRegistry
from dialerd.scheduler.calls import Calls
from dialerd.scheduler.ending import CampaignEnding
from dialerd.scheduler.shared import CampaignLoop, SharedState
from dialerd.scheduler.states import DialingStates
from dialerd.scheduler.tick import Tick
from tests.fakes.clock import FakeClock
from tests.fakes.engine import scheduler_ports
from tests.fakes.telephony import FixedQueue
from tests.unit.scheduler.test_scheduler_allowance import CUSTOMER, EPOCH_TEXT, allowance_of

SOURCE = Address(type="tel", target="+15559876543")


class GatedQueue(FixedQueue):
    """No free agents; a read waits for ``gate`` and records the reads in progress."""

    def __init__(self) -> None:
        super().__init__(available=0)
        self.gate = anyio.Event()
        self.reading = 0
        self.most_reading = 0

    async def available_agents(self, queue_name: str) -> int:
        self.reading += 1
        self.most_reading = max(self.most_reading, self.reading)
        try:
            await self.gate.wait()
            return await super().available_agents(queue_name)
        finally:
            self.reading -= 1


def queue_ids(count: int) -> list[str]:
    return [f"0d4c1e0a-0000-4000-8000-{number:012d}" for number in range(count)]


def tick_on(shared: SharedState) -> Tick:
    calls = Calls(shared, fence=lambda _: None, runs=lambda _: True, wake=lambda _: None)
    states = DialingStates(shared.clock)

    async def no_reconcile(*args: object, **kwargs: object) -> None:
        pass

    return Tick(
        shared,
        calls=calls,
        allowance=allowance_of(shared),
        ending=CampaignEnding(shared, attempts=calls.view, states=states, fence=lambda _: None),
        states=states,
        fence=lambda _: None,
        reconcile=no_reconcile,
        wake=lambda _: True,
        read=lambda loop, campaign: None,
    )


async def claim(tick: Tick, campaign: Campaign) -> tuple[int, int, bool]:
    outplan = Outplan.fresh(CUSTOMER, EPOCH_TEXT, source=SOURCE)
    return await tick._claim(CampaignLoop(campaign.id), campaign, outplan)


async def test_the_claim_locks_of_queues_that_ran_campaigns_are_not_kept() -> None:
    ids = queue_ids(50)
    queues = QueueRegistry(
        [QueueRef(id=queue_id, customer_id=CUSTOMER, name=f"q{n}") for n, queue_id in
         enumerate(ids)]
    )  # fmt: skip
    tick = tick_on(scheduler_ports(FakeClock(), queue=FixedQueue(available=0), queues=queues))
    for queue_id in ids:
        assert await claim(tick, Campaign.fresh(CUSTOMER, EPOCH_TEXT, queue_id=queue_id)) == (
            0,
            0,
            False,
        )
    assert len(tick._claim_locks) == 0


async def test_campaigns_on_one_queue_claim_one_at_a_time_and_leave_no_lock() -> None:
    [queue_id] = queue_ids(1)
    queue = GatedQueue()
    queues = QueueRegistry([QueueRef(id=queue_id, customer_id=CUSTOMER, name="sales")])
    tick = tick_on(scheduler_ports(FakeClock(), queue=queue, queues=queues))
    campaigns = [Campaign.fresh(CUSTOMER, EPOCH_TEXT, queue_id=queue_id) for _ in range(3)]
    async with anyio.create_task_group() as group:
        for campaign in campaigns:
            group.start_soon(claim, tick, campaign)
        await anyio.wait_all_tasks_blocked()
        # One claim reads the queue; the two others wait on the queue's one lock.
        assert (queue.reading, len(tick._claim_locks)) == (1, 1)
        queue.gate.set()
    assert queue.reads == 3
    assert queue.most_reading == 1
    assert len(tick._claim_locks) == 0
