"""The embedded SQLite backend of the ``Store`` port: one file, zero setup, one host.

One connection (WAL, ``synchronous=NORMAL``) is used from one worker thread at a time,
so the engine's coroutines never block the event loop and never race each other inside
SQLite; work queued while the thread is busy goes to it as one batch. Every
multi-step change runs in its own ``BEGIN IMMEDIATE`` transaction.

Which target is dialed next is decided by ``dialerd.core.targets``, not here: each
target row keeps the core's ``Placement`` (``pick`` = its queue, ``touched``, ``due``,
``until``, ``slot``, ``held``) and two partial indexes hold the dialable ones: the ready
targets by ``(outdial_id, touched, seq)`` and the waiting ones by ``(outdial_id, due)``.
A claim moves the waiting targets whose ``due`` has come to the ready ones, reads the
ready head and asks the core what to do with it, in one transaction; its cost does not
grow with the size of the outdial.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterable, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Final, Generic, TypeVar, cast

import anyio
import anyio.to_thread
import msgspec

from dialerd.core import dialed, targets
from dialerd.core.abandonment import DayCount
from dialerd.core.quotas import Usage
from dialerd.core.targets import (
    CallingRules,
    Held,
    NumberState,
    Placement,
    Queue,
    RetryRule,
    day_of,
    place_new,
)
from dialerd.insight import TargetCounts
from dialerd.model import (
    SLOTS,
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
    SkippedDestination,
    TargetStatus,
    format_time,
    parse_time,
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
    ACTIVE,
    CAMPAIGN,
    CAMPAIGNCALL,
    NO_GUARD,
    OUTDIAL,
    OUTPLAN,
    Guard,
    Kind,
    ResourceMethods,
    encode,
    page_limit,
    users,
)
from dialerd.store.sqlite.schema import MIGRATIONS, SCHEMA_VERSION

R = TypeVar("R")
D = TypeVar("D", bound=Campaign | Outplan | Outdial)
R_ = TypeVar("R_", Campaign, Outplan, Outdial)
Item = TypeVar("Item")

BUSY_TIMEOUT_MS: Final = 5000
CACHE_KIB: Final = 64 * 1024
# Seconds a failed or cancelled import may take to drop what it staged.
DISCARD_SECONDS: Final = 30
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)

_decode_address = msgspec.json.Decoder(Address).decode

_TARGET_COLUMNS: Final = (
    "id, outdial_id, name, detail, data, status, "
    "destination_0, destination_1, destination_2, destination_3, destination_4, "
    "try_count_0, try_count_1, try_count_2, try_count_3, try_count_4, "
    "tm_create, tm_update, tm_delete, skipped"
)
# A target is hidden while the import that wrote it is not published yet.
_VISIBLE: Final = "(batch IS NULL OR batch NOT IN (SELECT id FROM pending_batch))"
# Rows of a published import made dialable per transaction: each is short.
PUBLISH_CHUNK: Final = 1000
_PLACEMENT_COLUMNS: Final = "pick, touched, due, until, slot, held"
_INSERT_TARGET: Final = (
    f"INSERT INTO target ({_TARGET_COLUMNS}, {_PLACEMENT_COLUMNS}, batch) "
    f"VALUES ({', '.join('?' * 27)})"
)
# Promote the waiting targets whose due has come (index upkeep, no rule).
_PROMOTE: Final = (
    f"UPDATE target SET pick = {Queue.READY}, held = '' "
    f"WHERE outdial_id = ? AND pick = {Queue.WAITING} AND due <= ?"
)
_READY_HEAD: Final = (
    f"SELECT {_TARGET_COLUMNS}, {_PLACEMENT_COLUMNS}, seq FROM target "
    f"WHERE outdial_id = ? AND pick = {Queue.READY} ORDER BY touched, seq LIMIT 1"
)
# One more attempt to a number today (a row keeps only its latest day).
_COUNT_ATTEMPT: Final = (
    "INSERT INTO number_day (customer_id, number, day, attempts) VALUES (?, ?, ?, 1) "
    "ON CONFLICT (customer_id, number) DO UPDATE SET attempts = "
    "CASE WHEN day = excluded.day THEN attempts + 1 ELSE 1 END, day = excluded.day"
)
_LOCK_NUMBER: Final = (
    "INSERT INTO number_lock (customer_id, number, locked_until) VALUES (?, ?, ?) "
    "ON CONFLICT (customer_id, number) DO UPDATE SET "
    "locked_until = max(locked_until, excluded.locked_until)"
)
_ANY_READY: Final = f"SELECT 1 FROM target WHERE outdial_id = ? AND pick = {Queue.READY} LIMIT 1"
_ANY_WAITING: Final = (
    f"SELECT 1 FROM target WHERE outdial_id = ? AND pick = {Queue.WAITING} LIMIT 1"
)
# Without statistics the planner would pick the listing index and scan.
_ANY_PROGRESSING: Final = (
    "SELECT 1 FROM target INDEXED BY target_progressing WHERE outdial_id = ? "
    "AND status = 'progressing' AND tm_delete IS NULL LIMIT 1"
)
_ANY_BEING_PUBLISHED: Final = (
    "SELECT 1 FROM target INDEXED BY target_batch WHERE batch IS NOT NULL "
    "AND outdial_id = ? AND batch NOT IN (SELECT id FROM pending_batch) LIMIT 1"
)
_ANY_ACTIVE: Final = "SELECT 1 FROM campaigncall WHERE campaign_id = ? AND status != 'done' LIMIT 1"
_CLAIM_TARGET: Final = tuple(
    f"UPDATE target SET status = 'progressing', pick = 0, try_count_{n} = ?, "
    "tm_update = ? WHERE seq = ?"
    for n in SLOTS
)
_PLACE_TARGET: Final = (
    "UPDATE target SET status = ?, pick = ?, touched = ?, due = ?, until = ?, slot = ?, "
    "held = ?, try_count_0 = ?, try_count_1 = ?, try_count_2 = ?, try_count_3 = ?, "
    "try_count_4 = ?, tm_update = ?, skipped = coalesce(?, skipped) WHERE seq = ?"
)
_CLAIM_SKIPPED: Final = "UPDATE target SET skipped = ? WHERE seq = ?"
# Lock rows deleted per transaction by prune_locks.
PRUNE_CHUNK: Final = 1000
_PRUNE_LOCKS: Final = (
    "DELETE FROM number_lock WHERE (customer_id, number) IN (SELECT customer_id, number "
    "FROM number_lock INDEXED BY number_lock_expiry WHERE locked_until <= ? LIMIT ?)"
)


def _placement_values(placement: Placement, *, pending: bool = False) -> tuple[Any, ...]:
    """The placement columns; a row of an unpublished import keeps its queue negated."""
    return (
        -placement.queue if pending else int(placement.queue),
        format_time(placement.touched),
        format_time(placement.due),
        None if placement.until is None else format_time(placement.until),
        placement.slot,
        placement.held.value,
    )


def _placement_from_row(row: Sequence[Any]) -> Placement:
    """``pick, touched, due, until, slot, held`` of a row; the status is the target's."""
    return Placement(
        status=TargetStatus.PROGRESSING,  # replaced by the caller: the row's status
        queue=Queue(abs(row[0])),
        touched=parse_time(row[1]),
        due=parse_time(row[2]),
        until=None if row[3] is None else parse_time(row[3]),
        slot=row[4],
        held=Held(row[5]),
    )


