"""A daemon started before its Redis answers: it waits (bounded, retrying, the ops
listener saying why it is not ready), becomes ready once Redis is up, and exits with one
clear line when the wait runs out."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import RedisServer
from tests.system.daemon_process import (
    WAIT_SECONDS,
    DaemonProcess,
    LogLine,
    NotifySocket,
    event_is,
    start_campaign,
    wait_for_line,
    wait_until,
)

RETRYING = "store unreachable at start; retrying"


def redis_config(url: str, start_wait: float) -> str:
    return (
        f'[store]\nbackend = "redis"\n[store.redis]\nurl = "{url}"\ntimeout = 0.5\n'
        f"start_wait = {start_wait}\n"
    )


def stopped_redis(tmp_path: Path) -> RedisServer:
    """A redis-server of this test alone, stopped: its port is known and nothing
    listens there until ``start()``."""
    workdir = tmp_path / "redis"
    workdir.mkdir()
    redis = RedisServer(workdir)
    redis.stop()
    return redis


# A dataset that takes seconds to load: keys, and microseconds of load time per key.
LOADED_KEYS = 10_000
LOAD_DELAY_US = 1000


def loading_redis(tmp_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A redis-server of this test alone, started on a saved dataset it loads slowly
    (answering LOADING meanwhile), as one rebooted with a big dataset does."""
    server = stopped_redis(tmp_path)
    server.start()
    client = redis.Redis.from_url(server.url)
    client.mset({f"unrelated:{number}": "x" for number in range(LOADED_KEYS)})
    client.save()
    client.close()
    server.stop()
    binary = shutil.which("redis-server")
    assert binary is not None
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(server.port), "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path / "redis"),
         "--key-load-delay", str(LOAD_DELAY_US),
         "--loading-process-events-interval-bytes", "1024"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis.from_url(server.url, socket_timeout=1)
    deadline = time.monotonic() + WAIT_SECONDS
    try:
        while time.monotonic() < deadline:
            try:
                client.ping()
                break  # loaded already: not what this test needs
            except redis.BusyLoadingError:
                return process, server.url
            except (redis.ConnectionError, redis.TimeoutError):
                time.sleep(0.02)
    finally:
        client.close()
    process.terminate()
    process.wait(timeout=10)
    raise AssertionError("redis-server never answered LOADING")


def store_up(daemon: DaemonProcess) -> str:
    """The ``dialerd_store_up`` line of the daemon's metrics."""
    text = daemon.ops.get("/metrics").text
    return next(line for line in text.splitlines() if line.startswith("dialerd_store_up "))


def cannot_run(daemon: DaemonProcess) -> list[LogLine]:
    return [line for line in daemon.log_lines() if line.get("event") == "dialerd cannot run"]


def test_a_daemon_started_before_redis_waits_for_it_then_becomes_ready(
    tmp_path: Path, notify_socket: NotifySocket
) -> None:
    redis = stopped_redis(tmp_path)
    daemon = DaemonProcess(
        tmp_path,
        extra_config=redis_config(redis.url, start_wait=60),
        env={"NOTIFY_SOCKET": str(notify_socket.path)},
    )
    try:
        at = wait_for_line(daemon, event_is(RETRYING))
        retry = daemon.log_lines()[at]
        assert retry["level"] == "warning"
        assert retry["store"] == f"redis {redis.url}"
        assert "cannot be reached" in str(retry["error"])
        # While it waits: the ops listener says why it is not ready, the metrics that
        # the store is down; the API is not listening yet; systemd has no READY.
        daemon.wait_ready()
        ready = daemon.ops.get("/readyz")
        assert ready.status_code == 503
        assert "store unreachable" in ready.json()["reason"]
        assert store_up(daemon) == "dialerd_store_up 0.0"
        with pytest.raises(httpx.ConnectError):
            daemon.http.get("/v1.0/campaigns")
        assert notify_socket.count("READY=1", seconds=1.5) == 0
        status = [m for m in notify_socket.seen if m.startswith("STATUS=waiting for the store: ")]
        assert status
        assert redis.url in status[-1]
        assert daemon.alive

        redis.start()
        wait_for_line(daemon, event_is("dialerd ready"))
        notify_socket.wait_for("READY=1")
        wait_until(lambda: daemon.ops.get("/readyz").status_code == 200, "never ready")
        wait_until(lambda: store_up(daemon) == "dialerd_store_up 1.0", "store never up")
        campaign_id = start_campaign(daemon.http, targets=20)
        wait_for_line(
            daemon,
            lambda line: (
                line.get("event") == "attempt started" and line.get("campaign_id") == campaign_id
            ),
        )
        assert daemon.stop() == 0
        assert not cannot_run(daemon)
    finally:
        daemon.close()
        redis.stop()


