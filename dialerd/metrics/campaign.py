"""Per campaign: labelled by campaign id, only while the campaign's loop runs here.

Bounded by the running campaigns of this instance: ``declare_campaign`` creates a
campaign's series as its loop takes it up, ``forget_campaign`` drops them (the action
families of ``dialerd.metrics.actions`` too) when the loop ends."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client.metrics import MetricWrapperBase

from dialerd.core.abandonment import WindowCount
from dialerd.core.states import DialingState
from dialerd.core.targets import Held
from dialerd.insight import TargetCounts
from dialerd.metrics import actions
from dialerd.metrics.engine import REASONS, result_of
from dialerd.metrics.unregistered import counter, gauge
from dialerd.ports import HangupReason

_DIALING_STATES = tuple(state.value for state in DialingState)
_TARGET_STATES = ("idle_due", "idle_waiting", "progressing", "done")

CAMPAIGN_STATE = gauge(
    "dialerd_campaign_state",
    "1 for what the campaign's latest tick found (dialing, or what held it back).",
    ["campaign_id", "state"],
)
CAMPAIGN_STARTED = counter(
    "dialerd_campaign_attempts_started",
    "Attempts the campaign started (on this instance).",
    ["campaign_id"],
)
CAMPAIGN_ENDED = counter(
    "dialerd_campaign_attempts_ended",
    "Attempts of the campaign that ended, by result and hangup reason.",
    ["campaign_id", "result", "reason"],
)
CAMPAIGN_ANSWERED = counter(
    "dialerd_campaign_answered",
    "Attempts of the campaign answered live by the callee.",
    ["campaign_id"],
)
CAMPAIGN_DIALING = gauge(
    "dialerd_campaign_dialing",
    "The campaign's attempts dialing (not answered yet).",
    ["campaign_id"],
)
CAMPAIGN_TALKING = gauge(
    "dialerd_campaign_talking",
    "The campaign's answered attempts still up.",
    ["campaign_id"],
)
CAMPAIGN_SERVICE_LEVEL = gauge(
    "dialerd_campaign_service_level",
    "The campaign's pacing level (service_level, percent of a line per free agent).",
    ["campaign_id"],
)
CAMPAIGN_AVAILABLE_AGENTS = gauge(
    "dialerd_campaign_available_agents",
    "Available agents of the campaign's queue, as its latest tick read them.",
    ["campaign_id"],
)
CAMPAIGN_ABANDON_RATE = gauge(
    "dialerd_campaign_abandon_rate",
    "Abandoned over live answers of the campaign, per window of days ending today "
    "(47 CFR 64.1200(a)(7): 30 days; Ofcom: 1 day).",
    ["campaign_id", "window_days"],
)
CAMPAIGN_LIVE_ANSWERS = gauge(
    "dialerd_campaign_live_answers",
    "Live answers of the campaign (machines excluded), per window of days ending today.",
    ["campaign_id", "window_days"],
)
CAMPAIGN_GOVERNOR_PRESSURE = gauge(
    "dialerd_campaign_governor_pressure",
    "The abandonment governor's pressure while it holds lines back: near 0 the pacing "
    "mode decides, 1 holds the campaign to one line per free agent; 0 while it holds "
    "nothing back, and without [abandonment].",
    ["campaign_id"],
)
CAMPAIGN_TARGETS = gauge(
    "dialerd_campaign_targets",
    "The campaign's list: targets due, waiting (retry, calling rules), being dialed, done.",
    ["campaign_id", "status"],
)
CAMPAIGN_TARGETS_HELD = gauge(
    "dialerd_campaign_targets_held",
    "The campaign's targets the dialing rules hold back, by reason (retry_interval, "
    "calling_hours, unknown_zone, abandoned_lockout, daily_limit, dnc).",
    ["campaign_id", "reason"],
)
# Each family with its label names, for ``forget_campaign``.
PER_CAMPAIGN: tuple[tuple[MetricWrapperBase, tuple[str, ...]], ...] = (
    (CAMPAIGN_STATE, ("campaign_id", "state")),
    (CAMPAIGN_STARTED, ("campaign_id",)),
    (CAMPAIGN_ENDED, ("campaign_id", "result", "reason")),
    (CAMPAIGN_ANSWERED, ("campaign_id",)),
    (CAMPAIGN_DIALING, ("campaign_id",)),
    (CAMPAIGN_TALKING, ("campaign_id",)),
    (CAMPAIGN_SERVICE_LEVEL, ("campaign_id",)),
    (CAMPAIGN_AVAILABLE_AGENTS, ("campaign_id",)),
    (CAMPAIGN_ABANDON_RATE, ("campaign_id", "window_days")),
    (CAMPAIGN_LIVE_ANSWERS, ("campaign_id", "window_days")),
    (CAMPAIGN_GOVERNOR_PRESSURE, ("campaign_id",)),
    (CAMPAIGN_TARGETS, ("campaign_id", "status")),
    (CAMPAIGN_TARGETS_HELD, ("campaign_id", "reason")),
)
FAMILIES = tuple(family for family, _names in PER_CAMPAIGN)


def declare_campaign(campaign_id: str) -> None:
    """Create a campaign's counters at 0 for every known result and reason as its loop
    takes it up, so ratios and ``increase()`` read 0, not "no data", until the first
    event (``forget_campaign`` drops them when the loop ends)."""
    CAMPAIGN_STARTED.labels(campaign_id=campaign_id)
    CAMPAIGN_ANSWERED.labels(campaign_id=campaign_id)
    for reason in HangupReason:
        CAMPAIGN_ENDED.labels(
            campaign_id=campaign_id, result=result_of(reason).value, reason=reason.value
        )


# The children the attempts' paths change, per campaign, looked up once
# (``labels()`` checks and locks on every call): dropped by ``forget_campaign``.
_CHILDREN: dict[str, dict[tuple[MetricWrapperBase, tuple[str, ...]], Any]] = {}


def _child(family: MetricWrapperBase, campaign_id: str, *values: str) -> Any:
    """``family.labels(campaign_id, *values)``, from the campaign's cache."""
    children = _CHILDREN.get(campaign_id)
    if children is None:
        children = _CHILDREN[campaign_id] = {}
    found = children.get((family, values))
    if found is None:
        found = children[family, values] = family.labels(campaign_id, *values)
    return found


