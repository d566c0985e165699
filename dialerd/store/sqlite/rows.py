"""The SQL of the SQLite backend and what maps its rows to the model and back:
targets and their placements, pages, fences, imports, do-not-call numbers."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Generic, TypeVar, cast

import msgspec

from dialerd.core.targets import (
    CallingRules,
    Held,
    NumberState,
    Placement,
    Queue,
    day_of,
    has_destination,
    place_new,
)
from dialerd.model import (
    SLOTS,
    Address,
    Campaign,
    Campaigncall,
    DncNumber,
    OutdialTarget,
    Page,
    SkippedDestination,
    TargetStatus,
    format_time,
    parse_time,
)
from dialerd.store.base import Conflict, Fence, LeaseLost
from dialerd.store.documents import (
    CAMPAIGN,
    CAMPAIGNCALL,
    OUTDIAL,
    OUTPLAN,
    Document,
    Kind,
    encode,
    page_limit,
)

R = TypeVar("R")

BUSY_TIMEOUT_MS: Final = 5000
CACHE_KIB: Final = 64 * 1024
# Seconds a failed or cancelled import may take to drop what it staged.
DISCARD_SECONDS: Final = 30
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)

_decode_address = msgspec.json.Decoder(Address).decode

TARGET_COLUMNS: Final = (
    "id, outdial_id, name, detail, data, status, "
    "destination_0, destination_1, destination_2, destination_3, destination_4, "
    "try_count_0, try_count_1, try_count_2, try_count_3, try_count_4, "
    "tm_create, tm_update, tm_delete, skipped"
)
# A target is hidden while the import that wrote it is not published yet. An imported
# row keeps its batch: once the batch's ``pending_batch`` row is gone, it is visible.
VISIBLE: Final = "(batch IS NULL OR batch NOT IN (SELECT id FROM pending_batch))"
# Rows of a failed import removed per transaction: each is short.
PUBLISH_CHUNK: Final = 1000
PLACEMENT_COLUMNS: Final = "pick, touched, due, until, slot, held"
INSERT_TARGET: Final = (
    f"INSERT INTO target ({TARGET_COLUMNS}, {PLACEMENT_COLUMNS}, batch) "
    f"VALUES ({', '.join('?' * 27)})"
)
# Promote the waiting targets whose due has come (index upkeep, no rule).
PROMOTE: Final = (
    f"UPDATE target SET pick = {Queue.READY}, held = '' "
    f"WHERE outdial_id = ? AND pick = {Queue.WAITING} AND due <= ?"
)
# The first ready targets, in the order they are dialed (a claim reads as many as it
# has attempts to make, in one statement).
READY_HEAD: Final = (
    f"SELECT {TARGET_COLUMNS}, {PLACEMENT_COLUMNS}, seq FROM target "
    f"WHERE outdial_id = ? AND pick = {Queue.READY} ORDER BY touched, seq LIMIT ?"
)
# One more attempt to a number today (a row keeps only its latest day).
COUNT_ATTEMPT: Final = (
    "INSERT INTO number_day (customer_id, number, day, attempts) VALUES (?, ?, ?, 1) "
    "ON CONFLICT (customer_id, number) DO UPDATE SET attempts = "
    "CASE WHEN day = excluded.day THEN attempts + 1 ELSE 1 END, day = excluded.day"
)
LOCK_NUMBER: Final = (
    "INSERT INTO number_lock (customer_id, number, locked_until) VALUES (?, ?, ?) "
    "ON CONFLICT (customer_id, number) DO UPDATE SET "
    "locked_until = max(locked_until, excluded.locked_until)"
)
ANY_WAITING: Final = f"SELECT 1 FROM target WHERE outdial_id = ? AND pick = {Queue.WAITING} LIMIT 1"
# Without statistics the planner would pick the listing index and scan.
ANY_PROGRESSING: Final = (
    "SELECT 1 FROM target INDEXED BY target_progressing WHERE outdial_id = ? "
    "AND status = 'progressing' AND tm_delete IS NULL LIMIT 1"
)
ANY_ACTIVE: Final = "SELECT 1 FROM campaigncall WHERE campaign_id = ? AND status != 'done' LIMIT 1"
# A claimed target by the slot dialed: its try count, and the slots it stepped over.
CLAIM_TARGET: Final = tuple(
    f"UPDATE target SET status = 'progressing', pick = 0, try_count_{n} = ?, "
    "tm_update = ?, skipped = ? WHERE seq = ?"
    for n in SLOTS
)
PLACE_TARGET: Final = (
    "UPDATE target SET status = ?, pick = ?, touched = ?, due = ?, until = ?, slot = ?, "
    "held = ?, try_count_0 = ?, try_count_1 = ?, try_count_2 = ?, try_count_3 = ?, "
    "try_count_4 = ?, tm_update = ?, skipped = coalesce(?, skipped) WHERE seq = ?"
)
# Lock rows deleted per transaction by prune_locks.
PRUNE_CHUNK: Final = 1000
PRUNE_LOCKS: Final = (
    "DELETE FROM number_lock WHERE (customer_id, number) IN (SELECT customer_id, number "
    "FROM number_lock INDEXED BY number_lock_expiry WHERE locked_until <= ? LIMIT ?)"
)


# The timestamps and placements the rows of a claim or of a burst's ends read and write
# repeat (the moment of the burst, an import's creation time, the due of a retry after
# it): each is parsed or formatted once while it repeats, not once per row (formatting
# or parsing a timestamp costs tens of dictionary look-ups). Bounded: emptied when full.
_STAMPS: dict[datetime, str] = {}
_PLACEMENTS: dict[tuple[Any, ...], Placement] = {}
_MEMORY: Final = 1024


def stamp_of(moment: datetime) -> str:
    """``format_time(moment)``, remembered."""
    text = _STAMPS.get(moment)
    if text is None:
        if len(_STAMPS) >= _MEMORY:
            _STAMPS.clear()
        text = _STAMPS[moment] = format_time(moment)
    return text


def _placement_values(placement: Placement) -> tuple[Any, ...]:
    """The placement columns."""
    return (
        int(placement.queue),
        stamp_of(placement.touched),
        stamp_of(placement.due),
        None if placement.until is None else stamp_of(placement.until),
        placement.slot,
        placement.held.value,
    )


def _placement_from_row(status: str, row: Sequence[Any]) -> Placement:
    """``pick, touched, due, until, slot, held`` of a row whose target has ``status``
    (remembered: rows placed by one claim or end share them)."""
    key = (status, *row)
    placement = _PLACEMENTS.get(key)
    if placement is None:
        if len(_PLACEMENTS) >= _MEMORY:
            _PLACEMENTS.clear()
        placement = _PLACEMENTS[key] = Placement(
            status=TargetStatus(status),
            queue=Queue(abs(row[0])),
            touched=parse_time(row[1]),
            due=parse_time(row[2]),
            until=None if row[3] is None else parse_time(row[3]),
            slot=row[4],
            held=Held(row[5]),
        )
    return placement


def target_row(target: OutdialTarget, batch: str | None = None) -> tuple[Any, ...]:
    """A target's row as the core places it; ``batch``: a staged import's, hidden until
    it is published (``VISIBLE``; claims step over it: ``ready_head``)."""
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
        *_new_placement(target),
        batch,
    )


# Placement columns of new targets by what ``place_new`` reads of them: the targets of
# one import share a few (one per first dialable slot), decided once, not per row.
_PLACED: dict[tuple[Any, ...], tuple[Any, ...]] = {}
_PLACED_MEMORY: Final = 256


def _new_placement(target: OutdialTarget) -> tuple[Any, ...]:
    key = (
        target.tm_create,
        target.status,
        target.tm_delete,
        target.try_counts,
        tuple(has_destination(address) for address in target.destinations),
    )
    values = _PLACED.get(key)
    if values is None:
        if len(_PLACED) >= _PLACED_MEMORY:
            _PLACED.clear()
        values = _PLACED[key] = _placement_values(place_new(target))
    return values


def target_from_row(row: Sequence[Any]) -> OutdialTarget:
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
        **(hold_of(row[20], row[22], row[25]) if len(row) > 25 else {}),
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


def hold_of(pick: int, due: str, held: str) -> dict[str, str]:
    """``hold_reason`` and ``tm_next_try`` of a target the rules hold back."""
    if not held:
        return {}
    return {"hold_reason": held, "tm_next_try": due if pick == Queue.WAITING else ""}


def number_states(
    customer_id: str,
    numbers: Sequence[str],
    now: datetime,
    rules: CallingRules | None,
    connection: sqlite3.Connection,
) -> dict[str, NumberState]:
    """What the calling rules need to know of these numbers (the E.164 readings of what
    the trunk dials for one target or several, ``dialed.numbers_of``), read in the
    claim's transaction, a few statements for all of them: listed (always), locked
    after an abandoned call and attempts today (when ``rules`` count them)."""
    if not numbers:
        return {}
    listed = dnc_listed_numbers(customer_id, numbers, connection)
    locks: dict[str, str] = {}
    today: dict[str, int] = {}
    locking = rules is not None and rules.abandoned_lockout
    counting = rules is not None and rules.daily_attempts is not None
    unique = list(dict.fromkeys(numbers))
    for start in range(0, len(unique), _DNC_LOOKUP_CHUNK):
        chunk = unique[start : start + _DNC_LOOKUP_CHUNK]
        marks = ", ".join("?" * len(chunk))
        if locking:
            locks.update(
                connection.execute(
                    "SELECT number, locked_until FROM number_lock WHERE customer_id = ? "
                    f"AND number IN ({marks})",
                    (customer_id, *chunk),
                ).fetchall()
            )
        if counting:
            today.update(
                connection.execute(
                    "SELECT number, attempts FROM number_day WHERE customer_id = ? AND day = ? "
                    f"AND number IN ({marks})",
                    (customer_id, day_of(now), *chunk),
                ).fetchall()
            )
    return {
        number: NumberState(
            listed=number in listed,
            locked_until=parse_time(locks[number]) if number in locks else None,
            attempts_today=int(today.get(number, 0)),
        )
        for number in unique
    }


def placed_target(row: Sequence[Any]) -> tuple[OutdialTarget, Placement, int]:
    """A row read as ``TARGET_COLUMNS, PLACEMENT_COLUMNS, seq``."""
    return target_from_row(row), _placement_from_row(row[5], row[20:26]), row[26]


def placement_params(
    seq: int,
    try_counts: Sequence[int],
    placement: Placement,
    now: str,
    *,
    decided: bool = False,
) -> tuple[Any, ...]:
    """``PLACE_TARGET``'s parameters: what the core decided for a target (``decided``:
    a claim's decision, which also records the destinations it skipped)."""
    skipped = ",".join(map(str, placement.skipped)) if decided else None
    return (
        placement.status.value,
        *_placement_values(placement),
        *try_counts,
        now,
        skipped,
        seq,
    )


