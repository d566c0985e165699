"""The allowance part over the fakes: what it lets a tick start, and what it says held
the campaign back (the state the operator sees)."""

from __future__ import annotations

from collections.abc import Iterable

from dialerd.config import EngineConfig
from dialerd.core.quotas import Quotas
from dialerd.insight import DialingState
from dialerd.model import NIL_UUID, Campaign
from dialerd.queues import QueueRef, QueueRegistry
from dialerd.scheduler.allowance import Allowance
from dialerd.scheduler.calls import Calls
from dialerd.scheduler.shared import SharedState
from dialerd.scheduler.sharing import CallSharing, no_quotas
from tests.fakes.clock import FakeClock
from tests.fakes.engine import scheduler_ports
from tests.fakes.telephony import FixedQueue

CUSTOMER = "5e4a0680-804e-11ec-98a7-2fea5968d85b"
QUEUE = "0d4c1e0a-0000-4000-8000-000000000001"
EPOCH_TEXT = "2026-01-05T09:00:00.000000Z"


def campaign(*, queue_id: str = NIL_UUID) -> Campaign:
    return Campaign.fresh(CUSTOMER, EPOCH_TEXT, queue_id=queue_id)


def no_neighbours(queue_id: str) -> tuple[Iterable[Campaign], Iterable[Campaign]]:
    return [], []


async def never_invalid(campaign: Campaign, why: str) -> None:
    raise AssertionError(why)


def allowance_of(shared: SharedState, *, quotas: Quotas | None = None) -> Allowance:
    calls = Calls(shared, fence=lambda _: None, runs=lambda _: True, wake=lambda _: None)
    sharing = CallSharing(
        shared,
        calls.view,
        runs=lambda _: True,
        quotas_of=(lambda _: quotas) if quotas else no_quotas,
    )
    return Allowance(
        shared,
        attempts=calls.view,
        measures=calls.measures,
        sharing=sharing,
        neighbours=no_neighbours,
        stop_invalid=never_invalid,
    )


async def test_the_rate_budget_spent_by_a_tick_refills_with_time() -> None:
    clock = FakeClock()
    shared = scheduler_ports(clock, config=EngineConfig(max_attempts_per_second=3.0))
    allowance = allowance_of(shared)
    agentless = campaign()

    assert await allowance(agentless) == 3
    allowance.spent(agentless, 3, 3, claimed=True)
    assert await allowance(agentless) == 0
    await clock.advance(1.0)
    assert await allowance(agentless) == 3


async def test_a_queue_that_cannot_be_read_holds_the_campaign_with_the_reason() -> None:
    clock = FakeClock()
    queue = FixedQueue(available=5)
    queue.reachable = False
    queues = QueueRegistry([QueueRef(id=QUEUE, customer_id=CUSTOMER, name="sales")])
    allowance = allowance_of(scheduler_ports(clock, queue=queue, queues=queues))
    on_queue = campaign(queue_id=QUEUE)

    assert await allowance(on_queue) == 0
    held = allowance.view(on_queue.id)
    assert held is not None
    assert (held.held_by, held.detail) == (
        DialingState.QUEUE_UNREACHABLE,
        "queue manager unreachable",
    )

    queue.reachable = True
    assert await allowance(on_queue) > 0
    held = allowance.view(on_queue.id)
    assert held is not None
    assert held.available_agents == 5


async def test_a_customer_rate_quota_holds_the_campaign_once_spent() -> None:
    clock = FakeClock()
    allowance = allowance_of(scheduler_ports(clock), quotas=Quotas(calls_per_second=2.0))
    agentless = campaign()

    assert await allowance(agentless) == 2
    allowance.spent(agentless, 2, 2, claimed=True)
    assert await allowance(agentless) == 0
    held = allowance.view(agentless.id)
    assert held is not None
    assert held.held_by == DialingState.RATE_CEILING


async def test_a_forgotten_campaign_has_no_pacing_state() -> None:
    allowance = allowance_of(scheduler_ports(FakeClock()))
    agentless = campaign()
    await allowance(agentless)
    assert allowance.view(agentless.id) is not None
    allowance.forget(agentless.id)
    assert allowance.view(agentless.id) is None
