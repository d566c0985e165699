"""Handlers of ``/v1.0/outdials`` and their targets, including bulk import."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from dialerd.api import bodies, quotas, targets_import
from dialerd.api.context import ApiContext, json_response
from dialerd.api.errors import conflict, invalid, not_found
from dialerd.api.parsing import (
    CSV_TYPES,
    JSON_TYPES,
    NDJSON_TYPES,
    body_chunks,
    json_body,
    json_update_body,
    page_query,
    path_id,
    require_media_type,
    stopped_import,
)
from dialerd.model import Outdial
from dialerd.store import Conflict, InUse
from dialerd.store.sqlite.import_process import Rejected


async def _outdial(ctx: ApiContext, customer_id: str, outdial_id: str) -> Outdial:
    outdial = await ctx.store.get_outdial(customer_id, outdial_id)
    if outdial is None:
        raise not_found("outdial", outdial_id)
    return outdial


async def create_outdial(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``POST /outdials``; ``campaign_id`` may be nil or absent."""
    body = await json_body(request, ctx, bodies.OutdialCreate)
    campaign_id = bodies.reference(body.campaign_id)
    await ctx.campaigns.check_reference(customer_id, "campaign_id", "campaign", campaign_id)
    outdial = Outdial.fresh(
        customer_id,
        ctx.now(),
        name=body.name,
        detail=body.detail,
        data=body.data,
        campaign_id=campaign_id,
    )
    async with ctx.quotas.room(ctx.store, customer_id, "outdial"):
        return json_response(await ctx.store.create_outdial(outdial))


