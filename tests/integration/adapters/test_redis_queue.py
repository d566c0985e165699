"""The ``redis`` queue adapter against a real redis-server."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
import redis
import redis.asyncio
import redis.exceptions
from redis.typing import EncodableT, FieldT
from structlog.testing import capture_logs

from dialerd import metrics
from dialerd.adapters.redis_queue import RedisQueue, redact_url
from dialerd.ports import QueueUnavailable
from tests.conftest import RedisServer, free_port
from tests.integration.events.test_sender import until

# A registry of every dialerd family, as the daemon makes one for /metrics.
REGISTRY = metrics.create_registry()
QUEUE = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"


def queue_adapter(url: str, *, pool_size: int = 4, timeout: float = 2.0) -> RedisQueue:
    return RedisQueue(url=url, prefix="dtest", pool_size=pool_size, timeout=timeout)


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[RedisQueue]:
    adapter = queue_adapter(redis_url)
    await adapter.open()
    yield adapter
    await adapter.close()


@pytest.fixture
async def agents(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    """A plain client, standing in for the call centre that keeps agents' statuses."""
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A URL whose server accepts connections and never replies."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"redis://:s3cret@127.0.0.1:{listener.getsockname()[1]}/0"


def agent_states(queue: str) -> dict[str, float | None]:
    """``dialerd_queue_agents`` of ``queue`` by state, as exported now."""
    return {
        state: REGISTRY.get_sample_value("dialerd_queue_agents", {"queue": queue, "state": state})
        for state in metrics.AGENT_STATES
    }


async def test_only_available_agents_count(queue: RedisQueue, agents: redis.asyncio.Redis) -> None:
    statuses: dict[FieldT, EncodableT] = {
        "agent-1": "available",
        "agent-2": "away",
        "agent-3": "busy",
        "agent-4": "offline",
        "agent-5": "ringing",
        "agent-6": "available",
    }
    await agents.hset(f"dtest:queue:{QUEUE}:agents", mapping=statuses)
    assert await queue.available_agents(QUEUE) == 2
    # away is paused, ringing is busy (offered a call), an unknown status is offline.
    assert agent_states(QUEUE) == {
        "available": 2, "busy": 2, "wrap_up": 0, "paused": 1, "offline": 1
    }  # fmt: skip
    await agents.hset(f"dtest:queue:{QUEUE}:agents", "agent-3", "available")
    await agents.hset(f"dtest:queue:{QUEUE}:agents", "agent-7", "on-strike")
    assert await queue.available_agents(QUEUE) == 3
    assert agent_states(QUEUE) == {
        "available": 3, "busy": 1, "wrap_up": 0, "paused": 1, "offline": 2
    }  # fmt: skip


async def test_other_queues_and_prefixes_do_not_count(
    queue: RedisQueue, agents: redis.asyncio.Redis
) -> None:
    await agents.hset(f"dtest:queue:{QUEUE}:agents", "agent-1", "available")
    await agents.hset("dtest:queue:other:agents", "agent-2", "available")
    await agents.hset(f"elsewhere:queue:{QUEUE}:agents", "agent-3", "available")
    assert await queue.available_agents(QUEUE) == 1


async def test_a_missing_queue_has_no_agents_and_is_logged_once_until_it_appears(
    queue: RedisQueue, agents: redis.asyncio.Redis
) -> None:
    key = f"dtest:queue:{QUEUE}:agents"
    with capture_logs() as logs:
        for _ in range(3):
            assert await queue.available_agents(QUEUE) == 0
    assert logs == [
        {
            "event": "queue has no agents in redis; counting 0 available",
            "queue_name": QUEUE,
            "key": key,
            "log_level": "warning",
        }
    ]
    await agents.hset(key, "agent-1", "available")
    with capture_logs() as logs:
        assert await queue.available_agents(QUEUE) == 1
        await agents.delete(key)
        assert await queue.available_agents(QUEUE) == 0
        assert await queue.available_agents(QUEUE) == 0
    assert [entry["queue_name"] for entry in logs] == [QUEUE]


async def test_a_key_that_is_not_a_hash_is_reported(
    queue: RedisQueue, agents: redis.asyncio.Redis
) -> None:
    await agents.set(f"dtest:queue:{QUEUE}:agents", "oops")
    with pytest.raises(QueueUnavailable, match=f"'dtest:queue:{QUEUE}:agents' is not a hash"):
        await queue.available_agents(QUEUE)


async def test_many_concurrent_reads_share_a_small_pool(
    redis_url: str, agents: redis.asyncio.Redis
) -> None:
    await agents.hset(f"dtest:queue:{QUEUE}:agents", "agent-1", "available")
    adapter = queue_adapter(redis_url, pool_size=1)
    await adapter.open()
    counts: list[int] = []

    async def read() -> None:
        counts.append(await adapter.available_agents(QUEUE))

    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as task_group:
                for _ in range(20):
                    task_group.start_soon(read)
    finally:
        await adapter.close()
    assert counts == [1] * 20


