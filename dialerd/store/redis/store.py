"""The Redis backend of the ``Store`` port: shared state for several dialerd instances.

Every multi-key change is one Lua script (``dialerd/store/redis/scripts/*.lua``, each
prefixed with ``common.lua``), so a crash can never leave half a transition behind. Keys all
start with ``<prefix>:``; the scripts build them from the prefix, so this layout is for a
single Redis (or a primary with replicas), not Redis Cluster.

Layout (``P`` = prefix):

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
slot). ``finish_attempt`` decides with ``place_after`` and ends the campaigncall and
writes the decision in one script that refuses a target whose version changed.

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

import functools
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Sequence
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit, urlunsplit

import anyio
import msgspec
import redis.asyncio
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dialerd.core import dialed
from dialerd.core.abandonment import DayCount
from dialerd.core.quotas import Usage
from dialerd.core.targets import (
    CallingRules,
    Claim,
    Held,
    NumberState,
    Placement,
    Queue,
    RetryRule,
    day_of,
    decide_claim,
    exhausted,
    new_attempt,
    place_after,
    place_new,
    with_skipped,
)
from dialerd.insight import TargetCounts
from dialerd.model import (
    Address,
    Campaign,
    Campaigncall,
    CampaigncallResult,
    CampaigncallStatus,
    CampaignStatus,
    DncNumber,
    Outdial,
    OutdialTarget,
    Outplan,
    Page,
    TargetStatus,
    format_time,
    new_id,
)
from dialerd.store.base import (
    MAX_PAGE_SIZE,
    AttemptPlan,
    CampaignChanged,
    CampaignNotRunning,
    Conflict,
    Fence,
    FinishResult,
    InUse,
    LeaseLost,
    StoreError,
    StoreUnavailable,
)
from dialerd.store.documents import (
    CAMPAIGN,
    CAMPAIGNCALL,
    NO_GUARD,
    OUTPLAN,
    Guard,
    Kind,
    ResourceMethods,
    encode,
    page_limit,
)

R = TypeVar("R")
D = TypeVar("D", bound=Campaign | Outplan | Outdial | Campaigncall)
R_ = TypeVar("R_", Campaign, Outplan, Outdial)

# The key layout this code reads and writes (``P:layout``); older layouts are migrated
# by ``open``.
LAYOUT: Final = 2
# How many rounds (a claim script call, and a write of up to 100 decisions) one
# start_attempt makes at most before it answers None ("nothing claimed now"): it goes on
# deciding the ready targets in order until one is dialable, as the SQLite claim does.
MAX_ROUNDS: Final = 10_000
# How many plans of start_attempts one claim script call takes at most.
CLAIMS_PER_CALL: Final = 100
# How many times finish_attempt decides again when the target changed in between.
FINISH_ATTEMPTS: Final = 10
MIGRATE_CHUNK: Final = 1000
# Expired lock fields one prune script call deletes.
PRUNE_CHUNK: Final = 500
# Waiting targets one promote script call moves (promote.lua's STEP).
PROMOTE_STEP: Final = 1000
# How many claims this instance remembers (what the claim left of the target) so that
# finishing them needs no read; an attempt finished elsewhere is simply read.
CLAIMS_KEPT: Final = 10_000
# Targets per script call of create_targets (a few tens of ms of Redis time each); bigger
# batches are staged, then published.
IMPORT_CHUNK: Final = 2000
STAGING_TTL_SECONDS: Final = 24 * 3600
DISCARD_CHUNK: Final = 1000
# How long a failed import may spend removing what it wrote before giving up.
DISCARD_SECONDS: Final = 30
DELETE_ATTEMPTS: Final = 5
SCRIPTS: Final = (
    "create",
    "update",
    "delete",
    "page",
    "members",
    "targets",
    "publish",
    "discard",
    "start",
    "promote",
    "place",
    "answer",
    "attempt",
    "finish",
    "migrate",
    "delete_target",
    "lease",
    "release",
    "dnc",
    "dialing",
    "prune",
)
CONFLICT_MARK: Final = "DIALERD_CONFLICT "
LEASE_LOST_MARK: Final = "DIALERD_LEASE_LOST "
NOT_RUNNING_MARK: Final = "DIALERD_NOT_RUNNING "
CHANGED_MARK: Final = "DIALERD_CHANGED "
UNAVAILABLE_REPLIES: Final = ("OOM", "READONLY", "BUSY", "LOADING", "MASTERDOWN", "NOREPLICAS")

# The claim script's four arguments of a decided claim, when there is none.
_UNCHOSEN: Final = ("", "", "", "", "", "")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
_decode_target = msgspec.json.Decoder(OutdialTarget).decode
_decode_dnc = msgspec.json.Decoder(DncNumber).decode


def micros(moment: datetime) -> int:
    """Microseconds since the Unix epoch: exact in a sorted-set score (a double)."""
    return (moment - _EPOCH) // _MICROSECOND


@functools.lru_cache(maxsize=4096)
def micros_of_stamp(stamp: str) -> int:
    """``micros`` of a reference timestamp string (imports often share one)."""
    try:
        moment = datetime(
            int(stamp[0:4]),
            int(stamp[5:7]),
            int(stamp[8:10]),
            int(stamp[11:13]),
            int(stamp[14:16]),
            int(stamp[17:19]),
            int(stamp[20:26]),
            tzinfo=UTC,
        )
    except ValueError as error:
        raise StoreError(
            f"timestamp {stamp!r} is not 'YYYY-MM-DD HH:MM:SS.ffffff' ({error})"
        ) from error
    return micros(moment)


def public_url(url: str) -> str:
    """The Redis URL without its password, fit for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))


