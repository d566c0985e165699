"""Resource fields as command-line options, and the JSON body they make.

The CLI only translates notation (``30s`` into milliseconds, ``3,2`` into
``max_try_count_0`` and ``max_try_count_1``, ``+1555...`` into a ``tel`` address); the
API validates what is sent and its message is what the operator sees. What cannot be
translated is a usage error (exit 2) and nothing is sent.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from dialerd.client.http import Row, UsageError

DURATION: Final = re.compile(r"(-?\d+(?:\.\d+)?)(ms|s|m|h)")
UNIT_MS: Final = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
ADDRESS_TYPES: Final = (
    "agent", "conference", "email", "extension", "line", "sip", "tel", "web_session"
)  # fmt: skip
SLOTS: Final = 5


def duration_ms(option: str, text: str) -> int:
    """``30s``, ``1500ms``, ``10m``, ``1h`` as milliseconds."""
    match = DURATION.fullmatch(text.strip())
    if match is None:
        raise UsageError(
            f"{option} {text[:40]!r}: give a number and a unit: ms, s, m or h (like 30s, 10m)"
        )
    return round(float(match[1]) * UNIT_MS[match[2]])


def int_or_text(text: str) -> Any:
    """An integer when the text is one, else the text for the API to name as wrong."""
    try:
        return int(text)
    except ValueError:
        return text


def address(option: str, text: str) -> Any:
    """``+15551234567`` (tel), ``TYPE:TARGET`` (``sip:alice@example.com``), or JSON."""
    text = text.strip()
    if text.startswith("{"):
        return json_value(option, text)
    if not text:
        return {}
    kind, colon, target = text.partition(":")
    if colon and kind in ADDRESS_TYPES:
        return {"type": kind, "target": target}
    return {"type": "tel", "target": text}


def json_value(option: str, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{option}: not JSON: {exc}") from None


def json_file(option: str, path: str) -> Any:
    """The JSON in a file (``-`` is not special: scripts name their files)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{option} {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{option} {path}: not UTF-8 text") from None
    return json_value(f"{option} {path}", text)


def actions(option: str, path: str) -> Any:
    """A file holding the actions list, or an object with an ``actions`` list."""
    value = json_file(option, path)
    if isinstance(value, dict) and set(value) == {"actions"}:
        return value["actions"]
    return value


def max_tries(option: str, text: str) -> dict[str, Any]:
    """``3,2`` as ``max_try_count_0=3, max_try_count_1=2`` (tries per destination slot)."""
    counts = [part.strip() for part in text.split(",")]
    if len(counts) > SLOTS or any(not count for count in counts):
        raise UsageError(
            f"{option} {text[:40]!r}: give 1 to {SLOTS} comma-separated counts, "
            "one per destination slot (like 3,2)"
        )
    return {f"max_try_count_{slot}": int_or_text(count) for slot, count in enumerate(counts)}


@dataclass(frozen=True)
class Field:
    """One option: its flag, the body field(s) it sets, how its text becomes JSON."""

    flag: str
    field: str
    help: str
    metavar: str = ""
    convert: Callable[[str, str], Any] | None = None
    # The option sets several fields (``--max-tries``): ``convert`` returns them.
    spread: bool = False

    @property
    def dest(self) -> str:
        return "field_" + self.flag.removeprefix("--").replace("-", "_")

    def add_to(self, parser: argparse._ActionsContainer) -> None:
        parser.add_argument(self.flag, dest=self.dest, metavar=self.metavar or None, help=self.help)

    def body(self, text: str) -> dict[str, Any]:
        value = text if self.convert is None else self.convert(self.flag, text)
        if self.spread:
            assert isinstance(value, dict)
            return value
        return {self.field: value}


def text_field(name: str, help_text: str) -> Field:
    return Field(f"--{name.replace('_', '-')}", name, help_text, metavar="TEXT")


def id_field(flag: str, name: str, what: str) -> Field:
    return Field(flag, name, f'{what} id ("" for none)', metavar="ID")


def int_field(flag: str, name: str, help_text: str) -> Field:
    return Field(flag, name, help_text, metavar="N", convert=lambda _flag, text: int_or_text(text))


def duration_field(flag: str, name: str, help_text: str) -> Field:
    return Field(flag, name, help_text, metavar="DURATION", convert=duration_ms)


NAME: Final = text_field("name", "name")
DETAIL: Final = text_field("detail", "detail")

OUTPLAN_FIELDS: Final = (
    NAME,
    DETAIL,
    Field("--source", "source", "caller id: +15551234567, TYPE:TARGET or Address JSON",
          metavar="ADDRESS", convert=address),
    duration_field("--dial-timeout", "dial_timeout", "how long a call may ring (30s)"),
    duration_field("--try-interval", "try_interval", "wait before the next try (10m)"),
    Field("--max-tries", "max_try_count_N", "tries per destination slot, like 3,2",
          metavar="N[,N...]", convert=max_tries, spread=True),
)  # fmt: skip
OUTDIAL_FIELDS: Final = (
    NAME,
    DETAIL,
    text_field("data", "free data kept with the outdial"),
    id_field("--campaign", "campaign_id", "campaign"),
)
CAMPAIGN_FIELDS: Final = (
    Field("--type", "type", "call or flow", metavar="TYPE"),
    NAME,
    DETAIL,
    int_field("--service-level", "service_level", "percent of free agents to dial for"),
    Field("--end-handle", "end_handle", "stop or continue when the outdial is done",
          metavar="HANDLE"),
    Field("--actions-file", "actions", "JSON file with the actions list", metavar="FILE",
          convert=actions),
    id_field("--outplan", "outplan_id", "outplan"),
    id_field("--outdial", "outdial_id", "outdial"),
    id_field("--queue", "queue_id", "queue"),
    id_field("--next-campaign", "next_campaign_id", "campaign started after this one:"),
)  # fmt: skip


def add_field_options(parser: argparse.ArgumentParser, fields: Sequence[Field]) -> None:
    group = parser.add_argument_group("fields (sent as given; the API says what is wrong)")
    for field in fields:
        field.add_to(group)
    parser.add_argument(
        "--from-file",
        metavar="FILE",
        help="a JSON object with the fields; options given as well override it",
    )


def body(args: argparse.Namespace, fields: Sequence[Field]) -> Row:
    """The request body: ``--from-file``'s object, then the options given."""
    result: Row = {}
    if args.from_file is not None:
        loaded = json_file("--from-file", args.from_file)
        if not isinstance(loaded, dict):
            raise UsageError(f"--from-file {args.from_file}: expected a JSON object")
        result.update(loaded)
    for field in fields:
        text = getattr(args, field.dest)
        if text is not None:
            result.update(field.body(text))
    return result
