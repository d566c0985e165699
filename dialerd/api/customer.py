"""Handlers of ``/v1.0/customer`` (the caller's webhook settings, VoIPbin's
``webhook_method`` / ``webhook_uri``) and ``/v1.0/events/failed`` (events set aside)."""

from __future__ import annotations

import secrets
from typing import Annotated

import msgspec
from msgspec import UNSET, UnsetType
from starlette.requests import Request
from starlette.responses import Response

from dialerd.api.context import ApiContext, json_response
from dialerd.api.errors import invalid, not_found
from dialerd.api.parsing import json_body
from dialerd.events.model import CustomerWebhook, Event, FailedEvent, WebhookMethod, event_of
from dialerd.events.receivers import url_problem

Secret = Annotated[str, msgspec.Meta(min_length=16, max_length=256)]
Uri = Annotated[str, msgspec.Meta(max_length=2000)]


class Customer(msgspec.Struct, frozen=True, kw_only=True):
    """The caller's customer as dialerd knows it: its webhook settings. The secret is
    shown once, in the answer of the ``PUT`` that generated it."""

    id: str
    webhook_method: WebhookMethod
    webhook_uri: str
    webhook_secret_set: bool
    tm_update: str
    webhook_secret: str | UnsetType = UNSET


class CustomerUpdate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``PUT /customer``: the fields present change. A ``webhook_uri`` set without a
    secret ever given gets a generated one (shown in this answer only)."""

    webhook_method: WebhookMethod | UnsetType = UNSET
    webhook_uri: Uri | UnsetType = UNSET
    webhook_secret: Secret | UnsetType = UNSET


class FailedDelivery(msgspec.Struct, frozen=True, kw_only=True):
    """An event its receiver did not take in time; ``POST .../redeliver`` sends it again."""

    event: Event
    error: str
    tm_failed: str
    redeliver: bool


class FailedDeliveries(msgspec.Struct, frozen=True):
    """``GET /events/failed``."""

    result: list[FailedDelivery]


def _shown(webhook: CustomerWebhook, secret: str | UnsetType = UNSET) -> Customer:
    return Customer(
        id=webhook.customer_id,
        webhook_method=webhook.webhook_method,
        webhook_uri=webhook.webhook_uri,
        webhook_secret_set=bool(webhook.webhook_secret),
        tm_update=webhook.tm_update,
        webhook_secret=secret,
    )


async def get_customer(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``GET /customer``."""
    stored = await ctx.store.get_webhook(customer_id) or CustomerWebhook(customer_id=customer_id)
    return json_response(_shown(stored))


async def update_customer(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``PUT /customer``."""
    body = await json_body(request, ctx, CustomerUpdate)
    stored = await ctx.store.get_webhook(customer_id) or CustomerWebhook(customer_id=customer_id)
    method = stored.webhook_method if body.webhook_method is UNSET else body.webhook_method
    uri = stored.webhook_uri if body.webhook_uri is UNSET else body.webhook_uri
    if uri:
        problem = url_problem(uri, ctx.webhooks)
        if problem is not None:
            raise invalid(f"webhook_uri: {problem}")
    if method != WebhookMethod.NONE and not uri:
        raise invalid("webhook_uri: required when webhook_method is set")
    if uri and method == WebhookMethod.NONE:
        method = WebhookMethod.POST
    generated: str | UnsetType = UNSET
    secret = stored.webhook_secret if body.webhook_secret is UNSET else body.webhook_secret
    if uri and not secret:
        secret = generated = secrets.token_urlsafe(32)
    webhook = CustomerWebhook(
        customer_id=customer_id,
        webhook_method=method,
        webhook_uri=uri,
        webhook_secret=secret,
        tm_update=ctx.now(),
    )
    return json_response(_shown(await ctx.store.put_webhook(webhook), generated))


def _delivery(failed: FailedEvent) -> FailedDelivery:
    return FailedDelivery(
        event=event_of(failed.entry),
        error=failed.error,
        tm_failed=failed.tm_failed,
        redeliver=failed.redeliver,
    )


async def list_failed_events(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``GET /events/failed``: oldest first."""
    failed = await ctx.store.failed_events(customer_id)
    return json_response(FailedDeliveries([_delivery(each) for each in failed]))


async def redeliver_failed_event(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``POST /events/failed/{id}/redeliver``."""
    event_id = request.path_params["id"]
    if not isinstance(event_id, str) or len(event_id) > 64:
        raise invalid("id: not an event id")
    marked = await ctx.store.redeliver_event(customer_id, event_id)
    if marked is None:
        raise not_found("failed event", event_id)
    return json_response(_delivery(marked))
