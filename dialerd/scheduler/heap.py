"""The campaigns' long-lived objects, kept out of the garbage collector's full passes.

With a thousand running campaigns the process holds some 400,000 container objects
that live as long as their campaign: about fifty metric series each (a lock and a value
apiece), the loops' tasks and scopes, the pacing samples. CPython's full collection
walks every one of them with the event loop stopped: 100 to 300 ms, every few seconds
while attempts churn objects, and each such pause made a few hundred ticks late at once
(it was the tick lag's p99). Once the set of loops has settled, housekeeping freezes
what is alive (``gc.freeze``): the collector's passes then walk only what was made
since. Frozen objects freed by their last reference go as before; a cycle among them is
only found by a full collection over everything, so once an hour (``FULL_EVERY``) the
heap is unfrozen, collected in one pass and frozen again: one chosen pause an hour in
place of one every few seconds.
"""

from __future__ import annotations

import gc
import math
from dataclasses import dataclass

# Seconds between two full collections over the frozen objects too.
FULL_EVERY = 3600.0


@dataclass
class LongLivedHeap:
    """Decides, each housekeeping round, whether to freeze the heap or collect it all."""

    # How many loops had been started at the latest freeze, and at the round before.
    _frozen_at: int = -1
    _seen: int = -1
    _full_at: float = -math.inf

    def settle(self, loops: int, now: float) -> None:
        """A housekeeping round ended, ``loops`` campaign loops having been started so
        far (``now``: monotonic).

        The heap is frozen when loops were started and none since the round before
        (their first ticks made their series); everything is collected once every
        ``FULL_EVERY`` seconds, then frozen again."""
        if now - self._full_at >= FULL_EVERY:
            if self._full_at > -math.inf:
                gc.unfreeze()
                gc.collect()
            self._full_at = now
            self._frozen_at = -1
        if loops == self._seen and loops != self._frozen_at:
            gc.freeze()
            self._frozen_at = loops
        self._seen = loops

    def release(self) -> None:
        """The engine stops: the frozen objects go back to the collector."""
        gc.unfreeze()
        self._frozen_at = self._seen = -1
        self._full_at = -math.inf
