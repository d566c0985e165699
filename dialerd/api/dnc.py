"""Handlers of ``/v1.0/dnc_numbers``: a customer's do-not-call list (dialerd extension).

Numbers are E.164 (``normalize_e164``: separators dropped). ``POST`` adds one number
(a JSON object), up to ``MAX_DNC_PER_BODY`` (a JSON array, all or none) or a whole file
(CSV with a ``number`` column and optionally ``detail``, or NDJSON of those objects; all
or nothing, read as a stream like a target import). A number already listed keeps its
entry. Another customer's number answers 404 like an unlisted one.
"""

from __future__ import annotations

import csv
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, Final, cast

from starlette.requests import Request
from starlette.responses import Response

from dialerd.api import bodies, jsontext, quotas, targets_import
from dialerd.api.context import ApiContext, json_response
from dialerd.api.errors import ApiError, invalid
from dialerd.api.parsing import (
    CSV_TYPES,
    JSON_TYPES,
    NDJSON_TYPES,
    body_chunks,
    json_body,
    page_query,
    require_media_type,
    stopped_import,
)
from dialerd.api.targets_import import ImportRejected
from dialerd.model import DncNumber, normalize_e164

CSV_COLUMNS: Final = ("number", "detail")
CSV_DOC: Final = "Header row, then one number per row. Columns: number (E.164, required), detail."


def path_number(request: Request) -> str:
    """The number of the path in E.164; a 400 naming it when it is not one."""
    text = str(request.path_params["number"])
    try:
        return normalize_e164(text)
    except ValueError as exc:
        raise invalid(f"number: {exc}") from None


def not_listed(number: str) -> ApiError:
    """The 404 of a number that is not on the caller's list."""
    return ApiError(404, "DNC_NUMBER_NOT_FOUND", f"{number} is not on the do-not-call list")


async def create_dnc_numbers(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``POST /dnc_numbers``: a JSON object or array, or a CSV or NDJSON file."""
    kind = require_media_type(request, JSON_TYPES | CSV_TYPES | NDJSON_TYPES)
    now = ctx.now()
    if kind in JSON_TYPES:
        # A union is no ``type[T]`` to mypy; msgspec decodes it all the same.
        body: bodies.DncNumberCreate | list[bodies.DncNumberCreate] = await json_body(
            request, ctx, cast("type[Any]", bodies.DncNumbersCreate)
        )
        single = isinstance(body, bodies.DncNumberCreate)
        items = [body] if isinstance(body, bodies.DncNumberCreate) else body
        entries = [item.to_model(customer_id, now) for item in items]
        adding = await quotas.new_numbers(ctx.store, customer_id, entries)
        async with ctx.quotas.room(ctx.store, customer_id, "dnc_number", adding):
            stored = await ctx.store.add_dnc_numbers(entries)
        return json_response(stored[0] if single else bodies.DncNumberList(stored))
    chunks = body_chunks(request, ctx.config.max_body_bytes)
    rows = _csv_rows if kind in CSV_TYPES else _ndjson_rows
    count = 0
    with ctx.stoppable_import() as stopping:
        count = await _import_numbers(ctx, customer_id, rows(chunks, customer_id, now))
    if stopping.cancelled_caught:
        raise await stopped_import(request)
    return json_response(bodies.ImportResult(count))


async def _import_numbers(
    ctx: ApiContext, customer_id: str, numbers: AsyncIterator[tuple[int, DncNumber | str]]
) -> int:
    """Import a file's do-not-call numbers (the file's ``numbers``); how many."""
    try:
        # Counted as it is read: past the quota, nothing is imported.
        async with ctx.quotas.room(ctx.store, customer_id, "dnc_number", 0, recount=True) as room:
            limits = ctx.quotas.of(customer_id)
            count = await ctx.store.import_dnc_numbers(
                quotas.counted_dnc(
                    ctx.store, customer_id, limits, room.usage, targets_import.batches(numbers)
                )
            )
            # Numbers listed already count too: the count is recounted in time.
            room.added = count
    except ImportRejected as exc:
        raise exc.as_api_error() from None
    return count


async def list_dnc_numbers(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``GET /dnc_numbers``: newest first, numbers added together in descending order."""
    page_size, page_token = page_query(request)
    return json_response(await ctx.store.list_dnc_numbers(customer_id, page_size, page_token))


async def get_dnc_number(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``GET /dnc_numbers/{number}``."""
    number = path_number(request)
    entry = await ctx.store.get_dnc_number(customer_id, number)
    if entry is None:
        raise not_listed(number)
    return json_response(entry)


async def delete_dnc_number(request: Request, ctx: ApiContext, customer_id: str) -> Response:
    """``DELETE /dnc_numbers/{number}``: the number may be dialed again."""
    number = path_number(request)
    removed = await ctx.store.remove_dnc_number(customer_id, number)
    if removed is None:
        raise not_listed(number)
    return json_response(removed)


def _header(text: str) -> list[str]:
    columns = [name.strip() for name in next(csv.reader([text]), [])]
    unknown = [name for name in columns if name not in CSV_COLUMNS]
    if unknown:
        raise ValueError(
            f"unknown column(s) {', '.join(map(repr, unknown))}; "
            f"the columns are {', '.join(CSV_COLUMNS)}"
        )
    if len(set(columns)) != len(columns):
        raise ValueError("a column is given twice")
    if "number" not in columns:
        raise ValueError("no number column")
    return columns


def _csv_rows(
    chunks: AsyncIterable[bytes], customer_id: str, now: str
) -> AsyncIterator[tuple[int, DncNumber | str]]:
    def entry(row: dict[str, Any]) -> DncNumber:
        return jsontext.convert(row, bodies.DncNumberCreate).to_model(customer_id, now)

    return targets_import.csv_rows(chunks, _header, entry)


async def _ndjson_rows(
    chunks: AsyncIterable[bytes], customer_id: str, now: str
) -> AsyncIterator[tuple[int, DncNumber | str]]:
    async for line, record in targets_import.records(chunks, quoted=False):
        if not record.strip():
            continue
        try:
            entry = jsontext.decode(record, bodies.DncNumberCreate)
            yield line, entry.to_model(customer_id, now)
        except jsontext.JsonProblem as exc:
            yield line, str(exc)
