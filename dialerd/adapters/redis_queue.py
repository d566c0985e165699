"""Queue adapter ``redis``: reads agents' statuses that a call centre keeps in Redis.

Each queue is a hash ``<prefix>:queue:<queue name>:agents`` whose fields are agent ids and
whose values are the agents' statuses (``available``, ``away``, ``busy``, ``offline``,
``ringing``); only ``available`` agents count. A queue without that hash has no
available agents, which is logged once per queue until the hash appears.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import anyio
import structlog
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError, ResponseError

from dialerd import metrics
from dialerd.ports import QueueUnavailable
from dialerd.redis_pool import connection_pool

log = structlog.get_logger("dialerd.queue")

AVAILABLE: Final = "available"


# The statuses a call centre writes, as states of ``dialerd_queue_agents``: ``away``
# is logged in but not taking calls (paused); ``ringing`` is being offered a call, so
# not free (busy); anything else it may write is an agent that cannot take a call.
AGENT_STATES: Final = {
    "available": "available",
    "busy": "busy",
    "ringing": "busy",
    "away": "paused",
    "offline": "offline",
}


def agent_state(status: str | bytes) -> str:
    """The ``dialerd_queue_agents`` state of a status in the agents' hash."""
    text = status.decode(errors="replace") if isinstance(status, bytes) else status
    return AGENT_STATES.get(text, "offline")


async def _close(client: Redis, pool: BlockingConnectionPool) -> None:
    """Close ``client`` and every connection of ``pool``, even when the caller is being
    cancelled (a failed or cut open, a stop): redis-py closes a pool's connections in
    tasks that a cancellation would stop before they ran, leaving their sockets open.
    Each close is bounded by the pool's timeout."""
    with anyio.CancelScope(shield=True):
        await client.aclose()
        await pool.aclose()


def redact_url(url: str) -> str:
    """The URL with its password (if any) replaced by ``***``, fit for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


class RedisQueue:
    """Counts a queue's ``available`` agents in Redis, through a bounded connection pool."""

    name = "redis"

    def __init__(
        self,
        *,
        url: str,
        prefix: str,
        pool_size: int,
        timeout: float,
        sentinels: Sequence[str] = (),
        service_name: str = "",
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.pool_size = pool_size
        self.timeout = timeout
        self.sentinels = tuple(sentinels)
        self.service_name = service_name
        self.shown_url = (
            f"{service_name} (sentinels {', '.join(sentinels)})" if sentinels else redact_url(url)
        )
        self._pool: BlockingConnectionPool | None = None
        self._client: Redis | None = None
        self._missing: set[str] = set()

    def agents_key(self, queue_name: str) -> str:
        """The hash holding the statuses of the queue's agents."""
        return f"{self.prefix}:queue:{queue_name}:agents"

    async def open(self) -> None:
        """Make the connection pool and check the server answers; raise
        ``QueueUnavailable`` when it does not (caused by the Redis error: a refused
        password is an ``AuthenticationError``) or the URL is invalid (caused by the
        ``ValueError``), with nothing left open. The daemon waits for it at start
        (``[queue.redis] start_wait``)."""
        if self._client is not None:
            return
        try:
            pool = connection_pool(
                self.url,
                sentinels=self.sentinels,
                service_name=self.service_name,
                pool_size=self.pool_size,
                timeout=self.timeout,
                decode_responses=True,
            )
        except ValueError as exc:
            raise QueueUnavailable(f"queue redis URL {self.shown_url!r} is invalid: {exc}") from exc
        client = Redis(connection_pool=pool)
        try:
            await client.ping()
        except BaseException as exc:
            await _close(client, pool)
            if not isinstance(exc, RedisError | OSError):
                raise
            raise QueueUnavailable(
                f"queue redis at {self.shown_url} cannot be reached: {exc or type(exc).__name__}"
            ) from exc
        self._pool, self._client = pool, client

    async def close(self) -> None:
        """Close the client and every pooled connection."""
        client, pool = self._client, self._pool
        self._client = self._pool = None
        if client is not None and pool is not None:
            await _close(client, pool)

    def _open_client(self) -> Redis:
        if self._client is None:
            raise QueueUnavailable("queue redis is not open")
        return self._client

    async def has_queue(self, queue_name: str) -> bool:
        """Whether the queue's hash of agent statuses exists."""
        client = self._open_client()
        try:
            return bool(await client.exists(self.agents_key(queue_name)))
        except (RedisError, OSError) as exc:
            raise QueueUnavailable(
                f"queue redis at {self.shown_url} did not answer: {exc or type(exc).__name__}"
            ) from None

    async def available_agents(self, queue_name: str) -> int:
        """Agents of the queue whose status is ``available``; raise ``QueueUnavailable``."""
        client = self._open_client()
        key = self.agents_key(queue_name)
        try:
            statuses = await client.hvals(key)
        except ResponseError as exc:
            raise QueueUnavailable(
                f"queue {queue_name}: redis key {key!r} is not a hash of agent statuses: {exc}"
            ) from None
        except (RedisError, OSError) as exc:
            raise QueueUnavailable(
                f"queue redis at {self.shown_url} did not answer: {exc or type(exc).__name__}"
            ) from None
        if not statuses:
            if queue_name not in self._missing:
                self._missing.add(queue_name)
                log.warning(
                    "queue has no agents in redis; counting 0 available",
                    queue_name=queue_name,
                    key=key,
                )
            return 0
        self._missing.discard(queue_name)
        metrics.queue_agents(queue_name, (agent_state(status) for status in statuses))
        return sum(status == AVAILABLE for status in statuses)
