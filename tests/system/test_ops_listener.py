"""The operations listener: /metrics, /healthz and /readyz apart from the API, behind a
token read from a private file; a scrape promtool and a real Prometheus accept."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import httpx

from dialerd import __version__
from tests.system.daemon_process import (
    WAIT_SECONDS,
    DaemonProcess,
    event_is,
    start_prometheus,
    wait_for_line,
)
from tests.system.test_ops_config import check_config


def behind_a_token_file(tmp_path: Path, mode: int) -> tuple[Path, DaemonProcess]:
    """The ``[ops] token_file``, made with ``mode``, and a daemon started with it."""
    path = tmp_path / "ops-token"
    path.write_text("scrape-secret-from-a-file\n")
    path.chmod(mode)
    return path, DaemonProcess(tmp_path, ops=f'token_file = "{path}"')


def test_operations_endpoints_live_on_their_own_listener_behind_a_token(tmp_path: Path) -> None:
    token_file, daemon = behind_a_token_file(tmp_path, 0o600)
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


def test_a_token_file_others_may_read_stops_the_start_with_the_fix(tmp_path: Path) -> None:
    token_file, daemon = behind_a_token_file(tmp_path, 0o644)
    try:
        assert daemon.process.wait(timeout=WAIT_SECONDS) == 1
    finally:
        daemon.close()
    refused = daemon.stderr_path.read_text()
    assert f"[ops] token_file '{token_file}': open to others (mode 0644)" in refused
    assert f"chmod 600 {token_file}" in refused
    assert "Traceback" not in refused
    assert check_config(str(daemon.config)).returncode == 1


def test_a_scrape_passes_promtool_check_metrics(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path)
    try:
        daemon.wait_ready()
        scrape = daemon.ops.get("/metrics")
        assert scrape.status_code == 200
        assert "dialerd_build_info" in scrape.text
        checked = subprocess.run(
            ["promtool", "check", "metrics"],
            input=scrape.content,
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert checked.stdout == b""
        assert checked.stderr == b""
    finally:
        daemon.close()


def test_a_real_prometheus_scrapes_the_daemon(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path)
    server, port = start_prometheus(tmp_path, daemon.ops_port)
    try:
        daemon.wait_ready()
        deadline = time.monotonic() + WAIT_SECONDS
        result: list[dict[str, object]] = []
        while not result and time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                answer = httpx.get(
                    f"http://127.0.0.1:{port}/api/v1/query",
                    params={"query": "dialerd_build_info"},
                    timeout=5,
                ).json()
            except (httpx.TransportError, json.JSONDecodeError):
                continue
            result = answer["data"]["result"]
        assert result, "prometheus never returned dialerd_build_info"
        assert result[0]["metric"]["version"] == __version__  # type: ignore[index]
    finally:
        server.terminate()
        server.wait(timeout=20)
        daemon.close()
