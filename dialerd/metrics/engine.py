"""The scheduler's families: campaigns by status, attempts, pacing, ticks, ring and talk
time, live answers, configuration reloads."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from prometheus_client.metrics import MetricWrapperBase

from dialerd.metrics.unregistered import counter, gauge, histogram
from dialerd.model import CampaigncallResult, CampaignStatus, CampaignType
from dialerd.ports import HangupReason

# 1 ms .. 5 s: a tick is a few store round trips; its lag is how late it started.
TICK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Ringing lasts seconds to a minute or two; talk seconds to an hour.
RING_BUCKETS = (1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 120.0)
TALK_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)

CAMPAIGNS = gauge("dialerd_campaigns", "Campaigns by status.", ["status"])
ATTEMPTS_STARTED = counter(
    "dialerd_attempts_started",
    "Attempts started, by campaign type.",
    ["campaign_type"],
)
ATTEMPTS_FINISHED = counter(
    "dialerd_attempts_finished",
    "Attempts finished, by result and hangup reason.",
    ["result", "reason"],
)
ATTEMPTS_ACTIVE = gauge(
    "dialerd_attempts_active",
    "Attempts in progress: dialing (not answered yet) or progressing (answered).",
    ["status"],
)
ANSWERED = counter("dialerd_answered", "Attempts answered by the callee.")
ABANDONED = counter(
    "dialerd_abandoned",
    "Answered attempts no agent took in time (abandoned).",
)
AVAILABLE_AGENTS = gauge(
    "dialerd_available_agents",
    "Available agents of a queue, as last read by the engine.",
    ["queue_id"],
)
PACING_ALLOWED = counter(
    "dialerd_pacing_attempts_allowed",
    "New attempts the pacing rule allowed, summed over ticks.",
)
PACING_STARTED = counter(
    "dialerd_pacing_attempts_started",
    "New attempts actually started, summed over ticks.",
)
TICK_DURATION = histogram(
    "dialerd_tick_duration_seconds",
    "Time one campaign tick took.",
    buckets=TICK_BUCKETS,
)
TICK_LAG = histogram(
    "dialerd_tick_lag_seconds",
    "How late a campaign tick started after it was due.",
    buckets=TICK_BUCKETS,
)
CONFIG_RELOADS = counter(
    "dialerd_config_reloads",
    "Configuration reloads (SIGHUP), by result.",
    ["result"],
)
LIVE_ANSWERS_MEASURED = counter(
    "dialerd_live_answers_measured",
    "Live answers counted by the abandonment measurement (machines excluded).",
    ["abandoned"],
)
RING_TIME = histogram(
    "dialerd_ring_seconds",
    "Seconds from origination to answer, or to the end of a call never answered.",
    buckets=RING_BUCKETS,
)
TALK_TIME = histogram(
    "dialerd_talk_seconds",
    "Seconds from answer to the end of the call.",
    buckets=TALK_BUCKETS,
)
FAMILIES = (
    CAMPAIGNS,
    ATTEMPTS_STARTED,
    ATTEMPTS_FINISHED,
    ATTEMPTS_ACTIVE,
    ANSWERED,
    ABANDONED,
    AVAILABLE_AGENTS,
    PACING_ALLOWED,
    PACING_STARTED,
    TICK_DURATION,
    TICK_LAG,
    CONFIG_RELOADS,
    LIVE_ANSWERS_MEASURED,
    RING_TIME,
    TALK_TIME,
)

REASONS = frozenset(reason.value for reason in HangupReason)
_RESULTS = frozenset(result.value for result in CampaigncallResult if result.value)
_CAMPAIGN_TYPES = frozenset(kind.value for kind in CampaignType)


def result_of(reason: HangupReason) -> CampaigncallResult:
    """The result an attempt ending with ``reason`` has: success only when normal."""
    return CampaigncallResult.SUCCESS if reason == HangupReason.NORMAL else CampaigncallResult.FAIL


def declare() -> None:
    """Create every fixed label combination at 0, so rates and ratios exist from the start."""
    for status in CampaignStatus:
        CAMPAIGNS.labels(status=status.value)
    for kind in _CAMPAIGN_TYPES:
        ATTEMPTS_STARTED.labels(campaign_type=kind)
    for reason in HangupReason:
        ATTEMPTS_FINISHED.labels(result=result_of(reason).value, reason=reason.value)
    for activity in ("dialing", "progressing"):
        ATTEMPTS_ACTIVE.labels(status=activity)
    for outcome in ("success", "failure"):
        CONFIG_RELOADS.labels(result=outcome)


def campaigns_by_status(counts: Mapping[str, int]) -> None:
    """Set the number of campaigns per status (``stop``, ``stopping``, ``run``)."""
    for status, count in counts.items():
        CAMPAIGNS.labels(status=CampaignStatus(status).value).set(count)


# Children of the families every attempt changes, looked up once (``labels()`` checks
# and locks on every call); their label values are few and fixed, none is ever removed.
_CHILDREN: dict[tuple[MetricWrapperBase, tuple[str, ...]], Any] = {}


def _child(family: MetricWrapperBase, *values: str) -> Any:
    found = _CHILDREN.get((family, values))
    if found is None:
        found = _CHILDREN[family, values] = family.labels(*values)
    return found


def attempt_started(campaign_type: str, count: int = 1) -> None:
    """Count ``count`` attempts started for a campaign of ``campaign_type`` (call or flow)."""
    if campaign_type not in _CAMPAIGN_TYPES:
        raise ValueError(f"unknown campaign type {campaign_type!r}")
    _child(ATTEMPTS_STARTED, campaign_type).inc(count)


def attempt_finished(result: str, reason: str) -> None:
    """Count one finished attempt; an ``abandoned`` one also counts as abandoned."""
    if result not in _RESULTS:
        raise ValueError(f"unknown campaigncall result {result!r}")
    if reason not in REASONS:
        raise ValueError(f"unknown hangup reason {reason!r}")
    _child(ATTEMPTS_FINISHED, result, reason).inc()
    if reason == HangupReason.ABANDONED:
        ABANDONED.inc()


def attempts_active(*, dialing: int, progressing: int) -> None:
    """Set the attempts in progress: dialing (unanswered) and progressing (answered)."""
    _child(ATTEMPTS_ACTIVE, "dialing").set(dialing)
    _child(ATTEMPTS_ACTIVE, "progressing").set(progressing)


def queues_in_use(queue_ids: Collection[str]) -> None:
    """Drop the available-agents series of queues no running campaign reads any more."""
    # The family's own table of children (``collect()`` would render every series).
    children: dict[tuple[str, ...], object] = getattr(AVAILABLE_AGENTS, "_metrics", {})
    for (queue_id,) in [labels for labels in list(children) if labels[0] not in queue_ids]:
        AVAILABLE_AGENTS.remove(queue_id)


def pacing_decision(*, allowed: int, started: int) -> None:
    """Add one tick's pacing decision: attempts the rule allowed and attempts started."""
    PACING_ALLOWED.inc(allowed)
    PACING_STARTED.inc(started)


def config_reloaded(*, success: bool) -> None:
    """Count one configuration reload, accepted or rejected."""
    CONFIG_RELOADS.labels(result="success" if success else "failure").inc()
