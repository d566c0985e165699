"""The Redis backend of the ``Store`` port: shared state for several dialerd instances.

Every multi-key change is one Lua script (``dialerd/store/redis/scripts/*.lua``, each
prefixed with ``common.lua``), so a crash can never leave half a transition behind. Keys all
start with ``<prefix>:``.

Layout 3 (``P`` = prefix). Every key of a customer's data starts with the customer's
tag ``T`` = ``P:{c:<customer>}``: one hash slot per customer, so each script (given ``T``
as KEYS[1], the scripts build every key from it) runs on one node of a Redis Cluster
(``cluster = true``) and one customer's data is on one shard. The names below are written
``P:...`` for short: all of them are ``T:...`` but these four, single keys of their own:
``P:layout``; ``P:customers``, the registry of every customer with data (written before
the data; what cross-customer reads go over, customer by customer); ``P:where:<id>``,
the customer of a campaign, outplan, outdial or campaigncall (what a lookup by id alone
resolves, cached in the process: a resource never changes customer; a campaigncall's
is written by the claim script in the claim's own step on one server, and after the
claim on a cluster, where the key is on another node; deleted with the campaigncall);
``P:webhooks``.
The sets that spanned customers in layout 2 (``status``, ``active``, ``dnc_publishing``,
the events' delivered positions and counts) are per customer; ``open`` migrates layout 2
(``migration.py``).

- ``P:<kind>:<id>``: a hash per resource: ``b`` body (JSON), ``c`` customer, ``l`` its
  listing member, ``s`` status, ``x`` = "1" once deleted; targets add ``o`` outdial,
  ``m`` queue member, ``p`` the staged import they came with, ``v`` a version (+1 on
  every write of the target), the ``Placement`` that ``dialerd.core.targets`` decided
  (``pt`` touched and ``pd`` due in microseconds, ``pu`` until or '', ``ps`` slot,
  ``ph`` held; ``k`` the queue letter: ``r`` ready, ``w`` waiting, ``p`` progressing,
  ``n`` idle with nothing to dial, '' none) and, while progressing, the placement it had
  before the claim (``bt`` ``bd`` ``bu`` ``bs`` ``bh``: a try given back goes there).
- ``P:<kind>s:<customer>`` (and ``P:campaigncalls:<customer>:<campaign>``,
  ``P:targets:<outdial>``): listings, sorted sets of ``"<tm_create>|<id>"`` at score 0,
  read newest first by lexical range.
- ``P:status:<status>``: ids of the campaigns in that status.
- ``P:ready:<outdial>`` (score: touched) and ``P:waiting:<outdial>`` (score: due), in
  microseconds since the epoch; members are ``<15-digit sequence>:<target id>`` so equal
  scores keep creation order. ``P:waiting_held:<outdial>:<held>``: the waiting ones
  again, by why they wait (for ``target_counts``). ``P:held:<outdial>``: ids of the idle
  targets with nothing to dial (counted, never dialed); ``P:done_held:<outdial>:dnc``:
  ids of the targets done because their numbers are on the do-not-call list.
- ``P:locks:<customer>``: number -> until when it is locked after an abandoned call
  (microseconds; written by the finish script for every E.164 reading of the dialed
  number; the ended ones deleted by ``prune_locks``); ``P:attempts:<customer>:<day>``:
  number -> attempts that UTC day (counted by the claim script when a daily limit
  applies; expires three days later by the Redis clock). ``start_attempts`` reads both,
  and the do-not-call set, for every reading of the numbers of the targets it hands to
  ``decide_claim``, and the claim script re-checks those of the number it dials in the
  claim's own step.
- ``P:progressing:<outdial>``, ``P:active:<campaign>``, ``P:dialing:<campaign>``,
  ``P:active``: sets that make counts and exhaustion checks O(1).
- ``P:abandonment:<campaign>``: a hash of the campaign's live answers and abandoned
  calls per day (fields ``<YYYY-MM-DD>:live`` and ``<YYYY-MM-DD>:abandoned``).
- ``P:pacing_prior:<campaign>``: the campaign's pacing prior (JSON of
  ``dialerd.core.predictive.PacingPrior``), replaced at each day's rollover and stop.
- ``P:lease:<campaign>``: the campaign's lease, a hash (``owner``, ``token``) that
  expires with it (PX ttl, the Redis server's clock, so hosts need not agree on the
  time); ``P:lease_token:<campaign>``, the counter its tokens come from, and
  ``P:lease_holder:<campaign>``, its last holder, outlive it. The fenced scripts check
  the lease hash in the same script as their write.
- ``P:dnc:<customer>``: the set of the customer's do-not-call numbers (E.164), what a
  claim checks (``SISMEMBER``); ``P:dnc_entries:<customer>``, a hash number -> entry
  body (JSON); ``P:dnc_listing:<customer>``, the listing (``"<tm_create>|<number>"``).
  ``import_dnc_numbers`` stages entries in the list ``P:dnc_staged:<batch>`` (expiring
  like staged targets), publishes by adding the batch to ``P:dnc_publishing`` and then
  moves the list into the three keys a chunk per script; ``open`` finishes the moves a
  dead importer left (``dnc.lua``).
- ``P:layout``: the version of this layout (``LAYOUT``); ``open`` migrates older data.

The scripts evaluate no dialing rule (behaviour.md §4-§6 live in
``dialerd.core.targets``): they keep the indexes and write the decisions made in Python.
A claim (``start.lua``) moves the waiting targets whose due has come to the ready
ones and takes the ready head; when its placement's slot still has a try left under the
outplan (and ``until`` has not passed) it claims it in the same call, else it hands the
head back for ``decide_claim``, whose answer is written only if the target is still at
the version it was read at (``place.lua``, or the claim script given the decided
slot). A tick's claim (``start_attempts_if_unchanged``) passes the campaign's and its
outplan's bodies as the tick read them last, and the claim script checks them first (a
change answers them as stored now, nothing claimed): one script call a tick. The plans
after a call's first go as their ids only. ``finish_attempt`` decides with
``place_after`` and ends the campaigncall and writes the decision in one script that
refuses a target whose version changed (each end packed as one msgpack argument).

``create_targets`` of more than ``import_chunk`` targets writes them in chunks (one
script each, a few tens of ms of Redis time) marked with a batch id (field ``p``): they
are not listed, found or dialed until one more script publishes the batch
(``P:imported:<batch>``). A failed import removes what it wrote; if the importer dies
instead, its marker ``P:import:<batch>`` expires and claims drop the leftovers they meet.
Staged targets sit in the ready and waiting indexes already, so the outdial is not
exhausted while an import is under way.

Every script does bounded work: a claim moves at most 1,000 waiting targets (when more
are due, it answers so and ``promote.lua`` moves them all, 1,000 a call, before
the claim goes on: the head is then the one SQLite takes) and steps over at most 1,000
staged ones (then the next call goes on after the last one) and hands at most 100
targets to the core per call (``start_attempt`` goes on until it claims one or none is
ready, as the SQLite claim does); a listing page
looks at most at 1000 index entries (a page may come back short, with a token to go on
from). ``outdial_exhausted`` and ``target_counts`` read index sizes only.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence
from contextlib import suppress
from datetime import datetime
from typing import Any

import anyio
import msgspec

from dialerd.core.quotas import Usage
from dialerd.model import (
    Campaign,
    Campaigncall,
    CampaigncallStatus,
    CampaignStatus,
    OutdialTarget,
    Outplan,
    Page,
    format_time,
    new_id,
)
from dialerd.store.base import (
    MAX_PAGE_SIZE,
    AsStored,
    AttemptPlan,
    Conflict,
    InUse,
    StoreError,
    StoreUnavailable,
)
from dialerd.store.documents import (
    CAMPAIGN,
    CAMPAIGNCALL,
    NO_GUARD,
    OUTPLAN,
    Document,
    Guard,
    Kind,
    Resource,
    ResourceMethods,
    encode,
    page_limit,
)
from dialerd.store.redis.connection import HELD_SHARE
from dialerd.store.redis.dnc import RedisDoNotCall
from dialerd.store.redis.durable import DurableLedger
from dialerd.store.redis.fields import (
    DELETE_ATTEMPTS,
    DISCARD_AT_OPEN_SECONDS,
    DISCARD_CHUNK,
    DISCARD_SECONDS,
    STAGING_TTL_SECONDS,
    decode_target,
    fence_args,
    held_target,
    max_bound,
    target_row,
)
from dialerd.store.redis.ledger import AS_READ, StaleRead
from dialerd.store.redis.outbox import RedisOutbox
from dialerd.store.redis.priors import RedisPriors

# The campaigns whose latest read is kept for their next claim (``_keep_read``).
READS_KEPT = 10_000


class RedisStore(ResourceMethods, DurableLedger, RedisDoNotCall, RedisPriors, RedisOutbox):
    """The ``Store`` port on one Redis server: every part, on one connection pool."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        # The calls that find a connection at once: the pool's, less those it may keep
        # held for the script calls (``HeldConnections``), which no other command uses.
        held = 0 if self.cluster else self.pool_size // HELD_SHARE
        self.concurrent_calls: int | None = self.pool_size - held
        # campaign id -> the campaign and outplan a tick read last, and their bodies.
        self._reads: dict[str, tuple[Campaign, Outplan, bytes, bytes]] = {}

    # -- resources: the generic steps of ``ResourceMethods`` (and campaigncalls') -------
    async def _create(self, kind: Kind[Resource], resource: Resource) -> Resource:
        member = f"{resource.tm_create}|{resource.id}"
        status = resource.status.value if isinstance(resource, Campaign) else ""
        await self._register(resource.customer_id, resource.id)
        await self._run(
            "create",
            kind.name,
            resource.id,
            resource.customer_id,
            member,
            status,
            encode(resource),
            customer=resource.customer_id,
        )
        return resource

    async def _update(
        self, kind: Kind[Resource], resource: Resource, guard: Guard = NO_GUARD
    ) -> Resource:
        """Replace the stored resource (same id, not deleted) with this one; a campaign
        under the fence and version check, and one written ``run`` only while its
        outplan and outdial exist (``update.lua``)."""
        member = f"{resource.tm_create}|{resource.id}"
        status = resource.status.value if isinstance(resource, Campaign) else ""
        await self._run(
            "update",
            kind.name,
            resource.id,
            resource.customer_id,
            member,
            status,
            encode(resource),
            *fence_args(guard.fence),
            "-" if guard.if_updated is None else f"={guard.if_updated}",
            guard.cause,
            customer=resource.customer_id,
        )
        return resource

    async def _delete(
        self, kind: Kind[Document], customer_id: str, resource_id: str, now: datetime
    ) -> Document | None:
        """Soft-delete under the kind's rule (``delete.lua`` checks it in its step)."""
        stamp = format_time(now)
        for _ in range(DELETE_ATTEMPTS):
            body = await self._get_raw(kind, customer_id, resource_id)
            if body is None:
                return None
            current = kind.decode(body)
            if isinstance(current, Campaigncall) and current.status != CampaigncallStatus.DONE:
                raise Conflict(f"campaigncall {resource_id} is active and cannot be deleted")
            # The script deletes only this very body: a status changed meanwhile is seen.
            if isinstance(current, Campaign) and current.status != CampaignStatus.STOP:
                raise Conflict(f"campaign {resource_id} is {current.status.value}: stop it first")
            deleted = msgspec.structs.replace(current, tm_update=stamp, tm_delete=stamp)
            outcome = await self._run(
                "delete",
                kind.name,
                resource_id,
                customer_id,
                body,
                encode(deleted),
                customer=customer_id,
            )
            if outcome == b"ok":
                if kind is CAMPAIGNCALL:
                    # Not read by id again (a deleted one is not found): its where key
                    # goes, else they grow with the attempts (on another node of a
                    # cluster than the campaigncall's, hence apart).
                    await self._guard(self._connected().delete(self._key("where", resource_id)))
                return deleted
            if outcome == b"gone":
                return None
            if isinstance(outcome, list):
                raise InUse(kind.name, resource_id, [user.decode() for user in outcome])
        raise StoreUnavailable(
            f"{kind.name} {resource_id} kept changing while being deleted; try again"
        )

    async def _page(
        self,
        kind: Kind[Document],
        customer_id: str,
        page_size: int,
        page_token: str,
        listing: str = "",
    ) -> Page[Document]:
        flat = await self._run(
            "page",
            kind.name,
            listing or f"{kind.name}s:{customer_id}",
            max_bound(page_token),
            page_limit(page_size),
            customer=customer_id,
        )
        return Page(
            result=[kind.decode(body) for body in flat[1:]], next_page_token=flat[0].decode()
        )

    async def campaign_and_outplan(
        self, campaign_id: str
    ) -> tuple[Campaign | None, Outplan | None]:
        """Both in one script call (their bodies kept for ``start_attempts_if_unchanged``)."""
        customer = await self._customer_of(campaign_id)
        if customer is None:
            return None, None
        campaign, outplan = await self._run("dialing", campaign_id, customer=customer)
        return self._keep_read(campaign_id, campaign or None, outplan or None)

    def _keep_read(
        self, campaign_id: str, campaign_body: bytes | None, outplan_body: bytes | None
    ) -> tuple[Campaign | None, Outplan | None]:
        """The campaign and outplan of these bodies, the bodies kept (the latest
        ``READS_KEPT`` campaigns') for a claim to check they are still stored so."""
        campaign = CAMPAIGN.decode(campaign_body) if campaign_body else None
        outplan = OUTPLAN.decode(outplan_body) if outplan_body else None
        reads = self._reads
        reads.pop(campaign_id, None)
        if campaign is not None and campaign_body and outplan is not None and outplan_body:
            reads[campaign_id] = (campaign, outplan, campaign_body, outplan_body)
            if len(reads) > READS_KEPT:
                del reads[next(iter(reads))]
        return campaign, outplan

    async def start_attempts_if_unchanged(
        self, plans: Sequence[AttemptPlan]
    ) -> list[Campaigncall] | AsStored:
        """One claim script call that first checks the campaign's and its outplan's
        bodies are still those read last (``campaign_and_outplan``), when the plans'
        are those; else read, compare, claim, as on SQLite."""
        if not plans:
            return []
        first = plans[0]
        read = self._reads.get(first.campaign.id)
        if read is None or read[0] != first.campaign or read[1] != first.outplan:
            return await ResourceMethods.start_attempts_if_unchanged(self, plans)
        token = AS_READ.set((read[2], read[3]))
        try:
            return await self.start_attempts(plans)
        except StaleRead as stale:
            return AsStored(*self._keep_read(first.campaign.id, stale.campaign, stale.outplan))
        finally:
            AS_READ.reset(token)

    async def campaigns_with_status(self, statuses: Sequence[CampaignStatus]) -> list[Campaign]:
        """Every not-deleted campaign, of any customer, whose status is one of these."""
        wanted = sorted({CampaignStatus(status).value for status in statuses})
        if not wanted:
            return []
        sets = ("campaign", *(f"status:{s}" for s in wanted))
        campaigns: list[Campaign] = []
        # Each customer's status sets are on its own slot: read customer by customer.
        calls = [(customer, sets) for customer in await self._slots()]
        for bodies in await self._run_each("members", calls):
            campaigns += await self._decoded(CAMPAIGN, bodies)
        return sorted(campaigns, key=lambda campaign: (campaign.tm_create, campaign.id))

    # -- targets --------------------------------------------------------------------------
    async def create_targets(self, targets: Sequence[OutdialTarget]) -> int:
        """Insert targets (all or none); they keep the given order as creation order."""
        if not targets:
            return 0
        if len(targets) <= self.import_chunk:
            return await self._insert_targets("", targets)

        async def chunks() -> AsyncIterator[Sequence[OutdialTarget]]:
            for start in range(0, len(targets), self.import_chunk):
                yield targets[start : start + self.import_chunk]

        return await self.import_targets(chunks())

    async def import_targets(self, batches: AsyncIterable[Sequence[OutdialTarget]]) -> int:
        """Stage each batch (in chunks of ``import_chunk``), then publish them in one step."""
        batch = new_id()
        count = 0
        customer = ""
        try:
            async for targets in batches:
                for start in range(0, len(targets), self.import_chunk):
                    chunk = targets[start : start + self.import_chunk]
                    customer = await self._customer_of_targets(chunk, customer)
                    count += len(chunk)
                    await self._insert_targets(batch, chunk, customer)
            if count:
                await self._run("publish", batch, customer=customer)
        except BaseException:
            if count:
                # Best effort: with the server away what cut the import is raised, and
                # the staged keys stay invisible until they expire (STAGING_TTL_SECONDS).
                with anyio.move_on_after(DISCARD_SECONDS, shield=True), suppress(StoreError):
                    await self._abandon(batch, customer)
                    await self._discard(batch, customer)
            raise
        return count

    async def _customer_of_targets(self, targets: Sequence[OutdialTarget], known: str = "") -> str:
        """The one customer whose outdials these targets are of (an import is one
        customer's: its keys are on one slot)."""
        customers = {known} if known else set()
        for outdial_id in {target.outdial_id for target in targets}:
            customer = await self._customer_of(outdial_id)
            if customer is None:
                raise Conflict(f"outdial {outdial_id} not found; no target was added")
            customers.add(customer)
        if len(customers) != 1:
            raise StoreError("targets of several customers' outdials cannot be added together")
        return customers.pop()

    async def _insert_targets(
        self, batch: str, targets: Sequence[OutdialTarget], customer: str = ""
    ) -> int:
        customer = customer or await self._customer_of_targets(targets)
        # An import's chunk is encoded in a worker thread: not on the event loop.
        if len(targets) > 50:
            rows = await anyio.to_thread.run_sync(_encoded_rows, targets)
        else:
            rows = _encoded_rows(targets)
        return int(await self._run("targets", batch, STAGING_TTL_SECONDS, rows, customer=customer))

    async def _abandon(self, batch: str, customer: str) -> None:
        """Mark a failed staged import abandoned, in one step: its import marker gone
        (its targets stay invisible, and a claim or a new import that meets one drops
        it), its ids kept (no longer expiring) and the batch recorded in the customer's
        ``imports_abandoned``, so that what ``_discard`` has not removed by the time the
        import gives up is removed at the next open (``_discard_abandoned``)."""
        marker = self._ckey(customer, "import", batch)
        async with self._connected().pipeline(transaction=True) as pipe:
            # Not ``pipe.unlink``: a cluster client's splits its keys by slot, unqueued.
            pipe.execute_command("UNLINK", marker)
            pipe.persist(f"{marker}:ids")
            pipe.sadd(self._ckey(customer, "imports_abandoned"), batch)
            await self._guard(pipe.execute())

    async def _discard(self, batch: str, customer: str) -> None:
        """Remove what a failed staged import wrote (best effort: it is invisible anyway),
        then its record (``_abandon``)."""
        try:
            while int(await self._run("discard", batch, DISCARD_CHUNK, customer=customer)):
                pass
            await self._guard(
                self._connected().srem(self._ckey(customer, "imports_abandoned"), batch)
            )
        except StoreError:
            return  # the leftovers stay invisible, and recorded if the abandon was written

    async def _recover(self) -> None:
        await super()._recover()
        # Best effort: on a store error the records stay for the next open.
        with anyio.move_on_after(DISCARD_AT_OPEN_SECONDS), suppress(StoreError):
            await self._discard_abandoned()

    async def _discard_abandoned(self) -> None:
        """Remove what the imports recorded as abandoned left (a stop cut them before
        ``_discard`` was done)."""
        customers = await self._slots()
        if not customers:
            return
        async with self._connected().pipeline(transaction=False) as pipe:
            for customer in customers:
                pipe.smembers(self._ckey(customer, "imports_abandoned"))
            recorded = await self._guard(pipe.execute())
        for customer, batches in zip(customers, recorded, strict=True):
            for batch in sorted(_decoded_text(each) for each in batches):
                await self._discard(batch, customer)

    async def get_target(self, outdial_id: str, target_id: str) -> OutdialTarget | None:
        customer = await self._customer_of(outdial_id)
        if customer is None:
            return None
        body, outdial, deleted, batch, queue, due, held = await self._fields(
            self._ckey(customer, "target", target_id), "b", "o", "x", "p", "k", "pd", "ph"
        )
        if body is None or deleted == b"1" or outdial != outdial_id.encode():
            return None
        if batch is not None and not await self._guard(
            self._connected().exists(self._ckey(customer, "imported", batch.decode()))
        ):
            return None
        return held_target(body, queue, due, held)

    async def delete_target(
        self, outdial_id: str, target_id: str, now: datetime
    ) -> OutdialTarget | None:
        """Soft-delete a target; raise ``Conflict`` while it is ``progressing``."""
        customer = await self._customer_of(outdial_id)
        if customer is None:
            return None
        body = await self._run(
            "delete_target", outdial_id, target_id, format_time(now), customer=customer
        )
        return None if body is None else decode_target(body)

    async def list_targets(
        self, outdial_id: str, page_size: int = MAX_PAGE_SIZE, page_token: str = ""
    ) -> Page[OutdialTarget]:
        customer = await self._customer_of(outdial_id)
        if customer is None:
            return Page(result=[], next_page_token="")
        flat = await self._run(
            "page",
            "target",
            f"targets:{outdial_id}",
            max_bound(page_token),
            page_limit(page_size),
            customer=customer,
        )
        # Each target comes with its queue letter, due and held (page.lua).
        rows = flat[1:]
        return Page(
            result=[held_target(*rows[n : n + 4]) for n in range(0, len(rows), 4)],
            next_page_token=flat[0].decode(),
        )

    # -- campaigncalls --------------------------------------------------------------------
    async def get_campaigncall(
        self, customer_id: str | None, campaigncall_id: str
    ) -> Campaigncall | None:
        return await self._get(CAMPAIGNCALL, customer_id, campaigncall_id)

    async def list_campaigncalls(
        self,
        customer_id: str,
        campaign_id: str | None = None,
        page_size: int = MAX_PAGE_SIZE,
        page_token: str = "",
    ) -> Page[Campaigncall]:
        listing = f"campaigncalls:{customer_id}"
        if campaign_id is not None:
            listing += f":{campaign_id}"
        return await self._page(CAMPAIGNCALL, customer_id, page_size, page_token, listing)

    async def delete_campaigncall(
        self, customer_id: str, campaigncall_id: str, now: datetime
    ) -> Campaigncall | None:
        """Soft-delete a finished campaigncall; raise ``Conflict`` while it is active."""
        return await self._delete(CAMPAIGNCALL, customer_id, campaigncall_id, now)

    # -- quotas (behaviour.md §10, Quotas): sizes of the listing indexes -------------------------
    async def quota_usage(self, customer_id: str, outdial_id: str | None = None) -> Usage:
        def text(value: bytes | str) -> str:
            return value.decode() if isinstance(value, bytes) else value

        # Every key read here is the customer's: one slot, one node of a cluster.
        client = self._connected()
        pipe = client.pipeline(transaction=False)
        pipe.zcard(self._ckey(customer_id, "campaigns", customer_id))
        pipe.zrange(self._ckey(customer_id, "outdials", customer_id), 0, -1)
        pipe.scard(self._ckey(customer_id, "dnc", customer_id))
        pipe.smembers(self._ckey(customer_id, "status", "run"))
        pipe.smembers(self._ckey(customer_id, "status", "stopping"))
        campaigns, outdials, dnc_numbers, run, stopping = await self._guard(pipe.execute())
        running = set(run) | set(stopping)
        # Listing members are "<tm_create>|<id>".
        outdial_ids = [text(member).rpartition("|")[2] for member in outdials]
        running_ids = sorted(text(member) for member in running)
        pipe = client.pipeline(transaction=False)
        for each in outdial_ids:
            pipe.zcard(self._ckey(customer_id, "targets", each))
        for each in running_ids:
            pipe.hget(self._ckey(customer_id, "campaign", each), "c")
        pipe.zcard(self._ckey(customer_id, "targets", outdial_id or "-"))
        *counts, outdial_targets = await self._guard(pipe.execute())
        targets = counts[: len(outdial_ids)]
        owners = counts[len(outdial_ids) :]
        return Usage(
            campaigns=int(campaigns),
            running_campaigns=sum(1 for owner in owners if owner and text(owner) == customer_id),
            outdials=len(outdial_ids),
            targets=sum(int(count) for count in targets),
            dnc_numbers=int(dnc_numbers),
            outdial_targets=0 if outdial_id is None else int(outdial_targets),
        )


def _encoded_rows(targets: Sequence[OutdialTarget]) -> bytes:
    """The rows of targets.lua for these targets, as one JSON array."""
    return msgspec.json.encode([target_row(target) for target in targets])


def _decoded_text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
