"""``dialerd run`` as a real process for system tests: config, readiness, logs, stop."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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
        args: tuple[str, ...] = (),
        ops: str = "",
        api: str = "",
    ) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        # /metrics, /healthz and /readyz: the operations listener, apart from the API.
        self.ops_port = free_port()
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
{api}
[[api.tokens]]
token = "{TOKEN}"
customer_id = "{CUSTOMER}"
[ops]
listen = "127.0.0.1:{self.ops_port}"
{ops}
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
                [sys.executable, "-m", "dialerd.cli", "run", "--config", str(self.config), *args],
                stdout=stdout,
                stderr=stderr,
                env={**os.environ, **(env or {})},
            )
        self.http = httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        )
        self.ops = httpx.Client(base_url=f"http://127.0.0.1:{self.ops_port}", timeout=10)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.stderr_path.read_text()
            try:
                if self.ops.get("/healthz").status_code in (200, 401):
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
        self.ops.close()
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def create_campaign(
    http: httpx.Client,
    targets: int,
    *,
    number_prefix: str = "+1555300",
    outplan: dict[str, Any] | None = None,
    campaign: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Create an outplan (one try), an outdial with ``targets`` numbers and a stopped
    campaign on them, through the API; return the campaign."""
    created_outplan = http.post(
        "/v1.0/outplans",
        json={
            "source": {"type": "tel", "target": "+15550000000"},
            "max_try_count_0": 1,
            **(outplan or {}),
        },
    ).json()
    outdial = http.post("/v1.0/outdials", json={"name": "many"}).json()
    if targets:
        rows = "destination_0\n" + "".join(f"{number_prefix}{n:04d}\n" for n in range(targets))
        imported = http.post(
            f"/v1.0/outdials/{outdial['id']}/targets",
            content=rows,
            headers={"Content-Type": "text/csv"},
        )
        assert imported.status_code == 200, imported.text
    created: dict[str, Any] = http.post(
        "/v1.0/campaigns",
        json={
            "outplan_id": created_outplan["id"],
            "outdial_id": outdial["id"],
            **(campaign or {}),
        },
    ).json()
    return created


def callees_always_answer(ring: tuple[float, float], talk: tuple[float, float] = (20, 90)) -> str:
    """Config lines for a simulated centre whose callees always answer, after ``ring``
    and talking for ``talk`` simulated seconds (min, max)."""
    return (
        "[sim.outcomes]\nmachine = 0.0\nbusy = 0.0\nno_answer = 0.0\nfailure = 0.0\n"
        f"[sim.outcomes.ring_time]\nmin = {ring[0]}\nmax = {ring[1]}\n"
        f"[sim.outcomes.talk_time]\nmin = {talk[0]}\nmax = {talk[1]}\n"
    )


def start_prometheus(workdir: Path, ops_port: int) -> tuple[subprocess.Popen[bytes], int]:
    """A real Prometheus on 127.0.0.1 scraping the daemon's ops listener every second;
    returns the process and its port."""
    binary = shutil.which("prometheus")
    assert binary is not None, "prometheus is installed by scripts/test"
    port = free_port()
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: dialerd\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{ops_port}']\n"
    )
    server = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return server, port
