"""HTTP/1.1 to Asterisk's ARI on persistent connections: what ``ari`` sends its requests
through.

ARI's requests are small and alike (a method, a path under ``/ari``, query parameters,
now and then a JSON body; a JSON answer with ``Content-Length``), and a dialer sends one
or two per call. A general client pays for what it does not need here at every request
(URL objects, cookie jars, auth flows, a pool that looks for its async library): this
one writes each request in one send on a connection kept open, and reads the status,
the headers it needs and the body. Connections are asyncio protocols that keep reading:
what arrives while dialerd is busy is in the buffer when it looks (a stream of anyio
turns reading on and off around each read, two system calls and a loop turn a read).

At most ``size`` connections are open at once (size it for the calls in flight: every
call waits on at most one request at a time); an idle one is reused newest first, and
dropped once idle longer than ``IDLE_SECONDS`` (Asterisk closes a session idle for
``session_keep_alive``, 15 s by default, and ``session_limit``, 100 by default, bounds
the sessions it serves) or when the server has closed it meanwhile. A request is never
sent twice: a failure in transit is an ``AriHttpError`` and the connection is closed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import select
import ssl
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import quote, urlsplit

import anyio
import msgspec

# Seconds an idle connection is kept for reuse: under Asterisk's default keep-alive.
IDLE_SECONDS: Final = 10.0
# Bytes read and not yet taken past which reading pauses (Asterisk then waits on TCP).
_MAX_BUFFER: Final = 4 * 1024 * 1024
# The longest status line and headers accepted, and the largest body (a channel list).
_MAX_HEAD: Final = 64 * 1024
_MAX_BODY: Final = 64 * 1024 * 1024
_SAFE: Final = "-_.~!$'()*,;:@/"

# Query parameters: a mapping, or pairs where a name repeats (play's media).
Params = Mapping[str, str] | Sequence[tuple[str, str | int | float | bool | None]]


class AriHttpError(Exception):
    """The request did not get an answer: no connection, a timeout, or a connection
    closed or garbled in transit (the text says which; never the credentials)."""


class AriResponse:
    """ARI's answer: the status and the body."""

    __slots__ = ("content", "reason_phrase", "status_code")

    def __init__(self, status_code: int, reason_phrase: str, content: bytes) -> None:
        self.status_code = status_code
        self.reason_phrase = reason_phrase
        self.content = content

    def __repr__(self) -> str:
        return f"<AriResponse {self.status_code} {self.reason_phrase}>"

    @property
    def is_error(self) -> bool:
        return self.status_code >= 400

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON; ``ValueError`` if it is not."""
        try:
            return msgspec.json.decode(self.content)
        except msgspec.DecodeError as exc:
            raise ValueError(str(exc)) from None


def query_string(params: Params | None) -> str:
    """``?a=1&b=2`` (percent-encoded), or "" without parameters; None values are left out,
    booleans are ``true``/``false`` as ARI reads them."""
    if not params:
        return ""
    pairs = params.items() if isinstance(params, Mapping) else params
    parts = []
    for name, value in pairs:
        if value is None:
            continue
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        parts.append(f"{quote(name, _SAFE)}={quote(text, _SAFE)}")
    return "?" + "&".join(parts) if parts else ""


class _Protocol(asyncio.Protocol):
    """What asyncio reads for one connection: the bytes, kept in ``buffer`` as they come
    (reading stays on, so the events that arrive while dialerd is busy are there at once,
    and no read is a trip through the loop of its own), and its end."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.ended = False  # the server closed its side, or the connection was lost
        self.error: BaseException | None = None
        self.transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _MAX_BUFFER and self.transport is not None:
            # Not taken for a while: Asterisk waits (TCP) until the reader catches up.
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.ended = True
        self._wake()
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        self.ended = True
        self.error = exc
        self._wake()
        self.resume_writing()

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait_data(self) -> None:
        """Until more bytes (or the end) come."""
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        await waiter

    async def writable(self) -> None:
        if self._writable is not None:
            await self._writable


