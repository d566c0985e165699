"""The system clock the daemon runs on."""

from __future__ import annotations

from datetime import UTC

import anyio

from dialerd.service.clock import SystemClock


async def test_system_clock_is_aware_utc_and_sleeps_until_its_deadline() -> None:
    clock = SystemClock()
    assert clock.now().tzinfo == UTC
    deadline = clock.monotonic() + 0.01
    await clock.sleep_until(deadline)
    assert clock.monotonic() >= deadline
    with anyio.fail_after(1):
        await clock.sleep_until(clock.monotonic() - 5)
