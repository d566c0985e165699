"""The SQLite store's schema as numbered migrations, applied in order at open.

``PRAGMA user_version`` holds how many steps a database file has applied. A step is
never edited once released: a schema change is a new step appended to ``MIGRATIONS``.

Campaigns, outplans, outdials and campaigncalls are kept as msgspec JSON (``body``)
beside the columns their queries filter and sort on. Targets are kept as columns,
because the claim of the next target reads and writes them on every attempt:

- ``seq`` is the creation order (a bulk insert keeps its list order);
- ``pick``, ``touched``, ``due``, ``until``, ``slot`` and ``held`` are the
  ``dialerd.core.targets.Placement`` the core decided: ``pick`` is its queue (1 ready,
  3 waiting, 0 neither), and the two partial indexes on ``pick`` hold only the targets
  that may be dialed: the ready ones in the order they are dialed, the waiting ones by
  when they become ready (with, from schema 11, the rows of imports not published yet,
  which claims step over: ``rows.ready_head``).

A step is a sequence of SQL statements or of functions given the connection (for data
that SQL alone cannot convert); all of a step runs in one transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import timedelta
from typing import Final

import msgspec

from dialerd.model import format_time, parse_time

Step = str | Callable[[sqlite3.Connection], None]


class _Link(msgspec.Struct):
    outdial_id: str = ""
    outplan_id: str = ""
    try_interval: int = 0


_decode_link = msgspec.json.Decoder(_Link).decode


def _retries_wait(connection: sqlite3.Connection) -> None:
    """Targets that were waiting for a retry become waiting until ``touched`` plus the
    longest ``try_interval`` of the outplans of the campaigns that dial their outdial
    (until now that was computed at each claim; from now on it is decided when the
    attempt ends)."""
    intervals = {
        row[0]: _decode_link(row[1]).try_interval
        for row in connection.execute("SELECT id, body FROM outplan WHERE deleted = 0")
    }
    longest: dict[str, int] = {}
    for (body,) in connection.execute("SELECT body FROM campaign WHERE deleted = 0"):
        link = _decode_link(body)
        interval = intervals.get(link.outplan_id, 0)
        longest[link.outdial_id] = max(longest.get(link.outdial_id, 0), interval)
    rows = connection.execute("SELECT seq, outdial_id, touched FROM target WHERE pick = 3")
    connection.executemany(
        "UPDATE target SET due = ? WHERE seq = ?",
        [
            (
                format_time(parse_time(touched) + timedelta(milliseconds=longest.get(outdial, 0))),
                seq,
            )
            for seq, outdial, touched in rows.fetchall()
        ],
    )


# The first dialable slot of a ``slots`` bit mask (schema 1-4), or -1.
_FIRST_SLOT: Final = (
    "CASE WHEN slots & 1 THEN 0 WHEN slots & 2 THEN 1 WHEN slots & 4 THEN 2 "
    "WHEN slots & 8 THEN 3 WHEN slots & 16 THEN 4 ELSE -1 END"
)

MIGRATIONS: Final[tuple[tuple[Step, ...], ...]] = (
    # 1: the first schema.
    (
        """CREATE TABLE campaign (
            id TEXT PRIMARY KEY,
            customer_id TEXT NOT NULL,
            status TEXT NOT NULL,
            tm_create TEXT NOT NULL,
            deleted INTEGER NOT NULL DEFAULT 0,
            body BLOB NOT NULL
        )""",
        "CREATE INDEX campaign_listing ON campaign (customer_id, tm_create, id) WHERE deleted = 0",
        "CREATE INDEX campaign_by_status ON campaign (status) WHERE deleted = 0",
        """CREATE TABLE outplan (
            id TEXT PRIMARY KEY,
            customer_id TEXT NOT NULL,
            tm_create TEXT NOT NULL,
            deleted INTEGER NOT NULL DEFAULT 0,
            body BLOB NOT NULL
        )""",
        "CREATE INDEX outplan_listing ON outplan (customer_id, tm_create, id) WHERE deleted = 0",
        """CREATE TABLE outdial (
            id TEXT PRIMARY KEY,
            customer_id TEXT NOT NULL,
            tm_create TEXT NOT NULL,
            deleted INTEGER NOT NULL DEFAULT 0,
            body BLOB NOT NULL
        )""",
        "CREATE INDEX outdial_listing ON outdial (customer_id, tm_create, id) WHERE deleted = 0",
        """CREATE TABLE target (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            outdial_id TEXT NOT NULL,
            name TEXT NOT NULL,
            detail TEXT NOT NULL,
            data TEXT NOT NULL,
            status TEXT NOT NULL,
            destination_0 BLOB,
            destination_1 BLOB,
            destination_2 BLOB,
            destination_3 BLOB,
            destination_4 BLOB,
            try_count_0 INTEGER NOT NULL,
            try_count_1 INTEGER NOT NULL,
            try_count_2 INTEGER NOT NULL,
            try_count_3 INTEGER NOT NULL,
            try_count_4 INTEGER NOT NULL,
            tm_create TEXT NOT NULL,
            tm_update TEXT,
            tm_delete TEXT,
            slots INTEGER NOT NULL,
            touched TEXT NOT NULL,
            pick INTEGER NOT NULL
        )""",
        "CREATE INDEX target_never_tried ON target (outdial_id, touched, seq) WHERE pick = 1",
        "CREATE INDEX target_retried ON target (outdial_id, touched, seq) WHERE pick = 2",
        """CREATE INDEX target_progressing ON target (outdial_id)
            WHERE status = 'progressing' AND tm_delete IS NULL""",
        """CREATE INDEX target_listing ON target (outdial_id, tm_create, id)
            WHERE tm_delete IS NULL""",
        """CREATE TABLE campaigncall (
            id TEXT PRIMARY KEY,
            customer_id TEXT NOT NULL,
            campaign_id TEXT NOT NULL,
            outdial_target_id TEXT NOT NULL,
            status TEXT NOT NULL,
            tm_create TEXT NOT NULL,
            deleted INTEGER NOT NULL DEFAULT 0,
            body BLOB NOT NULL
        )""",
        """CREATE INDEX campaigncall_active ON campaigncall (campaign_id, status)
            WHERE status != 'done'""",
        """CREATE INDEX campaigncall_listing ON campaigncall (customer_id, tm_create, id)
            WHERE deleted = 0""",
        """CREATE INDEX campaigncall_campaign_listing ON campaigncall (campaign_id, tm_create, id)
            WHERE deleted = 0""",
    ),
    # 2: campaign leases. ``token`` only grows; a released or expired lease keeps its row
    # (``expires_at_us`` in the past, 0 once released) so a later holder's token is greater.
    (
        """CREATE TABLE lease (
            campaign_id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            token INTEGER NOT NULL,
            expires_at_us INTEGER NOT NULL
        )""",
    ),
    # 3: abandonment per campaign and day (behaviour.md §10).
    (
        """CREATE TABLE abandonment (
            campaign_id TEXT NOT NULL,
            day TEXT NOT NULL,
            live INTEGER NOT NULL,
            abandoned INTEGER NOT NULL,
            PRIMARY KEY (campaign_id, day)
        )""",
    ),
    # 4: imports written straight into ``target`` in short transactions, hidden while
    # their batch is pending and published by deleting that one row (behaviour.md §10).
    # Published rows get their ``pick`` a chunk at a time; ``batch`` is then cleared.
    (
        "ALTER TABLE target ADD COLUMN batch TEXT",
        "CREATE INDEX target_batch ON target (batch) WHERE batch IS NOT NULL",
        "CREATE TABLE pending_batch (id TEXT PRIMARY KEY)",
    ),
    # 5: targets keep the placement dialerd.core.targets decides (ready / waiting, due,
    # until, slot, why held) instead of the rules being evaluated in SQL at each claim.
    (
        "ALTER TABLE target ADD COLUMN due TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE target ADD COLUMN until TEXT",
        "ALTER TABLE target ADD COLUMN slot INTEGER NOT NULL DEFAULT -1",
        "ALTER TABLE target ADD COLUMN held TEXT NOT NULL DEFAULT ''",
        f"UPDATE target SET due = touched, slot = {_FIRST_SLOT}",
        # Never tried and idle: ready. Tried and idle: waiting for its retry.
        "UPDATE target SET pick = 3, held = 'retry_interval' WHERE pick = 2",
        _retries_wait,
        "UPDATE target SET held = 'nothing_to_dial' "
        "WHERE status = 'idle' AND tm_delete IS NULL AND slots = 0",
        # Rows of an import not yet published (or not yet made dialable) keep their
        # queue negated until then.
        "UPDATE target SET pick = CASE WHEN try_count_0 + try_count_1 + try_count_2 "
        "+ try_count_3 + try_count_4 > 0 THEN -3 ELSE -1 END "
        "WHERE batch IS NOT NULL AND status = 'idle' AND tm_delete IS NULL AND slots != 0",
        "DROP INDEX target_never_tried",
        "DROP INDEX target_retried",
        "ALTER TABLE target DROP COLUMN slots",
        "CREATE INDEX target_ready ON target (outdial_id, touched, seq) WHERE pick = 1",
        "CREATE INDEX target_waiting ON target (outdial_id, due) WHERE pick = 3",
    ),
    # 6: do-not-call numbers (behaviour.md §10), one row per customer and E.164 number.
    # An import stages its rows in ``dnc_staged`` under a ``dnc_batch`` row; once the
    # batch is ``published`` they are moved into ``dnc`` a chunk at a time.
    (
        """CREATE TABLE dnc (
            customer_id TEXT NOT NULL,
            number TEXT NOT NULL,
            detail TEXT NOT NULL,
            tm_create TEXT NOT NULL,
            PRIMARY KEY (customer_id, number)
        ) WITHOUT ROWID""",
        "CREATE INDEX dnc_listing ON dnc (customer_id, tm_create, number)",
        "CREATE TABLE dnc_batch (id TEXT PRIMARY KEY, published INTEGER NOT NULL)",
        """CREATE TABLE dnc_staged (
            batch TEXT NOT NULL,
            customer_id TEXT NOT NULL,
            number TEXT NOT NULL,
            detail TEXT NOT NULL,
            tm_create TEXT NOT NULL
        )""",
        "CREATE INDEX dnc_staged_batch ON dnc_staged (batch)",
    ),
    # 7: per customer and number, what the calling rules count (behaviour.md §10): the
    # lockout after an abandoned call and the attempts of the current UTC day.
    (
        """CREATE TABLE number_lock (
            customer_id TEXT NOT NULL,
            number TEXT NOT NULL,
            locked_until TEXT NOT NULL,
            PRIMARY KEY (customer_id, number)
        ) WITHOUT ROWID""",
        """CREATE TABLE number_day (
            customer_id TEXT NOT NULL,
            number TEXT NOT NULL,
            day TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            PRIMARY KEY (customer_id, number)
        ) WITHOUT ROWID""",
    ),
    # 8: the destinations a claim stepped over as listed (do-not-call), as "0,2"; and
    # the lock rows by expiry, for housekeeping to prune the expired ones.
    (
        "ALTER TABLE target ADD COLUMN skipped TEXT NOT NULL DEFAULT ''",
        "CREATE INDEX number_lock_expiry ON number_lock (locked_until)",
    ),
    # 9: per campaign, the pacing prior its predictive model starts a day from
    # (behaviour.md §10): what the model knew when the last day ended (JSON).
    (
        """CREATE TABLE pacing_prior (
            campaign_id TEXT PRIMARY KEY,
            day TEXT NOT NULL,
            body TEXT NOT NULL
        ) WITHOUT ROWID""",
    ),
    # 10: events out (dialerd.events): the outbox, each customer's delivered position,
    # the events set aside as failed, and the customers' webhook settings. ``seq`` needs
    # no AUTOINCREMENT (a write less per event): pruning never deletes the newest row (it
    # keeps every customer's delivered one and all after it), so seq never goes back.
    (
        """CREATE TABLE event (
            seq INTEGER PRIMARY KEY,
            customer_id TEXT NOT NULL,
            campaign_id TEXT NOT NULL,
            type TEXT NOT NULL,
            body BLOB NOT NULL,
            cause TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX event_customer ON event (customer_id, seq)",
        """CREATE TABLE event_delivered (
            customer_id TEXT PRIMARY KEY,
            seq INTEGER NOT NULL
        ) WITHOUT ROWID""",
        """CREATE TABLE event_failed (
            customer_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            campaign_id TEXT NOT NULL,
            type TEXT NOT NULL,
            body BLOB NOT NULL,
            cause TEXT NOT NULL DEFAULT '',
            error TEXT NOT NULL,
            tm_failed TEXT NOT NULL,
            redeliver INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (customer_id, seq)
        ) WITHOUT ROWID""",
        """CREATE TABLE webhook (
            customer_id TEXT PRIMARY KEY,
            body BLOB NOT NULL
        ) WITHOUT ROWID""",
    ),
    # 11: an import's rows are written as they will be dialed (their queue not negated)
    # and keep their batch, so that publishing is one delete, with no pass over the rows
    # after it (behaviour.md §10). Claims step over a pending batch's rows by where they
    # lie in the ready index: ``pending_place`` (their outdial and ``touched``) and
    # ``first_seq`` (their rows are from it on; NULL while none is staged). A dropped
    # batch's rows are found from ``first_seq`` on: the index on ``batch`` goes.
    (
        "ALTER TABLE pending_batch ADD COLUMN first_seq INTEGER",
        "UPDATE pending_batch SET first_seq = 0",
        """CREATE TABLE pending_place (
            outdial_id TEXT NOT NULL,
            touched TEXT NOT NULL,
            batch TEXT NOT NULL,
            PRIMARY KEY (outdial_id, touched, batch)
        ) WITHOUT ROWID""",
        # Rows of a published import not yet made dialable by the pass schema 10 ran.
        "UPDATE target SET pick = -pick, batch = NULL "
        "WHERE batch IS NOT NULL AND batch NOT IN (SELECT id FROM pending_batch)",
        "DROP INDEX target_batch",
    ),
    # 12: events one step writes one after the other for one customer and campaign are
    # one row of ``span`` events (dialerd.store.sqlite.outbox); the rows before are one
    # event each.
    ("ALTER TABLE event ADD COLUMN span INTEGER NOT NULL DEFAULT 1",),
)

SCHEMA_VERSION: Final = len(MIGRATIONS)
