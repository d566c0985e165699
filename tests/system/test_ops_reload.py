"""SIGHUP: a reload rejects a bad file and keeps running, applies a good one, and says
what it could not apply."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port
from tests.system.daemon_process import (
    TOKEN,
    DaemonProcess,
    event_is,
    start_campaign,
    wait_for_line,
)


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
        line = daemon.log_lines()[rejected]
        assert line["level"] == "error"
        assert "tick_interval" in str(line["error"])
        assert reloads(daemon, "failure") == 1
        assert reloads(daemon, "success") == 0
        assert daemon.ops.get("/readyz").status_code == 200
        campaign = daemon.http.get(f"/v1.0/campaigns/{campaign_id}").json()
        assert campaign["status"] == "run"
        ended = wait_for_line(daemon, event_is("attempt ended"), after=rejected + 1)
        wait_for_line(daemon, event_is("attempt ended"), after=ended + 1)
        assert not [line for line in daemon.log_lines() if line["level"] == "debug"]

        # A valid file: debug logs from now on, and the API token is replaced.
        daemon.config.write_text(
            running.replace('level = "info"', 'level = "debug"').replace(
                f'token = "{TOKEN}"', 'token = "rotated-system-token"'
            )
        )
        daemon.process.send_signal(signal.SIGHUP)
        reloaded = wait_for_line(daemon, event_is("config reloaded"))
        assert daemon.log_lines()[reloaded]["needs_restart"] == []
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
            assert daemon.log_lines()[after - 1]["needs_restart"] == [
                "listen addresses",
                "listener limits",
            ]
            # The daemon still answers where it listened before.
            assert daemon.ops.get("/healthz").status_code == 200
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
        assert daemon.log_lines()[reloaded]["needs_restart"] == []
        assert daemon.http.get("/v1.0/campaigns").status_code == 200
        assert daemon.stop() == 0
    finally:
        daemon.close()
