"""The SQLite backend's outbox of events (``dialerd.events``): table ``event`` (one
row per event, ``seq`` its position, shared by all customers), each customer's delivered
position, the events set aside as failed, and the customers' webhook settings.

``outbox_row`` is the one call a writing step makes, inside its own transaction;
``outbox_rows`` writes many events of a step at once.

Events one step writes one after the other for one customer and campaign (a claim's
``campaigncall_created`` events, an end's answer, end and target) are one row of
``span`` events (schema 12): positions ``seq`` to ``seq + span - 1``, their type, body
and cause packed in ``body`` (msgpack, ``[[type, body, cause], ...]``). A row of one
event keeps the plain form (``span`` 1, the body as stored). What a reader gets is the
same either way: one ``OutboxEntry`` per event, its position its own."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Final

import msgspec

from dialerd.events.model import CustomerWebhook, FailedEvent, OutboxEntry
from dialerd.model import format_time
from dialerd.store.base import Fence
from dialerd.store.sqlite.connection import SqliteConnection
from dialerd.store.sqlite.rows import check_fence

_WEBHOOK = msgspec.json.Decoder(CustomerWebhook)
# One event: (customer_id, campaign_id, type, body, cause).
Event = tuple[str, str, str, bytes, str]
# The most events in one row: a reader looking for positions after P starts at the
# row P - MAX_SPAN + 1 could begin at.
MAX_SPAN: Final = 128
_PACKED = msgspec.msgpack.Decoder(list[tuple[str, bytes, str]])
_PACK = msgspec.msgpack.Encoder()
# A row of ``span`` events: (seq, customer_id, campaign_id, type, body, cause, span).
_INSERT_ROW = (
    "INSERT INTO event (seq, customer_id, campaign_id, type, body, cause, span) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
# The last position of a row.
_LAST = "seq + span - 1"


def outbox_row(
    connection: sqlite3.Connection,
    event_type: str,
    customer_id: str,
    campaign_id: str,
    body: bytes,
    cause: str = "",
) -> int:
    """Append one event in the caller's transaction; its position."""
    seq = _next_position(connection)
    connection.execute(_INSERT_ROW, (seq, customer_id, campaign_id, event_type, body, cause, 1))
    return seq


def _next_position(connection: sqlite3.Connection) -> int:
    """The position after the last row's last event (positions never go back: pruning
    keeps the newest row). The caller's transaction holds the write lock: nothing else
    appends before its rows are in."""
    row = connection.execute("SELECT seq + span FROM event ORDER BY seq DESC LIMIT 1").fetchone()
    return 1 if row is None else int(row[0])


def outbox_rows(connection: sqlite3.Connection, events: Sequence[Event]) -> None:
    """Append the events in order in the caller's transaction: a run of one customer's
    and campaign's events is one row (up to ``MAX_SPAN``)."""
    rows: list[tuple[int, str, str, str, bytes, str, int]] = []
    seq = _next_position(connection)
    start = 0
    count = len(events)
    while start < count:
        customer_id, campaign_id, event_type, body, cause = events[start]
        end = start + 1
        while (
            end < count
            and end - start < MAX_SPAN
            and events[end][0] == customer_id
            and events[end][1] == campaign_id
        ):
            end += 1
        if end - start == 1:
            rows.append((seq, customer_id, campaign_id, event_type, body, cause, 1))
        else:
            packed = _PACK.encode([event[2:] for event in events[start:end]])
            rows.append((seq, customer_id, campaign_id, "", packed, "", end - start))
        seq += end - start
        start = end
    connection.executemany(_INSERT_ROW, rows)


def _seq(position: str) -> int:
    return int(position) if position else 0


def _entry(row: tuple[int, str, str, str, bytes, str]) -> OutboxEntry:
    return OutboxEntry(
        position=str(row[0]),
        customer_id=row[1],
        campaign_id=row[2],
        type=row[3],
        body=bytes(row[4]),
        cause=row[5],
    )


def _entries(row: tuple[int, str, str, str, bytes, str, int], after: int) -> list[OutboxEntry]:
    """The events of a row (``SELECT_ROW``) at positions after ``after``."""
    seq, customer_id, campaign_id, _, body, _, span = row
    if span == 1:
        return [_entry(row[:6])] if seq > after else []
    return [
        OutboxEntry(
            position=str(seq + n),
            customer_id=customer_id,
            campaign_id=campaign_id,
            type=event_type,
            body=event_body,
            cause=cause,
        )
        for n, (event_type, event_body, cause) in enumerate(_PACKED.decode(body))
        if seq + n > after
    ]


