"""Processes of a chaos scenario: dialerd daemons and a redis-server, all on loopback."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from scripts.chaoslib.api import CUSTOMER, QUEUE, TOKEN, CampaignApi

START_SECONDS = 30.0
REPO = Path(__file__).resolve().parents[2]


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
        seed: int,
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        # /healthz and /readyz are on the operations listener.
        self.ops_port = free_port()
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
seed = {seed}
speed = {speed}
default_agents = 40
ledger = "{ledger}"
[api]
listen = "127.0.0.1:{self.port}"
[[api.tokens]]
token = "{TOKEN}"
customer_id = "{CUSTOMER}"
[ops]
listen = "127.0.0.1:{self.ops_port}"
[[queues]]
id = "{QUEUE}"
customer_id = "{CUSTOMER}"
name = "chaos"
[log]
level = "warning"
format = "json"
"""
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.api = CampaignApi(self.port, self.ops_port)

    def start(self) -> None:
        """Spawn the daemon and wait (bounded) until it answers /healthz."""
        log = (self.workdir / "daemon.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dialerd.cli", "run", "--config", str(self.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        log.close()
        deadline = time.monotonic() + START_SECONDS
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"dialerd exited at start; see {self.workdir / 'daemon.log'}")
            try:
                health = f"http://127.0.0.1:{self.ops_port}/healthz"
                if httpx.get(health, timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("dialerd did not become healthy in time")
            time.sleep(0.05)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def instance_id(self) -> str:
        """The daemon's name on campaign leases (kept in its state directory)."""
        path = self.workdir / "state" / "instance-id"
        return path.read_text().strip() if path.exists() else ""

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
        """SIGTERM (after SIGCONT, should it be stopped); its exit code."""
        if self.process is None:
            return 0
        self.process.send_signal(signal.SIGCONT)
        self.process.terminate()
        code = self.process.wait(timeout=30)
        self.process = None
        return code

    def close(self) -> None:
        """Kill the daemon if it still runs (even a stopped one) and close its client."""
        self.api.close()
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None