def _target_row(target: OutdialTarget, batch: str | None = None) -> tuple[Any, ...]:
    """A target's row as the core places it; ``batch``: a staged import's, hidden."""
    destinations = target.destinations
    return (
        target.id,
        target.outdial_id,
        target.name,
        target.detail,
        target.data,
        target.status.value,
        *(None if address is None else encode(address) for address in destinations),
        *target.try_counts,
        target.tm_create,
        target.tm_update,
        target.tm_delete,
        _skipped_text(target.skipped_destinations),
        *_placement_values(place_new(target), pending=batch is not None),
        batch,
    )


def _target_from_row(row: Sequence[Any]) -> OutdialTarget:
    destinations = [None if blob is None else _decode_address(blob) for blob in row[6:11]]
    return OutdialTarget(
        id=row[0],
        outdial_id=row[1],
        name=row[2],
        detail=row[3],
        data=row[4],
        status=TargetStatus(row[5]),
        destination_0=destinations[0],
        destination_1=destinations[1],
        destination_2=destinations[2],
        destination_3=destinations[3],
        destination_4=destinations[4],
        try_count_0=row[11],
        try_count_1=row[12],
        try_count_2=row[13],
        try_count_3=row[14],
        try_count_4=row[15],
        tm_create=row[16],
        tm_update=row[17],
        tm_delete=row[18],
        skipped_destinations=_skipped_of(row[19]),
        # With the placement columns (pick, touched, due, until, slot, held): why it waits.
        **(_hold(row[20], row[22], row[25]) if len(row) > 25 else {}),
    )


def _skipped_text(skipped: Sequence[SkippedDestination]) -> str:
    """The ``skipped`` column: the slots a claim stepped over as listed, "0,2"."""
    return ",".join(str(entry.destination_index) for entry in skipped)


def _skipped_of(text: str) -> tuple[SkippedDestination, ...]:
    if not text:
        return ()
    return tuple(
        SkippedDestination(destination_index=int(slot), reason=Held.DNC.value)
        for slot in text.split(",")
    )


def _hold(pick: int, due: str, held: str) -> dict[str, str]:
    """``hold_reason`` and ``tm_next_try`` of a target the rules hold back."""
    if not held:
        return {}
    return {"hold_reason": held, "tm_next_try": due if pick == Queue.WAITING else ""}


def _number_states(
    customer_id: str,
    target: OutdialTarget,
    now: datetime,
    rules: CallingRules | None,
    region: str | None,
    connection: sqlite3.Connection,
) -> dict[str, NumberState]:
    """What the calling rules need to know of the target's numbers (each E.164 reading
    of what the trunk dials), read in the claim's transaction: listed (always), locked
    after an abandoned call and attempts today (when ``rules`` count them)."""
    numbers = dialed.numbers_of(target.destinations, region)
    if not numbers:
        return {}
    listed = dnc_listed_numbers(customer_id, numbers, connection)
    marks = ", ".join("?" * len(numbers))
    locks: dict[str, str] = {}
    if rules is not None and rules.abandoned_lockout:
        locks = dict(
            connection.execute(
                "SELECT number, locked_until FROM number_lock WHERE customer_id = ? "
                f"AND number IN ({marks})",
                (customer_id, *numbers),
            ).fetchall()
        )
    today: dict[str, int] = {}
    if rules is not None and rules.daily_attempts is not None:
        today = dict(
            connection.execute(
                "SELECT number, attempts FROM number_day WHERE customer_id = ? AND day = ? "
                f"AND number IN ({marks})",
                (customer_id, day_of(now), *numbers),
            ).fetchall()
        )
    return {
        number: NumberState(
            listed=number in listed,
            locked_until=parse_time(locks[number]) if number in locks else None,
            attempts_today=int(today.get(number, 0)),
        )
        for number in numbers
    }


def _placed_target(row: Sequence[Any]) -> tuple[OutdialTarget, Placement, int]:
    """A row read as ``_TARGET_COLUMNS, _PLACEMENT_COLUMNS, seq``."""
    target = _target_from_row(row)
    placement = msgspec.structs.replace(_placement_from_row(row[20:26]), status=target.status)
    return target, placement, row[26]


def _place(
    seq: int,
    try_counts: Sequence[int],
    placement: Placement,
    now: str,
    connection: sqlite3.Connection,
    *,
    decided: bool = False,
) -> None:
    """Write what the core decided for a target (``decided``: a claim's decision, which
    also records the destinations it skipped)."""
    skipped = ",".join(map(str, placement.skipped)) if decided else None
    connection.execute(
        _PLACE_TARGET,
        (
            placement.status.value,
            *_placement_values(placement)[:6],
            *try_counts,
            now,
            skipped,
            seq,
        ),
    )


def _token_filter(page_token: str, key: str = "id") -> tuple[str, tuple[str, ...]]:
    """SQL condition and parameters for "strictly after this token" in newest-first order
    of ``(tm_create, key)``."""
    if not page_token:
        return "", ()
    tm_create, separator, resource_id = page_token.partition("|")
    if separator:
        return f" AND (tm_create, {key}) < (?, ?)", (tm_create, resource_id)
    return " AND tm_create < ?", (tm_create,)


def _page_token(keys: Sequence[Sequence[Any]], limit: int) -> str:
    """The next_page_token of a page whose ``(…, tm_create, id)`` rows, fetched with one
    extra beyond ``limit``, are ``keys``: "" only when the page is empty; the last item's
    tm_create, with "|<id>" when the item after it shares that tm_create."""
    if not keys:
        return ""
    last = keys[min(len(keys), limit) - 1]
    following = keys[limit] if len(keys) > limit else None
    if following is not None and following[-2] == last[-2]:
        return f"{last[-2]}|{last[-1]}"
    return str(last[-2])


def _micros(moment: datetime) -> int:
    """Microseconds since the Unix epoch: how lease expiry is stored and compared."""
    return (moment - _EPOCH) // _MICROSECOND


def _now() -> datetime:
    """The wall clock: the moment of a lease check whose caller passed none."""
    return datetime.now(UTC)


def _check_fence(
    connection: sqlite3.Connection, fence: Fence | None, campaign_id: str, now: datetime
) -> None:
    """Raise ``LeaseLost`` unless ``fence`` (if any) is the campaign's valid lease at ``now``.

    One lookup by primary key, in the caller's transaction.
    """
    if fence is None:
        return
    held = None
    if fence.campaign_id == campaign_id:
        held = connection.execute(
            "SELECT 1 FROM lease WHERE campaign_id = ? AND owner = ? AND token = ? "
            "AND expires_at_us > ?",
            (campaign_id, fence.owner, fence.token, _micros(now)),
        ).fetchone()
    if held is None:
        raise LeaseLost(f"campaign {campaign_id}: the lease of {fence.owner} is no longer held")


def _settle_chunk(batch: str, publish: bool, connection: sqlite3.Connection) -> bool:
    """One chunk of ``_settle_batch``; False when the batch has no row left."""
    chunk = "SELECT seq FROM target WHERE batch = ? LIMIT ?"
    if publish:
        cursor = connection.execute(
            f"UPDATE target SET pick = -pick, batch = NULL WHERE seq IN ({chunk})",
            (batch, PUBLISH_CHUNK),
        )
    else:
        cursor = connection.execute(
            f"DELETE FROM target WHERE seq IN ({chunk})", (batch, PUBLISH_CHUNK)
        )
    return cursor.rowcount > 0


def _recover_imports(connection: sqlite3.Connection) -> None:
    """At open: rows of an import that was never published (the process died) go;
    rows of a published one that were not made dialable yet are."""
    pending = {row[0] for row in connection.execute("SELECT id FROM pending_batch")}
    left = [
        row[0]
        for row in connection.execute("SELECT DISTINCT batch FROM target WHERE batch IS NOT NULL")
    ]
    for batch in left:
        while _settle_chunk(batch, batch not in pending, connection):
            pass
    connection.execute("DELETE FROM pending_batch")


