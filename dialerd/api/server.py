"""Serving the control API with Hypercorn inside the daemon's task group.

The daemon owns signals: Hypercorn is given a shutdown trigger, so it installs none.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any, cast

import anyio
from anyio.abc import TaskStatus
from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig
from starlette.applications import Starlette

from dialerd.config import parse_listen


def bind_socket(listen: str) -> socket.socket:
    """A listening TCP socket on ``host:port``; raise ``OSError`` naming the address if busy."""
    host, port = parse_listen(listen)
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {listen}: {exc.strerror}") from None
    return sock


def hypercorn_config(sock: socket.socket) -> HypercornConfig:
    """Hypercorn settings: serve the bound socket; logs go through our logging only."""
    config = HypercornConfig()
    config.bind = [f"fd://{sock.fileno()}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 5.0
    config.include_server_header = False
    return config


async def serve_api(
    app: Starlette,
    listen: str,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]],
    task_status: TaskStatus[tuple[str, int]] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``listen`` until ``shutdown_trigger`` returns.

    ``task_status.started((host, port))`` is called once the socket listens (the port
    is the real one when ``listen`` asked for port 0), so connections made after it are
    accepted (queued until Hypercorn takes them).
    """
    sock = bind_socket(listen)
    config = hypercorn_config(sock)
    host, port = sock.getsockname()[:2]
    # Hypercorn opens its own socket object on the descriptor and closes it at the end.
    sock.detach()
    task_status.started((str(host), int(port)))
    # Starlette's ASGI signature is looser than Hypercorn's typed protocol; both are ASGI 3.
    await serve(cast(Any, app), config, shutdown_trigger=shutdown_trigger)
