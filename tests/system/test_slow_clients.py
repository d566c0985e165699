"""Slow clients against the daemon as a real process: stalled request bodies, slow
request heads and idle connections are cut off, and they cannot take the API from
other clients nor the daemon's file descriptors."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.system.daemon_process import TOKEN, DaemonProcess

OTHER_TOKEN = "other-customer-token"
OTHER_CUSTOMER = "0b7e2d36-1c55-4f0e-9a33-2b8f0c6d1e47"
STALLED = 300
PER_CUSTOMER = 40
MAX_CONNECTIONS = 200
BODY_TIMEOUT = 3.0
KEEP_ALIVE = 2.0
# Generous bounds for a loaded machine: the daemon's limits are seconds, not minutes.
WAIT_SECONDS = 60.0


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    process = DaemonProcess(
        tmp_path,
        api=(
            f"max_connections = {MAX_CONNECTIONS}\n"
            f"max_requests_per_customer = {PER_CUSTOMER}\n"
            f"body_timeout = {BODY_TIMEOUT}\n"
            f"keep_alive_timeout = {KEEP_ALIVE}\n"
        ),
        extra_config=f'[[api.tokens]]\ntoken = "{OTHER_TOKEN}"\ncustomer_id = "{OTHER_CUSTOMER}"\n',
    )
    try:
        process.wait_ready()
        yield process
    finally:
        process.close()


def open_descriptors(daemon: DaemonProcess) -> int:
    return len(os.listdir(f"/proc/{daemon.process.pid}/fd"))


def connect(daemon: DaemonProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=WAIT_SECONDS)
    return sock


def stalled_body(daemon: DaemonProcess) -> socket.socket:
    """A connection that sent a whole request head with a valid token and 10 bytes of
    its 1,000-byte body, then stalls."""
    sock = connect(daemon)
    sock.sendall(
        b"POST /v1.0/outplans HTTP/1.1\r\nhost: dialerd\r\n"
        + f"authorization: Bearer {TOKEN}\r\n".encode()
        + b"content-type: application/json\r\ncontent-length: 1000\r\n\r\n"
        + b'{"name": "'
    )
    return sock


def answer(sock: socket.socket) -> bytes:
    """What the server sent until it closed the connection ("" if it sent nothing)."""
    received = b""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        received += chunk
    return received


def wait_until(condition: object, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {WAIT_SECONDS} s: {what}")


def test_hundreds_of_stalled_bodies_leave_others_served_and_descriptors_bounded(
    daemon: DaemonProcess,
) -> None:
    baseline = open_descriptors(daemon)
    stalled = [stalled_body(daemon) for _ in range(STALLED)]
    try:
        # Beyond its limit of requests in progress, the customer's stalled requests are
        # answered 429 at once, without waiting for their bodies, and closed.
        wait_until(
            lambda: open_descriptors(daemon) <= baseline + PER_CUSTOMER + 10,
            "the stalled requests beyond the customer's limit closed",
        )
        held = open_descriptors(daemon)
        assert held <= baseline + PER_CUSTOMER + 10
        other = httpx.get(
            f"{daemon.base}/v1.0/campaigns",
            headers={"authorization": f"Bearer {OTHER_TOKEN}"},
            timeout=WAIT_SECONDS,
        )
        assert other.status_code == 200, other.text
        assert daemon.ops.get("/healthz").status_code == 200
        busy = daemon.http.get("/v1.0/campaigns")
        assert busy.status_code == 429
        assert busy.json()["error"]["reason"] == "TOO_MANY_REQUESTS"
        assert "max_requests_per_customer" in busy.json()["error"]["message"]
        # Every stalled request is answered: 429 beyond the customer's limit, 503 when it
        # came while the listener held max_connections, 408 once its body has paused for
        # body_timeout; none is left open.
        answers = [answer(sock) for sock in stalled]
    finally:
        for sock in stalled:
            sock.close()
    statuses = [reply.split(b" ", 2)[1] if reply else b"closed" for reply in answers]
    assert statuses.count(b"408") >= PER_CUSTOMER - 5, sorted(set(statuses))
    assert set(statuses) <= {b"408", b"429", b"503"}, sorted(set(statuses))
    timed_out = next(reply for reply in answers if b" 408 " in reply[:20])
    assert b"REQUEST_TIMEOUT" in timed_out
    assert b"body_timeout" in timed_out
    wait_until(lambda: open_descriptors(daemon) <= baseline + 5, "descriptors back to baseline")
    assert daemon.http.get("/v1.0/campaigns").status_code == 200
    assert not daemon.http.get("/v1.0/outplans").json()["result"]


def test_a_slow_request_head_and_an_idle_connection_are_closed(daemon: DaemonProcess) -> None:
    slow_head = connect(daemon)
    slow_head.sendall(b"GET /v1.0/campaigns HTTP/1.1\r\nhost: dialerd\r\n")
    idle = connect(daemon)
    idle.sendall(
        f"GET /v1.0/campaigns HTTP/1.1\r\nhost: dialerd\r\nauthorization: Bearer {TOKEN}\r\n"
        "\r\n".encode()
    )
    try:
        assert answer(slow_head) == b""
        # The idle connection got its answer, then was closed after keep_alive_timeout.
        assert answer(idle).startswith(b"HTTP/1.1 200 ")
    finally:
        slow_head.close()
        idle.close()


def test_connections_beyond_the_listeners_limit_are_refused_with_503(
    daemon: DaemonProcess,
) -> None:
    baseline = open_descriptors(daemon)
    # Connections that send nothing are held until keep_alive_timeout closes them.
    held = [connect(daemon) for _ in range(MAX_CONNECTIONS)]
    try:
        wait_until(
            lambda: open_descriptors(daemon) >= baseline + MAX_CONNECTIONS,
            "the daemon holds the connections",
        )
        extra = connect(daemon)
        try:
            reply = answer(extra)
        finally:
            extra.close()
        assert reply.startswith(b"HTTP/1.1 503 "), reply[:80]
        assert b"max_connections" in reply
        assert open_descriptors(daemon) <= baseline + MAX_CONNECTIONS + 2
    finally:
        for sock in held:
            sock.close()
    wait_until(lambda: open_descriptors(daemon) <= baseline + 5, "descriptors back to baseline")
    assert daemon.http.get("/v1.0/campaigns").status_code == 200


def test_an_oversized_request_head_is_a_431(daemon: DaemonProcess) -> None:
    # h11 refuses a head still incomplete past 16 KiB (a complete head that arrives in
    # one read, up to 64 KiB, is parsed): 20 KiB of a head without its end.
    sock = connect(daemon)
    try:
        sock.sendall(
            b"GET /v1.0/campaigns HTTP/1.1\r\nhost: dialerd\r\nx-filler: " + b"a" * (20 * 1024)
        )
        assert answer(sock).startswith(b"HTTP/1.1 431 ")
    finally:
        sock.close()
