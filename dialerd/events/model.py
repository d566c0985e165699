"""The events: their types, the outbox entry the stores keep, and the JSON sent out.

The stores keep the changed resource's stored body beside the event type (they build no
JSON of their own); ``event_json`` decodes it as the API would and encodes the event:
``{"type": ..., "data": <the resource as the API returns it>, "id": ..., "time": ...}``,
VoIPbin's webhook shape (``type`` and ``data``) with the outbox position as ``id``.
"""

from __future__ import annotations

import enum
from typing import Any, Final

import msgspec

from dialerd.model import Campaign, Campaigncall, OutdialTarget


class EventType(enum.StrEnum):
    CAMPAIGN_CREATED = "campaign_created"
    CAMPAIGN_UPDATED = "campaign_updated"
    CAMPAIGN_DELETED = "campaign_deleted"
    CAMPAIGNCALL_CREATED = "campaigncall_created"
    CAMPAIGNCALL_UPDATED = "campaigncall_updated"
    OUTDIALTARGET_UPDATED = "outdialtarget_updated"
    CAMPAIGN_STATE = "campaign_state"


class OutboxEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One event as a store keeps it, in the order it was written.

    ``position`` orders the customer's entries (an integer as text on SQLite, the
    stream entry id on Redis) and is the event's id; ``campaign_id`` is the key events
    are kept in order by; ``body`` is the resource's stored JSON (for
    ``campaign_state``: the state answer's JSON, ``GET /campaigns/{id}/state``)."""

    position: str
    customer_id: str
    campaign_id: str
    type: str
    body: bytes
    # Why a campaign changed ("request", "outdial exhausted", "chained"...); "" if not said.
    cause: str = ""


class Event(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a receiver gets (field order as sent); ``cause`` only when there is one."""

    type: str
    data: msgspec.Raw
    id: str
    time: str
    cause: str = ""


_KINDS: Final[dict[str, type[msgspec.Struct]]] = {
    EventType.CAMPAIGN_CREATED: Campaign,
    EventType.CAMPAIGN_UPDATED: Campaign,
    EventType.CAMPAIGN_DELETED: Campaign,
    EventType.CAMPAIGNCALL_CREATED: Campaigncall,
    EventType.CAMPAIGNCALL_UPDATED: Campaigncall,
    EventType.OUTDIALTARGET_UPDATED: OutdialTarget,
}
_ENCODER: Final = msgspec.json.Encoder()


def _time_of(resource: Any) -> str:
    changed = getattr(resource, "tm_update", None) or getattr(resource, "tm_create", None)
    return changed if isinstance(changed, str) else ""


def event_of(entry: OutboxEntry) -> Event:
    """The event an outbox entry describes: its resource decoded and encoded as the API
    shows it (a field a newer version added gets its default, as the API does)."""
    kind = _KINDS.get(entry.type)
    if kind is None:
        # campaign_state: the state answer, since when the campaign is in that state.
        state = msgspec.json.decode(entry.body)
        stamp = state.get("since", "") if isinstance(state, dict) else ""
        return Event(entry.type, msgspec.Raw(entry.body), entry.position, str(stamp))
    resource = msgspec.json.decode(entry.body, type=kind)
    return Event(
        entry.type,
        msgspec.Raw(_ENCODER.encode(resource)),
        entry.position,
        _time_of(resource),
        entry.cause,
    )


def encode_event(event: Event) -> bytes:
    """The event's JSON, as a webhook receiver and a stream client get it."""
    return _ENCODER.encode(event)


def event_json(entry: OutboxEntry) -> bytes:
    """The JSON of the event an outbox entry describes."""
    return encode_event(event_of(entry))


class FailedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event the sender set aside: its receiver did not take it within the retry
    window. ``redeliver``: a client asked for it to be sent again."""

    entry: OutboxEntry
    error: str
    tm_failed: str
    redeliver: bool = False


class WebhookMethod(enum.StrEnum):
    NONE = ""
    POST = "POST"
    GET = "GET"
    PUT = "PUT"
    DELETE = "DELETE"


class CustomerWebhook(msgspec.Struct, frozen=True, kw_only=True):
    """A customer's webhook settings as the store keeps them (VoIPbin keeps
    ``webhook_method`` and ``webhook_uri`` on the customer). ``webhook_secret`` signs
    each delivery; the API never shows it again after it was set."""

    customer_id: str
    webhook_method: WebhookMethod = WebhookMethod.NONE
    webhook_uri: str = ""
    webhook_secret: str = ""
    tm_update: str = ""
