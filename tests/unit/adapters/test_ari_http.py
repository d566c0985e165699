"""ARI's HTTP client against a real HTTP/1.1 server on loopback: connections kept and
reused, at most as many as its size, a connection the server closed never reused, any
framing of the answer read, and the event websocket's frames."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import pytest
from anyio.abc import SocketStream

from dialerd.adapters.asterisk.ari_http import AriHttp, AriHttpError, connect_events


@dataclass
class Seen:
    """What the server received: each request with the connection it came on."""

    connections: int = 0
    requests: list[tuple[int, str, dict[str, str], bytes]] = field(default_factory=list)


Answer = Callable[[str, SocketStream], Awaitable[bool]]  # True: keep the connection


async def _read_request(
    stream: SocketStream, buffer: bytearray
) -> tuple[str, dict[str, str], bytes]:
    while b"\r\n\r\n" not in buffer:
        buffer += await stream.receive()
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    del buffer[:end]
    headers = {}
    for line in head[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(buffer) < length:
        buffer += await stream.receive()
    body = bytes(buffer[:length])
    del buffer[:length]
    return head[0], headers, body


def _ok(body: bytes = b"{}", status: str = "200 OK", extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


@asynccontextmanager
async def server(answer: Answer) -> AsyncIterator[tuple[str, Seen]]:
    seen = Seen()

    async def serve(stream: SocketStream) -> None:
        seen.connections += 1
        number = seen.connections
        buffer = bytearray()
        async with stream:
            try:
                while True:
                    line, headers, body = await _read_request(stream, buffer)
                    seen.requests.append((number, line, headers, body))
                    if not await answer(line, stream):
                        return
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610 (anyio)
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, serve)
        yield f"http://127.0.0.1:{port}/ari", seen
        group.cancel_scope.cancel()


def client(url: str, size: int = 4, timeout: float = 5.0) -> AriHttp:
    return AriHttp(
        url, "dialerd", "s3cret", size=size, connect_timeout=timeout, request_timeout=timeout
    )


async def test_requests_go_one_after_another_on_one_kept_connection() -> None:
    async def answer(line: str, stream: SocketStream) -> bool:
        await stream.send(_ok(json.dumps({"asked": line}).encode()))
        return True

    async with server(answer) as (url, seen):
        http = client(url)
        first = await http.request(
            "POST",
            "/channels",
            params={"endpoint": "PJSIP/+15551230001@trunk", "app": "dialerd"},
            json={"variables": {"DIALERD_ID": "x y"}},
        )
        for _ in range(4):
            await http.request("DELETE", "/channels/abc", params={"reason": "normal"})
        await http.aclose()
    assert first.status_code == 200
    assert first.json() == {
        "asked": "POST /ari/channels?endpoint=PJSIP/%2B15551230001@trunk&app=dialerd HTTP/1.1"
    }
    assert seen.connections == 1
    _, _, headers, body = seen.requests[0]
    assert headers["authorization"] == "Basic " + base64.b64encode(b"dialerd:s3cret").decode()
    assert json.loads(body) == {"variables": {"DIALERD_ID": "x y"}}
    assert [request[0] for request in seen.requests] == [1, 1, 1, 1, 1]


async def test_requests_at_once_open_at_most_size_connections() -> None:
    waiting = 0
    all_in = anyio.Event()

    async def answer(line: str, stream: SocketStream) -> bool:
        nonlocal waiting
        waiting += 1
        if waiting >= 2:
            all_in.set()
        await all_in.wait()
        await stream.send(_ok())
        return True

    async with server(answer) as (url, seen):
        http = client(url, size=2)
        async with anyio.create_task_group() as group:
            for _ in range(6):
                group.start_soon(http.request, "GET", "/channels")
        assert http.open_connections == 2
        await http.aclose()
    assert len(seen.requests) == 6
    assert seen.connections == 2


async def test_a_connection_the_server_closed_is_not_used_again() -> None:
    async def answer(line: str, stream: SocketStream) -> bool:
        await stream.send(_ok())
        return False  # closes after answering, as Asterisk does past session_keep_alive

    async with server(answer) as (url, seen):
        http = client(url)
        for _ in range(3):
            response = await http.request("GET", "/channels")
            assert response.status_code == 200
            await anyio.wait_all_tasks_blocked()  # the server's close has come through
        await http.aclose()
    assert seen.connections == 3


async def test_chunked_and_error_answers_are_read_whole() -> None:
    async def answer(line: str, stream: SocketStream) -> bool:
        if "missing" in line:
            await stream.send(_ok(b'{"message": "Channel not found"}', "404 Not Found"))
        else:
            await stream.send(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b'5\r\n[{"id\r\n8;ext=1\r\n": "a"}]\r\n0\r\n\r\n'
            )
        return True

    async with server(answer) as (url, seen):
        http = client(url)
        listed = await http.request("GET", "/channels")
        missing = await http.request("DELETE", "/channels/missing")
        await http.aclose()
    assert listed.json() == [{"id": "a"}]
    assert (missing.status_code, missing.is_error) == (404, True)
    assert missing.json() == {"message": "Channel not found"}
    assert seen.connections == 1


async def test_no_answer_in_time_is_an_error_and_the_connection_is_dropped() -> None:
    async def answer(line: str, stream: SocketStream) -> bool:
        if "slow" in line:
            await anyio.sleep_forever()
        await stream.send(_ok())
        return True

    async with server(answer) as (url, seen):
        http = client(url, timeout=0.2)
        with pytest.raises(AriHttpError, match="no answer to GET /slow"):
            await http.request("GET", "/slow")
        assert (await http.request("GET", "/channels")).status_code == 200
        await http.aclose()
    assert seen.connections == 2


async def test_nothing_listening_is_an_error() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    http = client(f"http://127.0.0.1:{port}/ari", timeout=1.0)
    with pytest.raises(AriHttpError, match="cannot connect"):
        await http.request("GET", "/channels")


def _frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    return bytes(((0x80 if fin else 0) | opcode, len(payload))) + payload


async def test_event_stream_messages_pings_and_close() -> None:
    pong = anyio.Event()
    answered: list[bytes] = []

    async def answer(line: str, stream: SocketStream) -> bool:
        key = seen.requests[-1][2]["sec-websocket-key"]
        accept = base64.b64encode(
            hashlib.sha1(
                (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode(), usedforsecurity=False
            ).digest()
        ).decode()
        await stream.send(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
        )
        await stream.send(_frame(0x1, b'{"type": "StasisStart"}'))
        await stream.send(_frame(0x1, b'{"type": ', fin=False) + _frame(0x0, b'"Dial"}'))
        await stream.send(_frame(0x9, b"hi"))
        data = await stream.receive()
        mask, payload = data[2:6], data[6 : 6 + (data[1] & 0x7F)]
        answered.append(bytes(data[0:1]) + bytes(b ^ mask[n % 4] for n, b in enumerate(payload)))
        pong.set()
        await stream.send(_frame(0x8, (1001).to_bytes(2, "big")))
        return False

    async with server(answer) as (url, seen):
        http = client(url)
        events = await connect_events(
            http, "/events", {"app": "dialerd"}, ping_interval=10, ping_timeout=10
        )
        assert await events.receive_text() == '{"type": "StasisStart"}'
        assert await events.receive_text() == '{"type": "Dial"}'
        with pytest.raises(AriHttpError, match="closed \\(code 1001\\)"):
            await events.receive_text()
        await events.aclose()
        await http.aclose()
    assert pong.is_set()
    assert answered == [b"\x8ahi"]  # a pong (FIN + 0xA) carrying the ping's payload
    assert seen.requests[0][1] == "GET /ari/events?app=dialerd HTTP/1.1"