def _max_counts_arg(max_try_counts: Sequence[int]) -> str:
    """The outplan's ``max_try_count_0..4`` as one script argument."""
    return ",".join(str(int(count)) for count in max_try_counts)


def _max_bound(page_token: str) -> str:
    """The lexical upper bound of a listing page: strictly below the token."""
    return f"({page_token}" if page_token else "+"


def _from_micros(value: bytes | str | int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(value))


PlacementArgs = tuple[str, int, int, int | str, int, str]


def _placement_args(placement: Placement, *, deleted: bool = False) -> PlacementArgs:
    """A placement as the scripts store it: the queue letter (which index: 'r' ready,
    'w' waiting, 'p' progressing, 'n' idle with nothing to dial, 'd' done and held by
    the rules, '' none), touched and due (microseconds), until (microseconds or ''),
    slot and held."""
    letter = ""
    if deleted:
        letter = ""
    elif placement.queue == Queue.READY:
        letter = "r"
    elif placement.queue == Queue.WAITING:
        letter = "w"
    elif placement.status == TargetStatus.PROGRESSING:
        letter = "p"
    elif placement.status == TargetStatus.IDLE:
        letter = "n"
    elif placement.status == TargetStatus.DONE and placement.held:
        letter = "d"
    until = "" if placement.until is None else micros(placement.until)
    return (
        letter,
        micros(placement.touched),
        micros(placement.due),
        until,
        placement.slot,
        placement.held.value,
    )


def _stored_placement(
    status: TargetStatus,
    queue: Queue,
    fields: Sequence[bytes | None],
    default: datetime,
) -> Placement:
    """A placement from its stored fields (touched, due, until, slot, held)."""
    touched, due, until, slot, held = fields
    moment = _from_micros(touched) if touched else default
    return Placement(
        status=status,
        queue=queue,
        touched=moment,
        due=_from_micros(due) if due else moment,
        until=_from_micros(until) if until else None,
        slot=int(slot) if slot not in (None, b"") else -1,
        held=Held(held.decode()) if held else Held.NONE,
    )


def _target_row(target: OutdialTarget) -> tuple[str | int, ...]:
    """What targets.lua needs to store one target and index it: the placement is
    the one ``dialerd.core.targets.place_new`` decides."""
    deleted = target.tm_delete is not None
    listed = "" if deleted else f"{target.tm_create}|{target.id}"
    placement = _placement_args(place_new(target), deleted=deleted)
    return (target.id, target.outdial_id, encode(target).decode(), listed, *placement)


def _held_target(
    body: bytes | OutdialTarget, queue: bytes | None, due: bytes | None, held: bytes | None
) -> OutdialTarget:
    """A stored target with why the rules hold it (``hold_reason``, and ``tm_next_try``
    while it waits), read from its placement fields; ``body`` is the target itself when
    the caller knows it (it wrote that body)."""
    target = body if isinstance(body, OutdialTarget) else _decode_target(body)
    if not held:
        return target
    next_try = format_time(_from_micros(due)) if queue == b"w" and due else ""
    return msgspec.structs.replace(target, hold_reason=held.decode(), tm_next_try=next_try)


def _settled(
    target: OutdialTarget, status: TargetStatus, stamp: str, counts: Sequence[int] | None = None
) -> OutdialTarget:
    """The target once a decision is written (at ``stamp``)."""
    changed = msgspec.structs.replace(target, status=status, tm_update=stamp)
    if counts is not None:
        changed = msgspec.structs.replace(
            changed,
            try_count_0=counts[0],
            try_count_1=counts[1],
            try_count_2=counts[2],
            try_count_3=counts[3],
            try_count_4=counts[4],
        )
    return changed


def _settled_body(target: OutdialTarget, status: TargetStatus, stamp: str) -> bytes:
    """The target's body once a decision is written (at ``stamp``)."""
    return encode(_settled(target, status, stamp))