def test_a_daemon_started_while_redis_loads_its_dataset_waits_for_the_load(
    tmp_path: Path,
) -> None:
    process, url = loading_redis(tmp_path)
    # A loaded machine may time a try out before Redis answers LOADING: a longer
    # timeout, and any try may be the one that says it.
    config = redis_config(url, start_wait=60).replace("timeout = 0.5", "timeout = 2")
    daemon = DaemonProcess(tmp_path, extra_config=config)
    try:
        at = wait_for_line(
            daemon,
            lambda line: (
                line.get("event") == RETRYING and "loading the dataset" in str(line.get("error"))
            ),
        )
        assert process.poll() is None
        wait_for_line(daemon, event_is("dialerd ready"), after=at)
        wait_until(lambda: daemon.ops.get("/readyz").status_code == 200, "never ready")
        assert daemon.stop() == 0
    finally:
        daemon.close()
        process.terminate()
        process.wait(timeout=10)


def test_a_store_that_never_answers_ends_the_start_with_one_clear_line(
    tmp_path: Path,
) -> None:
    redis = stopped_redis(tmp_path)
    daemon = DaemonProcess(tmp_path, extra_config=redis_config(redis.url, start_wait=1.5))
    try:
        assert daemon.process is not None
        assert daemon.process.wait(timeout=WAIT_SECONDS) == 1
        lines = daemon.log_lines()
        assert any(line.get("event") == RETRYING for line in lines)
        [line] = cannot_run(daemon)
        error = str(line["error"])
        assert redis.url in error
        assert "still unreachable after waiting 1.5 s" in error
        assert "start_wait" in error
        assert "Traceback" not in daemon.stderr_path.read_text()
    finally:
        daemon.close()


def test_start_wait_0_exits_at_once_as_before(tmp_path: Path) -> None:
    redis = stopped_redis(tmp_path)
    daemon = DaemonProcess(tmp_path, extra_config=redis_config(redis.url, start_wait=0))
    try:
        assert daemon.process is not None
        assert daemon.process.wait(timeout=WAIT_SECONDS) == 1
        assert not any(line.get("event") == RETRYING for line in daemon.log_lines())
        [line] = cannot_run(daemon)
        assert "cannot be reached" in str(line["error"])
        assert "Traceback" not in daemon.stderr_path.read_text()
    finally:
        daemon.close()


def test_sigterm_while_waiting_for_the_store_stops_the_daemon_cleanly(tmp_path: Path) -> None:
    redis = stopped_redis(tmp_path)
    daemon = DaemonProcess(tmp_path, extra_config=redis_config(redis.url, start_wait=600))
    try:
        wait_for_line(daemon, event_is(RETRYING))
        assert daemon.process is not None
        daemon.process.send_signal(signal.SIGTERM)
        assert daemon.process.wait(timeout=WAIT_SECONDS) == 0
        assert not cannot_run(daemon)
        assert "Traceback" not in daemon.stderr_path.read_text()
    finally:
        daemon.close()


def test_a_bad_start_wait_is_refused_before_anything_starts(tmp_path: Path) -> None:
    daemon = DaemonProcess(
        tmp_path, extra_config=redis_config("redis://127.0.0.1:1/0", start_wait=-1)
    )
    try:
        assert daemon.process is not None
        assert daemon.process.wait(timeout=WAIT_SECONDS) == 1
        stderr = daemon.stderr_path.read_text()
        assert "start_wait" in stderr
        assert ">= 0" in stderr
        assert "Traceback" not in stderr
        assert daemon.log_lines() == []
    finally:
        daemon.close()


