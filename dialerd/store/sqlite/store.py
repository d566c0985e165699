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
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Any

import msgspec

from dialerd.core.quotas import Usage
from dialerd.model import (
    Campaign,
    Campaigncall,
    CampaigncallStatus,
    CampaignStatus,
    Outdial,
    OutdialTarget,
    Outplan,
    Page,
    TargetStatus,
    format_time,
    parse_time,
)
from dialerd.store.base import (
    MAX_PAGE_SIZE,
    CampaignChanged,
    Conflict,
    Fence,
    InUse,
    StoreError,
)
from dialerd.store.documents import (
    ACTIVE,
    CAMPAIGNCALL,
    NO_GUARD,
    Document,
    Guard,
    Kind,
    Resource,
    ResourceMethods,
    encode,
    page_limit,
    users,
)
from dialerd.store.sqlite.connection import Writer
from dialerd.store.sqlite.dnc import SqliteDoNotCall
from dialerd.store.sqlite.import_process import run_worker
from dialerd.store.sqlite.ledger import SqliteLedger
from dialerd.store.sqlite.outbox import SqliteOutbox, outbox_row
from dialerd.store.sqlite.priors import SqlitePriors
from dialerd.store.sqlite.rows import (
    CAMPAIGNCALLS,
    CAMPAIGNS,
    INSERT_TARGET,
    OUTDIALS,
    OUTPLANS,
    PLACEMENT_COLUMNS,
    ROW_OUTDIAL,
    ROW_TOUCHED,
    TARGET_COLUMNS,
    VISIBLE,
    check_fence,
    discard_chunk,
    documents_of,
    forget_batch,
    next_token,
    publish_batch,
    select_target,
    stage_places,
    target_from_row,
    target_row,
    token_filter,
    wall_clock,
)


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
    return [CAMPAIGNS.decode(row[0]) for row in rows]


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
        ("outplan", OUTPLANS.get(customer, campaign.outplan_id, connection)),
        ("outdial", OUTDIALS.get(customer, campaign.outdial_id, connection)),
    ):
        if found is None:
            raise CampaignChanged(f"campaign {campaign.id}: its {table} is gone; read it again")


def _campaign_event(
    event_type: str, resource: Any, connection: sqlite3.Connection, cause: str = ""
) -> None:
    """A campaign's change into the outbox, in the change's transaction."""
    if isinstance(resource, Campaign):
        outbox_row(
            connection, event_type, resource.customer_id, resource.id, encode(resource), cause
        )


