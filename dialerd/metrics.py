"""Prometheus metrics of dialerd, on a registry of their own (``REGISTRY``).

Names are in base units, counters end in ``_total``, latencies are histograms. No label
ever holds a campaigncall id, a target id or a phone number; queue ids are configuration
and allowed. The engine calls the functions below and never touches labels itself:

- ``campaigns_by_status({"run": 2, "stopping": 0, "stop": 5})`` after each scan;
- ``attempt_started("call")``; ``attempt_finished("fail", "busy")`` (an ``abandoned``
  reason also counts in ``dialerd_abandoned_total``); ``ANSWERED.inc()`` on answer;
- ``attempts_active(dialing=..., progressing=...)`` whenever either count changes;
- ``AVAILABLE_AGENTS.labels(queue_id=...).set(n)``, ``queues_in_use(ids)`` to drop others;
- ``pacing_decision(allowed=3, started=2)`` once per tick;
- ``TICK_DURATION.observe(s)``, ``TICK_LAG.observe(s)``;
- ``with store_operation("finish_attempt", store.backend): ...``; ``STORE_UP.set(1)``;
- ``origination_error(backend)``, ``queue_read_error(adapter)``, ``config_reloaded(success=...)``;
- actions: ``action_ran(campaign_id, "talk", "done")``, ``digits_chosen(campaign_id, "1")``,
  ``opt_out(campaign_id)``, ``prompt_failed(campaign_id)``, ``tts_rendered(s, cached)``;
- ``declare_backends(telephony=[...], queue_adapter=...)`` once at start, so error
  counters exist at 0 and ``increase()`` sees their first error.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from dialerd import __version__
from dialerd.core.abandonment import WindowCount
from dialerd.core.actions import OPTION_TYPES
from dialerd.core.targets import Held
from dialerd.insight import DialingState, TargetCounts
from dialerd.model import CampaigncallResult, CampaignStatus, CampaignType
from dialerd.ports import HangupReason

# A ``_created`` series per counter and histogram doubles the series count for a value
# Prometheus does not use; this process serves only dialerd's metrics.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream


class PidOnlyProcessCollector(ProcessCollector):
    """prometheus_client's ``process_*`` metrics, also under systemd's ``ProcSubset=pid``
    (the unit sets it): there ``/proc/stat``, where it reads the boot time, is hidden, so
    the boot time comes from ``CLOCK_BOOTTIME`` instead. The rest is read from
    ``/proc/self``, which stays visible."""

    def _boot_time(self) -> float:
        try:
            read = super()._boot_time()  # type: ignore[no-untyped-call]
        except OSError:
            read = None
        if read is None:
            return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
        return float(read)


REGISTRY = CollectorRegistry(auto_describe=True)
PidOnlyProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

# 1 ms .. 5 s: a tick is a few store round trips; its lag is how late it started.
TICK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# SQLite answers in tens of microseconds, a remote Redis in milliseconds.
STORE_BUCKETS = (0.0001, 0.00025, 0.0005, *TICK_BUCKETS)

BUILD_INFO = Info("dialerd_build", "Version of the running dialerd.", registry=REGISTRY)
BUILD_INFO.info({"version": __version__})

CAMPAIGNS = Gauge("dialerd_campaigns", "Campaigns by status.", ["status"], registry=REGISTRY)
ATTEMPTS_STARTED = Counter(
    "dialerd_attempts_started",
    "Attempts started, by campaign type.",
    ["campaign_type"],
    registry=REGISTRY,
)
ATTEMPTS_FINISHED = Counter(
    "dialerd_attempts_finished",
    "Attempts finished, by result and hangup reason.",
    ["result", "reason"],
    registry=REGISTRY,
)
ATTEMPTS_ACTIVE = Gauge(
    "dialerd_attempts_active",
    "Attempts in progress: dialing (not answered yet) or progressing (answered).",
    ["status"],
    registry=REGISTRY,
)
ANSWERED = Counter("dialerd_answered", "Attempts answered by the callee.", registry=REGISTRY)
ABANDONED = Counter(
    "dialerd_abandoned",
    "Answered attempts no agent took in time (abandoned).",
    registry=REGISTRY,
)
AVAILABLE_AGENTS = Gauge(
    "dialerd_available_agents",
    "Available agents of a queue, as last read by the engine.",
    ["queue_id"],
    registry=REGISTRY,
)
PACING_ALLOWED = Counter(
    "dialerd_pacing_attempts_allowed",
    "New attempts the pacing rule allowed, summed over ticks.",
    registry=REGISTRY,
)
PACING_STARTED = Counter(
    "dialerd_pacing_attempts_started",
    "New attempts actually started, summed over ticks.",
    registry=REGISTRY,
)
TICK_DURATION = Histogram(
    "dialerd_tick_duration_seconds",
    "Time one campaign tick took.",
    buckets=TICK_BUCKETS,
    registry=REGISTRY,
)
TICK_LAG = Histogram(
    "dialerd_tick_lag_seconds",
    "How late a campaign tick started after it was due.",
    buckets=TICK_BUCKETS,
    registry=REGISTRY,
)
STORE_OPERATION = Histogram(
    "dialerd_store_operation_seconds",
    "Latency of store operations, by operation and backend.",
    ["operation", "backend"],
    buckets=STORE_BUCKETS,
    registry=REGISTRY,
)
STORE_UP = Gauge(
    "dialerd_store_up", "1 when the store answered the last check, else 0.", registry=REGISTRY
)
STORE_UP.set(1)
ORIGINATION_ERRORS = Counter(
    "dialerd_telephony_origination_errors",
    "Originations the telephony backend refused or failed.",
    ["backend"],
    registry=REGISTRY,
)
QUEUE_READ_ERRORS = Counter(
    "dialerd_queue_read_errors",
    "Failed reads of available agents from the queue adapter.",
    ["adapter"],
    registry=REGISTRY,
)
CONFIG_RELOADS = Counter(
    "dialerd_config_reloads",
    "Configuration reloads (SIGHUP), by result.",
    ["result"],
    registry=REGISTRY,
)

_REASONS = frozenset(reason.value for reason in HangupReason)
_RESULTS = frozenset(result.value for result in CampaigncallResult if result.value)
_CAMPAIGN_TYPES = frozenset(kind.value for kind in CampaignType)


def _result_of(reason: HangupReason) -> CampaigncallResult:
    """The result an attempt ending with ``reason`` has: success only when normal."""
    return CampaigncallResult.SUCCESS if reason == HangupReason.NORMAL else CampaigncallResult.FAIL


def _declare_series() -> None:
    """Create every fixed label combination at 0, so rates and ratios exist from the start."""
    for status in CampaignStatus:
        CAMPAIGNS.labels(status=status.value)
    for kind in _CAMPAIGN_TYPES:
        ATTEMPTS_STARTED.labels(campaign_type=kind)
    for reason in HangupReason:
        ATTEMPTS_FINISHED.labels(result=_result_of(reason).value, reason=reason.value)
    for activity in ("dialing", "progressing"):
        ATTEMPTS_ACTIVE.labels(status=activity)
    for outcome in ("success", "failure"):
        CONFIG_RELOADS.labels(result=outcome)


_declare_series()


def declare_backends(*, telephony: Iterable[str], queue_adapter: str) -> None:
    """Create the error counters of the configured backends at 0."""
    for backend in telephony:
        ORIGINATION_ERRORS.labels(backend=backend)
    QUEUE_READ_ERRORS.labels(adapter=queue_adapter)


def campaigns_by_status(counts: Mapping[str, int]) -> None:
    """Set the number of campaigns per status (``stop``, ``stopping``, ``run``)."""
    for status, count in counts.items():
        CAMPAIGNS.labels(status=CampaignStatus(status).value).set(count)


def attempt_started(campaign_type: str) -> None:
    """Count one attempt started for a campaign of ``campaign_type`` (call or flow)."""
    if campaign_type not in _CAMPAIGN_TYPES:
        raise ValueError(f"unknown campaign type {campaign_type!r}")
    ATTEMPTS_STARTED.labels(campaign_type=campaign_type).inc()


def attempt_finished(result: str, reason: str) -> None:
    """Count one finished attempt; an ``abandoned`` one also counts as abandoned."""
    if result not in _RESULTS:
        raise ValueError(f"unknown campaigncall result {result!r}")
    if reason not in _REASONS:
        raise ValueError(f"unknown hangup reason {reason!r}")
    ATTEMPTS_FINISHED.labels(result=result, reason=reason).inc()
    if reason == HangupReason.ABANDONED:
        ABANDONED.inc()


def attempts_active(*, dialing: int, progressing: int) -> None:
    """Set the attempts in progress: dialing (unanswered) and progressing (answered)."""
    ATTEMPTS_ACTIVE.labels(status="dialing").set(dialing)
    ATTEMPTS_ACTIVE.labels(status="progressing").set(progressing)


def queues_in_use(queue_ids: Collection[str]) -> None:
    """Drop the available-agents series of queues no running campaign reads any more."""
    samples = [sample for metric in AVAILABLE_AGENTS.collect() for sample in metric.samples]
    for queue_id in {sample.labels["queue_id"] for sample in samples}.difference(queue_ids):
        AVAILABLE_AGENTS.remove(queue_id)


def pacing_decision(*, allowed: int, started: int) -> None:
    """Add one tick's pacing decision: attempts the rule allowed and attempts started."""
    PACING_ALLOWED.inc(allowed)
    PACING_STARTED.inc(started)


