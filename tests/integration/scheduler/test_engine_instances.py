"""Two engines sharing one Redis store: one owner per campaign, takeover when it dies."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup

from dialerd.campaigns import CampaignService
from dialerd.config import EngineConfig
from dialerd.model import CampaignStatus
from dialerd.service.clock import SystemClock
from dialerd.store.base import Fence
from dialerd.store.redis import RedisStore
from tests.fakes.engine import build_engine
from tests.fakes.telephony import FixedQueue, ScriptedCalls
from tests.integration.conftest import Factory, queues_of, tel
from tests.integration.scheduler.engine_harness import CUSTOMER

WAIT_SECONDS = 10.0
LEASE_TTL = 1.0


async def eventually(condition: Callable[[], bool], seconds: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await anyio.sleep(0.02)


class Instance:
    """One dialerd engine with its own connection pool and its own telephony backend."""

    def __init__(self, redis_url: str, name: str) -> None:
        self.store = RedisStore(url=redis_url, prefix="shared", pool_size=8, timeout=2.0)
        self.calls = ScriptedCalls(name)
        self.engine = build_engine(
            self.store,
            SystemClock(),
            queues=queues_of(CUSTOMER),
            queue=FixedQueue(available=2),
            telephony=self.calls,
            flows=ScriptedCalls(f"{name}-flows"),
            config=EngineConfig(tick_interval=0.1, lease_ttl=LEASE_TTL),
            owner=name,
        )
        self.scope = anyio.CancelScope()

    async def run(self, task_group: TaskGroup) -> None:
        await self.store.open()

        async def serve() -> None:
            with self.scope:
                await self.engine.run()

        task_group.start_soon(serve)

    def die(self) -> None:
        """Stop at once, like kill -9: no lease is given back."""

        async def keep(fence: Fence) -> None:
            return None

        self.store.release_lease = keep  # type: ignore[method-assign]
        self.scope.cancel()


async def test_one_instance_dials_a_campaign_and_another_takes_over_when_it_dies(
    tmp_path: Path, redis_url: str
) -> None:
    first, second = Instance(redis_url, "first"), Instance(redis_url, "second")
    make = Factory()
    store = first.store
    async with anyio.create_task_group() as task_group:
        await first.run(task_group)
        await second.run(task_group)
        outplan = await store.create_outplan(make.outplan(CUSTOMER, max_try_counts=(2, 0, 0, 0, 0)))
        outdial = await store.create_outdial(make.outdial(CUSTOMER))
        await store.create_targets(
            [make.target(outdial.id, tel(f"+1555300{n:04d}")) for n in range(6)]
        )
        campaign = await store.create_campaign(
            make.campaign(CUSTOMER, outplan_id=outplan.id, outdial_id=outdial.id)
        )
        await first.engine.control.run(CUSTOMER, campaign.id)
        await eventually(lambda: len(first.calls.originated) + len(second.calls.originated) == 2)
        await anyio.sleep(0.5)  # both instances tick several times meanwhile
        owners = [i for i in (first, second) if i.calls.originated]
        assert len(owners) == 1, "two instances dialed one campaign"
        owner = owners[0]
        other = second if owner is first else first
        assert len(owner.calls.originated) == 2

        dead_calls = [call.campaigncall_id for call in owner.calls.originated]
        owner.die()
        started = time.monotonic()
        await eventually(lambda: len(other.calls.originated) == 2)
        assert time.monotonic() - started < LEASE_TTL + 2.0
        # The dead owner's attempts were ended as lost before anything new was dialed.
        for call_id in dead_calls:
            stored = await other.store.get_campaigncall(CUSTOMER, call_id)
            assert stored is not None
            assert (stored.status, stored.reason) == ("done", "lost")
        assert len(await other.store.active_attempts(campaign.id)) == 2
        stored_campaign = await other.store.get_campaign(None, campaign.id)
        assert stored_campaign is not None
        assert stored_campaign.status == CampaignStatus.RUN
        task_group.cancel_scope.cancel()
    await first.store.close()
    await second.store.close()


async def test_an_edit_on_one_instance_while_another_stops_never_restarts_the_campaign(
    redis_url: str,
) -> None:
    # Two instances' control paths on one Redis, each with its own (in-process) locks.
    editor_store = RedisStore(url=redis_url, prefix="shared", pool_size=4, timeout=2.0)
    stopper_store = RedisStore(url=redis_url, prefix="shared", pool_size=4, timeout=2.0)
    await editor_store.open()
    await stopper_store.open()
    try:
        clock = SystemClock()
        editor = CampaignService(editor_store, clock, queues=queues_of(CUSTOMER))
        stopper = CampaignService(stopper_store, clock, queues=queues_of(CUSTOMER))
        make = Factory()
        outplan = await editor_store.create_outplan(make.outplan(CUSTOMER))
        outdial = await editor_store.create_outdial(make.outdial(CUSTOMER))
        campaign = await editor_store.create_campaign(
            make.campaign(CUSTOMER, outplan_id=outplan.id, outdial_id=outdial.id)
        )
        await editor.run(CUSTOMER, campaign.id)
        write = editor_store.update_campaign
        stops = 0

        async def stop_in_between(*args: Any, **kwargs: Any) -> Any:
            # The other instance stores a stop after this one read the campaign, before
            # it writes its edit back.
            nonlocal stops
            if stops == 0:
                stops += 1
                await stopper.stop(CUSTOMER, campaign.id)
            return await write(*args, **kwargs)

        editor_store.update_campaign = stop_in_between  # type: ignore[method-assign]
        edited = await editor.edit(CUSTOMER, campaign.id, name="renamed")

        stored = await stopper_store.get_campaign(CUSTOMER, campaign.id)
        assert stored is not None
        assert stored.status == CampaignStatus.STOP
        assert (edited.name, stored.name) == ("renamed", "renamed")
    finally:
        await editor_store.close()
        await stopper_store.close()
