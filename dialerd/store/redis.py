"""The Redis backend of the ``Store`` port: shared state for several dialerd instances.

Every multi-key change is one Lua script (``dialerd/store/redis_*.lua``, each prefixed
with ``redis_common.lua``), so a crash can never leave half a transition behind. Keys all
start with ``<prefix>:``; the scripts build them from the prefix, so this layout is for a
single Redis (or a primary with replicas), not Redis Cluster.

Layout (``P`` = prefix):

- ``P:<kind>:<id>``: a hash per resource: ``b`` body (JSON), ``c`` customer, ``l`` its
  listing member, ``s`` status, ``x`` = "1" once deleted; targets add ``o`` outdial,
  ``m`` queue member, ``k`` queue and ``p`` the staged import they came with.
- ``P:<kind>s:<customer>`` (and ``P:campaigncalls:<customer>:<campaign>``,
  ``P:targets:<outdial>``): listings, sorted sets of ``"<tm_create>|<id>"`` at score 0,
  read newest first by lexical range.
- ``P:status:<status>``: ids of the campaigns in that status.
- ``P:fresh:<outdial>`` / ``P:retry:<outdial>``: the idle targets never tried (score:
  ``tm_create``) and retried (score: end of the last attempt), in microseconds since the
  epoch; members are ``<15-digit sequence>:<target id>`` so equal scores keep creation
  order. ``start_attempt`` takes the better of the two heads (behaviour.md §4).
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
  dead importer left (``redis_dnc.lua``).

``create_targets`` of more than ``import_chunk`` targets writes them in chunks (one
script each, a few tens of ms of Redis time) marked with a batch id (field ``p``): they
are not listed, found or dialed until one more script publishes the batch
(``P:imported:<batch>``). A failed import removes what it wrote; if the importer dies
instead, its marker ``P:import:<batch>`` expires and claims drop the leftovers they meet.

Every script does bounded work: a claim steps over at most 64 queued targets that have
no tries left under the outplan (then answers ``None``), ``outdial_exhausted`` looks at
most at ``EXHAUSTED_WINDOW`` idle targets per queue (beyond that it answers "not
exhausted"), and a listing page looks at most at 1000 index entries (a page may come back
short, with a token to go on from).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any, Final, Generic, TypeVar
from urllib.parse import urlsplit, urlunsplit

import anyio
import msgspec
import redis.asyncio
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dialerd.abandonment import DayCount
from dialerd.core.targets import has_destination
from dialerd.insight import TargetCounts
from dialerd.model import (
    NIL_UUID,
    Address,
    Campaign,
    Campaigncall,
    CampaigncallResult,
    CampaigncallStatus,
    CampaignStatus,
    CampaignType,
    DncNumber,
    Outdial,
    OutdialTarget,
    Outplan,
    Page,
    ReferenceType,
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
    LeaseLost,
    StoreError,
    StoreUnavailable,
)

R = TypeVar("R")
D = TypeVar("D", bound=Campaign | Outplan | Outdial | Campaigncall)

# How many idle targets outdial_exhausted looks at in each queue.
EXHAUSTED_WINDOW: Final = 1000
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
    "answer",
    "finish",
    "exhausted",
    "delete_target",
    "lease",
    "release",
    "dnc",
)
CONFLICT_MARK: Final = "DIALERD_CONFLICT "
LEASE_LOST_MARK: Final = "DIALERD_LEASE_LOST "
NOT_RUNNING_MARK: Final = "DIALERD_NOT_RUNNING "
CHANGED_MARK: Final = "DIALERD_CHANGED "
UNAVAILABLE_REPLIES: Final = ("OOM", "READONLY", "BUSY", "LOADING", "MASTERDOWN", "NOREPLICAS")

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
_encode = msgspec.json.Encoder().encode
_decode_target = msgspec.json.Decoder(OutdialTarget).decode
_decode_campaigncall = msgspec.json.Decoder(Campaigncall).decode
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


def _limit(page_size: int) -> int:
    return max(1, min(page_size, MAX_PAGE_SIZE))


def _max_bound(page_token: str) -> str:
    """The lexical upper bound of a listing page: strictly below the token."""
    return f"({page_token}" if page_token else "+"


def _target_row(target: OutdialTarget) -> tuple[str, str, str, str, str, int]:
    """What redis_targets.lua needs to store one target and index it."""
    deleted = target.tm_delete is not None
    queue = ""
    score = 0
    if not deleted and target.status == TargetStatus.PROGRESSING:
        queue = "p"
    elif (
        not deleted
        and target.status == TargetStatus.IDLE
        and any(has_destination(address) for address in target.destinations)
    ):
        tried = any(target.try_counts)
        queue = "r" if tried else "f"
        touched = (target.tm_update or target.tm_create) if tried else target.tm_create
        score = micros_of_stamp(touched)
    listed = "" if deleted else f"{target.tm_create}|{target.id}"
    return (target.id, target.outdial_id, _encode(target).decode(), listed, queue, score)


class _Documents(Generic[D]):
    """How one kind of resource is named and decoded."""

    def __init__(self, kind: str, type_: type[D]) -> None:
        self.kind = kind
        self.decode: Callable[[bytes], D] = msgspec.json.Decoder(type_).decode


class RedisStore:
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
        self._campaigns = _Documents("campaign", Campaign)
        self._outplans = _Documents("outplan", Outplan)
        self._outdials = _Documents("outdial", Outdial)
        self._campaigncalls = _Documents("campaigncall", Campaigncall)

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
        except BaseException:
            await client.aclose(close_connection_pool=True)
            raise
        self._client = client
        self._scripts = scripts
        await self._finish_dnc_imports()

    async def close(self) -> None:
        """Close every pooled connection. Idempotent."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose(close_connection_pool=True)

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless Redis answers now."""
        await self._guard(self._connected().ping())

    @staticmethod
    def _source(name: str) -> str:
        return resources.files("dialerd.store").joinpath(f"redis_{name}.lua").read_text("utf-8")

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

    # -- documents: campaigns, outplans, outdials, campaigncalls ---------------------------
    async def _create(self, documents: _Documents[D], resource: D, status: str = "") -> D:
        member = f"{resource.tm_create}|{resource.id}"
        await self._run(
            "create",
            documents.kind,
            resource.id,
            resource.customer_id,
            member,
            status,
            _encode(resource),
        )
        return resource

    async def _update(
        self,
        documents: _Documents[D],
        resource: D,
        status: str = "",
        fence: Fence | None = None,
        if_updated: str | None = None,
    ) -> D:
        member = f"{resource.tm_create}|{resource.id}"
        await self._run(
            "update",
            documents.kind,
            resource.id,
            resource.customer_id,
            member,
            status,
            _encode(resource),
            *_fence_args(fence),
            "-" if if_updated is None else f"={if_updated}",
        )
        return resource

    async def _get_raw(
        self, documents: _Documents[D], customer_id: str | None, resource_id: str
    ) -> bytes | None:
        body, customer, deleted = await self._fields(
            self._key(documents.kind, resource_id), "b", "c", "x"
        )
        if body is None or deleted == b"1":
            return None
        if customer_id is not None and customer != customer_id.encode():
            return None
        return body

    async def _get(
        self, documents: _Documents[D], customer_id: str | None, resource_id: str
    ) -> D | None:
        body = await self._get_raw(documents, customer_id, resource_id)
        return None if body is None else documents.decode(body)

    async def _delete(
        self, documents: _Documents[D], customer_id: str, resource_id: str, now: datetime
    ) -> D | None:
        stamp = format_time(now)
        for _ in range(DELETE_ATTEMPTS):
            body = await self._get_raw(documents, customer_id, resource_id)
            if body is None:
                return None
            current = documents.decode(body)
            if isinstance(current, Campaigncall) and current.status != CampaigncallStatus.DONE:
                raise Conflict(f"campaigncall {resource_id} is active and cannot be deleted")
            # The script deletes only this very body: a status changed meanwhile is seen.
            if isinstance(current, Campaign) and current.status != CampaignStatus.STOP:
                raise Conflict(f"campaign {resource_id} is {current.status.value}: stop it first")
            deleted = msgspec.structs.replace(current, tm_update=stamp, tm_delete=stamp)
            outcome = await self._run(
                "delete", documents.kind, resource_id, customer_id, body, _encode(deleted)
            )
            if outcome == b"ok":
                return deleted
            if outcome == b"gone":
                return None
        raise StoreUnavailable(
            f"{documents.kind} {resource_id} kept changing while being deleted; try again"
        )

    async def _page(
        self, documents: _Documents[D], listing: str, page_size: int, page_token: str
    ) -> Page[D]:
        flat = await self._run(
            "page", documents.kind, listing, _max_bound(page_token), _limit(page_size)
        )
        return Page(
            result=[documents.decode(body) for body in flat[1:]], next_page_token=flat[0].decode()
        )

    # -- campaigns ----------------------------------------------------------------------
    async def create_campaign(self, campaign: Campaign) -> Campaign:
        return await self._create(self._campaigns, campaign, campaign.status.value)

    async def get_campaign(self, customer_id: str | None, campaign_id: str) -> Campaign | None:
        return await self._get(self._campaigns, customer_id, campaign_id)

    async def update_campaign(
        self, campaign: Campaign, *, fence: Fence | None = None, if_updated: str | None = None
    ) -> Campaign:
        """Replace the stored campaign (same id, not deleted) with this one."""
        return await self._update(
            self._campaigns, campaign, campaign.status.value, fence, if_updated
        )

    async def delete_campaign(
        self, customer_id: str, campaign_id: str, now: datetime
    ) -> Campaign | None:
        return await self._delete(self._campaigns, customer_id, campaign_id, now)

    async def list_campaigns(
        self, customer_id: str, page_size: int = MAX_PAGE_SIZE, page_token: str = ""
    ) -> Page[Campaign]:
        return await self._page(self._campaigns, f"campaigns:{customer_id}", page_size, page_token)

    async def campaigns_with_status(self, statuses: Sequence[CampaignStatus]) -> list[Campaign]:
        """Every not-deleted campaign, of any customer, whose status is one of these."""
        wanted = sorted({CampaignStatus(status).value for status in statuses})
        if not wanted:
            return []
        bodies = await self._run("members", "campaign", *(f"status:{s}" for s in wanted))
        campaigns = [self._campaigns.decode(body) for body in bodies]
        return sorted(campaigns, key=lambda campaign: (campaign.tm_create, campaign.id))

    # -- outplans -----------------------------------------------------------------------
    async def create_outplan(self, outplan: Outplan) -> Outplan:
        return await self._create(self._outplans, outplan)

    async def get_outplan(self, customer_id: str | None, outplan_id: str) -> Outplan | None:
        return await self._get(self._outplans, customer_id, outplan_id)

    async def update_outplan(self, outplan: Outplan) -> Outplan:
        return await self._update(self._outplans, outplan)

    async def delete_outplan(
        self, customer_id: str, outplan_id: str, now: datetime
    ) -> Outplan | None:
        return await self._delete(self._outplans, customer_id, outplan_id, now)

    async def list_outplans(
        self, customer_id: str, page_size: int = MAX_PAGE_SIZE, page_token: str = ""
    ) -> Page[Outplan]:
        return await self._page(self._outplans, f"outplans:{customer_id}", page_size, page_token)

    # -- outdials and their targets -------------------------------------------------------
    async def create_outdial(self, outdial: Outdial) -> Outdial:
        return await self._create(self._outdials, outdial)

    async def get_outdial(self, customer_id: str | None, outdial_id: str) -> Outdial | None:
        return await self._get(self._outdials, customer_id, outdial_id)

    async def update_outdial(self, outdial: Outdial) -> Outdial:
        return await self._update(self._outdials, outdial)

    async def delete_outdial(
        self, customer_id: str, outdial_id: str, now: datetime
    ) -> Outdial | None:
        return await self._delete(self._outdials, customer_id, outdial_id, now)

    async def list_outdials(
        self, customer_id: str, page_size: int = MAX_PAGE_SIZE, page_token: str = ""
    ) -> Page[Outdial]:
        return await self._page(self._outdials, f"outdials:{customer_id}", page_size, page_token)

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
        body, outdial, deleted, batch = await self._fields(
            self._key("target", target_id), "b", "o", "x", "p"
        )
        if body is None or deleted == b"1" or outdial != outdial_id.encode():
            return None
        if batch is not None and not await self._guard(
            self._connected().exists(self._key("imported", batch.decode()))
        ):
            return None
        return _decode_target(body)

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
            "page", "target", f"targets:{outdial_id}", _max_bound(page_token), _limit(page_size)
        )
        return Page(
            result=[_decode_target(body) for body in flat[1:]], next_page_token=flat[0].decode()
        )

    # -- campaigncalls --------------------------------------------------------------------
    async def get_campaigncall(
        self, customer_id: str | None, campaigncall_id: str
    ) -> Campaigncall | None:
        return await self._get(self._campaigncalls, customer_id, campaigncall_id)

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
        return await self._page(self._campaigncalls, listing, page_size, page_token)

    async def delete_campaigncall(
        self, customer_id: str, campaigncall_id: str, now: datetime
    ) -> Campaigncall | None:
        """Soft-delete a finished campaigncall; raise ``Conflict`` while it is active."""
        return await self._delete(self._campaigncalls, customer_id, campaigncall_id, now)

    # -- the engine's atomic steps ----------------------------------------------------------
    async def start_attempt(self, plan: AttemptPlan) -> Campaigncall | None:
        """Claim the next eligible target of the campaign's outdial and create its attempt."""
        cutoff = micros(plan.now) - plan.outplan.try_interval * 1000
        body = await self._run(
            "start",
            _encode(_placeholder_campaigncall(plan, format_time(plan.now))),
            cutoff,
            _max_counts_arg(plan.outplan.max_try_counts),
            *_fence_args(plan.fence),
        )
        return None if body is None else _decode_campaigncall(body)

    async def mark_answered(
        self, campaigncall_id: str, now: datetime, *, fence: Fence | None = None
    ) -> Campaigncall | None:
        """``dialing`` -> ``progressing``; ``None`` if the attempt is not ``dialing``."""
        body = await self._run("answer", campaigncall_id, format_time(now), *_fence_args(fence))
        return None if body is None else _decode_campaigncall(body)

    async def finish_attempt(
        self,
        campaigncall_id: str,
        result: CampaigncallResult,
        reason: str,
        max_try_counts: tuple[int, int, int, int, int],
        now: datetime,
        *,
        fence: Fence | None = None,
        give_back_try: bool = False,
    ) -> FinishResult | None:
        """End an active attempt exactly once (behaviour.md §5)."""
        reply = await self._run(
            "finish",
            campaigncall_id,
            CampaigncallResult(result).value,
            reason,
            _max_counts_arg(max_try_counts),
            format_time(now),
            micros(now),
            *_fence_args(fence),
            "1" if give_back_try else "0",
        )
        if reply[0] == b"none":
            return None
        target_body = reply[2] if len(reply) > 2 else None
        return FinishResult(
            finished=reply[0] == b"done",
            campaigncall=_decode_campaigncall(reply[1]),
            target=None if target_body is None else _decode_target(target_body),
        )

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
        campaigncalls = [_decode_campaigncall(body) for body in bodies]
        return sorted(campaigncalls, key=lambda call: (call.tm_create, call.id))

    async def target_counts(self, outdial_id: str, retry_cutoff: datetime) -> TargetCounts:
        """The outdial's targets by what can happen to them next (from its indexes)."""
        cutoff = micros(retry_cutoff)
        pipe = self._connected().pipeline(transaction=True)
        pipe.zcard(self._key("targets", outdial_id))
        pipe.zcard(self._key("fresh", outdial_id))
        pipe.zcount(self._key("retry", outdial_id), "-inf", cutoff)
        pipe.zcount(self._key("retry", outdial_id), f"({cutoff}", "+inf")
        pipe.scard(self._key("progressing", outdial_id))
        total, fresh, due, waiting, progressing = await self._guard(pipe.execute())
        return TargetCounts(
            idle_due=int(fresh) + int(due),
            idle_waiting=int(waiting),
            progressing=int(progressing),
            done=max(0, int(total) - int(fresh) - int(due) - int(waiting) - int(progressing)),
        )

    async def outdial_exhausted(
        self, campaign_id: str, outdial_id: str, max_try_counts: tuple[int, int, int, int, int]
    ) -> bool:
        """True when behaviour.md §6 says the outdial is exhausted for this campaign."""
        reply = await self._run(
            "exhausted", campaign_id, outdial_id, _max_counts_arg(max_try_counts), EXHAUSTED_WINDOW
        )
        return int(reply) == 1

    # -- do-not-call numbers --------------------------------------------------------------
    async def add_dnc_numbers(self, entries: Sequence[DncNumber]) -> list[DncNumber]:
        """List the numbers in one script; a listed number keeps its stored entry."""
        if not entries:
            return []
        bodies = await self._run("dnc", "add", *(_encode(entry) for entry in entries))
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
            _limit(page_size),
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
                        pipe.rpush(staged, *(_encode(entry) for entry in chunk))
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