@contextmanager
def store_operation(operation: str, backend: str) -> Iterator[None]:
    """Time the enclosed store call (failed ones too) under ``operation`` and ``backend``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        STORE_OPERATION.labels(operation=operation, backend=backend).observe(
            time.perf_counter() - started
        )


def origination_error(backend: str) -> None:
    """Count one origination the telephony (or flow) backend refused or failed."""
    ORIGINATION_ERRORS.labels(backend=backend).inc()


def queue_read_error(adapter: str) -> None:
    """Count one failed read of available agents."""
    QUEUE_READ_ERRORS.labels(adapter=adapter).inc()


def config_reloaded(*, success: bool) -> None:
    """Count one configuration reload, accepted or rejected."""
    CONFIG_RELOADS.labels(result="success" if success else "failure").inc()


# -- real telephony (Asterisk: calls over ARI, queues over AMI) -------------------
# An origination is one HTTP round trip to the PBX: milliseconds, seconds when it struggles.
ORIGINATE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# The 2-second rule is the line that matters; AMD alone takes a few seconds.
AGENT_BUCKETS = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0)

TELEPHONY_CONNECTED = Gauge(
    "dialerd_telephony_connected",
    "1 while the telephony backend's connection (event stream) is up, else 0.",
    ["backend"],
    registry=REGISTRY,
)
QUEUE_ADAPTER_CONNECTED = Gauge(
    "dialerd_queue_adapter_connected",
    "1 while the queue adapter's connection is up, else 0.",
    ["adapter"],
    registry=REGISTRY,
)
ORIGINATE_LATENCY = Histogram(
    "dialerd_telephony_originate_seconds",
    "Time the telephony backend took to accept (or refuse) an origination.",
    ["backend"],
    buckets=ORIGINATE_BUCKETS,
    registry=REGISTRY,
)
ANSWER_TO_AGENT = Histogram(
    "dialerd_answer_to_agent_seconds",
    "Seconds from the callee's answer to an agent answering the call (AMD included).",
    buckets=AGENT_BUCKETS,
    registry=REGISTRY,
)
QUEUE_WAIT = Histogram(
    "dialerd_queue_wait_seconds",
    "Seconds dialerd's calls waited in a queue before an agent answered, as the queue says.",
    ["queue"],
    buckets=AGENT_BUCKETS,
    registry=REGISTRY,
)
QUEUE_CALLERS_ABANDONED = Counter(
    "dialerd_queue_callers_abandoned",
    "dialerd's calls that hung up while waiting in a queue, as the queue says.",
    ["queue"],
    registry=REGISTRY,
)


def telephony_connected(backend: str, *, up: bool) -> None:
    """Set whether the telephony backend's connection is up."""
    TELEPHONY_CONNECTED.labels(backend=backend).set(1 if up else 0)