def _in_transaction(work: Callable[[sqlite3.Connection], R], connection: sqlite3.Connection) -> R:
    connection.execute("BEGIN IMMEDIATE")
    try:
        result = work(connection)
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return result


class _Documents(Generic[D]):
    """A table of documents (one kind): campaigns, outplans or outdials."""

    def __init__(self, kind: Kind[D]) -> None:
        self.table = kind.name
        self.decode = kind.decode

    def _columns(self, resource: D) -> dict[str, Any]:
        columns: dict[str, Any] = {
            "id": resource.id,
            "customer_id": resource.customer_id,
            "tm_create": resource.tm_create,
            "body": encode(resource),
        }
        if isinstance(resource, Campaign):
            columns["status"] = resource.status.value
        return columns

    def create(self, resource: D, connection: sqlite3.Connection) -> D:
        columns = self._columns(resource)
        names = ", ".join(columns)
        marks = ", ".join(f":{name}" for name in columns)
        try:
            connection.execute(f"INSERT INTO {self.table} ({names}) VALUES ({marks})", columns)
        except sqlite3.IntegrityError as error:
            raise Conflict(f"{self.table} {resource.id} already exists") from error
        return resource

    def get(
        self, customer_id: str | None, resource_id: str, connection: sqlite3.Connection
    ) -> D | None:
        query = f"SELECT body FROM {self.table} WHERE id = ? AND deleted = 0"
        params: tuple[str, ...] = (resource_id,)
        if customer_id is not None:
            query += " AND customer_id = ?"
            params += (customer_id,)
        row = connection.execute(query, params).fetchone()
        return None if row is None else self.decode(row[0])

    def update(self, resource: D, connection: sqlite3.Connection) -> D:
        columns = self._columns(resource)
        assignments = ", ".join(f"{name} = :{name}" for name in columns if name != "id")
        cursor = connection.execute(
            f"UPDATE {self.table} SET {assignments} WHERE id = :id AND deleted = 0", columns
        )
        if cursor.rowcount == 0:
            raise Conflict(f"{self.table} {resource.id} does not exist or is deleted")
        return resource

    def delete(
        self, customer_id: str, resource_id: str, now: str, connection: sqlite3.Connection
    ) -> D | None:
        current = self.get(customer_id, resource_id, connection)
        if current is None:
            return None
        deleted = msgspec.structs.replace(current, tm_update=now, tm_delete=now)
        connection.execute(
            f"UPDATE {self.table} SET deleted = 1, body = ? WHERE id = ?",
            (encode(deleted), resource_id),
        )
        return deleted

    def page(
        self, customer_id: str, page_size: int, page_token: str, connection: sqlite3.Connection
    ) -> Page[D]:
        limit = page_limit(page_size)
        condition, params = _token_filter(page_token)
        rows = connection.execute(
            f"SELECT body, tm_create, id FROM {self.table} WHERE customer_id = ? AND deleted = 0"
            f"{condition} ORDER BY tm_create DESC, id DESC LIMIT ?",
            (customer_id, *params, limit + 1),
        ).fetchall()
        items = [self.decode(row[0]) for row in rows[:limit]]
        return Page(result=items, next_page_token=_page_token(rows, limit))


_CAMPAIGNS: Final = _Documents(CAMPAIGN)
_OUTPLANS: Final = _Documents(OUTPLAN)
_OUTDIALS: Final = _Documents(OUTDIAL)


def _documents(kind: Kind[R_]) -> _Documents[R_]:
    tables: dict[str, _Documents[Any]] = {
        CAMPAIGN.name: _CAMPAIGNS,
        OUTPLAN.name: _OUTPLANS,
        OUTDIAL.name: _OUTDIALS,
    }
    return cast(_Documents[R_], tables[kind.name])


def _campaigns_with_status(
    statuses: Sequence[CampaignStatus],
    connection: sqlite3.Connection,
    customer_id: str | None = None,
) -> list[Campaign]:
    """The not-deleted campaigns (of one customer, or any) in one of these statuses."""
    wanted = [CampaignStatus(status).value for status in statuses]
    if not wanted:
        return []
    marks = ", ".join("?" * len(wanted))
    query = f"SELECT body FROM campaign WHERE deleted = 0 AND status IN ({marks})"
    params: list[str] = wanted
    if customer_id is not None:
        query += " AND customer_id = ?"
        params = [*wanted, customer_id]
    rows = connection.execute(query + " ORDER BY tm_create, id", params).fetchall()
    return [_CAMPAIGNS.decode(row[0]) for row in rows]


def _starts_using(stored: Campaign, campaign: Campaign) -> bool:
    """Whether writing ``campaign`` over ``stored`` sets a campaign running on an outplan
    or outdial it did not run on (the writes a concurrent delete could race)."""
    return campaign.status == CampaignStatus.RUN and (
        stored.status != CampaignStatus.RUN
        or stored.outplan_id != campaign.outplan_id
        or stored.outdial_id != campaign.outdial_id
    )


def _check_uses(campaign: Campaign, connection: sqlite3.Connection) -> None:
    """``CampaignChanged`` unless the campaign's outplan and outdial exist (its
    customer's, not deleted): a campaign is never stored running without them."""
    customer = campaign.customer_id
    for table, found in (
        ("outplan", _OUTPLANS.get(customer, campaign.outplan_id, connection)),
        ("outdial", _OUTDIALS.get(customer, campaign.outdial_id, connection)),
    ):
        if found is None:
            raise CampaignChanged(f"campaign {campaign.id}: its {table} is gone; read it again")


class _Job(Generic[R]):
    """One unit of work for the connection, and what came of it."""

    __slots__ = ("cancelled", "done", "error", "result", "work")

    def __init__(self, work: Callable[[], R]) -> None:
        self.work = work
        self.cancelled = False
        self.done = False
        self.result: R | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        if not self.cancelled:
            try:
                self.result = self.work()
            except Exception as error:
                self.error = error
        self.done = True


def _run_jobs(jobs: Sequence[_Job[Any]]) -> None:
    for job in jobs:
        job.run()


class _ConnectionWorker:
    """Runs the connection's work one job at a time on a worker thread.

    Jobs that queue up while the thread is busy go to it together on its next trip,
    so many concurrent claimers cost one thread hand-off per batch, not one per job.
    """

    def __init__(self) -> None:
        self._queue: list[_Job[Any]] = []
        self._draining = False
        self._drained = anyio.Event()

    async def run(self, work: Callable[[], R]) -> R:
        job: _Job[R] = _Job(work)
        self._queue.append(job)
        try:
            while not job.done:
                if self._draining:
                    await self._drained.wait()
                else:
                    await self._drain()
        except BaseException:
            job.cancelled = True  # still queued: it will be skipped, never half-done
            raise
        if job.error is not None:
            raise job.error
        return cast(R, job.result)

    async def _drain(self) -> None:
        self._draining = True
        self._drained = drained = anyio.Event()
        batch, self._queue = self._queue, []
        try:
            await anyio.to_thread.run_sync(_run_jobs, batch)
        finally:
            # A batch that never reached the thread (cancelled on the way) goes back first.
            self._queue[:0] = [job for job in batch if not job.done]
            self._draining = False
            drained.set()


