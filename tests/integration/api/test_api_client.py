"""The operator CLI against a live API: tables, --json, one-line errors and exit codes
(0 done, 1 refused or failed, 2 usage error)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from dialerd.client import add_client_commands
from tests.conftest import free_port
from tests.integration.api.api_conftest import (
    TOKEN_A,
    ApiServer,
    runnable_campaign,
    running_api,
    start_attempt,
)


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[ApiServer]:
    with running_api(tmp_path) as server:
        yield server


@pytest.fixture(autouse=True)
def token_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The token as the README says to give it: in the environment, out of ``ps``."""
    monkeypatch.setenv("DIALERD_TOKEN", TOKEN_A)


def dialerd(*argv: str) -> int:
    """Parse ``argv`` as the ``dialerd`` command line would and run the command."""
    parser = argparse.ArgumentParser(prog="dialerd")
    add_client_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


async def _campaign(server: ApiServer) -> dict[str, str]:
    async with server.client() as client:
        campaign = await runnable_campaign(client, name="spring sale")
        return {"id": campaign["id"], "outdial_id": campaign["outdial_id"]}


def make_campaign(server: ApiServer) -> dict[str, str]:
    return anyio.run(_campaign, server)


def test_campaign_list_show_run_and_stop(
    api_server: ApiServer, capsys: pytest.CaptureFixture[str]
) -> None:
    campaign = make_campaign(api_server)
    api = ("--api", api_server.url)

    assert dialerd("campaign", "list", *api) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == [
        "ID", "NAME", "TYPE", "STATUS", "SERVICE_LEVEL", "OUTDIAL", "CREATED"
    ]  # fmt: skip
    assert row.startswith(campaign["id"])
    assert "spring sale" in row
    assert row.index("call") == header.index("TYPE")

    assert dialerd("campaign", "show", campaign["id"], *api) == 0
    shown = capsys.readouterr().out
    assert "status            stop" in shown
    assert "dialing           stopped" in shown

    assert dialerd("campaign", "run", campaign["id"], *api) == 0
    assert capsys.readouterr().out.strip().endswith(": run")
    assert dialerd("campaign", "show", campaign["id"], "--json", *api) == 0
    shown_json = json.loads(capsys.readouterr().out)
    assert shown_json["status"] == "run"
    # No engine runs behind this API: nobody has taken the campaign up.
    assert shown_json["dialing_state"]["state"] == "starting"
    assert dialerd("campaign", "stop", campaign["id"], *api) == 0
    assert capsys.readouterr().out.strip().endswith(": stop")