def queue_adapter_connected(adapter: str, *, up: bool) -> None:
    """Set whether the queue adapter's connection is up."""
    QUEUE_ADAPTER_CONNECTED.labels(adapter=adapter).set(1 if up else 0)


def originate_latency(backend: str, seconds: float) -> None:
    """Observe how long one origination request took."""
    ORIGINATE_LATENCY.labels(backend=backend).observe(seconds)


def answer_to_agent(seconds: float) -> None:
    """Observe the time from a callee's answer to an agent answering."""
    ANSWER_TO_AGENT.observe(seconds)


def queue_wait(queue: str, seconds: float) -> None:
    """Observe how long one of dialerd's calls waited in ``queue`` for an agent."""
    QUEUE_WAIT.labels(queue=queue).observe(seconds)


def queue_caller_abandoned(queue: str) -> None:
    """Count one of dialerd's calls that hung up while waiting in ``queue``."""
    QUEUE_CALLERS_ABANDONED.labels(queue=queue).inc()


# -- per campaign: labelled by campaign id, only while the campaign's loop runs here ------
# Bounded by the running campaigns of this instance; ``forget_campaign`` drops them.
_DIALING_STATES = tuple(state.value for state in DialingState)
_TARGET_STATES = ("idle_due", "idle_waiting", "progressing", "done")
# Ringing lasts seconds to a minute or two; talk seconds to an hour.
RING_BUCKETS = (1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 120.0)
TALK_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)