def _lease_key(customer_id: str) -> str:
    return f"events:{customer_id}"


def _advance(connection: sqlite3.Connection, customer_id: str, seq: int) -> None:
    connection.execute(
        "INSERT INTO event_delivered (customer_id, seq) VALUES (?, ?) "
        "ON CONFLICT (customer_id) DO UPDATE SET seq = max(seq, excluded.seq)",
        (customer_id, seq),
    )


class SqliteOutbox(SqliteConnection):
    """The ``Outbox`` and ``WebhookSettings`` ports on the SQLite file."""

    async def append_event(
        self, event_type: str, customer_id: str, campaign_id: str, body: bytes
    ) -> str:
        """Append one event; its position."""
        seq = await self._write(
            lambda connection: outbox_row(connection, event_type, customer_id, campaign_id, body)
        )
        return str(seq)

    async def read_events(
        self, customer_id: str, after: str, limit: int, campaign_id: str | None = None
    ) -> list[OutboxEntry]:
        """The customer's events after ``after``, oldest first."""
        start = _seq(after)
        query = (
            "SELECT seq, customer_id, campaign_id, type, body, cause, span FROM event "
            f"WHERE customer_id = ? AND seq > ? AND {_LAST} > ?"
        )
        params: tuple[str | int, ...] = (customer_id, start - MAX_SPAN, start)
        if campaign_id is not None:
            query += " AND campaign_id = ?"
            params = (*params, campaign_id)

        def select(connection: sqlite3.Connection) -> list[OutboxEntry]:
            # ``limit`` rows hold ``limit`` events or more
            rows = connection.execute(query + " ORDER BY seq LIMIT ?", (*params, limit))
            entries = [entry for row in rows.fetchall() for entry in _entries(row, start)]
            return entries[:limit]

        return await self._read(select)

    async def event_customers(self) -> list[str]:
        """Every customer with an event kept, or a delivered position."""

        def select(connection: sqlite3.Connection) -> list[str]:
            # A skip-scan of the (customer_id, seq) index: one step per customer, however
            # many events the outbox holds.
            rows = connection.execute(
                "WITH RECURSIVE c(id) AS (SELECT min(customer_id) FROM event UNION ALL "
                "SELECT (SELECT min(customer_id) FROM event WHERE customer_id > c.id) FROM c "
                "WHERE c.id IS NOT NULL) "
                "SELECT id FROM c WHERE id IS NOT NULL UNION "
                "SELECT customer_id FROM event_delivered ORDER BY 1"
            ).fetchall()
            return [str(row[0]) for row in rows]

        return await self._read(select)

    async def delivered_position(self, customer_id: str) -> str:
        """The customer's delivered position ("" before any)."""

        def select(connection: sqlite3.Connection) -> str:
            row = connection.execute(
                "SELECT seq FROM event_delivered WHERE customer_id = ?", (customer_id,)
            ).fetchone()
            return "" if row is None else str(row[0])

        return await self._read(select)

    async def mark_delivered(
        self, customer_id: str, position: str, passed: int, fence: Fence, now: datetime
    ) -> None:
        """Move the delivered position forward, under the customer's delivery lease."""

        def mark(connection: sqlite3.Connection) -> None:
            check_fence(connection, fence, _lease_key(customer_id), now)
            _advance(connection, customer_id, _seq(position))

        await self._write(mark)

    async def set_aside(self, entry: OutboxEntry, error: str, now: datetime, fence: Fence) -> None:
        """Keep the entry as failed (the caller moves the delivered position past it)."""

        def aside(connection: sqlite3.Connection) -> None:
            check_fence(connection, fence, _lease_key(entry.customer_id), now)
            connection.execute(
                "INSERT OR REPLACE INTO event_failed "
                "(customer_id, seq, campaign_id, type, body, cause, error, tm_failed, redeliver) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)",
                (
                    entry.customer_id,
                    _seq(entry.position),
                    entry.campaign_id,
                    entry.type,
                    entry.body,
                    entry.cause,
                    error,
                    format_time(now),
                ),
            )

        await self._write(aside)

    async def failed_events(self, customer_id: str) -> list[FailedEvent]:
        """The customer's events set aside, oldest first."""

        def select(connection: sqlite3.Connection) -> list[FailedEvent]:
            rows = connection.execute(
                "SELECT seq, customer_id, campaign_id, type, body, cause, error, tm_failed, "
                "redeliver FROM event_failed WHERE customer_id = ? ORDER BY seq",
                (customer_id,),
            ).fetchall()
            return [
                FailedEvent(
                    entry=_entry(row[:6]), error=row[6], tm_failed=row[7], redeliver=bool(row[8])
                )
                for row in rows
            ]

        return await self._read(select)

    async def redeliver_event(self, customer_id: str, position: str) -> FailedEvent | None:
        """Mark a failed event to be sent again."""
        if not position.isdigit():
            return None

        def mark(connection: sqlite3.Connection) -> FailedEvent | None:
            row = connection.execute(
                "UPDATE event_failed SET redeliver = 1 WHERE customer_id = ? AND seq = ? "
                "RETURNING seq, customer_id, campaign_id, type, body, cause, error, tm_failed",
                (customer_id, int(position)),
            ).fetchone()
            if row is None:
                return None
            return FailedEvent(
                entry=_entry(row[:6]), error=row[6], tm_failed=row[7], redeliver=True
            )

        return await self._write(mark)

    async def forget_failed(self, customer_id: str, position: str, error: str | None) -> None:
        """Drop a redelivered event, or keep it failed with the new error."""

        def forget(connection: sqlite3.Connection) -> None:
            if error is None:
                connection.execute(
                    "DELETE FROM event_failed WHERE customer_id = ? AND seq = ?",
                    (customer_id, _seq(position)),
                )
            else:
                connection.execute(
                    "UPDATE event_failed SET redeliver = 0, error = ? "
                    "WHERE customer_id = ? AND seq = ?",
                    (error, customer_id, _seq(position)),
                )

        await self._write(forget)

    async def outbox_backlog(self, customer_id: str) -> int:
        """How many of the customer's events wait for delivery."""

        def count(connection: sqlite3.Connection) -> int:
            delivered = connection.execute(
                "SELECT seq FROM event_delivered WHERE customer_id = ?", (customer_id,)
            ).fetchone()
            after = 0 if delivered is None else int(delivered[0])
            row = connection.execute(
                f"SELECT coalesce(sum(min(span, {_LAST} - ?)), 0) FROM event "
                f"WHERE customer_id = ? AND seq > ? AND {_LAST} > ?",
                (after, customer_id, after - MAX_SPAN, after),
            ).fetchone()
            return int(row[0])

        return await self._read(count)

    async def prune_events(self, customer_id: str, before: str) -> int:
        """Delete the customer's delivered events before ``before``."""

        def prune(connection: sqlite3.Connection) -> int:
            # A row goes once all its events are before both.
            spans = connection.execute(
                f"DELETE FROM event WHERE customer_id = ? AND seq < ? AND {_LAST} < ? "
                f"AND {_LAST} < coalesce((SELECT seq FROM event_delivered "
                "WHERE customer_id = ?), 0) RETURNING span",
                (customer_id, _seq(before), _seq(before), customer_id),
            ).fetchall()
            return sum(span for (span,) in spans)

        return await self._write(prune)

    # -- webhook settings ------------------------------------------------------------------
    async def get_webhook(self, customer_id: str) -> CustomerWebhook | None:
        """The customer's webhook settings, if set."""

        def select(connection: sqlite3.Connection) -> CustomerWebhook | None:
            row = connection.execute(
                "SELECT body FROM webhook WHERE customer_id = ?", (customer_id,)
            ).fetchone()
            return None if row is None else _WEBHOOK.decode(row[0])

        return await self._read(select)

    async def put_webhook(self, webhook: CustomerWebhook) -> CustomerWebhook:
        """Replace the customer's webhook settings."""
        await self._write(
            lambda connection: connection.execute(
                "INSERT OR REPLACE INTO webhook (customer_id, body) VALUES (?, ?)",
                (webhook.customer_id, msgspec.json.encode(webhook)),
            )
        )
        return webhook
