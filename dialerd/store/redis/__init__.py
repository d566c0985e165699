"""The Redis backend, ``RedisStore``: its key layout and the resources, targets and
campaigncalls (store.py), the dial ledger and leases (ledger.py), the do-not-call list
(dnc.py), the connection and its scripts (connection.py, scripts/*.lua), and the
constants and field mapping they share (fields.py)."""

from dialerd.store.redis.store import RedisStore

__all__ = ["RedisStore"]
