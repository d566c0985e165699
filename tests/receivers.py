"""Real peers on loopback for the actions' side effects: an HTTP receiver and an SMTP
server, each in a thread of its own so sync and async tests (and a daemon in another
process) can reach them."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    # The status the receiver answered with.
    status: int = 200


@dataclass
class HttpReceiver:
    """Answers every request with ``status`` (and ``headers``) and keeps what it got."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    requests: list[Received] = field(default_factory=list)
    port: int = 0
    # Seconds each answer waits (a slow receiver), unless ``release`` is set first.
    delay: float = 0.0
    release: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def record(self, request: Received) -> None:
        with self._lock:
            self.requests.append(request)

    def received(self) -> list[Received]:
        with self._lock:
            return list(self.requests)


class _Server(ThreadingHTTPServer):
    # socketserver listens with a backlog of 5: too few for a campaign's concurrency.
    request_queue_size = 128


@contextmanager
def http_receiver(
    status: int = 200, headers: dict[str, str] | None = None
) -> Iterator[HttpReceiver]:
    """An HTTP/1.1 server on 127.0.0.1 (a free port) for as long as the block runs."""
    receiver = HttpReceiver(status=status, headers=dict(headers or {}))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status = receiver.status
            receiver.record(
                Received(
                    self.command,
                    self.path,
                    {name.lower(): value for name, value in self.headers.items()},
                    body,
                    status,
                )
            )
            if receiver.delay:
                receiver.release.wait(receiver.delay)
            self.send_response(status)
            for name, value in receiver.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        do_GET = do_POST = do_PUT = do_DELETE = _any

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.port = server.server_address[1]
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="http-receiver", daemon=True
    )
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release.set()
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass
class SmtpInbox:
    """What the SMTP server accepted: one entry per mail (envelope and parsed message)."""

    port: int = 0
    # An SMTP reply for every DATA instead of "250 OK" (for example a refusal).
    answer: str = "250 OK"
    mails: list[tuple[str, list[str], Message]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.answer.startswith("250"):
            content = envelope.content
            raw = content if isinstance(content, bytes) else str(content).encode()
            with self._lock:
                self.mails.append(
                    (str(envelope.mail_from), list(envelope.rcpt_tos), message_from_bytes(raw))
                )
        return self.answer

    def received(self) -> list[tuple[str, list[str], Message]]:
        with self._lock:
            return list(self.mails)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def smtp_server(answer: str = "250 OK") -> Iterator[SmtpInbox]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1, plain, no login."""
    inbox = SmtpInbox(answer=answer)
    inbox.port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=inbox.port)
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()
