"""Connection pools to Redis for the store and the queue adapter: one server named by
its URL, or the primary that Redis Sentinel names for a service (after a failover the
pool asks the sentinels again and reaches the new primary, no restart).

With ``cluster`` (``cluster_client``) the URL names one node of a Redis Cluster and
redis-py's cluster client finds the others and routes each command by its key's slot.

Each new connection reads the server's replication section before any command goes
on it, and hands what it read (``Primary``) to ``on_connect``: the store compares the
replication id with the one it knew, to see a failover (a promoted replica, or a
primary restarted without its data) before it writes anything there. ``on_connect``
may raise ``redis.exceptions.ConnectionError`` to refuse the connection.

A connection keeps the role and replication id it found (``ROLE``, ``REPLID``). Given
``usable`` (whether a connection that found that role and id may still be used), a
pool checks it each time it hands a connection out, and a cluster client each time it
takes one of a node's connections: one that may not (opened to a primary since
replaced: it was in use, or blocked on a paused server, when the failover was seen,
so redis-py did not close it with the idle ones; on a cluster also one opened to a
replica, which may have been promoted since) is closed and opened again, and the new
connection reports what it reached before anything is sent on it. Without that, a
primary SIGSTOPped, replaced, then continued takes writes as a master until it is
demoted, and they are lost with it; and a replica promoted takes writes on an old
connection before the store has seen the failover.

``HeldConnections``: a few of a pool's connections kept out of it for the store's
script calls, each call's commands sent in one write on one of them, with the same
``usable`` check before every call as a checkout from the pool (but none of the pool's
locks, timers and bookkeeping, nor redis-py's retry: a call that fails is an outage
the store reports, not a command run twice).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import hiredis
import structlog
from redis.asyncio import BlockingConnectionPool, ConnectionPool, RedisCluster
from redis.asyncio.connection import AbstractConnection, Connection, SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dialerd.config import parse_sentinel

log = structlog.get_logger("dialerd.store")

# Seconds to wait for one sentinel's answer (at most the pool's timeout).
SENTINEL_TIMEOUT = 0.5


def no_retry() -> Retry:
    """redis-py's retry policy for the commands of a pool (one server, or the primary
    Sentinel names): none. A command that failed on a connection error or a timeout
    may have run (its reply lost, or still queued on a paused server): sent again, a
    claim or an end would run twice. The error goes up as the store's outage instead,
    and the caller retries with its own checks (a tick claims anew, an end is kept and
    sent again, and finish.lua ends an attempt once). Set here, not left to redis-py's
    default for a pool built without one (none today), which may change.

    A cluster client keeps redis-py's own retries (``cluster_client``): its retry is
    also how it refreshes the slots and replaces a failed node after a failover. A
    command it sends again is refused before it reaches a promoted replica not
    written back yet (``dialerd.store.redis.failover``), and one sent again to the
    same node runs against the scripts' own checks: a claim whose first attempt
    exists is refused (its first run's claims are never dialed, and the sweep ends
    them ``lost``), an attempt already ended is not ended again."""
    return Retry(NoBackoff(), 0)


@dataclass(frozen=True)
class Primary:
    """What a new connection found: the server's role (``master`` or ``slave``), its
    replication id (a replica promoted, or a server started afresh, has a new one), its
    address, and the id it took over from when it was promoted (``master_replid2``; ''
    when none)."""

    role: str
    replid: str
    address: str
    replid2: str = ""


OnConnect = Callable[[Primary], None]
# Whether a connection that found this role and replication id at connect may be used.
Usable = Callable[[str, str], bool]

# The attributes of a connection that hold the role and replication id it found at
# connect, and the check of ``Usable`` it is under.
REPLID = "dialerd_replid"
ROLE = "dialerd_role"
USABLE = "dialerd_usable"
# The replication id of a server that never took over from another.
NO_REPLID = "0" * 40


def stale(connection: AbstractConnection) -> bool:
    """A connection open to a server it may no longer be used on (see ``Usable``)."""
    usable: Usable | None = getattr(connection, USABLE, None)
    if usable is None or not connection.is_connected or not hasattr(connection, REPLID):
        return False
    return not usable(getattr(connection, ROLE, ""), getattr(connection, REPLID))


def _address(connection: AbstractConnection) -> str:
    return f"{getattr(connection, 'host', '')}:{getattr(connection, 'port', '')}"


class CheckedPool(BlockingConnectionPool):
    """A blocking pool that reopens a connection whose server it may no longer be used
    on (``stale``: a primary since replaced) before handing it out."""

    async def ensure_connection(self, connection: AbstractConnection) -> None:
        if stale(connection):
            log.warning(
                "a pooled connection to a primary since replaced is reopened",
                primary=_address(connection),
            )
            await connection.disconnect()
        await super().ensure_connection(connection)


class CheckedConnection(Connection):
    """A cluster node's connection, reopened when the node takes it (redis-py's
    ``should_reconnect``) once ``stale``."""

    def should_reconnect(self) -> bool:
        return bool(super().should_reconnect()) or stale(self)  # type: ignore[no-untyped-call]


class CheckedSSLConnection(SSLConnection):
    """``CheckedConnection`` over TLS."""

    def should_reconnect(self) -> bool:
        return bool(super().should_reconnect()) or stale(self)  # type: ignore[no-untyped-call]


class Sentinels(Sentinel):
    """redis-py's ``Sentinel`` (a client per sentinel, asked in turn which primary
    serves the service), safe when several connections ask at once: each opening
    connection of a pool asks. redis-py moves the sentinel that named the primary to
    the front of its list by the place it had when the question began; when another
    question moved it meanwhile, that sentinel took two places and the one ahead of it
    none. The one dropped was never asked again (with the others down, no primary was
    found although it answered) and never closed: its connections stayed open after
    the close of the store or queue adapter. Here the one that answered is moved to
    the front by identity."""

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        """The primary's (host, port) as the first sentinel that names one (not down)
        answers; ``MasterNotFoundError`` naming each sentinel's error if none does."""
        errors: list[str] = []
        for sentinel in list(self.sentinels):
            try:
                masters = await sentinel.sentinel_masters()
            except (RedisConnectionError, RedisTimeoutError, ResponseError) as error:
                errors.append(f"{_client_address(sentinel)}: {error}")
                continue
            state = masters.get(service_name) if isinstance(masters, dict) else None
            if state and self.check_master_state(state, service_name):
                order = self.sentinels
                at = order.index(sentinel)
                order[0], order[at] = order[at], order[0]
                return state["ip"], state["port"]
        found = f" ({'; '.join(errors)})" if errors else ""
        raise MasterNotFoundError(f"no sentinel names a primary for {service_name!r}{found}")


