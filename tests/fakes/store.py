"""A store wrapper for tests: the calls in progress are counted."""

from __future__ import annotations

import inspect
from typing import Any

from dialerd.store import Store


class InFlight:
    """A store whose calls in progress are counted (to know when all have answered).

    ``settle()`` cannot see a call waiting on a socket (a Redis store); a test asks
    ``busy()`` instead.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self.calls = 0

    def busy(self) -> bool:
        return self.calls > 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            try:
                return await attribute(*args, **kwargs)
            finally:
                self.calls -= 1

        return counted
