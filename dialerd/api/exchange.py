"""What every control API handler shares: its context, the caller's customer, and
reading paths, queries and bodies into validated values.
"""

from __future__ import annotations

import hmac
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import anyio
import msgspec
from starlette.requests import Request
from starlette.responses import Response

from dialerd.api import jsontext, roundtrip
from dialerd.api.errors import ApiError, invalid
from dialerd.api.quotas import QuotaGate
from dialerd.config import ApiConfig
from dialerd.control import CampaignControl
from dialerd.model import format_time
from dialerd.ports import Clock
from dialerd.store import MAX_PAGE_SIZE, ApiStore

T = TypeVar("T")
S = TypeVar("S", bound=msgspec.Struct)

JSON_TYPES: Final = frozenset({"application/json"})
CSV_TYPES: Final = frozenset({"text/csv"})
NDJSON_TYPES: Final = frozenset({"application/x-ndjson", "application/ndjson"})
DRAIN_BYTES: Final = 16 * 1024 * 1024
DRAIN_SECONDS: Final = 5.0
# A page token is a tm_create, optionally followed by "|<id>" (see dialerd.store.ports);
# do-not-call numbers are listed by "|<number>".
PAGE_TOKEN: Final = re.compile(
    r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}"
    r"(\|(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\+[0-9]{1,15}))?"
)


@dataclass
class ApiContext:
    """The daemon's parts a handler may use, and the reloadable API configuration."""

    store: ApiStore
    control: CampaignControl
    clock: Clock
    config: ApiConfig
    # Requests in progress per customer (``max_requests_per_customer``).
    in_progress: dict[str, int] = field(default_factory=dict)
    # The customers' quotas (behaviour.md §10, Quotas), swapped on reload.
    quotas: QuotaGate = field(default_factory=QuotaGate)

    def now(self) -> str:
        """The current time as a reference timestamp string."""
        return format_time(self.clock.now())

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


UUID_TEXT: Final = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
INTEGER_TEXT: Final = re.compile(r"[+-]?[0-9]{1,18}")


def path_id(request: Request, name: str, kind: str) -> str:
    """A UUID from the path, in lower case; a 400 when it is not a UUID (as the reference)."""
    text = str(request.path_params[name])
    if not UUID_TEXT.fullmatch(text):
        raise invalid(f"{name}: expected a {kind} id (a UUID), got {text[:64]!r}")
    return text.lower()


def page_query_size(request: Request) -> int:
    """``page_size`` of a list request (default 100; clamped to 1..100 as the reference)."""
    size_text = request.query_params.get("page_size", "")
    page_size = MAX_PAGE_SIZE
    if size_text:
        if not INTEGER_TEXT.fullmatch(size_text):
            raise invalid(f"page_size: expected an integer, got {size_text[:20]!r}")
        page_size = max(1, min(int(size_text), MAX_PAGE_SIZE))
    return page_size


def page_query(request: Request) -> tuple[int, str]:
    """``page_size`` (default 100; clamped to 1..100 as the reference does) and
    ``page_token`` of a list request."""
    page_size = page_query_size(request)
    page_token = request.query_params.get("page_token", "")
    if page_token and not PAGE_TOKEN.fullmatch(page_token):
        raise invalid(
            "page_token: expected the next_page_token of the previous page "
            "('YYYY-MM-DD HH:MM:SS.ffffff', optionally followed by '|<id>')"
        )
    return page_size, page_token


def uuid_query(request: Request, name: str) -> str | None:
    """An optional UUID query parameter ("" = absent); 400 if present and not a UUID."""
    text = request.query_params.get(name, "")
    if not text:
        return None
    if not UUID_TEXT.fullmatch(text):
        raise invalid(f"{name}: expected a UUID, got {text[:64]!r}")
    return text.lower()


def media_type(request: Request) -> str:
    """The request's media type without parameters, lower case ("" when absent)."""
    return request.headers.get("content-type", "").partition(";")[0].strip().lower()


def require_media_type(request: Request, accepted: frozenset[str]) -> str:
    """The request's media type if it is one of ``accepted``; a 415 otherwise."""
    kind = media_type(request) or "application/json"
    if kind not in accepted:
        raise ApiError(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            f"Content-Type {kind[:60]!r} is not accepted here; send {', '.join(sorted(accepted))}",
        )
    return kind


async def body_chunks(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The body as it arrives; a 413 once it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise too_large(limit)
        if chunk:
            yield chunk
    request.scope.setdefault("state", {})["body_done"] = True


async def drain_body(request: Request) -> None:
    """Read and drop what is left of the body before an early error answer.

    A client still sending when the server closes gets a connection reset instead of
    the answer; so up to ``DRAIN_BYTES`` (within ``DRAIN_SECONDS``) are read first.
    """
    if request.scope.get("state", {}).get("body_done"):
        return
    drained = 0
    with anyio.move_on_after(DRAIN_SECONDS):
        while drained <= DRAIN_BYTES:
            try:
                message = await request.receive()
            except ApiError:
                return  # the body paused too long: the answer closes the connection
            if message["type"] != "http.request":
                return
            drained += len(message.get("body", b""))
            if not message.get("more_body", False):
                return


def too_large(limit: int) -> ApiError:
    """The 413 for a body over ``limit`` bytes."""
    return ApiError(413, "BODY_TOO_LARGE", f"the request body is larger than {limit} bytes")


async def json_body(request: Request, ctx: ApiContext, body_type: type[T]) -> T:
    """The JSON body decoded as ``body_type``; 415, 413 or a 400 naming the bad field."""
    require_media_type(request, JSON_TYPES)
    data = bytearray()
    async for chunk in body_chunks(request, ctx.config.max_json_bytes):
        data += chunk
    return decode_json(bytes(data), body_type)


def decode_json(data: bytes, body_type: type[T]) -> T:
    """Decode and validate JSON; a 400 saying which field is wrong and what was expected."""
    return convert_json(load_json(data), body_type)


def load_json(data: bytes) -> Any:
    """The JSON value of a body; a 400 ``MALFORMED_JSON`` saying what is wrong with it."""
    try:
        return jsontext.loads(data)
    except jsontext.JsonProblem as exc:
        raise invalid(f"the body is not acceptable JSON: {exc}", "MALFORMED_JSON") from None


def convert_json(value: Any, body_type: type[T]) -> T:
    """A JSON value validated as ``body_type``; a 400 naming the wrong field."""
    try:
        return jsontext.convert(value, body_type)
    except jsontext.JsonProblem as exc:
        raise invalid(str(exc)) from None


async def json_update_body(
    request: Request,
    ctx: ApiContext,
    body_type: type[S],
    stored: msgspec.Struct,
    kind: str,
    resource_path: str,
) -> S:
    """A PUT body as ``body_type``; fields of the ``stored`` resource the body type does
    not set may be sent back unchanged (see ``dialerd.api.roundtrip``)."""
    require_media_type(request, JSON_TYPES)
    data = bytearray()
    async for chunk in body_chunks(request, ctx.config.max_json_bytes):
        data += chunk
    value = roundtrip.drop_echoes(load_json(bytes(data)), body_type, stored, kind, resource_path)
    return convert_json(value, body_type)


def json_response(value: Any, status_code: int = 200) -> Response:
    """A resource (or page of resources) as the JSON response body."""
    return Response(msgspec.json.encode(value), status_code, media_type="application/json")
