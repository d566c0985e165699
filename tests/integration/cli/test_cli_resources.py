"""``dialerd outplan|outdial|campaign|targets|campaigncall`` against a live API: options
named after the fields, the API's own error lines, exit codes, JSON lines, local times,
the import's progress bar, and shell completion."""

from __future__ import annotations

import io
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dialerd.client import progress
from tests.integration.api.api_conftest import TOKEN_A, ApiServer, running_api
from tests.integration.api.test_api_client import dialerd

QUEUE = "99bf739a-932f-433c-b1bf-103d33d7e9bb"


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[ApiServer]:
    with running_api(tmp_path) as server:
        yield server


@pytest.fixture
def api(api_server: ApiServer, monkeypatch: pytest.MonkeyPatch) -> ApiServer:
    """The server, with the CLI pointed at it through the environment."""
    monkeypatch.setenv("DIALERD_API", api_server.url)
    monkeypatch.setenv("DIALERD_TOKEN", TOKEN_A)
    return api_server


def out(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().out.strip()


def test_outplan_create_show_update_list_delete(
    api: ApiServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert dialerd("outplan", "create", "--name", "three tries", "--source", "+15559876543",
                   "--dial-timeout", "30s", "--try-interval", "10m", "--max-tries", "3,2",
                   "--json") == 0  # fmt: skip
    created = json.loads(out(capsys))
    assert created["source"]["type"] == "tel"
    assert created["source"]["target"] == "+15559876543"
    assert (created["dial_timeout"], created["try_interval"]) == (30_000, 600_000)
    assert (created["max_try_count_0"], created["max_try_count_1"]) == (3, 2)
    outplan = created["id"]

    assert dialerd("outplan", "show", outplan) == 0
    shown = dict(line.split(None, 1) for line in out(capsys).splitlines() if " " in line.strip())
    assert shown["dial_timeout"] == "30s"
    assert shown["try_interval"] == "10m"
    assert shown["source"] == "+15559876543"

    # name goes to PUT /outplans/{id}, the dialing fields to /dial_info: one command.
    assert dialerd("outplan", "update", outplan, "--name", "two tries", "--max-tries", "2",
                   "--dial-timeout", "1500ms", "--json") == 0  # fmt: skip
    updated = json.loads(out(capsys))
    assert (updated["name"], updated["max_try_count_0"], updated["dial_timeout"]) == (
        "two tries", 2, 1500
    )  # fmt: skip

    assert dialerd("outplan", "list") == 0
    header, row = out(capsys).splitlines()
    assert header.split() == [
        "ID", "NAME", "SOURCE", "DIAL_TIMEOUT", "TRY_INTERVAL", "MAX_TRIES", "CREATED"
    ]  # fmt: skip
    assert row.split()[:4] == [outplan, "two", "tries", "+15559876543"]
    assert "1500ms" in row.split()
    assert dialerd("outplan", "list", "-q") == 0
    assert out(capsys) == outplan

    assert dialerd("outplan", "delete", outplan) == 0
    assert out(capsys) == f"outplan {outplan} (two tries): deleted"
    assert dialerd("outplan", "show", outplan) == 1
    assert capsys.readouterr().err == f"dialerd: 404 NOT_FOUND: outplan {outplan} not found\n"


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (("--source", "555"),
         "400 INVALID_ARGUMENT: target: '555' is not an E.164 number (like +15551234567) "
         "- at `$.source`"),
        (("--dial-timeout", "0s"),
         "400 INVALID_ARGUMENT: Expected `int` >= 1 - at `$.dial_timeout`"),
        (("--max-tries", "3,x"),
         "400 INVALID_ARGUMENT: Expected `int`, got `str` - at `$.max_try_count_1`"),
        (("--name", "x" * 300),
         "400 INVALID_ARGUMENT: Expected `str` of length <= 255 - at `$.name`"),
    ],
)  # fmt: skip
def test_the_api_validates_and_its_message_is_the_one_line_printed(
    api: ApiServer, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], error: str
) -> None:
    assert dialerd("outplan", "create", *argv) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"dialerd: {error}\n"


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (("outplan", "create", "--dial-timeout", "30"),
         "--dial-timeout '30': give a number and a unit: ms, s, m or h (like 30s, 10m)"),
        (("outplan", "create", "--max-tries", "1,2,3,4,5,6"),
         "--max-tries '1,2,3,4,5,6': give 1 to 5 comma-separated counts, one per "
         "destination slot (like 3,2)"),
        (("outplan", "update", "0d7e9a06-6f43-4b27-9b46-9b3f3a1f2c11"),
         "outplan update: nothing to change: give a field option or --from-file (see --help)"),
        (("campaign", "create", "--from-file", "/nonexistent.json"),
         "--from-file /nonexistent.json: No such file or directory"),
    ],
)  # fmt: skip
def test_a_command_line_that_cannot_be_sent_is_exit_2_and_sends_nothing(
    api: ApiServer, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], error: str
) -> None:
    assert dialerd(*argv) == 2
    assert capsys.readouterr().err == f"dialerd: {error}\n"
    assert dialerd("outplan", "list", "-q") == 0
    assert out(capsys) == ""
    with pytest.raises(SystemExit) as exit_:
        dialerd("outplan", "create", "--no-such-option")
    assert exit_.value.code == 2


