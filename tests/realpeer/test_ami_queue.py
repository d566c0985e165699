"""AsteriskQueue against the real rig: counts follow pauses and device states at once,
queues known and unknown, and AMI away is QueueUnavailable."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from dialerd import metrics
from dialerd.adapters.asterisk.ami import AmiClient
from dialerd.adapters.asterisk.ami_queue import AsteriskQueue
from dialerd.ports import HangupReason, QueueUnavailable
from tests.realpeer.harness import eventually, origination, running, telephony
from tests.realpeer.rig import Rig

# A registry of every dialerd family, as the daemon makes one for /metrics.
REGISTRY = metrics.create_registry()
pytestmark = pytest.mark.realpeer


@asynccontextmanager
async def queue_adapter(rig: Rig, **overrides: Any) -> AsyncIterator[AsteriskQueue]:
    settings: dict[str, Any] = {
        "host": rig.ami_host,
        "port": rig.ami_port,
        "username": rig.ami_user,
        "secret": rig.ami_secret,
        "events": "agent",
        "connect_timeout": 2.0,
        "request_timeout": 2.0,
    }
    settings.update(overrides)
    client = AmiClient(**settings)
    queue = AsteriskQueue(client)
    client.on_event = queue.on_event
    async with anyio.create_task_group() as task_group:
        await task_group.start(client.run)
        yield queue
        task_group.cancel_scope.cancel()


async def test_available_agents_follow_pause_and_device_state(fresh_rig: Rig) -> None:
    async with queue_adapter(fresh_rig) as queue:
        assert queue.ami.unavailable_reason() is None
        assert await queue.available_agents("sales") == 2
        assert await queue.available_agents("support") == 1
        fresh_rig.pause("sales", "agent1")
        assert await queue.available_agents("sales") == 1
        fresh_rig.set_agent_state("agent2", "INUSE")
        assert await queue.available_agents("sales") == 0
        fresh_rig.pause("sales", "agent1", paused=False)
        assert await queue.available_agents("sales") == 1
        fresh_rig.set_agent_state("agent2", "NOT_INUSE")
        assert await queue.available_agents("sales") == 2
        fresh_rig.set_agent_state("agent3", "UNAVAILABLE")
        assert await queue.available_agents("support") == 0


async def test_has_queue(rig: Rig) -> None:
    async with queue_adapter(rig) as queue:
        assert await queue.has_queue("sales")
        assert not await queue.has_queue("nosuch")
        assert await queue.available_agents("nosuch") == 0


async def test_ami_away_is_queue_unavailable(rig: Rig) -> None:
    async with queue_adapter(rig, port=1) as queue:
        reason = queue.ami.unavailable_reason() or ""
        assert "AMI at 127.0.0.1:1" in reason
        with pytest.raises(QueueUnavailable, match="'sales'"):
            await queue.available_agents("sales")
        with pytest.raises(QueueUnavailable):
            await queue.has_queue("sales")


async def test_wrong_secret_is_refused_without_showing_it(rig: Rig) -> None:
    async with queue_adapter(rig, secret="not-the-secret") as queue:
        reason = queue.ami.unavailable_reason() or ""
        assert "refused" in reason
        assert "not-the-secret" not in reason


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_queue_events_of_our_calls_feed_the_metrics(fresh_rig: Rig) -> None:
    waits = sample("dialerd_queue_wait_seconds_count", queue="sales")
    abandoned = sample("dialerd_queue_callers_abandoned_total", queue="sales")
    async with queue_adapter(fresh_rig) as queue, running(telephony(fresh_rig)) as calls:
        del queue
        call = origination("answer-0", queue="sales")
        await calls.backend.originate(call)
        await calls.answered(call.campaigncall_id)
        await eventually(
            lambda: sample("dialerd_queue_wait_seconds_count", queue="sales") > waits,
            what="AgentConnect",
        )
        await calls.backend.hangup(call.campaigncall_id)
        await calls.ended(call.campaigncall_id)
        for agent in ("agent1", "agent2"):
            fresh_rig.pause("sales", agent)
        # The callee hangs up while waiting: the queue's caller abandoned.
        gone = origination("hangup-500", queue="sales")
        await calls.backend.originate(gone)
        await calls.answered(gone.campaigncall_id)
        assert (await calls.ended(gone.campaigncall_id)).reason == HangupReason.ABANDONED
        await eventually(
            lambda: sample("dialerd_queue_callers_abandoned_total", queue="sales") > abandoned,
            what="QueueCallerAbandon",
        )
