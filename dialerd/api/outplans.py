"""Handlers of ``/v1.0/outplans``: how and when a campaign dials and retries."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from dialerd.api import bodies
from dialerd.api.context import ApiContext, json_response
from dialerd.api.errors import conflict, not_found
from dialerd.api.parsing import json_body, json_update_body, page_query, path_id
from dialerd.model import Outplan
from dialerd.store import InUse


async def _outplan(ctx: ApiContext, customer_id: str, outplan_id: str) -> Outplan:
    outplan = await ctx.store.get_outplan(customer_id, outplan_id)
    if outplan is None:
        raise not_found("outplan", outplan_id)
    return outplan


async def create_outplan(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``POST /outplans``."""
    body = await json_body(request, ctx, bodies.OutplanCreate)
    outplan = Outplan.fresh(
        customer_id,
        ctx.now(),
        name=body.name,
        detail=body.detail,
        source=body.source.to_model(),
        dial_timeout=body.dial_timeout,
        try_interval=body.try_interval,
        max_try_counts=(
            body.max_try_count_0,
            body.max_try_count_1,
            body.max_try_count_2,
            body.max_try_count_3,
            body.max_try_count_4,
        ),
        retry_by_outcome={str(outcome): rule for outcome, rule in body.retry_by_outcome.items()},
    )
    return json_response(await ctx.store.create_outplan(outplan))


async def list_outplans(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``GET /outplans``."""
    page_size, page_token = page_query(request)
    return json_response(await ctx.store.list_outplans(customer_id, page_size, page_token))


async def get_outplan(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``GET /outplans/{id}``."""
    outplan_id = path_id(request, "id", "outplan")
    return json_response(await _outplan(ctx, customer_id, outplan_id))


async def _update(
    request: Request, ctx: ApiContext, customer_id: str, body_type: type[msgspec.Struct]
) -> Response:
    outplan_id = path_id(request, "id", "outplan")
    outplan = await _outplan(ctx, customer_id, outplan_id)
    body = await json_update_body(request, ctx, body_type, outplan, "outplan", "/outplans")
    changes = bodies.present_fields(body)
    if changes:
        outplan = msgspec.structs.replace(outplan, tm_update=ctx.now(), **changes)
        outplan = await ctx.store.update_outplan(outplan)
    return json_response(outplan)


async def update_outplan(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``PUT /outplans/{id}``: name and detail."""
    return await _update(request, ctx, customer_id, bodies.OutplanUpdate)


async def update_dial_info(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``PUT /outplans/{id}/dial_info``: source, timeout, interval and try counts."""
    return await _update(request, ctx, customer_id, bodies.DialInfoBody)


async def delete_outplan(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``DELETE /outplans/{id}``: refused (409) while a running campaign uses it."""
    outplan_id = path_id(request, "id", "outplan")
    try:
        deleted = await ctx.store.delete_outplan(customer_id, outplan_id, ctx.clock.now())
    except InUse as exc:
        raise conflict(
            "OUTPLAN_IN_USE",
            f"outplan {outplan_id} is used by running campaign(s) {', '.join(exc.users)}: "
            "stop them first",
        ) from None
    if deleted is None:
        raise not_found("outplan", outplan_id)
    return json_response(deleted)
