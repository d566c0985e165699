"""The Redis backend: ``RedisStore`` (store.py) and its Lua scripts (scripts/*.lua)."""

from dialerd.store.redis.store import RedisStore

__all__ = ["RedisStore"]