async def test_an_unreachable_server_is_refused_at_open_without_the_password() -> None:
    """Open raises (the daemon waits for it at start, ``[queue.redis] start_wait``),
    caused by the connection error, and leaves nothing open."""
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    adapter = queue_adapter(url, timeout=1.0)
    with anyio.fail_after(5), pytest.raises(QueueUnavailable) as caught:
        await adapter.open()
    message = str(caught.value)
    assert "cannot be reached" in message
    assert redact_url(url) in message
    assert "s3cret" not in message
    assert isinstance(caught.value.__cause__, redis.exceptions.ConnectionError)
    with pytest.raises(QueueUnavailable, match="not open"):
        await adapter.available_agents(QUEUE)


async def test_a_refused_password_is_refused_at_open_as_an_authentication_error(
    tmp_path: Path,
) -> None:
    server = RedisServer(tmp_path)  # this test's own: a password is set on it
    try:
        with redis.Redis.from_url(server.url) as client:
            client.config_set("requirepass", "right")
        adapter = queue_adapter(server.url.replace("redis://", "redis://:wrong@"))
        with anyio.fail_after(5), pytest.raises(QueueUnavailable) as caught:
            await adapter.open()
    finally:
        server.stop()
    assert isinstance(caught.value.__cause__, redis.exceptions.AuthenticationError)
    assert "wrong" not in str(caught.value)


async def test_a_server_that_never_replies_times_out_at_open(silent_server: str) -> None:
    adapter = queue_adapter(silent_server, timeout=0.2)
    with anyio.fail_after(5), pytest.raises(QueueUnavailable, match="cannot be reached"):
        await adapter.open()


async def test_a_failed_try_at_open_leaves_no_connection_open(tmp_path: Path) -> None:
    """The connection is made and logged in, then the check fails (a user who may not
    run PING): the try is refused and its connection closed, as each try of
    ``[queue.redis] start_wait`` would otherwise leave one open."""
    server = RedisServer(tmp_path)
    try:
        with redis.Redis.from_url(server.url) as client:
            client.acl_setuser(
                "dialer", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-ping"]
            )
        url = server.url.replace("redis://", "redis://dialer:pw@")
        for _ in range(3):
            adapter = queue_adapter(url)
            with anyio.fail_after(5), pytest.raises(QueueUnavailable, match="cannot be reached"):
                await adapter.open()
        await until(lambda: server.clients() == 0, "every try's connection closed")
    finally:
        server.stop()


async def test_a_close_cut_by_a_cancellation_still_closes_every_connection(
    tmp_path: Path,
) -> None:
    """A stop that cancels the daemon while the adapter closes (or a cut open) still
    closes every pooled connection."""
    server = RedisServer(tmp_path)
    adapter = queue_adapter(server.url)
    try:
        await adapter.open()
        async with anyio.create_task_group() as group:
            for _ in range(3):
                group.start_soon(adapter.available_agents, QUEUE)
        assert server.clients() == 3
        with anyio.CancelScope() as scope:
            scope.cancel()
            await adapter.close()
        await until(lambda: server.clients() == 0, "every pooled connection closed")
    finally:
        await adapter.close()
        server.stop()


async def test_a_server_gone_after_open_is_queue_unavailable_at_read(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    adapter = queue_adapter(server.url, timeout=0.5)
    try:
        await adapter.open()
        server.stop()
        with anyio.fail_after(5), pytest.raises(QueueUnavailable, match="did not answer"):
            await adapter.available_agents(QUEUE)
    finally:
        await adapter.close()
        server.stop()


async def test_reading_a_queue_that_is_not_open_raises_queue_unavailable(redis_url: str) -> None:
    adapter = queue_adapter(redis_url)
    with pytest.raises(QueueUnavailable, match="not open"):
        await adapter.available_agents(QUEUE)
    await adapter.open()
    await adapter.close()
    with pytest.raises(QueueUnavailable, match="not open"):
        await adapter.available_agents(QUEUE)


async def test_an_invalid_url_is_refused_by_name() -> None:
    adapter = queue_adapter("http://user:s3cret@127.0.0.1:6379/0")
    with pytest.raises(QueueUnavailable, match=r"'http://user:\*\*\*@127.0.0.1:6379/0' is invalid"):
        await adapter.open()


def test_redact_url_hides_only_the_password() -> None:
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redact_url("redis://:pw@host:6379/2") == "redis://:***@host:6379/2"
    assert redact_url("rediss://ops:pw@host/0") == "rediss://ops:***@host/0"
