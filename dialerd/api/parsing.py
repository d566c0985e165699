"""Reading a control API request into validated values: ids in the path, queries,
media types and bodies (a 400, 413 or 415 naming what is wrong).
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator
from typing import Any, Final, TypeVar

import anyio
import msgspec
from starlette.requests import Request

from dialerd.api import jsontext, roundtrip
from dialerd.api.context import ApiContext
from dialerd.api.errors import ApiError, invalid
from dialerd.store import MAX_PAGE_SIZE

T = TypeVar("T")
S = TypeVar("S", bound=msgspec.Struct)

JSON_TYPES: Final = frozenset({"application/json"})
CSV_TYPES: Final = frozenset({"text/csv"})
NDJSON_TYPES: Final = frozenset({"application/x-ndjson", "application/ndjson"})
DRAIN_BYTES: Final = 16 * 1024 * 1024
DRAIN_SECONDS: Final = 5.0
# The most an import abandoned at the daemon's stop reads of the rest of its body: well
# within Hypercorn's graceful timeout (``dialerd.api.server.GRACEFUL_SECONDS``).
STOP_DRAIN_SECONDS: Final = 2.0
# A page token is a tm_create, optionally followed by "|<id>" (see dialerd.store.ports);
# do-not-call numbers are listed by "|<number>".
PAGE_TOKEN: Final = re.compile(
    r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}"
    r"(\|(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\+[0-9]{1,15}))?"
)


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


async def drain_body(
    request: Request, *, seconds: float = DRAIN_SECONDS, most: float = DRAIN_BYTES
) -> None:
    """Read and drop what is left of the body before an early error answer.

    A client still sending when the server closes gets a connection reset instead of
    the answer; so up to ``most`` bytes (within ``seconds``) are read first.
    """
    if request.scope.get("state", {}).get("body_done"):
        return
    drained = 0
    with anyio.move_on_after(seconds):
        while drained <= most:
            try:
                message = await request.receive()
            except ApiError:
                return  # the body paused too long: the answer closes the connection
            if message["type"] != "http.request":
                return
            drained += len(message.get("body", b""))
            if not message.get("more_body", False):
                return


async def stopped_import(request: Request) -> ApiError:
    """The 503 of an import the daemon's stop abandoned, once the rest of its body is
    read (for at most ``STOP_DRAIN_SECONDS``): with its queue of unread body chunks
    full, Hypercorn waits, after the answer, for room to put ``http.disconnect`` in it;
    the connection then never closes and the daemon's stop waits for it forever."""
    await drain_body(request, seconds=STOP_DRAIN_SECONDS, most=math.inf)
    return ApiError(
        503,
        "SHUTTING_DOWN",
        "the daemon is stopping: nothing of the file was imported; send it again once "
        "the daemon runs",
        headers={"connection": "close", "retry-after": "5"},
        drain=False,
    )


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