def _client_address(client: Any) -> str:
    """host:port of a client of one server."""
    kwargs = client.connection_pool.connection_kwargs
    return f"{kwargs.get('host', '')}:{kwargs.get('port', '')}"


class BlockingSentinelPool(SentinelConnectionPool, CheckedPool):
    """Sentinel's pool (connections to the primary the sentinels name) that waits up
    to its timeout for a free connection, like the pool of a plain URL, instead of
    failing at once when all are in use."""

    def __init__(self, service_name: str, sentinel_manager: Sentinel, **kwargs: Any) -> None:
        super().__init__(service_name, sentinel_manager, **kwargs)  # type: ignore[no-untyped-call]
        self._sentinel_manager = sentinel_manager

    async def aclose(self) -> None:
        """Close the connections, and those to the sentinels."""
        try:
            await super().aclose()
        finally:
            await self._sentinel_manager.aclose()


async def _dirty(connection: AbstractConnection) -> bool:
    """Data left unread on the connection, or the server closed it (what the pool's
    ``ensure_connection`` reopens a connection for before handing it out)."""
    try:
        return bool(await connection.can_read())
    except (OSError, RedisConnectionError):
        return True


class HeldConnections:
    """Up to ``size`` connections of ``pool`` held out of it (taken from it when all
    held ones are busy, kept if there is room, else given back): what the store's
    script calls go out on, without a checkout from the pool each. Before every call
    the connection is checked as a checkout would check it (one ``stale``, closed by
    the server or with data left unread is reopened, and reports what it reached
    before anything is sent); one that fails is given back to the pool, which reopens
    it before its next use."""

    def __init__(self, pool: ConnectionPool, size: int) -> None:
        self.pool = pool
        self.size = size
        self._free: list[AbstractConnection] = []

    async def exchange(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send ``commands`` in one write on one connection and read their replies, in
        order; an error reply is answered in its place (``ResponseError``), a
        connection's failure raised. Never retried: a command may have run."""
        pool = self.pool
        free = self._free
        connection = free.pop() if free else await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            if not connection.is_connected or stale(connection) or await _dirty(connection):
                await pool.ensure_connection(connection)  # reopened, as the pool would
            try:
                # hiredis packs what redis-py would (str, int, float, bytes) at a
                # quarter of its cost; anything else is redis-py's to encode.
                packed = [hiredis.pack_command(tuple(command)) for command in commands]
            except TypeError:
                packed = connection.pack_commands(commands)
            await connection.send_packed_command(packed, check_health=False)
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(await connection.read_response())
                except ResponseError as error:
                    replies.append(error)
        except BaseException:
            # Replies may be left unread: the pool checks it before handing it out.
            await pool.release(connection)
            raise
        if len(free) < self.size:
            free.append(connection)
        else:
            await pool.release(connection)
        return replies

    def clear(self) -> None:
        """Forget the held connections (the pool is closed with them)."""
        self._free.clear()


def replication_info(reply: bytes | str) -> dict[str, str]:
    """The ``key:value`` lines of an ``INFO replication`` reply."""
    text = reply.decode() if isinstance(reply, bytes) else reply
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, colon, value = line.partition(":")
        if colon and not name.startswith("#"):
            fields[name.strip()] = value.strip()
    return fields


def _connect_func(
    on_connect: OnConnect, usable: Usable | None
) -> Callable[[AbstractConnection], Any]:
    async def connect(connection: AbstractConnection) -> None:
        await connection.on_connect()
        await connection.send_command("INFO", "replication", check_health=False)
        fields = replication_info(await connection.read_response())
        host = getattr(connection, "host", "")
        role, replid = fields.get("role", ""), fields.get("master_replid", "")
        setattr(connection, ROLE, role)
        setattr(connection, REPLID, replid)
        setattr(connection, USABLE, usable)
        replid2 = fields.get("master_replid2", "")
        on_connect(
            Primary(
                role=role,
                replid=replid,
                address=_address(connection) if host else str(getattr(connection, "path", "")),
                replid2="" if replid2 == NO_REPLID else replid2,
            )
        )

    return connect


def connection_pool(
    url: str,
    *,
    sentinels: Sequence[str] = (),
    service_name: str = "",
    pool_size: int,
    timeout: float,
    decode_responses: bool = False,
    on_connect: OnConnect | None = None,
    usable: Usable | None = None,
) -> BlockingConnectionPool:
    """A pool of at most ``pool_size`` connections; ``timeout`` bounds the wait for a
    free one, each reply and each connect. With ``sentinels`` the primary of
    ``service_name`` is asked of them (the URL then gives the database, user and
    password only). With ``usable`` (and ``on_connect``), a connection is handed out
    only while what it reached may still be used (else it is reopened).
    ``ValueError`` for a URL or sentinel that is not valid."""
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "decode_responses": decode_responses,
        "retry": no_retry(),
    }
    if on_connect is not None:
        options["redis_connect_func"] = _connect_func(on_connect, usable)
    if not sentinels:
        return CheckedPool.from_url(url, max_connections=pool_size, timeout=timeout, **options)
    if url.startswith("unix://"):
        raise ValueError("a unix:// URL names one server: sentinels need redis:// or rediss://")
    given: dict[str, Any] = dict(parse_url(url))
    for name in ("host", "port", "connection_class"):
        given.pop(name, None)
    if url.startswith("rediss://"):
        given["ssl"] = True
    # Each sentinel is asked in turn: a short wait for each keeps the whole round (all
    # of them, the connect, the reply) within a few times ``timeout``.
    asked = min(timeout, SENTINEL_TIMEOUT)
    manager = Sentinels(
        [parse_sentinel(sentinel) for sentinel in sentinels],
        sentinel_kwargs={"socket_timeout": asked, "socket_connect_timeout": asked},
    )
    return BlockingSentinelPool(
        service_name,
        manager,
        is_master=True,
        max_connections=pool_size,
        timeout=timeout,
        **given,
        **options,
    )


