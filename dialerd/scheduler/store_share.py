"""The engine's share of the store's connections: at most so many of its store calls
at once, the others waiting their turn here (as long as it takes), so that a thousand
campaigns ticking together, their refills, answers, ends, the write-back and
housekeeping never take every connection of a Redis pool. The rest is kept for the
API and the event sender, whose calls then find a connection at once; and no tick
fails because the pool ran dry while the server was up (``StoreBusy``).

A store that says no bound (``concurrent_calls`` None: SQLite) is used as it is.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, cast

import anyio

from dialerd.store import SchedulerStore

# The share of the store's connections kept for everything but the engine (a quarter,
# one at least): the API's reads and writes, the event sender's.
RESERVE_SHARE = 4


def engine_share(concurrent_calls: int | None) -> int | None:
    """How many store calls the engine may have under way at once, out of the store's
    ``concurrent_calls``: all but a quarter (one at least) kept for the others; the one
    connection of a store that has only one, shared with them."""
    if concurrent_calls is None:
        return None
    reserve = max(1, concurrent_calls // RESERVE_SHARE)
    return max(1, concurrent_calls - reserve)


class BoundedStore:
    """``store``, with at most ``slots`` of its coroutine methods' calls under way at
    once (a call holds its slot from its start to its end, so the store's connections
    it takes, one at a time, are never more than ``slots``); everything else of the
    store (``backend``, ``failed_over``...) read through as it is."""

    def __init__(self, store: SchedulerStore, slots: anyio.Semaphore) -> None:
        self.store = store
        self.slots = slots

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.store, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute
        bounded = partial(self._bounded, attribute)
        if getattr(attribute, "__self__", None) is self.store:
            # The store's own method: found on this object from now on. Anything else
            # (a test's wrapper answering a name differently over time) is looked up
            # on every call.
            setattr(self, name, bounded)
        return bounded

    async def _bounded(self, call: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        slots = self.slots
        try:
            slots.acquire_nowait()  # a free slot (none is free while calls wait)
        except anyio.WouldBlock:
            await slots.acquire()  # in turn
        try:
            return await call(*args, **kwargs)
        finally:
            slots.release()


def bounded_store(store: SchedulerStore, slots: anyio.Semaphore | None) -> SchedulerStore:
    """``store`` bounded by ``slots`` (``BoundedStore``), or as it is without them."""
    if slots is None:
        return store
    if isinstance(store, BoundedStore):
        store = store.store
    return cast(SchedulerStore, BoundedStore(store, slots))
