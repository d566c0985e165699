"""The embedded SQLite backend: ``SqliteStore`` (store.py) on the schema of schema.py."""

from dialerd.store.sqlite.store import SqliteStore

__all__ = ["SqliteStore"]
