"""Operations endpoints ``/metrics``, ``/healthz``, ``/readyz`` on a listener of their own.

``ops_app(...)`` is served on ``[ops] listen`` (loopback by default), never on the API's
listener: metrics carry queue names and readiness reasons that are no API client's
business. With ``[ops] token`` (or ``token_file``) every request must send
``Authorization: Bearer <token>``; the token can change on reload (``OpsAuth.token``).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

import anyio
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

Readiness = Callable[[], Awaitable[str | None]]
Endpoint = Callable[[Request], Awaitable[Response]]
# A readiness check that takes longer than this is itself a reason not to be ready.
READINESS_TIMEOUT = 5.0


class OpsAuth:
    """The bearer token the operations listener asks for (None: no token needed)."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token

    def allows(self, request: Request) -> bool:
        if self.token is None:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), self.token.encode()
        )


def metrics_endpoint(registry: CollectorRegistry) -> Endpoint:
    """``registry`` in the exposition format the scraper asked for (text by default)."""

    async def exposition(request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(registry), headers={"Content-Type": content_type})

    return exposition


async def healthz(_request: Request) -> Response:
    """200 while the process is alive and serving requests."""
    return JSONResponse({"status": "ok"})


def _guarded(endpoint: Endpoint, auth: OpsAuth) -> Endpoint:
    async def guarded(request: Request) -> Response:
        if not auth.allows(request):
            return JSONResponse(
                {"status": "unauthorized", "reason": "send Authorization: Bearer <[ops] token>"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="dialerd-ops"'},
            )
        return await endpoint(request)

    return guarded


def ops_routes(
    readiness: Readiness,
    *,
    registry: CollectorRegistry | None = None,
    auth: OpsAuth | None = None,
) -> list[BaseRoute]:
    """Routes of ``/healthz``, ``/readyz`` (503 with the reason when ``readiness`` gives one)
    and, given a ``registry`` (``dialerd.metrics.create_registry()``), ``/metrics``; behind
    ``auth``'s token when it has one."""
    guard = auth or OpsAuth()

    async def readyz(_request: Request) -> Response:
        reason: str | None = f"readiness check took over {READINESS_TIMEOUT:g} s"
        with anyio.move_on_after(READINESS_TIMEOUT):
            reason = await readiness()
        if reason is not None:
            return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)
        return JSONResponse({"status": "ready"})

    endpoints: list[tuple[str, Endpoint]] = [("/healthz", healthz), ("/readyz", readyz)]
    if registry is not None:
        endpoints.append(("/metrics", metrics_endpoint(registry)))
    return [Route(path, _guarded(endpoint, guard), methods=["GET"]) for path, endpoint in endpoints]


def ops_app(
    readiness: Readiness,
    *,
    registry: CollectorRegistry | None = None,
    auth: OpsAuth | None = None,
) -> Starlette:
    """The operations listener's app: ``ops_routes`` and nothing else."""
    return Starlette(routes=ops_routes(readiness, registry=registry, auth=auth))
