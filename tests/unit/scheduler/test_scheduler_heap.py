"""The long-lived heap: what is alive once the loops settled, and what survives each full
collection, is left out of the collector's passes, and cycles among it are still freed
by the hourly full collection (the process does not grow with what a frozen object
left behind)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from dialerd.scheduler.heap import FULL_EVERY, GROWTH_CHECK_EVERY, GROWTH_LIMIT, LongLivedHeap


class Node:
    """A cycle: freed by the collector only, never by its last reference."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def heap() -> Iterator[LongLivedHeap]:
    heap = LongLivedHeap()
    try:
        yield heap
    finally:
        heap.release()


def test_what_lives_once_loops_settled_is_out_of_the_collections(heap: LongLivedHeap) -> None:
    kept = Node()
    gone = weakref.ref(kept)
    heap.settle(3, now=0.0)  # loops were started this round: not yet
    heap.settle(3, now=1.0)  # none since: frozen
    del kept
    gc.collect()
    assert gone() is not None


def test_no_freeze_while_loops_keep_starting(heap: LongLivedHeap) -> None:
    for started, now in ((1, 0.0), (2, 1.0), (3, 2.0)):
        heap.settle(started, now=now)
    kept = Node()
    gone = weakref.ref(kept)
    del kept
    gc.collect()
    assert gone() is None


def test_the_hourly_collection_frees_cycles_made_garbage_after_the_freeze(
    heap: LongLivedHeap,
) -> None:
    kept = Node()
    gone = weakref.ref(kept)
    heap.settle(3, now=0.0)
    heap.settle(3, now=1.0)
    del kept
    heap.settle(3, now=FULL_EVERY - 1)
    assert gone() is not None
    alive = Node()
    alive_gone = weakref.ref(alive)
    heap.settle(3, now=FULL_EVERY)
    assert gone() is None
    # And what is alive is frozen again at once (the loops did not change).
    del alive
    gc.collect()
    assert alive_gone() is not None


def test_release_gives_everything_back_to_the_collector(heap: LongLivedHeap) -> None:
    kept = Node()
    gone = weakref.ref(kept)
    heap.settle(3, now=0.0)
    heap.settle(3, now=1.0)
    del kept
    heap.release()
    gc.collect()
    assert gone() is None


def test_what_survives_a_full_collection_is_left_out_of_the_next(heap: LongLivedHeap) -> None:
    heap.settle(1, now=0.0)  # loops still starting: nothing frozen by the round
    kept = Node()
    gone = weakref.ref(kept)
    gc.collect()  # a full collection, as the collector makes one by itself
    del kept
    gc.collect()
    # It lived through the first: the second did not walk it.
    assert gone() is not None
    # The hourly collection still frees it.
    heap.settle(1, now=FULL_EVERY)
    assert gone() is None


def test_once_released_full_collections_freeze_nothing(heap: LongLivedHeap) -> None:
    heap.settle(1, now=0.0)
    heap.release()
    kept = Node()
    gone = weakref.ref(kept)
    gc.collect()
    del kept
    gc.collect()
    assert gone() is None


def test_garbage_kept_frozen_is_collected_before_the_hour_once_the_heap_grew(
    heap: LongLivedHeap,
) -> None:
    heap.settle(1, now=0.0)
    heap.settle(1, now=1.0)  # settled: frozen
    heap.settle(1, now=1.0 + GROWTH_CHECK_EVERY)  # its size, a minute on
    # Cycles that lived through a full collection (frozen at its end), then died.
    dead = [Node() for _ in range(int(GROWTH_LIMIT * gc.get_freeze_count()))]
    gone = weakref.ref(dead[0])
    gc.collect()
    del dead
    assert gone() is not None
    heap.settle(1, now=2.0 + GROWTH_CHECK_EVERY)  # its size is not looked at every round
    assert gone() is not None
    heap.settle(1, now=1.0 + 2 * GROWTH_CHECK_EVERY)  # long before the hour: grew by half
    assert gone() is None


def test_the_heap_growing_with_new_loops_is_no_reason_for_a_full_pass(
    heap: LongLivedHeap,
) -> None:
    heap.settle(1, now=0.0)
    heap.settle(1, now=1.0)  # settled: frozen
    heap.settle(1, now=1.0 + GROWTH_CHECK_EVERY)  # its size, a minute on
    # Garbage kept frozen, and more loops started (the heap grows with them too).
    dead = [Node() for _ in range(int(GROWTH_LIMIT * gc.get_freeze_count()))]
    gone = weakref.ref(dead[0])
    gc.collect()
    del dead
    heap.settle(2, now=1.0 + 2 * GROWTH_CHECK_EVERY)
    assert gone() is not None  # left to the hour, or to a growth with settled loops


def test_the_settling_freeze_is_followed_by_a_full_pass_over_nothing(
    heap: LongLivedHeap,
) -> None:
    heap.settle(3, now=0.0)
    before = gc.get_stats()[2]["collections"]
    heap.settle(3, now=1.0)  # settled: frozen, then a full pass (the next ones stay small)
    assert gc.get_stats()[2]["collections"] == before + 1
