"""The one place tests and benchmarks wire an ``Engine`` (the daemon wires its own).

``build_engine`` takes the store and clock the caller made, and whatever backends the
test or benchmark drives; what it is not given it makes: scripted telephony and flows
and a fixed queue (``tests.fakes.telephony``), the test customer's queue registry is the
caller's. ``sim_engine`` is the same on a simulated call centre, its flows run by the
real action flow runner. Benchmarks import test fakes only through this module (the
fake clock is re-exported here for them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from dialerd.adapters.action_services import ActionServices
from dialerd.adapters.flow_runner import ActionFlowRunner
from dialerd.adapters.sim import SimCallCentre
from dialerd.campaigns import CampaignService
from dialerd.config import EngineConfig
from dialerd.core.abandonment import AbandonmentPolicy
from dialerd.core.fair_share import Ceiling
from dialerd.core.quotas import Quotas
from dialerd.core.targets import CallingRules
from dialerd.ports import Clock, FlowRunner, QueueAdapter, Telephony
from dialerd.queues import QueueRegistry
from dialerd.scheduler import Engine
from dialerd.scheduler.shared import SharedState
from dialerd.store import Store
from tests.fakes.clock import FakeClock as FakeClock
from tests.fakes.telephony import FixedQueue, ScriptedCalls


def build_engine(
    store: Store,
    clock: Clock,
    *,
    config: EngineConfig | None = None,
    telephony: Telephony | None = None,
    flows: FlowRunner | None = None,
    queue: QueueAdapter | None = None,
    queues: QueueRegistry | None = None,
    owner: str | None = None,
    calling_rules: CallingRules | None = None,
    abandonment: Callable[[str], AbandonmentPolicy] | None = None,
    ceiling: Ceiling | None = None,
    quotas_of: Callable[[str], Quotas] | None = None,
) -> Engine:
    """An engine on ``store`` and ``clock``; scripted backends where none is given."""
    return Engine(
        store=store,
        queue=queue if queue is not None else FixedQueue(),
        queues=queues,
        telephony=telephony if telephony is not None else ScriptedCalls(clock=clock),
        flows=flows if flows is not None else ScriptedCalls("scripted-flows", clock),
        clock=clock,
        config=config or EngineConfig(),
        owner=owner,
        calling_rules=(lambda customer_id: calling_rules) if calling_rules else None,
        abandonment=abandonment,
        ceiling=ceiling,
        quotas_of=quotas_of,
    )


def sim_engine(
    store: Store,
    clock: Clock,
    centre: SimCallCentre,
    *,
    config: EngineConfig | None = None,
    services: ActionServices | None = None,
    queues: QueueRegistry | None = None,
    abandonment: Callable[[str], AbandonmentPolicy] | None = None,
) -> Engine:
    """An engine on a simulated call centre; flows run by ``ActionFlowRunner`` over
    ``services`` (by default the store's own, without webhooks)."""
    return build_engine(
        store,
        clock,
        config=config,
        telephony=centre.telephony,
        flows=ActionFlowRunner(services or ActionServices(store, clock), clock),
        queue=centre.queue,
        queues=queues,
        abandonment=abandonment,
    )


class NoStore:
    """A store no part under test may reach: a unit test of a scheduler part runs
    only paths that need no store, and fails loudly if one is reached."""

    backend = "none"
    # Asked before every tick: a store that never fails over.
    failed_over = False

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the part under test asked the store for {name}")


def scheduler_ports(
    clock: Clock,
    *,
    config: EngineConfig | None = None,
    telephony: Telephony | None = None,
    queue: QueueAdapter | None = None,
    queues: QueueRegistry | None = None,
) -> SharedState:
    """The ports a scheduler part is built on, over the fakes and no store (unit tests
    of one part)."""
    queue = queue if queue is not None else FixedQueue()
    store = cast(Store, NoStore())
    queues = queues if queues is not None else QueueRegistry()
    return SharedState(
        store=store,
        queue=queue,
        queues=queues,
        telephony=telephony if telephony is not None else ScriptedCalls(clock=clock),
        flows=ScriptedCalls("scripted-flows", clock),
        clock=clock,
        config=config or EngineConfig(),
        control=CampaignService(store, clock, queues=queues, queue_adapter=queue),
        owner="unit",
    )
