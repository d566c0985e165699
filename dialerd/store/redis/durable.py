"""The dial ledger made safe across a Redis failover (behaviour.md, "Redis failover"):
``RedisLedger``'s writes, each guarded (``failover.Failover``), the claims and lease
renewals acknowledged by ``min_replicas`` replicas (``WAIT``) before anything is
dialed on them, and the write-back of an instance's leases and live attempts to a new
primary."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import anyio
import msgspec
import redis.asyncio
import structlog
from redis.exceptions import RedisError

from dialerd.metrics import store as store_metrics
from dialerd.model import Campaigncall, CampaigncallStatus
from dialerd.store.base import (
    AttemptEnd,
    AttemptPlan,
    Fence,
    FinishResult,
    LeaseLost,
    StoreUnavailable,
)
from dialerd.store.documents import encode
from dialerd.store.redis.fields import micros
from dialerd.store.redis.ledger import RedisLedger

log = structlog.get_logger("dialerd.store")

# Attempts ended lately, kept to be written back if a failover loses them whole (their
# claim and their end): for this many seconds, at most this many.
ENDED_KEPT_SECONDS = 120.0
ENDED_KEPT = 20_000


class DurableLedger(RedisLedger):
    """``RedisLedger`` with the failover guard and the replicas' acknowledgement."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        # campaigncall id -> (monotonic time it ended, its body as it ended, customer,
        # the end as it was made).
        self._ended: OrderedDict[str, tuple[float, bytes, str, AttemptEnd]] = OrderedDict()
        # The campaigns whose lease this instance took (and has not seen lost since).
        self._leased: set[str] = set()
        # The clock of the write-back's lease re-assertions and of the sentinels'
        # answers (a test sets its own).
        self.monotonic: Callable[[], float] = time.monotonic
        # Behind Sentinel: when the sentinels were last asked which primary serves
        # (``_confirm_primary``), and whether any answered; one asks at a time.
        self._confirmed: tuple[float, bool] | None = None
        self._confirming = anyio.Lock()

    def _keep_ended(self, campaigncall: Campaigncall, end: AttemptEnd) -> None:
        """Remember an attempt that ended here, and how, for a while (``write_back``)."""
        ended = self._ended
        now = time.monotonic()
        ended[campaigncall.id] = (now, encode(campaigncall), campaigncall.customer_id, end)
        while ended and (
            len(ended) > ENDED_KEPT or next(iter(ended.values()))[0] < now - ENDED_KEPT_SECONDS
        ):
            ended.popitem(last=False)

    @property
    def failed_over(self) -> bool:
        """A new primary was seen and this instance has not written back to it yet."""
        return self.failover.pending

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless Redis answers now, this instance has written
        back to its primary after a failover, and (with ``min_replicas``) that many
        replicas acknowledge a write (what ``/readyz`` and ``dialerd_store_up`` show)."""
        await super().ping()
        if self.failover.pending:
            raise StoreUnavailable(
                f"{self.where} failed over to a new primary; this instance's live attempts "
                "are not written back yet"
            )
        await self._acknowledged("check")

    async def start_attempts(self, plans: Sequence[AttemptPlan]) -> list[Campaigncall]:
        """``RedisLedger.start_attempts``, refused while a failover is written back or
        settles; the claims are returned (and dialed) only once ``min_replicas``
        replicas have them. Claims that fail that are left to the orphan sweep, which
        ends them as lost: never dialed."""
        if not plans:
            return []
        settling = self.failover.settling()
        if settling > 0:
            raise StoreUnavailable(
                f"{self.where} failed over lately: no claim for {settling:.1f} s more, while "
                "every instance writes its live attempts back"
            )
        with self.failover.guarded("claim"):
            claimed = await super().start_attempts(plans)
            if claimed:
                await self._acknowledged("claim", plans[0].campaign.customer_id)
        return claimed

    async def acquire_lease(
        self, campaign_id: str, owner: str, ttl: float, now: datetime
    ) -> Fence | None:
        """``RedisLedger.acquire_lease``, refused while a failover is written back; and
        while a failover settles and for a ``ttl`` after this instance's write-back,
        only a lease this instance held is taken (renewed, or re-taken where the new
        primary lost it): another instance's may have expired on the new primary only
        because its renewals were lost, and until its owner has written back its live
        attempts their targets look free (None: held). A live owner writes back within
        a ``ttl``, even when it sees the failover later than this instance."""
        taking = campaign_id not in self._leased
        if taking and self.failover.takeover_held(ttl):
            return None
        if not await self._confirm_primary(ttl) and taking:
            return None  # nobody to tell whether this primary is still the one
        with self.failover.guarded("lease renewal"):
            fence = await super().acquire_lease(campaign_id, owner, ttl, now)
            if fence is None:
                self._leased.discard(campaign_id)
            else:
                self._leased.add(campaign_id)
                await self._acknowledged("lease renewal", await self._owner(campaign_id))
        return fence

    async def _confirm_primary(self, ttl: float) -> bool:
        """Behind Sentinel, before a lease is taken or renewed: which primary the
        sentinels name, asked at most every sixth of the lease's ``ttl`` (one question
        for all the campaigns renewing meanwhile) and told to ``Failover.confirm``;
        whether they answered (True without sentinels).

        A failover this instance missed (its connections to the old primary were
        opened before, and that one runs on as a master until Sentinel demotes it:
        11 s seen after a failover under load) is then seen within half a ttl: an
        owner writes back to the new primary before another instance may take its
        lease there, and an instance takes no lease on the old primary, whose claims
        the new one would not know (their targets dialed twice)."""
        if not self.sentinels:
            return True
        confirmed = self._confirmed
        if confirmed is not None and self.monotonic() - confirmed[0] < ttl / 6:
            return confirmed[1]
        async with self._confirming:
            confirmed = self._confirmed
            if confirmed is not None and self.monotonic() - confirmed[0] < ttl / 6:
                return confirmed[1]
            pool = self._connected().connection_pool
            try:
                host, port = await pool.get_master_address()
            except (RedisError, OSError) as error:
                log.warning(
                    "no sentinel named the primary; no lease is taken from another "
                    "instance until one does",
                    store=self.where,
                    error=str(error) or type(error).__name__,
                )
                self._confirmed = (self.monotonic(), False)
                return False
            self.failover.confirm(f"{host}:{port}")
            self._confirmed = (self.monotonic(), True)
            return True

    async def release_lease(self, fence: Fence) -> None:
        self._leased.discard(fence.campaign_id)
        await super().release_lease(fence)

    async def mark_answered(
        self, campaigncall_id: str, now: datetime, *, fence: Fence | None = None
    ) -> Campaigncall | None:
        with self.failover.guarded("answer"):
            return await super().mark_answered(campaigncall_id, now, fence=fence)

    async def mark_answered_many(
        self, answers: Sequence[tuple[str, Fence | None]], now: datetime
    ) -> list[Campaigncall | LeaseLost | None]:
        with self.failover.guarded("answer"):
            return await super().mark_answered_many(answers, now)

    async def _finish_end(self, end: AttemptEnd) -> FinishResult | None:
        with self.failover.guarded("end of an attempt"):
            finished = await super()._finish_end(end)
        if finished is not None and finished.finished:
            self._keep_ended(finished.campaigncall, end)
        return finished

    async def finish_attempts(
        self, ends: Sequence[AttemptEnd]
    ) -> list[FinishResult | LeaseLost | None]:
        with self.failover.guarded("end of an attempt"):
            outcomes = await super().finish_attempts(ends)
        for end, outcome in zip(ends, outcomes, strict=True):
            if isinstance(outcome, FinishResult) and outcome.finished:
                self._keep_ended(outcome.campaigncall, end)
        return outcomes

    async def write_back(
        self, fences: Sequence[Fence], ttl: float, attempts: Sequence[Campaigncall]
    ) -> None:
        """After a failover: re-assert this instance's leases (tokens never go back),
        write its live attempts again where the new primary lost them (their targets
        back in progressing, for them), and the attempts it ended lately whose end (or
        claim and end) the new primary lost, acknowledged by ``min_replicas``
        replicas; claims resume ``failover_settle`` seconds later. Nothing to do
        without a failover."""
        while self.failover.pending:
            generation = self.failover.generation
            self._claims.clear()  # what the old primary's claims left is not trusted
            written: set[str] = set()
            for fence in fences:
                written.add(await self._owner(fence.campaign_id))
                self._leased.add(fence.campaign_id)
            asserted = await self._restore_leases(fences, ttl)
            now = micros(datetime.now().astimezone())
            restored = ended_again = 0
            for campaigncall in attempts:
                asserted = await self._keep_leases(fences, ttl, asserted)
                status = (
                    CampaigncallStatus.DIALING
                    if campaigncall.status == CampaigncallStatus.DIALING
                    else CampaigncallStatus.PROGRESSING
                )
                written.add(campaigncall.customer_id)
                reply = await self._run(
                    "restore_attempt",
                    encode(campaigncall),
                    status.value,
                    now,
                    customer=campaigncall.customer_id,
                )
                restored += reply == b"restored"
            # Attempts that ended lately: their claim and end may both be lost (a call
            # that was placed is never forgotten), or their end alone: the attempt is
            # ended again as it was, after the live attempts are written back, so its
            # end does not move a target that a later live attempt of it holds.
            for _, body, customer, end in list(self._ended.values()):
                asserted = await self._keep_leases(fences, ttl, asserted)
                written.add(customer)
                reply = await self._run("restore_ended", body, customer=customer)
                if reply == b"active":
                    # Unfenced, like the rest of the write-back: the end was made under
                    # the lease, and the lease may have moved on since.
                    again = msgspec.structs.replace(end, fence=None)
                    await self._finish_one(again, None)
                    ended_again += 1
                restored += reply == b"restored"
            for customer in sorted(written) if self.cluster else [""]:
                await self._acknowledged("write-back", customer)
            self.failover.written_back(
                generation,
                self.failover_settle,
                attempts=len(attempts),
                restored=restored,
                ended_again=ended_again,
            )

    async def _restore_leases(self, fences: Sequence[Fence], ttl: float) -> float:
        """Re-assert each of these leases for ``ttl`` on the new primary (restore_lease:
        kept or written again, never taken from another owner); when it was begun
        (``monotonic``)."""
        begun = self.monotonic()
        for fence in fences:
            await self._run(
                "restore_lease",
                fence.campaign_id,
                fence.owner,
                fence.token,
                max(1, round(ttl * 1000)),
                customer=await self._owner(fence.campaign_id),
            )
        return begun

    async def _keep_leases(self, fences: Sequence[Fence], ttl: float, asserted: float) -> float:
        """During a write-back, the leases re-asserted once a third of their ``ttl`` has
        passed since the last time (``asserted``); when they were last. Renewals are
        refused until the write-back is done, and one that takes longer than a ttl (a
        few hundred attempts, one script call each, on a loaded host) would let the
        leases expire on the new primary: another instance, written back already,
        would take a campaign over while this one's live attempts are not all written
        back, and claim their targets, which the rest of this write-back then puts
        back in progressing for those attempts (two live attempts on one target)."""
        if self.monotonic() - asserted < ttl / 3:
            return asserted
        return await self._restore_leases(fences, ttl)

    async def _acknowledged(self, what: str, customer: str | None = None) -> None:
        """Wait until ``min_replicas`` replicas have every write made so far (one write
        of a marker, then ``WAIT``, on one connection: WAIT counts the writes of its own
        connection); ``StoreUnavailable`` when fewer did within ``replica_timeout``. On
        a cluster, on the node of the customer's keys (every primary for None)."""
        if self.min_replicas <= 0:
            return
        started = time.perf_counter()
        wait_ms = max(1, round(self.replica_timeout * 1000))
        if self.cluster:
            acknowledged = await self._acknowledged_on_nodes(customer, wait_ms)
        else:
            async with self._connected().pipeline(transaction=False) as pipe:
                pipe.incr(self._ckey(customer or "", "acknowledged"))
                pipe.wait(self.min_replicas, wait_ms)
                _, acknowledged = await self._guard(pipe.execute())
        store_metrics.replicas_acknowledged(int(acknowledged), self.min_replicas)
        if int(acknowledged) < self.min_replicas:
            waited = time.perf_counter() - started
            raise StoreUnavailable(
                f"{self.where}: the {what} reached {int(acknowledged)} of the "
                f"{self.min_replicas} replicas min_replicas asks for in {waited:.2f} s; "
                "nothing is dialed on it"
            )

    async def _acknowledged_on_nodes(self, customer: str | None, wait_ms: int) -> int:
        """The fewest replicas that acknowledged a marker written, then ``WAIT``, on one
        connection to each node asked: the customer's, or every primary."""
        client = self._connected()
        assert isinstance(client, redis.asyncio.RedisCluster)
        if customer is None:
            nodes = client.get_primaries()
        else:
            node = client.get_node_from_key(self._ckey(customer, "acknowledged"))
            if node is None:
                raise StoreUnavailable(f"{self.where}: no node serves customer {customer}")
            nodes = [node]
        # Every primary (a check): WAIT alone, with no write of its own to wait for,
        # answers how many replicas are connected and in step.
        commands: list[tuple[Any, ...]] = [("WAIT", self.min_replicas, wait_ms)]
        if customer is not None:
            commands.insert(0, ("INCR", self._ckey(customer, "acknowledged")))
        fewest: int | None = None
        for node in nodes:
            connection = node.acquire_connection()
            try:
                await node.disconnect_if_needed(connection)  # one to a primary replaced
                await self._guard(connection.connect())  # type: ignore[no-untyped-call]
                await self._guard(
                    connection.send_packed_command(connection.pack_commands(commands))
                )
                replies = [await self._guard(connection.read_response()) for _ in commands]
            finally:
                node.release(connection)
            count = int(replies[-1])
            fewest = count if fewest is None else min(fewest, count)
        return fewest or 0
