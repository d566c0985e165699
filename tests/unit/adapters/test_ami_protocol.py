"""AMI's line protocol: parsing messages out of any split of the bytes, and refusing junk."""

from __future__ import annotations

import pytest

from dialerd.adapters.asterisk.ami_protocol import (
    MAX_MESSAGE_BYTES,
    AmiMessage,
    AmiParser,
    AmiProtocolError,
    encode_action,
)

BANNER = b"Asterisk Call Manager/9.0.0\r\n"
RESPONSE = b"Response: Success\r\nActionID: dialerd-1\r\nMessage: Authentication accepted\r\n\r\n"
EVENT = b"Event: QueueMemberPause\r\nQueue: sales\r\nPaused: 1\r\n\r\n"


def test_banner_then_a_response_and_an_event() -> None:
    parser = AmiParser()
    messages, problems = parser.feed(BANNER + RESPONSE + EVENT)
    assert parser.banner == "Asterisk Call Manager/9.0.0"
    assert problems == []
    assert [m.response for m in messages] == ["Success", ""]
    assert messages[0].action_id == "dialerd-1"
    assert messages[1].event == "QueueMemberPause"
    assert messages[1].get("paused") == "1"  # keys ignore case, as Asterisk's do


def test_bytes_split_anywhere_give_the_same_messages() -> None:
    data = BANNER + RESPONSE + EVENT
    whole, _ = AmiParser().feed(data)
    for cut in range(1, len(data)):
        parser = AmiParser()
        first, _ = parser.feed(data[:cut])
        rest, _ = parser.feed(data[cut:])
        assert first + rest == whole, cut


def test_bare_newlines_and_values_with_colons() -> None:
    messages, _ = AmiParser(expect_banner=False).feed(b"Event: Foo\nTime: 12:30:01\nEmpty:\n\n")
    assert messages == [AmiMessage((("Event", "Foo"), ("Time", "12:30:01"), ("Empty", "")))]


def test_repeated_keys_are_kept_in_order() -> None:
    messages, _ = AmiParser(expect_banner=False).feed(
        b"Response: Success\r\nOutput: one\r\nOutput: two\r\n\r\n"
    )
    assert [v for k, v in messages[0].fields if k == "Output"] == ["one", "two"]
    assert messages[0].get("Output") == "one"
    assert "output" in messages[0]
    assert "Missing" not in messages[0]


def test_a_line_without_a_key_is_skipped_and_reported() -> None:
    messages, problems = AmiParser(expect_banner=False).feed(
        b"Event: Foo\r\nthis is not a field\r\n: no key\r\nA: 1\r\n\r\n"
    )
    assert messages == [AmiMessage((("Event", "Foo"), ("A", "1")))]
    assert [p.line for p in problems] == ["this is not a field", ": no key"]


def test_blank_lines_between_messages_make_no_empty_message() -> None:
    messages, _ = AmiParser(expect_banner=False).feed(b"\r\n\r\nEvent: A\r\n\r\n\r\n")
    assert [m.event for m in messages] == ["A"]


def test_bytes_that_are_not_utf8_are_replaced_not_fatal() -> None:
    messages, _ = AmiParser(expect_banner=False).feed(b"Event: A\r\nCallerIDName: Jos\xe9\r\n\r\n")
    assert messages[0].get("CallerIDName") == "Jos\ufffd"


def test_a_peer_that_is_not_ami_is_refused() -> None:
    with pytest.raises(AmiProtocolError, match="not an AMI server"):
        AmiParser().feed(b"HTTP/1.1 400 Bad Request\r\n\r\n")


def test_an_endless_message_is_refused() -> None:
    parser = AmiParser(expect_banner=False)
    line = b"Key: " + b"x" * 1000 + b"\r\n"
    for _ in range(MAX_MESSAGE_BYTES // len(line) - 1):
        parser.feed(line)
    with pytest.raises(AmiProtocolError, match="longer than"):
        parser.feed(line * 2)


def test_an_endless_line_is_refused() -> None:
    with pytest.raises(AmiProtocolError, match="longer than"):
        AmiParser(expect_banner=False).feed(b"x" * (MAX_MESSAGE_BYTES + 1))


def test_encode_action() -> None:
    assert encode_action("QueueStatus", "dialerd-7", {"Queue": "sales"}) == (
        b"Action: QueueStatus\r\nActionID: dialerd-7\r\nQueue: sales\r\n\r\n"
    )


@pytest.mark.parametrize(
    "fields",
    [{"Queue": "sales\r\nAction: Logoff"}, {"Queue\n": "x"}, {"A:B": "x"}, {"": "x"}],
)
def test_encode_refuses_line_breaks_that_would_inject_an_action(fields: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="line break"):
        encode_action("QueueStatus", "dialerd-1", fields)