def token_filter(page_token: str, key: str = "id") -> tuple[str, tuple[str, ...]]:
    """SQL condition and parameters for "strictly after this token" in newest-first order
    of ``(tm_create, key)``."""
    if not page_token:
        return "", ()
    tm_create, separator, resource_id = page_token.partition("|")
    if separator:
        return f" AND (tm_create, {key}) < (?, ?)", (tm_create, resource_id)
    return " AND tm_create < ?", (tm_create,)


def next_token(keys: Sequence[Sequence[Any]], limit: int) -> str:
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


def micros_of(moment: datetime) -> int:
    """Microseconds since the Unix epoch: how lease expiry is stored and compared."""
    return (moment - _EPOCH) // _MICROSECOND


def wall_clock() -> datetime:
    """The wall clock: the moment of a lease check whose caller passed none."""
    return datetime.now(UTC)


def check_fence(
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
            (campaign_id, fence.owner, fence.token, micros_of(now)),
        ).fetchone()
    if held is None:
        raise LeaseLost(f"campaign {campaign_id}: the lease of {fence.owner} is no longer held")


# Where an unpublished import's rows are in the ready index, (touched, first seq): the
# imports pending on an outdial, for ``ready_head`` to step over.
_PENDING_PLACES: Final = (
    "SELECT place.touched, min(batch.first_seq) FROM pending_place AS place "
    "JOIN pending_batch AS batch ON batch.id = place.batch "
    "WHERE place.outdial_id = ? GROUP BY place.touched ORDER BY place.touched"
)
_READY: Final = (
    f"SELECT {TARGET_COLUMNS}, {PLACEMENT_COLUMNS}, seq FROM target "
    f"WHERE outdial_id = ? AND pick = {Queue.READY}"
)
# The stretches of the ready index around the pending rows: each an exact index range
# (a row value bound, ``(touched, seq) < (?, ?)``, is searched as ``touched <= ?`` and
# would read through the pending rows).
_READY_BELOW: Final = f"{_READY} AND touched < ? ORDER BY touched, seq LIMIT ?"
_READY_BETWEEN: Final = f"{_READY} AND touched > ? AND touched < ? ORDER BY touched, seq LIMIT ?"
_READY_AT_BEFORE: Final = f"{_READY} AND touched = ? AND seq < ? ORDER BY seq LIMIT ?"
_READY_ABOVE: Final = f"{_READY} AND touched > ? ORDER BY touched, seq LIMIT ?"


