"""Handlers of ``/v1.0/campaigns``: create, read, edit, run, stop and delete campaigns.

Each reads the request, calls the campaign service (``dialerd.campaigns``) and answers
with what it returns; the service's refusals are answered by ``errors.refusal``.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec
from msgspec import UNSET
from starlette.requests import Request
from starlette.responses import Response

from dialerd.api import bodies
from dialerd.api.context import ApiContext, Handler, json_response
from dialerd.api.parsing import json_body, json_update_body, page_query, path_id
from dialerd.model import CampaignStatus

S = TypeVar("S", bound=msgspec.Struct)


async def create_campaign(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``POST /campaigns``."""
    body = await json_body(request, ctx, bodies.CampaignCreate)
    campaign = body.to_model(customer_id, ctx.now())
    return json_response(await ctx.campaigns.create(campaign, ctx.quotas))


async def list_campaigns(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``GET /campaigns``."""
    page_size, page_token = page_query(request)
    return json_response(await ctx.store.list_campaigns(customer_id, page_size, page_token))


async def get_campaign(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``GET /campaigns/{id}``."""
    campaign_id = path_id(request, "id", "campaign")
    return json_response(await ctx.campaigns.get(customer_id, campaign_id))


async def _update_body(
    request: Request, ctx: ApiContext, customer_id: str, body_type: type[S]
) -> tuple[str, S]:
    """The campaign id and the PUT body; the campaign's own fields may be sent back."""
    campaign_id = path_id(request, "id", "campaign")
    stored = await ctx.campaigns.get(customer_id, campaign_id)
    body = await json_update_body(request, ctx, body_type, stored, "campaign", "/campaigns")
    return campaign_id, body


def _status(value: bodies.CampaignExecute | None) -> CampaignStatus | None:
    return None if value is None else CampaignStatus(value.value)


async def update_campaign(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``PUT /campaigns/{id}``: only the fields present change; ``status`` runs or stops."""
    campaign_id, body = await _update_body(request, ctx, customer_id, bodies.CampaignUpdate)
    changes = bodies.present_fields(body, skip=("status",))
    status = _status(None if body.status is UNSET else body.status)
    updated = await ctx.campaigns.command(customer_id, campaign_id, changes, status, ctx.quotas)
    return json_response(updated)


async def update_campaign_status(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``PUT /campaigns/{id}/status``: ``run`` or ``stop``."""
    campaign_id, body = await _update_body(request, ctx, customer_id, bodies.CampaignStatusBody)
    status = _status(body.status)
    return json_response(
        await ctx.campaigns.command(customer_id, campaign_id, {}, status, ctx.quotas)
    )


def _sub_update(name: str, body_type: type[msgspec.Struct]) -> Handler:
    """A handler for a ``PUT /campaigns/{id}/<part>`` that edits the fields of ``body_type``."""

    async def handler(request: Request, ctx: ApiContext, customer_id: str) -> Response:
        campaign_id, body = await _update_body(request, ctx, customer_id, body_type)
        changes = bodies.present_fields(body, skip=("status",))
        return json_response(
            await ctx.campaigns.command(customer_id, campaign_id, changes, None, ctx.quotas)
        )

    handler.__name__ = handler.__qualname__ = name
    handler.__doc__ = f"Edit a campaign with a {body_type.__name__}."
    return handler


update_service_level = _sub_update("update_service_level", bodies.ServiceLevelBody)
update_actions = _sub_update("update_actions", bodies.ActionsBody)
update_resource_info = _sub_update("update_resource_info", bodies.ResourceInfoBody)
update_next_campaign_id = _sub_update("update_next_campaign_id", bodies.NextCampaignIdBody)


async def delete_campaign(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``DELETE /campaigns/{id}``: only a stopped campaign may be deleted (else 409)."""
    campaign_id = path_id(request, "id", "campaign")
    return json_response(await ctx.campaigns.delete(customer_id, campaign_id))


async def get_campaign_state(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``GET /campaigns/{id}/state``: what the campaign's latest tick found."""
    campaign_id = path_id(request, "id", "campaign")
    return json_response(await ctx.campaigns.state(customer_id, campaign_id))


async def list_campaign_campaigncalls(
    request: Request, ctx: ApiContext, customer_id: str
) -> Response:
    """``GET /campaigns/{id}/campaigncalls``: the campaign's attempts, newest first."""
    campaign_id = path_id(request, "id", "campaign")
    page_size, page_token = page_query(request)
    await ctx.campaigns.get(customer_id, campaign_id)
    page = await ctx.store.list_campaigncalls(customer_id, campaign_id, page_size, page_token)
    return json_response(page)
