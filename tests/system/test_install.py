"""scripts/install: a working dialerd in its own venv, the unit, a config never overwritten."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dialerd import __version__

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "scripts" / "install"
PREFIX = "/opt/dialerd-test"


def install(*args: str) -> subprocess.CompletedProcess[str]:
    # The interpreter running the tests makes the venv; pip reuses its wheel cache.
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(
        [str(INSTALL), *args], capture_output=True, text=True, timeout=180, env=env, check=False
    )


@pytest.mark.slow
def test_install_into_destdir_gives_a_working_dialerd_and_keeps_the_config(
    tmp_path: Path,
) -> None:
    destdir = tmp_path / "root"
    first = install("--prefix", PREFIX, "--destdir", str(destdir))
    assert first.returncode == 0, first.stderr

    venv = destdir / PREFIX.lstrip("/") / "venv"
    script = venv / "bin" / "dialerd"
    # The staged venv names the prefix it will live in, not the staging root.
    assert script.read_text().splitlines()[0] == f"#!{PREFIX}/venv/bin/python"
    version = subprocess.run(
        [str(venv / "bin" / "python"), str(script), "version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert version.stdout.strip() == f"dialerd {__version__}"

    unit = (destdir / "etc/systemd/system/dialerd.service").read_text()
    assert f"ExecStart={PREFIX}/venv/bin/dialerd run --config /etc/dialerd/dialerd.toml" in unit
    assert str(destdir) not in unit
    assert (destdir / "etc/sysusers.d/dialerd.conf").is_file()
    bash_completion = destdir / "usr/share/bash-completion/completions/dialerd"
    assert "_shtab_dialerd" in bash_completion.read_text()
    assert "--dial-timeout" in bash_completion.read_text()
    zsh_completion = destdir / "usr/share/zsh/vendor-completions/_dialerd"
    assert zsh_completion.read_text().startswith("#compdef dialerd")
    config = destdir / "etc/dialerd/dialerd.toml"
    assert config.read_text() == (ROOT / "config" / "dialerd.toml").read_text()
    assert config.stat().st_mode & 0o777 == 0o640
    assert "systemctl daemon-reload && systemctl enable --now dialerd" in first.stdout

    config.write_text('[log]\nlevel = "debug"\n')
    again = install("--prefix", PREFIX, "--destdir", str(destdir))

    assert again.returncode == 0, again.stderr
    assert config.read_text() == '[log]\nlevel = "debug"\n'
    assert "left as it is" in again.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prefix", "opt/dialerd"], "--prefix must be an absolute path"),
        (["--prefix"], "--prefix needs a directory"),
        (["--root", "/tmp/x"], "unknown argument '--root'"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_written(
    args: list[str], message: str
) -> None:
    refused = install(*args)

    assert refused.returncode == 2
    assert message in refused.stderr