class SqliteStore(ResourceMethods):
    """The ``Store`` port on one SQLite file."""

    backend = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._connection: sqlite3.Connection | None = None
        self._worker: _ConnectionWorker | None = None

    # -- connection -------------------------------------------------------------------
    async def open(self) -> None:
        """Open (or create) the file and apply schema migrations."""
        if self._connection is not None:
            return
        self._worker = _ConnectionWorker()
        self._connection = await anyio.to_thread.run_sync(self._connect)

    async def close(self) -> None:
        """Close the connection once in-flight work is done. Idempotent."""
        connection, self._connection = self._connection, None
        if connection is not None and self._worker is not None:
            await self._worker.run(connection.close)

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the file answers a query now."""
        try:
            await self._read(lambda connection: connection.execute("SELECT 1").fetchone())
        except StoreUnavailable:
            raise
        except StoreError as error:
            raise StoreUnavailable(str(error)) from error

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError as error:
            raise StoreError(
                f"cannot create SQLite store {self.path}: {error.filename} is not a directory"
            ) from error
        except OSError as error:
            raise StoreError(
                f"cannot create the directory of SQLite store {self.path}: {error.strerror}"
            ) from error
        try:
            connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as error:
            raise StoreError(f"cannot open SQLite store {self.path}: {error}") from error
        try:
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")
            # Random-id indexes of a large outdial thrash SQLite's default 2 MiB page cache.
            connection.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            self._migrate(connection)
            _in_transaction(_recover_imports, connection)
            _in_transaction(_recover_dnc_imports, connection)
        except BaseException as error:
            connection.close()
            if isinstance(error, sqlite3.Error):
                raise self._translate(error) from error
            raise
        return connection

    def _migrate(self, connection: sqlite3.Connection) -> None:
        version = int(connection.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"SQLite store {self.path} has schema version {version}, newer than the "
                f"{SCHEMA_VERSION} this dialerd knows: run a newer dialerd or use another file"
            )
        for number in range(version, SCHEMA_VERSION):

            def apply(connection: sqlite3.Connection, step: int = number) -> None:
                for statement in MIGRATIONS[step]:
                    if isinstance(statement, str):
                        connection.execute(statement)
                    else:
                        statement(connection)
                connection.execute(f"PRAGMA user_version = {step + 1}")

            _in_transaction(apply, connection)

    def _translate(self, error: sqlite3.Error) -> StoreError:
        text = str(error)
        lowered = text.lower()
        where = f"SQLite store {self.path}"
        if "readonly" in lowered or "read-only" in lowered:
            return StoreUnavailable(f"{where} is read-only ({text}): check the file and its disk")
        if "disk is full" in lowered:
            return StoreUnavailable(f"{where}: the disk is full ({text}); nothing was changed")
        if "locked" in lowered or "busy" in lowered:
            return StoreUnavailable(f"{where} is locked by another process ({text})")
        if "unable to open" in lowered or "disk i/o" in lowered:
            return StoreUnavailable(f"{where} cannot be opened or read ({text})")
        if isinstance(error, sqlite3.ProgrammingError):
            return StoreError(f"{where} is closed ({text})")
        return StoreError(f"{where}: {text}")

    def _guarded(
        self, work: Callable[[sqlite3.Connection], R], connection: sqlite3.Connection
    ) -> R:
        try:
            return work(connection)
        except sqlite3.Error as error:
            raise self._translate(error) from error

    async def _read(self, work: Callable[[sqlite3.Connection], R]) -> R:
        connection, worker = self._connection, self._worker
        if connection is None or worker is None:
            raise StoreError(f"SQLite store {self.path} is not open")
        return await worker.run(partial(self._guarded, work, connection))

    async def _write(self, work: Callable[[sqlite3.Connection], R]) -> R:
        return await self._read(partial(_in_transaction, work))

    # -- resources: the generic steps of ``ResourceMethods`` -----------------------------
    async def _create(self, kind: Kind[R_], resource: R_) -> R_:
        return await self._write(partial(_documents(kind).create, resource))

    async def _get(self, kind: Kind[R_], customer_id: str | None, resource_id: str) -> R_ | None:
        return await self._read(partial(_documents(kind).get, customer_id, resource_id))

    async def _update(self, kind: Kind[R_], resource: R_, guard: Guard = NO_GUARD) -> R_:
        """Replace the stored resource (same id, not deleted) with this one; a campaign
        under the fence and version check, and one written ``run`` only while its
        outplan and outdial exist."""
        documents = _documents(kind)
        if not isinstance(resource, Campaign):
            return await self._write(partial(documents.update, resource))
        campaign = resource
        moment = _now() if campaign.tm_update is None else parse_time(campaign.tm_update)

        def update(connection: sqlite3.Connection) -> R_:
            _check_fence(connection, guard.fence, campaign.id, moment)
            checked = guard.if_updated is not None or campaign.status == CampaignStatus.RUN
            stored = _CAMPAIGNS.get(None, campaign.id, connection) if checked else None
            if stored is not None and guard.if_updated not in (None, stored.tm_update or ""):
                raise CampaignChanged(f"campaign {campaign.id} changed since it was read")
            if stored is not None and _starts_using(stored, campaign):
                _check_uses(campaign, connection)
            return documents.update(resource, connection)

        return await self._write(update)

    async def _delete(
        self, kind: Kind[R_], customer_id: str, resource_id: str, now: datetime
    ) -> R_ | None:
        """Soft-delete under the kind's rule, checked in the delete's transaction."""
        documents = _documents(kind)

        def delete(connection: sqlite3.Connection) -> R_ | None:
            current = documents.get(customer_id, resource_id, connection)
            if current is None:
                return None
            if isinstance(current, Campaign):
                if current.status != CampaignStatus.STOP:
                    raise Conflict(
                        f"campaign {resource_id} is {current.status.value}: stop it first"
                    )
            else:
                running = _campaigns_with_status(ACTIVE, connection, customer_id)
                using = users(kind, resource_id, running)
                if using:
                    raise InUse(kind.name, resource_id, using)
            return documents.delete(customer_id, resource_id, format_time(now), connection)

        return await self._write(delete)

    async def _page(
        self, kind: Kind[R_], customer_id: str, page_size: int, page_token: str
    ) -> Page[R_]:
        return await self._read(partial(_documents(kind).page, customer_id, page_size, page_token))

    async def campaign_and_outplan(
        self, campaign_id: str
    ) -> tuple[Campaign | None, Outplan | None]:
        """Both in one read on the worker thread."""

        def read(connection: sqlite3.Connection) -> tuple[Campaign | None, Outplan | None]:
            campaign = _CAMPAIGNS.get(None, campaign_id, connection)
            if campaign is None:
                return None, None
            return campaign, _OUTPLANS.get(campaign.customer_id, campaign.outplan_id, connection)

        return await self._read(read)

    async def campaigns_with_status(self, statuses: Sequence[CampaignStatus]) -> list[Campaign]:
        """Every not-deleted campaign, of any customer, whose status is one of these."""
        return await self._read(partial(_campaigns_with_status, statuses))

    # -- targets --------------------------------------------------------------------------
    async def create_targets(self, targets: Sequence[OutdialTarget]) -> int:
        """Insert targets (all or none); they keep the given order as creation order."""
        rows = [_target_row(target) for target in targets]

        def insert(connection: sqlite3.Connection) -> int:
            try:
                connection.executemany(_INSERT_TARGET, rows)
            except sqlite3.IntegrityError as error:
                raise Conflict(
                    f"a target id already exists; no target was added ({error})"
                ) from error
            return len(rows)

        return await self._write(insert)

    async def import_targets(self, batches: AsyncIterable[Sequence[OutdialTarget]]) -> int:
        """Write each batch straight into ``target``, hidden behind a pending batch row
        (one short transaction per batch, so other work runs between them); publish
        by deleting that row (all rows appear at once); then make the rows dialable a
        chunk at a time. A failed import removes its rows the same way."""
        batch = uuid.uuid4().hex
        await self._write(
            lambda connection: connection.execute(
                "INSERT INTO pending_batch (id) VALUES (?)", (batch,)
            )
        )

        def stage(rows: list[tuple[Any, ...]], connection: sqlite3.Connection) -> None:
            try:
                connection.executemany(_INSERT_TARGET, rows)
            except sqlite3.IntegrityError as error:
                raise Conflict(
                    f"a target id already exists; no target was added ({error})"
                ) from error

        return await self._staged_import(
            batches,
            lambda targets: partial(stage, [_target_row(target, batch) for target in targets]),
            lambda connection: connection.execute(
                "DELETE FROM pending_batch WHERE id = ?", (batch,)
            ),
            partial(self._settle_batch, batch),
        )

    async def _staged_import(
        self,
        batches: AsyncIterable[Sequence[Item]],
        stage: Callable[[Sequence[Item]], Callable[[sqlite3.Connection], object]],
        publish: Callable[[sqlite3.Connection], object],
        settle: Callable[..., Awaitable[None]],
    ) -> int:
        """The steps every import takes: ``stage`` each batch in its own transaction,
        ``publish`` once ``batches`` ends, then ``settle(publish=True)``; if anything
        fails first, ``settle(publish=False)`` drops what was staged (bounded in time)."""
        count = 0
        published = False
        try:
            async for items in batches:
                if items:
                    await self._write(stage(items))
                    count += len(items)
            await self._write(publish)
            published = True
        finally:
            with anyio.CancelScope(shield=True):
                if published:
                    await settle(publish=True)
                else:
                    with anyio.move_on_after(DISCARD_SECONDS):
                        await settle(publish=False)
        return count

    async def _settle_batch(self, batch: str, *, publish: bool) -> None:
        """Make a published batch's rows dialable, or remove an abandoned batch's rows,
        a chunk per transaction; then forget the batch."""
        while await self._write(partial(_settle_chunk, batch, publish)):
            pass
        await self._write(
            lambda connection: connection.execute(
                "DELETE FROM pending_batch WHERE id = ?", (batch,)
            )
        )

    async def get_target(self, outdial_id: str, target_id: str) -> OutdialTarget | None:
        return await self._read(partial(self._select_target, outdial_id, target_id))

    @staticmethod
    def _select_target(
        outdial_id: str | None, target_id: str, connection: sqlite3.Connection
    ) -> OutdialTarget | None:
        query = (
            f"SELECT {_TARGET_COLUMNS}, {_PLACEMENT_COLUMNS} FROM target "
            "WHERE id = ? AND tm_delete IS NULL "
            f"AND {_VISIBLE}"
        )
        params: tuple[str, ...] = (target_id,)
        if outdial_id is not None:
            query += " AND outdial_id = ?"
            params += (outdial_id,)
        row = connection.execute(query, params).fetchone()
        return None if row is None else _target_from_row(row)

    async def delete_target(
        self, outdial_id: str, target_id: str, now: datetime
    ) -> OutdialTarget | None:
        """Soft-delete a target; raise ``Conflict`` while it is ``progressing``."""
        stamp = format_time(now)

        def delete(connection: sqlite3.Connection) -> OutdialTarget | None:
            current = self._select_target(outdial_id, target_id, connection)
            if current is None:
                return None
            if current.status == TargetStatus.PROGRESSING:
                raise Conflict(f"target {target_id} is being dialed and cannot be deleted")
            connection.execute(
                "UPDATE target SET tm_update = ?, tm_delete = ?, pick = 0, held = '' WHERE id = ?",
                (stamp, stamp, target_id),
            )
            return msgspec.structs.replace(
                current, tm_update=stamp, tm_delete=stamp, hold_reason="", tm_next_try=""
            )

        return await self._write(delete)

    async def list_targets(
        self, outdial_id: str, page_size: int = MAX_PAGE_SIZE, page_token: str = ""
    ) -> Page[OutdialTarget]:
        limit = page_limit(page_size)
        condition, params = _token_filter(page_token)

        def select(connection: sqlite3.Connection) -> Page[OutdialTarget]:
            rows = connection.execute(
                f"SELECT {_TARGET_COLUMNS}, {_PLACEMENT_COLUMNS}, tm_create, id FROM target "
                "WHERE outdial_id = ? "
                f"AND tm_delete IS NULL AND {_VISIBLE}{condition} "
                "ORDER BY tm_create DESC, id DESC LIMIT ?",
                (outdial_id, *params, limit + 1),
            ).fetchall()
            items = [_target_from_row(row) for row in rows[:limit]]
            return Page(result=items, next_page_token=_page_token(rows, limit))

        return await self._read(select)

    # -- campaigncalls --------------------------------------------------------------------
    @staticmethod
    def _select_campaigncall(
        customer_id: str | None, campaigncall_id: str, connection: sqlite3.Connection
    ) -> Campaigncall | None:
        query = "SELECT body FROM campaigncall WHERE id = ? AND deleted = 0"
        params: tuple[str, ...] = (campaigncall_id,)
        if customer_id is not None:
            query += " AND customer_id = ?"
            params += (customer_id,)
        row = connection.execute(query, params).fetchone()
        return None if row is None else CAMPAIGNCALL.decode(row[0])

    @staticmethod
    def _store_campaigncall(campaigncall: Campaigncall, connection: sqlite3.Connection) -> None:
        connection.execute(
            "UPDATE campaigncall SET status = ?, body = ? WHERE id = ?",
            (campaigncall.status.value, encode(campaigncall), campaigncall.id),
        )

    async def get_campaigncall(
        self, customer_id: str | None, campaigncall_id: str
    ) -> Campaigncall | None:
        return await self._read(partial(self._select_campaigncall, customer_id, campaigncall_id))

    async def list_campaigncalls(
        self,
        customer_id: str,
        campaign_id: str | None = None,
        page_size: int = MAX_PAGE_SIZE,
        page_token: str = "",
    ) -> Page[Campaigncall]:
        limit = page_limit(page_size)
        condition, params = _token_filter(page_token)
        scope = "customer_id = ?"
        scope_params: tuple[str, ...] = (customer_id,)
        if campaign_id is not None:
            scope = "campaign_id = ? AND customer_id = ?"
            scope_params = (campaign_id, customer_id)

        def select(connection: sqlite3.Connection) -> Page[Campaigncall]:
            rows = connection.execute(
                f"SELECT body, tm_create, id FROM campaigncall WHERE {scope} AND deleted = 0"
                f"{condition} ORDER BY tm_create DESC, id DESC LIMIT ?",
                (*scope_params, *params, limit + 1),
            ).fetchall()
            items = [CAMPAIGNCALL.decode(row[0]) for row in rows[:limit]]
            return Page(result=items, next_page_token=_page_token(rows, limit))

        return await self._read(select)

    async def delete_campaigncall(
        self, customer_id: str, campaigncall_id: str, now: datetime
    ) -> Campaigncall | None:
        """Soft-delete a finished campaigncall; raise ``Conflict`` while it is active."""
        stamp = format_time(now)

        def delete(connection: sqlite3.Connection) -> Campaigncall | None:
            current = self._select_campaigncall(customer_id, campaigncall_id, connection)
            if current is None:
                return None
            if current.status != CampaigncallStatus.DONE:
                raise Conflict(f"campaigncall {campaigncall_id} is active and cannot be deleted")
            deleted = msgspec.structs.replace(current, tm_update=stamp, tm_delete=stamp)
            connection.execute(
                "UPDATE campaigncall SET deleted = 1, body = ? WHERE id = ?",
                (encode(deleted), campaigncall_id),
            )
            return deleted

        return await self._write(delete)

    # -- the engine's atomic steps ----------------------------------------------------------
    async def start_attempt(self, plan: AttemptPlan) -> Campaigncall | None:
        """Claim the next eligible target of the campaign's outdial and create its attempt."""
        return await self._write(partial(self._claim, plan))

    async def start_attempts(self, plans: Sequence[AttemptPlan]) -> list[Campaigncall]:
        """Every claim of the batch in one transaction (one trip to the worker thread)."""

        def claim_all(connection: sqlite3.Connection) -> list[Campaigncall]:
            claimed: list[Campaigncall] = []
            for plan in plans:
                campaigncall = self._claim(plan, connection)
                if campaigncall is None:
                    break
                claimed.append(campaigncall)
            return claimed

        return await self._write(claim_all) if plans else []

    @staticmethod
    def _claim(plan: AttemptPlan, connection: sqlite3.Connection) -> Campaigncall | None:
        campaign, outplan = plan.campaign, plan.outplan
        _check_fence(connection, plan.fence, campaign.id, plan.now)
        status = connection.execute(
            "SELECT status FROM campaign WHERE id = ? AND deleted = 0", (campaign.id,)
        ).fetchone()
        if status is None or status[0] != CampaignStatus.RUN.value:
            raise CampaignNotRunning(f"campaign {campaign.id} is not running: nothing is dialed")
        max_try_counts = outplan.max_try_counts
        region = dialed.region_of(outplan.source)
        now = format_time(plan.now)
        connection.execute(_PROMOTE, (campaign.outdial_id, now))
        while True:
            # Each target decided spent leaves the ready queue for good: this ends.
            row = connection.execute(_READY_HEAD, (campaign.outdial_id,)).fetchone()
            if row is None:
                return None
            target, placement, seq = _placed_target(row)
            decision = targets.decide_claim(
                target,
                placement,
                max_try_counts,
                plan.now,
                rules=plan.rules,
                numbers=_number_states(
                    campaign.customer_id, target, plan.now, plan.rules, region, connection
                ),
                region=region,
            )
            if isinstance(decision, Placement):
                _place(seq, target.try_counts, decision, now, connection, decided=True)
                continue
            break
        slot = decision.slot
        destination = target.destinations[slot]
        assert destination is not None  # the core dials only a slot with a destination
        connection.execute(_CLAIM_TARGET[slot], (decision.try_count, now, seq))
        connection.execute(_CLAIM_SKIPPED, (",".join(map(str, decision.skipped)), seq))
        if plan.rules is not None and plan.rules.daily_attempts is not None:
            day = day_of(plan.now)
            for number in dialed.readings(destination.target, region):
                connection.execute(_COUNT_ATTEMPT, (campaign.customer_id, number, day))
        target_id = target.id
        campaigncall = targets.new_attempt(
            campaign,
            outplan,
            campaigncall_id=plan.campaigncall_id,
            reference_id=plan.reference_id,
            activeflow_id=plan.activeflow_id,
            target_id=target_id,
            destination=destination,
            slot=slot,
            try_count=decision.try_count,
            now=now,
        )
        try:
            connection.execute(
                "INSERT INTO campaigncall "
                "(id, customer_id, campaign_id, outdial_target_id, status, tm_create, body) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    campaigncall.id,
                    campaigncall.customer_id,
                    campaigncall.campaign_id,
                    target_id,
                    campaigncall.status.value,
                    now,
                    encode(campaigncall),
                ),
            )
        except sqlite3.IntegrityError as error:
            raise Conflict(f"campaigncall {campaigncall.id} already exists") from error
        return campaigncall

    async def mark_answered(
        self, campaigncall_id: str, now: datetime, *, fence: Fence | None = None
    ) -> Campaigncall | None:
        """``dialing`` -> ``progressing``; ``None`` if the attempt is not ``dialing``."""
        stamp = format_time(now)

        def answer(connection: sqlite3.Connection) -> Campaigncall | None:
            current = self._select_campaigncall(None, campaigncall_id, connection)
            if current is None or current.status != CampaigncallStatus.DIALING:
                return None
            _check_fence(connection, fence, current.campaign_id, now)
            answered = msgspec.structs.replace(
                current, status=CampaigncallStatus.PROGRESSING, tm_update=stamp
            )
            self._store_campaigncall(answered, connection)
            return answered

        return await self._write(answer)

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
        """End an active attempt exactly once (behaviour.md §5)."""
        work = partial(
            self._finish,
            campaigncall_id,
            result,
            reason,
            rule,
            now,
            fence,
            give_back_try,
            calling_rules,
        )
        return await self._write(work)

    def _finish(
        self,
        campaigncall_id: str,
        result: CampaigncallResult,
        reason: str,
        rule: RetryRule,
        moment: datetime,
        fence: Fence | None,
        give_back_try: bool,
        calling_rules: CallingRules | None,
        connection: sqlite3.Connection,
    ) -> FinishResult | None:
        now = format_time(moment)
        row = connection.execute(
            "SELECT body FROM campaigncall WHERE id = ?", (campaigncall_id,)
        ).fetchone()
        if row is None:
            return None
        current = CAMPAIGNCALL.decode(row[0])
        _check_fence(connection, fence, current.campaign_id, moment)
        target_id = current.outdial_target_id
        if current.status == CampaigncallStatus.DONE:
            target = self._select_target(None, target_id, connection)
            return FinishResult(finished=False, campaigncall=current, target=target)
        finished = msgspec.structs.replace(
            current, status=CampaigncallStatus.DONE, result=result, reason=reason, tm_update=now
        )
        self._store_campaigncall(finished, connection)
        locked_until = calling_rules.lockout_after(reason, moment) if calling_rules else None
        if locked_until is not None:
            # The outplan the claim dialed under, deleted or not: the same readings.
            body = connection.execute(
                "SELECT body FROM outplan WHERE id = ?", (current.outplan_id,)
            ).fetchone()
            region = dialed.region_of(None if body is None else _OUTPLANS.decode(body[0]).source)
            for number in dialed.readings(current.destination.target, region):
                connection.execute(
                    _LOCK_NUMBER, (current.customer_id, number, format_time(locked_until))
                )
        row = connection.execute(
            f"SELECT {_TARGET_COLUMNS}, {_PLACEMENT_COLUMNS}, seq FROM target "
            "WHERE id = ? AND tm_delete IS NULL",
            (target_id,),
        ).fetchone()
        if row is None:
            return FinishResult(finished=True, campaigncall=finished, target=None)
        target, before, seq = _placed_target(row)
        if target.status != TargetStatus.PROGRESSING:
            return FinishResult(finished=True, campaigncall=finished, target=target)
        settled = targets.place_after(
            target,
            current.destination_index,
            result,
            rule,
            moment,
            reason=reason,
            give_back=give_back_try,
            before=before,
        )
        _place(seq, settled.try_counts, settled.placement, now, connection)
        placement = settled.placement
        ended = msgspec.structs.replace(
            target,
            status=placement.status,
            tm_update=now,
            **{f"try_count_{n}": count for n, count in enumerate(settled.try_counts)},
            **_hold(placement.queue, format_time(placement.due), placement.held),
        )
        return FinishResult(finished=True, campaigncall=finished, target=ended)

    async def prune_locks(self, now: datetime) -> int:
        """Delete the number locks that ended by ``now``, ``PRUNE_CHUNK`` rows a
        transaction (through the expiry index)."""
        cutoff = format_time(now)
        pruned = 0
        while True:
            count = await self._write(
                lambda connection: connection.execute(_PRUNE_LOCKS, (cutoff, PRUNE_CHUNK)).rowcount
            )
            pruned += count
            if count < PRUNE_CHUNK:
                return pruned

    # -- campaign leases (SQLite serves one host: expiry follows the ``now`` passed in) ----
    async def acquire_lease(
        self, campaign_id: str, owner: str, ttl: float, now: datetime
    ) -> Fence | None:
        """Take or renew the campaign's lease until ``now + ttl``.

        The row outlives the lease (released: expiry 0), so it knows the last holder and
        token: the same owner keeps its token, another one gets the next.
        """
        now_us = _micros(now)
        expires_us = _micros(now + timedelta(seconds=ttl))

        def acquire(connection: sqlite3.Connection) -> Fence | None:
            row = connection.execute(
                "SELECT owner, token, expires_at_us FROM lease WHERE campaign_id = ?",
                (campaign_id,),
            ).fetchone()
            if row is None:
                token = 1
            elif row[0] == owner:
                token = int(row[1])
            elif int(row[2]) > now_us:
                return None
            else:
                token = int(row[1]) + 1
            connection.execute(
                "INSERT INTO lease (campaign_id, owner, token, expires_at_us) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (campaign_id) DO UPDATE SET "
                "owner = excluded.owner, token = excluded.token, "
                "expires_at_us = excluded.expires_at_us",
                (campaign_id, owner, token, expires_us),
            )
            return Fence(campaign_id, owner, token)

        return await self._write(acquire)

    async def release_lease(self, fence: Fence) -> None:
        """Give the lease up at once, if ``fence`` still holds it."""
        await self._write(
            lambda connection: connection.execute(
                "UPDATE lease SET expires_at_us = 0 "
                "WHERE campaign_id = ? AND owner = ? AND token = ?",
                (fence.campaign_id, fence.owner, fence.token),
            )
        )

    async def lease_owner(self, campaign_id: str, now: datetime | None = None) -> str | None:
        """The owner of the campaign's valid lease at ``now`` (the wall clock if None)."""
        now_us = _micros(_now() if now is None else now)

        def owner(connection: sqlite3.Connection) -> str | None:
            row = connection.execute(
                "SELECT owner FROM lease WHERE campaign_id = ? AND expires_at_us > ?",
                (campaign_id, now_us),
            ).fetchone()
            return None if row is None else str(row[0])

        return await self._read(owner)

    async def count_dialing(self, campaign_id: str) -> int:
        """How many of the campaign's attempts are ``dialing``."""

        def count(connection: sqlite3.Connection) -> int:
            row = connection.execute(
                "SELECT count(*) FROM campaigncall WHERE campaign_id = ? "
                "AND status != 'done' AND status = 'dialing'",
                (campaign_id,),
            ).fetchone()
            return int(row[0])

        return await self._read(count)

    async def add_abandonment(
        self, campaign_id: str, day: str, live: int, abandoned: int
    ) -> DayCount:
        """Add to the campaign's count of ``day``; returns the day's new count."""

        def add(connection: sqlite3.Connection) -> DayCount:
            row = connection.execute(
                "INSERT INTO abandonment (campaign_id, day, live, abandoned) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (campaign_id, day) DO UPDATE SET live = live + excluded.live, "
                "abandoned = abandoned + excluded.abandoned RETURNING live, abandoned",
                (campaign_id, day, live, abandoned),
            ).fetchone()
            return DayCount(day=day, live=int(row[0]), abandoned=int(row[1]))

        return await self._write(add)

    async def abandonment_days(self, campaign_id: str, since: str) -> list[DayCount]:
        """The campaign's counts of ``since`` and later days, oldest first."""

        def select(connection: sqlite3.Connection) -> list[DayCount]:
            rows = connection.execute(
                "SELECT day, live, abandoned FROM abandonment WHERE campaign_id = ? AND day >= ? "
                "ORDER BY day",
                (campaign_id, since),
            ).fetchall()
            return [DayCount(day=row[0], live=int(row[1]), abandoned=int(row[2])) for row in rows]

        return await self._read(select)

    async def active_attempts(self, campaign_id: str | None = None) -> list[Campaigncall]:
        """Attempts ``dialing`` or ``progressing`` (of one campaign, or of all)."""
        query = "SELECT body FROM campaigncall WHERE status != 'done'"
        params: tuple[str, ...] = ()
        if campaign_id is not None:
            query += " AND campaign_id = ?"
            params = (campaign_id,)

        def select(connection: sqlite3.Connection) -> list[Campaigncall]:
            rows = connection.execute(query + " ORDER BY tm_create, id", params).fetchall()
            return [CAMPAIGNCALL.decode(row[0]) for row in rows]

        return await self._read(select)

    async def target_counts(self, outdial_id: str, now: datetime) -> TargetCounts:
        """The outdial's targets by what can happen to them next."""
        stamp = format_time(now)

        def count(connection: sqlite3.Connection) -> TargetCounts:
            by_status = dict(
                connection.execute(
                    "SELECT status, count(*) FROM target "
                    f"WHERE outdial_id = ? AND tm_delete IS NULL AND {_VISIBLE} GROUP BY status",
                    (outdial_id,),
                ).fetchall()
            )
            (waiting,) = connection.execute(
                f"SELECT count(*) FROM target WHERE outdial_id = ? AND pick = {Queue.WAITING} "
                "AND due > ?",
                (outdial_id, stamp),
            ).fetchone()
            held = dict(
                connection.execute(
                    f"SELECT held, count(*) FROM target WHERE outdial_id = ? "
                    f"AND pick = {Queue.WAITING} AND due > ? GROUP BY held",
                    (outdial_id, stamp),
                ).fetchall()
            )
            (listed,) = connection.execute(
                "SELECT count(*) FROM target WHERE outdial_id = ? AND status = 'done' "
                "AND held = ? AND tm_delete IS NULL",
                (outdial_id, Held.DNC.value),
            ).fetchone()
            if listed:
                held[Held.DNC.value] = int(listed)
            idle = int(by_status.get(TargetStatus.IDLE.value, 0))
            return TargetCounts(
                idle_due=idle - int(waiting),
                idle_waiting=int(waiting),
                progressing=int(by_status.get(TargetStatus.PROGRESSING.value, 0)),
                done=int(by_status.get(TargetStatus.DONE.value, 0)),
                held={str(reason): int(count) for reason, count in held.items()},
            )

        return await self._read(count)

    async def outdial_exhausted(self, campaign_id: str, outdial_id: str) -> bool:
        """True when behaviour.md §6 says the outdial is exhausted for this campaign."""

        def exhausted(connection: sqlite3.Connection) -> bool:
            def exists(query: str, key: str) -> bool:
                return connection.execute(query, (key,)).fetchone() is not None

            return targets.exhausted(
                dialable=exists(_ANY_READY, outdial_id) or exists(_ANY_WAITING, outdial_id),
                # Rows of a published import still being made dialable count as dialable.
                progressing=exists(_ANY_PROGRESSING, outdial_id)
                or exists(_ANY_BEING_PUBLISHED, outdial_id),
                active=exists(_ANY_ACTIVE, campaign_id),
            )

        return await self._read(exhausted)

    # -- do-not-call numbers --------------------------------------------------------------
    async def add_dnc_numbers(self, entries: Sequence[DncNumber]) -> list[DncNumber]:
        """List the numbers in one transaction; a listed number keeps its stored entry."""
        rows = [_dnc_row(entry) for entry in entries]

        def add(connection: sqlite3.Connection) -> list[DncNumber]:
            connection.executemany(_INSERT_DNC, rows)
            stored = [_select_dnc(row[0], row[1], connection) for row in rows]
            return [entry for entry in stored if entry is not None]

        return await self._write(add)

    async def remove_dnc_number(self, customer_id: str, number: str) -> DncNumber | None:
        def remove(connection: sqlite3.Connection) -> DncNumber | None:
            row = connection.execute(
                f"DELETE FROM dnc WHERE customer_id = ? AND number = ? RETURNING {_DNC_COLUMNS}",
                (customer_id, number),
            ).fetchone()
            return None if row is None else _dnc_from_row(row)

        return await self._write(remove)

    async def get_dnc_number(self, customer_id: str, number: str) -> DncNumber | None:
        return await self._read(partial(_select_dnc, customer_id, number))

    async def list_dnc_numbers(
        self, customer_id: str, page_size: int = MAX_PAGE_SIZE, page_token: str = ""
    ) -> Page[DncNumber]:
        limit = page_limit(page_size)
        condition, params = _token_filter(page_token, "number")

        def select(connection: sqlite3.Connection) -> Page[DncNumber]:
            rows = connection.execute(
                f"SELECT {_DNC_COLUMNS}, tm_create, number FROM dnc WHERE customer_id = ?"
                f"{condition} ORDER BY tm_create DESC, number DESC LIMIT ?",
                (customer_id, *params, limit + 1),
            ).fetchall()
            items = [_dnc_from_row(row) for row in rows[:limit]]
            return Page(result=items, next_page_token=_page_token(rows, limit))

        return await self._read(select)

    async def import_dnc_numbers(self, batches: AsyncIterable[Sequence[DncNumber]]) -> int:
        """Stage each batch in ``dnc_staged`` (one short transaction each); publish by
        marking the batch; then move its rows into ``dnc`` a chunk per transaction. A
        failed import deletes its staged rows the same way."""
        batch = uuid.uuid4().hex
        await self._write(
            lambda connection: connection.execute(
                "INSERT INTO dnc_batch (id, published) VALUES (?, 0)", (batch,)
            )
        )
        return await self._staged_import(
            batches,
            lambda entries: partial(_stage_dnc, [(batch, *_dnc_row(entry)) for entry in entries]),
            lambda connection: connection.execute(
                "UPDATE dnc_batch SET published = 1 WHERE id = ?", (batch,)
            ),
            partial(self._settle_dnc_batch, batch),
        )

    async def _settle_dnc_batch(self, batch: str, *, publish: bool) -> None:
        """List a published import's numbers, or drop an abandoned one's, a chunk per
        transaction; then forget the batch."""
        while await self._write(partial(_settle_dnc_chunk, batch, publish)):
            pass
        await self._write(
            lambda connection: connection.execute("DELETE FROM dnc_batch WHERE id = ?", (batch,))
        )

    async def dnc_listed(self, customer_id: str, numbers: Sequence[str]) -> set[str]:
        return await self._read(partial(dnc_listed_numbers, customer_id, numbers))

    # -- quotas (behaviour.md §10, Quotas): counts on the listing indexes ------------------------
    async def quota_usage(self, customer_id: str, outdial_id: str | None = None) -> Usage:
        def count(connection: sqlite3.Connection) -> Usage:
            def one(query: str, *params: str) -> int:
                return int(connection.execute(query, params).fetchone()[0])

            outdials = "SELECT id FROM outdial WHERE customer_id = ? AND deleted = 0"
            targets = "SELECT count(*) FROM target WHERE outdial_id {} AND tm_delete IS NULL"
            return Usage(
                campaigns=one(
                    "SELECT count(*) FROM campaign WHERE customer_id = ? AND deleted = 0",
                    customer_id,
                ),
                running_campaigns=one(
                    "SELECT count(*) FROM campaign WHERE status IN ('run', 'stopping') "
                    "AND deleted = 0 AND customer_id = ?",
                    customer_id,
                ),
                outdials=one(f"SELECT count(*) FROM ({outdials})", customer_id),
                targets=one(targets.format(f"IN ({outdials})"), customer_id),
                dnc_numbers=one("SELECT count(*) FROM dnc WHERE customer_id = ?", customer_id),
                outdial_targets=0 if outdial_id is None else one(targets.format("= ?"), outdial_id),
            )

        return await self._read(count)


