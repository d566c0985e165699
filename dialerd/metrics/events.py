"""Events out (dialerd.events), per customer: labelled by customer id (customers are
configuration, API tokens: a bounded set)."""

from __future__ import annotations

import contextlib

from dialerd.metrics.unregistered import counter, gauge, histogram

# From a change in the store to its receiver's 2xx: milliseconds on a quiet receiver,
# up to the retry window (a day by default) when it is down.
DELAY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 600.0, 3600.0, 86400.0)

EVENTS_WRITTEN = counter(
    "dialerd_events_written",
    "Events of the customer's resources the sender found in the outbox (each once per "
    "sender instance: a change written to the store in the same step as its event).",
    ["customer_id"],
)
EVENTS_DELIVERED = counter(
    "dialerd_events_delivered",
    "Events the customer's webhook receiver took (a 2xx answer).",
    ["customer_id"],
)
EVENTS_RETRIED = counter(
    "dialerd_events_retried",
    "Deliveries to the customer's receiver that failed and will be tried again.",
    ["customer_id"],
)
EVENTS_FAILED = counter(
    "dialerd_events_failed",
    "Events set aside as failed after the retry window ([events] retry_for).",
    ["customer_id"],
)
EVENT_DELIVERY_DELAY = histogram(
    "dialerd_event_delivery_delay_seconds",
    "Seconds from an event's change to its receiver's 2xx answer.",
    buckets=DELAY_BUCKETS,
)
OUTBOX_EVENTS = gauge(
    "dialerd_outbox_events",
    "The customer's events waiting for delivery, as the sender holding its lease last "
    "counted them.",
    ["customer_id"],
)
FAMILIES = (
    EVENTS_WRITTEN,
    EVENTS_DELIVERED,
    EVENTS_RETRIED,
    EVENTS_FAILED,
    EVENT_DELIVERY_DELAY,
    OUTBOX_EVENTS,
)


def events_written(customer_id: str, count: int) -> None:
    """Count events first seen in the customer's outbox."""
    EVENTS_WRITTEN.labels(customer_id=customer_id).inc(count)


def event_delivered(customer_id: str, delay: float | None) -> None:
    """Count one event delivered, ``delay`` seconds after its change (None: unknown)."""
    EVENTS_DELIVERED.labels(customer_id=customer_id).inc()
    if delay is not None:
        EVENT_DELIVERY_DELAY.observe(max(0.0, delay))


def event_retried(customer_id: str) -> None:
    """Count one failed delivery that will be tried again."""
    EVENTS_RETRIED.labels(customer_id=customer_id).inc()


def event_failed(customer_id: str) -> None:
    """Count one event set aside."""
    EVENTS_FAILED.labels(customer_id=customer_id).inc()


def outbox_events(customer_id: str, count: int) -> None:
    """The customer's events waiting for delivery."""
    OUTBOX_EVENTS.labels(customer_id=customer_id).set(count)


def forget_outbox(customer_id: str) -> None:
    """This instance no longer delivers the customer's events: drop its count (the
    instance that does reports it)."""
    with contextlib.suppress(KeyError):
        OUTBOX_EVENTS.remove(customer_id)
