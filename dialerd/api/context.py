"""A control API request's context: the daemon's parts a handler may use, the
caller's customer (from its token), and its place among the customer's requests in
progress.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import anyio
import msgspec
from starlette.requests import Request
from starlette.responses import Response

from dialerd.api.errors import ApiError
from dialerd.api.quotas import QuotaGate
from dialerd.campaigns import CampaignService
from dialerd.config import ApiConfig, WebhooksConfig
from dialerd.model import format_time
from dialerd.ports import Clock
from dialerd.store import ApiStore


@dataclass
class ApiContext:
    """The daemon's parts a handler may use, and the reloadable API configuration."""

    store: ApiStore
    campaigns: CampaignService
    clock: Clock
    config: ApiConfig
    # Requests in progress per customer (``max_requests_per_customer``).
    in_progress: dict[str, int] = field(default_factory=dict)
    # The customers' quotas (behaviour.md §10, Quotas), swapped on reload.
    quotas: QuotaGate = field(default_factory=QuotaGate)
    # Where a customer's webhook may point (``[webhooks]``), swapped on reload.
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
    # True once the daemon stops: open event streams end.
    closing: Callable[[], bool] = lambda: False
    # The file imports in progress, abandoned when the daemon stops (``stop_imports``).
    imports: set[anyio.CancelScope] = field(default_factory=set)

    def now(self) -> str:
        """The current time as a reference timestamp string."""
        return format_time(self.clock.now())

    @contextmanager
    def stoppable_import(self) -> Iterator[anyio.CancelScope]:
        """A scope for one file import, cancelled when the daemon stops (at once if it
        is stopping): its ``cancelled_caught`` says the import was abandoned."""
        scope = anyio.CancelScope()
        if self.closing():
            scope.cancel()
        self.imports.add(scope)
        try:
            with scope:
                yield scope
        finally:
            self.imports.discard(scope)

    def stop_imports(self) -> None:
        """Abandon the file imports in progress: the daemon stops."""
        for scope in self.imports:
            scope.cancel()

    @contextmanager
    def request_slot(self, customer_id: str) -> Iterator[None]:
        """Count one of the customer's requests in progress; a 429 (answered without
        reading the body, and the connection closed) when it has its limit already."""
        held = self.in_progress.get(customer_id, 0)
        limit = self.config.max_requests_per_customer
        if held >= limit:
            raise ApiError(
                429,
                "TOO_MANY_REQUESTS",
                f"this customer has {limit} requests in progress already "
                "([api] max_requests_per_customer); try again when one has finished",
                headers={"retry-after": "1", "connection": "close"},
                drain=False,
            )
        self.in_progress[customer_id] = held + 1
        try:
            yield
        finally:
            left = self.in_progress[customer_id] - 1
            if left:
                self.in_progress[customer_id] = left
            else:
                del self.in_progress[customer_id]


Handler = Callable[[Request, ApiContext, str], Awaitable[Response]]


def request_id(request: Request) -> str:
    """The id of this request, as the catch-all middleware assigned it."""
    state = request.scope.setdefault("state", {})
    rid = state.get("request_id")
    if not isinstance(rid, str):
        rid = str(uuid.uuid4())
        state["request_id"] = rid
    return rid


QUERY_TOKEN_NAMES: Final = ("token", "accesskey")


def _refused(reason: str, message: str) -> ApiError:
    return ApiError(401, reason, message, headers={"www-authenticate": "Bearer"})


def authenticate(request: Request, config: ApiConfig) -> str:
    """The customer id of the request's token; raise a 401 if it has none or a wrong one.

    The token comes in ``Authorization: Bearer``, or in the ``accesskey`` cookie as
    VoIPbin's clients send it; in the query (``?token=``, ``?accesskey=``) only when
    ``[api] query_token`` allows it, since URLs end up in proxy and access logs.
    """
    token = ""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        token = credentials.strip()
    if not token:
        token = request.cookies.get("accesskey", "").strip()
    if not token:
        in_query = next(
            (name for name in QUERY_TOKEN_NAMES if request.query_params.get(name)), None
        )
        if in_query is not None and not config.query_token:
            raise _refused(
                "TOKEN_IN_QUERY",
                f"a token in the URL (?{in_query}=) is refused, as URLs are logged by "
                "proxies and servers: send 'Authorization: Bearer <token>' or the cookie "
                "'accesskey=<token>' (an operator may allow the URL form with [api] "
                "query_token = true, for clients that cannot send a header)",
            )
        if in_query is not None:
            token = request.query_params[in_query]
    if not token:
        raise _refused(
            "TOKEN_MISSING",
            "no API token: send 'Authorization: Bearer <token>' or the cookie 'accesskey=<token>'",
        )
    given = token.encode()
    customer_id = ""
    # Compare with every configured token, without stopping early: constant time.
    for configured in config.tokens:
        if hmac.compare_digest(given, configured.token.encode()) and not customer_id:
            customer_id = configured.customer_id
    if not customer_id:
        raise _refused("TOKEN_INVALID", "the API token is not valid")
    return customer_id


def json_response(value: Any, status_code: int = 200) -> Response:
    """A resource (or page of resources) as the JSON response body."""
    return Response(msgspec.json.encode(value), status_code, media_type="application/json")
