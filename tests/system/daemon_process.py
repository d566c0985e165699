"""``dialerd run`` as a real process for system tests: config, readiness, logs, stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port

TOKEN = "system-test-token"
CUSTOMER = "5e4a0680-804e-11ec-98a7-2fea5968d85b"
# The queue registered for CUSTOMER in every test daemon (backend name "sales").
QUEUE = "99bf739a-932f-433c-b1bf-103d33d7e9bb"
START_SECONDS = 30
CAMPAIGN_SECONDS = 60


class DaemonProcess:
    """``dialerd run`` in a subprocess, its stdout collected to a file."""

    def __init__(
        self,
        tmp_path: Path,
        extra_config: str = "",
        env: dict[str, str] | None = None,
        tick_interval: float = 0.2,
        engine: str = "",
    ) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.config = tmp_path / "dialerd.toml"
        self.config.write_text(
            f"""
state_dir = "{tmp_path / "state"}"
[engine]
tick_interval = {tick_interval}
stop_grace = 1.0
{engine}
[sim]
seed = 7
speed = 50.0
default_agents = 4
ledger = "originations.jsonl"
[api]
listen = "127.0.0.1:{self.port}"
[[api.tokens]]
token = "{TOKEN}"
customer_id = "{CUSTOMER}"
[[queues]]
id = "{QUEUE}"
customer_id = "{CUSTOMER}"
name = "sales"
[log]
level = "info"
format = "json"
{extra_config}
"""
        )
        self.stdout_path = tmp_path / "stdout.log"
        self.stderr_path = tmp_path / "stderr.log"
        with self.stdout_path.open("wb") as stdout, self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "dialerd.cli", "run", "--config", str(self.config)],
                stdout=stdout,
                stderr=stderr,
                env={**os.environ, **(env or {})},
            )
        self.http = httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.stderr_path.read_text()
            try:
                if self.http.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError("daemon did not answer /healthz in time")

    def kill(self) -> None:
        """kill -9: no shutdown, nothing given back."""
        self.process.kill()
        self.process.wait(timeout=20)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=20)

    def log_lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.stdout_path.read_text().splitlines()]

    def close(self) -> None:
        self.http.close()
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
