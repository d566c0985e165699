"""Per-customer quotas: how much of the daemon one customer may hold (behaviour.md §10, Quotas).

Pure: the limits and the counts come in, a refusal (or none) goes out. The API refuses a
change that would take a customer over a counted quota (stored resources, running
campaigns) with a 409 naming the quota and its value; the scheduler holds a customer's
calls to its call quotas (``concurrent_calls``, ``calls_per_second``). A limit of 0 is
no limit: the seed's behaviour, and the default of every quota.
"""

from __future__ import annotations

import enum
from typing import Annotated

import msgspec

Count = Annotated[int, msgspec.Meta(ge=0)]
Rate = Annotated[float, msgspec.Meta(ge=0)]


class Quota(enum.StrEnum):
    """The quotas, by the name the configuration, the API's errors and the metrics use."""

    RUNNING_CAMPAIGNS = "running_campaigns"
    CONCURRENT_CALLS = "concurrent_calls"
    CALLS_PER_SECOND = "calls_per_second"
    CAMPAIGNS = "campaigns"
    OUTDIALS = "outdials"
    TARGETS_PER_OUTDIAL = "targets_per_outdial"
    TARGETS = "targets"
    DNC_NUMBERS = "dnc_numbers"


class Quotas(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One customer's limits; 0 is no limit."""

    # Campaigns in status run or stopping at once.
    running_campaigns: Count = 0
    # Attempts (calls and flows) active at once, over all the customer's campaigns.
    concurrent_calls: Count = 0
    # New attempts per second, over all the customer's campaigns.
    calls_per_second: Rate = 0.0
    # Stored (not deleted) campaigns, outdials, targets, do-not-call numbers.
    campaigns: Count = 0
    outdials: Count = 0
    targets_per_outdial: Count = 0
    targets: Count = 0
    dnc_numbers: Count = 0

    def limit(self, quota: Quota) -> float:
        """The limit of ``quota`` (0: none)."""
        value: float = getattr(self, quota.value)
        return value


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    """What a customer holds now, as the store counts it (not deleted)."""

    campaigns: int = 0
    running_campaigns: int = 0
    outdials: int = 0
    # Targets of the customer's outdials that are not deleted.
    targets: int = 0
    dnc_numbers: int = 0
    # Targets of the one outdial asked about (0 when none was).
    outdial_targets: int = 0

    def of(self, quota: Quota) -> int:
        """The count ``quota`` limits (``targets_per_outdial``: the outdial's)."""
        if quota is Quota.TARGETS_PER_OUTDIAL:
            return self.outdial_targets
        value: int = getattr(self, quota.value)
        return value


# The quotas the API checks when a resource is created, and what each counts.
COUNTED: dict[str, tuple[Quota, ...]] = {
    "campaign": (Quota.CAMPAIGNS,),
    "outdial": (Quota.OUTDIALS,),
    "target": (Quota.TARGETS_PER_OUTDIAL, Quota.TARGETS),
    "dnc_number": (Quota.DNC_NUMBERS,),
    "run": (Quota.RUNNING_CAMPAIGNS,),
}


class QuotaExceeded(Exception):
    """A change would take the customer over a quota; nothing was changed."""

    def __init__(self, quota: Quota, limit: float, used: int, adding: int) -> None:
        self.quota = quota
        self.limit = limit
        self.used = used
        self.adding = adding
        super().__init__(
            f"quota {quota.value} is {limit:g}: {used} in use, {adding} more would exceed it"
        )


def over(quotas: Quotas, quota: Quota, used: int, adding: int) -> QuotaExceeded | None:
    """The refusal when ``used + adding`` exceeds the quota (None: within it, or no limit)."""
    limit = quotas.limit(quota)
    if limit and adding > 0 and used + adding > limit:
        return QuotaExceeded(quota, limit, used, adding)
    return None


def first_over(quotas: Quotas, kind: str, usage: Usage, adding: int = 1) -> QuotaExceeded | None:
    """The first quota of ``kind`` (a key of ``COUNTED``) that ``adding`` more exceed."""
    for quota in COUNTED[kind]:
        refusal = over(quotas, quota, usage.of(quota), adding)
        if refusal is not None:
            return refusal
    return None


def call_limits(quotas: Quotas) -> tuple[int | None, float | None]:
    """The customer's ceiling of concurrent calls and of calls per second (None: none)."""
    return (quotas.concurrent_calls or None, quotas.calls_per_second or None)
