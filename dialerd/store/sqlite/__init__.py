"""The embedded SQLite backend, ``SqliteStore``: the parts of one file on one connection
(connection.py), its SQL and row mapping (rows.py), the resources, targets and
campaigncalls (store.py), the dial ledger and leases (ledger.py), the do-not-call list
(dnc.py), and the schema with its migrations (schema.py)."""

from dialerd.store.sqlite.store import SqliteStore

__all__ = ["SqliteStore"]
