"""The README's quick start, run as written: ``dialerd run --config config/sim.toml`` as a
process, then the CLI block in bash, from nothing to a stopped campaign, without curl.

The blocks are read from README.md, so the test fails when the README and the CLI
disagree. Only the state directory (a temp one) and the listen addresses differ from
what an operator types: the API's is a free port given with ``--listen`` (and to the
CLI as ``DIALERD_API``); ``[ops] listen`` has no command-line override, so the daemon
reads a copy of config/sim.toml whose only change is a free port there, and tests
running at the same time do not collide on it.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent


def quick_start_blocks() -> tuple[str, str]:
    """The two ``sh`` blocks of the README's "Quick start": the daemon, then the CLI."""
    text = README.read_text()
    section = text.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 2, "the quick start has a daemon block and a CLI block"
    return blocks[0], blocks[1]


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[str]:
    """The README's ``dialerd run`` line, with a temp state dir and a free port."""
    daemon_block, _ = quick_start_blocks()
    [line] = [line for line in daemon_block.splitlines() if line.startswith("dialerd run ")]
    argv = shlex.split(line)
    assert argv[argv.index("--config") + 1] == "config/sim.toml"
    config = (ROOT / "config" / "sim.toml").read_text()
    ops_port = free_port()
    config, replaced = re.subn(
        r'(?m)^(\[ops\]\n(?:.*\n)*?listen = )"[^"]*"', rf'\1"127.0.0.1:{ops_port}"', config
    )
    assert replaced == 1, "config/sim.toml has an [ops] listen"
    (tmp_path / "sim.toml").write_text(config)
    argv[argv.index("--config") + 1] = str(tmp_path / "sim.toml")
    argv[argv.index("--state-dir") + 1] = str(tmp_path / "state")
    port = free_port()
    argv += ["--listen", f"127.0.0.1:{port}", "--log-format", "json"]
    log = (tmp_path / "daemon.log").open("wb")
    process = subprocess.Popen(
        [str(BIN / "dialerd"), *argv[1:]], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (tmp_path / "daemon.log").read_text()
            try:
                ready = httpx.get(f"http://127.0.0.1:{ops_port}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the daemon did not get ready in 30 s"
            time.sleep(0.2)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
        log.close()
        assert code == 0, (tmp_path / "daemon.log").read_text()[-3000:]


@pytest.mark.slow
def test_the_readme_quick_start_runs_as_written(daemon: str, tmp_path: Path) -> None:
    _, cli_block = quick_start_blocks()
    assert "curl" not in cli_block
    work = tmp_path / "work"
    work.mkdir()
    script = work / "quickstart.sh"
    script.write_text(cli_block)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DIALERD_TOKEN", "DIALERD_API")
    }
    env |= {"PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "DIALERD_API": daemon}
    started = time.monotonic()
    run = subprocess.run(
        ["bash", "-euo", "pipefail", str(script)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    assert run.stderr == ""
    out = run.stdout
    assert re.search(r"^imported 2 target\(s\) into outdial [0-9a-f-]{36}$", out, re.M)
    # Five refreshes of the calls table, the calls of both leads in them.
    assert out.count("\nID ") + out.startswith("ID ") >= 5
    assert "+15550100001" in out
    assert "+15550100002" in out
    assert re.search(r"^campaign [0-9a-f-]{36} \(spring campaign\): run$", out, re.M)
    assert re.search(r"^campaign [0-9a-f-]{36} \(spring campaign\): stop(ping)?$", out, re.M)
    assert re.search(r"^status +stop(ping)?$", out, re.M)
    assert time.monotonic() - started < 60

    # The campaign ends stopped: answered calls finish within config/sim.toml's grace.
    campaign = re.findall(r"^id +([0-9a-f-]{36})$", out, re.M)[-1]
    headers = {"authorization": "Bearer dev-token"}
    deadline = time.monotonic() + 30
    while True:
        status = httpx.get(f"{daemon}/v1.0/campaigns/{campaign}", headers=headers).json()
        if status["status"] == "stop":
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.5)