async def list_outdials(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``GET /outdials``."""
    page_size, page_token = page_query(request)
    return json_response(await ctx.store.list_outdials(customer_id, page_size, page_token))


async def get_outdial(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``GET /outdials/{id}``."""
    outdial_id = path_id(request, "id", "outdial")
    return json_response(await _outdial(ctx, customer_id, outdial_id))


async def _update(
    request: Request, ctx: ApiContext, customer_id: str, body_type: type[msgspec.Struct]
) -> Response:
    outdial_id = path_id(request, "id", "outdial")
    outdial = await _outdial(ctx, customer_id, outdial_id)
    body = await json_update_body(request, ctx, body_type, outdial, "outdial", "/outdials")
    changes = bodies.present_fields(body)
    if "campaign_id" in changes:
        await ctx.campaigns.check_reference(
            customer_id, "campaign_id", "campaign", changes["campaign_id"]
        )
    if changes:
        outdial = msgspec.structs.replace(outdial, tm_update=ctx.now(), **changes)
        outdial = await ctx.store.update_outdial(outdial)
    return json_response(outdial)


async def update_outdial(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``PUT /outdials/{id}``: name and detail."""
    return await _update(request, ctx, customer_id, bodies.OutdialUpdate)


async def update_outdial_campaign_id(
    request: Request, ctx: ApiContext, customer_id: str
) -> Response:
    """``PUT /outdials/{id}/campaign_id``."""
    return await _update(request, ctx, customer_id, bodies.OutdialCampaignIdBody)


async def update_outdial_data(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``PUT /outdials/{id}/data``."""
    return await _update(request, ctx, customer_id, bodies.OutdialDataBody)


async def delete_outdial(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``DELETE /outdials/{id}``: refused (409) while a running campaign dials it."""
    outdial_id = path_id(request, "id", "outdial")
    try:
        deleted = await ctx.store.delete_outdial(customer_id, outdial_id, ctx.clock.now())
    except InUse as exc:
        raise conflict(
            "OUTDIAL_IN_USE",
            f"outdial {outdial_id} is dialed by running campaign(s) {', '.join(exc.users)}: "
            "stop them first",
        ) from None
    if deleted is None:
        raise not_found("outdial", outdial_id)
    return json_response(deleted)


async def create_targets(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``POST /outdials/{id}/targets``: one JSON target, or a CSV or NDJSON file of them."""
    outdial_id = path_id(request, "id", "outdial")
    kind = require_media_type(request, JSON_TYPES | CSV_TYPES | NDJSON_TYPES)
    await _outdial(ctx, customer_id, outdial_id)
    now = ctx.now()
    if kind in JSON_TYPES:
        body = await json_body(request, ctx, bodies.TargetCreate)
        try:
            target = targets_import.target_from_body(outdial_id, now, body)
        except targets_import.NoDestination as exc:
            raise invalid(str(exc), "TARGET_WITHOUT_DESTINATION") from None
        async with ctx.quotas.room(ctx.store, customer_id, "target", outdial_id=outdial_id):
            await ctx.store.create_targets([target])
        return json_response(target)
    count = 0
    with ctx.stoppable_import() as stopping:
        count = await _import_file(request, ctx, customer_id, outdial_id, now, kind in CSV_TYPES)
    if stopping.cancelled_caught:
        raise await stopped_import(request)
    return json_response(bodies.ImportResult(count))


async def _import_file(
    request: Request, ctx: ApiContext, customer_id: str, outdial_id: str, now: str, csv_file: bool
) -> int:
    """Import the body, a CSV (``csv_file``) or NDJSON file of targets; how many."""
    chunks = body_chunks(request, ctx.config.max_body_bytes)
    read = targets_import.read_csv if csv_file else targets_import.read_ndjson
    # A large file is parsed and staged in an import worker process when the store can.
    head, ended = await targets_import.head_of(chunks, targets_import.WORKER_BYTES)
    file_body = targets_import.replayed(head, chunks)
    try:
        # Counted as it is read: past a target quota, nothing is imported.
        async with ctx.quotas.room(
            ctx.store, customer_id, "target", 0, outdial_id=outdial_id, recount=True
        ) as room:
            limits = ctx.quotas.of(customer_id)
            store = ctx.store
            if not ended and isinstance(store, targets_import.FileImporter):
                count = await store.import_target_file(
                    file_body,
                    outdial_id,
                    now,
                    csv_file=csv_file,
                    counted=quotas.target_counter(customer_id, limits, room.usage),
                )
            else:
                rows = read(file_body, outdial_id, now)
                count = await store.import_targets(
                    quotas.counted_targets(customer_id, limits, room.usage, rows)
                )
            room.added = count
    except targets_import.ImportRejected as exc:
        raise exc.as_api_error() from None
    except Rejected as exc:
        raise targets_import.rejected(exc.problems, exc.bad_rows).as_api_error() from None
    return count


async def list_targets(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``GET /outdials/{id}/targets``."""
    outdial_id = path_id(request, "id", "outdial")
    page_size, page_token = page_query(request)
    await _outdial(ctx, customer_id, outdial_id)
    return json_response(await ctx.store.list_targets(outdial_id, page_size, page_token))


async def get_target(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``GET /outdials/{id}/targets/{target_id}``."""
    outdial_id = path_id(request, "id", "outdial")
    target_id = path_id(request, "target_id", "target")
    await _outdial(ctx, customer_id, outdial_id)
    target = await ctx.store.get_target(outdial_id, target_id)
    if target is None:
        raise not_found("target", target_id)
    return json_response(target)


async def delete_target(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``DELETE /outdials/{id}/targets/{target_id}``: refused (409) while it is being dialed."""
    outdial_id = path_id(request, "id", "outdial")
    target_id = path_id(request, "target_id", "target")
    await _outdial(ctx, customer_id, outdial_id)
    try:
        deleted = await ctx.store.delete_target(outdial_id, target_id, ctx.clock.now())
    except Conflict:
        raise conflict(
            "TARGET_PROGRESSING",
            f"target {target_id} is being dialed: it can be deleted once the attempt ends",
        ) from None
    if deleted is None:
        raise not_found("target", target_id)
    return json_response(deleted)
