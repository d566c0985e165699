"""The telephony backend, flow runner and queue adapter chosen by configuration.

The daemon builds one ``Backends`` and starts it inside its task group before the
engine; adapters that hold connections (a Redis pool, an AMI session) are opened there
and closed when the daemon stops.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

from anyio.abc import TaskGroup

from dialerd.adapters.redis_queue import RedisQueue
from dialerd.adapters.sim import SimCallCentre
from dialerd.config import Config
from dialerd.ports import Clock, FlowRunner, QueueAdapter, Telephony


class Backends:
    """What the engine dials through and reads agents from."""

    def __init__(self, config: Config, clock: Clock, state_dir: Path) -> None:
        ledger = Path(config.sim.ledger) if config.sim.ledger else None
        if ledger is not None and not ledger.is_absolute():
            ledger = state_dir / ledger
        # The simulated centre always exists: it runs flow campaigns, and the sim
        # backends when configured.
        self.sim = SimCallCentre(config.sim, clock, ledger_path=ledger)
        self.telephony: Telephony = self.sim.telephony
        self.flows: FlowRunner = self.sim.flows
        self.queue: QueueAdapter = self.sim.queue
        self._stack = AsyncExitStack()
        self.redis_queue: RedisQueue | None = None
        if config.queue.backend == "redis":
            redis = config.queue.redis
            self.redis_queue = RedisQueue(
                url=redis.url, prefix=redis.prefix, pool_size=redis.pool_size, timeout=redis.timeout
            )
            self.queue = self.redis_queue

    async def start(self, task_group: TaskGroup) -> None:
        """Open connections and start background work in ``task_group``."""
        del task_group  # no adapter runs a background task of its own yet
        if self.redis_queue is not None:
            await self.redis_queue.open()
            self._stack.push_async_callback(self.redis_queue.close)

    async def close(self) -> None:
        """Close what ``start`` opened, last opened first. Idempotent."""
        await self._stack.aclose()

    def reconfigure(self, config: Config) -> None:
        """Apply what can change while running (the simulated centre's parameters)."""
        self.sim.reconfigure(config.sim)
