"""AMI's line protocol, pure: ``Key: Value`` lines, a blank line ends a message.

The server first sends one banner line (``Asterisk Call Manager/9.0.0``). Keys may
repeat within a message (``Output:`` lines, ``ChanVariable:``), so a message keeps its
pairs in order; lookups by key ignore case, as Asterisk's own do.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Final

import msgspec

# A message larger than this is not AMI: the peer is something else or broken.
MAX_MESSAGE_BYTES: Final = 1024 * 1024


class AmiProtocolError(Exception):
    """The peer sent something that is not AMI; the connection cannot go on."""


class AmiMessage(msgspec.Struct, frozen=True):
    """One AMI message: a response (``Response:``) or an event (``Event:``)."""

    fields: tuple[tuple[str, str], ...]

    def get(self, key: str, default: str = "") -> str:
        """The first value of ``key`` (case-insensitive), else ``default``."""
        wanted = key.lower()
        for name, value in self.fields:
            if name.lower() == wanted:
                return value
        return default

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and any(n.lower() == key.lower() for n, _ in self.fields)

    @property
    def event(self) -> str:
        """The event's name ("" for a response)."""
        return self.get("Event")

    @property
    def response(self) -> str:
        """The response's status: Success, Error, Goodbye ("" for an event)."""
        return self.get("Response")

    @property
    def action_id(self) -> str:
        return self.get("ActionID")


class Problem(msgspec.Struct, frozen=True):
    """A line the parser skipped, and why (the shell logs it)."""

    line: str
    why: str


class AmiParser:
    """Turns received bytes into messages; keeps an incomplete message between feeds."""

    def __init__(self, *, expect_banner: bool = True) -> None:
        self.banner: str | None = None
        self._expect_banner = expect_banner
        self._buffer = bytearray()
        self._pairs: list[tuple[str, str]] = []
        self._size = 0

    def feed(self, data: bytes) -> tuple[list[AmiMessage], list[Problem]]:
        """The messages completed by ``data``, and lines skipped as malformed.

        Raises ``AmiProtocolError`` if a message grows past ``MAX_MESSAGE_BYTES``.
        """
        self._buffer += data
        messages: list[AmiMessage] = []
        problems: list[Problem] = []
        for line in self._lines():
            if self._expect_banner:
                self._expect_banner = False
                self.banner = line
                if not line.startswith("Asterisk Call Manager/"):
                    raise AmiProtocolError(f"not an AMI server: it said {line[:80]!r}")
                continue
            if not line:
                if self._pairs:
                    messages.append(AmiMessage(tuple(self._pairs)))
                    self._pairs, self._size = [], 0
                continue
            key, sep, value = line.partition(":")
            if not sep or not key.strip():
                problems.append(Problem(line[:200], "no 'Key:' before the value"))
                continue
            self._pairs.append((key.strip(), value.strip()))
        if self._size + len(self._buffer) > MAX_MESSAGE_BYTES:
            raise AmiProtocolError(f"AMI message longer than {MAX_MESSAGE_BYTES} bytes")
        return messages, problems

    def _lines(self) -> Iterator[str]:
        while (end := self._buffer.find(b"\n")) >= 0:
            raw = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            self._size += len(raw) + 1
            if self._size > MAX_MESSAGE_BYTES:
                raise AmiProtocolError(f"AMI message longer than {MAX_MESSAGE_BYTES} bytes")
            # Names (caller ids, queue members) are not always UTF-8.
            yield raw.removesuffix(b"\r").decode("utf-8", errors="replace")


def encode_action(action: str, action_id: str, fields: Mapping[str, str]) -> bytes:
    """One action as bytes; a CR or LF in a key or value is refused (it would inject lines)."""
    lines = [("Action", action), ("ActionID", action_id), *fields.items()]
    out: list[str] = []
    for key, value in lines:
        if not key or any(c in key for c in ":\r\n") or any(c in value for c in "\r\n"):
            raise ValueError(f"AMI field {key!r} has a line break or colon in it")
        out.append(f"{key}: {value}\r\n")
    out.append("\r\n")
    return "".join(out).encode()
