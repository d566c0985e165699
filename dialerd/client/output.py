"""What the CLI prints: tables and records for people, JSON lines for scripts.

Text output shows times in the operator's local zone (``TZ``); ``--json`` prints the
API's values untouched: one object per line, one line per item of a list.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from dialerd.client.http import Row

Columns = Sequence[tuple[str, Callable[[Row], Any]]]
API_TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S.%f"
LOCAL_TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S %Z"
NIL_UUID: Final = "00000000-0000-0000-0000-000000000000"
NOT_DELETED_YEAR: Final = 9999
ADDRESS_FIELDS: Final = frozenset(
    {"source", "destination"} | {f"destination_{n}" for n in range(5)}
)


def local_time(value: Any) -> str:
    """An API timestamp (UTC) in the local zone; anything else as it is, null as "-"."""
    if value is None or value == "":
        return "-"
    if not isinstance(value, str):
        return str(value)
    try:
        moment = datetime.strptime(value, API_TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return value
    if moment.year == NOT_DELETED_YEAR:
        return "-"  # the API's "not deleted" marker
    return moment.astimezone().strftime(LOCAL_TIME_FORMAT)


def duration(milliseconds: Any) -> str:
    """Milliseconds as the CLI's options take them: ``30s``, ``1500ms``, ``10m``."""
    if not isinstance(milliseconds, int):
        return str(milliseconds)
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if milliseconds and milliseconds % size == 0:
            return f"{milliseconds // size}{unit}"
    return f"{milliseconds}ms"


def reference(value: Any) -> str:
    """An id, with the nil UUID (none) as "-"."""
    return "-" if value in (None, "", NIL_UUID) else str(value)


def address(value: Any) -> str:
    """An address as ``+15551234567`` (tel) or ``type:target``."""
    if not isinstance(value, dict) or not value.get("target"):
        return "-"
    kind = value.get("type") or ""
    return value["target"] if kind in ("tel", "") else f"{kind}:{value['target']}"


def value_text(key: str, value: Any) -> str:
    """One field of a record as text."""
    if key.startswith("tm_") or key in ("since",):
        return local_time(value)
    if key in ("dial_timeout", "try_interval"):
        return duration(value)
    if key.endswith("_id") or key == "id":
        return reference(value)
    if key in ADDRESS_FIELDS:
        return address(value)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else str(value)


def table(rows: Sequence[Row], columns: Columns) -> str:
    """Rows as left-aligned columns under a header."""
    cells = [[name for name, _ in columns]]
    cells += [["" if (v := get(row)) is None else str(v) for _, get in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in cells
    )


def record(row: Row, extra: Iterable[tuple[str, str]] = ()) -> str:
    """One resource as ``key  value`` lines, then ``extra`` lines."""
    lines = [(key, value_text(key, value)) for key, value in row.items()]
    lines += list(extra)
    width = max(len(key) for key, _ in lines)
    return "\n".join(f"{key.ljust(width)}  {value}".rstrip() for key, value in lines)


def json_line(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def emit(json_output: bool, value: Any, text: Callable[[], str]) -> None:
    """One object: a JSON line, or the text for people."""
    print(json_line(value) if json_output else text())


def emit_list(json_output: bool, rows: Sequence[Row], columns: Columns) -> None:
    """A list: one JSON line per item, or a table."""
    if json_output:
        for row in rows:
            sys.stdout.write(json_line(row) + "\n")
    else:
        print(table(rows, columns))