def campaign_state(campaign_id: str, state: DialingState) -> None:
    """Set the campaign's current state (1) and every other state (0)."""
    for name in _DIALING_STATES:
        _child(CAMPAIGN_STATE, campaign_id, name).set(1 if name == state.value else 0)


def campaign_attempt_started(campaign_id: str, count: int = 1) -> None:
    _child(CAMPAIGN_STARTED, campaign_id).inc(count)


def campaign_attempt_ended(campaign_id: str, result: str, reason: str) -> None:
    if reason not in REASONS:
        raise ValueError(f"unknown hangup reason {reason!r}")
    _child(CAMPAIGN_ENDED, campaign_id, result, reason).inc()


def campaign_answered(campaign_id: str) -> None:
    _child(CAMPAIGN_ANSWERED, campaign_id).inc()


def campaign_activity(campaign_id: str, *, dialing: int, talking: int) -> None:
    _child(CAMPAIGN_DIALING, campaign_id).set(dialing)
    _child(CAMPAIGN_TALKING, campaign_id).set(talking)


def campaign_pacing(campaign_id: str, *, service_level: int, available_agents: int | None) -> None:
    _child(CAMPAIGN_SERVICE_LEVEL, campaign_id).set(service_level)
    if available_agents is not None:
        _child(CAMPAIGN_AVAILABLE_AGENTS, campaign_id).set(available_agents)


def campaign_abandonment(campaign_id: str, windows: Sequence[WindowCount], pressure: float) -> None:
    for window in windows:
        labels = {"campaign_id": campaign_id, "window_days": str(window.days)}
        CAMPAIGN_ABANDON_RATE.labels(**labels).set(window.rate)
        CAMPAIGN_LIVE_ANSWERS.labels(**labels).set(window.live)
    CAMPAIGN_GOVERNOR_PRESSURE.labels(campaign_id=campaign_id).set(pressure)


def campaign_targets(campaign_id: str, counts: TargetCounts) -> None:
    for status in _TARGET_STATES:
        CAMPAIGN_TARGETS.labels(campaign_id=campaign_id, status=status).set(getattr(counts, status))
    for reason in Held:
        if reason:
            CAMPAIGN_TARGETS_HELD.labels(campaign_id=campaign_id, reason=reason.value).set(
                counts.held.get(reason.value, 0)
            )


def forget_campaign(campaign_id: str) -> None:
    """Drop every series of a campaign whose loop ended on this instance.

    Its series are found in each family's children by their label values (the family's
    own table: ``collect()`` would render every campaign's series, each time one ends).
    """
    _CHILDREN.pop(campaign_id, None)
    for metric, names in (*PER_CAMPAIGN, *actions.PER_CAMPAIGN):
        position = names.index("campaign_id")
        children: dict[tuple[str, ...], object] = getattr(metric, "_metrics", {})
        for labels in [labels for labels in list(children) if labels[position] == campaign_id]:
            metric.remove(*labels)