def test_campaign_from_file_with_options_overriding_it_and_an_unknown_field(
    api: ApiServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert dialerd("outdial", "create", "--name", "leads", "--data", "spring", "-q") == 0
    outdial = out(capsys)
    actions = tmp_path / "actions.json"
    actions.write_text(json.dumps([{"type": "talk", "option": {"text": "Hello"}}]))
    spec = tmp_path / "campaign.json"
    spec.write_text(json.dumps({"name": "from file", "service_level": 50, "end_handle": "stop"}))
    assert dialerd("campaign", "create", "--from-file", str(spec), "--service-level", "80",
                   "--outdial", outdial, "--queue", QUEUE, "--end-handle", "continue",
                   "--actions-file", str(actions), "--json") == 0  # fmt: skip
    campaign = json.loads(out(capsys))
    assert campaign["name"] == "from file"
    assert (campaign["service_level"], campaign["end_handle"]) == (80, "continue")
    assert campaign["outdial_id"] == outdial
    assert campaign["queue_id"] == QUEUE
    assert campaign["actions"][0]["type"] == "talk"

    # "" unsets an id, as in the API.
    assert dialerd("campaign", "update", campaign["id"], "--queue", "", "--json") == 0
    assert json.loads(out(capsys))["queue_id"] == "00000000-0000-0000-0000-000000000000"
    assert dialerd("campaign", "update", campaign["id"], "--end-handle", "forever") == 1
    assert "at `$.end_handle`" in capsys.readouterr().err
    spec.write_text(json.dumps({"nmae": "typo"}))
    assert dialerd("campaign", "update", campaign["id"], "--from-file", str(spec)) == 1
    assert "nmae" in capsys.readouterr().err

    # outdial fields behind three endpoints, changed by one command.
    assert dialerd("outdial", "update", outdial, "--name", "renamed", "--data", "d2",
                   "--campaign", campaign["id"], "--json") == 0  # fmt: skip
    changed = json.loads(out(capsys))
    assert (changed["name"], changed["data"], changed["campaign_id"]) == (
        "renamed", "d2", campaign["id"]
    )  # fmt: skip
    # A later part refused: the line says what the earlier parts changed.
    assert dialerd("outdial", "update", outdial, "--name", "again", "--campaign", "nope") == 1
    err = capsys.readouterr().err
    assert err.startswith("dialerd: 400 INVALID_ARGUMENT:")
    assert err.endswith("(already changed: name)\n")

    assert dialerd("campaign", "list", "--json") == 0
    assert [json.loads(line)["id"] for line in out(capsys).splitlines()] == [campaign["id"]]
    assert dialerd("campaign", "delete", campaign["id"], "-q") == 0
    assert out(capsys) == campaign["id"]


def test_times_are_local_on_text_and_raw_in_json(
    api: ApiServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "Asia/Kolkata")  # UTC+05:30, no daylight saving
    time.tzset()
    try:
        assert dialerd("outdial", "create", "--name", "tz", "--json") == 0
        raw = json.loads(out(capsys))["tm_create"]
        assert dialerd("outdial", "list") == 0
        row = out(capsys).splitlines()[1]
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    utc_hour, utc_minute = int(raw[11:13]), int(raw[14:16])
    minutes = (utc_hour * 60 + utc_minute + 330) % (24 * 60)
    assert f"{minutes // 60:02d}:{minutes % 60:02d}:" in row
    assert row.endswith(" IST")


def test_targets_list_delete_and_campaigncall_show(
    api: ApiServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert dialerd("outdial", "create", "-q") == 0
    outdial = out(capsys)
    leads = tmp_path / "leads.ndjson"
    leads.write_text(
        '{"name": "Jo", "destination_0": {"type": "tel", "target": "+15551230001"}}\n'
        '{"name": "Al", "destination_0": {"type": "tel", "target": "+15551230002"},'
        ' "destination_1": {"type": "sip", "target": "al@example.com"}}\n'
    )
    assert dialerd("targets", "import", "--outdial", outdial, str(leads)) == 0
    assert out(capsys) == f"imported 2 target(s) into outdial {outdial}"
    assert dialerd("targets", "list", "--outdial", outdial) == 0
    lines = out(capsys).splitlines()
    assert lines[0].split() == [
        "ID", "NAME", "STATUS", "DESTINATIONS", "TRIES", "HELD", "CREATED"
    ]  # fmt: skip
    # One import: both rows have the same tm_create, so their order is not fixed.
    [al] = [line.split() for line in lines[1:] if line.split()[1] == "Al"]
    assert al[2:7] == ["idle", "+15551230002", "sip:al@example.com", "0,0,0,0,0", "-"]
    first = al[0]
    assert dialerd("targets", "delete", "--outdial", outdial, first) == 0
    assert out(capsys) == f"target {first} (Al): deleted"
    assert dialerd("targets", "list", "--outdial", outdial, "-q") == 0
    assert len(out(capsys).splitlines()) == 1

    unknown = "0d7e9a06-6f43-4b27-9b46-9b3f3a1f2c11"
    assert dialerd("campaigncall", "show", unknown) == 1
    assert capsys.readouterr().err.startswith("dialerd: 404 NOT_FOUND: campaigncall")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_import_progress_bar_on_a_terminal_only(
    api: ApiServer, capsys: pytest.CaptureFixture[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    assert dialerd("outdial", "create", "-q") == 0
    outdial = out(capsys)
    rows = 20_000
    leads = tmp_path / "leads.csv"
    leads.write_text("name,destination_0\n" + "".join(f"n{i},+1555{i:07d}\n" for i in range(rows)))
    # Small chunks and no quiet start, so that even a fast import draws the bar.
    monkeypatch.setattr(progress, "QUIET_SECONDS", 0.0)
    monkeypatch.setattr(progress, "REDRAW_SECONDS", 0.001)
    monkeypatch.setattr(progress, "CHUNK", 1024)
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert dialerd("targets", "import", "--outdial", outdial, str(leads)) == 0
    assert out(capsys) == f"imported {rows} target(s) into outdial {outdial}"
    drawn = terminal.getvalue()
    assert "leads.csv [" in drawn
    assert " rows/s" in drawn
    summary = drawn.rsplit("\r\x1b[K", 1)[1]
    assert summary.startswith(f"{rows:,} rows in ")
    assert summary.endswith(" rows/s)\n")

    # Piped: nothing but the count.
    monkeypatch.undo()
    monkeypatch.setenv("DIALERD_API", api.url)
    monkeypatch.setenv("DIALERD_TOKEN", TOKEN_A)
    assert dialerd("targets", "import", "--outdial", outdial, str(leads)) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out == f"imported {rows} target(s) into outdial {outdial}\n"


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_scripts_are_generated_for_bash_and_zsh(
    capsys: pytest.CaptureFixture[str], shell: str, tmp_path: Path
) -> None:
    from dialerd.cli import main

    assert main(["completion", shell]) == 0
    script = capsys.readouterr().out
    for word in ("outplan", "campaigncall", "--dial-timeout", "--max-tries", "--from-file"):
        assert word in script
    if shell == "bash":
        path = tmp_path / "dialerd.bash"
        path.write_text(script)
        # Loads in bash and completes a subcommand.
        probe = (
            f"source {path}; COMP_WORDS=(dialerd outp); COMP_CWORD=1; "
            "COMP_LINE='dialerd outp'; COMP_POINT=${#COMP_LINE}; "
            "_shtab_dialerd dialerd outp dialerd; printf '%s\\n' \"${COMPREPLY[@]}\""
        )
        result = subprocess.run(
            ["bash", "-c", probe], capture_output=True, text=True, timeout=30, check=True
        )
        assert result.stdout.split() == ["outplan"]
    else:
        assert script.startswith("#compdef dialerd")


def test_dnc_add_show_list_import_remove(
    api: ApiServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert dialerd("dnc", "add", "+1 555 010 0101", "+15550100102", "--detail", "asked") == 0
    lines = out(capsys).splitlines()
    assert lines[0].split() == ["NUMBER", "DETAIL", "ADDED"]
    assert sorted(line.split()[0] for line in lines[1:]) == ["+15550100101", "+15550100102"]
    assert dialerd("dnc", "show", "+15550100101", "--json") == 0
    assert json.loads(out(capsys))["detail"] == "asked"

    numbers = tmp_path / "dnc.csv"
    numbers.write_text("number,detail\n+15550100103,complaint\n+15550100101,again\n")
    assert dialerd("dnc", "import", str(numbers)) == 0
    assert out(capsys) == "imported 2 do-not-call number(s)"
    assert dialerd("dnc", "list", "-q") == 0
    assert sorted(out(capsys).splitlines()) == ["+15550100101", "+15550100102", "+15550100103"]

    bad = tmp_path / "bad.ndjson"
    bad.write_text('{"number": "+15550100104"}\n{"number": "555"}\n')
    assert dialerd("dnc", "import", str(bad)) == 1
    error = capsys.readouterr().err
    assert f"{bad}:2: number: '555' is not an E.164 number" in error
    assert dialerd("dnc", "show", "+15550100104") == 1
    capsys.readouterr()

    assert dialerd("dnc", "remove", "+15550100101") == 0
    assert out(capsys) == "+15550100101: off the do-not-call list"
    assert dialerd("dnc", "remove", "+15550100101") == 1
    assert "not on the do-not-call list" in capsys.readouterr().err
