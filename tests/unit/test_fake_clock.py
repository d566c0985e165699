"""The fake clock (``tests.fakes.clock``): stepping, autojump and cancellation."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import anyio
import anyio.to_thread
import pytest

from tests.fakes.clock import FAKE_EPOCH, FakeClock, SimulatedTimeExceeded

START = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)


async def test_fake_clock_starts_at_its_start_time_with_zero_elapsed() -> None:
    clock = FakeClock(START)
    assert clock.now() == START
    assert clock.monotonic() == 0.0
    assert FakeClock().now() == FAKE_EPOCH


def test_fake_clock_refuses_a_naive_start() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        FakeClock(datetime(2026, 3, 2, 9, 0, 0))


async def test_advance_moves_now_and_monotonic_together() -> None:
    clock = FakeClock(START)
    await clock.advance(90.5)
    assert clock.monotonic() == 90.5
    assert clock.now() == START + timedelta(seconds=90.5)


async def test_advance_refuses_to_go_backwards() -> None:
    with pytest.raises(ValueError, match="-1"):
        await FakeClock().advance(-1)


async def test_sleep_until_a_past_deadline_returns_at_once() -> None:
    clock = FakeClock()
    await clock.advance(10)
    with anyio.fail_after(1):
        await clock.sleep_until(5)
    assert clock.pending_sleepers == 0


async def test_sleepers_wake_in_deadline_order_each_at_its_deadline() -> None:
    clock = FakeClock()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, deadline: float) -> None:
        await clock.sleep_until(deadline)
        woke.append((name, clock.monotonic()))

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(sleeper, "late", 30.0)
        task_group.start_soon(sleeper, "early", 10.0)
        task_group.start_soon(sleeper, "middle", 20.0)
        await clock.advance(25)
        assert woke == [("early", 10.0), ("middle", 20.0)]
        assert clock.monotonic() == 25
        await clock.advance(5)
    assert woke == [("early", 10.0), ("middle", 20.0), ("late", 30.0)]


async def test_sleepers_with_the_same_deadline_all_wake_in_the_order_they_slept() -> None:
    clock = FakeClock()
    woke: list[int] = []

    async def sleeper(number: int) -> None:
        await clock.sleep_until(7.0)
        woke.append(number)

    async with anyio.create_task_group() as task_group:
        for number in range(5):
            task_group.start_soon(sleeper, number)
        await clock.advance(6.9)
        assert woke == []
        await clock.advance(0.1)
        assert woke == [0, 1, 2, 3, 4]


async def test_advance_lets_a_periodic_task_run_at_every_step() -> None:
    clock = FakeClock()
    ticks: list[float] = []

    async def ticker() -> None:
        deadline = 0.0
        while True:
            deadline += 1.0
            await clock.sleep_until(deadline)
            ticks.append(clock.monotonic())

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(ticker)
        await clock.advance(5)
        task_group.cancel_scope.cancel()
    assert ticks == [1.0, 2.0, 3.0, 4.0, 5.0]


async def test_a_cancelled_sleeper_leaves_no_waiter_behind() -> None:
    clock = FakeClock()
    woke: list[float] = []

    async def sleeper(deadline: float, scope: anyio.CancelScope) -> None:
        with scope:
            await clock.sleep_until(deadline)
            woke.append(deadline)

    doomed, kept = anyio.CancelScope(), anyio.CancelScope()
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(sleeper, 50.0, doomed)
        task_group.start_soon(sleeper, 100.0, kept)
        await clock.advance(0)
        assert clock.pending_sleepers == 2
        doomed.cancel()
        await clock.advance(0)
        assert clock.pending_sleepers == 1
        assert clock.next_deadline() == 100.0
        await clock.advance(99)
        assert woke == []
        await clock.advance(1)
    assert woke == [100.0]
    assert clock.pending_sleepers == 0
    assert clock.next_deadline() is None


async def test_many_cancelled_sleepers_do_not_accumulate() -> None:
    clock = FakeClock()
    for round_number in range(300):
        with anyio.move_on_after(0):
            await clock.sleep_until(1000.0 + round_number)
    assert clock.pending_sleepers == 0
    assert len(clock._heap) <= 64
    assert clock.next_deadline() is None


async def test_autojump_runs_hours_of_simulated_time_at_once() -> None:
    clock = FakeClock(START)
    with anyio.fail_after(5):
        async with clock.autojump(max_seconds=4 * 3600):
            await clock.sleep_until(3 * 3600)
    assert clock.monotonic() == 3 * 3600
    assert clock.now() == START + timedelta(hours=3)


async def test_autojump_steps_through_every_deadline_in_order() -> None:
    clock = FakeClock()
    seen: list[tuple[str, float]] = []

    async def ticker(name: str, interval: float, count: int) -> None:
        for step in range(1, count + 1):
            await clock.sleep_until(step * interval)
            seen.append((name, clock.monotonic()))

    with anyio.fail_after(5):
        async with clock.autojump(max_seconds=100), anyio.create_task_group() as task_group:
            task_group.start_soon(ticker, "a", 2.0, 3)
            task_group.start_soon(ticker, "b", 3.0, 2)
    # At 6.0 "b" wakes first: it went to sleep (at 3.0) before "a" did (at 4.0).
    assert seen == [("a", 2.0), ("b", 3.0), ("a", 4.0), ("b", 6.0), ("a", 6.0)]


async def test_autojump_waits_for_a_sleeper_that_arrives_later() -> None:
    clock = FakeClock()
    with anyio.fail_after(5):
        async with clock.autojump(max_seconds=100):
            await anyio.to_thread.run_sync(lambda: None)
            await clock.sleep_until(42)
    assert clock.monotonic() == 42


async def test_autojump_does_not_jump_while_a_worker_thread_is_busy() -> None:
    clock = FakeClock()
    seen_after_query: list[float] = []

    async def slow_query_then_note_time() -> None:
        # A store query running in a worker thread takes no simulated time.
        await anyio.to_thread.run_sync(time.sleep, 0.05)
        seen_after_query.append(clock.monotonic())

    with anyio.fail_after(5):
        async with clock.autojump(max_seconds=100), anyio.create_task_group() as task_group:
            task_group.start_soon(clock.sleep_until, 60.0)
            task_group.start_soon(slow_query_then_note_time)
    assert seen_after_query == [0.0]
    assert clock.monotonic() == 60.0


async def test_autojump_stops_with_an_error_at_its_bound() -> None:
    clock = FakeClock()
    with (
        anyio.fail_after(5),
        pytest.RaisesGroup(
            pytest.RaisesExc(SimulatedTimeExceeded, match="bound of 100 simulated seconds")
        ),
    ):
        async with clock.autojump(max_seconds=100):
            await clock.sleep_until(50)
            await clock.sleep_until(150)
    assert clock.monotonic() == 50
    assert clock.pending_sleepers == 0


async def test_autojump_run_in_a_task_group_stops_when_cancelled() -> None:
    clock = FakeClock()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(lambda: clock.run(max_seconds=10))
            await clock.sleep_until(9)
            task_group.cancel_scope.cancel()
    assert clock.monotonic() == 9


async def test_autojump_with_a_threshold_waits_for_replies_in_flight() -> None:
    clock = FakeClock()
    seen_after_reply: list[float] = []

    async def await_network_reply_then_note_time() -> None:
        # A real timer stands in for a reply on a socket: no thread, no ready task.
        await asyncio.sleep(0.01)
        seen_after_reply.append(clock.monotonic())

    with anyio.fail_after(5):
        async with (
            clock.autojump(max_seconds=100, threshold=0.05),
            anyio.create_task_group() as task_group,
        ):
            task_group.start_soon(clock.sleep_until, 60.0)
            task_group.start_soon(await_network_reply_then_note_time)
    assert seen_after_reply == [0.0]
    assert clock.monotonic() == 60.0