def ready_head(connection: sqlite3.Connection, outdial_id: str, wanted: int) -> list[Any]:
    """The first ``wanted`` ready targets of the outdial (``READY_HEAD``'s rows), without
    the rows of an import not published yet.

    Those are written with their queue and wait in the ready index, so that publishing
    is one delete (no pass over the rows after it). Every row of an import has one
    ``touched`` (its creation time) and a ``seq`` from its batch's ``first_seq`` on:
    so they lie in the index between (touched, first_seq) and the next ``touched``,
    and the head is read around those stretches (an index range each), never through
    them. A target created in the same microsecond as an import it is not part of,
    after that import began, is in such a stretch too: it waits for the import to be
    published or dropped."""
    places = connection.execute(_PENDING_PLACES, (outdial_id,)).fetchall()
    if not places:
        return connection.execute(READY_HEAD, (outdial_id, wanted)).fetchall()
    rows: list[Any] = []
    above: str | None = None  # the touched of the last stretch stepped over
    for touched, first in places:
        ranges: list[tuple[str, tuple[Any, ...]]]
        if above is None:
            ranges = [(_READY_BELOW, (touched,))]
        else:
            ranges = [(_READY_BETWEEN, (above, touched))]
        ranges.append((_READY_AT_BEFORE, (touched, first)))
        for query, bounds in ranges:
            rows += connection.execute(query, (outdial_id, *bounds, wanted - len(rows)))
            if len(rows) >= wanted:
                return rows
        above = touched
    rows += connection.execute(_READY_ABOVE, (outdial_id, above, wanted - len(rows)))
    return rows


