"""The OpenAPI document of the control API, built from the endpoint table and the msgspec models."""

from __future__ import annotations

from typing import Any, Final

import msgspec

from dialerd import __version__
from dialerd.api.bodies import ImportResult
from dialerd.api.errors import ErrorResponse
from dialerd.api.parsing import PAGE_TOKEN
from dialerd.api.routes import ENDPOINTS, PREFIX, Endpoint
from dialerd.core.actions import OPTION_TYPES
from dialerd.store import MAX_PAGE_SIZE

REF_TEMPLATE: Final = "#/components/schemas/{name}"
ERRORS: Final = {
    400: "Bad input (a malformed id in the path, JSON that is not acceptable, an unknown "
    "field, a value out of its limits): the message names the field and what was expected",
    401: "No API token, or a wrong one",
    404: "No such resource for this customer",
    409: "The resource's state does not allow this, or it would take the customer over a "
    "quota (reason QUOTA_EXCEEDED: the message names the quota and its value)",
    408: "The body paused for [api] body_timeout seconds, or took over body_total_timeout "
    "(the connection is closed)",
    413: "The body is too large",
    415: "The body's Content-Type is not accepted",
    429: "The customer has [api] max_requests_per_customer requests in progress already",
    500: "A bug in dialerd",
    503: "The store is unavailable; nothing was changed",
}


def _schemas() -> tuple[dict[Any, dict[str, Any]], dict[str, Any]]:
    types: list[Any] = [ErrorResponse, ImportResult]
    for endpoint in ENDPOINTS:
        types += [endpoint.response, *endpoint.also_returns]
        if endpoint.body is not None:
            types.append(endpoint.body)
    types += OPTION_TYPES.values()
    unique = list(dict.fromkeys(types))
    refs, components = msgspec.json.schema_components(unique, ref_template=REF_TEMPLATE)
    _describe_options(components)
    return dict(zip(unique, refs, strict=True)), components


def _describe_options(components: dict[str, Any]) -> None:
    """Name each action type's option schema (one per type, as VoIPbin's
    FlowManagerActionOption*) in the description of ``ActionBody.option``."""
    option = components["ActionBody"]["properties"]["option"]
    listed = "; ".join(
        f"`{kind}`: {REF_TEMPLATE.format(name=struct.__name__)}"
        for kind, struct in sorted(OPTION_TYPES.items())
    )
    option["description"] += f". Its fields depend on the type: {listed}"
    option["x-option-schemas"] = {
        kind: {"$ref": REF_TEMPLATE.format(name=struct.__name__)}
        for kind, struct in sorted(OPTION_TYPES.items())
    }


def _parameters(endpoint: Endpoint) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string", "format": "uuid"},
        }
        for name in ("id", "target_id")
        if "{" + name + "}" in endpoint.path
    ]
    if "{number}" in endpoint.path:
        parameters.append(
            {
                "name": "number",
                "in": "path",
                "required": True,
                "description": "An E.164 number, like +15551234567",
                "schema": {"type": "string"},
            }
        )
    if endpoint.listing:
        parameters += [
            {
                "name": "page_size",
                "in": "query",
                "required": False,
                "description": f"Items per page (default {MAX_PAGE_SIZE}); a value outside "
                f"1..{MAX_PAGE_SIZE} is clamped to that range, as the reference API does",
                "schema": {"type": "integer"},
            },
            {
                "name": "page_token",
                "in": "query",
                "required": False,
                "description": 'The next_page_token of the previous page ("" or absent: '
                "the first page). Every non-empty page has one; the page after the last "
                "item is empty.",
                "schema": {
                    "type": "string",
                    "pattern": f"^(?:{PAGE_TOKEN.pattern})$",
                },
            },
        ]
    parameters += [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": description,
            "schema": {"type": "string", "format": "uuid"},
        }
        for name, description in endpoint.uuid_queries
    ]
    return parameters


# Creations a customer quota may refuse (dialerd.api.quotas).
QUOTA_CHECKED: Final = frozenset(
    {"/campaigns", "/outdials", "/outdials/{id}/targets", "/dnc_numbers"}
)


def _error_codes(endpoint: Endpoint) -> list[int]:
    has_input = endpoint.body is not None or endpoint.listing or "{" in endpoint.path
    codes = [400, 401] if has_input else [401]
    if "{" in endpoint.path:
        codes.append(404)
    campaign_change = endpoint.method == "PUT" and endpoint.path.startswith("/campaigns/")
    quota_checked = endpoint.method == "POST" and endpoint.path in QUOTA_CHECKED
    if endpoint.method == "DELETE" or campaign_change or quota_checked:
        codes.append(409)
    if endpoint.body is not None:
        codes += [408, 413, 415]
    return [*codes, 429, 500, 503]


def _operation(endpoint: Endpoint, refs: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    ok_schema = refs[endpoint.response]
    shapes = [refs[shape] for shape in endpoint.also_returns]
    if endpoint.bulk:
        shapes.append(refs[ImportResult])
    if shapes:
        ok_schema = {"anyOf": [ok_schema, *shapes]}
    operation: dict[str, Any] = {
        "operationId": endpoint.operation_id,
        "summary": endpoint.summary,
        "tags": [endpoint.path.split("/")[1]],
        "parameters": _parameters(endpoint),
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": ok_schema}}},
            **{
                str(code): {
                    "description": ERRORS[code],
                    "content": {"application/json": {"schema": refs[ErrorResponse]}},
                }
                for code in _error_codes(endpoint)
            },
        },
    }
    if endpoint.body is not None:
        content: dict[str, Any] = {"application/json": {"schema": refs[endpoint.body]}}
        if endpoint.bulk:
            content["text/csv"] = {"schema": {"type": "string", "description": endpoint.csv_doc}}
            content["application/x-ndjson"] = {
                "schema": {"type": "string", "description": "One JSON object per line."}
            }
        operation["requestBody"] = {"required": True, "content": content}
    return operation


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of every ``/v1.0`` endpoint."""
    refs, components = _schemas()
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in ENDPOINTS:
        operations = paths.setdefault(PREFIX + endpoint.path, {})
        operations[endpoint.method.lower()] = _operation(endpoint, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "dialerd control API",
            "version": __version__,
            "description": "Campaigns, outplans, outdials, targets and campaigncalls, "
            "in the shapes of the VoIPbin campaign API; do-not-call numbers (an extension); "
            "the registered queues (read only). A PUT body may also carry the resource's own "
            "fields that the operation does not set, unchanged (a resource sent back whole); "
            "a changed one is a 400 naming it.",
        },
        "security": [{"bearer": []}, {"accesskey": []}, {"token": []}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "accesskey": {"type": "apiKey", "in": "cookie", "name": "accesskey"},
                "token": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "token",
                    "description": "Only when the operator sets [api] query_token = true "
                    "(?accesskey= is accepted too); otherwise a 401",
                },
            },
        },
    }
