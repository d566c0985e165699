"""The error envelope of the control API: ``{"error": {status, reason, message, request_id}}``."""

from __future__ import annotations

from typing import Any, Final

import msgspec
from starlette.responses import Response

from dialerd.campaigns import (
    ActionsRefused,
    CampaignNotFound,
    CampaignNotStopped,
    CampaignRefused,
    ReferenceMissing,
    RunRefused,
)

# HTTP status -> canonical error status of the reference envelope.
CANONICAL: Final[dict[int, str]] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "INVALID_ARGUMENT",
    408: "DEADLINE_EXCEEDED",
    409: "FAILED_PRECONDITION",
    413: "INVALID_ARGUMENT",
    415: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What went wrong; ``details`` (bulk import) lists the first bad rows."""

    status: str
    reason: str
    message: str
    request_id: str
    details: list[dict[str, Any]] = msgspec.field(default_factory=list)


class ErrorResponse(msgspec.Struct, frozen=True):
    """The error envelope every non-2xx response carries."""

    error: ErrorBody


class ApiError(Exception):
    """Raised by a handler to answer with the error envelope."""

    def __init__(
        self,
        http_status: int,
        reason: str,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        drain: bool = True,
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.reason = reason
        self.message = message
        self.details = details or []
        self.headers = headers or {}
        # Read what is left of the body before answering (False: answer and close).
        self.drain = drain


def invalid(message: str, reason: str = "INVALID_ARGUMENT") -> ApiError:
    """A 400 naming what is wrong with the request."""
    return ApiError(400, reason, message)


def not_found(kind: str, resource_id: str) -> ApiError:
    """A 404 for an unknown id (or another customer's, which looks the same)."""
    return ApiError(404, f"{kind.upper()}_NOT_FOUND", f"{kind} {resource_id} not found")


def conflict(reason: str, message: str) -> ApiError:
    """A 409: the resource's current state does not allow the change."""
    return ApiError(409, reason, message)


def refusal(exc: CampaignRefused) -> ApiError:
    """The answer to a campaign command the service refused."""
    if isinstance(exc, CampaignNotFound):
        return not_found("campaign", exc.campaign_id)
    if isinstance(exc, RunRefused):
        return conflict("CAMPAIGN_NOT_RUNNABLE", str(exc))
    if isinstance(exc, CampaignNotStopped):
        return conflict("CAMPAIGN_NOT_STOPPED", str(exc))
    if isinstance(exc, ReferenceMissing):
        return invalid(str(exc), f"{exc.kind.upper()}_NOT_FOUND")
    if isinstance(exc, ActionsRefused):
        details = [msgspec.structs.asdict(each) for each in exc.errors]
        return ApiError(400, "INVALID_ACTIONS", str(exc), details=details)
    return conflict("CAMPAIGN_REFUSED", str(exc))


def error_response(error: ApiError, request_id: str) -> Response:
    """The envelope for ``error`` as a JSON response."""
    body = ErrorResponse(
        ErrorBody(
            status=CANONICAL.get(error.http_status, "INVALID_ARGUMENT"),
            reason=error.reason,
            message=error.message,
            request_id=request_id,
            details=error.details,
        )
    )
    headers = {"x-request-id": request_id, **error.headers}
    return Response(
        msgspec.json.encode(body),
        status_code=error.http_status,
        media_type="application/json",
        headers=headers,
    )
