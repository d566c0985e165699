"""The daemon under systemd: sd_notify (READY, RELOADING, STOPPING, STATUS) and the
watchdog, which keeps being fed while the store is away and stops when the scheduler hangs."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import RedisServer
from tests.system.daemon_process import (
    WAIT_SECONDS,
    DaemonProcess,
    NotifySocket,
    event_is,
    start_campaign,
    wait_for_line,
)


def watchdog_env(notify_socket: NotifySocket) -> dict[str, str]:
    """What systemd sets for a unit with WatchdogSec=1."""
    return {"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "1000000"}


@contextmanager
def on_a_redis_of_its_own(
    tmp_path: Path, notify_socket: NotifySocket, timeout: float
) -> Iterator[tuple[RedisServer, DaemonProcess]]:
    """A ready daemon under a watchdog, on a redis-server of this test alone (it will be
    stopped with SIGSTOP) whose calls fail after ``timeout``."""
    workdir = tmp_path / "redis"
    workdir.mkdir()
    redis = RedisServer(workdir)
    assert redis.process is not None
    extra = f'[store]\nbackend = "redis"\n[store.redis]\nurl = "{redis.url}"\ntimeout = {timeout}\n'
    daemon = DaemonProcess(tmp_path, extra_config=extra, env=watchdog_env(notify_socket))
    try:
        daemon.wait_ready()
        yield redis, daemon
    finally:
        redis.process.send_signal(signal.SIGCONT)
        daemon.close()
        redis.stop()


def test_notify_ready_watchdog_reload_and_stopping(
    tmp_path: Path, notify_socket: NotifySocket
) -> None:
    daemon = DaemonProcess(tmp_path, env=watchdog_env(notify_socket))
    try:
        notify_socket.wait_for("READY=1")
        notify_socket.wait_for("WATCHDOG=1")
        assert any(line.startswith("STATUS=") for message in notify_socket.seen for line in
                   message.splitlines())  # fmt: skip
        daemon.process.send_signal(signal.SIGHUP)
        notify_socket.wait_for("RELOADING=1")
        reloading = notify_socket.seen[-1].splitlines()
        assert any(line.startswith("MONOTONIC_USEC=") for line in reloading)
        notify_socket.wait_for("READY=1")
        daemon.process.send_signal(signal.SIGTERM)
        notify_socket.wait_for("STOPPING=1")
        assert daemon.process.wait(timeout=20) == 0
    finally:
        daemon.close()


def test_a_rejected_reload_shows_in_status_until_a_good_one(
    tmp_path: Path, notify_socket: NotifySocket
) -> None:
    daemon = DaemonProcess(tmp_path, env={"NOTIFY_SOCKET": str(notify_socket.path)})
    try:
        notify_socket.wait_for("READY=1")
        running = daemon.config.read_text()
        daemon.config.write_text(running.replace("tick_interval = 0.2", 'tick_interval = "x"'))
        daemon.process.send_signal(signal.SIGHUP)
        notify_socket.wait_for("READY=1")
        [status] = [line for line in notify_socket.seen[-1].splitlines() if "STATUS=" in line]
        assert "last reload rejected, old config kept" in status
        assert "tick_interval" in status
        # The watchdog's periodic STATUS keeps saying it.
        time.sleep(0.2)
        daemon.config.write_text(running)
        daemon.process.send_signal(signal.SIGHUP)
        notify_socket.wait_for("READY=1")
        [status] = [line for line in notify_socket.seen[-1].splitlines() if "STATUS=" in line]
        assert "rejected" not in status
        assert status.startswith("STATUS=0 running campaigns")
        assert daemon.stop() == 0
    finally:
        daemon.close()


def test_a_hung_scheduler_stops_the_watchdog_pings(
    tmp_path: Path, notify_socket: NotifySocket
) -> None:
    # A store without a usable timeout (a network black hole, say): calls never return.
    with on_a_redis_of_its_own(tmp_path, notify_socket, timeout=3600) as (redis, daemon):
        notify_socket.wait_for("WATCHDOG=1")
        # The store hangs: no round of the scheduler ends, so it makes no progress.
        redis.process.send_signal(signal.SIGSTOP)
        ready = daemon.ops.get("/readyz")
        assert ready.status_code == 503
        assert "took over" in ready.json()["reason"]
        # Pings go on until the last progress is a few ticks old, then stop for good.
        deadline = time.monotonic() + WAIT_SECONDS
        while notify_socket.count("WATCHDOG=1", seconds=1.0):
            assert time.monotonic() < deadline, "watchdog pings never stopped"
        assert notify_socket.count("WATCHDOG=1", seconds=3.0) == 0
        redis.process.send_signal(signal.SIGCONT)
        notify_socket.wait_for("WATCHDOG=1")
        assert daemon.ops.get("/readyz").status_code == 200
        assert daemon.stop() == 0


def test_a_store_outage_keeps_the_daemon_up_fed_watchdog_and_not_ready(
    tmp_path: Path, notify_socket: NotifySocket
) -> None:
    with on_a_redis_of_its_own(tmp_path, notify_socket, timeout=0.5) as (redis, daemon):
        start_campaign(daemon.http, targets=500)
        wait_for_line(daemon, event_is("attempt ended"))
        notify_socket.wait_for("WATCHDOG=1")

        # Every store call now fails after its timeout: ticks fail one after the other,
        # but they end, so the scheduler is alive and a restart would only lose the
        # outcomes it keeps for the store's return.
        redis.process.send_signal(signal.SIGSTOP)
        frozen = len(daemon.log_lines())
        wait_for_line(daemon, event_is("campaign tick failed"), after=frozen)
        ready = daemon.ops.get("/readyz")
        assert ready.status_code == 503
        assert "store unreachable" in ready.json()["reason"]
        assert notify_socket.count("WATCHDOG=1", seconds=3.0) > 0
        assert daemon.process.poll() is None

        redis.process.send_signal(signal.SIGCONT)
        notify_socket.wait_for("WATCHDOG=1")
        thawed = len(daemon.log_lines())
        wait_for_line(daemon, event_is("attempt started"), after=thawed)
        assert daemon.ops.get("/readyz").status_code == 200
        assert daemon.stop() == 0
