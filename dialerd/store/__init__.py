"""Persistent storage: the store's ports (``ports``: one per user) and its backends
(``sqlite/``, ``redis/``), chosen by configuration."""

from __future__ import annotations

from pathlib import Path

from dialerd.config import StoreConfig
from dialerd.store.base import (
    MAX_PAGE_SIZE,
    AsStored,
    AttemptEnd,
    AttemptPlan,
    CampaignChanged,
    CampaignNotRunning,
    Conflict,
    Fence,
    FinishResult,
    InUse,
    LeaseLost,
    StoreBusy,
    StoreError,
    StoreUnavailable,
)
from dialerd.store.ports import (
    ApiStore,
    Campaigncalls,
    CampaignReads,
    ControlStore,
    DoNotCall,
    EventStore,
    Leases,
    Ledger,
    Outbox,
    Quotas,
    Resources,
    SchedulerStore,
    Store,
    Targets,
)

__all__ = [
    "MAX_PAGE_SIZE",
    "ApiStore",
    "AsStored",
    "AttemptEnd",
    "AttemptPlan",
    "CampaignChanged",
    "CampaignNotRunning",
    "CampaignReads",
    "Campaigncalls",
    "Conflict",
    "ControlStore",
    "DoNotCall",
    "EventStore",
    "Fence",
    "FinishResult",
    "InUse",
    "LeaseLost",
    "Leases",
    "Ledger",
    "Outbox",
    "Quotas",
    "Resources",
    "SchedulerStore",
    "Store",
    "StoreBusy",
    "StoreError",
    "StoreUnavailable",
    "Targets",
    "create_store",
]


def create_store(config: StoreConfig, state_dir: Path) -> Store:
    """The configured backend, not yet opened (call ``await store.open()``)."""
    if config.backend == "redis":
        from dialerd.store.redis import RedisStore

        return RedisStore(
            url=config.redis.url,
            prefix=config.redis.prefix,
            pool_size=config.redis.pool_size,
            timeout=config.redis.timeout,
            sentinels=config.redis.sentinels,
            service_name=config.redis.service_name,
            min_replicas=config.redis.min_replicas,
            replica_timeout=config.redis.replica_timeout,
            failover_settle=config.redis.failover_settle,
            cluster=config.redis.cluster,
        )
    from dialerd.store.sqlite import SqliteStore

    return SqliteStore(state_dir / config.sqlite_path)