_DNC_COLUMNS: Final = "customer_id, number, detail, tm_create"
_INSERT_DNC: Final = f"INSERT OR IGNORE INTO dnc ({_DNC_COLUMNS}) VALUES (?, ?, ?, ?)"
# Numbers looked up per query: well under SQLite's limit of bound parameters.
_DNC_LOOKUP_CHUNK: Final = 500


def _dnc_row(entry: DncNumber) -> tuple[str, str, str, str]:
    return (entry.customer_id, entry.number, entry.detail, entry.tm_create)


def _dnc_from_row(row: Sequence[Any]) -> DncNumber:
    return DncNumber(customer_id=row[0], number=row[1], detail=row[2], tm_create=row[3])


def _select_dnc(customer_id: str, number: str, connection: sqlite3.Connection) -> DncNumber | None:
    row = connection.execute(
        f"SELECT {_DNC_COLUMNS} FROM dnc WHERE customer_id = ? AND number = ?",
        (customer_id, number),
    ).fetchone()
    return None if row is None else _dnc_from_row(row)


def dnc_listed_numbers(
    customer_id: str, numbers: Sequence[str], connection: sqlite3.Connection
) -> set[str]:
    """Which of ``numbers`` the customer's do-not-call list holds, read on ``connection``
    (inside the caller's transaction, such as a claim's)."""
    unique = list(dict.fromkeys(numbers))
    listed: set[str] = set()
    for start in range(0, len(unique), _DNC_LOOKUP_CHUNK):
        chunk = unique[start : start + _DNC_LOOKUP_CHUNK]
        marks = ", ".join("?" * len(chunk))
        rows = connection.execute(
            f"SELECT number FROM dnc WHERE customer_id = ? AND number IN ({marks})",
            (customer_id, *chunk),
        )
        listed.update(row[0] for row in rows)
    return listed


