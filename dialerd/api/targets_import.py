"""Bulk import of outdial targets from CSV or NDJSON, read as a stream and validated whole.

Every row is checked before anything is stored: one bad row rejects the file, and the
rejection lists the first bad rows with their line numbers and what is wrong with them.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import Final

import msgspec

from dialerd.api.bodies import AddressBody, TargetCreate
from dialerd.model import SLOTS, Address, AddressType, OutdialTarget

MAX_REPORTED_ROWS: Final = 10
DESTINATION_COLUMNS: Final = tuple(f"destination_{slot}" for slot in SLOTS)
CSV_COLUMNS: Final = ("name", "detail", "data", *DESTINATION_COLUMNS)
E164: Final = re.compile(r"\+[1-9][0-9]{1,14}")


class RowProblem(msgspec.Struct, frozen=True):
    """What is wrong with one line of an imported file."""

    line: int
    problem: str


class ImportRejected(Exception):
    """The file has bad rows; nothing was imported."""

    def __init__(self, problems: list[RowProblem], bad_rows: int) -> None:
        self.problems = problems
        self.bad_rows = bad_rows
        listed = "; ".join(f"line {p.line}: {p.problem}" for p in problems)
        super().__init__(f"{bad_rows} bad row(s), nothing imported: {listed}")


class NoDestination(ValueError):
    """A target needs at least one destination with a non-empty target."""

    def __init__(self) -> None:
        super().__init__("the target has no destination (destination_0 .. destination_4)")


def new_target(
    outdial_id: str,
    now: str,
    *,
    name: str,
    detail: str,
    data: str,
    destinations: Sequence[Address | None],
) -> OutdialTarget:
    """A fresh ``idle`` target; raise ``NoDestination`` when every destination is empty."""
    if all(d is None or d.is_empty for d in destinations):
        raise NoDestination
    return OutdialTarget.fresh(outdial_id, destinations, now, name=name, detail=detail, data=data)


def target_from_body(outdial_id: str, now: str, body: TargetCreate) -> OutdialTarget:
    """The target a JSON body describes; raise ``NoDestination`` if it has none."""
    return new_target(
        outdial_id,
        now,
        name=body.name,
        detail=body.detail,
        data=body.data,
        destinations=[None if d is None else d.to_model() for d in body.destinations],
    )


class _Collector:
    """Keeps the good targets until the first bad row, then only the first problems."""

    def __init__(self) -> None:
        self.targets: list[OutdialTarget] = []
        self.problems: list[RowProblem] = []
        self.bad_rows = 0

    def good(self, target: OutdialTarget) -> None:
        if not self.bad_rows:
            self.targets.append(target)

    def bad(self, line: int, problem: str) -> None:
        self.bad_rows += 1
        self.targets.clear()
        if len(self.problems) < MAX_REPORTED_ROWS:
            self.problems.append(RowProblem(line, problem))

    def result(self) -> list[OutdialTarget]:
        if self.bad_rows:
            raise ImportRejected(self.problems, self.bad_rows)
        return self.targets


async def _records(chunks: AsyncIterable[bytes], *, quoted: bool) -> AsyncIterator[tuple[int, str]]:
    """Split a UTF-8 byte stream into ``(first line number, record)``.

    With ``quoted`` (CSV), a newline inside double quotes does not end a record: a
    record is complete when it holds an even number of ``"``.
    """
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    pending: list[str] = []
    pending_quotes = 0
    line = 1
    start = 1

    async def decoded() -> AsyncIterator[str]:
        try:
            async for chunk in chunks:
                yield decoder.decode(chunk)
            yield decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise ImportRejected(
                [RowProblem(line, f"the file is not UTF-8 text ({exc.reason})")], 1
            ) from None

    tail = ""
    async for text in decoded():
        parts = (tail + text).split("\n")
        tail = parts.pop()
        for part in parts:
            if not pending:
                start = line
            pending.append(part)
            pending_quotes += part.count('"') if quoted else 0
            line += 1
            if pending_quotes % 2 == 0:
                yield start, "\n".join(pending).removesuffix("\r")
                pending.clear()
                pending_quotes = 0
    if tail or pending:
        if not pending:
            start = line
        pending.append(tail)
        yield start, "\n".join(pending).removesuffix("\r")


def _destination(column: str, cell: str) -> Address | None:
    """A CSV destination cell: empty, an E.164 number, or Address JSON."""
    cell = cell.strip()
    if not cell:
        return None
    if cell.startswith("{"):
        try:
            return msgspec.json.decode(cell, type=AddressBody).to_model()
        except msgspec.DecodeError as exc:
            raise ValueError(f"{column}: not a valid Address: {exc}") from None
    if E164.fullmatch(cell):
        return Address(type=AddressType.TEL, target=cell)
    raise ValueError(
        f"{column}: {cell[:40]!r} is neither an E.164 number (like +15551234567) nor Address JSON"
    )


def _header(record: str) -> list[str]:
    columns = [name.strip() for name in next(csv.reader([record]), [])]
    unknown = [name for name in columns if name not in CSV_COLUMNS]
    if unknown:
        raise ValueError(
            f"unknown column(s) {', '.join(map(repr, unknown))}; "
            f"the columns are {', '.join(CSV_COLUMNS)}"
        )
    duplicated = sorted({name for name in columns if columns.count(name) > 1})
    if duplicated:
        raise ValueError(f"column(s) given twice: {', '.join(duplicated)}")
    if not any(name in DESTINATION_COLUMNS for name in columns):
        raise ValueError("no destination column: give at least destination_0")
    return columns


async def read_csv(chunks: AsyncIterable[bytes], outdial_id: str, now: str) -> list[OutdialTarget]:
    """Targets of a CSV file with a header row; raise ``ImportRejected`` on any bad row."""
    collector = _Collector()
    columns: list[str] | None = None
    async for line, record in _records(chunks, quoted=True):
        if not record.strip():
            continue
        if columns is None:
            try:
                columns = _header(record)
            except (ValueError, csv.Error) as exc:
                # Without a valid header no row can be read: report the header alone.
                raise ImportRejected([RowProblem(line, f"header: {exc}")], 1) from None
            continue
        try:
            cells = next(csv.reader([record]))
            if len(cells) != len(columns):
                raise ValueError(f"{len(cells)} cells, the header has {len(columns)} columns")
            row = dict(zip(columns, cells, strict=True))
            collector.good(
                new_target(
                    outdial_id,
                    now,
                    name=row.get("name", ""),
                    detail=row.get("detail", ""),
                    data=row.get("data", ""),
                    destinations=[_destination(c, row.get(c, "")) for c in DESTINATION_COLUMNS],
                )
            )
        except (ValueError, csv.Error) as exc:
            collector.bad(line, str(exc))
    if columns is None:
        raise ImportRejected([RowProblem(1, "the file is empty: a header row is needed")], 1)
    return collector.result()


async def read_ndjson(
    chunks: AsyncIterable[bytes], outdial_id: str, now: str
) -> list[OutdialTarget]:
    """Targets of NDJSON, one target object per line; raise ``ImportRejected`` on any bad line."""
    collector = _Collector()
    decoder = msgspec.json.Decoder(TargetCreate)
    async for line, record in _records(chunks, quoted=False):
        if not record.strip():
            continue
        try:
            collector.good(target_from_body(outdial_id, now, decoder.decode(record)))
        except msgspec.DecodeError as exc:
            collector.bad(line, str(exc))
        except NoDestination as exc:
            collector.bad(line, str(exc))
    return collector.result()
