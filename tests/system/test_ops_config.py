"""``dialerd check-config`` and the state directory: what it refuses before a start, and
files the daemon makes private whatever the store and the umask."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from tests.system.daemon_process import DaemonProcess, event_is, start_campaign, wait_for_line


def check_config(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dialerd.cli", "check-config", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_check_config_refuses_a_store_timeout_the_watchdog_would_kill(tmp_path: Path) -> None:
    config = tmp_path / "dialerd.toml"
    config.write_text('[store]\nbackend = "redis"\n[store.redis]\ntimeout = 10.0\n')
    refused = check_config(str(config))
    assert refused.returncode == 1
    assert "[store.redis] timeout = 10" in refused.stderr
    assert "WatchdogSec" in refused.stderr
    # The shipped default (2 s) fits the shipped WatchdogSec=30; so does 10 s under 60 s.
    assert check_config(str(config), "--watchdog-sec", "60").returncode == 0
    assert check_config(str(config), "--watchdog-sec", "0").returncode == 0
    config.write_text('[store]\nbackend = "redis"\n')
    assert check_config(str(config)).stdout == "ok\n"


def test_check_config_reads_the_ops_token_file(tmp_path: Path) -> None:
    config = tmp_path / "dialerd.toml"
    config.write_text(f'[ops]\ntoken_file = "{tmp_path / "absent"}"\n')
    refused = check_config(str(config))
    assert refused.returncode == 1
    assert "[ops] token_file" in refused.stderr


def test_check_config_refuses_two_customers_with_the_same_token_naming_both(
    tmp_path: Path,
) -> None:
    first, second = "5e4a0680-804e-11ec-98a7-2fea5968d85b", "0b7e2d36-1c55-4f0e-9a33-2b8f0c6d1e47"
    config = tmp_path / "dialerd.toml"
    config.write_text(
        "".join(
            f'[[api.tokens]]\ntoken = "shared-secret-token"\ncustomer_id = "{customer}"\n'
            for customer in (first, second)
        )
    )
    refused = check_config(str(config))
    assert refused.returncode == 1
    assert first in refused.stderr
    assert second in refused.stderr
    assert "same token" in refused.stderr
    # The token itself is a secret: it is not printed.
    assert "shared-secret-token" not in refused.stderr


def test_the_daemon_makes_its_state_directory_whatever_the_store(
    tmp_path: Path, redis_url: str
) -> None:
    extra = f'[store]\nbackend = "redis"\n[store.redis]\nurl = "{redis_url}"\n'
    daemon = DaemonProcess(tmp_path, extra_config=extra)
    try:
        daemon.wait_ready()
        start_campaign(daemon.http, targets=50)
        # The simulated centre's ledger lives in the state directory.
        wait_for_line(daemon, event_is("attempt ended"))
        assert (tmp_path / "state" / "originations.jsonl").is_file()
        assert not [line for line in daemon.log_lines() if line["event"] == "origination failed"]
        assert daemon.stop() == 0
    finally:
        daemon.close()


def test_state_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    # A shell with the loosest umask there is.
    previous = os.umask(0)
    try:
        daemon = DaemonProcess(tmp_path)
    finally:
        os.umask(previous)
    state = tmp_path / "state"
    try:
        daemon.wait_ready()
        start_campaign(daemon.http, targets=20)
        wait_for_line(daemon, event_is("attempt ended"))
        files = {path.name: stat.S_IMODE(path.stat().st_mode) for path in state.iterdir()}
        assert daemon.stop() == 0
    finally:
        daemon.close()
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert {"dialerd.sqlite3", "dialerd.sqlite3-wal", "originations.jsonl", "instance-id"} <= set(
        files
    )
    assert {name: mode for name, mode in files.items() if mode != 0o600} == {}
