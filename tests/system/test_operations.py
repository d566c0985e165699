"""Operating the daemon: sd_notify and the watchdog, Prometheus scrapes, JSON logs."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis as redis_client

from dialerd import __version__
from tests.conftest import RedisServer
from tests.system.daemon_process import QUEUE, DaemonProcess, create_campaign, start_prometheus

WAIT_SECONDS = 30.0


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


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    listener = NotifySocket(tmp_path / "notify.sock")
    yield listener
    listener.close()


def test_notify_ready_watchdog_reload_and_stopping(
    tmp_path: Path, notify_socket: NotifySocket
) -> None:
    env = {"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "1000000"}
    daemon = DaemonProcess(tmp_path, env=env)
    try:
        notify_socket.wait_for("READY=1")
        notify_socket.wait_for("WATCHDOG=1")
        assert any(line.startswith("STATUS=") for message in notify_socket.seen for line in
                   message.splitlines())  # fmt: skip
        daemon.process.send_signal(signal.SIGHUP)
        notify_socket.wait_for("RELOADING=1")
        reloading = notify_socket.seen[-1].splitlines()
        assert any(line.startswith("MONOTONIC_USEC=") for line in reloading)
        notify_socket.wait_for("READY=1")
        daemon.process.send_signal(signal.SIGTERM)
        notify_socket.wait_for("STOPPING=1")
        assert daemon.process.wait(timeout=20) == 0
    finally:
        daemon.close()


def test_a_hung_scheduler_stops_the_watchdog_pings(
    tmp_path: Path, notify_socket: NotifySocket
) -> None:
    workdir = tmp_path / "redis"
    workdir.mkdir()
    redis = RedisServer(workdir)
    assert redis.process is not None
    env = {"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "1000000"}
    # A store without a usable timeout (a network black hole, say): calls never return.
    extra = f'[store]\nbackend = "redis"\n[store.redis]\nurl = "{redis.url}"\ntimeout = 3600\n'
    daemon = DaemonProcess(tmp_path, extra_config=extra, env=env)
    try:
        daemon.wait_ready()
        notify_socket.wait_for("WATCHDOG=1")
        # The store hangs: no round of the scheduler ends, so it makes no progress.
        redis.process.send_signal(signal.SIGSTOP)
        ready = daemon.ops.get("/readyz")
        assert ready.status_code == 503
        assert "took over" in ready.json()["reason"]
        # Pings go on until the last progress is a few ticks old, then stop for good.
        deadline = time.monotonic() + WAIT_SECONDS
        while notify_socket.count("WATCHDOG=1", seconds=1.0):
            assert time.monotonic() < deadline, "watchdog pings never stopped"
        assert notify_socket.count("WATCHDOG=1", seconds=3.0) == 0
        redis.process.send_signal(signal.SIGCONT)
        notify_socket.wait_for("WATCHDOG=1")
        assert daemon.ops.get("/readyz").status_code == 200
        assert daemon.stop() == 0
    finally:
        redis.process.send_signal(signal.SIGCONT)
        daemon.close()
        redis.stop()


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


def test_every_log_line_of_a_demo_is_json_and_names_its_campaign() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "dialerd.cli", "demo", "--targets", "30", "--speed", "60",
         "--json", "--log-level", "info"],
        capture_output=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr.decode()
    lines = [json.loads(line) for line in completed.stdout.decode().splitlines()]
    summary, logs = lines[-1], lines[:-1]
    assert summary["status"] == "stop"
    assert summary["targets_done"] == 30
    about_a_campaign = [
        line
        for line in logs
        if line.get("event") in ("attempt started", "attempt ended", "campaign status changed")
    ]
    assert len(about_a_campaign) > 30
    assert all(line.get("campaign_id") for line in about_a_campaign)
    assert all(line["timestamp"].endswith("Z") and line["level"] for line in logs)
    # Numbers are masked at INFO: the demo's +1555... numbers never appear whole.
    assert "+1555" not in completed.stdout.decode()


# What ``journalctl -u dialerd -o cat`` prints: dialerd's JSON lines among systemd's
# own, the reload check's output, a traceback and a line cut short by a crash.
CAMPAIGN = "183c0d5c-691e-42f3-af2b-9bffc2740f83"
JOURNAL_SAMPLE = "\n".join(
    [
        "Starting dialerd.service - dialerd outbound dialer...",
        json.dumps({"level": "info", "event": "dialerd ready", "version": "0.1.0"}),
        "Started dialerd.service - dialerd outbound dialer.",
        json.dumps(
            {"level": "info", "event": "attempt ended", "campaign_id": CAMPAIGN,
             "campaigncall_id": "6f1b...", "target_id": "2c50...", "result": "fail",
             "reason": "busy"}
        ),
        "Reloading dialerd.service - dialerd outbound dialer...",
        "/etc/dialerd/dialerd.toml: Expected `float`, got `str` - at `$.engine.tick_interval`",
        "Traceback (most recent call last):",
        '  File "/opt/dialerd/venv/lib/python3.11/site-packages/dialerd/cli.py", line 1',
        "42",
        json.dumps(
            {"level": "error", "event": "config reload rejected; running config kept",
             "campaign_id": CAMPAIGN}
        ),
        json.dumps(
            {"level": "warning", "event": "campaign status changed", "campaign_id": CAMPAIGN,
             "previous": "run", "status": "stop", "cause": "x", "timestamp": "t"}
        ),
        '{"timestamp": "2026-01-01T00:00:04Z", "level": "info", "event": "cut sh',
    ]
)  # fmt: skip
JOURNAL = "journalctl -u dialerd -o cat"


def journal_recipes() -> list[str]:
    """Every shell line of the README and docs/operations.md that reads the journal."""
    root = Path(__file__).resolve().parents[2]
    lines = []
    for doc in (root / "README.md", root / "docs" / "operations.md"):
        lines += [line for line in doc.read_text().splitlines() if line.startswith(JOURNAL)]
    return lines


def test_every_documented_jq_recipe_survives_a_real_journal(tmp_path: Path) -> None:
    sample = tmp_path / "journal.txt"
    sample.write_text(JOURNAL_SAMPLE + "\n")
    recipes = journal_recipes()
    assert len(recipes) >= 8
    for recipe in recipes:
        # The journal becomes the sample; "-f" (follow) ends with the file.
        pipeline = recipe.removeprefix(JOURNAL).removeprefix(" -f").removeprefix(" |")
        ran = subprocess.run(
            [
                "bash",
                "-o",
                "pipefail",
                "-c",
                f"C={CAMPAIGN}; < {sample} {pipeline}",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert (ran.returncode, ran.stderr) == (0, ""), recipe
        assert ran.stdout.strip(), f"{recipe}: no output from the sample"
        if "select(.level" in recipe:
            assert "config reload rejected" in ran.stdout, recipe
        if '.campaign_id == $c and .event == "attempt ended"' in recipe:
            assert ran.stdout.split() == ["1", "busy"], recipe
        if "catch true" in recipe:
            assert "Traceback" in ran.stdout
            assert "dialerd ready" not in ran.stdout


def queue_read_errors(daemon: DaemonProcess) -> float:
    """``dialerd_queue_read_errors_total`` of the redis adapter, from a real scrape."""
    for line in daemon.ops.get("/metrics").text.splitlines():
        if line.startswith('dialerd_queue_read_errors_total{adapter="redis"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_a_queue_outage_is_logged_once_on_entering_and_once_on_leaving(tmp_path: Path) -> None:
    workdir = tmp_path / "redis"
    workdir.mkdir()
    redis = RedisServer(workdir)
    agents = "dialerd:queue:sales:agents"

    def agents_available() -> None:
        client = redis_client.Redis.from_url(redis.url)
        client.hset(agents, mapping={"a1": "available", "a2": "available"})
        client.close()

    agents_available()
    extra = f'[queue]\nbackend = "redis"\n[queue.redis]\nurl = "{redis.url}"\ntimeout = 0.5\n'
    daemon = DaemonProcess(tmp_path, extra_config=extra)
    try:
        daemon.wait_ready()
        campaign = create_campaign(daemon.http, 200, campaign={"queue_id": QUEUE})
        ran = daemon.http.put(f"/v1.0/campaigns/{campaign['id']}/status", json={"status": "run"})
        assert ran.status_code == 200, ran.text
        wait_until(lambda: any(line["event"] == "attempt started" for line in daemon.log_lines()),
                   "the campaign never dialed")  # fmt: skip
        redis.stop()
        # Many ticks fail to read the agents (the metric counts each one) ...
        wait_until(lambda: queue_read_errors(daemon) >= 5, "queue reads never failed")
        redis.start()
        agents_available()
        wait_until(
            lambda: any(line["event"] == "queue adapter available again"
                        for line in daemon.log_lines()),
            "no line on leaving the outage",
        )  # fmt: skip
        lines = daemon.log_lines()
    finally:
        daemon.close()
        redis.stop()
    # ... but the outage is one warning, and its end one line, each naming the campaign.
    down = [line for line in lines if line["event"] == "queue adapter unavailable"]
    up = [line for line in lines if line["event"] == "queue adapter available again"]
    assert len(down) == 1, down
    assert len(up) == 1, up
    assert down[0]["level"] == "warning"
    for line in down + up:
        assert (line["campaign_id"], line["queue"], line["adapter"]) == (
            campaign["id"],
            "sales",
            "redis",
        )
    assert lines.index(down[0]) < lines.index(up[0])
    # The alert's runbook finds it in what the daemon wrote.
    alerts = (Path(__file__).resolve().parents[2] / "config/prometheus/alerts.yml").read_text()
    runbook = next(line for line in alerts.splitlines() if "queue adapter unavailable" in line)
    pipeline = json.loads(runbook.split("runbook:", 1)[1]).split(";")[0]
    found = subprocess.run(
        ["bash", "-o", "pipefail", "-c",
         f"< {daemon.stdout_path} {pipeline.removeprefix(JOURNAL + ' |')}"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["campaign_id"] == campaign["id"]
