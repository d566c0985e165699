"""The engine while its Redis store is unreachable: no blind dialing, no lost outcomes."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import msgspec
import pytest

from dialerd.config import EngineConfig
from dialerd.model import CampaigncallStatus
from dialerd.ports import HangupReason
from dialerd.service.clock import SystemClock
from dialerd.store.redis import RedisStore
from tests.conftest import RedisServer
from tests.fakes.engine import build_engine
from tests.fakes.telephony import FixedQueue, ScriptedCalls
from tests.integration.conftest import Factory, queues_of, tel
from tests.integration.scheduler.engine_harness import CUSTOMER

WAIT_SECONDS = 10.0


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone, since the test freezes it."""
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = RedisServer(workdir)
    yield server
    assert server.process is not None
    server.process.send_signal(signal.SIGCONT)
    server.stop()


async def eventually(condition: Callable[[], bool], seconds: float = WAIT_SECONDS) -> None:
    """Wait (bounded) until ``condition()`` holds."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await anyio.sleep(0.02)


async def test_outcomes_during_a_store_outage_are_written_when_it_returns(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    store = RedisStore(url=private_redis.url, prefix="outage", pool_size=8, timeout=0.3)
    await store.open()
    calls, queue = ScriptedCalls(), FixedQueue(available=2)
    engine = build_engine(
        store,
        SystemClock(),
        queues=queues_of(CUSTOMER),
        queue=queue,
        telephony=calls,
        flows=ScriptedCalls("flows"),
        config=EngineConfig(tick_interval=0.1),
    )
    make = Factory()
    outplan = await store.create_outplan(make.outplan(CUSTOMER, max_try_counts=(2, 0, 0, 0, 0)))
    outdial = await store.create_outdial(make.outdial(CUSTOMER))
    await store.create_targets(
        [make.target(outdial.id, tel(f"+1555200{n:04d}")) for n in range(10)]
    )
    campaign = await store.create_campaign(
        make.campaign(CUSTOMER, outplan_id=outplan.id, outdial_id=outdial.id)
    )
    assert private_redis.process is not None
    try:
        async with anyio.create_task_group() as task_group:
            await task_group.start(engine.run)
            await engine.control.run(CUSTOMER, campaign.id)
            await eventually(lambda: len(calls.originated) == 2)
            first = [call.campaigncall_id for call in calls.originated]

            private_redis.process.send_signal(signal.SIGSTOP)
            for call_id in first:
                await calls.end(call_id, HangupReason.BUSY)
            # Watched for 1.5 s: the scope ends the wait (the wait's own limit is longer,
            # so a loaded machine cannot make it fail first).
            with anyio.move_on_after(1.5):
                await eventually(lambda: len(calls.originated) > 2, seconds=WAIT_SECONDS)
            # Two agents are free, but nothing is dialed while the store is away.
            assert len(calls.originated) == 2

            private_redis.process.send_signal(signal.SIGCONT)
            returned = time.monotonic()
            await eventually(lambda: len(calls.originated) >= 4)
            assert time.monotonic() - returned < 5.0
            for call_id in first:
                stored = await store.get_campaigncall(CUSTOMER, call_id)
                assert stored is not None
                assert (stored.status, stored.reason) == (CampaigncallStatus.DONE, "busy")
            task_group.cancel_scope.cancel()
    finally:
        private_redis.process.send_signal(signal.SIGCONT)
        await store.close()


async def test_a_dial_timeout_during_an_outage_is_written_when_the_store_returns(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    store = RedisStore(url=private_redis.url, prefix="timeout", pool_size=8, timeout=0.3)
    await store.open()
    calls = ScriptedCalls()
    engine = build_engine(
        store,
        SystemClock(),
        queues=queues_of(CUSTOMER),
        queue=FixedQueue(available=1),
        telephony=calls,
        flows=ScriptedCalls("flows"),
        config=EngineConfig(tick_interval=0.1),
    )
    make = Factory()
    outplan = await store.create_outplan(
        msgspec.structs.replace(make.outplan(CUSTOMER), dial_timeout=500)
    )
    outdial = await store.create_outdial(make.outdial(CUSTOMER))
    await store.create_targets([make.target(outdial.id, tel("+15552009999"))])
    campaign = await store.create_campaign(
        make.campaign(CUSTOMER, outplan_id=outplan.id, outdial_id=outdial.id)
    )
    assert private_redis.process is not None
    try:
        async with anyio.create_task_group() as task_group:
            await task_group.start(engine.run)
            await engine.control.run(CUSTOMER, campaign.id)
            await eventually(lambda: len(calls.originated) == 1)
            call_id = calls.originated[0].campaigncall_id
            private_redis.process.send_signal(signal.SIGSTOP)
            # The timeout fires while the store is away: the engine keeps running.
            await eventually(lambda: calls.cancelled == [call_id])
            private_redis.process.send_signal(signal.SIGCONT)

            async def ended() -> bool:
                stored = await store.get_campaigncall(CUSTOMER, call_id)
                return stored is not None and stored.reason == "no_answer"

            deadline = time.monotonic() + WAIT_SECONDS
            while not await ended():
                assert time.monotonic() < deadline, "the expired attempt was never written"
                await anyio.sleep(0.05)
            task_group.cancel_scope.cancel()
    finally:
        private_redis.process.send_signal(signal.SIGCONT)
        await store.close()
