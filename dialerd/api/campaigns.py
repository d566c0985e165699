"""Handlers of ``/v1.0/campaigns``: create, read, edit, run, stop and delete campaigns.

Every status change and edit goes through ``CampaignControl``, which serialises them
with the engine's own changes of the same campaign.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from msgspec import UNSET
from starlette.requests import Request
from starlette.responses import Response

from dialerd.api import bodies
from dialerd.api.errors import ApiError, conflict, invalid, not_found
from dialerd.api.exchange import (
    ApiContext,
    Handler,
    json_body,
    json_response,
    json_update_body,
    page_query,
    path_id,
)
from dialerd.control import CampaignNotFound, RunRefused
from dialerd.core.actions import ActionError, ActionsInvalid, call_only, compile_actions
from dialerd.insight import CampaignInsight
from dialerd.model import (
    NIL_UUID,
    Action,
    Campaign,
    CampaignStatus,
    CampaignType,
)
from dialerd.service.identity import public_id

S = TypeVar("S", bound=msgspec.Struct)
REFERENCE_FIELDS = ("outplan_id", "outdial_id", "queue_id", "next_campaign_id")


async def check_reference(
    ctx: ApiContext, customer_id: str, field: str, kind: str, value: str
) -> None:
    """A 400 when ``value`` is set but names no ``kind`` of this customer."""
    get = {
        "outplan": ctx.store.get_outplan,
        "outdial": ctx.store.get_outdial,
        "campaign": ctx.store.get_campaign,
    }[kind]
    if value != NIL_UUID and await get(customer_id, value) is None:
        raise invalid(f"{field}: {kind} {value} not found", f"{kind.upper()}_NOT_FOUND")


async def check_references(ctx: ApiContext, customer_id: str, changes: dict[str, Any]) -> None:
    """A 400 when a set outplan, outdial or next campaign id names nothing of this customer."""
    for field, kind in (
        ("outplan_id", "outplan"),
        ("outdial_id", "outdial"),
        ("next_campaign_id", "campaign"),
    ):
        if field in changes:
            await check_reference(ctx, customer_id, field, kind, changes[field])


def check_actions(ctx: ApiContext, campaign_type: CampaignType, actions: list[Action]) -> None:
    """A 400 naming each action (index and field) that could not run; a ``flow``
    campaign's actions may not need a call."""
    try:
        compile_actions(actions, has_voice=ctx.control.has_voice)
    except ActionsInvalid as exc:
        raise _actions_invalid(exc.errors) from None
    if campaign_type is CampaignType.FLOW and (errors := call_only(actions)):
        raise _actions_invalid(errors)


def _actions_invalid(errors: list[ActionError]) -> ApiError:
    first = errors[0]
    error = invalid(f"{first.message} - at `{first.field}`", "INVALID_ACTIONS")
    error.details = [msgspec.structs.asdict(each) for each in errors]
    return error


async def _check_edited_actions(
    ctx: ApiContext, customer_id: str, campaign_id: str, changes: dict[str, Any]
) -> None:
    """The actions as they would be after the edit, checked when it changes them or the type."""
    if "actions" not in changes and "type" not in changes:
        return
    campaign = await _campaign(ctx, customer_id, campaign_id)
    check_actions(ctx, changes.get("type", campaign.type), changes.get("actions", campaign.actions))


async def _campaign(ctx: ApiContext, customer_id: str, campaign_id: str) -> Campaign:
    campaign = await ctx.store.get_campaign(customer_id, campaign_id)
    if campaign is None:
        raise not_found("campaign", campaign_id)
    return campaign


async def _edit(
    ctx: ApiContext,
    customer_id: str,
    campaign_id: str,
    changes: dict[str, Any],
    status: bodies.CampaignExecute | None = None,
) -> Campaign:
    """Apply the edits and run or stop, as one step; a refused run or an edit that a
    running campaign could not run with is a 409 and changes nothing."""
    await check_references(ctx, customer_id, changes)
    await _check_edited_actions(ctx, customer_id, campaign_id, changes)
    wanted = None if status is None else CampaignStatus(status.value)
    try:
        if wanted is CampaignStatus.RUN:
            # A stopped campaign that runs counts against running_campaigns.
            current = await _campaign(ctx, customer_id, campaign_id)
            adding = 1 if current.status is CampaignStatus.STOP else 0
            async with ctx.quotas.room(ctx.store, customer_id, "run", adding):
                return await ctx.control.change(customer_id, campaign_id, changes, wanted)
        return await ctx.control.change(customer_id, campaign_id, changes, wanted)
    except CampaignNotFound:
        raise not_found("campaign", campaign_id) from None
    except RunRefused as exc:
        raise _refused(campaign_id, exc.problems) from None


def _refused(campaign_id: str, problems: list[str]) -> ApiError:
    return conflict(
        "CAMPAIGN_NOT_RUNNABLE", f"campaign {campaign_id} cannot run: " + "; ".join(problems)
    )


