"""The SQLite backend's pacing priors: one row per campaign, its latest prior."""

from __future__ import annotations

import sqlite3

import msgspec

from dialerd.core.predictive import PacingPrior
from dialerd.store.documents import decode_prior
from dialerd.store.sqlite.connection import SqliteConnection


class SqlitePriors(SqliteConnection):
    """``PacingPriors`` on the ``pacing_prior`` table (schema step 9)."""

    async def save_pacing_prior(self, campaign_id: str, prior: PacingPrior) -> None:
        """Keep ``prior`` as the campaign's latest (replacing the one before)."""
        body = msgspec.json.encode(prior).decode()

        def save(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT INTO pacing_prior (campaign_id, day, body) VALUES (?, ?, ?) "
                "ON CONFLICT (campaign_id) DO UPDATE SET day = excluded.day, body = excluded.body",
                (campaign_id, prior.day, body),
            )

        await self._write(save)

    async def pacing_prior(self, campaign_id: str) -> PacingPrior | None:
        """The campaign's latest prior; None if none was kept."""

        def select(connection: sqlite3.Connection) -> str | None:
            row = connection.execute(
                "SELECT body FROM pacing_prior WHERE campaign_id = ?", (campaign_id,)
            ).fetchone()
            return None if row is None else str(row[0])

        body = await self._read(select)
        return decode_prior(body)
