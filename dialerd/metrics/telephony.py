"""Telephony backends and queue adapters: errors, connections, origination latency, time
to an agent, queue waits, agents per queue by state."""

from __future__ import annotations

from collections.abc import Iterable

from dialerd.metrics.unregistered import counter, gauge, histogram

# An origination is one HTTP round trip to the PBX: milliseconds, seconds when it struggles.
ORIGINATE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# The 2-second rule is the line that matters; AMD alone takes a few seconds.
AGENT_BUCKETS = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0)
# Each adapter maps its own statuses onto these (docs/operations.md, "Agents per queue").
AGENT_STATES = ("available", "busy", "wrap_up", "paused", "offline")

ORIGINATION_ERRORS = counter(
    "dialerd_telephony_origination_errors",
    "Originations the telephony backend refused or failed.",
    ["backend"],
)
QUEUE_READ_ERRORS = counter(
    "dialerd_queue_read_errors",
    "Failed reads of available agents from the queue adapter.",
    ["adapter"],
)
TELEPHONY_CONNECTED = gauge(
    "dialerd_telephony_connected",
    "1 while the telephony backend's connection (event stream) is up, else 0.",
    ["backend"],
)
TELEPHONY_REGISTRATION_LOST = counter(
    "dialerd_telephony_registration_lost",
    "Times the telephony backend found its application no longer registered while "
    "connected (ARI: events no longer reached its websocket), and reconnected.",
    ["backend"],
)
QUEUE_ADAPTER_CONNECTED = gauge(
    "dialerd_queue_adapter_connected",
    "1 while the queue adapter's connection is up, else 0.",
    ["adapter"],
)
ORIGINATE_LATENCY = histogram(
    "dialerd_telephony_originate_seconds",
    "Time the telephony backend took to accept (or refuse) an origination.",
    ["backend"],
    buckets=ORIGINATE_BUCKETS,
)
ANSWER_TO_AGENT = histogram(
    "dialerd_answer_to_agent_seconds",
    "Seconds from the callee's answer to an agent answering the call (AMD included).",
    buckets=AGENT_BUCKETS,
)
QUEUE_WAIT = histogram(
    "dialerd_queue_wait_seconds",
    "Seconds dialerd's calls waited in a queue before an agent answered, as the queue says.",
    ["queue"],
    buckets=AGENT_BUCKETS,
)
QUEUE_CALLERS_ABANDONED = counter(
    "dialerd_queue_callers_abandoned",
    "dialerd's calls that hung up while waiting in a queue, as the queue says.",
    ["queue"],
)
QUEUE_AGENTS = gauge(
    "dialerd_queue_agents",
    "Agents of a queue by state (available, busy, wrap_up, paused, offline), as the queue "
    "adapter last read them; queue is the backend's queue name.",
    ["queue", "state"],
)
FAMILIES = (
    ORIGINATION_ERRORS,
    QUEUE_READ_ERRORS,
    TELEPHONY_CONNECTED,
    TELEPHONY_REGISTRATION_LOST,
    QUEUE_ADAPTER_CONNECTED,
    ORIGINATE_LATENCY,
    ANSWER_TO_AGENT,
    QUEUE_WAIT,
    QUEUE_CALLERS_ABANDONED,
    QUEUE_AGENTS,
)


def declare_backends(*, telephony: Iterable[str], queue_adapter: str) -> None:
    """Create the error counters of the configured backends at 0."""
    for backend in telephony:
        ORIGINATION_ERRORS.labels(backend=backend)
    QUEUE_READ_ERRORS.labels(adapter=queue_adapter)


def origination_error(backend: str) -> None:
    """Count one origination the telephony (or flow) backend refused or failed."""
    ORIGINATION_ERRORS.labels(backend=backend).inc()


def queue_read_error(adapter: str) -> None:
    """Count one failed read of available agents."""
    QUEUE_READ_ERRORS.labels(adapter=adapter).inc()


def telephony_connected(backend: str, *, up: bool) -> None:
    """Set whether the telephony backend's connection is up."""
    TELEPHONY_CONNECTED.labels(backend=backend).set(1 if up else 0)


def telephony_registration_lost(backend: str, times: int = 1) -> None:
    """Count a registration of the backend's application found lost (``times=0``: make
    the series, at 0, for a backend that checks its registration)."""
    TELEPHONY_REGISTRATION_LOST.labels(backend=backend).inc(times)


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


def queue_agents_read(queue: str) -> dict[str, int | None]:
    """The agents of ``queue`` per state as ``queue_agents`` last set them; None for every
    state when the adapter never recorded this queue (the API shows them)."""
    counts: dict[str, int | None] = dict.fromkeys(AGENT_STATES)
    for family in QUEUE_AGENTS.collect():
        for sample in family.samples:
            if sample.labels["queue"] == queue:
                counts[sample.labels["state"]] = int(sample.value)
    return counts