CAMPAIGN_STATE = Gauge(
    "dialerd_campaign_state",
    "1 for what the campaign's latest tick found (dialing, or what held it back).",
    ["campaign_id", "state"],
    registry=REGISTRY,
)
CAMPAIGN_STARTED = Counter(
    "dialerd_campaign_attempts_started",
    "Attempts the campaign started (on this instance).",
    ["campaign_id"],
    registry=REGISTRY,
)
CAMPAIGN_ENDED = Counter(
    "dialerd_campaign_attempts_ended",
    "Attempts of the campaign that ended, by result and hangup reason.",
    ["campaign_id", "result", "reason"],
    registry=REGISTRY,
)
CAMPAIGN_ANSWERED = Counter(
    "dialerd_campaign_answered",
    "Attempts of the campaign answered live by the callee.",
    ["campaign_id"],
    registry=REGISTRY,
)
CAMPAIGN_DIALING = Gauge(
    "dialerd_campaign_dialing",
    "The campaign's attempts dialing (not answered yet).",
    ["campaign_id"],
    registry=REGISTRY,
)
CAMPAIGN_TALKING = Gauge(
    "dialerd_campaign_talking",
    "The campaign's answered attempts still up.",
    ["campaign_id"],
    registry=REGISTRY,
)
CAMPAIGN_SERVICE_LEVEL = Gauge(
    "dialerd_campaign_service_level",
    "The campaign's pacing level (service_level, percent of a line per free agent).",
    ["campaign_id"],
    registry=REGISTRY,
)
CAMPAIGN_AVAILABLE_AGENTS = Gauge(
    "dialerd_campaign_available_agents",
    "Available agents of the campaign's queue, as its latest tick read them.",
    ["campaign_id"],
    registry=REGISTRY,
)
CAMPAIGN_ABANDON_RATE = Gauge(
    "dialerd_campaign_abandon_rate",
    "Abandoned over live answers of the campaign, per window of days ending today "
    "(47 CFR 64.1200(a)(7): 30 days; Ofcom: 1 day).",
    ["campaign_id", "window_days"],
    registry=REGISTRY,
)
CAMPAIGN_LIVE_ANSWERS = Gauge(
    "dialerd_campaign_live_answers",
    "Live answers of the campaign (machines excluded), per window of days ending today.",
    ["campaign_id", "window_days"],
    registry=REGISTRY,
)
CAMPAIGN_GOVERNOR_PRESSURE = Gauge(
    "dialerd_campaign_governor_pressure",
    "The abandonment governor's pressure while it holds lines back: near 0 the pacing "
    "mode decides, 1 holds the campaign to one line per free agent; 0 while it holds "
    "nothing back, and without [abandonment].",
    ["campaign_id"],
    registry=REGISTRY,
)
LIVE_ANSWERS_MEASURED = Counter(
    "dialerd_live_answers_measured",
    "Live answers counted by the abandonment measurement (machines excluded).",
    ["abandoned"],
    registry=REGISTRY,
)
CAMPAIGN_TARGETS = Gauge(
    "dialerd_campaign_targets",
    "The campaign's list: targets due, waiting (retry, calling rules), being dialed, done.",
    ["campaign_id", "status"],
    registry=REGISTRY,
)
CAMPAIGN_TARGETS_HELD = Gauge(
    "dialerd_campaign_targets_held",
    "The campaign's targets the dialing rules hold back, by reason (retry_interval, "
    "calling_hours, unknown_zone, abandoned_lockout, daily_limit, dnc).",
    ["campaign_id", "reason"],
    registry=REGISTRY,
)
CAMPAIGNS_STORED = Gauge(
    "dialerd_campaigns_stored",
    "Campaigns in the store by status (the same on every instance sharing it).",
    ["status"],
    registry=REGISTRY,
)
RING_TIME = Histogram(
    "dialerd_ring_seconds",
    "Seconds from origination to answer, or to the end of a call never answered.",
    buckets=RING_BUCKETS,
    registry=REGISTRY,
)
TALK_TIME = Histogram(
    "dialerd_talk_seconds",
    "Seconds from answer to the end of the call.",
    buckets=TALK_BUCKETS,
    registry=REGISTRY,
)


