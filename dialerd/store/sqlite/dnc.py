"""The SQLite backend's do-not-call list."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterable, Sequence
from functools import partial

from dialerd.model import (
    DncNumber,
    Page,
)
from dialerd.store.base import (
    MAX_PAGE_SIZE,
)
from dialerd.store.documents import (
    page_limit,
)
from dialerd.store.sqlite.connection import SqliteConnection, Writer
from dialerd.store.sqlite.rows import (
    DNC_COLUMNS,
    INSERT_DNC,
    dnc_from_row,
    dnc_listed_numbers,
    dnc_row,
    next_token,
    select_dnc,
    settle_dnc_chunk,
    stage_dnc,
    token_filter,
)


class SqliteDoNotCall(SqliteConnection):
    """The ``DoNotCall`` port on the SQLite file."""

    # -- do-not-call numbers --------------------------------------------------------------
    async def add_dnc_numbers(self, entries: Sequence[DncNumber]) -> list[DncNumber]:
        """List the numbers in one transaction; a listed number keeps its stored entry."""
        rows = [dnc_row(entry) for entry in entries]

        def add(connection: sqlite3.Connection) -> list[DncNumber]:
            connection.executemany(INSERT_DNC, rows)
            stored = [select_dnc(row[0], row[1], connection) for row in rows]
            return [entry for entry in stored if entry is not None]

        return await self._write(add)

    async def remove_dnc_number(self, customer_id: str, number: str) -> DncNumber | None:
        def remove(connection: sqlite3.Connection) -> DncNumber | None:
            row = connection.execute(
                f"DELETE FROM dnc WHERE customer_id = ? AND number = ? RETURNING {DNC_COLUMNS}",
                (customer_id, number),
            ).fetchone()
            return None if row is None else dnc_from_row(row)

        return await self._write(remove)

    async def get_dnc_number(self, customer_id: str, number: str) -> DncNumber | None:
        return await self._read(partial(select_dnc, customer_id, number))

    async def list_dnc_numbers(
        self, customer_id: str, page_size: int = MAX_PAGE_SIZE, page_token: str = ""
    ) -> Page[DncNumber]:
        limit = page_limit(page_size)
        condition, params = token_filter(page_token, "number")

        def select(connection: sqlite3.Connection) -> Page[DncNumber]:
            rows = connection.execute(
                f"SELECT {DNC_COLUMNS}, tm_create, number FROM dnc WHERE customer_id = ?"
                f"{condition} ORDER BY tm_create DESC, number DESC LIMIT ?",
                (customer_id, *params, limit + 1),
            ).fetchall()
            items = [dnc_from_row(row) for row in rows[:limit]]
            return Page(result=items, next_page_token=next_token(rows, limit))

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
            lambda entries: partial(stage_dnc, [(batch, *dnc_row(entry)) for entry in entries]),
            lambda connection: connection.execute(
                "UPDATE dnc_batch SET published = 1 WHERE id = ?", (batch,)
            ),
            partial(self._settle_dnc_batch, batch),
        )

    @staticmethod
    async def _settle_dnc_batch(batch: str, write: Writer, *, publish: bool) -> None:
        """List a published import's numbers, or drop an abandoned one's, a chunk per
        transaction (``write``: the import's connection); then forget the batch."""
        while await write(partial(settle_dnc_chunk, batch, publish)):
            pass
        await write(
            lambda connection: connection.execute("DELETE FROM dnc_batch WHERE id = ?", (batch,))
        )

    async def dnc_listed(self, customer_id: str, numbers: Sequence[str]) -> set[str]:
        return await self._read(partial(dnc_listed_numbers, customer_id, numbers))