class SqliteStore(ResourceMethods, SqliteLedger, SqliteDoNotCall, SqlitePriors, SqliteOutbox):
    """The ``Store`` port on one SQLite file: every part, on one connection."""

    # One file, no replica: nothing is ever written back (``Failover`` port).
    failed_over = False
    # No pool to run out of: its one writer and its readers queue their calls.
    concurrent_calls: int | None = None

    async def write_back(
        self, fences: Sequence[Fence], ttl: float, attempts: Sequence[Campaigncall]
    ) -> None:
        """Nothing to write back: a SQLite store has no failover."""

    # -- resources: the generic steps of ``ResourceMethods`` -----------------------------
    async def _create(self, kind: Kind[Resource], resource: Resource) -> Resource:
        documents = documents_of(kind)

        def create(connection: sqlite3.Connection) -> Resource:
            created = documents.create(resource, connection)
            _campaign_event("campaign_created", created, connection)
            return created

        return await self._write(create)

    async def _get(
        self, kind: Kind[Resource], customer_id: str | None, resource_id: str
    ) -> Resource | None:
        return await self._read(partial(documents_of(kind).get, customer_id, resource_id))

    async def _update(
        self, kind: Kind[Resource], resource: Resource, guard: Guard = NO_GUARD
    ) -> Resource:
        """Replace the stored resource (same id, not deleted) with this one; a campaign
        under the fence and version check, and one written ``run`` only while its
        outplan and outdial exist."""
        documents = documents_of(kind)
        if not isinstance(resource, Campaign):
            return await self._write(partial(documents.update, resource))
        campaign = resource
        moment = wall_clock() if campaign.tm_update is None else parse_time(campaign.tm_update)

        def update(connection: sqlite3.Connection) -> Resource:
            check_fence(connection, guard.fence, campaign.id, moment)
            checked = guard.if_updated is not None or campaign.status == CampaignStatus.RUN
            stored = CAMPAIGNS.get(None, campaign.id, connection) if checked else None
            if stored is not None and guard.if_updated not in (None, stored.tm_update or ""):
                raise CampaignChanged(f"campaign {campaign.id} changed since it was read")
            if stored is not None and _starts_using(stored, campaign):
                _check_uses(campaign, connection)
            updated = documents.update(resource, connection)
            _campaign_event("campaign_updated", updated, connection, guard.cause)
            return updated

        return await self._write(update)

    async def _delete(
        self, kind: Kind[Document], customer_id: str, resource_id: str, now: datetime
    ) -> Document | None:
        """Soft-delete under the kind's rule, checked in the delete's transaction."""
        documents = documents_of(kind)

        def delete(connection: sqlite3.Connection) -> Document | None:
            current = documents.get(customer_id, resource_id, connection)
            if isinstance(current, Campaigncall) and current.status != CampaigncallStatus.DONE:
                raise Conflict(f"campaigncall {resource_id} is active and cannot be deleted")
            if isinstance(current, Campaign) and current.status != CampaignStatus.STOP:
                raise Conflict(f"campaign {resource_id} is {current.status.value}: stop it first")
            if isinstance(current, Outplan | Outdial):
                running = _campaigns_with_status(ACTIVE, connection, customer_id)
                using = users(current, running)
                if using:
                    raise InUse(kind.name, resource_id, using)
            if current is None:
                return None
            deleted = documents.delete(customer_id, resource_id, format_time(now), connection)
            _campaign_event("campaign_deleted", deleted, connection)
            return deleted

        return await self._write(delete)

    async def _page(
        self, kind: Kind[Resource], customer_id: str, page_size: int, page_token: str
    ) -> Page[Resource]:
        return await self._read(
            partial(documents_of(kind).page, customer_id, page_size, page_token)
        )

    async def campaign_and_outplan(
        self, campaign_id: str
    ) -> tuple[Campaign | None, Outplan | None]:
        """Both in one read on the worker thread."""

        def read(connection: sqlite3.Connection) -> tuple[Campaign | None, Outplan | None]:
            campaign = CAMPAIGNS.get(None, campaign_id, connection)
            if campaign is None:
                return None, None
            return campaign, OUTPLANS.get(campaign.customer_id, campaign.outplan_id, connection)

        return await self._read(read)

    async def campaigns_with_status(self, statuses: Sequence[CampaignStatus]) -> list[Campaign]:
        """Every not-deleted campaign, of any customer, whose status is one of these."""
        return await self._read(partial(_campaigns_with_status, statuses))

    # -- targets --------------------------------------------------------------------------
    async def create_targets(self, targets: Sequence[OutdialTarget]) -> int:
        """Insert targets (all or none); they keep the given order as creation order."""
        rows = [target_row(target) for target in targets]

        def insert(connection: sqlite3.Connection) -> int:
            try:
                connection.executemany(INSERT_TARGET, rows)
            except sqlite3.IntegrityError as error:
                raise Conflict(
                    f"a target id already exists; no target was added ({error})"
                ) from error
            return len(rows)

        return await self._write(insert)

    async def import_targets(self, batches: AsyncIterable[Sequence[OutdialTarget]]) -> int:
        """Write each batch straight into ``target``, hidden behind a pending batch row
        (one short transaction per batch, so other work runs between them); publish
        by deleting that row: all rows appear at once, dialable (``rows.ready_head``
        stepped over them until then). A failed import removes its rows a chunk at a
        time."""
        batch = uuid.uuid4().hex
        await self._write(
            lambda connection: connection.execute(
                "INSERT INTO pending_batch (id) VALUES (?)", (batch,)
            )
        )

        def stage(targets: Sequence[OutdialTarget], connection: sqlite3.Connection) -> None:
            # The rows are made here, on the store's thread: not on the event loop.
            rows = [target_row(target, batch) for target in targets]
            places = {(row[ROW_OUTDIAL], row[ROW_TOUCHED]) for row in rows}
            if not stage_places(batch, places, connection):
                raise StoreError("the import was dropped (the store was opened again)")
            try:
                connection.executemany(INSERT_TARGET, rows)
            except sqlite3.IntegrityError as error:
                raise Conflict(
                    f"a target id already exists; no target was added ({error})"
                ) from error

        return await self._staged_import(
            batches,
            lambda targets: partial(stage, targets),
            partial(publish_batch, batch),
            partial(self._settle_batch, batch),
        )

    async def import_target_file(
        self,
        chunks: AsyncIterable[bytes],
        outdial_id: str,
        now: str,
        *,
        csv_file: bool,
        counted: Callable[[int], None],
    ) -> int:
        """As ``import_targets``, for a whole file (CSV with a header row, or NDJSON):
        parsed and staged by an import worker process (``import_process``), published
        here the same way. ``counted(rows so far)`` after each staged
        batch may raise to refuse the import; ``import_process.Rejected`` for bad rows."""
        batch = uuid.uuid4().hex
        await self._write(
            lambda connection: connection.execute(
                "INSERT INTO pending_batch (id) VALUES (?)", (batch,)
            )
        )
        staged = 0

        async def worker() -> AsyncIterator[Sequence[OutdialTarget]]:
            nonlocal staged
            staged = await run_worker(
                self.path, batch, chunks, outdial_id, now, csv_file=csv_file, counted=counted
            )
            return
            yield  # an async generator that stages nothing itself

        await self._staged_import(
            worker(),
            lambda targets: lambda connection: None,
            partial(publish_batch, batch),
            partial(self._settle_batch, batch),
        )
        return staged

    @staticmethod
    async def _settle_batch(batch: str, write: Writer, *, publish: bool) -> None:
        """Nothing after a published batch (its rows were written dialable); remove an
        abandoned batch's rows, a chunk per transaction (``write``: the import's
        connection), then forget the batch."""
        if publish:
            return
        while await write(partial(discard_chunk, batch)):
            pass
        await write(partial(forget_batch, batch))

    async def get_target(self, outdial_id: str, target_id: str) -> OutdialTarget | None:
        return await self._read(partial(select_target, outdial_id, target_id))

    async def delete_target(
        self, outdial_id: str, target_id: str, now: datetime
    ) -> OutdialTarget | None:
        """Soft-delete a target; raise ``Conflict`` while it is ``progressing``."""
        stamp = format_time(now)

        def delete(connection: sqlite3.Connection) -> OutdialTarget | None:
            current = select_target(outdial_id, target_id, connection)
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
        condition, params = token_filter(page_token)

        def select(connection: sqlite3.Connection) -> Page[OutdialTarget]:
            rows = connection.execute(
                f"SELECT {TARGET_COLUMNS}, {PLACEMENT_COLUMNS}, tm_create, id FROM target "
                "WHERE outdial_id = ? "
                f"AND tm_delete IS NULL AND {VISIBLE}{condition} "
                "ORDER BY tm_create DESC, id DESC LIMIT ?",
                (outdial_id, *params, limit + 1),
            ).fetchall()
            items = [target_from_row(row) for row in rows[:limit]]
            return Page(result=items, next_page_token=next_token(rows, limit))

        return await self._read(select)

    # -- campaigncalls --------------------------------------------------------------------
    async def get_campaigncall(
        self, customer_id: str | None, campaigncall_id: str
    ) -> Campaigncall | None:
        return await self._read(partial(CAMPAIGNCALLS.get, customer_id, campaigncall_id))

    async def list_campaigncalls(
        self,
        customer_id: str,
        campaign_id: str | None = None,
        page_size: int = MAX_PAGE_SIZE,
        page_token: str = "",
    ) -> Page[Campaigncall]:
        limit = page_limit(page_size)
        condition, params = token_filter(page_token)
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
            return Page(result=items, next_page_token=next_token(rows, limit))

        return await self._read(select)

    async def delete_campaigncall(
        self, customer_id: str, campaigncall_id: str, now: datetime
    ) -> Campaigncall | None:
        """Soft-delete a finished campaigncall; raise ``Conflict`` while it is active."""
        return await self._delete(CAMPAIGNCALL, customer_id, campaigncall_id, now)

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
