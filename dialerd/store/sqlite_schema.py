"""The SQLite store's schema as numbered migrations, applied in order at open.

``PRAGMA user_version`` holds how many steps a database file has applied. A step is
never edited once released: a schema change is a new step appended to ``MIGRATIONS``.

Campaigns, outplans, outdials and campaigncalls are kept as msgspec JSON (``body``)
beside the columns their queries filter and sort on. Targets are kept as columns,
because the claim of the next target reads and writes them on every attempt:

- ``seq`` is the creation order (a bulk insert keeps its list order);
- ``slots`` is a bit mask of the slots with a dialable destination (bit N = slot N);
- ``touched`` is when the target was last touched: its ``tm_create`` until it is
  tried, then the end time of its last attempt;
- ``pick`` is 1 for a never-tried idle target, 2 for a retried idle target and 0 for
  every other (progressing, done, deleted, nothing to dial). The two partial indexes
  on ``pick`` hold only the targets that may be dialed, in the order they are dialed.
"""

from __future__ import annotations

from typing import Final

MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
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
    # 6: do-not-call numbers (behaviour.md §10), one row per customer and E.164 number.
    # (Step 5 is being added on another branch: whichever merges second is renumbered.)
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
)

SCHEMA_VERSION: Final = len(MIGRATIONS)
