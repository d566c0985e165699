"""Processes of a chaos scenario: dialerd daemons and a redis-server, all on loopback."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

TOKEN = "chaos-token-0123456789"
CUSTOMER = "5e4a0680-804e-11ec-98a7-2fea5968d85b"
START_SECONDS = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on 127.0.0.1:{port}") from None
            time.sleep(0.05)


class Redis:
    """A redis-server that survives restarts: append-only file fsynced on every write."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed (scripts/test installs it)")
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_port(self.port, 10)

    def stop(self) -> None:
        """Shut down cleanly (SIGTERM: redis writes its data and exits)."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None


class Daemon:
    """``dialerd run`` with its own API port and state directory."""

    def __init__(
        self,
        workdir: Path,
        *,
        store: str,
        redis_url: str,
        ledger: Path,
        lease_ttl: float,
        speed: float,
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}/v1.0"
        self.config = workdir / "dialerd.toml"
        store_section = (
            f'[store]\nbackend = "redis"\n[store.redis]\nurl = "{redis_url}"\ntimeout = 1.0\n'
            if store == "redis"
            else '[store]\nbackend = "sqlite"\n'
        )
        self.config.write_text(
            f"""state_dir = "{workdir / "state"}"
{store_section}
[engine]
tick_interval = 0.2
stop_grace = 1.0
max_concurrent_attempts = 60
lease_ttl = {lease_ttl}
[sim]
seed = {os.getpid() % 1000}
speed = {speed}
default_agents = 40
ledger = "{ledger}"
[api]
listen = "127.0.0.1:{self.port}"
[[api.tokens]]
token = "{TOKEN}"
customer_id = "{CUSTOMER}"
[log]
level = "warning"
format = "json"
"""
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)

    def start(self) -> None:
        log = (self.workdir / "daemon.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dialerd.cli", "run", "--config", str(self.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + START_SECONDS
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"dialerd exited at start; see {self.workdir / 'daemon.log'}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("dialerd did not become healthy in time")
            time.sleep(0.05)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, number: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(number)

    def kill(self) -> None:
        """kill -9: no shutdown, no cleanup."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def terminate(self) -> int:
        if self.process is None:
            return 0
        self.process.send_signal(signal.SIGCONT)
        self.process.terminate()
        code = self.process.wait(timeout=30)
        self.process = None
        return code

    def post(self, path: str, **kwargs: object) -> dict[str, object]:
        reply = self.http.post(f"{self.api}{path}", **kwargs)  # type: ignore[arg-type]
        reply.raise_for_status()
        result: dict[str, object] = reply.json()
        return result

    def campaign_status(self, campaign_id: str) -> str | None:
        try:
            reply = self.http.get(f"{self.api}/campaigns/{campaign_id}", timeout=2)
        except httpx.TransportError:
            return None
        return str(reply.json()["status"]) if reply.status_code == 200 else None

    def close(self) -> None:
        self.http.close()
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


def create_campaign(daemon: Daemon, targets: int) -> tuple[str, str, tuple[int, ...]]:
    """An outplan, an outdial of ``targets`` (every third with a second number) and a
    call campaign on a queue; returns (campaign id, outdial id, max try counts)."""
    max_try_counts = (2, 1, 0, 0, 0)
    outplan = daemon.post(
        "/outplans",
        json={
            "name": "chaos",
            "source": {"type": "tel", "target": "+15550000000"},
            "dial_timeout": 2000,
            "try_interval": 300,
            **{f"max_try_count_{n}": count for n, count in enumerate(max_try_counts)},
        },
    )
    outdial = daemon.post("/outdials", json={"name": "chaos"})
    rows = "destination_0,destination_1\n" + "".join(
        f"+1555{n:07d},{f'+1666{n:07d}' if n % 3 == 0 else ''}\n" for n in range(targets)
    )
    daemon.post(
        f"/outdials/{outdial['id']}/targets",
        content=rows,
        headers={"Content-Type": "text/csv"},
    )
    campaign = daemon.post(
        "/campaigns",
        json={
            "name": "chaos",
            "type": "call",
            "service_level": 100,
            "end_handle": "stop",
            "outplan_id": outplan["id"],
            "outdial_id": outdial["id"],
            "queue_id": "99bf739a-932f-433c-b1bf-103d33d7e9bb",
        },
    )
    reply = daemon.http.put(
        f"{daemon.api}/campaigns/{campaign['id']}/status", json={"status": "run"}
    )
    reply.raise_for_status()
    return str(campaign["id"]), str(outdial["id"]), max_try_counts
