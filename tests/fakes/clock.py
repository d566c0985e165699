"""A manual clock for tests, and ``settle``: wait until every other task is blocked.

``FakeClock`` keeps simulated time that only moves when a test advances it, either
step by step (``advance``) or by jumping to the next pending deadline whenever every
other task is blocked (``autojump``, like trio's ``MockClock``). Hours of campaign time
then run in milliseconds, and a run is the same every time.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Final

import anyio
import anyio.lowlevel

# A fixed default start: a fake clock never reads the wall clock.
FAKE_EPOCH: Final = datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)
# Consecutive checks that must see every other task blocked before time may move.
_QUIET_ROUNDS: Final = 3
# After this many busy checks in a row, wait a little real time so that worker threads
# and sockets make progress instead of competing with a spinning event loop.
_BUSY_SPINS: Final = 50
_BUSY_PAUSE: Final = 0.0005


class SimulatedTimeExceeded(Exception):
    """An autojumping fake clock reached its bound of simulated seconds."""


@dataclass(order=True)
class _Sleeper:
    deadline: float
    seq: int
    wake: anyio.Event = field(compare=False, default_factory=anyio.Event)
    done: bool = field(compare=False, default=False)


class FakeClock:
    """A manual clock: time moves only by ``advance`` or while ``autojump`` runs.

    Sleepers with the same deadline wake in the order they went to sleep. A cancelled
    sleeper leaves nothing behind.
    """

    def __init__(self, start: datetime | None = None) -> None:
        start = start or FAKE_EPOCH
        if start.tzinfo is None:
            raise ValueError("FakeClock start must be a timezone-aware datetime")
        self._start = start.astimezone(UTC)
        self._elapsed = 0.0
        self._heap: list[_Sleeper] = []
        self._pending = 0
        self._seq = itertools.count()
        self._sleeper_added = anyio.Event()

    def now(self) -> datetime:
        """The start time plus the simulated seconds elapsed."""
        return self._start + timedelta(seconds=self._elapsed)

    def monotonic(self) -> float:
        """Simulated seconds elapsed since the clock was made."""
        return self._elapsed

    @property
    def pending_sleepers(self) -> int:
        """How many tasks are parked in ``sleep_until``."""
        return self._pending

    def next_deadline(self) -> float | None:
        """The earliest deadline a task sleeps until, or None (``inf`` counts as none)."""
        self._drop_finished()
        if not self._heap or math.isinf(self._heap[0].deadline):
            return None
        return self._heap[0].deadline

    async def sleep_until(self, deadline: float) -> None:
        """Park the caller until the clock reaches ``deadline`` (at once if it has)."""
        if math.isnan(deadline):
            raise ValueError("cannot sleep until NaN")
        if deadline <= self._elapsed:
            await anyio.lowlevel.checkpoint()
            return
        sleeper = _Sleeper(deadline, next(self._seq))
        heapq.heappush(self._heap, sleeper)
        self._pending += 1
        self._sleeper_added.set()
        try:
            await sleeper.wake.wait()
        finally:
            if not sleeper.done:
                sleeper.done = True
                self._pending -= 1
                self._compact()

    async def advance(self, seconds: float, *, busy: Callable[[], bool] | None = None) -> None:
        """Move time forward by ``seconds``, stopping at each deadline to let sleepers run.

        ``busy``: as for ``settle``, for tasks that wait on sockets (a Redis store).
        """
        if not seconds >= 0:
            raise ValueError(f"cannot advance a clock by {seconds!r} seconds")
        target = self._elapsed + seconds
        await settle(busy=busy)
        while (deadline := self.next_deadline()) is not None and deadline <= target:
            self._jump_to(deadline)
            await settle(busy=busy)
        self._elapsed = max(self._elapsed, target)

    async def run(
        self,
        *,
        max_seconds: float,
        threshold: float = 0.0,
        busy: Callable[[], bool] | None = None,
    ) -> None:
        """Autojump until cancelled: whenever all other tasks are blocked, jump to the next
        deadline. Raise ``SimulatedTimeExceeded`` rather than pass ``max_seconds`` from now.

        ``threshold`` (real seconds) makes it also wait until nothing has moved for that
        long, for tests whose tasks wait on sockets; ``busy``, as for ``settle`` (a Redis
        store's calls in flight: time does not move while one awaits its answer).
        """
        limit = self._elapsed + max_seconds
        while True:
            await settle(threshold, busy=busy)
            deadline = self.next_deadline()
            if deadline is None:
                self._sleeper_added = anyio.Event()
                await self._sleeper_added.wait()
                continue
            if deadline > limit:
                raise SimulatedTimeExceeded(
                    f"fake clock reached its bound of {max_seconds} simulated seconds "
                    f"with {self._pending} task(s) still sleeping"
                )
            self._jump_to(deadline)

    @asynccontextmanager
    async def autojump(
        self,
        *,
        max_seconds: float = 86400.0,
        threshold: float = 0.0,
        busy: Callable[[], bool] | None = None,
    ) -> AsyncIterator[None]:
        """Autojump (see ``run``) while the ``async with`` body runs."""
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(
                partial(self.run, max_seconds=max_seconds, threshold=threshold, busy=busy)
            )
            try:
                yield
            finally:
                task_group.cancel_scope.cancel()

    def _jump_to(self, deadline: float) -> None:
        self._elapsed = max(self._elapsed, deadline)
        while self._heap and self._heap[0].deadline <= self._elapsed:
            sleeper = heapq.heappop(self._heap)
            if not sleeper.done:
                sleeper.done = True
                self._pending -= 1
                sleeper.wake.set()

    def _drop_finished(self) -> None:
        while self._heap and self._heap[0].done:
            heapq.heappop(self._heap)

    def _compact(self) -> None:
        # Cancelled sleepers are dropped lazily; rebuild once they are most of the heap.
        if len(self._heap) > 64 and self._pending < len(self._heap) // 2:
            self._heap = [sleeper for sleeper in self._heap if not sleeper.done]
            heapq.heapify(self._heap)


async def settle(threshold: float = 0.0, *, busy: Callable[[], bool] | None = None) -> None:
    """Return once every other task is blocked and no worker thread is busy.

    With ``threshold`` > 0, also wait until no task has moved for that many real seconds.
    With ``busy``, also until it returns False (say, no store call awaits a socket).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # not asyncio (trio): its own detection is exact
        await anyio.wait_all_tasks_blocked()
        return
    await _settle_asyncio()
    while busy is not None and busy():
        await asyncio.sleep(_BUSY_PAUSE)
        await _settle_asyncio()
    while threshold > 0:
        before = _waits()
        await asyncio.sleep(threshold)
        await _settle_asyncio()
        if _waits() == before:
            return


async def _settle_asyncio() -> None:
    quiet = busy = 0
    while quiet < _QUIET_ROUNDS:
        await asyncio.sleep(0)
        if _others_blocked() and not _busy_worker_threads():
            quiet += 1
            continue
        quiet = 0
        busy += 1
        if busy > _BUSY_SPINS:
            await asyncio.sleep(_BUSY_PAUSE)


def _others_blocked() -> bool:
    """True when every other task waits on a future that is not done yet."""
    # The loop's queue of ready callbacks is empty exactly when nothing else can run now
    # (a finished future queues its task's wake-up there): an O(1) check of a private
    # attribute, with a scan of every task where the loop has no such queue.
    ready = getattr(asyncio.get_running_loop(), "_ready", None)
    if ready is not None:
        return not ready
    this_task = asyncio.current_task()
    for task in asyncio.all_tasks():
        if task is not this_task:
            waiter = getattr(task, "_fut_waiter", None)
            if waiter is None or waiter.done():
                return False
    return True


def _waits() -> set[tuple[object, object]]:
    """What each other task waits on; equal snapshots mean nothing moved in between."""
    this_task = asyncio.current_task()
    return {
        (task, getattr(task, "_fut_waiter", None))
        for task in asyncio.all_tasks()
        if task is not this_task
    }


def _busy_worker_threads() -> int:
    """AnyIO worker threads running a call (a store query, say) or not yet reported back."""
    try:
        from anyio._backends._asyncio import _threadpool_idle_workers, _threadpool_workers

        return len(_threadpool_workers.get()) - len(_threadpool_idle_workers.get())
    except (ImportError, LookupError, AttributeError):
        return 0