CAMPAIGN_ACTIONS = Counter(
    "dialerd_campaign_actions",
    "Actions executed for the campaign's calls and flows, by type and outcome (done, "
    "failed, callee_hangup; amd: human, machine, notsure).",
    ["campaign_id", "type", "outcome"],
    registry=REGISTRY,
)
CAMPAIGN_DIGITS_CHOSEN = Counter(
    "dialerd_campaign_digits_chosen",
    "Values a branch action matched (a key of its target_ids, or other).",
    ["campaign_id", "digits"],
    registry=REGISTRY,
)
CAMPAIGN_OPT_OUTS = Counter(
    "dialerd_campaign_opt_outs",
    "Callees the campaign's dnc_add action put on the do-not-call list.",
    ["campaign_id"],
    registry=REGISTRY,
)
CAMPAIGN_PROMPT_FAILURES = Counter(
    "dialerd_campaign_prompt_failures",
    "Prompts (talk, play, beep) of the campaign that could not be played.",
    ["campaign_id"],
    registry=REGISTRY,
)
# espeak-ng renders a sentence in tens of milliseconds; a neural engine in seconds.
TTS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TTS_RENDER = Histogram(
    "dialerd_tts_render_seconds",
    "Seconds to render a talk prompt to audio (cache misses only).",
    buckets=TTS_BUCKETS,
    registry=REGISTRY,
)
TTS_CACHE_HITS = Counter(
    "dialerd_tts_cache_hits", "Talk prompts served from the audio cache.", registry=REGISTRY
)
_ACTION_OUTCOMES = frozenset({"done", "failed", "callee_hangup", "human", "machine", "notsure"})


