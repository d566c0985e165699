"""Serving the control API with Hypercorn inside the daemon's task group.

The daemon owns signals: Hypercorn is given a shutdown trigger, so it installs none.

Slow and idle clients are bounded (``[api]``, docs/operations.md "Security"): a
listener holds at most ``max_connections`` connections (one more is answered 503 and
closed at once); a connection idle between requests, or slow to send a request's
headers, is closed after ``keep_alive_timeout`` (Hypercorn's idle timer runs from the
connection's start until a whole request head has arrived); a head still incomplete
after ``HEADER_BYTES`` is answered 431 (h11 counts what it holds unparsed, so a whole
head arriving in one 64 KiB read is parsed). Request bodies are timed by the application
(``dialerd.api.app``), which answers 408.

A stop always ends: Hypercorn lets requests finish for ``GRACEFUL_SECONDS`` and then
cancels them; a request whose task has still not ended ``FORCE_SECONDS`` later is
cancelled again (``Requests``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Final, cast

import anyio
import msgspec
import structlog
from anyio.abc import TaskStatus
from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.utils import wrap_app
from starlette.applications import Starlette

from dialerd.config import ApiConfig, parse_listen

log = structlog.get_logger("dialerd.api")

# Largest request head (request line and headers) h11 buffers; beyond it, a 431.
HEADER_BYTES: Final = 16 * 1024
# Connections the kernel queues for a listener before they are accepted.
BACKLOG: Final = 1024
GRACEFUL_SECONDS: Final = 5.0
# After the graceful timeout, a request task still not ended is cancelled again this
# many seconds later (and every second after that).
FORCE_SECONDS: Final = 2.0
# The most a request whose app returned before its body ended spends taking the body
# chunks left in its queue, and the wait for each.
LEFTOVER_SECONDS: Final = 1.0
LEFTOVER_WAIT: Final = 0.05


class ServerLimits(msgspec.Struct, frozen=True, kw_only=True):
    """What one listener allows its clients (from ``[api]``)."""

    max_connections: int = 512
    keep_alive_timeout: float = 5.0

    @classmethod
    def of(cls, config: ApiConfig) -> ServerLimits:
        return cls(
            max_connections=config.max_connections,
            keep_alive_timeout=config.keep_alive_timeout,
        )


def _refusal() -> bytes:
    body = msgspec.json.encode(
        {
            "error": {
                "status": "UNAVAILABLE",
                "reason": "TOO_MANY_CONNECTIONS",
                "message": "the server holds its most connections ([api] max_connections); "
                "try again shortly",
                "request_id": "",
            }
        }
    )
    head = (
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nretry-after: 1\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


REFUSAL: Final = _refusal()


class _CountedSocket(socket.socket):
    """An accepted connection that tells its listener when it is closed."""

    _on_close: Callable[[], None] | None = None

    def close(self) -> None:
        on_close, self._on_close = self._on_close, None
        super().close()
        if on_close is not None:
            on_close()


class LimitedListener(socket.socket):
    """A listening socket that keeps at most ``limit`` accepted connections open.

    asyncio's event loop accepts through ``accept``; one connection over the limit is
    answered 503 and closed at once, so the daemon's descriptors stay bounded.
    """

    limit: int = 512
    open_connections: int = 0
    refused: int = 0

    def accept(self) -> tuple[socket.socket, Any]:
        while True:
            fd, address = self._accept()  # type: ignore[attr-defined]
            if self.open_connections < self.limit:
                break
            self._refuse(fd)
        connection = _CountedSocket(self.family, self.type, self.proto, fileno=fd)
        if socket.getdefaulttimeout() is None and self.gettimeout():
            connection.setblocking(True)
        self.open_connections += 1
        connection._on_close = self._connection_closed
        return connection, address

    def _refuse(self, fd: int) -> None:
        self.refused += 1
        if self.refused == 1 or self.refused % 1000 == 0:
            log.warning(
                "API listener at its connection limit; refusing connections",
                listen=str(self.getsockname()),
                max_connections=self.limit,
                refused=self.refused,
            )
        extra = socket.socket(self.family, self.type, self.proto, fileno=fd)
        try:
            extra.setblocking(False)
            extra.send(REFUSAL)
        except OSError:
            pass
        finally:
            extra.close()

    def _connection_closed(self) -> None:
        self.open_connections -= 1


def bind_socket(listen: str, limit: int = 512) -> LimitedListener:
    """A listening TCP socket on ``host:port`` holding at most ``limit`` connections;
    raise ``OSError`` naming the address if busy."""
    host, port = parse_listen(listen)
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = LimitedListener(family, kind, proto)
    sock.limit = limit
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {listen}: {exc.strerror}") from None
    return sock


class Requests:
    """The ASGI app as Hypercorn runs it: each HTTP request's task is kept until it ends,
    and the body chunks its app left unread are taken off its queue when the app returns.

    Hypercorn queues at most ``max_app_queue_size`` (10) body chunks per request and,
    when the request's task ends, puts ``http.disconnect`` behind them. A request
    cancelled at the graceful timeout while its handler was not reading (waiting for
    the store, say) with a full queue waited forever for that room, and so did the
    daemon's stop: the leftovers are read (shielded, bounded), and ``force`` cancels
    again any task that still has not ended.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.tasks: set[asyncio.Task[Any]] = set()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        ended = False

        async def tracked() -> Any:
            nonlocal ended
            message = await receive()
            ended = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        try:
            await self.app(scope, tracked, send)
        finally:
            if not ended:
                with anyio.CancelScope(shield=True), anyio.move_on_after(LEFTOVER_SECONDS):
                    while not ended:
                        with anyio.move_on_after(LEFTOVER_WAIT) as waited:
                            await tracked()
                        if waited.cancelled_caught:
                            break

    def force(self) -> int:
        """Cancel again every request task that has not ended; how many there were."""
        running = [task for task in self.tasks if not task.done()]
        for task in running:
            task.cancel()
        return len(running)

    def trigger(
        self, shutdown_trigger: Callable[[], Awaitable[None]], seconds: float
    ) -> Callable[[], Awaitable[None]]:
        """``shutdown_trigger``, and once it returned, ``force`` after ``seconds`` and then
        every second until ``stop_forcing``. (A loop timer, not a task: Hypercorn runs on
        asyncio, and a task group around it would take its own cancellations.)"""

        async def triggered() -> None:
            await shutdown_trigger()
            self._timer = asyncio.get_running_loop().call_later(seconds, self._force_again)

        return triggered

    _timer: asyncio.TimerHandle | None = None

    def _force_again(self) -> None:
        forced = self.force()
        if forced:
            log.warning("requests still running after the graceful timeout; cancelled",
                        requests=forced)  # fmt: skip
        self._timer = asyncio.get_running_loop().call_later(1.0, self._force_again)

    def stop_forcing(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def hypercorn_config(limits: ServerLimits) -> HypercornConfig:
    """Hypercorn settings: logs go through our logging only; idle and slow clients bounded."""
    config = HypercornConfig()
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = GRACEFUL_SECONDS
    config.include_server_header = False
    config.keep_alive_timeout = limits.keep_alive_timeout
    config.h11_max_incomplete_size = HEADER_BYTES
    config.backlog = BACKLOG
    # No read timeout: it would also cut a client waiting for a long answer (an import
    # being published); bodies are timed by the application, heads by the idle timer.
    config.read_timeout = None
    return config


async def serve_api(
    app: Starlette,
    listen: str,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]],
    limits: ServerLimits | None = None,
    task_status: TaskStatus[tuple[str, int]] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``listen`` until ``shutdown_trigger`` returns.

    ``task_status.started((host, port))`` is called once the socket listens (the port
    is the real one when ``listen`` asked for port 0), so connections made after it are
    accepted (queued until Hypercorn takes them).
    """
    limits = limits or ServerLimits()
    sock = bind_socket(listen, limits.max_connections)
    config = hypercorn_config(limits)
    host, port = sock.getsockname()[:2]
    task_status.started((str(host), int(port)))
    requests = Requests(app)
    try:
        # Starlette's ASGI signature is looser than Hypercorn's typed protocol; both are
        # ASGI 3. The socket is given as it is (not by descriptor), so its connection
        # limit holds.
        await worker_serve(
            wrap_app(cast(Any, requests), config.wsgi_max_body_size, "asgi"),
            config,
            sockets=Sockets(secure_sockets=[], insecure_sockets=[sock], quic_sockets=[]),
            shutdown_trigger=requests.trigger(
                shutdown_trigger, config.graceful_timeout + FORCE_SECONDS
            ),
        )
    finally:
        requests.stop_forcing()
