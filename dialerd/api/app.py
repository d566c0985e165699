"""The control API application: ``/v1.0`` routes behind token authentication.

Every error, including a bug, is answered with the reference error envelope; no
traceback reaches a client.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence

import anyio
import msgspec
import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dialerd.api import events
from dialerd.api.context import ApiContext, Handler, authenticate, request_id
from dialerd.api.errors import ApiError, error_response, refusal
from dialerd.api.openapi import openapi_document
from dialerd.api.parsing import drain_body
from dialerd.api.quotas import QuotaGate
from dialerd.api.routes import ENDPOINTS, PREFIX
from dialerd.campaigns import CampaignRefused, CampaignService
from dialerd.config import ApiConfig, QuotasConfig, WebhooksConfig
from dialerd.ports import Clock
from dialerd.store import Conflict, Store, StoreBusy, StoreError

log = structlog.get_logger("dialerd.api")


def _timed_receive(scope: Scope, receive: Receive) -> Receive:
    """``receive``, with a 408 (and the connection closed) when the request body pauses
    for ``[api] body_timeout`` or is not all there after ``body_total_timeout``."""
    app = scope.get("app")
    context = getattr(getattr(app, "state", None), "ctx", None)
    if not isinstance(context, ApiContext):
        return receive
    config = context.config
    deadline = anyio.current_time() + config.body_total_timeout
    done = False

    async def timed() -> Message:
        nonlocal done
        if done:
            return await receive()
        wait = min(config.body_timeout, deadline - anyio.current_time())
        with anyio.move_on_after(wait):
            message = await receive()
            done = message["type"] != "http.request" or not message.get("more_body", False)
            return message
        done = True
        # Nothing left to drain: the connection is closed after the answer.
        scope["state"]["body_done"] = True
        paused = wait >= config.body_timeout
        raise ApiError(
            408,
            "REQUEST_TIMEOUT",
            f"the request body paused for {config.body_timeout:g} s ([api] body_timeout)"
            if paused
            else f"the request body took over {config.body_total_timeout:g} s "
            "([api] body_total_timeout)",
            headers={"connection": "close"},
            drain=False,
        )

    return timed


class CatchAll:
    """Outermost middleware: gives each request an id and turns any bug into a 500 envelope."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = str(uuid.uuid4())
        # A copy: the server's lifespan state may be shared between requests.
        scope["state"] = {**scope.get("state", {}), "request_id": rid}
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                if not any(name == b"x-request-id" for name, _ in headers):
                    headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, _timed_receive(scope, receive), tracking_send)
        except ClientDisconnect:
            return
        except Exception:
            log.exception(
                "request failed", method=scope.get("method"), path=scope.get("path"), request_id=rid
            )
            if not started:
                error = ApiError(500, "INTERNAL", "internal error; the request id identifies it")
                await error_response(error, rid)(scope, receive, send)


async def _answered(
    handler: Handler, request: Request, ctx: ApiContext, customer_id: str
) -> Response:
    """The handler's answer; a campaign command the service refused is an ``ApiError``."""
    try:
        return await handler(request, ctx, customer_id)
    except CampaignRefused as exc:
        raise refusal(exc) from None


def _endpoint(handlers: dict[str, Handler]) -> Callable[[Request], Awaitable[Response]]:
    """One path's endpoint: authenticate, call the method's handler for the token's
    customer, and answer errors as envelopes."""

    async def endpoint(request: Request) -> Response:
        ctx: ApiContext = request.app.state.ctx
        handler = handlers[request.method if request.method != "HEAD" else "GET"]
        try:
            customer_id = authenticate(request, ctx.config)
            with ctx.request_slot(customer_id):
                return await _answered(handler, request, ctx, customer_id)
        except ApiError as exc:
            if exc.drain:
                await drain_body(request)
            return error_response(exc, request_id(request))
        except Conflict as exc:
            # The resource changed under the request (for example deleted meanwhile).
            return error_response(ApiError(409, "CONFLICT", str(exc)), request_id(request))
        except StoreError as exc:
            said = "busy" if isinstance(exc, StoreBusy) else "unavailable"
            error = ApiError(503, "STORE_UNAVAILABLE", f"the store is {said}; try again")
            return error_response(error, request_id(request))

    return endpoint


def _routes() -> list[BaseRoute]:
    by_path: dict[str, dict[str, Handler]] = {}
    for e in ENDPOINTS:
        by_path.setdefault(PREFIX + e.path, {})[e.method] = e.handler
    return [
        Route(path, _endpoint(handlers), methods=list(handlers))
        for path, handlers in by_path.items()
    ]


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 (no such path) and 405 (wrong method), as envelopes."""
    assert isinstance(exc, HTTPException)
    reason = {404: "NO_SUCH_PATH", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
    error = ApiError(exc.status_code, reason, str(exc.detail), headers=dict(exc.headers or {}))
    return error_response(error, request_id(request))


def create_app(
    *,
    store: Store,
    campaigns: CampaignService,
    clock: Clock,
    config: ApiConfig,
    extra_routes: Sequence[BaseRoute] = (),
    quotas: QuotasConfig | None = None,
    webhooks: WebhooksConfig | None = None,
    closing: Callable[[], bool] | None = None,
) -> Starlette:
    """The control API; ``extra_routes`` (metrics, health) are mounted without authentication."""
    document = msgspec.json.encode(openapi_document())

    async def openapi_json(request: Request) -> Response:
        return Response(document, media_type="application/json")

    routes: list[BaseRoute] = [Route(f"{PREFIX}/openapi.json", openapi_json, methods=["GET"])]
    routes += _routes()
    # The live stream: outside the OpenAPI table (it never ends; see docs/operations.md).
    routes.append(
        Route(f"{PREFIX}/events", _endpoint({"GET": events.stream_events}), methods=["GET"])
    )
    routes += list(extra_routes)
    app = Starlette(
        routes=routes,
        middleware=[Middleware(CatchAll)],
        exception_handlers={HTTPException: _http_error},
    )
    # No trailing-slash redirect: Starlette builds its Location from the client's Host
    # header and keeps the query (with any token in it). ``/campaigns/`` is a 404.
    app.router.redirect_slashes = False
    app.state.ctx = ApiContext(
        store=store,
        campaigns=campaigns,
        clock=clock,
        config=config,
        quotas=QuotaGate(quotas),
        webhooks=webhooks or WebhooksConfig(),
    )
    if closing is not None:
        app.state.ctx.closing = closing
    return app


def set_api_config(
    app: Starlette,
    config: ApiConfig,
    quotas: QuotasConfig | None = None,
    webhooks: WebhooksConfig | None = None,
) -> None:
    """Use a reloaded configuration (tokens, body limit, quotas, webhook URL policy)
    from the next request on."""
    context: ApiContext = app.state.ctx
    context.config = config
    if webhooks is not None:
        context.webhooks = webhooks
    if quotas is not None:
        context.quotas.config = quotas


def stop_imports(app: Starlette) -> None:
    """Abandon the file imports in progress (the daemon stops): each is answered 503
    and nothing of it is imported."""
    context: ApiContext = app.state.ctx
    context.stop_imports()
