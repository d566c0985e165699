"""``GET /v1.0/events``: the caller's events as a live stream (Server-Sent Events).

Each event is one SSE message: ``id`` its outbox position, ``event`` its type, ``data``
its JSON (the webhook's body). A client that reconnects sends the last id it got in
``Last-Event-ID`` (or ``?after=``) and gets every event after it that the outbox still
holds (delivered events are kept ``[events] keep_delivered`` seconds); without one it
gets every event the outbox holds, oldest first. ``?campaign_id=`` keeps one campaign's.
The comment ``: caught up`` follows the first time nothing more is held.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Final

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from dialerd.api.context import ApiContext
from dialerd.api.errors import invalid
from dialerd.api.parsing import uuid_query
from dialerd.events.model import OutboxEntry, event_json
from dialerd.store import StoreError

# A position as either store writes it: an integer (SQLite) or a stream id (Redis).
POSITION: Final = re.compile(r"\d{1,20}(-\d{1,20})?")
# How often an idle stream looks for new events, and sends a comment to keep it open.
POLL_SECONDS: Final = 0.2
HEARTBEAT_SECONDS: Final = 15.0
BATCH: Final = 200
CAUGHT_UP: Final = b": caught up\n\n"


def sse_message(entry: OutboxEntry) -> bytes:
    """One event as an SSE message."""
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (
        entry.position.encode(),
        entry.type.encode(),
        event_json(entry),
    )


def _resume_point(request: Request) -> str:
    header = request.headers.get("last-event-id")
    given = header if header is not None else request.query_params.get("after", "")
    name = "Last-Event-ID" if header is not None else "after"
    if given and not POSITION.fullmatch(given):
        raise invalid(f"{name}: expected an event id, got {given[:64]!r}")
    return given


async def stream_events(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``GET /events``: Server-Sent Events until the client goes or the daemon stops."""
    campaign_id = uuid_query(request, "campaign_id")
    after = _resume_point(request)
    clock = ctx.clock

    async def messages() -> AsyncIterator[bytes]:
        cursor = after
        quiet_since = clock.monotonic()
        caught_up = False
        yield b"retry: 1000\n\n"
        while not ctx.closing():
            try:
                entries = await ctx.store.read_events(customer_id, cursor, BATCH, campaign_id)
            except StoreError:
                entries = []
            for entry in entries:
                yield sse_message(entry)
                cursor = entry.position
            if entries:
                quiet_since = clock.monotonic()
                continue
            if not caught_up:
                # Everything the outbox held is sent: a client that does not follow stops.
                yield CAUGHT_UP
                caught_up = True
            if clock.monotonic() - quiet_since >= HEARTBEAT_SECONDS:
                yield b": still here\n\n"
                quiet_since = clock.monotonic()
            await clock.sleep_until(clock.monotonic() + POLL_SECONDS)

    return StreamingResponse(
        messages(),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )
