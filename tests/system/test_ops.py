"""Operating a running daemon: SIGHUP reloads, and the watchdog while a campaign's ticks fail."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import RedisServer, free_port
from tests.system.daemon_process import TOKEN, DaemonProcess, create_campaign
from tests.system.test_operations import NotifySocket

WAIT_SECONDS = 20.0
LogLine = dict[str, object]


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    listener = NotifySocket(tmp_path / "notify.sock")
    yield listener
    listener.close()


def complete_log_lines(daemon: DaemonProcess) -> list[LogLine]:
    """The daemon's log lines written so far, without a line still being written."""
    text = daemon.stdout_path.read_text()
    return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]


def wait_for_line(daemon: DaemonProcess, wanted: Callable[[LogLine], bool], after: int = 0) -> int:
    """Index of the first log line from ``after`` on that is ``wanted`` (bounded wait)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        assert daemon.process.poll() is None, daemon.stderr_path.read_text()
        lines = complete_log_lines(daemon)
        for index in range(after, len(lines)):
            if wanted(lines[index]):
                return index
        time.sleep(0.05)
    raise AssertionError(f"no such log line after line {after}; last: {lines[-3:]}")


def event_is(name: str) -> Callable[[LogLine], bool]:
    """A test of a log line: its ``event`` is ``name``."""
    return lambda line: line.get("event") == name


def reloads(daemon: DaemonProcess, result: str) -> float:
    """``dialerd_config_reloads_total{result=...}`` as scraped now."""
    scrape = daemon.ops.get("/metrics").text
    for family in text_string_to_metric_families(scrape):
        for sample in family.samples:
            if sample.name == "dialerd_config_reloads_total" and sample.labels == {
                "result": result
            }:
                return sample.value
    raise AssertionError("dialerd_config_reloads_total is not exposed")


def start_campaign(http: httpx.Client, targets: int) -> str:
    """Create an outplan, an outdial with ``targets`` numbers and a campaign; run it."""
    campaign = create_campaign(
        http, targets, number_prefix="+1555400", campaign={"service_level": 100}
    )
    started = http.put(f"/v1.0/campaigns/{campaign['id']}/status", json={"status": "run"})
    assert started.status_code == 200, started.text
    campaign_id: str = campaign["id"]
    return campaign_id


def test_sighup_rejects_an_invalid_file_keeps_running_then_applies_a_valid_one(
    tmp_path: Path,
) -> None:
    daemon = DaemonProcess(tmp_path)
    try:
        daemon.wait_ready()
        campaign_id = start_campaign(daemon.http, targets=500)
        wait_for_line(daemon, event_is("attempt ended"))
        running = daemon.config.read_text()

        # The broken file also asks for debug logs: none of it may be applied.
        daemon.config.write_text(
            running.replace('level = "info"', 'level = "debug"').replace(
                "tick_interval = 0.2", 'tick_interval = "fast"'
            )
        )
        daemon.process.send_signal(signal.SIGHUP)
        rejected = wait_for_line(daemon, event_is("config reload rejected; running config kept"))
        line = complete_log_lines(daemon)[rejected]
        assert line["level"] == "error"
        assert "tick_interval" in str(line["error"])
        assert reloads(daemon, "failure") == 1
        assert reloads(daemon, "success") == 0
        assert daemon.ops.get("/readyz").status_code == 200
        campaign = daemon.http.get(f"/v1.0/campaigns/{campaign_id}").json()
        assert campaign["status"] == "run"
        ended = wait_for_line(daemon, event_is("attempt ended"), after=rejected + 1)
        wait_for_line(daemon, event_is("attempt ended"), after=ended + 1)
        assert not [line for line in complete_log_lines(daemon) if line["level"] == "debug"]

        # A valid file: debug logs from now on, and the API token is replaced.
        daemon.config.write_text(
            running.replace('level = "info"', 'level = "debug"').replace(
                f'token = "{TOKEN}"', 'token = "rotated-system-token"'
            )
        )
        daemon.process.send_signal(signal.SIGHUP)
        reloaded = wait_for_line(daemon, event_is("config reloaded"))
        assert complete_log_lines(daemon)[reloaded]["needs_restart"] == []
        assert reloads(daemon, "success") == 1
        assert reloads(daemon, "failure") == 1
        wait_for_line(daemon, lambda line: line["level"] == "debug", after=reloaded + 1)
        path = f"/v1.0/campaigns/{campaign_id}"
        assert daemon.http.get(path).status_code == 401
        rotated = {"Authorization": "Bearer rotated-system-token"}
        assert daemon.http.get(path, headers=rotated).status_code == 200
        assert daemon.stop() == 0
    finally:
        daemon.close()


def test_a_store_outage_keeps_the_daemon_up_fed_watchdog_and_not_ready(
    tmp_path: Path, notify_socket: NotifySocket
) -> None:
    workdir = tmp_path / "redis"
    workdir.mkdir()
    redis = RedisServer(workdir)
    assert redis.process is not None
    env = {"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "1000000"}
    extra = f'[store]\nbackend = "redis"\n[store.redis]\nurl = "{redis.url}"\ntimeout = 0.5\n'
    daemon = DaemonProcess(tmp_path, extra_config=extra, env=env)
    try:
        daemon.wait_ready()
        start_campaign(daemon.http, targets=500)
        wait_for_line(daemon, event_is("attempt ended"))
        notify_socket.wait_for("WATCHDOG=1")

        # Every store call now fails after its timeout: ticks fail one after the other,
        # but they end, so the scheduler is alive and a restart would only lose the
        # outcomes it keeps for the store's return.
        redis.process.send_signal(signal.SIGSTOP)
        frozen = len(complete_log_lines(daemon))
        wait_for_line(daemon, event_is("campaign tick failed"), after=frozen)
        ready = daemon.ops.get("/readyz")
        assert ready.status_code == 503
        assert "store unreachable" in ready.json()["reason"]
        assert notify_socket.count("WATCHDOG=1", seconds=3.0) > 0
        assert daemon.process.poll() is None

        redis.process.send_signal(signal.SIGCONT)
        notify_socket.wait_for("WATCHDOG=1")
        thawed = len(complete_log_lines(daemon))
        wait_for_line(daemon, event_is("attempt started"), after=thawed)
        assert daemon.ops.get("/readyz").status_code == 200
        assert daemon.stop() == 0
    finally:
        redis.process.send_signal(signal.SIGCONT)
        daemon.close()
        redis.stop()


def test_a_shorter_tick_interval_on_sighup_keeps_the_daemon_ready(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path, tick_interval=1.0)
    try:
        daemon.wait_ready()
        daemon.config.write_text(
            daemon.config.read_text().replace("tick_interval = 1.0", "tick_interval = 0.1")
        )
        daemon.process.send_signal(signal.SIGHUP)
        wait_for_line(daemon, event_is("config reloaded"))
        # Ready means ticking at the interval now configured: progress within 5 x 0.1 s.
        answers = []
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            answers.append(daemon.ops.get("/readyz").status_code)
            time.sleep(0.05)
        assert set(answers) == {200}, f"{answers.count(503)} of {len(answers)} answers were 503"
        assert daemon.stop() == 0
    finally:
        daemon.close()


def test_the_daemon_makes_its_state_directory_whatever_the_store(
    tmp_path: Path, redis_url: str
) -> None:
    extra = f'[store]\nbackend = "redis"\n[store.redis]\nurl = "{redis_url}"\n'
    daemon = DaemonProcess(tmp_path, extra_config=extra)
    try:
        daemon.wait_ready()
        start_campaign(daemon.http, targets=50)
        # The simulated centre's ledger lives in the state directory.
        wait_for_line(daemon, event_is("attempt ended"))
        assert (tmp_path / "state" / "originations.jsonl").is_file()
        assert not [
            line for line in complete_log_lines(daemon) if line["event"] == "origination failed"
        ]
        assert daemon.stop() == 0
    finally:
        daemon.close()


def test_what_a_reload_cannot_apply_is_reported_on_every_reload(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path)
    try:
        daemon.wait_ready()
        daemon.config.write_text(
            daemon.config.read_text().replace(
                f'listen = "127.0.0.1:{daemon.port}"',
                f'listen = "127.0.0.1:{free_port()}"\nmax_connections = 100',
            )
        )
        after = 0
        for _ in range(2):
            daemon.process.send_signal(signal.SIGHUP)
            after = wait_for_line(daemon, event_is("config reloaded"), after=after) + 1
            assert complete_log_lines(daemon)[after - 1]["needs_restart"] == [
                "listen addresses",
                "listener limits",
            ]
            # The daemon still answers where it listened before.
            assert daemon.ops.get("/healthz").status_code == 200
        assert daemon.stop() == 0
    finally:
        daemon.close()


def test_operations_endpoints_live_on_their_own_listener_behind_a_token(tmp_path: Path) -> None:
    token_file = tmp_path / "ops-token"
    token_file.write_text("scrape-secret-from-a-file\n")
    token_file.chmod(0o600)
    daemon = DaemonProcess(tmp_path, ops=f'token_file = "{token_file}"')
    try:
        daemon.wait_ready()
        for path in ("/metrics", "/healthz", "/readyz"):
            # The API listener serves the API only.
            assert daemon.http.get(path).status_code == 404, path
            assert daemon.ops.get(path).status_code == 401, path
        secret = {"Authorization": "Bearer scrape-secret-from-a-file"}
        assert daemon.ops.get("/metrics", headers=secret).status_code == 200
        assert daemon.ops.get("/readyz", headers=secret).status_code == 200
        # The API itself is where it was, and answers no operations path.
        assert daemon.http.get("/v1.0/campaigns").status_code == 200
        # A reload reads the token file again: a new token applies without a restart.
        token_file.write_text("rotated-scrape-secret\n")
        daemon.process.send_signal(signal.SIGHUP)
        wait_for_line(daemon, event_is("config reloaded"))
        assert daemon.ops.get("/metrics", headers=secret).status_code == 401
        rotated = {"Authorization": "Bearer rotated-scrape-secret"}
        assert daemon.ops.get("/metrics", headers=rotated).status_code == 200
        assert daemon.stop() == 0
    finally:
        daemon.close()


def test_listen_on_the_command_line_is_no_change_on_reload(tmp_path: Path) -> None:
    port = free_port()
    daemon = DaemonProcess(tmp_path, args=("--listen", f"127.0.0.1:{port}"))
    try:
        daemon.http = httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers=daemon.http.headers, timeout=10
        )
        daemon.wait_ready()
        assert daemon.http.get("/v1.0/campaigns").status_code == 200
        daemon.process.send_signal(signal.SIGHUP)
        reloaded = wait_for_line(daemon, event_is("config reloaded"))
        assert complete_log_lines(daemon)[reloaded]["needs_restart"] == []
        assert daemon.http.get("/v1.0/campaigns").status_code == 200
        assert daemon.stop() == 0
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


def check_config(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dialerd.cli", "check-config", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_check_config_refuses_a_store_timeout_the_watchdog_would_kill(tmp_path: Path) -> None:
    config = tmp_path / "dialerd.toml"
    config.write_text('[store]\nbackend = "redis"\n[store.redis]\ntimeout = 10.0\n')
    refused = check_config(str(config))
    assert refused.returncode == 1
    assert "[store.redis] timeout = 10" in refused.stderr
    assert "WatchdogSec" in refused.stderr
    # The shipped default (2 s) fits the shipped WatchdogSec=30; so does 10 s under 60 s.
    assert check_config(str(config), "--watchdog-sec", "60").returncode == 0
    assert check_config(str(config), "--watchdog-sec", "0").returncode == 0
    config.write_text('[store]\nbackend = "redis"\n')
    assert check_config(str(config)).stdout == "ok\n"


def test_check_config_reads_the_ops_token_file(tmp_path: Path) -> None:
    config = tmp_path / "dialerd.toml"
    config.write_text(f'[ops]\ntoken_file = "{tmp_path / "absent"}"\n')
    refused = check_config(str(config))
    assert refused.returncode == 1
    assert "[ops] token_file" in refused.stderr


def test_check_config_refuses_two_customers_with_the_same_token_naming_both(
    tmp_path: Path,
) -> None:
    first, second = "5e4a0680-804e-11ec-98a7-2fea5968d85b", "0b7e2d36-1c55-4f0e-9a33-2b8f0c6d1e47"
    config = tmp_path / "dialerd.toml"
    config.write_text(
        "".join(
            f'[[api.tokens]]\ntoken = "shared-secret-token"\ncustomer_id = "{customer}"\n'
            for customer in (first, second)
        )
    )
    refused = check_config(str(config))
    assert refused.returncode == 1
    assert first in refused.stderr
    assert second in refused.stderr
    assert "same token" in refused.stderr
    # The token itself is a secret: it is not printed.
    assert "shared-secret-token" not in refused.stderr


def test_state_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    # A shell with the loosest umask there is.
    previous = os.umask(0)
    try:
        daemon = DaemonProcess(tmp_path)
    finally:
        os.umask(previous)
    state = tmp_path / "state"
    try:
        daemon.wait_ready()
        start_campaign(daemon.http, targets=20)
        wait_for_line(daemon, event_is("attempt ended"))
        files = {path.name: stat.S_IMODE(path.stat().st_mode) for path in state.iterdir()}
        assert daemon.stop() == 0
    finally:
        daemon.close()
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert {"dialerd.sqlite3", "dialerd.sqlite3-wal", "originations.jsonl", "instance-id"} <= set(
        files
    )
    assert {name: mode for name, mode in files.items() if mode != 0o600} == {}


def test_a_token_file_others_may_read_stops_the_start_with_the_fix(tmp_path: Path) -> None:
    token_file = tmp_path / "ops-token"
    token_file.write_text("scrape-secret-from-a-file\n")
    token_file.chmod(0o644)
    daemon = DaemonProcess(tmp_path, ops=f'token_file = "{token_file}"')
    try:
        assert daemon.process.wait(timeout=WAIT_SECONDS) == 1
    finally:
        daemon.close()
    refused = daemon.stderr_path.read_text()
    assert f"[ops] token_file '{token_file}': open to others (mode 0644)" in refused
    assert f"chmod 600 {token_file}" in refused
    assert "Traceback" not in refused
    assert check_config(str(daemon.config)).returncode == 1


def test_a_redis_password_is_never_printed_when_redis_cannot_be_reached(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    extra = (
        f'[store]\nbackend = "redis"\n[store.redis]\nurl = "redis://ops:s3cret@127.0.0.1:{port}/0"\n'
        f'timeout = 0.5\n[queue]\nbackend = "redis"\n[queue.redis]\n'
        f'url = "redis://:s3cret@127.0.0.1:{port}/0"\ntimeout = 0.5\n'
    )
    daemon = DaemonProcess(tmp_path, extra_config=extra)
    try:
        assert daemon.process.wait(timeout=WAIT_SECONDS) == 1
    finally:
        daemon.close()
    printed = daemon.stdout_path.read_text() + daemon.stderr_path.read_text()
    assert f"redis://ops:***@127.0.0.1:{port}/0" in printed
    assert "s3cret" not in printed
