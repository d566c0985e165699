"""Per customer: quotas (behaviour.md §10, Quotas). Labelled by customer id: customers are
configuration (API tokens), a bounded set."""

from __future__ import annotations

from dialerd.metrics.unregistered import counter, gauge

QUOTA_USED = gauge(
    "dialerd_quota_used",
    "A customer's use of a quota with a limit: stored resources as last counted by the "
    "API, running campaigns, and this instance's active calls and calls per second.",
    ["customer_id", "quota"],
)
QUOTA_LIMIT = gauge(
    "dialerd_quota_limit",
    "The limit of a customer's quota (or the customer's share of the call ceiling, "
    "whichever is lower for calls), beside dialerd_quota_used.",
    ["customer_id", "quota"],
)
QUOTA_REFUSALS = counter(
    "dialerd_quota_refusals",
    "API requests refused because they would take the customer over a quota.",
    ["customer_id", "quota"],
)
FAMILIES = (QUOTA_USED, QUOTA_LIMIT, QUOTA_REFUSALS)


def quota_use(customer_id: str, quota: str, used: float, limit: float) -> None:
    """A customer's use of ``quota`` against its limit."""
    QUOTA_USED.labels(customer_id=customer_id, quota=quota).set(used)
    QUOTA_LIMIT.labels(customer_id=customer_id, quota=quota).set(limit)


def quota_refused(customer_id: str, quota: str) -> None:
    """Count one request refused by ``quota``."""
    QUOTA_REFUSALS.labels(customer_id=customer_id, quota=quota).inc()
