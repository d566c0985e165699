"""The Redis backend's outbox of events (``dialerd.events``): one stream per customer,
``P:events:<customer>`` (the scripts append to it, see ``scripts/outbox.lua``; the
stream entry id is the event's position), ``P:event_customers``, the delivered position
and how many events it passed (hashes ``P:events_delivered``,
``P:events_delivered_count``), the events set aside (``P:events_failed:<customer>``,
position -> record) and the webhook settings (hash ``P:webhooks``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from dialerd.events.model import CustomerWebhook, EventType, FailedEvent, OutboxEntry
from dialerd.model import format_time
from dialerd.store.base import Fence
from dialerd.store.documents import encode
from dialerd.store.redis.connection import RedisConnection
from dialerd.store.redis.fields import fence_args, held_target

_WEBHOOK = msgspec.json.Decoder(CustomerWebhook)
_FAILED = msgspec.json.Decoder(FailedEvent)


def _order(position: str | bytes) -> tuple[int, int]:
    text = position.decode() if isinstance(position, bytes) else position
    ms, _, seq = text.partition("-")
    return (int(ms or 0), int(seq or 0))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entry(customer_id: str, position: bytes | str, fields: dict[Any, Any]) -> OutboxEntry:
    values = {_text(name): value for name, value in fields.items()}
    stored = values["b"]
    body = stored if isinstance(stored, bytes) else str(stored).encode()
    event_type = _text(values["t"])
    if event_type == EventType.OUTDIALTARGET_UPDATED:
        # The API shows why the rules hold a target from its placement fields.
        body = encode(
            held_target(
                body,
                _bytes(values.get("q")),
                _bytes(values.get("d")),
                _bytes(values.get("h")),
            )
        )
    return OutboxEntry(
        position=_text(position),
        customer_id=customer_id,
        campaign_id=_text(values["c"]),
        type=event_type,
        body=body,
        cause=_text(values.get("x", b"")),
    )


def _bytes(value: Any) -> bytes | None:
    if value is None or value == b"" or value == "":
        return None
    return value if isinstance(value, bytes) else str(value).encode()


class RedisOutbox(RedisConnection):
    """The ``Outbox`` and ``WebhookSettings`` ports on the Redis server."""

    async def append_event(
        self, event_type: str, customer_id: str, campaign_id: str, body: bytes
    ) -> str:
        """Append one event; its position (the stream entry id)."""
        await self._register(customer_id)
        position = await self._guard(
            self._connected().xadd(
                self._ckey(customer_id, "events", customer_id),
                {"t": event_type, "c": campaign_id, "b": body},
            )
        )
        return _text(position)

    async def read_events(
        self, customer_id: str, after: str, limit: int, campaign_id: str | None = None
    ) -> list[OutboxEntry]:
        """The customer's events after ``after``, oldest first."""
        found: list[OutboxEntry] = []
        start = f"({after}" if after else "-"
        stream = self._ckey(customer_id, "events", customer_id)
        while len(found) < limit:
            found_rows = await self._guard(
                self._connected().xrange(stream, start, "+", count=limit)
            )
            rows: list[Any] = list(found_rows or [])
            for position, fields in rows:
                entry = _entry(customer_id, position, fields)
                if campaign_id is None or entry.campaign_id == campaign_id:
                    found.append(entry)
            if len(rows) < limit or campaign_id is None:
                break
            start = f"({_text(rows[-1][0])}"
        return found[:limit]

    async def event_customers(self) -> list[str]:
        """Every customer that may have had an event: the registry (a customer is in it
        before any of its data, events included, is written)."""
        return await self.customers()

    async def delivered_position(self, customer_id: str) -> str:
        """The customer's delivered position ("" before any)."""
        (value,) = await self._fields(self._ckey(customer_id, "events_delivered"), customer_id)
        return "" if value is None else value.decode()

    async def mark_delivered(
        self, customer_id: str, position: str, passed: int, fence: Fence, now: datetime
    ) -> None:
        """Move the delivered position forward, under the customer's delivery lease."""
        await self._run(
            "delivered",
            customer_id,
            *fence_args(fence),
            position,
            passed,
            "",
            "",
            customer=customer_id,
        )

    async def set_aside(self, entry: OutboxEntry, error: str, now: datetime, fence: Fence) -> None:
        """Keep the entry as failed (the caller moves the delivered position past it)."""
        failed = FailedEvent(entry=entry, error=error, tm_failed=format_time(now))
        await self._run(
            "delivered",
            entry.customer_id,
            *fence_args(fence),
            "",
            0,
            encode(failed),
            entry.position,
            customer=entry.customer_id,
        )

    async def failed_events(self, customer_id: str) -> list[FailedEvent]:
        """The customer's events set aside, oldest first."""
        stored = await self._guard(
            self._connected().hgetall(self._ckey(customer_id, "events_failed", customer_id))
        )
        ordered = sorted(stored.items(), key=lambda item: _order(item[0]))
        return [_FAILED.decode(body) for _, body in ordered]

    async def redeliver_event(self, customer_id: str, position: str) -> FailedEvent | None:
        """Mark a failed event to be sent again."""
        key = self._ckey(customer_id, "events_failed", customer_id)
        (body,) = await self._fields(key, position)
        if body is None:
            return None
        failed = msgspec.structs.replace(_FAILED.decode(body), redeliver=True)
        await self._guard(self._connected().hset(key, position, encode(failed)))
        return failed

    async def forget_failed(self, customer_id: str, position: str, error: str | None) -> None:
        """Drop a redelivered event, or keep it failed with the new error."""
        key = self._ckey(customer_id, "events_failed", customer_id)
        if error is None:
            await self._guard(self._connected().hdel(key, position))
            return
        (body,) = await self._fields(key, position)
        if body is not None:
            failed = msgspec.structs.replace(_FAILED.decode(body), redeliver=False, error=error)
            await self._guard(self._connected().hset(key, position, encode(failed)))

    async def outbox_backlog(self, customer_id: str) -> int:
        """Events ever appended to the customer's stream less those delivered or set aside."""
        client = self._connected()
        stream = self._ckey(customer_id, "events", customer_id)
        if not await self._guard(client.exists(stream)):
            return 0
        info: dict[Any, Any] = await self._guard(client.xinfo_stream(stream))
        added = int(info.get("entries-added") or info.get(b"entries-added") or 0)
        (passed,) = await self._fields(
            self._ckey(customer_id, "events_delivered_count"), customer_id
        )
        return max(0, added - int(passed or 0))

    async def prune_events(self, customer_id: str, before: str) -> int:
        """Delete the customer's delivered events before ``before``."""
        delivered = await self.delivered_position(customer_id)
        if not delivered:
            return 0
        bound = min(before, delivered, key=_order) if before else delivered
        return int(
            await self._guard(
                self._connected().xtrim(
                    self._ckey(customer_id, "events", customer_id), minid=bound, approximate=False
                )
            )
        )

    # -- webhook settings ------------------------------------------------------------------
    async def get_webhook(self, customer_id: str) -> CustomerWebhook | None:
        """The customer's webhook settings, if set."""
        (body,) = await self._fields(self._key("webhooks"), customer_id)
        return None if body is None else _WEBHOOK.decode(body)

    async def put_webhook(self, webhook: CustomerWebhook) -> CustomerWebhook:
        """Replace the customer's webhook settings."""
        await self._guard(
            self._connected().hset(self._key("webhooks"), webhook.customer_id, encode(webhook))
        )
        return webhook
