"""The Redis backend's connection: the pool, the Lua scripts (scripts/*.lua, each
prefixed with common.lua), the key layout's version and its migration, and the
translation of Redis errors into the store's."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Sequence
from importlib import resources
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import redis.asyncio
from redis.asyncio import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import (
    ClusterDownError,
    MaxConnectionsError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dialerd.metrics import store as store_metrics
from dialerd.model import (
    Campaigncall,
)
from dialerd.redis_pool import HeldConnections, cluster_client, connection_pool
from dialerd.store.base import (
    CampaignChanged,
    CampaignNotRunning,
    Conflict,
    LeaseLost,
    StoreBusy,
    StoreError,
    StoreUnavailable,
)
from dialerd.store.documents import (
    CAMPAIGN,
    OUTPLAN,
    Document,
    Kind,
)
from dialerd.store.redis.failover import Failover
from dialerd.store.redis.fields import (
    CHANGED_MARK,
    CONFLICT_MARK,
    IMPORT_CHUNK,
    LAYOUT,
    LEASE_LOST_MARK,
    MIGRATE_CHUNK,
    NOT_RUNNING_MARK,
    SCRIPTS,
    UNAVAILABLE_REPLIES,
    glob_escape,
    public_url,
)
from dialerd.store.redis.migration import Migration

R = TypeVar("R")


async def _raised(error: Exception) -> None:
    """An error a pipeline answered in place, raised (for ``_guard`` to translate)."""
    raise error


def _pool_exhausted(error: Exception) -> bool:
    """The error of a call that got no pooled connection: the blocking pool's wait timed
    out (redis-py says "No connection available"), or a cluster node's pool is full."""
    return isinstance(error, MaxConnectionsError) or str(error).startswith(
        "No connection available"
    )


async def _close(client: redis.asyncio.Redis | redis.asyncio.RedisCluster) -> None:
    """Close every connection of ``client``, even when the caller is being cancelled:
    redis-py closes a pool's connections in tasks that a cancellation would stop before
    they ran, leaving their sockets open. Each close is bounded by the pool's timeout."""
    with anyio.CancelScope(shield=True):
        if isinstance(client, redis.asyncio.RedisCluster):
            await client.aclose()
        else:
            await client.aclose(close_connection_pool=True)


# How many ids' customers an instance keeps in memory.
OWNERS_KEPT = 200_000
# The names of the event sender's leases (``dialerd.events.sender.lease_name``).
EVENTS_LEASE = "events:"
# Bodies decoded between two checkpoints (``_decoded``).
DECODE_CHUNK = 100
# The share of the pool held for the script calls (``HeldConnections``): a pool of
# fewer than this many holds none back (its only connections would leave every other
# command waiting), and each script call then checks one out and gives it back.
HELD_SHARE = 4