class _Connection:
    """One open connection and the bytes read past the last answer."""

    __slots__ = ("idle_since", "protocol", "socket", "transport")

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self.transport = transport
        self.protocol = protocol
        self.idle_since = 0.0
        self.socket = transport.get_extra_info("socket")

    @property
    def buffer(self) -> bytearray:
        return self.protocol.buffer

    def closed_by_peer(self) -> bool:
        """Whether the server closed (or wrote on) the idle connection: it is not reused."""
        if self.protocol.ended or self.protocol.buffer or self.transport.is_closing():
            return True
        try:  # what the loop has not read yet
            readable, _, _ = select.select([self.socket], [], [], 0)
        except (OSError, ValueError, TypeError):
            return True
        return bool(readable)

    async def send(self, data: bytes) -> None:
        if self.protocol.ended or self.transport.is_closing():
            raise AriHttpError("the connection is closed")
        self.transport.write(data)
        await self.protocol.writable()

    async def aclose(self) -> None:
        self.transport.close()

    async def read_head(self) -> int:
        """Read until the end of the headers; the index just past them."""
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end >= 0:
                return end + 4
            if len(self.buffer) > _MAX_HEAD:
                raise AriHttpError("the answer's headers are too long")
            await self.fill()

    async def read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            await self.fill()
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    async def read_line(self) -> bytes:
        while True:
            end = self.buffer.find(b"\r\n")
            if end >= 0:
                line = bytes(self.buffer[:end])
                del self.buffer[: end + 2]
                return line
            if len(self.buffer) > _MAX_HEAD:
                raise AriHttpError("a chunk header is too long")
            await self.fill()

    async def fill(self) -> None:
        """Wait for more bytes; ``AriHttpError`` once the connection has ended."""
        if self.protocol.ended:
            error = self.protocol.error
            if error is not None:
                raise AriHttpError(f"the connection broke: {error}")
            raise AriHttpError("the server closed the connection")
        await self.protocol.wait_data()