class RedisStore(ResourceMethods):
    """The ``Store`` port on one Redis server."""

    backend = "redis"

    def __init__(
        self,
        *,
        url: str,
        prefix: str,
        pool_size: int,
        timeout: float,
        import_chunk: int = IMPORT_CHUNK,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.pool_size = pool_size
        self.timeout = timeout
        self.import_chunk = import_chunk
        self._client: redis.asyncio.Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}
        # campaigncall id -> what attempt.lua would read while it is active.
        # Per claim: the attempt, then the target's version and body after the claim and
        # its placement before (as attempt.lua reads them).
        self._claims: OrderedDict[str, tuple[Campaigncall, list[bytes]]] = OrderedDict()

    # -- connection -------------------------------------------------------------------
    async def open(self) -> None:
        """Connect, check the server answers and load the scripts."""
        if self._client is not None:
            return
        try:
            pool = redis.asyncio.BlockingConnectionPool.from_url(
                self.url,
                max_connections=self.pool_size,
                timeout=self.timeout,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
            )
        except ValueError as error:
            raise StoreError(f"redis URL {public_url(self.url)} is not valid: {error}") from error
        client = redis.asyncio.Redis(connection_pool=pool)
        common = self._source("common")
        scripts = {
            name: client.register_script(common + "\n" + self._source(name)) for name in SCRIPTS
        }
        try:
            await self._guard(client.ping())
            for script in scripts.values():
                await self._guard(client.script_load(script.script))
            self._client, self._scripts = client, scripts
            await self._migrate()
        except BaseException:
            self._client = None
            await client.aclose(close_connection_pool=True)
            raise
        await self._finish_dnc_imports()

    async def close(self) -> None:
        """Close every pooled connection. Idempotent."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose(close_connection_pool=True)

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless Redis answers now."""
        await self._guard(self._connected().ping())

    async def _migrate(self) -> None:
        """Bring the data to layout ``LAYOUT`` (key ``P:layout``; absent = layout 1, or
        a new store).

        Layout 1 -> 2: the idle targets move from ``fresh`` / ``retry`` to ``ready`` /
        ``waiting`` (a retried target is due its last end plus the longest
        ``try_interval`` of the outplans of the campaigns dialing its outdial). Every
        step is idempotent, so instances opening at once, or one interrupted, finish it.
        Run it with no instance of an older version still writing.
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
        pattern = _glob_escape(self.prefix)
        outdials: set[str] = set()
        for kind in ("fresh", "retry", "progressing"):
            async for found in client.scan_iter(match=f"{pattern}:{kind}:*", count=1000):
                name = found.decode() if isinstance(found, bytes) else str(found)
                outdials.add(name.removeprefix(f"{self.prefix}:{kind}:"))
        intervals = await self._retry_intervals() if outdials else {}
        for outdial_id in sorted(outdials):
            interval = intervals.get(outdial_id, 0) * 1000
            while int(await self._run("migrate", outdial_id, interval, MIGRATE_CHUNK)) > 0:
                pass
        await self._guard(client.set(layout_key, LAYOUT))

    async def _retry_intervals(self) -> dict[str, int]:
        """The longest ``try_interval`` (ms) of the outplans dialing each outdial."""
        client = self._connected()
        intervals: dict[str, int] = {}
        pattern = f"{_glob_escape(self.prefix)}:campaign:*"
        async for found in client.scan_iter(match=pattern, count=1000):
            body = await self._guard(client.hget(found, "b"))
            if body is None:
                continue
            campaign = CAMPAIGN.decode(body.encode() if isinstance(body, str) else body)
            outplan = await self._get(OUTPLAN, None, campaign.outplan_id)
            if outplan is not None:
                intervals[campaign.outdial_id] = max(
                    intervals.get(campaign.outdial_id, 0), outplan.try_interval
                )
        return intervals

    @staticmethod
    def _source(name: str) -> str:
        scripts = resources.files("dialerd.store.redis").joinpath("scripts")
        return scripts.joinpath(f"{name}.lua").read_text("utf-8")

    def _connected(self) -> redis.asyncio.Redis:
        if self._client is None:
            raise StoreError(f"redis store {public_url(self.url)} is not open")
        return self._client

    async def _guard(self, call: Awaitable[R]) -> R:
        """Await a Redis call, turning its failures into the port's errors."""
        where = f"redis store {public_url(self.url)}"
        try:
            return await call
        except (RedisConnectionError, RedisTimeoutError) as error:
            raise StoreUnavailable(f"{where} cannot be reached: {error}") from error
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

    async def _run(self, name: str, *args: Any) -> Any:
        """Run one of the Lua scripts (EVALSHA) with the prefix as its first argument."""
        client = self._connected()
        return await self._guard(
            self._scripts[name](keys=[], args=[self.prefix, *args], client=client)
        )

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    async def _fields(self, key: str, *names: str) -> list[bytes | None]:
        """Some fields of one hash, ``None`` where absent."""
        values = await self._guard(self._connected().hmget(key, list(names)))
        return [value.encode() if isinstance(value, str) else value for value in values]

    # -- resources: the generic steps of ``ResourceMethods`` (and campaigncalls') -------
    async def _create(self, kind: Kind[R_], resource: R_) -> R_:
        member = f"{resource.tm_create}|{resource.id}"
        status = resource.status.value if isinstance(resource, Campaign) else ""
        await self._run(
            "create", kind.name, resource.id, resource.customer_id, member, status, encode(resource)
        )
        return resource

    async def _update(self, kind: Kind[R_], resource: R_, guard: Guard = NO_GUARD) -> R_:
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
            *_fence_args(guard.fence),
            "-" if guard.if_updated is None else f"={guard.if_updated}",
        )
        return resource

    async def _get_raw(
        self, kind: Kind[D], customer_id: str | None, resource_id: str
    ) -> bytes | None:
        body, customer, deleted = await self._fields(
            self._key(kind.name, resource_id), "b", "c", "x"
        )
        if body is None or deleted == b"1":
            return None
        if customer_id is not None and customer != customer_id.encode():
            return None
        return body

    async def _get(self, kind: Kind[D], customer_id: str | None, resource_id: str) -> D | None:
        body = await self._get_raw(kind, customer_id, resource_id)
        return None if body is None else kind.decode(body)

    async def _delete(
        self, kind: Kind[D], customer_id: str, resource_id: str, now: datetime
    ) -> D | None:
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
                "delete", kind.name, resource_id, customer_id, body, encode(deleted)
            )
            if outcome == b"ok":
                return deleted
            if outcome == b"gone":
                return None
            if isinstance(outcome, list):
                raise InUse(kind.name, resource_id, [user.decode() for user in outcome])
        raise StoreUnavailable(
            f"{kind.name} {resource_id} kept changing while being deleted; try again"
        )

    async def _page(
        self, kind: Kind[D], customer_id: str, page_size: int, page_token: str, listing: str = ""
    ) -> Page[D]:
        flat = await self._run(
            "page",
            kind.name,
            listing or f"{kind.name}s:{customer_id}",
            _max_bound(page_token),
            page_limit(page_size),
        )
        return Page(
            result=[kind.decode(body) for body in flat[1:]], next_page_token=flat[0].decode()
        )

    async def campaign_and_outplan(
        self, campaign_id: str
    ) -> tuple[Campaign | None, Outplan | None]:
        """Both in one script call."""
        campaign, outplan = await self._run("dialing", campaign_id)
        return (
            CAMPAIGN.decode(campaign) if campaign else None,
            OUTPLAN.decode(outplan) if outplan else None,
        )

    async def campaigns_with_status(self, statuses: Sequence[CampaignStatus]) -> list[Campaign]:
        """Every not-deleted campaign, of any customer, whose status is one of these."""
        wanted = sorted({CampaignStatus(status).value for status in statuses})
        if not wanted:
            return []
        bodies = await self._run("members", "campaign", *(f"status:{s}" for s in wanted))
        campaigns = [CAMPAIGN.decode(body) for body in bodies]
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
        try:
            async for targets in batches:
                for start in range(0, len(targets), self.import_chunk):
                    chunk = targets[start : start + self.import_chunk]
                    count += len(chunk)
                    await self._insert_targets(batch, chunk)
            if count:
                await self._run("publish", batch)
        except BaseException:
            if count:
                with anyio.move_on_after(DISCARD_SECONDS, shield=True):
                    await self._discard(batch, count)
            raise
        return count

    async def _insert_targets(self, batch: str, targets: Sequence[OutdialTarget]) -> int:
        rows = msgspec.json.encode([_target_row(target) for target in targets])
        return int(await self._run("targets", batch, STAGING_TTL_SECONDS, rows))

    async def _discard(self, batch: str, size: int) -> None:
        """Remove what a failed staged import wrote (best effort: it is invisible anyway)."""
        try:
            for _ in range(size // DISCARD_CHUNK + 2):
                if int(await self._run("discard", batch, DISCARD_CHUNK)) == 0:
                    return
        except StoreError:
            return  # the leftovers stay invisible and are dropped when a claim meets them

    async def get_target(self, outdial_id: str, target_id: str) -> OutdialTarget | None:
        body, outdial, deleted, batch, queue, due, held = await self._fields(
            self._key("target", target_id), "b", "o", "x", "p", "k", "pd", "ph"
        )
        if body is None or deleted == b"1" or outdial != outdial_id.encode():
            return None
        if batch is not None and not await self._guard(
            self._connected().exists(self._key("imported", batch.decode()))
        ):
            return None
        return _held_target(body, queue, due, held)

    async def delete_target(
        self, outdial_id: str, target_id: str, now: datetime
    ) -> OutdialTarget | None:
        """Soft-delete a target; raise ``Conflict`` while it is ``progressing``."""
        body = await self._run("delete_target", outdial_id, target_id, format_time(now))
        return None if body is None else _decode_target(body)

    async def list_targets(
        self, outdial_id: str, page_size: int = MAX_PAGE_SIZE, page_token: str = ""
    ) -> Page[OutdialTarget]:
        flat = await self._run(
            "page", "target", f"targets:{outdial_id}", _max_bound(page_token), page_limit(page_size)
        )
        # Each target comes with its queue letter, due and held (page.lua).
        rows = flat[1:]
        return Page(
            result=[_held_target(*rows[n : n + 4]) for n in range(0, len(rows), 4)],
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

    # -- the engine's atomic steps ----------------------------------------------------------
    async def start_attempt(self, plan: AttemptPlan) -> Campaigncall | None:
        """Claim the next eligible target of the campaign's outdial and create its attempt
        (``start_attempts`` of this one plan)."""
        claimed = await self.start_attempts((plan,))
        return claimed[0] if claimed else None

    async def start_attempts(self, plans: Sequence[AttemptPlan]) -> list[Campaigncall]:
        """The plans' claims, in order, until one finds no target ready.

        One script call claims up to ``CLAIMS_PER_CALL`` plans in the common case (each
        head's placement names a slot with tries left, and its number is a clear ``tel``
        number). When a head is not that, the script answers the claims made so far and
        hands the head and up to 99 ready targets behind it to ``decide_claim``, in
        order, with what the store knows of every reading of their numbers (read here:
        the claim re-checks the one it dials); the placements decided for those before
        the first dialable one are written in one script call that applies each only to
        the very target it was made on (same version, still ready), and the dialable one
        is claimed by the next claim call (which goes on with the plans after it),
        re-checked the same way. When more waiting targets are due than one call moves,
        they are all moved first (``promote.lua``), so the head is the one SQLite
        takes; a call that steps over a thousand staged targets is followed by one that
        goes on from there. Each plan goes on until a target is claimed or none is ready
        (at most ``MAX_ROUNDS`` rounds).
        """
        if not plans:
            return []
        first = plans[0]
        stamp = format_time(first.now)
        now = micros(first.now)
        outdial_id = first.campaign.outdial_id
        customer_id = first.campaign.customer_id
        region = dialed.region_of(first.outplan.source)
        # The short cut (the placement's slot) holds only when no calling hours apply:
        # those the core alone can tell ('' disables it: every head is decided here).
        rules = first.rules
        short_cut = rules is None or rules.hours is None
        limits = _max_counts_arg(first.outplan.max_try_counts) if short_cut else ""
        fence = _fence_args(first.fence)
        daily = "" if rules is None or rules.daily_attempts is None else rules.daily_attempts
        common = (now, limits, *fence, "0" if rules is None else "1", daily, day_of(first.now))
        placeholders = [encode(_placeholder_campaigncall(plan, stamp)) for plan in plans]
        claimed: list[Campaigncall] = []
        chosen: tuple[str | int | bytes, ...] = _UNCHOSEN
        resume: str | bytes = ""
        rounds = 0
        while len(claimed) < len(plans) and rounds < MAX_ROUNDS:
            rounds += 1
            at = len(claimed)
            bodies = placeholders[at : at + CLAIMS_PER_CALL]
            try:
                reply = await self._run("start", bodies[0], *common, *chosen, resume, *bodies[1:])
            except CampaignNotRunning:
                if not claimed:
                    raise
                break  # stopped since the claims before: the list ends there
            kind, heads, claims = reply
            chosen, resume = _UNCHOSEN, ""
            for claim in claims:
                campaigncall = CAMPAIGNCALL.decode(claim[0])
                self._claims[campaigncall.id] = (campaigncall, [claim[2], claim[1], *claim[3:8]])
                claimed.append(campaigncall)
            if claims:
                rounds = 0
            if len(self._claims) > CLAIMS_KEPT:
                for _ in range(len(self._claims) - CLAIMS_KEPT):
                    self._claims.popitem(last=False)
            if kind == b"none":
                break
            if kind == b"promote":
                while await self._run("promote", outdial_id, now) >= PROMOTE_STEP:
                    pass
                continue
            if kind == b"more":
                resume = heads[0]
                continue
            if kind != b"decide":
                continue  # all claimed, the decided target changed, or ask again
            plan = plans[len(claimed)]
            read = [(head, _decode_target(head[1])) for head in heads]
            known = await self._number_states(
                customer_id,
                [n for _, target in read for n in dialed.numbers_of(target.destinations, region)],
                with_rules=plan.rules is not None,
                day=day_of(plan.now),
            )
            # The heads in order: the first the core finds dialable is claimed, those
            # before it take the placements the core decided.
            placed: list[str | int | bytes] = []
            for head, target in read:
                target_id, version = head[0].decode(), head[2].decode()
                placement = _stored_placement(target.status, Queue.READY, head[3:8], plan.now)
                decision = decide_claim(
                    target,
                    placement,
                    plan.outplan.max_try_counts,
                    plan.now,
                    rules=plan.rules,
                    numbers=known,
                    region=region,
                )
                if isinstance(decision, Claim):
                    address = target.destinations[decision.slot]
                    assert address is not None  # the core dials only a slot with one
                    chosen = (
                        target_id,
                        decision.slot,
                        decision.try_count,
                        version,
                        encode(list(dialed.readings(address.target, region))),
                        encode(list(decision.skipped)),
                    )
                    break
                decided = with_skipped(target, decision.skipped)
                placed += [
                    target_id,
                    version,
                    _settled_body(decided, decision.status, stamp),
                    *_placement_args(decision),
                ]
            if placed:
                await self._run("place", *placed)
        return claimed

    async def _number_states(
        self, customer_id: str, numbers: Sequence[str], *, with_rules: bool, day: str
    ) -> dict[str, NumberState]:
        """What the store knows of these numbers (E.164 readings) for ``decide_claim``:
        listed; with rules, locked until and attempts on ``day``."""
        unique = list(dict.fromkeys(numbers))
        if not unique:
            return {}
        client = self._connected()
        async with client.pipeline(transaction=False) as pipe:
            pipe.smismember(self._key("dnc", customer_id), unique)
            if with_rules:
                pipe.hmget(self._key("locks", customer_id), unique)
                pipe.hmget(self._key("attempts", customer_id, day), unique)
            replies = await self._guard(pipe.execute())
        listed: list[Any] = replies[0]
        locks: list[Any] = replies[1] if with_rules else [b""] * len(unique)
        today: list[Any] = replies[2] if with_rules else [0] * len(unique)
        return {
            number: NumberState(
                listed=bool(listed[n]),
                locked_until=_from_micros(locks[n]) if locks[n] else None,
                attempts_today=int(today[n] or 0),
            )
            for n, number in enumerate(unique)
        }

    async def mark_answered(
        self, campaigncall_id: str, now: datetime, *, fence: Fence | None = None
    ) -> Campaigncall | None:
        """``dialing`` -> ``progressing``; ``None`` if the attempt is not ``dialing``."""
        body = await self._run("answer", campaigncall_id, format_time(now), *_fence_args(fence))
        return None if body is None else CAMPAIGNCALL.decode(body)

    async def finish_attempt(
        self,
        campaigncall_id: str,
        result: CampaigncallResult,
        reason: str,
        rule: RetryRule,
        now: datetime,
        *,
        fence: Fence | None = None,
        give_back_try: bool = False,
        calling_rules: CallingRules | None = None,
    ) -> FinishResult | None:
        """End an active attempt exactly once (behaviour.md §5).

        One script call when this instance made the claim (it remembers the target as
        the claim left it), else two: one reads the attempt and its target.
        ``place_after`` decides; the finish script ends the campaigncall and writes the
        decision in one step, only if the target is still at the version the decision
        was made on (else it is read again and decided again).
        """
        result = CampaigncallResult(result)
        stamp = format_time(now)
        locked_until = calling_rules.lockout_after(reason, now) if calling_rules else None
        remembered = self._claims.pop(campaigncall_id, None)
        for _ in range(FINISH_ATTEMPTS):
            campaigncall: Campaigncall | None = None
            if remembered is not None:
                campaigncall, read = remembered
                remembered = None
            else:
                read = await self._run("attempt", campaigncall_id)
                if read[0] == b"active":
                    campaigncall = CAMPAIGNCALL.decode(read[1])
                read = read[2:]
            version = "-"
            decision: tuple[str | int | bytes, ...] = ("0",)
            written: OutdialTarget | None = None
            lock: bytes | str = ""
            if campaigncall is not None and locked_until is not None:
                lock = encode([micros(locked_until), *await self._readings_of(campaigncall)])
            if campaigncall is not None:
                # read: the target's version, body and placement before the claim.
                version = read[0].decode()
                if read[1]:
                    target = _decode_target(read[1])
                    before = _stored_placement(TargetStatus.IDLE, Queue.READY, read[2:7], now)
                    settled = place_after(
                        target,
                        campaigncall.destination_index,
                        result,
                        rule,
                        now,
                        reason=reason,
                        give_back=give_back_try,
                        before=before,
                    )
                    placement = settled.placement
                    written = _settled(target, placement.status, stamp, settled.try_counts)
                    decision = ("1", encode(written), *_placement_args(placement))
            reply = await self._run(
                "finish",
                campaigncall_id,
                result.value,
                reason,
                stamp,
                *_fence_args(fence),
                version,
                lock,
                *decision,
            )
            if reply[0] == b"changed":
                continue
            if reply[0] == b"none":
                return None
            after: OutdialTarget | None = None
            if len(reply) > 2:
                # The body is '' when it is the one written here.
                known = written if written is not None and not reply[2] else reply[2]
                after = _held_target(known, *reply[3:6])
            return FinishResult(
                finished=reply[0] == b"done",
                campaigncall=CAMPAIGNCALL.decode(reply[1]),
                target=after,
            )
        raise StoreUnavailable(
            f"the target of campaigncall {campaigncall_id} kept changing while it was "
            "being finished; try again"
        )

    async def _readings_of(self, campaigncall: Campaigncall) -> tuple[str, ...]:
        """The E.164 readings of the number an attempt dialed, under the dialing rules of
        the outplan it was claimed with (deleted or not), as the claim read it."""
        (body,) = await self._fields(self._key("outplan", campaigncall.outplan_id), "b")
        source = None if body is None else OUTPLAN.decode(body).source
        return dialed.readings(campaigncall.destination.target, dialed.region_of(source))

    async def prune_locks(self, now: datetime) -> int:
        """Drop the number locks that ended by ``now``: each customer's ``locks`` hash is
        read a page at a time and the script deletes a field only if it is still over."""
        client = self._connected()
        pattern = f"{_glob_escape(self.prefix)}:locks:*"
        cutoff = micros(now)
        pruned = 0
        async for found in client.scan_iter(match=pattern, count=1000):
            name = found.decode() if isinstance(found, bytes) else str(found)
            customer_id = name.rsplit(":", 1)[1]
            ended: list[bytes] = []
            async for field, value in client.hscan_iter(name, count=1000):
                if int(value) <= cutoff:
                    ended.append(field)
                if len(ended) >= PRUNE_CHUNK:
                    pruned += await self._run("prune", customer_id, cutoff, *ended)
                    ended = []
            if ended:
                pruned += await self._run("prune", customer_id, cutoff, *ended)
        return pruned

    # -- campaign leases (expiry by the Redis server's clock) ------------------------------
    async def acquire_lease(
        self, campaign_id: str, owner: str, ttl: float, now: datetime
    ) -> Fence | None:
        """Take or renew the campaign's lease; ``now`` is unused (Redis keeps the time)."""
        token = await self._run("lease", campaign_id, owner, max(1, round(ttl * 1000)))
        return None if token is None else Fence(campaign_id, owner, int(token))

    async def release_lease(self, fence: Fence) -> None:
        """Give the lease up at once, if ``fence`` still holds it."""
        await self._run("release", fence.campaign_id, fence.owner, fence.token)

    async def lease_owner(self, campaign_id: str, now: datetime | None = None) -> str | None:
        """The owner of the campaign's valid lease, or None (``now`` is unused)."""
        owner = await self._guard(self._connected().hget(self._key("lease", campaign_id), "owner"))
        if owner is None:
            return None
        return owner.decode() if isinstance(owner, bytes) else str(owner)

    async def count_dialing(self, campaign_id: str) -> int:
        """How many of the campaign's attempts are ``dialing``."""
        return int(await self._guard(self._connected().scard(self._key("dialing", campaign_id))))

    async def add_abandonment(
        self, campaign_id: str, day: str, live: int, abandoned: int
    ) -> DayCount:
        """Add to the campaign's count of ``day`` (two fields of one hash, in one
        MULTI/EXEC); returns the day's new count."""
        key = self._key("abandonment", campaign_id)
        async with self._connected().pipeline(transaction=True) as pipe:
            pipe.hincrby(key, f"{day}:live", int(live))
            pipe.hincrby(key, f"{day}:abandoned", int(abandoned))
            new_live, new_abandoned = await self._guard(pipe.execute())
        return DayCount(day=day, live=int(new_live), abandoned=int(new_abandoned))

    async def abandonment_days(self, campaign_id: str, since: str) -> list[DayCount]:
        """The campaign's counts of ``since`` and later days, oldest first."""
        fields = await self._guard(self._connected().hgetall(self._key("abandonment", campaign_id)))
        days: dict[str, dict[str, int]] = {}
        for field, value in fields.items():
            day, _, kind = (field.decode() if isinstance(field, bytes) else field).partition(":")
            if day >= since:
                days.setdefault(day, {})[kind] = int(value)
        return [
            DayCount(day=day, live=counts.get("live", 0), abandoned=counts.get("abandoned", 0))
            for day, counts in sorted(days.items())
        ]

    async def active_attempts(self, campaign_id: str | None = None) -> list[Campaigncall]:
        """Attempts ``dialing`` or ``progressing`` (of one campaign, or of all)."""
        active = "active" if campaign_id is None else f"active:{campaign_id}"
        bodies = await self._run("members", "campaigncall", active)
        campaigncalls = [CAMPAIGNCALL.decode(body) for body in bodies]
        return sorted(campaigncalls, key=lambda call: (call.tm_create, call.id))

    async def target_counts(self, outdial_id: str, now: datetime) -> TargetCounts:
        """The outdial's targets by what can happen to them next (from its indexes):
        idle and not waiting at ``now`` (ready, due, or with nothing to dial), waiting
        (``due`` later) also by why (``held``), progressing, done (the rest of the
        listing), and done because of the do-not-call list."""
        moment = micros(now)
        reasons = [reason.value for reason in Held if reason != Held.NONE]
        pipe = self._connected().pipeline(transaction=True)
        pipe.zcard(self._key("targets", outdial_id))
        pipe.zcard(self._key("ready", outdial_id))
        pipe.zcount(self._key("waiting", outdial_id), "-inf", moment)
        pipe.zcount(self._key("waiting", outdial_id), f"({moment}", "+inf")
        pipe.scard(self._key("held", outdial_id))
        pipe.scard(self._key("progressing", outdial_id))
        for reason in reasons:
            pipe.zcount(self._key("waiting_held", outdial_id, reason), f"({moment}", "+inf")
        pipe.scard(self._key("done_held", outdial_id, Held.DNC.value))
        total, ready, due, waiting, unplaced, progressing, *by_reason, listed = await self._guard(
            pipe.execute()
        )
        held = {reason: int(count) for reason, count in zip(reasons, by_reason, strict=True)}
        held = {reason: count for reason, count in held.items() if count}
        if int(listed):
            held[Held.DNC.value] = int(listed)
        idle_due = int(ready) + int(due) + int(unplaced)
        return TargetCounts(
            idle_due=idle_due,
            idle_waiting=int(waiting),
            progressing=int(progressing),
            done=max(0, int(total) - idle_due - int(waiting) - int(progressing)),
            held=held,
        )

    async def outdial_exhausted(self, campaign_id: str, outdial_id: str) -> bool:
        """``dialerd.core.targets.exhausted`` from four counts read in one MULTI/EXEC.

        Targets staged by an import not yet published are in the ready and waiting
        indexes already: the outdial is not exhausted while an import is under way."""
        pipe = self._connected().pipeline(transaction=True)
        pipe.zcard(self._key("ready", outdial_id))
        pipe.zcard(self._key("waiting", outdial_id))
        pipe.scard(self._key("progressing", outdial_id))
        pipe.scard(self._key("active", campaign_id))
        ready, waiting, progressing, active = await self._guard(pipe.execute())
        return exhausted(
            dialable=int(ready) + int(waiting) > 0,
            progressing=int(progressing) > 0,
            active=int(active) > 0,
        )

    # -- do-not-call numbers --------------------------------------------------------------
    async def add_dnc_numbers(self, entries: Sequence[DncNumber]) -> list[DncNumber]:
        """List the numbers in one script; a listed number keeps its stored entry."""
        if not entries:
            return []
        bodies = await self._run("dnc", "add", *(encode(entry) for entry in entries))
        return [_decode_dnc(body) for body in bodies]

    async def remove_dnc_number(self, customer_id: str, number: str) -> DncNumber | None:
        body = await self._run("dnc", "remove", customer_id, number)
        return None if body is None else _decode_dnc(body)

    async def get_dnc_number(self, customer_id: str, number: str) -> DncNumber | None:
        body = await self._guard(
            self._connected().hget(self._key("dnc_entries", customer_id), number)
        )
        return None if body is None else _decode_dnc(body)

    async def list_dnc_numbers(
        self, customer_id: str, page_size: int = MAX_PAGE_SIZE, page_token: str = ""
    ) -> Page[DncNumber]:
        flat = await self._run(
            "page",
            "dnc",
            f"dnc_listing:{customer_id}",
            _max_bound(page_token),
            page_limit(page_size),
            f"dnc_entries:{customer_id}",
        )
        return Page(
            result=[_decode_dnc(body) for body in flat[1:]], next_page_token=flat[0].decode()
        )

    async def import_dnc_numbers(self, batches: AsyncIterable[Sequence[DncNumber]]) -> int:
        """Stage each batch in a list, publish it, then move it a chunk per script."""
        batch = new_id()
        staged = self._key("dnc_staged", batch)
        count = 0
        try:
            async for entries in batches:
                for start in range(0, len(entries), self.import_chunk):
                    chunk = entries[start : start + self.import_chunk]
                    async with self._connected().pipeline(transaction=True) as pipe:
                        pipe.rpush(staged, *(encode(entry) for entry in chunk))
                        pipe.expire(staged, STAGING_TTL_SECONDS)
                        await self._guard(pipe.execute())
                    count += len(chunk)
            if count:
                await self._run("dnc", "publish", batch)
        except BaseException:
            if count:
                with anyio.move_on_after(DISCARD_SECONDS, shield=True):
                    await self._guard(self._connected().unlink(staged))
            raise
        with anyio.CancelScope(shield=True):
            await self._move_dnc_batch(batch)
        return count

    async def _move_dnc_batch(self, batch: str) -> None:
        while int(await self._run("dnc", "move", batch, self.import_chunk)) > 0:
            pass

    async def _finish_dnc_imports(self) -> None:
        """List the numbers of imports that were published but not moved (their
        importer died)."""
        batches = await self._guard(self._connected().smembers(self._key("dnc_publishing")))
        for batch in batches:
            await self._move_dnc_batch(batch.decode() if isinstance(batch, bytes) else batch)

    async def dnc_listed(self, customer_id: str, numbers: Sequence[str]) -> set[str]:
        unique = list(dict.fromkeys(numbers))
        if not unique:
            return set()
        flags = await self._guard(
            self._connected().smismember(self._key("dnc", customer_id), unique)
        )
        return {number for number, flag in zip(unique, flags, strict=True) if flag}

    # -- quotas (behaviour.md §10, Quotas): sizes of the listing indexes -------------------------
    async def quota_usage(self, customer_id: str, outdial_id: str | None = None) -> Usage:
        def text(value: bytes | str) -> str:
            return value.decode() if isinstance(value, bytes) else value

        client = self._connected()
        pipe = client.pipeline(transaction=False)
        pipe.zcard(self._key("campaigns", customer_id))
        pipe.zrange(self._key("outdials", customer_id), 0, -1)
        pipe.scard(self._key("dnc", customer_id))
        pipe.sunion([self._key("status", "run"), self._key("status", "stopping")])
        campaigns, outdials, dnc_numbers, running = await self._guard(pipe.execute())
        # Listing members are "<tm_create>|<id>".
        outdial_ids = [text(member).rpartition("|")[2] for member in outdials]
        running_ids = sorted(text(member) for member in running)
        pipe = client.pipeline(transaction=False)
        for each in outdial_ids:
            pipe.zcard(self._key("targets", each))
        for each in running_ids:
            pipe.hget(self._key("campaign", each), "c")
        pipe.zcard(self._key("targets", outdial_id or "-"))
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


def _glob_escape(text: str) -> str:
    """``text`` matched literally in a SCAN pattern."""
    return "".join(f"\\{char}" if char in "*?[]\\^" else char for char in text)


def _fence_args(fence: Fence | None) -> tuple[str, str, int | str]:
    """A fence as the three script arguments (campaign, owner, token); '' when unfenced."""
    if fence is None:
        return ("", "", "")
    return (fence.campaign_id, fence.owner, fence.token)


def _placeholder_campaigncall(plan: AttemptPlan, now: str) -> Campaigncall:
    """The attempt as far as it is known before the claim; the script fills in the target."""
    return new_attempt(
        plan.campaign,
        plan.outplan,
        campaigncall_id=plan.campaigncall_id,
        reference_id=plan.reference_id,
        activeflow_id=plan.activeflow_id,
        target_id="",
        destination=Address(),
        slot=0,
        try_count=0,
        now=now,
    )
