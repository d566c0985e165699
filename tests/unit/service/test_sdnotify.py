"""sd_notify: datagrams reach a real AF_UNIX socket named by NOTIFY_SOCKET; no socket, no-op."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from dialerd.service import logs, sdnotify


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A datagram socket standing in for systemd's, named by ``NOTIFY_SOCKET``."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield sock


def received(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_ready_watchdog_stopping_and_status_reach_systemd(notify_socket: socket.socket) -> None:
    assert sdnotify.ready()
    assert received(notify_socket) == ["READY=1"]
    assert sdnotify.watchdog()
    assert received(notify_socket) == ["WATCHDOG=1"]
    assert sdnotify.status("2 running campaigns\n14 active attempts")
    assert received(notify_socket) == ["STATUS=2 running campaigns 14 active attempts"]
    assert sdnotify.stopping()
    assert received(notify_socket) == ["STOPPING=1"]


def test_reloading_carries_the_monotonic_clock(notify_socket: socket.socket) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert sdnotify.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000

    reloading, monotonic = received(notify_socket)
    assert reloading == "RELOADING=1"
    name, _, usec = monotonic.partition("=")
    assert name == "MONOTONIC_USEC"
    assert before <= int(usec) <= after


def test_abstract_namespace_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"dialerd-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)

        assert sdnotify.ready()
        assert received(sock) == ["READY=1"]


def test_without_notify_socket_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)

    assert sdnotify.ready() is False
    assert sdnotify.watchdog() is False


def test_send_failure_returns_false_instead_of_raising(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens.sock"))

    assert sdnotify.ready() is False
    assert sdnotify.stopping() is False


def test_watchdog_interval_from_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_interval() == 30.0

    monkeypatch.delenv("WATCHDOG_PID")
    assert sdnotify.watchdog_interval() == 30.0


def test_watchdog_meant_for_another_process_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))

    assert sdnotify.watchdog_interval() is None


@pytest.mark.parametrize("usec", ["", "0", "soon"])
def test_no_watchdog_without_a_valid_interval(monkeypatch: pytest.MonkeyPatch, usec: str) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", usec)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)

    assert sdnotify.watchdog_interval() is None


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Undo the test's ``configure_logging``."""
    root = logging.getLogger()
    level = root.level
    yield
    for handler in [h for h in root.handlers if h.get_name() == logs.HANDLER_NAME]:
        root.removeHandler(handler)
    root.setLevel(level)
    structlog.reset_defaults()


@pytest.mark.usefixtures("restore_logging")
def test_send_failure_is_logged_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sdnotify, "_warned", False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens.sock"))
    logs.configure_logging("info", "json")

    sdnotify.watchdog()
    sdnotify.watchdog()

    warnings = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["level"], line["event"]) for line in warnings] == [
        ("warning", "cannot notify systemd")
    ]