class AriHttp:
    """Requests to ``url`` (``http://host:port/ari``) with basic auth, on at most
    ``size`` persistent connections."""

    def __init__(
        self,
        url: str,
        username: str,
        password: str,
        *,
        size: int,
        connect_timeout: float,
        request_timeout: float,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"ARI URL {url!r}: not http(s)://host[:port]")
        self.host = parts.hostname
        self.tls = ssl.create_default_context() if parts.scheme == "https" else None
        self.port = parts.port or (443 if self.tls else 80)
        self.base = parts.path.rstrip("/")
        self.size = max(1, size)
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        netloc = self.host if parts.port is None else f"{self.host}:{parts.port}"
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        # The headers every request carries, after the request line.
        self.headers = (
            f"Host: {netloc}\r\nAuthorization: Basic {token}\r\n"
            "Accept: application/json\r\nUser-Agent: dialerd\r\n"
        )
        self._idle: list[_Connection] = []
        self._slots = anyio.Semaphore(self.size)
        self._closed = False

    @property
    def open_connections(self) -> int:
        """Connections open now: the idle ones and those carrying a request."""
        return len(self._idle) + self.size - self._slots.value

    async def aclose(self) -> None:
        """Close the idle connections; those in use close when their request ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json: Any = None,
    ) -> AriResponse:
        """One request; its answer whatever its status. ``AriHttpError`` when none came."""
        target = f"{self.base}{path}{query_string(params)}"
        if json is None:
            body = b""
            head = f"{method} {target} HTTP/1.1\r\n{self.headers}Content-Length: 0\r\n\r\n"
        else:
            body = msgspec.json.encode(json)
            head = (
                f"{method} {target} HTTP/1.1\r\n{self.headers}"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            )
        message = head.encode() + body
        # A free slot is taken without a trip through the event loop (anyio's acquire
        # yields even then): one loop iteration less per request.
        try:
            self._slots.acquire_nowait()
        except anyio.WouldBlock:
            await self._slots.acquire()
        try:
            connection = await self._connection()
            keep = False
            try:
                with anyio.fail_after(self.request_timeout):
                    await connection.send(message)
                    response, keep = await self._read(connection, method)
            except TimeoutError:
                raise AriHttpError(
                    f"no answer to {method} {path} in {self.request_timeout:g} s"
                ) from None
            except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                raise AriHttpError(f"{method} {path}: {type(exc).__name__}: {exc}") from None
            finally:
                if keep and not self._closed:
                    connection.idle_since = time.monotonic()
                    self._idle.append(connection)
                else:
                    await connection.aclose()
        finally:
            self._slots.release()
        return response

    async def _connection(self) -> _Connection:
        """An idle connection still open, else a new one."""
        now = time.monotonic()
        # The oldest idle ones first: those idle too long are closed, not left to linger.
        while self._idle and now - self._idle[0].idle_since >= IDLE_SECONDS:
            await self._idle.pop(0).aclose()
        while self._idle:
            connection = self._idle.pop()
            if now - connection.idle_since < IDLE_SECONDS and not connection.closed_by_peer():
                return connection
            await connection.aclose()
        return await self.connect()

    async def connect(self) -> _Connection:
        """A new connection (outside the pool); ``AriHttpError`` if none can be made."""
        loop = asyncio.get_running_loop()
        try:
            with anyio.fail_after(self.connect_timeout):
                transport, protocol = await loop.create_connection(
                    _Protocol,
                    self.host,
                    self.port,
                    ssl=self.tls,
                    server_hostname=self.host if self.tls is not None else None,
                )
        except TimeoutError:
            raise AriHttpError(
                f"no connection to {self.host}:{self.port} in {self.connect_timeout:g} s"
            ) from None
        except OSError as exc:
            raise AriHttpError(
                f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}"
            ) from None
        assert isinstance(transport, asyncio.Transport)
        return _Connection(transport, protocol)

    async def _read(self, connection: _Connection, method: str) -> tuple[AriResponse, bool]:
        """The answer, and whether the connection may carry another request."""
        end = await connection.read_head()
        head = bytes(connection.buffer[:end])
        del connection.buffer[:end]
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise AriHttpError(f"not an HTTP answer: {lines[0][:80]!r}")
        status = int(code)
        length: int | None = None
        chunked = False
        close = version == "HTTP/1.0"
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                value = value.strip()
                if not value.isdigit() or int(value) > _MAX_BODY:
                    raise AriHttpError(f"bad Content-Length {value[:20]!r}")
                length = int(value)
            elif name == "transfer-encoding":
                chunked = "chunked" in value.lower()
            elif name == "connection":
                option = value.strip().lower()
                close = option == "close" or (close and option != "keep-alive")
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            content = b""
        elif chunked:
            content = await self._chunked(connection)
        elif length is not None:
            content = await connection.read_exactly(length)
        else:  # no length: the body ends with the connection
            content = await self._until_closed(connection)
            close = True
        return AriResponse(status, reason.strip(), content), not close

    @staticmethod
    async def _chunked(connection: _Connection) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = await connection.read_line()
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise AriHttpError(f"bad chunk size {size_text[:20]!r}") from None
            if size == 0:
                while await connection.read_line():  # trailers, up to the empty line
                    pass
                return b"".join(parts)
            total += size
            if total > _MAX_BODY:
                raise AriHttpError("the answer's body is too large")
            parts.append(await connection.read_exactly(size))
            await connection.read_exactly(2)

    @staticmethod
    async def _until_closed(connection: _Connection) -> bytes:
        while not connection.protocol.ended:
            if len(connection.buffer) > _MAX_BODY:
                raise AriHttpError("the answer's body is too large")
            await connection.protocol.wait_data()
        body = bytes(connection.buffer)
        connection.buffer.clear()
        return body


# -- the event websocket (RFC 6455, client side) ---------------------------------------

_WS_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TEXT, _BINARY, _CONTINUATION = 0x1, 0x2, 0x0
_CLOSE, _PING, _PONG = 0x8, 0x9, 0xA
# The largest message accepted (an event is a few kB; a channel snapshot list more).
MAX_MESSAGE: Final = 1024 * 1024


class AriWebSocket:
    """ARI's event stream: text messages, in order. Pings the server when it has been
    quiet ``ping_interval`` seconds, and gives up (``AriHttpError``) when nothing comes
    ``ping_timeout`` seconds after that ping."""

    def __init__(
        self, connection: _Connection, *, ping_interval: float, ping_timeout: float
    ) -> None:
        self._connection = connection
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self._fragments: list[bytes] = []

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            try:
                with anyio.move_on_after(1):
                    await self._send(_CLOSE, b"\x03\xe8")  # 1000: normal closure
            except (OSError, AriHttpError):
                pass
            await self._connection.aclose()

    def caught_up(self) -> bool:
        """Whether every byte received so far has been read (no message waits unread)."""
        return not self._connection.buffer and not self._fragments

    async def receive_text(self) -> str:
        """The next text (or binary, as UTF-8) message; ``AriHttpError`` once the stream
        is closed or broken."""
        while True:
            opcode, fin, payload = await self._frame()
            if opcode == _PING:
                await self._send(_PONG, payload)
                continue
            if opcode == _PONG:
                continue
            if opcode == _CLOSE:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                raise AriHttpError(f"the event stream was closed (code {code})")
            if opcode in (_TEXT, _BINARY):
                self._fragments = [payload]
            elif opcode == _CONTINUATION and self._fragments:
                self._fragments.append(payload)
            else:
                raise AriHttpError(f"unexpected websocket frame (opcode {opcode})")
            if sum(map(len, self._fragments)) > MAX_MESSAGE:
                raise AriHttpError(f"an event is longer than {MAX_MESSAGE} bytes")
            if fin:
                message = b"".join(self._fragments)
                self._fragments = []
                try:
                    return message.decode("utf-8")
                except UnicodeDecodeError:
                    raise AriHttpError("an event is not UTF-8") from None

    async def _frame(self) -> tuple[int, bool, bytes]:
        connection = self._connection
        buffer = connection.buffer
        pinged = False
        while True:
            size = len(buffer)
            if size >= 2:
                length = buffer[1] & 0x7F
                start = 2
                if length == 126:
                    start = 4
                    if size >= 4:
                        length = int.from_bytes(buffer[2:4], "big")
                elif length == 127:
                    start = 10
                    if size >= 10:
                        length = int.from_bytes(buffer[2:10], "big")
                masked = buffer[1] & 0x80
                if masked:
                    start += 4
                if length > MAX_MESSAGE:
                    raise AriHttpError(f"an event is longer than {MAX_MESSAGE} bytes")
                if size >= start + length:
                    first = buffer[0]
                    payload = bytes(buffer[start : start + length])
                    if masked:  # servers do not mask; unmasked here all the same
                        mask = buffer[start - 4 : start]
                        payload = bytes(b ^ mask[n % 4] for n, b in enumerate(payload))
                    del buffer[: start + length]
                    return first & 0x0F, bool(first & 0x80), payload
            if connection.protocol.ended:
                error = connection.protocol.error
                if error is not None:
                    raise AriHttpError(f"the event stream broke: {error}")
                raise AriHttpError("the event stream was closed by the server")
            wait = self.ping_timeout if pinged else self.ping_interval
            with anyio.move_on_after(wait):
                await connection.protocol.wait_data()
                pinged = False
                continue
            if pinged:
                raise AriHttpError(f"no answer to a websocket ping in {self.ping_timeout:g} s")
            await self._send(_PING, b"dialerd")
            pinged = True

    async def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[n % 4] for n, b in enumerate(payload))
        # Control frames only: FIN set, payload under 126 bytes.
        frame = bytes((0x80 | opcode, 0x80 | len(payload))) + mask + masked
        await self._connection.send(frame)


async def connect_events(
    http: AriHttp, path: str, params: Params, *, ping_interval: float, ping_timeout: float
) -> AriWebSocket:
    """Open the websocket at ``path`` (under the ARI URL); ``AriHttpError`` if refused."""
    key = base64.b64encode(os.urandom(16))
    target = f"{http.base}{path}{query_string(params)}"
    request = (
        f"GET {target} HTTP/1.1\r\n{http.headers}Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    connection = await http.connect()
    try:
        with anyio.fail_after(http.request_timeout):
            await connection.send(request.encode())
            end = await connection.read_head()
    except TimeoutError:
        await connection.aclose()
        raise AriHttpError(
            f"no answer to the websocket request in {http.request_timeout:g} s"
        ) from None
    except BaseException:
        await connection.aclose()
        raise
    head = bytes(connection.buffer[:end]).decode("latin-1")
    del connection.buffer[:end]
    status = head.split("\r\n", 1)[0]
    accept = base64.b64encode(hashlib.sha1(key + _WS_GUID, usedforsecurity=False).digest()).decode()
    if " 101" not in status or accept not in head:
        await connection.aclose()
        raise AriHttpError(f"the event stream was refused: {status[:80]!r}")
    return AriWebSocket(connection, ping_interval=ping_interval, ping_timeout=ping_timeout)