def any_ready(connection: sqlite3.Connection, outdial_id: str) -> bool:
    """Whether the outdial has a ready target (one of a published import or none)."""
    return bool(ready_head(connection, outdial_id, 1))


def stage_places(
    batch: str, places: Iterable[tuple[str, str]], connection: sqlite3.Connection
) -> bool:
    """In a staging transaction of ``batch``, before its rows are inserted: record where
    they go (``places``: their outdials and ``touched``; and, the first time, the seq
    from which they are, for ``ready_head`` and ``discard_chunk``). False when the
    batch is not pending (any more): its rows must not be written."""
    marked = connection.execute(
        "UPDATE pending_batch SET first_seq = coalesce(first_seq, "
        "(SELECT coalesce(max(seq), 0) + 1 FROM target)) WHERE id = ?",
        (batch,),
    )
    if marked.rowcount == 0:
        return False
    connection.executemany(
        "INSERT OR IGNORE INTO pending_place (outdial_id, touched, batch) VALUES (?, ?, ?)",
        [(outdial_id, touched, batch) for outdial_id, touched in places],
    )
    return True


# The columns of ``target_row`` where its outdial and ``touched`` are (``stage_places``).
_ROW_COLUMNS: Final = [name.strip() for name in f"{TARGET_COLUMNS}, {PLACEMENT_COLUMNS}".split(",")]
ROW_OUTDIAL: Final = _ROW_COLUMNS.index("outdial_id")
ROW_TOUCHED: Final = _ROW_COLUMNS.index("touched")


