"""Prometheus metrics of dialerd: families grouped by who records them, exposed on a
registry that ``create_registry()`` makes.

Importing this package registers nothing: every family is made unregistered
(``unregistered.py``); no collector, no process metrics, prometheus_client's settings
untouched.
``create_registry()`` makes a ``CollectorRegistry`` with the process, platform and GC
collectors and every family below, sets ``dialerd_build_info`` and creates the fixed
series at 0. ``service.daemon.Daemon`` calls it once and serves that registry on
``/metrics`` (the demos run that daemon); tests that read metrics call it themselves;
the benchmarks read none and make none.

Recording before ``create_registry()`` is not lost and not an error: the functions and
families record into the families themselves, the one default of the process, and any
registry made later exposes what was recorded (a benchmark or test that never makes one
just records into nothing anyone reads). Two registries show the same values.

Names are in base units, counters end in ``_total``, latencies are histograms. No label
ever holds a campaigncall id, a target id or a phone number; queue ids are configuration
and allowed. Callers record through the functions, which check label values against the
known sets (an unknown hangup reason is a ``ValueError``, not a new series):

- ``engine``: ``campaigns_by_status({"run": 2, "stopping": 0, "stop": 5})`` after each
  scan; ``attempt_started("call")``; ``attempt_finished("fail", "busy")`` (an
  ``abandoned`` reason also counts in ``dialerd_abandoned_total``);
  ``attempts_active(dialing=..., progressing=...)``; ``queues_in_use(ids)``;
  ``pacing_decision(allowed=3, started=2)`` once per tick; ``config_reloaded(success=...)``.
  Unlabelled or engine-labelled families the scheduler sets itself: ``ANSWERED.inc()``,
  ``TICK_DURATION`` / ``TICK_LAG`` / ``RING_TIME`` / ``TALK_TIME.observe(s)``,
  ``AVAILABLE_AGENTS.labels(queue_id=...).set(n)``,
  ``LIVE_ANSWERS_MEASURED.labels(abandoned="true").inc()``.
- ``store``: ``with store_operation("finish_attempt", store.backend): ...``;
  ``STORE_UP.set(0 or 1)`` (the daemon's health check); ``campaigns_stored(counts)``.
- ``telephony``: ``declare_backends(telephony=[...], queue_adapter=...)`` once at start,
  so error counters exist at 0 and ``increase()`` sees their first error;
  ``origination_error``, ``queue_read_error``, ``telephony_connected``,
  ``queue_adapter_connected``, ``originate_latency``, ``answer_to_agent``, ``queue_wait``,
  ``queue_caller_abandoned``, ``queue_agents(queue, states)`` and ``queue_agents_read``.
- ``campaign`` (labelled by campaign id while its loop runs here): ``declare_campaign``,
  ``campaign_state``, ``campaign_attempt_started`` / ``_ended``, ``campaign_answered``,
  ``campaign_activity``, ``campaign_pacing``, ``campaign_abandonment``,
  ``campaign_targets``; ``forget_campaign`` drops them all.
- ``actions``: ``action_ran(campaign_id, "talk", "done")``, ``digits_chosen(campaign_id,
  "1")``, ``opt_out(campaign_id)``, ``prompt_failed(campaign_id)``,
  ``tts_rendered(s, cached)``.
- ``quotas``: ``quota_use(customer_id, quota, used, limit)``, ``quota_refused``.
- ``events`` (events out, per customer): ``events.event_delivered(customer_id, delay)``,
  ``event_retried``, ``event_failed``, ``events_written``, ``outbox_events``.
- ``process``: ``dialerd_build_info`` and ``PidOnlyProcessCollector`` (``process_*``
  under systemd's ``ProcSubset=pid``).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, disable_created_metrics

from dialerd.metrics import (
    actions,
    campaign,
    engine,
    events,
    process,
    quotas,
    store,
    telephony,
)
from dialerd.metrics.actions import (
    CAMPAIGN_ACTIONS,
    CAMPAIGN_DIGITS_CHOSEN,
    action_ran,
    digits_chosen,
    opt_out,
    prompt_failed,
    tts_rendered,
)
from dialerd.metrics.campaign import (
    campaign_abandonment,
    campaign_activity,
    campaign_answered,
    campaign_attempt_ended,
    campaign_attempt_started,
    campaign_pacing,
    campaign_state,
    campaign_targets,
    declare_campaign,
    forget_campaign,
)
from dialerd.metrics.engine import (
    ANSWERED,
    AVAILABLE_AGENTS,
    LIVE_ANSWERS_MEASURED,
    RING_TIME,
    TALK_TIME,
    TICK_DURATION,
    TICK_LAG,
    attempt_finished,
    attempt_started,
    attempts_active,
    campaigns_by_status,
    config_reloaded,
    pacing_decision,
    queues_in_use,
)
from dialerd.metrics.process import BUILD_INFO, PidOnlyProcessCollector
from dialerd.metrics.quotas import quota_refused, quota_use
from dialerd.metrics.store import STORE_UP, campaigns_stored, store_operation
from dialerd.metrics.telephony import (
    AGENT_STATES,
    ANSWER_TO_AGENT,
    answer_to_agent,
    declare_backends,
    originate_latency,
    origination_error,
    queue_adapter_connected,
    queue_agents,
    queue_agents_read,
    queue_caller_abandoned,
    queue_read_error,
    queue_wait,
    telephony_connected,
    telephony_registration_lost,
)

__all__ = [
    "AGENT_STATES",
    "ANSWERED",
    "ANSWER_TO_AGENT",
    "AVAILABLE_AGENTS",
    "BUILD_INFO",
    "CAMPAIGN_ACTIONS",
    "CAMPAIGN_DIGITS_CHOSEN",
    "LIVE_ANSWERS_MEASURED",
    "RING_TIME",
    "STORE_UP",
    "TALK_TIME",
    "TICK_DURATION",
    "TICK_LAG",
    "PidOnlyProcessCollector",
    "action_ran",
    "answer_to_agent",
    "attempt_finished",
    "attempt_started",
    "attempts_active",
    "campaign_abandonment",
    "campaign_activity",
    "campaign_answered",
    "campaign_attempt_ended",
    "campaign_attempt_started",
    "campaign_pacing",
    "campaign_state",
    "campaign_targets",
    "campaigns_by_status",
    "campaigns_stored",
    "config_reloaded",
    "create_registry",
    "declare_backends",
    "declare_campaign",
    "digits_chosen",
    "forget_campaign",
    "opt_out",
    "originate_latency",
    "origination_error",
    "pacing_decision",
    "prompt_failed",
    "queue_adapter_connected",
    "queue_agents",
    "queue_agents_read",
    "queue_caller_abandoned",
    "queue_read_error",
    "queue_wait",
    "queues_in_use",
    "quota_refused",
    "quota_use",
    "store_operation",
    "telephony_connected",
    "telephony_registration_lost",
    "tts_rendered",
]

# Every dialerd family, in the order of an exposition.
FAMILIES = (
    *process.FAMILIES,
    *engine.FAMILIES,
    *store.FAMILIES,
    *telephony.FAMILIES,
    *campaign.FAMILIES,
    *actions.FAMILIES,
    *quotas.FAMILIES,
    *events.FAMILIES,
)


def create_registry() -> CollectorRegistry:
    """A new registry exposing the process collectors and every dialerd family, with the
    build info set and the fixed series at 0. Each call makes another registry over the
    same families (the daemon makes one; a test may make its own)."""
    # A ``_created`` series per counter and histogram doubles the series count for a
    # value Prometheus does not use; a process that exposes dialerd's metrics serves
    # only those.
    disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream
    registry = CollectorRegistry(auto_describe=True)
    process.register_collectors(registry)
    process.declare()
    engine.declare()
    store.declare()
    for family in FAMILIES:
        registry.register(family)
    return registry
