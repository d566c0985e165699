"""Opening the store at start, waiting a bounded time for one that does not answer yet.

A Redis still loading its dataset after a reboot, or a Sentinel failover under way,
refuses or drops connections for a while; exiting at once would leave systemd to
restart the daemon in a loop. ``open_store`` retries with the back-off of a run-time
outage until ``[store.redis] start_wait`` has passed. Only an unreachable store is
waited for: a refused password, a bad URL or a store of a newer layout ends the start
at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
from redis.exceptions import AuthenticationError

from dialerd.config import StoreConfig
from dialerd.ports import Clock
from dialerd.store import StoreError, StoreUnavailable
from dialerd.store.ports import Lifecycle
from dialerd.store.redis.fields import public_url

# Told of each failed try: the error and the seconds until the next one.
OnRetry = Callable[[StoreUnavailable, float], Awaitable[None]]


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


def _waitable(error: StoreUnavailable) -> bool:
    """Whether time may cure ``error``: not a password the server refused."""
    return not isinstance(error.__cause__, AuthenticationError)


async def open_store(
    store: Lifecycle,
    *,
    wait: float,
    clock: Clock,
    delay: Callable[[int], float],
    stopping: anyio.Event,
    on_retry: OnRetry,
) -> bool:
    """Open ``store``, trying again after ``delay(failures)`` seconds while it is
    unreachable, for at most ``wait`` seconds. True once open; False when ``stopping``
    is set first. Raise ``StoreError`` when it cannot be opened (the last error, and
    how long it was waited for)."""
    deadline = clock.monotonic() + wait
    failures = 0
    while True:
        try:
            await store.open()
            return True
        except StoreUnavailable as error:
            left = deadline - clock.monotonic()
            if wait <= 0 or not _waitable(error):
                raise
            if left <= 0:
                raise StoreError(
                    f"{error} (still unreachable after waiting {wait:g} s, [store.redis] "
                    "start_wait)"
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
