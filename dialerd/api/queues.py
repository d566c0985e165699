"""Handlers of ``/v1.0/queues``: the token's customer's registered queues, read only.

Queues are registered in the configuration (``[[queues]]``), not through the API. Each is
answered in VoIPbin's queue shape where it applies (``id``, ``customer_id``, ``name``,
``detail``, ``tm_*``), with dialerd's extensions: the agents by state as the queue
adapter reads them now (``null`` where it cannot tell) and the campaigns running on it.
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from dialerd import metrics
from dialerd.api.context import ApiContext, json_response
from dialerd.api.errors import invalid, not_found
from dialerd.api.parsing import UUID_TEXT, page_query_size, path_id
from dialerd.model import NOT_DELETED, Page
from dialerd.ports import QueueUnavailable
from dialerd.queues import QueueRef


class QueueAgents(msgspec.Struct, frozen=True, kw_only=True):
    """A queue's agents by state, as the queue adapter read them; ``null``: not known."""

    available: int | None = None
    busy: int | None = None
    wrap_up: int | None = None
    paused: int | None = None
    offline: int | None = None


class Queue(msgspec.Struct, frozen=True, kw_only=True):
    """A registered queue: VoIPbin's queue fields that apply, and dialerd's extensions."""

    id: str
    customer_id: str
    # The queue as its backend knows it (an Asterisk queue, a Redis hash, a sim queue).
    name: str
    detail: str
    # Registered in the configuration: dialerd does not know when.
    tm_create: str | None
    tm_update: str | None
    tm_delete: str
    # Extensions.
    queue_adapter: str
    agents: QueueAgents
    # Empty when every count is known; otherwise why some or all are null.
    agents_detail: str
    campaign_ids: list[str]


async def _agents(ctx: ApiContext, queue: QueueRef) -> tuple[str, QueueAgents, str]:
    """The adapter's name, the agents by state it reads now, and why some are unknown."""
    adapter = ctx.campaigns.queue_adapter
    if adapter is None:
        return "", QueueAgents(), "no queue adapter is configured: agent counts are unknown"
    try:
        available = await adapter.available_agents(queue.name)
    except QueueUnavailable as exc:
        return adapter.name, QueueAgents(), f"the {adapter.name} queue adapter cannot tell: {exc}"
    # The adapters record every state of the same read in dialerd_queue_agents.
    counts = metrics.queue_agents_read(queue.name)
    counts["available"] = available
    unknown = [state for state, count in counts.items() if count is None]
    detail = (
        f"the {adapter.name} queue adapter does not report {', '.join(unknown)} agents"
        if unknown
        else ""
    )
    return adapter.name, msgspec.convert(counts, QueueAgents), detail


async def _queue(ctx: ApiContext, queue: QueueRef, running: dict[str, list[str]]) -> Queue:
    adapter, agents, detail = await _agents(ctx, queue)
    return Queue(
        id=queue.id,
        customer_id=queue.customer_id,
        name=queue.name,
        detail=f"registered in [[queues]] as {queue.name!r}",
        tm_create=None,
        tm_update=None,
        tm_delete=NOT_DELETED,
        queue_adapter=adapter,
        agents=agents,
        agents_detail=detail,
        campaign_ids=running.get(queue.id, []),
    )


async def list_queues(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``GET /queues``: the customer's registered queues, by id; the ``page_token`` is
    the last id of the previous page."""
    page_size = page_query_size(request)
    after = request.query_params.get("page_token", "")
    if after and not UUID_TEXT.fullmatch(after):
        raise invalid("page_token: expected the next_page_token of the previous page (an id)")
    queues = [q for q in ctx.campaigns.queues.of_customer(customer_id) if q.id > after.lower()]
    page = queues[:page_size]
    running = await ctx.campaigns.running_by_queue(customer_id)
    next_token = page[-1].id if len(queues) > page_size else ""
    return json_response(
        Page([await _queue(ctx, queue, running) for queue in page], next_page_token=next_token)
    )


async def get_queue(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``GET /queues/{id}``: another customer's queue is a 404, as an unknown one."""
    queue_id = path_id(request, "id", "queue")
    queue = ctx.campaigns.queues.get(customer_id, queue_id)
    if queue is None:
        raise not_found("queue", queue_id)
    return json_response(
        await _queue(ctx, queue, await ctx.campaigns.running_by_queue(customer_id))
    )
