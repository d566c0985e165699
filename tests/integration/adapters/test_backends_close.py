"""The daemon's backends closed by a stop that cancels the close: every connection goes."""

from __future__ import annotations

import uuid
from pathlib import Path

import anyio
import redis.asyncio

from dialerd.config import decode_config
from dialerd.service.backends import Backends
from dialerd.service.clock import SystemClock
from dialerd.store.sqlite import SqliteStore


async def connections_named(admin: redis.asyncio.Redis, name: str) -> int:
    """The connections the server has open whose client name is ``name``."""
    clients = await admin.client_list()
    return sum(client.get("name") == name for client in clients)


async def test_a_stop_that_cancels_the_backends_close_still_closes_every_connection(
    tmp_path: Path, redis_url: str
) -> None:
    # The queue adapter's connections carry a name of this test's own: other tests'
    # clients of the same server are not counted.
    name = f"backends-close-{uuid.uuid4().hex[:8]}"
    config = decode_config(
        f'[queue]\nbackend = "redis"\n[queue.redis]\nurl = "{redis_url}?client_name={name}"\n'
    )
    # The store is not opened: building and closing the backends needs none.
    backends = Backends(config, SystemClock(), tmp_path, SqliteStore(tmp_path / "d.sqlite3"))
    admin = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    try:
        async with anyio.create_task_group() as task_group:
            await backends.start(task_group)
            # Reads at once: the pool opens a connection for each.
            async with anyio.create_task_group() as reads:
                for n in range(5):
                    reads.start_soon(backends.queue.available_agents, f"sales-{n}")
            assert await connections_named(admin, name) >= 2
            # The daemon's stop cancels the scope its clean-up runs in.
            with anyio.CancelScope() as stopping:
                stopping.cancel()
                await backends.close()
            assert await connections_named(admin, name) == 0
            task_group.cancel_scope.cancel()
    finally:
        await admin.aclose()
