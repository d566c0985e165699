"""The systemd unit: verifies cleanly, is hardened, and runs as the user sysusers creates."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "dialerd.service"
SYSUSERS = ROOT / "systemd" / "dialerd.sysusers.conf"


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def directives(unit: Path) -> dict[str, list[str]]:
    """Every ``Key=value`` of the unit, values in order (keys may repeat)."""
    found: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


@pytest.fixture
def installed_unit(tmp_path: Path) -> Path:
    """The unit as scripts/install writes it for a prefix whose dialerd is a stub."""
    prefix = tmp_path / "opt" / "dialerd"
    binary = prefix / "venv" / "bin" / "dialerd"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    unit = tmp_path / "dialerd.service"
    unit.write_text(UNIT.read_text().replace("/opt/dialerd", str(prefix)))
    return unit


def test_systemd_analyze_verify_finds_nothing(installed_unit: Path) -> None:
    verified = run("systemd-analyze", "verify", str(installed_unit))

    assert (verified.returncode, verified.stderr) == (0, "")


def test_security_exposure_is_at_most_two() -> None:
    analysis = run("systemd-analyze", "security", "--offline=yes", str(UNIT))

    match = re.search(r"Overall exposure level for dialerd\.service: (\d+\.\d+)", analysis.stdout)
    assert match is not None, analysis.stdout + analysis.stderr
    assert float(match.group(1)) <= 2.0


def test_unit_notifies_is_watched_and_reloads_with_sighup() -> None:
    unit = directives(UNIT)

    assert unit["Type"] == ["notify"]
    assert unit["NotifyAccess"] == ["main"]
    assert unit["WatchdogSec"] == ["30"]
    # The file is checked first: a bad one fails `systemctl reload` and sends nothing.
    assert unit["ExecReload"] == [
        "/opt/dialerd/venv/bin/dialerd check-config --watchdog-sec 30 /etc/dialerd/dialerd.toml",
        "/bin/kill -HUP $MAINPID",
    ]
    [watchdog] = unit["WatchdogSec"]
    assert f"--watchdog-sec {watchdog} " in unit["ExecReload"][0]


def test_journald_rate_limit_fits_the_supported_attempt_rate() -> None:
    unit = directives(UNIT)

    [interval] = unit["LogRateLimitIntervalSec"]
    [burst] = unit["LogRateLimitBurst"]
    seconds = int(interval.removesuffix("s"))
    # Two info lines per attempt; 400 attempts/s must pass with room for warnings.
    assert int(burst) / seconds >= 2 * 400
    assert unit["Restart"] == ["on-failure"]
    [exec_start] = unit["ExecStart"]
    assert exec_start.startswith("/opt/dialerd/venv/bin/dialerd run --config /etc/dialerd/")
    assert "--state-dir ${STATE_DIRECTORY}" in exec_start


def test_unit_runs_as_the_user_sysusers_creates(tmp_path: Path) -> None:
    [user] = directives(UNIT)["User"]
    created = run("systemd-sysusers", "--dry-run", f"--root={tmp_path}", str(SYSUSERS))

    assert created.returncode == 0, created.stderr
    assert f"Creating user '{user}'" in created.stdout + created.stderr


def test_proc_shows_the_service_only_its_processes() -> None:
    # ProcSubset=pid hides /proc/stat and the rest; the process metrics do without them
    # (tests/unit/metrics/test_metrics.py runs them on such a /proc).
    assert directives(UNIT)["ProcSubset"] == ["pid"]
    analysis = run("systemd-analyze", "security", "--offline=yes", str(UNIT))
    [row] = [line for line in analysis.stdout.splitlines() if "ProcSubset=" in line]
    assert row.lstrip().startswith("✓"), row
    # The unit keeps the private state the daemon also enforces itself.
    assert directives(UNIT)["StateDirectoryMode"] == ["0700"]
    assert directives(UNIT)["UMask"] == ["0077"]
