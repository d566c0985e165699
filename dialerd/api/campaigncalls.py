"""Handlers of ``/v1.0/campaigncalls``: the history of dial attempts."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from dialerd.api.context import ApiContext, json_response
from dialerd.api.errors import conflict, not_found
from dialerd.api.parsing import page_query, path_id, uuid_query
from dialerd.store import Conflict


async def list_campaigncalls(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``GET /campaigncalls`` (optionally ``?campaign_id=``), newest first."""
    page_size, page_token = page_query(request)
    campaign_id = uuid_query(request, "campaign_id")
    page = await ctx.store.list_campaigncalls(customer_id, campaign_id, page_size, page_token)
    return json_response(page)


async def get_campaigncall(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``GET /campaigncalls/{id}``."""
    campaigncall_id = path_id(request, "id", "campaigncall")
    campaigncall = await ctx.store.get_campaigncall(customer_id, campaigncall_id)
    if campaigncall is None:
        raise not_found("campaigncall", campaigncall_id)
    return json_response(campaigncall)


async def delete_campaigncall(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``DELETE /campaigncalls/{id}``: only a finished attempt may be deleted (else 409)."""
    campaigncall_id = path_id(request, "id", "campaigncall")
    try:
        deleted = await ctx.store.delete_campaigncall(customer_id, campaigncall_id, ctx.clock.now())
    except Conflict:
        raise conflict(
            "CAMPAIGNCALL_ACTIVE",
            f"campaigncall {campaigncall_id} is still active: it can be deleted once it is done",
        ) from None
    if deleted is None:
        raise not_found("campaigncall", campaigncall_id)
    return json_response(deleted)