async def create_campaign(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``POST /campaigns``."""
    body = await json_body(request, ctx, bodies.CampaignCreate)
    references = {field: bodies.reference(getattr(body, field)) for field in REFERENCE_FIELDS}
    await check_references(ctx, customer_id, references)
    actions = bodies.actions_model(body.actions)
    check_actions(ctx, body.type, actions)
    campaign = Campaign.fresh(
        customer_id,
        ctx.now(),
        type=body.type,
        name=body.name,
        detail=body.detail,
        service_level=body.service_level,
        end_handle=body.end_handle,
        actions=actions,
        **references,
    )
    if body.pacing_mode != campaign.pacing_mode or body.target_abandon_rate != (
        campaign.target_abandon_rate
    ):
        campaign = msgspec.structs.replace(
            campaign, pacing_mode=body.pacing_mode, target_abandon_rate=body.target_abandon_rate
        )
    async with ctx.quotas.room(ctx.store, customer_id, "campaign"):
        return json_response(await ctx.store.create_campaign(campaign))


async def list_campaigns(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``GET /campaigns``."""
    page_size, page_token = page_query(request)
    return json_response(await ctx.store.list_campaigns(customer_id, page_size, page_token))


async def get_campaign(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``GET /campaigns/{id}``."""
    campaign_id = path_id(request, "id", "campaign")
    return json_response(await _campaign(ctx, customer_id, campaign_id))


async def _update_body(
    request: Request, ctx: ApiContext, customer_id: str, body_type: type[S]
) -> tuple[str, S]:
    """The campaign id and the PUT body; the campaign's own fields may be sent back."""
    campaign_id = path_id(request, "id", "campaign")
    stored = await _campaign(ctx, customer_id, campaign_id)
    body = await json_update_body(request, ctx, body_type, stored, "campaign", "/campaigns")
    return campaign_id, body


async def update_campaign(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``PUT /campaigns/{id}``: only the fields present change; ``status`` runs or stops."""
    campaign_id, body = await _update_body(request, ctx, customer_id, bodies.CampaignUpdate)
    status = None if body.status is UNSET else body.status
    return json_response(
        await _edit(
            ctx, customer_id, campaign_id, bodies.present_fields(body, skip=("status",)), status
        )
    )


async def update_campaign_status(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``PUT /campaigns/{id}/status``: ``run`` or ``stop``."""
    campaign_id, body = await _update_body(request, ctx, customer_id, bodies.CampaignStatusBody)
    return json_response(await _edit(ctx, customer_id, campaign_id, {}, body.status))


def _sub_update(name: str, body_type: type[msgspec.Struct]) -> Handler:
    """A handler for a ``PUT /campaigns/{id}/<part>`` that edits the fields of ``body_type``."""

    async def handler(request: Request, ctx: ApiContext, customer_id: str) -> Response:
        campaign_id, body = await _update_body(request, ctx, customer_id, body_type)
        return json_response(
            await _edit(
                ctx, customer_id, campaign_id, bodies.present_fields(body, skip=("status",))
            )
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
    async with ctx.control.locks.hold(campaign_id):
        campaign = await _campaign(ctx, customer_id, campaign_id)
        if campaign.status is not CampaignStatus.STOP:
            raise conflict(
                "CAMPAIGN_NOT_STOPPED",
                f"campaign {campaign_id} is {campaign.status.value}: stop it before deleting it",
            )
        deleted = await ctx.store.delete_campaign(customer_id, campaign_id, ctx.clock.now())
    if deleted is None:
        raise not_found("campaign", campaign_id)
    return json_response(deleted)


async def get_campaign_state(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``GET /campaigns/{id}/state``: what the campaign's latest tick found."""
    campaign_id = path_id(request, "id", "campaign")
    campaign = await _campaign(ctx, customer_id, campaign_id)
    insight = ctx.control.insight(campaign_id)
    if insight is None:
        # Not run by this instance: stopped, not picked up yet, or another one's.
        owner = await ctx.store.lease_owner(campaign_id)
        # The instance's opaque id: its full name holds the host's name.
        owner = public_id(owner) if owner is not None else None
        if campaign.status is CampaignStatus.STOP:
            state, detail = "stopped", ""
        elif owner is not None:
            state, detail = "run_elsewhere", f"run by instance {owner}; ask its API"
        else:
            state, detail = "starting", "no instance has taken the campaign up yet"
        insight = CampaignInsight(
            campaign_id=campaign_id,
            status=campaign.status.value,
            state=state,
            detail=detail,
            instance=owner or "",
            service_level=campaign.service_level,
        )
    return json_response(insight)


async def list_campaign_campaigncalls(
    request: Request, ctx: ApiContext, customer_id: str
) -> Response:
    """``GET /campaigns/{id}/campaigncalls``: the campaign's attempts, newest first."""
    campaign_id = path_id(request, "id", "campaign")
    page_size, page_token = page_query(request)
    await _campaign(ctx, customer_id, campaign_id)
    page = await ctx.store.list_campaigncalls(customer_id, campaign_id, page_size, page_token)
    return json_response(page)
