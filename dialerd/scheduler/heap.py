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

The freeze at settling is not enough on its own: what is made after it and lives (the
calls in progress, their tasks and timers) piles up in the oldest generation, and the
collector's next full pass, due once that pile is a quarter of the heap it last
collected, walks all of it: 50-280 ms, some 7-10 s after the freeze, measured with
1,000 campaigns (and the whole heap, 100-550 ms, when the freeze came late because a
slow housekeeping round delayed it). So what survives each full collection is frozen
too, at its end (a collector callback): that collection has just freed every cycle of
garbage there was, so only live objects are frozen, and each full pass walks only what
was made and survived since the one before. The cost: a cycle among objects that were
alive at some full pass and die later waits for the hourly collection, or for the
one made sooner once the frozen heap has grown by half (``GROWTH_LIMIT``): memory
stays bounded whatever the calls leave behind. Measured with 300 campaigns on the
simulated centre (calls of 20-60 s) over 30 s: 355 such objects for 587 attempts.
"""

from __future__ import annotations

import gc
import math
from dataclasses import dataclass

# Seconds between two full collections over the frozen objects too.
FULL_EVERY = 3600.0
# CPython's oldest generation: collecting it is a full collection.
OLDEST = 2
# The frozen heap is collected in full before the hour once it has grown by this
# factor since it was last settled: garbage kept frozen stays bounded.
GROWTH_LIMIT = 1.5
# Seconds between two looks at its size (a walk of the frozen objects: some 7 ms at
# 400,000 of them, too much for every round).
GROWTH_CHECK_EVERY = 60.0


@dataclass
class LongLivedHeap:
    """Decides, each housekeeping round, whether to freeze the heap or collect it all;
    and, from the first round on, freezes what survives each full collection."""

    # How many loops had been started at the latest freeze, and at the round before.
    _frozen_at: int = -1
    _seen: int = -1
    _full_at: float = -math.inf
    # Whether ``_after_collection`` is among the collector's callbacks.
    _watching: bool = False
    # Frozen objects at the first look after the latest freeze of ``settle`` (0: not
    # looked at yet), and when their number was last looked at.
    _settled_size: int = 0
    _checked_at: float = -math.inf

    @staticmethod
    def _after_collection(phase: str, info: dict[str, int]) -> None:
        """At the end of a full collection (all generations, every cycle of garbage
        just freed), freeze what it left: the next full pass walks only what was made
        since, not the whole heap again."""
        if phase == "stop" and info["generation"] == OLDEST:
            gc.freeze()

    def settle(self, loops: int, now: float) -> None:
        """A housekeeping round ended, ``loops`` campaign loops having been started so
        far (``now``: monotonic).

        The heap is frozen when loops were started and none since the round before
        (their first ticks made their series); everything is collected once every
        ``FULL_EVERY`` seconds, or sooner once the frozen heap grew by
        ``GROWTH_LIMIT`` since the loops settled (looked at every
        ``GROWTH_CHECK_EVERY``), then frozen again."""
        if not self._watching:
            gc.callbacks.append(self._after_collection)
            self._watching = True
        grown = False
        # Only while the loops are those of the latest freeze: new campaigns' objects
        # are growth too, but alive (the freeze once they settle takes them as the
        # new measure).
        if loops == self._frozen_at and now - self._checked_at >= GROWTH_CHECK_EVERY:
            self._checked_at = now
            size = gc.get_freeze_count()
            grown = 0 < self._settled_size * GROWTH_LIMIT < size
            # The measure is taken at the first look after the freeze, not at the
            # freeze: that walk is not worth a pause of its own.
            self._settled_size = self._settled_size or size
        if now - self._full_at >= FULL_EVERY or grown:
            if self._full_at > -math.inf:
                gc.unfreeze()
                gc.collect()
            self._full_at = now
            self._frozen_at = -1
        if loops == self._seen and loops != self._frozen_at:
            gc.freeze()
            # A full pass over nothing (all is frozen) resets the collector's measure
            # of the old generation: its next full pass comes once a little survived,
            # not once a quarter of the heap it last collected did (54 ms measured).
            gc.collect()
            self._frozen_at = loops
            self._settled_size = 0
            self._checked_at = now
        self._seen = loops

    def release(self) -> None:
        """The engine stops: the frozen objects go back to the collector."""
        if self._watching:
            gc.callbacks.remove(self._after_collection)
            self._watching = False
        gc.unfreeze()
        self._frozen_at = self._seen = -1
        self._full_at = self._checked_at = -math.inf
        self._settled_size = 0
