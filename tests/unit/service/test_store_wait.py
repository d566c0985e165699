"""Opening the store at start (``dialerd.service.store_wait``): retried with the outage
back-off while it is unreachable, for at most ``start_wait``; not for a refused password."""

from __future__ import annotations

import anyio
import pytest
from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError

from dialerd.config import EngineConfig, RedisConnection, StoreConfig
from dialerd.ports import QueueUnavailable
from dialerd.scheduler.shared import STORE_RETRY, backoff
from dialerd.service.store_wait import open_store, open_waiting, store_name
from dialerd.store import StoreError, StoreUnavailable
from tests.fakes.clock import FakeClock

ENGINE = EngineConfig(backoff_initial=0.25)


class StoreAwayFor:
    """A store whose first ``failures`` opens fail as an unreachable Redis's do."""

    backend = "redis"

    def __init__(self, clock: FakeClock, failures: int, cause: Exception | None = None) -> None:
        self.clock = clock
        self.failures = failures
        self.cause = cause or RedisConnectionError("Error 111 connecting to 127.0.0.1:6390.")
        self.tries: list[float] = []

    async def open(self) -> None:
        self.tries.append(self.clock.monotonic())
        if len(self.tries) <= self.failures:
            raise StoreUnavailable(f"redis store cannot be reached: {self.cause}") from self.cause

    async def close(self) -> None:
        pass

    async def ping(self) -> None:
        pass


async def opened(
    store: StoreAwayFor, clock: FakeClock, wait: float, stopping: anyio.Event | None = None
) -> tuple[bool, list[tuple[str, float]]]:
    retries: list[tuple[str, float]] = []

    async def on_retry(error: StoreUnavailable, pause: float) -> None:
        retries.append((str(error), pause))

    failed: StoreError | None = None
    async with clock.autojump(max_seconds=3600):
        try:
            result = await open_store(
                store,
                wait=wait,
                clock=clock,
                delay=lambda failures: min(backoff(ENGINE, failures), STORE_RETRY),
                stopping=stopping or anyio.Event(),
                on_retry=on_retry,
            )
        except StoreError as error:  # raised out of the autojump's task group, unwrapped
            failed = error
    if failed is not None:
        raise failed
    return result, retries


async def test_an_unreachable_store_is_tried_again_with_the_outage_back_off() -> None:
    clock = FakeClock()
    store = StoreAwayFor(clock, failures=4)
    result, retries = await opened(store, clock, wait=30)
    assert result is True
    # 0.25 s doubling, never over the outage's retry period (1 s).
    assert store.tries == [0, 0.25, 0.75, 1.75, 2.75]
    assert [pause for _, pause in retries] == [0.25, 0.5, 1.0, 1.0]
    assert all("cannot be reached" in error for error, _ in retries)


async def test_the_wait_ends_at_start_wait_with_the_last_error_and_the_wait() -> None:
    clock = FakeClock()
    store = StoreAwayFor(clock, failures=1000)
    with pytest.raises(StoreError) as raised:
        await opened(store, clock, wait=5)
    assert "cannot be reached" in str(raised.value)
    assert "still unreachable after waiting 5 s" in str(raised.value)
    # The last try is at the deadline, not a back-off past it.
    assert store.tries[-1] == 5
    assert all(b - a <= STORE_RETRY for a, b in zip(store.tries, store.tries[1:], strict=False))


async def test_start_wait_0_raises_the_first_error_as_before() -> None:
    clock = FakeClock()
    store = StoreAwayFor(clock, failures=1)
    with pytest.raises(StoreUnavailable, match="cannot be reached"):
        await opened(store, clock, wait=0)
    assert store.tries == [0]


async def test_a_refused_password_is_not_waited_for() -> None:
    clock = FakeClock()
    store = StoreAwayFor(clock, failures=1, cause=AuthenticationError("invalid password"))
    with pytest.raises(StoreUnavailable, match="invalid password"):
        await opened(store, clock, wait=30)
    assert store.tries == [0]


async def test_stopping_while_waiting_ends_the_wait_without_opening() -> None:
    clock = FakeClock()
    store = StoreAwayFor(clock, failures=1000)
    stopping = anyio.Event()
    result: list[bool] = []

    async def nothing(error: StoreUnavailable, pause: float) -> None:
        pass

    async def start() -> None:
        delay = lambda failures: STORE_RETRY  # noqa: E731
        opened = await open_store(
            store, wait=600, clock=clock, delay=delay, stopping=stopping, on_retry=nothing
        )
        result.append(opened)

    async with anyio.create_task_group() as group:
        group.start_soon(start)
        await clock.advance(2.5)
        stopping.set()
    assert result == [False]
    # Stopped in its pause after the third try: no more tries, no wait for the next one.
    assert store.tries == [0, 1, 2]
    assert clock.monotonic() == 2.5


def test_the_store_is_named_without_its_password() -> None:
    redis = RedisConnection(url="redis://:secret@10.0.0.5:6379/0")
    assert store_name(StoreConfig(backend="redis", redis=redis)) == (
        "redis redis://:***@10.0.0.5:6379/0"
    )


class QueueAwayFor:
    """The queue adapter's Redis, its first ``failures`` opens failing with ``cause``."""

    def __init__(self, clock: FakeClock, failures: int, cause: Exception) -> None:
        self.clock = clock
        self.failures = failures
        self.cause = cause
        self.tries: list[float] = []

    async def open(self) -> None:
        self.tries.append(self.clock.monotonic())
        if len(self.tries) <= self.failures:
            raise QueueUnavailable(f"queue redis: {self.cause}") from self.cause


async def queue_opened(queue: QueueAwayFor, clock: FakeClock, wait: float, since: float) -> bool:
    async def on_retry(error: QueueUnavailable, pause: float) -> None:
        pass

    failed: QueueUnavailable | None = None
    result = False
    async with clock.autojump(max_seconds=3600):
        try:
            result = await open_waiting(
                queue,
                QueueUnavailable,
                section="[queue.redis]",
                wait=wait,
                since=since,
                clock=clock,
                delay=lambda failures: min(backoff(ENGINE, failures), STORE_RETRY),
                stopping=anyio.Event(),
                on_retry=on_retry,
            )
        except QueueUnavailable as error:
            failed = error
    if failed is not None:
        raise failed
    return result


async def test_the_queue_wait_counts_from_the_start_so_the_store_wait_is_part_of_it() -> None:
    clock = FakeClock()
    await clock.advance(4)  # the store took 4 s to answer
    queue = QueueAwayFor(clock, failures=1000, cause=RedisConnectionError("Error 111"))
    with pytest.raises(QueueUnavailable) as raised:
        await queue_opened(queue, clock, wait=5, since=0)
    assert "still unreachable after waiting 5 s, [queue.redis] start_wait" in str(raised.value)
    assert queue.tries[0] == 4
    assert queue.tries[-1] == 5


async def test_a_url_that_cannot_be_parsed_is_not_waited_for() -> None:
    clock = FakeClock()
    queue = QueueAwayFor(clock, failures=1, cause=ValueError("Port could not be cast"))
    with pytest.raises(QueueUnavailable, match="Port could not be cast"):
        await queue_opened(queue, clock, wait=30, since=0)
    assert queue.tries == [0]