# The Redis queue adapter ([queue.redis]) is waited for the same way, after the store.
QUEUE_RETRYING = "queue adapter unreachable at start; retrying"


def queue_config(url: str, start_wait: float) -> str:
    return (
        f'[queue]\nbackend = "redis"\n[queue.redis]\nurl = "{url}"\ntimeout = 0.5\n'
        f"start_wait = {start_wait}\n"
    )


def test_a_daemon_started_before_its_queue_redis_waits_for_it_then_becomes_ready(
    tmp_path: Path, notify_socket: NotifySocket
) -> None:
    redis = stopped_redis(tmp_path)
    daemon = DaemonProcess(
        tmp_path,
        extra_config=queue_config(redis.url, start_wait=60),
        env={"NOTIFY_SOCKET": str(notify_socket.path)},
    )
    try:
        at = wait_for_line(daemon, event_is(QUEUE_RETRYING))
        retry = daemon.log_lines()[at]
        assert retry["level"] == "warning"
        assert retry["queue"] == redis.url
        assert "cannot be reached" in str(retry["error"])
        # A try per back-off, each its own line.
        wait_for_line(daemon, event_is(QUEUE_RETRYING), after=at + 1)
        daemon.wait_ready()
        ready = daemon.ops.get("/readyz")
        assert ready.status_code == 503
        assert "queue adapter unreachable (waiting at start)" in ready.json()["reason"]
        with pytest.raises(httpx.ConnectError):
            daemon.http.get("/v1.0/campaigns")
        assert notify_socket.count("READY=1", seconds=1.5) == 0
        status = [
            m for m in notify_socket.seen if m.startswith("STATUS=waiting for the queue adapter: ")
        ]
        assert status
        assert redis.url in status[-1]

        redis.start()
        wait_for_line(daemon, event_is("dialerd ready"))
        notify_socket.wait_for("READY=1")
        wait_until(lambda: daemon.ops.get("/readyz").status_code == 200, "never ready")
        assert daemon.stop() == 0
        assert not cannot_run(daemon)
    finally:
        daemon.close()
        redis.stop()


def test_a_queue_redis_that_never_answers_ends_the_start_with_one_clear_line(
    tmp_path: Path,
) -> None:
    redis = stopped_redis(tmp_path)
    daemon = DaemonProcess(tmp_path, extra_config=queue_config(redis.url, start_wait=1.5))
    try:
        assert daemon.process is not None
        assert daemon.process.wait(timeout=WAIT_SECONDS) == 1
        assert any(line.get("event") == QUEUE_RETRYING for line in daemon.log_lines())
        [line] = cannot_run(daemon)
        error = str(line["error"])
        assert redis.url in error
        assert "still unreachable after waiting 1.5 s, [queue.redis] start_wait" in error
        assert "Traceback" not in daemon.stderr_path.read_text()
    finally:
        daemon.close()


def test_a_queue_redis_refusing_the_password_ends_the_start_at_once(tmp_path: Path) -> None:
    server = stopped_redis(tmp_path)
    server.start()
    try:
        with redis.Redis.from_url(server.url) as client:  # this test's own server
            client.config_set("requirepass", "right")
        url = server.url.replace("redis://", "redis://:wrong@")
        daemon = DaemonProcess(tmp_path, extra_config=queue_config(url, start_wait=60))
        try:
            assert daemon.process is not None
            assert daemon.process.wait(timeout=WAIT_SECONDS) == 1
            assert not any(line.get("event") == QUEUE_RETRYING for line in daemon.log_lines())
            [line] = cannot_run(daemon)
            assert "wrong" not in str(line["error"])
            assert "Traceback" not in daemon.stderr_path.read_text()
        finally:
            daemon.close()
    finally:
        server.stop()
