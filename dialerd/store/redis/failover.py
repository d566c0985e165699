"""A Redis failover as the store sees it: every new connection tells ``Failover`` the
primary it reached (its replication id, ``dialerd.redis_pool``); a new id is a new
primary, which may lack the latest writes (replication is asynchronous). From then on
the writes of the dial ledger (claims, lease renewals, answers, ends) are refused until
this instance has written its leases and live attempts back (``DurableLedger.
write_back``), and claims stay refused for ``failover_settle`` seconds more, while the
other instances sharing the store write theirs back.

A ledger write runs guarded (``guarded``): a connection that would reach a new primary
in its course is refused before anything is sent on it, and a write during which a
failover was seen fails as an outage (the claims it made are not dialed).

A primary replaced is not written to again: a connection opened to it before the
failover is reopened when it is next taken for a command (``usable``; the pool's
``dialerd.redis_pool.CheckedPool``, a cluster node's ``CheckedConnection``), and
behind Sentinel or on a cluster one that reaches it again (it was paused, and
continued as a master until it is demoted) is refused: what it took would be lost when
it is demoted. On a cluster a connection opened to a replica is reopened before each
use too, so a replica promoted since is seen as a new primary (and written back to)
before anything is written on it.

Behind Sentinel an instance may also miss a failover: a connection is checked when it
is opened, and one opened before keeps working on the old primary while that one runs
as a master (paused or cut off, then back; or replaced by a failover it was never down
for, which Sentinel demotes only at its next look, seconds later). So a lease is
written only on the primary the sentinels name (asked at most every sixth of the
lease's ttl, ``confirm``): when they name another, the connections to this one are
opened again through them, and what the new one reaches decides (a new primary: the
write-back above).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import structlog
from redis.exceptions import ConnectionError as RedisConnectionError

from dialerd.metrics import store as store_metrics
from dialerd.redis_pool import Primary
from dialerd.store.base import StoreUnavailable

log = structlog.get_logger("dialerd.store")

# Set while a ledger write runs (in its task only).
_GUARDED: ContextVar[bool] = ContextVar("dialerd_store_guarded", default=False)


class Failover:
    """The primary the store writes to, and a new one seen but not yet written back."""

    def __init__(self, where: str, *, per_node: bool = False, sentinels: bool = False) -> None:
        self.where = where
        # Behind Sentinel, a primary replaced never serves again (demoted, it takes the
        # new primary's id): one reached is the old side of a failover, refused. One
        # server's id may come back (restored from a file): that is a failover again.
        self.sentinels = sentinels
        # A cluster: each node's replication id, by address; a primary not among those
        # seen at open (``opened``) is a replica promoted (or a node added). The id a
        # promoted replica followed (its primary's) is replaced there too.
        self.per_node = per_node
        self.replids: dict[str, str] = {}
        self.opened = False
        # The replication id of the primary this instance's ledger writes go to.
        self.replid: str | None = None
        # A new primary's, from the moment it is seen until the write-back is done.
        self.seen: str | None = None
        # Their addresses (one server's pool; behind Sentinel, what it names).
        self.address: str | None = None
        self.seen_address: str | None = None
        # Behind Sentinel, the replication id of the primary written to when the
        # sentinels last named another one (``confirm``): its connections are opened
        # again (through them) until one reports what it reached.
        self.doubted: str | None = None
        # The replication ids of primaries replaced.
        self.replaced: set[str] = set()
        # +1 per new primary seen: a write during which it changed is not trusted.
        self.generation = 0
        self.count = 0
        # No claim before this monotonic time (after a write-back).
        self.settled_at = 0.0
        # The monotonic time of the latest write-back (None: no failover seen).
        self.written_back_at: float | None = None

    @property
    def pending(self) -> bool:
        """A new primary was seen and this instance has not written back to it yet."""
        return self.seen is not None

    def reached(self, primary: Primary) -> None:
        """A new connection reached ``primary`` (called before any command goes on it)."""
        store_metrics.store_role(primary.role)
        if self.per_node:
            known = self.replids.get(primary.address)
            self.replids[primary.address] = primary.replid
            if primary.role == "master":
                if primary.replid in self.replaced:
                    raise RedisConnectionError(
                        f"{primary.address} is a primary replaced in a failover (it takes "
                        "writes until the cluster demotes it, and loses them then)"
                    )
                # A promoted replica: the primary it followed is replaced.
                self.replaced.update(
                    replid
                    for replid in (primary.replid2, known)
                    if replid and replid != primary.replid
                )
            if known is None and not self.opened:
                return
            # A replica reached (the cluster client asks any node for the slots) is no
            # primary of ours: its id is kept, and a change after its promotion seen.
            if primary.role == "master" and known != primary.replid and self.seen is None:
                self._new_primary(primary, primary.replid)
        elif self.replid is None:
            self.replid, self.address = primary.replid, primary.address
            return
        elif self.sentinels and primary.replid in self.replaced:
            raise RedisConnectionError(
                f"{primary.address} is a primary replaced in a failover (it takes writes "
                "until Sentinel demotes it, and loses them then)"
            )
        elif primary.replid not in (self.replid, self.seen):
            self._new_primary(primary, primary.replid)
        if not self.per_node:
            # Opened through the sentinels as they name the primary now: whatever it
            # reached settles a doubt (the same primary: they name it again).
            self.doubted = None
        if self.pending and _GUARDED.get():
            # Not a connection error: the client would take the node for failed (its
            # free connections reopened, the slots asked again) and retry; many writes
            # under way when the failover is seen would slow the write-back down.
            raise StoreUnavailable(
                f"the primary changed to {primary.address}; this instance writes its live "
                "attempts back first"
            )

    def current(self) -> str | None:
        """The replication id a connection of one server's pool should have found: the
        new primary's once seen (None on a cluster, or before the first connection)."""
        if self.per_node:
            return None
        return self.seen if self.seen is not None else self.replid

    def usable(self, role: str, replid: str) -> bool:
        """Whether a connection that found ``role`` and ``replid`` when it was opened
        may still be used (``dialerd.redis_pool.Usable``): behind one server's pool,
        while it is the current primary's; on a cluster, while it is a primary's not
        replaced (one opened to a replica is opened again before each use). None by a
        ledger write while a new primary is not written back: a write begun before the
        failover was seen (elsewhere, by a read that opened a connection to the new
        primary) would go out on that connection, on a primary that may lack this
        instance's latest claims and ends; reopened, it is refused (``reached``). Only
        one to that new primary: the cluster client asks the other nodes for the slots
        on theirs in the course of a write."""
        if self.pending and _GUARDED.get() and replid == self.seen:
            return False
        if self.per_node:
            return role == "master" and replid not in self.replaced
        if self.doubted is not None and replid == self.doubted:
            return False
        current = self.current()
        return current is None or replid == current

    def confirm(self, named: str) -> None:
        """Behind Sentinel: the primary the sentinels name now (``host:port``). When it
        is not the one this instance writes to, a failover was missed: this instance's
        connections to its primary were opened before, and keep working while that one
        still runs as a master. They are not used again (``usable``); the next one is
        opened through the sentinels, and what it reaches decides (``reached``: a new
        primary is written back to; the same one, named again meanwhile, is used on)."""
        current = self.seen_address if self.seen is not None else self.address
        if current is None or named == current:
            self.doubted = None
            return
        doubted = self.current()
        if doubted is not None and doubted != self.doubted:
            log.warning(
                "the sentinels name another primary than the one this instance writes "
                "to; its connections are opened again through them",
                store=self.where,
                primary=current,
                named=named,
            )
        self.doubted = doubted

    def _new_primary(self, primary: Primary, replid: str) -> None:
        if not self.per_node:
            for known in (self.replid, self.seen):
                if known is not None and known != replid:
                    self.replaced.add(known)
        self.seen, self.seen_address = replid, primary.address
        self.generation += 1
        self.count += 1
        store_metrics.STORE_FAILOVERS.inc()
        store_metrics.STORE_WRITE_BACK_PENDING.set(1)
        log.warning(
            "redis store failed over to a new primary; leases and live attempts are "
            "written back before anything is claimed",
            store=self.where,
            primary=primary.address,
        )

    @contextmanager
    def guarded(self, what: str) -> Iterator[None]:
        """Run a ledger write: refused while a failover is not written back, and failed
        (``StoreUnavailable``) when one is seen during it."""
        if self.pending:
            raise StoreUnavailable(
                f"{self.where} failed over to a new primary: no {what} until this "
                "instance's leases and live attempts are written back"
            )
        generation = self.generation
        token = _GUARDED.set(True)
        try:
            yield
        finally:
            _GUARDED.reset(token)
        if generation != self.generation:
            raise StoreUnavailable(
                f"{self.where} failed over during a {what}; it is not trusted (nothing "
                "dialed on it) until the live attempts are written back"
            )

    def settling(self) -> float:
        """Seconds left before claims are allowed after the latest write-back."""
        return max(0.0, self.settled_at - time.monotonic())

    def takeover_held(self, ttl: float) -> bool:
        """Whether another instance's lease must not be taken yet: while a failover
        settles, and for a lease's ``ttl`` after this instance's write-back. The new
        primary may have let a lease expire only because its renewals were lost; an
        owner that is alive writes it back within a ``ttl`` of the failover (it renews
        that often), perhaps later than this instance did, and until then its live
        attempts' targets look free there."""
        if self.settling() > 0:
            return True
        since = self.written_back_at
        return since is not None and time.monotonic() - since < ttl

    def written_back(
        self,
        generation: int,
        settle: float,
        *,
        attempts: int = 0,
        restored: int = 0,
        ended_again: int = 0,
    ) -> bool:
        """The write-back begun at ``generation`` is done (``restored`` attempts, live
        or ended lately, were missing on the new primary, of ``attempts`` live; and
        ``ended_again`` it had live had ended here); False if another primary was seen
        meanwhile (write back again)."""
        if generation != self.generation or self.seen is None:
            return self.seen is None
        self.replid, self.seen = self.seen, None
        self.address = self.seen_address
        self.written_back_at = time.monotonic()
        self.settled_at = self.written_back_at + settle
        store_metrics.STORE_WRITE_BACK_PENDING.set(0)
        log.warning(
            "live attempts written back to the new primary; claims resume after the settle",
            store=self.where,
            settle=settle,
            live_attempts=attempts,
            restored=restored,
            ended_again=ended_again,
        )
        return True
