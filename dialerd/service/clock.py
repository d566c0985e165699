"""The system clock the daemon runs on (tests run on ``tests.fakes.clock.FakeClock``)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import anyio
import anyio.lowlevel


class SystemClock:
    """The real clock: aware UTC wall time and the process's monotonic clock."""

    def now(self) -> datetime:
        """The current wall-clock time, timezone-aware UTC."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """Seconds of ``time.monotonic()``."""
        return time.monotonic()

    async def sleep_until(self, deadline: float) -> None:
        """Sleep until ``monotonic()`` reaches ``deadline``; return at once if it has."""
        remaining = deadline - time.monotonic()
        if remaining > 0:
            await anyio.sleep(remaining)
        else:
            await anyio.lowlevel.checkpoint()