def declare_campaign(campaign_id: str) -> None:
    """Create a campaign's counters at 0 for every known result and reason as its loop
    takes it up, so ratios and ``increase()`` read 0, not "no data", until the first
    event (``forget_campaign`` drops them when the loop ends)."""
    CAMPAIGN_STARTED.labels(campaign_id=campaign_id)
    CAMPAIGN_ANSWERED.labels(campaign_id=campaign_id)
    for reason in HangupReason:
        CAMPAIGN_ENDED.labels(
            campaign_id=campaign_id, result=_result_of(reason).value, reason=reason.value
        )


def campaign_state(campaign_id: str, state: DialingState) -> None:
    """Set the campaign's current state (1) and every other state (0)."""
    for name in _DIALING_STATES:
        CAMPAIGN_STATE.labels(campaign_id=campaign_id, state=name).set(
            1 if name == state.value else 0
        )


def campaign_attempt_started(campaign_id: str) -> None:
    CAMPAIGN_STARTED.labels(campaign_id=campaign_id).inc()


def campaign_attempt_ended(campaign_id: str, result: str, reason: str) -> None:
    if reason not in _REASONS:
        raise ValueError(f"unknown hangup reason {reason!r}")
    CAMPAIGN_ENDED.labels(campaign_id=campaign_id, result=result, reason=reason).inc()


def campaign_answered(campaign_id: str) -> None:
    CAMPAIGN_ANSWERED.labels(campaign_id=campaign_id).inc()


def campaign_activity(campaign_id: str, *, dialing: int, talking: int) -> None:
    CAMPAIGN_DIALING.labels(campaign_id=campaign_id).set(dialing)
    CAMPAIGN_TALKING.labels(campaign_id=campaign_id).set(talking)


def campaign_pacing(campaign_id: str, *, service_level: int, available_agents: int | None) -> None:
    CAMPAIGN_SERVICE_LEVEL.labels(campaign_id=campaign_id).set(service_level)
    if available_agents is not None:
        CAMPAIGN_AVAILABLE_AGENTS.labels(campaign_id=campaign_id).set(available_agents)


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


def action_ran(campaign_id: str, action_type: str, outcome: str) -> None:
    """Count one executed action; ``outcome`` as ``dialerd.core.flow.outcome_label``."""
    if action_type not in OPTION_TYPES:
        raise ValueError(f"unknown action type {action_type!r}")
    if outcome not in _ACTION_OUTCOMES:
        raise ValueError(f"unknown action outcome {outcome!r}")
    CAMPAIGN_ACTIONS.labels(campaign_id=campaign_id, type=action_type, outcome=outcome).inc()


def digits_chosen(campaign_id: str, branch: str) -> None:
    """Count a branch taken (``Execute.chosen`` / ``Finish.chosen`` values)."""
    CAMPAIGN_DIGITS_CHOSEN.labels(campaign_id=campaign_id, digits=branch).inc()


def opt_out(campaign_id: str) -> None:
    CAMPAIGN_OPT_OUTS.labels(campaign_id=campaign_id).inc()


def prompt_failed(campaign_id: str) -> None:
    CAMPAIGN_PROMPT_FAILURES.labels(campaign_id=campaign_id).inc()


def tts_rendered(seconds: float, cached: bool) -> None:
    """A talk prompt's audio: rendered in ``seconds``, or taken from the cache."""
    if cached:
        TTS_CACHE_HITS.inc()
    else:
        TTS_RENDER.observe(seconds)


def campaigns_stored(counts: Mapping[str, int]) -> None:
    """Set the store-wide number of campaigns per status."""
    for status, count in counts.items():
        CAMPAIGNS_STORED.labels(status=CampaignStatus(status).value).set(count)