def test_targets_import_and_campaigncall_list(
    api_server: ApiServer, capsys: pytest.CaptureFixture[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("DIALERD_TOKEN", TOKEN_A)
    campaign = make_campaign(api_server)
    leads = tmp_path / "leads.csv"
    leads.write_text("name,destination_0\nJo,+15551230001\nAl,+15551230002\n")
    assert dialerd("targets", "import", "--outdial", campaign["outdial_id"], str(leads),
                   "--api", api_server.url) == 0  # fmt: skip
    assert capsys.readouterr().out.strip() == (
        f"imported 2 target(s) into outdial {campaign['outdial_id']}"
    )

    assert dialerd("campaign", "run", campaign["id"], "--api", api_server.url) == 0
    attempt = start_attempt(api_server, campaign["id"])
    capsys.readouterr()
    assert dialerd("campaigncall", "list", "--campaign", campaign["id"],
                   "--api", api_server.url) == 0  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["ID", "STATUS", "RESULT"]
    assert lines[1].split()[:3] == [attempt["id"], "dialing", "-"]
    assert dialerd("campaigncall", "list", "--campaign", campaign["id"], "--json",
                   "--api", api_server.url) == 0  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["id"] for line in lines] == [attempt["id"]]


def test_api_errors_are_one_line_on_stderr(
    api_server: ApiServer, capsys: pytest.CaptureFixture[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    api = ("--api", api_server.url)
    unknown = "0d7e9a06-6f43-4b27-9b46-9b3f3a1f2c11"
    assert dialerd("campaign", "show", unknown, *api) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"dialerd: 404 NOT_FOUND: campaign {unknown} not found\n"

    monkeypatch.setenv("DIALERD_TOKEN", "wrong-token")
    assert dialerd("campaign", "list", "--api", api_server.url) == 1
    assert capsys.readouterr().err.startswith("dialerd: 401 UNAUTHENTICATED:")
    monkeypatch.setenv("DIALERD_TOKEN", TOKEN_A)

    outdial = make_campaign(api_server)["outdial_id"]
    bad = tmp_path / "bad.csv"
    bad.write_text("name,destination_0\nJo,555\n")
    assert dialerd("targets", "import", "--outdial", outdial, str(bad), *api) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "dialerd: 400 INVALID_ARGUMENT: 1 bad row(s), nothing imported",
        f"{bad}:2: destination_0: '555' is neither an E.164 number (like +15551234567) "
        "nor Address JSON",
    ]


def test_missing_token_file_or_daemon_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DIALERD_TOKEN", raising=False)
    assert dialerd("campaign", "list") == 2
    assert "no API token" in capsys.readouterr().err

    monkeypatch.setenv("DIALERD_TOKEN", TOKEN_A)
    url = f"http://127.0.0.1:{free_port()}"
    assert dialerd("campaign", "list", "--api", url) == 1
    err = capsys.readouterr().err
    assert err == (
        f"dialerd: cannot reach the dialerd API at {url}: connection refused "
        "(is the daemon running? see --api)\n"
    )
    missing = tmp_path / "missing.csv"
    args = ("--api", url)
    assert dialerd("targets", "import", "--outdial", "x", str(missing), *args) == 2
    assert "No such file or directory" in capsys.readouterr().err
    assert dialerd("targets", "import", "--outdial", "x", str(tmp_path / "a.xlsx"), *args) == 2
    assert "--format" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("api", "message"),
    [
        ("http://[::1", "is not a valid URL"),
        ("localhost:8080", "is not an http:// or https:// URL"),
        ("ftp://127.0.0.1", "is not an http:// or https:// URL"),
        ("", "is not an http:// or https:// URL"),
    ],
)
def test_a_bad_api_url_is_one_line_not_a_traceback(
    capsys: pytest.CaptureFixture[str], api: str, message: str
) -> None:
    assert dialerd("campaign", "list", "--api", api) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("dialerd: --api ")
    assert message in captured.err


def test_output_cut_short_by_a_closed_pipe_ends_silently(api_server: ApiServer) -> None:
    for _ in range(3):
        make_campaign(api_server)
    dialerd_bin = Path(sys.executable).parent / "dialerd"
    # A reader that closes at once: every write of the table meets a closed pipe.
    reader = subprocess.Popen(["head", "-c", "0"], stdin=subprocess.PIPE)
    command = subprocess.run(
        [str(dialerd_bin), "campaign", "list", "--api", api_server.url],
        stdout=reader.stdin,
        stderr=subprocess.PIPE,
        timeout=60,
        check=False,
    )
    assert reader.stdin is not None
    reader.stdin.close()
    reader.wait(timeout=10)
    assert command.stderr == b""
    assert command.returncode == 141
    # Through a shell pipe, as an operator types it.
    shell = subprocess.run(
        [
            "bash",
            "-c",
            f"'{dialerd_bin}' campaign list --api {api_server.url} | head -1",
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert shell.stderr == b""
    assert shell.stdout.split()[:2] == [b"ID", b"NAME"]


def test_token_file_is_read_and_refused_when_others_can_read_it(
    api_server: ApiServer, capsys: pytest.CaptureFixture[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.delenv("DIALERD_TOKEN")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN_A + "\n")
    token_file.chmod(0o600)
    args = ("campaign", "list", "--api", api_server.url, "--token-file", str(token_file))
    assert dialerd(*args) == 0
    assert capsys.readouterr().err == ""
    token_file.chmod(0o644)
    assert dialerd(*args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"--token-file {token_file}: readable by others (mode 0644)" in captured.err
    assert "chmod 600" in captured.err
    token_file.chmod(0o600)
    assert dialerd(*args, "--token", TOKEN_A) == 2
    assert "either --token or --token-file" in capsys.readouterr().err
    assert dialerd("campaign", "list", "--api", api_server.url, "--token-file",
                   str(tmp_path / "absent")) == 2  # fmt: skip
    assert "cannot read" in capsys.readouterr().err


def test_token_on_the_command_line_still_works_with_a_warning_about_ps(
    api_server: ApiServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DIALERD_TOKEN")
    assert dialerd("campaign", "list", "--api", api_server.url, "--token", TOKEN_A) == 0
    err = capsys.readouterr().err
    assert err.startswith("dialerd: warning: --token is visible to every user in ps")
    assert "DIALERD_TOKEN" in err
    assert "--token-file" in err