def _stage_dnc(rows: Sequence[tuple[str, ...]], connection: sqlite3.Connection) -> None:
    connection.executemany(
        f"INSERT INTO dnc_staged (batch, {_DNC_COLUMNS}) VALUES (?, ?, ?, ?, ?)", rows
    )


def _settle_dnc_chunk(batch: str, publish: bool, connection: sqlite3.Connection) -> bool:
    """Move (or, unpublished, drop) the oldest ``PUBLISH_CHUNK`` staged rows of the batch,
    in file order so the first entry of a number wins; False when none is left."""
    bound = connection.execute(
        "SELECT max(rowid) FROM (SELECT rowid FROM dnc_staged WHERE batch = ? "
        "ORDER BY rowid LIMIT ?)",
        (batch, PUBLISH_CHUNK),
    ).fetchone()[0]
    if bound is None:
        return False
    if publish:
        connection.execute(
            f"INSERT OR IGNORE INTO dnc ({_DNC_COLUMNS}) SELECT {_DNC_COLUMNS} FROM dnc_staged "
            "WHERE batch = ? AND rowid <= ? ORDER BY rowid",
            (batch, bound),
        )
    connection.execute("DELETE FROM dnc_staged WHERE batch = ? AND rowid <= ?", (batch, bound))
    return True


def _recover_dnc_imports(connection: sqlite3.Connection) -> None:
    """At open: finish the do-not-call imports that were published, drop the others."""
    for batch, published in connection.execute("SELECT id, published FROM dnc_batch").fetchall():
        while _settle_dnc_chunk(batch, bool(published), connection):
            pass
    connection.execute("DELETE FROM dnc_batch")