def forget_campaign(campaign_id: str) -> None:
    """Drop every series of a campaign whose loop ended on this instance."""
    for metric, names in (
        (CAMPAIGN_STATE, ("campaign_id", "state")),
        (CAMPAIGN_STARTED, ("campaign_id",)),
        (CAMPAIGN_ENDED, ("campaign_id", "result", "reason")),
        (CAMPAIGN_ANSWERED, ("campaign_id",)),
        (CAMPAIGN_DIALING, ("campaign_id",)),
        (CAMPAIGN_TALKING, ("campaign_id",)),
        (CAMPAIGN_SERVICE_LEVEL, ("campaign_id",)),
        (CAMPAIGN_AVAILABLE_AGENTS, ("campaign_id",)),
        (CAMPAIGN_TARGETS, ("campaign_id", "status")),
        (CAMPAIGN_TARGETS_HELD, ("campaign_id", "reason")),
        (CAMPAIGN_ABANDON_RATE, ("campaign_id", "window_days")),
        (CAMPAIGN_LIVE_ANSWERS, ("campaign_id", "window_days")),
        (CAMPAIGN_GOVERNOR_PRESSURE, ("campaign_id",)),
        (CAMPAIGN_ACTIONS, ("campaign_id", "type", "outcome")),
        (CAMPAIGN_DIGITS_CHOSEN, ("campaign_id", "digits")),
        (CAMPAIGN_OPT_OUTS, ("campaign_id",)),
        (CAMPAIGN_PROMPT_FAILURES, ("campaign_id",)),
    ):
        series = {
            tuple(sample.labels[name] for name in names)
            for family in metric.collect()
            for sample in family.samples
            if sample.labels.get("campaign_id") == campaign_id
        }
        for labels in series:
            metric.remove(*labels)


# -- agents per queue, by state (the queue adapters) --------------------------------
# Each adapter maps its own statuses onto these (docs/operations.md, "Agents per queue").
AGENT_STATES = ("available", "busy", "wrap_up", "paused", "offline")
QUEUE_AGENTS = Gauge(
    "dialerd_queue_agents",
    "Agents of a queue by state (available, busy, wrap_up, paused, offline), as the queue "
    "adapter last read them; queue is the backend's queue name.",
    ["queue", "state"],
    registry=REGISTRY,
)


def queue_agents(queue: str, states: Iterable[str]) -> None:
    """Set the agents of ``queue`` per state from one read (one state per agent); every
    state is set, to 0 when no agent is in it."""
    counts = dict.fromkeys(AGENT_STATES, 0)
    for state in states:
        if state not in counts:
            raise ValueError(f"unknown agent state {state!r}")
        counts[state] += 1
    for state, count in counts.items():
        QUEUE_AGENTS.labels(queue=queue, state=state).set(count)


# -- per customer: quotas (behaviour.md §10, Quotas) -----------------------------------
# Labelled by customer id: customers are configuration (API tokens), a bounded set.
QUOTA_USED = Gauge(
    "dialerd_quota_used",
    "A customer's use of a quota with a limit: stored resources as last counted by the "
    "API, running campaigns, and this instance's active calls and calls per second.",
    ["customer_id", "quota"],
    registry=REGISTRY,
)
QUOTA_LIMIT = Gauge(
    "dialerd_quota_limit",
    "The limit of a customer's quota (or the customer's share of the call ceiling, "
    "whichever is lower for calls), beside dialerd_quota_used.",
    ["customer_id", "quota"],
    registry=REGISTRY,
)
QUOTA_REFUSALS = Counter(
    "dialerd_quota_refusals",
    "API requests refused because they would take the customer over a quota.",
    ["customer_id", "quota"],
    registry=REGISTRY,
)


def quota_use(customer_id: str, quota: str, used: float, limit: float) -> None:
    """A customer's use of ``quota`` against its limit."""
    QUOTA_USED.labels(customer_id=customer_id, quota=quota).set(used)
    QUOTA_LIMIT.labels(customer_id=customer_id, quota=quota).set(limit)


def quota_refused(customer_id: str, quota: str) -> None:
    """Count one request refused by ``quota``."""
    QUOTA_REFUSALS.labels(customer_id=customer_id, quota=quota).inc()
