"""Opening the store and the queue adapter's Redis at start, waiting a bounded time for
one that does not answer yet.

A Redis still loading its dataset after a reboot, or a Sentinel failover under way,
refuses or drops connections for a while; exiting at once would leave systemd to
restart the daemon in a loop. ``open_waiting`` retries with the back-off of a run-time
outage until the ``start_wait`` of its section has passed (``[store.redis]`` for the
store, ``[queue.redis]`` for the queue adapter). Only an unreachable server is waited
for: a refused password, a bad URL or a store of a newer layout ends the start at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import anyio
from redis.exceptions import AuthenticationError

from dialerd.config import StoreConfig
from dialerd.ports import Clock
from dialerd.store import StoreUnavailable
from dialerd.store.ports import Lifecycle
from dialerd.store.redis.fields import public_url

Unreachable = TypeVar("Unreachable", bound=Exception)
# Told of each failed try: the error and the seconds until the next one.
OnRetry = Callable[[Unreachable, float], Awaitable[None]]


class Opens(Protocol):
    """What is opened at start: a store, or the queue adapter's connection pool."""

    async def open(self) -> None: ...


def store_name(config: StoreConfig) -> str:
    """The configured store as logs name it (no password)."""
    if config.backend == "sqlite":
        return f"sqlite {config.sqlite_path}"
    redis = config.redis
    if redis.sentinels:
        return f"redis service {redis.service_name} (sentinels {', '.join(redis.sentinels)})"
    if redis.cluster:
        return f"redis cluster {public_url(redis.url)}"
    return f"redis {public_url(redis.url)}"


def _waitable(error: Exception) -> bool:
    """Whether time may cure ``error``: not a password the server refused, nor a URL
    that cannot be parsed."""
    return not isinstance(error.__cause__, AuthenticationError | ValueError)


async def open_store(
    store: Lifecycle,
    *,
    wait: float,
    clock: Clock,
    delay: Callable[[int], float],
    stopping: anyio.Event,
    on_retry: OnRetry[StoreUnavailable],
) -> bool:
    """``open_waiting`` for the store: raise ``StoreError`` when it cannot be opened."""
    return await open_waiting(
        store,
        StoreUnavailable,
        section="[store.redis]",
        wait=wait,
        clock=clock,
        delay=delay,
        stopping=stopping,
        on_retry=on_retry,
    )


async def open_waiting(
    target: Opens,
    unreachable: type[Unreachable],
    *,
    section: str,
    wait: float,
    clock: Clock,
    delay: Callable[[int], float],
    stopping: anyio.Event,
    on_retry: OnRetry[Unreachable],
    since: float | None = None,
) -> bool:
    """Open ``target``, trying again after ``delay(failures)`` seconds while it raises
    ``unreachable``, until ``wait`` seconds after ``since`` (default: now) have passed.
    True once open; False when ``stopping`` is set first. Raise the last error when the
    wait is 0 or the error is not one time cures, and an ``unreachable`` naming the wait
    (``section``'s ``start_wait``) when the wait runs out."""
    start = clock.monotonic() if since is None else since
    deadline = start + wait
    failures = 0
    while True:
        try:
            await target.open()
            return True
        except unreachable as error:
            left = deadline - clock.monotonic()
            if wait <= 0 or not _waitable(error):
                raise
            if left <= 0:
                raise unreachable(
                    f"{error} (still unreachable after waiting {wait:g} s, {section} start_wait)"
                ) from error
            failures += 1
            pause = min(delay(failures), left)
            await on_retry(error, pause)
        if await _stopped_within(clock, clock.monotonic() + pause, stopping):
            return False


async def _stopped_within(clock: Clock, deadline: float, stopping: anyio.Event) -> bool:
    """Sleep until ``deadline`` on ``clock``, or until ``stopping`` is set: whether it was."""
    async with anyio.create_task_group() as group:

        async def sleep() -> None:
            await clock.sleep_until(deadline)
            group.cancel_scope.cancel()

        group.start_soon(sleep)
        await stopping.wait()
        group.cancel_scope.cancel()
    return stopping.is_set()
