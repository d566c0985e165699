"""Structured logs: JSON lines with the operator's fields, masking, stdlib records, console."""

from __future__ import annotations

import http.server
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import structlog

from dialerd.model import Address, AddressType
from dialerd.service import logs


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    yield
    for handler in [h for h in root.handlers if h.get_name() == logs.HANDLER_NAME]:
        root.removeHandler(handler)
    root.setLevel(level)
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()


def json_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines()]


def test_json_line_carries_timestamp_level_event_logger(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure_logging("info", "json")
    structlog.get_logger("dialerd.engine").info("campaign started", cause="api")

    [line] = json_lines(capsys)
    assert line["event"] == "campaign started"
    assert line["level"] == "info"
    assert line["logger"] == "dialerd.engine"
    assert line["cause"] == "api"
    assert line["timestamp"].endswith("Z")
    assert list(line)[:4] == ["timestamp", "level", "logger", "event"]


def test_bound_campaign_ids_appear_on_every_line(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure_logging("info", "json")
    log = structlog.get_logger("dialerd.engine")
    with structlog.contextvars.bound_contextvars(campaign_id="c-1", campaigncall_id="cc-1"):
        log.info("attempt started")
        logging.getLogger("redis").warning("connection reset")
    log.info("tick")

    started, redis_line, tick = json_lines(capsys)
    assert (started["campaign_id"], started["campaigncall_id"]) == ("c-1", "cc-1")
    assert redis_line["campaign_id"] == "c-1"
    assert "campaign_id" not in tick


def test_level_filters_and_can_change_on_reload(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure_logging("warning", "json")
    log = structlog.get_logger("dialerd.daemon")
    log.info("not shown")
    logs.configure_logging("debug", "json")
    log.debug("shown")

    assert [line["event"] for line in json_lines(capsys)] == ["shown"]


def test_unknown_level_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="verbose"):
        logs.configure_logging("verbose", "json")


def test_stdlib_records_render_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure_logging("info", "json")
    logging.getLogger("hypercorn.error").warning("Running on %s", "http://127.0.0.1:8080")

    [line] = json_lines(capsys)
    assert line["event"] == "Running on http://127.0.0.1:8080"
    assert line["logger"] == "hypercorn.error"
    assert line["level"] == "warning"


def test_exception_is_one_structured_field_without_locals(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure_logging("info", "json")
    destination = "+15551234567"
    try:
        raise RuntimeError("backend refused")
    except RuntimeError:
        structlog.get_logger("dialerd.engine").exception("origination failed")

    out = capsys.readouterr().out
    assert len(out.splitlines()) == 1
    line = json.loads(out)
    assert line["exception"][0]["exc_type"] == "RuntimeError"
    assert line["exception"][0]["exc_value"] == "backend refused"
    assert destination not in out


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+15551234567", "********4567"),
        ("+1 (555) 123-4567", "*************4567"),
        ("12345", "*2345"),
        ("1234", "****"),
        ("12", "**"),
        ("", ""),
        ("alice@example.com", "*****************"),
    ],
)
def test_mask_number_keeps_only_last_four_digits(number: str, masked: str) -> None:
    assert logs.mask_number(number) == masked


def test_numbers_masked_at_info_and_shown_at_debug(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure_logging("debug", "json")
    log = structlog.get_logger("dialerd.engine")
    address = Address(type=AddressType.TEL, target="+15551234567")
    log.info("attempt started", destination=address, source="+15550001111", target_id="t-1")
    log.debug("attempt detail", destination="+15551234567")

    info, debug = json_lines(capsys)
    assert info["destination"]["target"] == "********4567"
    assert info["destination"]["type"] == "tel"
    assert info["source"] == "********1111"
    assert info["target_id"] == "t-1"
    assert debug["destination"] == "+15551234567"


def test_numbers_inside_targets_and_lists_are_masked(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure_logging("info", "json")
    target = {"id": "t-1", "destination_0": {"type": "tel", "target": "+15551234567"}}
    structlog.get_logger("dialerd.api").info(
        "targets imported", target=target, destinations=["+15550001111", "+15550002222"]
    )

    [line] = json_lines(capsys)
    assert line["target"] == {
        "id": "t-1",
        "destination_0": {"type": "tel", "target": "********4567"},
    }
    assert line["destinations"] == ["********1111", "********2222"]
    assert "+1555" not in json.dumps(line)


def test_tokens_are_never_logged(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure_logging("debug", "json")
    log = structlog.get_logger("dialerd.api")
    log.debug("request", token="s3cret-token", Authorization="Bearer s3cret", api_token="x")

    out = capsys.readouterr().out
    assert "s3cret" not in out
    assert json.loads(out)["event"] == "request"


def test_console_format_is_for_people(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure_logging("info", "console")
    structlog.get_logger("dialerd.engine").info("campaign started", campaign_id="c-1")

    out = capsys.readouterr().out
    assert "campaign started" in out
    assert "campaign_id=c-1" in out
    assert "\x1b[" not in out  # not a terminal: no colour codes
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


def test_auto_format_is_json_when_stdout_is_not_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure_logging("info", "auto")
    structlog.get_logger("dialerd.daemon").info("dialerd ready")

    assert json_lines(capsys)[0]["event"] == "dialerd ready"


def test_reconfiguring_keeps_one_handler(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure_logging("info", "json")
    logs.configure_logging("info", "json")
    structlog.get_logger("dialerd.daemon").info("once")

    assert len(json_lines(capsys)) == 1


class _NumberServer(http.server.BaseHTTPRequestHandler):
    """Answers 204 to anything: the far end of a request whose URL carries a number."""

    def do_POST(self) -> None:
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def local_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NumberServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


ARI_LIKE = "/ari/channels?endpoint=PJSIP%2F%2B15551234567%40trunk&callerId=%2B15550001111"


def test_a_real_httpx_request_writes_no_number_at_info(
    capsys: pytest.CaptureFixture[str], local_server: str
) -> None:
    logs.configure_logging("info", "json")
    with httpx.Client() as client:
        assert client.post(local_server + ARI_LIKE).status_code == 204

    out = capsys.readouterr().out
    assert "15551234567" not in out
    assert "5550001111" not in out
    assert "HTTP Request" not in out  # httpx's per-request line is quiet at INFO


def test_at_debug_httpx_lines_come_back_through_dialerds_pipeline(
    capsys: pytest.CaptureFixture[str], local_server: str
) -> None:
    logs.configure_logging("debug", "json")
    with httpx.Client() as client:
        client.post(local_server + ARI_LIKE)

    requests = [line for line in json_lines(capsys) if line["logger"] == "httpx"]
    assert requests
    assert requests[0]["event"].startswith("HTTP Request: POST")


def test_numbers_and_secrets_in_a_librarys_message_are_masked_at_info(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure_logging("info", "json")
    logging.getLogger("hypercorn.access").warning(
        "%s %s", "POST", "/v1.0/x?token=dev-token&to=%2B15551234567 sip:15557654322@trunk"
    )
    structlog.get_logger("dialerd.telephony").warning(
        "origination failed",
        error="409 for url http://pbx/ari/channels?endpoint=PJSIP/+15551234567",
    )
    logging.getLogger("redis").error("cannot reach redis://:s3cret@10.0.0.1:6379/0")

    library, own, redis_line = json_lines(capsys)
    assert library["event"] == "POST /v1.0/x?token=***&to=**********4567 sip:*******4322@trunk"
    assert own["error"].endswith("endpoint=PJSIP/********4567")
    assert redis_line["event"] == "cannot reach redis://:***@10.0.0.1:6379/0"


@pytest.mark.parametrize(
    "text",
    [
        "campaign 12345678-1234-4234-8234-123456789012 started",  # an id, all digits
        "took 0.12345678 s",
        "listening on http://127.0.0.1:8080/ari",
        "rows 123456",
    ],
)
def test_ids_decimals_and_addresses_are_not_taken_for_numbers(text: str) -> None:
    assert logs.mask_text(text) == text


def test_console_tracebacks_show_no_local_variables(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure_logging("info", "console")
    # Built at run time: rich prints the source lines around the raise, not only locals.
    api_token = "-".join(["s3cret", "console", "token"])
    destination = "+1555" + "1234567"
    try:
        raise RuntimeError(f"refused after {len(api_token + destination)} characters")
    except RuntimeError:
        structlog.get_logger("dialerd.engine").exception("origination failed")

    out = capsys.readouterr().out
    assert "origination failed" in out
    assert "RuntimeError" in out
    assert "s3cret-console-token" not in out
    assert "15551234567" not in out
