"""Serves rendered prompts to Asterisk over HTTP: ``GET /tts/<sha256>.wav``.

Asterisk plays ``sound:http://...`` media through res_http_media_cache (it downloads the
file into its own cache, keyed by the URL, and plays it from there), so dialerd and
Asterisk need no shared directory and may run on different hosts. The server answers
only for files of the TTS cache, named by the hash of what they say; anything else is a
404. It binds where the operator says (``[telephony.asterisk] media_listen``, loopback by
default) and closes each connection after one answer.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

import anyio
import structlog
from anyio.abc import SocketStream, TaskStatus

log = structlog.get_logger("dialerd.ari.media")

_REQUEST: Final = re.compile(rb"^(GET|HEAD) /tts/([0-9a-f]{64})\.wav(?:\?[^ ]*)? HTTP/1\.[01]$")
MAX_REQUEST: Final = 8192
REQUEST_TIMEOUT: Final = 10.0


class MediaServer:
    """The prompts of ``directory`` over HTTP on ``host:port``."""

    def __init__(self, directory: Path, host: str, port: int) -> None:
        self.directory = directory
        self.host = host
        self.port = port

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled. An address that cannot be bound is logged, not raised:
        calls go on, and each prompt fails (``dialerd_campaign_prompt_failures_total``)."""
        try:
            listener = await anyio.create_tcp_listener(
                local_host=self.host, local_port=self.port, reuse_port=False
            )
        except OSError as exc:
            where = f"{self.host}:{self.port}"
            log.error("cannot serve prompts to Asterisk; talk actions will fail",
                      listen=where, error=exc.strerror or str(exc))  # fmt: skip
            task_status.started()
            return
        async with listener:
            log.info("serving prompts to Asterisk", listen=f"{self.host}:{self.port}")
            task_status.started()
            await listener.serve(self._answer)

    async def _answer(self, stream: SocketStream) -> None:
        async with stream:
            try:
                with anyio.fail_after(REQUEST_TIMEOUT):
                    head = await _read_head(stream)
                    await stream.send(await self._response(head))
            except (TimeoutError, anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                return

    async def _response(self, head: bytes) -> bytes:
        request_line = head.split(b"\r\n", 1)[0]
        match = _REQUEST.match(request_line)
        if match is None:
            return _status(404, "Not Found")
        path = anyio.Path(self.directory / f"{match[2].decode()}.wav")
        try:
            body = await path.read_bytes()
        except OSError:
            return _status(404, "Not Found")
        headers = (
            b"HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\n"
            # A prompt's name is the hash of what it says: it never changes.
            b"Cache-Control: public, max-age=86400\r\n"
            + f'ETag: "{match[2].decode()}"\r\nContent-Length: {len(body)}\r\n'.encode()
            + b"Connection: close\r\n\r\n"
        )
        return headers if match[1] == b"HEAD" else headers + body


async def _read_head(stream: SocketStream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive(4096)
        if len(data) > MAX_REQUEST:
            break
    return data


def _status(code: int, reason: str) -> bytes:
    return f"HTTP/1.1 {code} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