def cluster_client(
    url: str,
    *,
    pool_size: int,
    timeout: float,
    on_connect: OnConnect | None = None,
    usable: Usable | None = None,
) -> RedisCluster:
    """A Redis Cluster client: the URL names one node; at most ``pool_size``
    connections per node; ``timeout`` bounds each reply and each connect. Every new
    connection (to any node) reports the node it reached to ``on_connect``, like a
    pool's, and with ``usable`` one that may no longer be used is reopened when a node
    takes it for a command. ``ValueError`` for a URL that is not valid."""
    if url.startswith("unix://"):
        raise ValueError("a unix:// URL names one server: a cluster needs redis:// or rediss://")
    client = RedisCluster.from_url(
        url,
        max_connections=pool_size,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=False,
        # redis-py's retries kept on purpose (see ``no_retry``).
    )
    if on_connect is not None:
        # Before the client first connects: every node it finds gets these options.
        kwargs = client.nodes_manager.connection_kwargs
        checked = (
            CheckedSSLConnection
            if issubclass(kwargs.get("connection_class", Connection), SSLConnection)
            else CheckedConnection
        )
        kwargs["redis_connect_func"] = _connect_func(on_connect, usable)
        kwargs["connection_class"] = checked
        for node in client.nodes_manager.startup_nodes.values():
            node.connection_kwargs["redis_connect_func"] = _connect_func(on_connect, usable)
            node.connection_class = checked
    return client
