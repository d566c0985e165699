"""Operations endpoints, served without authentication: ``/metrics``, ``/healthz``, ``/readyz``.

The API app mounts ``ops_routes(...)``; ``metrics_app()`` serves ``/metrics`` alone when the
config gives metrics a listen address of their own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from dialerd import metrics

Readiness = Callable[[], Awaitable[str | None]]
# A readiness check that takes longer than this is itself a reason not to be ready.
READINESS_TIMEOUT = 5.0


async def metrics_endpoint(request: Request) -> Response:
    """The registry in the exposition format the scraper asked for (text by default)."""
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encoder(metrics.REGISTRY), headers={"Content-Type": content_type})


async def healthz(_request: Request) -> Response:
    """200 while the process is alive and serving requests."""
    return JSONResponse({"status": "ok"})


def ops_routes(readiness: Readiness, *, metrics_enabled: bool = True) -> list[BaseRoute]:
    """Routes of ``/healthz``, ``/readyz`` (503 with the reason when ``readiness`` gives one)
    and, unless disabled, ``/metrics``."""

    async def readyz(_request: Request) -> Response:
        reason: str | None = f"readiness check took over {READINESS_TIMEOUT:g} s"
        with anyio.move_on_after(READINESS_TIMEOUT):
            reason = await readiness()
        if reason is not None:
            return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)
        return JSONResponse({"status": "ready"})

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    if metrics_enabled:
        routes.append(Route("/metrics", metrics_endpoint, methods=["GET"]))
    return routes


def metrics_app() -> Starlette:
    """An app serving only ``/metrics``, for a listen address of its own."""
    return Starlette(routes=[Route("/metrics", metrics_endpoint, methods=["GET"])])