class RedisConnection:
    """One Redis server, connected, with the scripts loaded: what every part of the
    backend runs its commands and scripts through."""

    backend = "redis"

    def __init__(
        self,
        *,
        url: str,
        prefix: str,
        pool_size: int,
        timeout: float,
        import_chunk: int = IMPORT_CHUNK,
        sentinels: Sequence[str] = (),
        service_name: str = "",
        min_replicas: int = 0,
        replica_timeout: float = 0.5,
        failover_settle: float = 5.0,
        cluster: bool = False,
    ) -> None:
        self.url = url
        self.cluster = cluster
        self.prefix = prefix
        self.pool_size = pool_size
        self.timeout = timeout
        self.import_chunk = import_chunk
        self.sentinels = tuple(sentinels)
        self.service_name = service_name
        self.min_replicas = min_replicas
        self.replica_timeout = replica_timeout
        self.failover_settle = failover_settle
        # The primary each connection reached (``Primary``): see ``durable.Failover``.
        self.failover = Failover(self.where, per_node=cluster, sentinels=bool(self.sentinels))
        # A Redis or a RedisCluster client (the same commands; typed Any for both).
        self._client: redis.asyncio.Redis | redis.asyncio.RedisCluster | None = None
        self._scripts: dict[str, AsyncScript] = {}
        # One server's (or Sentinel's) pool: connections held for the script calls.
        self._held: HeldConnections | None = None
        # campaigncall id -> what attempt.lua would read while it is active.
        # Per claim: the attempt, then the target's version and body after the claim and
        # its placement before (as attempt.lua reads them).
        self._claims: OrderedDict[str, tuple[Campaigncall, list[bytes]]] = OrderedDict()
        # Key layout 3 tags every customer's keys; False only while older data is
        # migrated (and in the tests that write layout 2).
        self._tagged = True
        # id -> its customer (a resource never changes customer): what ``P:where:<id>``
        # answered, or what this instance wrote; and the customers registered here.
        self._owners: OrderedDict[str, str] = OrderedDict()
        self._registered: set[str] = set()

    # -- connection -------------------------------------------------------------------
    async def open(self) -> None:
        """Connect, check the server answers and load the scripts."""
        if self._client is not None:
            return
        client: redis.asyncio.Redis | redis.asyncio.RedisCluster
        try:
            if self.cluster:
                client = cluster_client(
                    self.url,
                    pool_size=self.pool_size,
                    timeout=self.timeout,
                    on_connect=self.failover.reached,
                    usable=self.failover.usable,
                )
            else:
                pool = connection_pool(
                    self.url,
                    sentinels=self.sentinels,
                    service_name=self.service_name,
                    pool_size=self.pool_size,
                    timeout=self.timeout,
                    on_connect=self.failover.reached,
                    usable=self.failover.usable,
                )
                client = redis.asyncio.Redis(connection_pool=pool)
        except (ValueError, RedisClusterException) as error:
            raise StoreError(f"redis URL {public_url(self.url)} is not valid: {error}") from error
        # Every script starts with common.lua, then the outbox's prelude (events out).
        common = self._source("common") + "\n" + self._source("outbox")
        scripts = {
            name: client.register_script(common + "\n" + self._source(name)) for name in SCRIPTS
        }
        try:
            await self._guard(client.ping())
            if isinstance(client, redis.asyncio.RedisCluster):
                # One connection to every primary now: a primary seen later is a new
                # one (a replica promoted), see ``failover.Failover``.
                await self._guard(client.ping(target_nodes=RedisCluster.PRIMARIES))
                self.failover.opened = True
            for script in scripts.values():
                await self._guard(client.script_load(script.script))
            self._client, self._scripts = client, scripts
            if not isinstance(client, redis.asyncio.RedisCluster):
                self._held = HeldConnections(client.connection_pool, self.pool_size // HELD_SHARE)
            await self._migrate()
            await self._recover()
        except BaseException:
            # Nothing is left open: the next ``open`` (start_wait's next try) starts
            # afresh, and runs the recovery again.
            self._client, self._held = None, None
            await _close(client)
            raise

    async def close(self) -> None:
        """Close every pooled connection. Idempotent."""
        client, self._client = self._client, None
        held, self._held = self._held, None
        if held is not None:
            held.clear()
        if client is not None:
            await _close(client)

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless Redis answers now (on a cluster, every
        primary: a shard down is an outage of its customers)."""
        client = self._connected()
        if self.cluster:
            await self._guard(client.ping(target_nodes=RedisCluster.PRIMARIES))
        else:
            await self._guard(client.ping())

    async def _migrate(self) -> None:
        """Bring the data to layout ``LAYOUT`` (key ``P:layout``; absent = layout 1, or
        a new store).

        Layout 1 -> 2: the idle targets move from ``fresh`` / ``retry`` to ``ready`` /
        ``waiting`` (a retried target is due its last end plus the longest
        ``try_interval`` of the outplans of the campaigns dialing its outdial).
        Layout 2 -> 3: every key of a customer's data moves under its tag
        (``migration.Migration``). Every step is idempotent, so instances opening at
        once, or one interrupted, finish it. Run it with no instance of an older version
        still writing. A cluster takes a new store or one of layout 3 only.
        """
        client = self._connected()
        layout_key = self._key("layout")
        stored = await self._guard(client.get(layout_key))
        if stored is not None:
            if int(stored) > LAYOUT:
                raise StoreError(
                    f"redis store {public_url(self.url)} has key layout {int(stored)}; "
                    f"this dialerd knows layout {LAYOUT} at most"
                )
            if int(stored) == LAYOUT:
                return
        if self.cluster:
            if stored is not None:
                raise StoreError(
                    f"{self.where} has key layout {int(stored)}: open it on a single Redis "
                    f"with this dialerd first (it migrates to layout {LAYOUT}), then move "
                    "the keys to the cluster (redis-cli --cluster import)"
                )
            await self._guard(client.set(layout_key, LAYOUT))
            return
        self._tagged = False
        try:
            if stored is None or int(stored) < 2:
                await self._migrate_queues()
            await Migration(self).run()
        finally:
            self._tagged = True
        await self._guard(client.set(layout_key, LAYOUT))

    async def _migrate_queues(self) -> None:
        """Layout 1 -> 2 (on untagged names)."""
        client = self._connected()
        pattern = glob_escape(self.prefix)
        outdials: set[str] = set()
        for kind in ("fresh", "retry", "progressing"):
            async for found in client.scan_iter(match=f"{pattern}:{kind}:*", count=1000):
                name = found.decode() if isinstance(found, bytes) else str(found)
                outdials.add(name.removeprefix(f"{self.prefix}:{kind}:"))
        intervals = await self._retry_intervals() if outdials else {}
        for outdial_id in sorted(outdials):
            interval = intervals.get(outdial_id, 0) * 1000
            while (
                int(await self._run("migrate", outdial_id, interval, MIGRATE_CHUNK, customer=""))
                > 0
            ):
                pass

    async def _retry_intervals(self) -> dict[str, int]:
        """The longest ``try_interval`` (ms) of the outplans dialing each outdial."""
        client = self._connected()
        intervals: dict[str, int] = {}
        pattern = f"{glob_escape(self.prefix)}:campaign:*"
        async for found in client.scan_iter(match=pattern, count=1000):
            body = await self._guard(client.hget(found, "b"))
            if body is None:
                continue
            campaign = CAMPAIGN.decode(body.encode() if isinstance(body, str) else body)
            outplan = await self._get(OUTPLAN, campaign.customer_id, campaign.outplan_id)
            if outplan is not None:
                intervals[campaign.outdial_id] = max(
                    intervals.get(campaign.outdial_id, 0), outplan.try_interval
                )
        return intervals

    @staticmethod
    def _source(name: str) -> str:
        scripts = resources.files("dialerd.store.redis").joinpath("scripts")
        return scripts.joinpath(f"{name}.lua").read_text("utf-8")

    @property
    def where(self) -> str:
        """The store as errors and logs name it."""
        if self.sentinels:
            return f"redis store {self.service_name} (sentinels {', '.join(self.sentinels)})"
        if self.cluster:
            return f"redis cluster store {public_url(self.url)}"
        return f"redis store {public_url(self.url)}"

    def _connected(self) -> Any:
        if self._client is None:
            raise StoreError(f"redis store {public_url(self.url)} is not open")
        return self._client

    async def _guard(self, call: Awaitable[R]) -> R:
        """Await a Redis call, turning its failures into the port's errors."""
        where = self.where
        try:
            return await call
        except (RedisConnectionError, RedisTimeoutError) as error:
            if _pool_exhausted(error):
                store_metrics.STORE_POOL_EXHAUSTED.inc()
                raise StoreBusy(self._busy(where)) from error
            raise StoreUnavailable(f"{where} cannot be reached: {error}") from error
        except (ClusterDownError, TryAgainError, RedisClusterException) as error:
            # A cluster between a node's failure and its replica's promotion.
            raise StoreUnavailable(f"{where} is not serving every slot: {error}") from error
        except ResponseError as error:
            text = str(error)
            if text.startswith(CONFLICT_MARK):
                raise Conflict(text.removeprefix(CONFLICT_MARK)) from error
            if text.startswith(CHANGED_MARK):
                raise CampaignChanged(text.removeprefix(CHANGED_MARK)) from error
            if text.startswith(NOT_RUNNING_MARK):
                raise CampaignNotRunning(text.removeprefix(NOT_RUNNING_MARK)) from error
            if text.startswith(LEASE_LOST_MARK):
                raise LeaseLost(text.removeprefix(LEASE_LOST_MARK)) from error
            if text.startswith(UNAVAILABLE_REPLIES):
                raise StoreUnavailable(f"{where} refused the write: {text}") from error
            raise StoreError(f"{where}: {text}") from error
        except RedisError as error:
            raise StoreError(f"{where}: {error}") from error

    def _busy(self, where: str) -> str:
        """What a call that found every pooled connection busy says (``StoreBusy``)."""
        if self.cluster:
            held = f"all {self.pool_size} connections of this process's pool to a node were in use"
        else:
            held = (
                f"all {self.pool_size} connections of this process's pool stayed in use "
                f"for {self.timeout:g} s"
            )
        return (
            f"{where} is busy: {held}, so the call was not sent (the server may well be "
            "up); raise [store.redis] pool_size if this recurs (operations.md, "
            '"The Redis store\'s connections")'
        )

    async def _run(self, name: str, *args: Any, customer: str) -> Any:
        """Run one of the Lua scripts (EVALSHA) on the customer's keys: the customer's tag
        is KEYS[1] (a cluster routes the script by it), the prefix the first argument."""
        client = self._connected()
        script = self._scripts[name]
        if self._held is not None:
            (reply,) = await self._guard(
                self._held.exchange(
                    (("EVALSHA", script.sha, 1, self._tag(customer), self.prefix, *args),)
                )
            )
            if not isinstance(reply, Exception):
                return reply
            if not isinstance(reply, NoScriptError):
                await self._guard(_raised(reply))
            # The server lost its scripts: the script call below loads it again.
        return await self._guard(
            script(keys=[self._tag(customer)], args=[self.prefix, *args], client=client)
        )

    async def _run_each(self, name: str, calls: Sequence[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        """One script for each (customer, arguments), pipelined: one round trip (per
        node, on a cluster) for a read that goes customer by customer."""
        if not calls:
            return []
        sha = self._scripts[name].sha
        replies: list[Any]
        if self._held is not None:
            replies = await self._guard(
                self._held.exchange(
                    [
                        ("EVALSHA", sha, 1, self._tag(customer), self.prefix, *args)
                        for customer, args in calls
                    ]
                )
            )
        else:
            async with self._connected().pipeline(transaction=False) as pipe:
                for customer, args in calls:
                    pipe.evalsha(sha, 1, self._tag(customer), self.prefix, *args)
                replies = await self._guard(pipe.execute(raise_on_error=False))
        answered: list[Any] = []
        for (customer, args), reply in zip(calls, replies, strict=True):
            if isinstance(reply, NoScriptError):  # the server lost its scripts: load them
                reply = await self._run(name, *args, customer=customer)
            elif isinstance(reply, Exception):
                await self._guard(_raised(reply))
            answered.append(reply)
        return answered

    # -- key layout 3: every key of a customer's data carries the tag {c:<customer>} ------
    def _tag(self, customer: str) -> str:
        """``P:{c:<customer>}``, what every key of the customer's data starts with (one
        hash slot per customer)."""
        return f"{self.prefix}:{{c:{customer}}}" if self._tagged else self.prefix

    def _ckey(self, customer: str, *parts: str) -> str:
        """A key of the customer's data."""
        return ":".join((self._tag(customer), *parts))

    async def _register(self, customer: str, *ids: str) -> None:
        """Before the customer's data is written: the customer in the registry
        ``P:customers`` and each id's customer in ``P:where:<id>`` (what lookups by id
        alone resolve). A registration without the data it was for is harmless."""
        if customer in self._registered and all(self._owners.get(i) == customer for i in ids):
            return
        pipe = self._connected().pipeline(transaction=False)
        if customer not in self._registered:
            pipe.sadd(self._key("customers"), customer)
        for each in ids:
            pipe.set(self._key("where", each), customer)
        await self._guard(pipe.execute())
        self._registered.add(customer)
        for each in ids:
            self._own(each, customer)

    def _own(self, resource_id: str, customer: str) -> None:
        self._owners[resource_id] = customer
        if len(self._owners) > OWNERS_KEPT:
            self._owners.popitem(last=False)

    async def _customer_of(self, resource_id: str) -> str | None:
        """The customer of a campaign, outplan, outdial or campaigncall; None when no
        such id was ever written."""
        known = self._owners.get(resource_id)
        if known is not None:
            return known
        found = await self._guard(self._connected().get(self._key("where", resource_id)))
        if found is None:
            return None
        customer = found.decode() if isinstance(found, bytes) else str(found)
        self._own(resource_id, customer)
        return customer

    async def _owner(self, resource_id: str) -> str:
        """The customer whose keys hold what is kept under this id: a campaign's, an
        outdial's or a campaigncall's customer, the customer of an event delivery lease
        (``events:<customer>``); '' (a tag of its own) for an id never written."""
        if resource_id.startswith(EVENTS_LEASE):
            return resource_id.removeprefix(EVENTS_LEASE)
        return await self._customer_of(resource_id) or ""

    async def _slots(self) -> list[str]:
        """A customer per key space to read a cross-customer index in: each customer's
        (layout 3); one for all while layout 2's names are read."""
        return await self.customers() if self._tagged else [""]

    async def customers(self) -> list[str]:
        """Every customer with data in this store (the registry)."""
        found = await self._guard(self._connected().smembers(self._key("customers")))
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in found)

    async def _decoded(self, kind: Kind[Document], bodies: Sequence[bytes]) -> list[Document]:
        """Decode many bodies (every running campaign, every active attempt) a chunk at
        a time, letting the other tasks run in between: a thousand of them decoded in
        one go would hold every tick up at once."""
        decoded: list[Document] = []
        for start in range(0, len(bodies), DECODE_CHUNK):
            if start:
                await anyio.lowlevel.checkpoint()
            decoded.extend(kind.decode(body) for body in bodies[start : start + DECODE_CHUNK])
        return decoded

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    async def _fields(self, key: str, *names: str) -> list[bytes | None]:
        """Some fields of one hash, ``None`` where absent."""
        values = await self._guard(self._connected().hmget(key, list(names)))
        return [value.encode() if isinstance(value, str) else value for value in values]

    async def _get_raw(
        self, kind: Kind[Document], customer_id: str | None, resource_id: str
    ) -> bytes | None:
        owner = customer_id or await self._customer_of(resource_id)
        if owner is None:
            return None
        body, customer, deleted = await self._fields(
            self._ckey(owner, kind.name, resource_id), "b", "c", "x"
        )
        if body is None or deleted == b"1":
            return None
        if customer_id is not None and customer != customer_id.encode():
            return None
        return body

    async def _get(
        self, kind: Kind[Document], customer_id: str | None, resource_id: str
    ) -> Document | None:
        body = await self._get_raw(kind, customer_id, resource_id)
        return None if body is None else kind.decode(body)

    async def _recover(self) -> None:
        """Finish at ``open`` what a dead instance left half done (see ``RedisDoNotCall``)."""
