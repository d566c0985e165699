"""The store's families: latency per operation, whether it answers, campaigns it holds."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from dialerd.metrics.engine import TICK_BUCKETS
from dialerd.metrics.unregistered import counter, gauge, histogram
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
# Redis (behaviour.md, "Redis failover"): the role of the server the latest connection
# reached, the failovers seen (a new primary), the replicas the latest claim or lease
# renewal reached and how many the configuration wants.
STORE_ROLES = ("primary", "replica")
STORE_ROLE = gauge(
    "dialerd_store_role",
    "1 for the role (primary, replica) of the Redis server the store's latest connection reached.",
    ["role"],
)
STORE_FAILOVERS = counter(
    "dialerd_store_failovers_total",
    "Times the Redis store's primary changed under this process (a replica promoted, or "
    "a primary started afresh): its leases and live attempts were written back.",
)
STORE_REPLICAS_ACKNOWLEDGED = gauge(
    "dialerd_store_replicas_acknowledged",
    "Replicas that acknowledged the latest claim or lease renewal (WAIT), when "
    "[store.redis] min_replicas asks for any.",
)
STORE_MIN_REPLICAS = gauge(
    "dialerd_store_min_replicas",
    "[store.redis] min_replicas: replicas that must acknowledge a claim before it is dialed.",
)
STORE_WRITE_BACK_PENDING = gauge(
    "dialerd_store_write_back_pending",
    "1 from a Redis failover seen until this process has written its leases and live "
    "attempts back to the new primary (nothing is claimed meanwhile).",
)
STORE_POOL_EXHAUSTED = counter(
    "dialerd_store_pool_exhausted_total",
    "Store calls that got no connection of this process's Redis pool in time (every "
    "one busy for [store.redis] timeout; a cluster node's pool full): the server was "
    "not asked. Raise [store.redis] pool_size.",
)
FAMILIES = (
    STORE_OPERATION,
    STORE_UP,
    CAMPAIGNS_STORED,
    STORE_ROLE,
    STORE_FAILOVERS,
    STORE_REPLICAS_ACKNOWLEDGED,
    STORE_MIN_REPLICAS,
    STORE_WRITE_BACK_PENDING,
    STORE_POOL_EXHAUSTED,
)


def declare() -> None:
    """The store counts as up until a check says otherwise."""
    STORE_UP.set(1)
    STORE_FAILOVERS.inc(0)
    STORE_POOL_EXHAUSTED.inc(0)
    STORE_WRITE_BACK_PENDING.set(0)


def store_role(role: str) -> None:
    """The latest connection reached a server in this role (Redis's master or slave)."""
    shown = "primary" if role == "master" else "replica"
    for each in STORE_ROLES:
        STORE_ROLE.labels(role=each).set(1 if each == shown else 0)


def replicas_acknowledged(count: int, wanted: int) -> None:
    STORE_REPLICAS_ACKNOWLEDGED.set(count)
    STORE_MIN_REPLICAS.set(wanted)


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
