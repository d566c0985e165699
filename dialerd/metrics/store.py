"""The store's families: latency per operation, whether it answers, campaigns it holds."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from dialerd.metrics.engine import TICK_BUCKETS
from dialerd.metrics.unregistered import gauge, histogram
from dialerd.model import CampaignStatus

# SQLite answers in tens of microseconds, a remote Redis in milliseconds.
STORE_BUCKETS = (0.0001, 0.00025, 0.0005, *TICK_BUCKETS)

STORE_OPERATION = histogram(
    "dialerd_store_operation_seconds",
    "Latency of store operations, by operation and backend.",
    ["operation", "backend"],
    buckets=STORE_BUCKETS,
)
STORE_UP = gauge("dialerd_store_up", "1 when the store answered the last check, else 0.")
CAMPAIGNS_STORED = gauge(
    "dialerd_campaigns_stored",
    "Campaigns in the store by status (the same on every instance sharing it).",
    ["status"],
)
FAMILIES = (STORE_OPERATION, STORE_UP, CAMPAIGNS_STORED)


def declare() -> None:
    """The store counts as up until a check says otherwise."""
    STORE_UP.set(1)


# Children of STORE_OPERATION, looked up once (few, fixed, never removed).
_TIMED: dict[tuple[str, str], Any] = {}


@contextmanager
def store_operation(operation: str, backend: str) -> Iterator[None]:
    """Time the enclosed store call (failed ones too) under ``operation`` and ``backend``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        timed = _TIMED.get((operation, backend))
        if timed is None:
            timed = _TIMED[operation, backend] = STORE_OPERATION.labels(
                operation=operation, backend=backend
            )
        timed.observe(time.perf_counter() - started)


def campaigns_stored(counts: Mapping[str, int]) -> None:
    """Set the store-wide number of campaigns per status."""
    for status, count in counts.items():
        CAMPAIGNS_STORED.labels(status=CampaignStatus(status).value).set(count)
