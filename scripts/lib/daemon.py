"""``dialerd run`` as a child process on loopback: the one launcher of the system tests
(tests/system/daemon_process.py) and of scripts/chaos (scripts/chaoslib/cluster.py).

It writes the daemon's config from ``DaemonSettings`` (what the two differ in), starts
the process with its output in ``stdout.log`` and ``stderr.log`` of its directory (again
after a kill, on the same state: the logs are appended to), waits until ``/healthz``
answers, and signals, kills or stops it. It lives under scripts/ because scripts are
tools that must not depend on test code, while tests already import scripts (chaos's
invariants): tests import it from here.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
START_SECONDS = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True, kw_only=True)
class DaemonSettings:
    """The parts of a daemon's config the tests and the chaos scenarios choose; the rest
    (loopback listeners, the simulated centre, JSON logs) is the same for both."""

    token: str
    customer_id: str
    queue_id: str
    queue_name: str
    tick_interval: float = 0.2
    engine: str = ""  # more [engine] lines
    sim_seed: int = 7
    sim_speed: float = 50.0
    sim_agents: int = 4
    ledger: str = "originations.jsonl"  # relative: in the state directory
    api: str = ""  # more [api] lines
    ops: str = ""  # more [ops] lines
    log_level: str = "info"
    extra_config: str = ""  # whole sections, after all the others

    def config(self, state_dir: Path, port: int, ops_port: int) -> str:
        return f"""
state_dir = "{state_dir}"
[engine]
tick_interval = {self.tick_interval}
stop_grace = 1.0
{self.engine}
[sim]
seed = {self.sim_seed}
speed = {self.sim_speed}
default_agents = {self.sim_agents}
ledger = "{self.ledger}"
[api]
listen = "127.0.0.1:{port}"
{self.api}
[[api.tokens]]
token = "{self.token}"
customer_id = "{self.customer_id}"
[ops]
listen = "127.0.0.1:{ops_port}"
{self.ops}
[[queues]]
id = "{self.queue_id}"
customer_id = "{self.customer_id}"
name = "{self.queue_name}"
[log]
level = "{self.log_level}"
format = "json"
{self.extra_config}
"""


class Daemon:
    """``dialerd run`` with its own API and ops ports, config file and state directory
    (``state``) in ``workdir``; ``start()`` spawns it, ``wait_healthy()`` waits for it."""

    def __init__(
        self,
        workdir: Path,
        settings: DaemonSettings,
        *,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        tree: Path = REPO,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.port = free_port()
        # /metrics, /healthz and /readyz: the operations listener, apart from the API.
        self.ops_port = free_port()
        self.config = workdir / "dialerd.toml"
        self.config.write_text(settings.config(workdir / "state", self.port, self.ops_port))
        self.args = args
        # The source tree to run (its .venv): another checkout to compare with this one.
        self.tree = tree
        self.python = sys.executable if tree == REPO else str(tree / ".venv" / "bin" / "python")
        self.env = {**os.environ, **(env or {})}
        self.stdout_path = workdir / "stdout.log"
        self.stderr_path = workdir / "stderr.log"
        for path in (self.stdout_path, self.stderr_path):
            path.write_bytes(b"")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Spawn the daemon (not waiting for it); its output is added to the logs."""
        with self.stdout_path.open("ab") as stdout, self.stderr_path.open("ab") as stderr:
            self.process = subprocess.Popen(
                [self.python, "-m", "dialerd.cli", "run", "--config", str(self.config),
                 *self.args],
                stdout=stdout,
                stderr=stderr,
                env=self.env,
                cwd=self.tree,
            )  # fmt: skip

    def wait_healthy(
        self, answers: tuple[int, ...] = (200,), seconds: float = START_SECONDS
    ) -> None:
        """Until ``/healthz`` answers one of ``answers`` (bounded); RuntimeError, with
        the daemon's stderr, if it exits or does not answer in time."""
        deadline = time.monotonic() + seconds
        with httpx.Client(base_url=f"http://127.0.0.1:{self.ops_port}", timeout=1) as ops:
            while time.monotonic() < deadline:
                if not self.alive:
                    raise RuntimeError(f"dialerd exited at start:\n{self.stderr_tail()}")
                try:
                    if ops.get("/healthz").status_code in answers:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        raise RuntimeError(f"dialerd did not answer /healthz in time:\n{self.stderr_tail()}")

    def stderr_tail(self, lines: int = 20) -> str:
        return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-lines:])

    def log_lines(self) -> list[dict[str, object]]:
        """The JSON log lines written so far, without a line still being written."""
        text = self.stdout_path.read_text()
        return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def instance_id(self) -> str:
        """The daemon's name on campaign leases (kept in its state directory)."""
        path = self.workdir / "state" / "instance-id"
        return path.read_text().strip() if path.exists() else ""

    def signal(self, number: signal.Signals) -> None:
        assert self.process is not None, "the daemon was never started"
        self.process.send_signal(number)

    def kill(self) -> None:
        """kill -9: no shutdown, nothing given back."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=20)

    def terminate(self) -> int:
        """SIGTERM (after SIGCONT, should it be stopped); its exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
        return self.process.wait(timeout=30)

    def close(self) -> None:
        """Kill the daemon if it still runs (even a stopped one)."""
        if self.alive:
            self.signal(signal.SIGCONT)
            self.kill()
