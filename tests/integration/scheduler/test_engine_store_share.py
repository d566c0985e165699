"""The engine's store calls take at most its share of a Redis pool: however many
campaigns tick at once, the API still finds a connection, and no tick fails because
the pool ran dry (``dialerd.scheduler.store_share``)."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any

import anyio
import msgspec
import structlog

from dialerd.config import EngineConfig
from dialerd.model import new_id
from dialerd.queues import QueueRef, QueueRegistry
from dialerd.scheduler.store_share import engine_share
from dialerd.service.clock import SystemClock
from dialerd.store.redis import RedisStore
from tests.fakes.engine import build_engine
from tests.fakes.telephony import FixedQueue, ScriptedCalls
from tests.integration.conftest import Factory, tel
from tests.integration.scheduler.engine_harness import CUSTOMER

WAIT_SECONDS = 10.0
CAMPAIGNS = 20
# 2 of them held for the script calls: 6 for any call, 5 of them the engine's.
POOL_SIZE = 8


async def eventually(condition: Callable[[], bool], seconds: float = WAIT_SECONDS) -> None:
    """Wait (bounded) until ``condition()`` holds."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await anyio.sleep(0.02)


class Hogging:
    """The engine's store, whose calls (while ``holding``) each take a connection of
    the store's pool and keep it until ``let_go()``, before they go on: calls whose
    replies wait on a busy event loop hold theirs so."""

    def __init__(self, store: RedisStore) -> None:
        self._store = store
        self.holding = False
        self.held = 0
        self.most_held = 0
        self.after = 0
        self._let_go = anyio.Event()

    def let_go(self) -> None:
        self.holding = False
        self._let_go.set()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute

        async def hogging(*args: Any, **kwargs: Any) -> Any:
            if self.holding:
                pool = self._store._connected().connection_pool
                connection = await pool.get_connection()
                self.held += 1
                self.most_held = max(self.most_held, self.held)
                try:
                    await self._let_go.wait()
                finally:
                    self.held -= 1
                    await pool.release(connection)
            elif self._let_go.is_set():
                self.after += 1
            return await attribute(*args, **kwargs)

        return hogging


async def test_the_api_finds_a_connection_while_the_engine_holds_all_it_may(
    redis_url: str,
) -> None:
    store = RedisStore(url=redis_url, prefix="share", pool_size=POOL_SIZE, timeout=0.5)
    await store.open()
    # A queue each (campaigns on one queue claim one at a time), none with an agent
    # free: nothing is dialed, and every tick reads its campaign, a store call.
    queues = [QueueRef(id=new_id(), customer_id=CUSTOMER, name=f"q{n}") for n in range(CAMPAIGNS)]
    queue = FixedQueue(available=0)
    queue.known = {ref.name for ref in queues}
    engine = build_engine(
        store,
        SystemClock(),
        queues=QueueRegistry(queues),
        queue=queue,
        telephony=ScriptedCalls(),
        flows=ScriptedCalls("flows"),
        config=EngineConfig(tick_interval=0.1),
    )
    # The engine's calls go through it; the API's (engine.control's, the store's own)
    # do not.
    hog = Hogging(store)
    engine.store = hog  # type: ignore[assignment]
    make = Factory()
    outplan = await store.create_outplan(make.outplan(CUSTOMER))
    outdial = await store.create_outdial(make.outdial(CUSTOMER))
    await store.create_targets([make.target(outdial.id, tel("+15552000001"))])
    campaigns = [
        await store.create_campaign(
            msgspec.structs.replace(
                make.campaign(CUSTOMER, outplan_id=outplan.id, outdial_id=outdial.id),
                queue_id=ref.id,
            )
        )
        for ref in queues
    ]
    try:
        with structlog.testing.capture_logs() as logs:
            async with anyio.create_task_group() as task_group:
                await task_group.start(engine.run)
                for campaign in campaigns:
                    await engine.control.run(CUSTOMER, campaign.id)
                await eventually(lambda: engine.running_campaigns == CAMPAIGNS)

                hog.holding = True
                share = engine_share(store.concurrent_calls)
                assert share == 5
                await eventually(lambda: hog.held >= share)
                # The API's read, while twenty loops want the store: answered at once
                # from the connections kept for it.
                read = await store.get_campaign(CUSTOMER, campaigns[0].id)
                assert read is not None
                assert read.id == campaigns[0].id
                assert hog.most_held == share

                # The engine's other calls waited their turn: each loop goes on.
                hog.let_go()
                await eventually(lambda: hog.after >= 2 * CAMPAIGNS)
                task_group.cancel_scope.cancel()
    finally:
        await store.close()
    assert [entry for entry in logs if entry["event"] == "campaign tick failed"] == []
