"""A running engine on a real SQLite store, a fake clock and scripted backends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import msgspec

from dialerd.campaigns import CampaignService
from dialerd.config import EngineConfig
from dialerd.core.fair_share import Ceiling
from dialerd.core.quotas import Quotas
from dialerd.core.targets import CallingRules
from dialerd.model import (
    NIL_UUID,
    Campaign,
    Campaigncall,
    CampaignStatus,
    CampaignType,
    EndHandle,
    OutdialTarget,
    Outplan,
)
from dialerd.scheduler import Engine
from dialerd.store import Store
from dialerd.store.sqlite import SqliteStore
from tests.fakes.clock import FakeClock, settle
from tests.fakes.engine import build_engine
from tests.fakes.store import InFlight
from tests.fakes.telephony import FixedQueue, ScriptedCalls
from tests.integration.conftest import EPOCH, Factory, StoreMaker, queue_of, queues_of, tel

CUSTOMER = "5e4a0680-804e-11ec-98a7-2fea5968d85b"


@dataclass
class World:
    """Everything a rule test drives and inspects."""

    store: Store
    clock: FakeClock
    calls: ScriptedCalls
    flows: ScriptedCalls
    queue: FixedQueue
    engine: Engine
    control: CampaignService
    make: Factory
    # True while a store call waits on a socket (a Redis store): not settled yet.
    store_busy: Callable[[], bool] | None = None

    async def advance(self, seconds: float) -> None:
        """Let campaign time pass, every tick and wake-up on the way running in order."""
        await self.clock.advance(seconds, busy=self.store_busy)
        await settle(busy=self.store_busy)

    async def campaign(
        self,
        *,
        targets: int | Sequence[OutdialTarget] = 1,
        max_try_counts: Sequence[int] = (1, 0, 0, 0, 0),
        try_interval_ms: int = 0,
        dial_timeout_ms: int = 30_000,
        service_level: int = 100,
        queue: bool | str = True,
        end_handle: EndHandle = EndHandle.STOP,
        type: CampaignType = CampaignType.CALL,
        next_campaign_id: str = NIL_UUID,
        customer: str = CUSTOMER,
    ) -> tuple[Campaign, Outplan, list[OutdialTarget]]:
        """Store an outplan, an outdial with targets and a stopped campaign using them.

        ``queue``: the test queue ``sales`` (True), another one by name, or none (False).
        """
        outplan = msgspec.structs.replace(
            self.make.outplan(
                customer, max_try_counts=max_try_counts, try_interval=try_interval_ms
            ),
            dial_timeout=dial_timeout_ms,
        )
        await self.store.create_outplan(outplan)
        outdial = await self.store.create_outdial(self.make.outdial(customer))
        if isinstance(targets, int):
            rows = [
                self.make.target(outdial.id, tel(f"+1555000{n:04d}"), name=f"t{n}")
                for n in range(targets)
            ]
        else:
            rows = [msgspec.structs.replace(t, outdial_id=outdial.id) for t in targets]
        await self.store.create_targets(rows)
        campaign = msgspec.structs.replace(
            self.make.campaign(customer, outplan_id=outplan.id, outdial_id=outdial.id, type=type),
            service_level=service_level,
            end_handle=end_handle,
            queue_id=queue_of(customer, queue)
            if isinstance(queue, str)
            else queue_of(customer)
            if queue
            else NIL_UUID,
            next_campaign_id=next_campaign_id,
        )
        await self.store.create_campaign(campaign)
        return campaign, outplan, rows

    async def run(self, campaign: Campaign) -> None:
        await self.control.run(campaign.customer_id, campaign.id)
        await settle(busy=self.store_busy)

    async def stop(self, campaign: Campaign) -> None:
        await self.control.stop(campaign.customer_id, campaign.id)
        await settle(busy=self.store_busy)

    async def status(self, campaign: Campaign) -> CampaignStatus:
        stored = await self.store.get_campaign(None, campaign.id)
        assert stored is not None
        return stored.status

    async def calls_of(self, campaign: Campaign) -> list[Campaigncall]:
        """Every campaigncall of the campaign, oldest first (same instant: by slot and try)."""
        found: list[Campaigncall] = []
        token = ""
        while True:
            page = await self.store.list_campaigncalls(CUSTOMER, campaign.id, 100, token)
            found.extend(page.result)
            if not page.next_page_token:
                return sorted(
                    found,
                    key=lambda call: (call.tm_create, call.destination_index, call.try_count),
                )
            token = page.next_page_token

    async def target(self, target: OutdialTarget) -> OutdialTarget:
        stored = await self.store.get_target(target.outdial_id, target.id)
        assert stored is not None
        return stored


@asynccontextmanager
async def running_engine(
    tmp_path: Path,
    *,
    store: Store | None = None,
    owner: str | None = None,
    calling_rules: CallingRules | None = None,
    epoch: datetime = EPOCH,
    ceiling: Ceiling | None = None,
    quotas_of: Callable[[str], Quotas] | None = None,
    **engine_config: Any,
) -> AsyncIterator[World]:
    """Start the engine on ``store`` (opened by the caller), else an empty SQLite store,
    with the fake clock at ``epoch``; stop it when the block ends."""
    config = EngineConfig(**{"stop_grace": 30.0, **engine_config})
    own_store = store is None
    if store is None:
        store = SqliteStore(tmp_path / "dialerd.sqlite3")
        await store.open()
    busy: Callable[[], bool] | None = None
    if store.backend != "sqlite":
        # Its calls wait on a socket, which settle() cannot see: count them.
        store = counted = InFlight(store)  # type: ignore[assignment]
        busy = counted.busy
    clock = FakeClock(epoch)
    calls, flows = ScriptedCalls(clock=clock), ScriptedCalls("scripted-flows", clock)
    queue = FixedQueue()
    engine = build_engine(
        store,
        clock,
        config=config,
        telephony=calls,
        flows=flows,
        queue=queue,
        queues=queues_of(CUSTOMER),
        owner=owner,
        calling_rules=calling_rules,
        ceiling=ceiling,
        quotas_of=quotas_of,
    )
    world = World(store, clock, calls, flows, queue, engine, engine.control, Factory(), busy)
    try:
        async with anyio.create_task_group() as task_group:
            await task_group.start(engine.run)
            await settle(busy=busy)
            yield world
            task_group.cancel_scope.cancel()
    finally:
        if own_store:
            await store.close()


@asynccontextmanager
async def engine_on(
    new_store: StoreMaker,
    tmp_path: Path,
    *,
    calling_rules: CallingRules | None = None,
    epoch: datetime = EPOCH,
    ceiling: Ceiling | None = None,
    quotas_of: Callable[[str], Quotas] | None = None,
    **engine_config: Any,
) -> AsyncIterator[World]:
    """The engine on a fresh, opened store of the test's backend (``new_store``)."""
    store = new_store()
    await store.open()
    try:
        async with running_engine(
            tmp_path,
            store=store,
            calling_rules=calling_rules,
            epoch=epoch,
            ceiling=ceiling,
            quotas_of=quotas_of,
            **engine_config,
        ) as world:
            yield world
    finally:
        await store.close()