def publish_batch(batch: str, connection: sqlite3.Connection) -> None:
    """All of ``batch``'s rows visible and dialable at once."""
    connection.execute("DELETE FROM pending_batch WHERE id = ?", (batch,))
    connection.execute("DELETE FROM pending_place WHERE batch = ?", (batch,))


def discard_chunk(batch: str, connection: sqlite3.Connection) -> bool:
    """Remove the first ``PUBLISH_CHUNK`` rows of an unpublished ``batch`` (they are all
    from its ``first_seq`` on, which then moves past them); False when none is left."""
    found = connection.execute("SELECT first_seq FROM pending_batch WHERE id = ?", (batch,))
    first = found.fetchone()
    if first is None or first[0] is None:
        return False
    seqs = connection.execute(
        "SELECT seq FROM target WHERE seq >= ? AND batch = ? ORDER BY seq LIMIT ?",
        (first[0], batch, PUBLISH_CHUNK),
    ).fetchall()
    if not seqs:
        return False
    low, high = seqs[0][0], seqs[-1][0]
    connection.execute(
        "DELETE FROM target WHERE seq >= ? AND seq <= ? AND batch = ?", (low, high, batch)
    )
    connection.execute("UPDATE pending_batch SET first_seq = ? WHERE id = ?", (high + 1, batch))
    return True


def forget_batch(batch: str, connection: sqlite3.Connection) -> None:
    """The end of a dropped import, once ``discard_chunk`` removed all its rows."""
    publish_batch(batch, connection)


def recover_imports(connection: sqlite3.Connection) -> None:
    """At open: rows of an import that was never published (the process died) go (a
    published import needs nothing more)."""
    for (batch,) in connection.execute("SELECT id FROM pending_batch").fetchall():
        while discard_chunk(batch, connection):
            pass
    connection.execute("DELETE FROM pending_batch")
    connection.execute("DELETE FROM pending_place")


def in_transaction(work: Callable[[sqlite3.Connection], R], connection: sqlite3.Connection) -> R:
    connection.execute("BEGIN IMMEDIATE")
    try:
        result = work(connection)
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return result


def select_target(
    outdial_id: str | None, target_id: str, connection: sqlite3.Connection
) -> OutdialTarget | None:
    query = (
        f"SELECT {TARGET_COLUMNS}, {PLACEMENT_COLUMNS} FROM target "
        "WHERE id = ? AND tm_delete IS NULL "
        f"AND {VISIBLE}"
    )
    params: tuple[str, ...] = (target_id,)
    if outdial_id is not None:
        query += " AND outdial_id = ?"
        params += (outdial_id,)
    row = connection.execute(query, params).fetchone()
    return None if row is None else target_from_row(row)


