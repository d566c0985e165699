"""What the daemon writes: JSON log lines naming their campaign, the documented jq
recipes over a real journal, one line per queue outage, and never a password."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import redis as redis_client

from tests.conftest import RedisServer, free_port
from tests.system.daemon_process import (
    QUEUE,
    WAIT_SECONDS,
    DaemonProcess,
    create_campaign,
    wait_until,
)


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


def test_a_redis_password_is_never_printed_when_redis_cannot_be_reached(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    extra = (
        f'[store]\nbackend = "redis"\n[store.redis]\nurl = "redis://ops:s3cret@127.0.0.1:{port}/0"\n'
        # A few tries at start (each logged with the store's URL), then the exit.
        f'timeout = 0.5\nstart_wait = 1.5\n[queue]\nbackend = "redis"\n[queue.redis]\n'
        f'url = "redis://:s3cret@127.0.0.1:{port}/0"\ntimeout = 0.5\n'
    )
    daemon = DaemonProcess(tmp_path, extra_config=extra)
    try:
        assert daemon.process.wait(timeout=WAIT_SECONDS) == 1
    finally:
        daemon.close()
    printed = daemon.stdout_path.read_text() + daemon.stderr_path.read_text()
    assert f"redis://ops:***@127.0.0.1:{port}/0" in printed
    assert "store unreachable at start; retrying" in printed
    assert "s3cret" not in printed