def _fence_args(fence: Fence | None) -> tuple[str, str, int | str]:
    """A fence as the three script arguments (campaign, owner, token); '' when unfenced."""
    if fence is None:
        return ("", "", "")
    return (fence.campaign_id, fence.owner, fence.token)


def _placeholder_campaigncall(plan: AttemptPlan, now: str) -> Campaigncall:
    """The attempt as far as it is known before the claim; the script fills in the target."""
    campaign, outplan = plan.campaign, plan.outplan
    is_flow = campaign.type == CampaignType.FLOW
    return Campaigncall(
        id=plan.campaigncall_id,
        customer_id=campaign.customer_id,
        campaign_id=campaign.id,
        outplan_id=outplan.id,
        outdial_id=campaign.outdial_id,
        outdial_target_id="",
        queue_id=campaign.queue_id,
        flow_id=NIL_UUID,
        activeflow_id=plan.activeflow_id,
        reference_type=ReferenceType.FLOW if is_flow else ReferenceType.CALL,
        reference_id=NIL_UUID if is_flow else plan.reference_id,
        status=CampaigncallStatus.DIALING,
        result=CampaigncallResult.NONE,
        source=outplan.source,
        destination=Address(),
        destination_index=0,
        try_count=0,
        tm_create=now,
        tm_update=None,
        tm_delete=None,
    )