class Documents(Generic[Document]):
    """A table of documents (one kind): campaigns, outplans or outdials."""

    def __init__(self, kind: Kind[Document]) -> None:
        self.table = kind.name
        self.decode = kind.decode

    def _columns(self, resource: Document) -> dict[str, Any]:
        columns: dict[str, Any] = {
            "id": resource.id,
            "customer_id": resource.customer_id,
            "tm_create": resource.tm_create,
            "body": encode(resource),
        }
        if isinstance(resource, Campaign):
            columns["status"] = resource.status.value
        return columns

    def create(self, resource: Document, connection: sqlite3.Connection) -> Document:
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
    ) -> Document | None:
        query = f"SELECT body FROM {self.table} WHERE id = ? AND deleted = 0"
        params: tuple[str, ...] = (resource_id,)
        if customer_id is not None:
            query += " AND customer_id = ?"
            params += (customer_id,)
        row = connection.execute(query, params).fetchone()
        return None if row is None else self.decode(row[0])

    def update(self, resource: Document, connection: sqlite3.Connection) -> Document:
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
    ) -> Document | None:
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
    ) -> Page[Document]:
        limit = page_limit(page_size)
        condition, params = token_filter(page_token)
        rows = connection.execute(
            f"SELECT body, tm_create, id FROM {self.table} WHERE customer_id = ? AND deleted = 0"
            f"{condition} ORDER BY tm_create DESC, id DESC LIMIT ?",
            (customer_id, *params, limit + 1),
        ).fetchall()
        items = [self.decode(row[0]) for row in rows[:limit]]
        return Page(result=items, next_page_token=next_token(rows, limit))


CAMPAIGNS: Final = Documents(CAMPAIGN)
OUTPLANS: Final = Documents(OUTPLAN)
OUTDIALS: Final = Documents(OUTDIAL)
CAMPAIGNCALLS: Final = Documents(CAMPAIGNCALL)


def documents_of(kind: Kind[Document]) -> Documents[Document]:
    tables: dict[str, Documents[Any]] = {
        CAMPAIGN.name: CAMPAIGNS,
        OUTPLAN.name: OUTPLANS,
        OUTDIAL.name: OUTDIALS,
        CAMPAIGNCALL.name: CAMPAIGNCALLS,
    }
    return cast(Documents[Document], tables[kind.name])


def store_campaigncall(campaigncall: Campaigncall, connection: sqlite3.Connection) -> None:
    connection.execute(
        "UPDATE campaigncall SET status = ?, body = ? WHERE id = ?",
        (campaigncall.status.value, encode(campaigncall), campaigncall.id),
    )


DNC_COLUMNS: Final = "customer_id, number, detail, tm_create"
INSERT_DNC: Final = f"INSERT OR IGNORE INTO dnc ({DNC_COLUMNS}) VALUES (?, ?, ?, ?)"
# Numbers looked up per query: well under SQLite's limit of bound parameters.
_DNC_LOOKUP_CHUNK: Final = 500


def dnc_row(entry: DncNumber) -> tuple[str, str, str, str]:
    return (entry.customer_id, entry.number, entry.detail, entry.tm_create)


def dnc_from_row(row: Sequence[Any]) -> DncNumber:
    return DncNumber(customer_id=row[0], number=row[1], detail=row[2], tm_create=row[3])


def select_dnc(customer_id: str, number: str, connection: sqlite3.Connection) -> DncNumber | None:
    row = connection.execute(
        f"SELECT {DNC_COLUMNS} FROM dnc WHERE customer_id = ? AND number = ?",
        (customer_id, number),
    ).fetchone()
    return None if row is None else dnc_from_row(row)


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


def stage_dnc(rows: Sequence[tuple[str, ...]], connection: sqlite3.Connection) -> None:
    connection.executemany(
        f"INSERT INTO dnc_staged (batch, {DNC_COLUMNS}) VALUES (?, ?, ?, ?, ?)", rows
    )


def settle_dnc_chunk(batch: str, publish: bool, connection: sqlite3.Connection) -> bool:
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
            f"INSERT OR IGNORE INTO dnc ({DNC_COLUMNS}) SELECT {DNC_COLUMNS} FROM dnc_staged "
            "WHERE batch = ? AND rowid <= ? ORDER BY rowid",
            (batch, bound),
        )
    connection.execute("DELETE FROM dnc_staged WHERE batch = ? AND rowid <= ?", (batch, bound))
    return True


def recover_dnc_imports(connection: sqlite3.Connection) -> None:
    """At open: finish the do-not-call imports that were published, drop the others."""
    for batch, published in connection.execute("SELECT id, published FROM dnc_batch").fetchall():
        while settle_dnc_chunk(batch, bool(published), connection):
            pass
    connection.execute("DELETE FROM dnc_batch")
