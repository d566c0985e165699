"""Processes of a chaos scenario: dialerd daemons (scripts/lib/daemon.py's launcher) and a
redis-server, all on loopback."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from scripts.chaoslib.api import CUSTOMER, QUEUE, TOKEN, CampaignApi
from scripts.lib import daemon as launcher
from scripts.lib.daemon import free_port


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


class Daemon(launcher.Daemon):
    """``dialerd run`` with the chaos scenario's config; ``start()`` waits until healthy.
    Its JSON logs go to ``stdout.log`` in ``workdir``, appended to on every restart."""

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
        redis_extra: str = "",
        max_concurrent: int = 60,
        agents: int = 40,
    ) -> None:
        store_section = (
            f'[store]\nbackend = "redis"\n[store.redis]\nurl = "{redis_url}"\ntimeout = 1.0\n'
            f"{redis_extra}\n"
            if store == "redis"
            else '[store]\nbackend = "sqlite"\n'
        )
        settings = launcher.DaemonSettings(
            token=TOKEN,
            customer_id=CUSTOMER,
            queue_id=QUEUE,
            queue_name="chaos",
            engine=f"max_concurrent_attempts = {max_concurrent}\nlease_ttl = {lease_ttl}",
            sim_seed=seed,
            sim_speed=speed,
            sim_agents=agents,
            ledger=str(ledger),
            log_level="warning",
            extra_config=store_section,
        )
        super().__init__(workdir, settings)
        self.api = CampaignApi(self.port, self.ops_port)

    def start(self) -> None:
        """Spawn the daemon and wait (bounded) until it answers /healthz."""
        super().start()
        self.wait_healthy()

    def close(self) -> None:
        """Kill the daemon if it still runs (even a stopped one) and close its client."""
        self.api.close()
        super().close()
