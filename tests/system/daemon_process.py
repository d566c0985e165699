"""``dialerd run`` as a real process for system tests (the launcher of scripts/lib/daemon.py
with the tests' config), and what tests do with it: campaigns, a Prometheus."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from scripts.lib.daemon import START_SECONDS, Daemon, DaemonSettings
from tests.conftest import free_port

TOKEN = "system-test-token"
CUSTOMER = "5e4a0680-804e-11ec-98a7-2fea5968d85b"
# The queue registered for CUSTOMER in every test daemon (backend name "sales").
QUEUE = "99bf739a-932f-433c-b1bf-103d33d7e9bb"
CAMPAIGN_SECONDS = 60
# The bound of every wait for a log line, a notification or a condition.
WAIT_SECONDS = 30.0
LogLine = dict[str, object]


class DaemonProcess(Daemon):
    """``dialerd run`` in a subprocess (started at once) with the system tests' config,
    and an API client (``http``) and an ops client (``ops``) on it."""

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
        settings = DaemonSettings(
            token=TOKEN,
            customer_id=CUSTOMER,
            queue_id=QUEUE,
            queue_name="sales",
            tick_interval=tick_interval,
            engine=engine,
            api=api,
            ops=ops,
            extra_config=extra_config,
        )
        super().__init__(tmp_path, settings, args=args, env=env)
        self.start()
        self.base = f"http://127.0.0.1:{self.port}"
        self.http = httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        )
        self.ops = httpx.Client(base_url=f"http://127.0.0.1:{self.ops_port}", timeout=10)

    def wait_ready(self) -> None:
        """Until ``/healthz`` answers (401 too: behind an ``[ops]`` token)."""
        self.wait_healthy(answers=(200, 401), seconds=START_SECONDS)

    def stop(self) -> int:
        """SIGTERM; the exit code."""
        return self.terminate()

    def close(self) -> None:
        self.http.close()
        self.ops.close()
        super().close()


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


def wait_for_line(daemon: DaemonProcess, wanted: Callable[[LogLine], bool], after: int = 0) -> int:
    """Index of the first log line from ``after`` on that is ``wanted`` (bounded wait)."""
    deadline = time.monotonic() + WAIT_SECONDS
    lines: list[LogLine] = []
    while time.monotonic() < deadline:
        assert daemon.alive, daemon.stderr_path.read_text()
        lines = daemon.log_lines()
        for index in range(after, len(lines)):
            if wanted(lines[index]):
                return index
        time.sleep(0.05)
    raise AssertionError(f"no such log line after line {after}; last: {lines[-3:]}")


def event_is(name: str) -> Callable[[LogLine], bool]:
    """A test of a log line: its ``event`` is ``name``."""
    return lambda line: line.get("event") == name


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def start_campaign(http: httpx.Client, targets: int) -> str:
    """Create an outplan, an outdial with ``targets`` numbers and a campaign; run it."""
    campaign = create_campaign(
        http, targets, number_prefix="+1555400", campaign={"service_level": 100}
    )
    started = http.put(f"/v1.0/campaigns/{campaign['id']}/status", json={"status": "run"})
    assert started.status_code == 200, started.text
    campaign_id: str = campaign["id"]
    return campaign_id


class NotifySocket:
    """The datagram socket systemd would listen on, as ``NOTIFY_SOCKET``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.seen: list[str] = []

    def wait_for(self, state: str, seconds: float = WAIT_SECONDS) -> None:
        """Read datagrams until one carries ``state`` (bounded)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self._receive_one() and state in self.seen[-1].splitlines():
                return
        raise AssertionError(f"{state!r} not notified; seen {self.seen[-5:]}")

    def count(self, state: str, seconds: float) -> int:
        """How many datagrams carrying ``state`` arrive within ``seconds``."""
        found = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self._receive_one() and state in self.seen[-1].splitlines():
                found += 1
        return found

    def _receive_one(self) -> bool:
        try:
            self.seen.append(self.sock.recv(4096).decode())
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        self.sock.close()
