"""Bulk import of outdial targets from CSV or NDJSON, read and validated as a stream.

The readers yield the targets in batches as the body arrives, for the store to stage
(``Store.import_targets``), which publishes them only once the whole file is read. One
bad row rejects the file: the readers then stop yielding, read on to list the first bad
rows with their line numbers and what is wrong with them, and raise ``ImportRejected``,
and the store discards what it staged. ``records``, ``record_text`` and ``batches`` also
read the do-not-call number imports (``dialerd.api.dnc``).
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from typing import Any, Final, TypeVar

import anyio
import msgspec

from dialerd.api import jsontext
from dialerd.api.bodies import TargetCreate
from dialerd.api.errors import ApiError
from dialerd.model import SLOTS, Address, AddressType, OutdialTarget

T = TypeVar("T")
MAX_REPORTED_ROWS: Final = 10
DESTINATION_COLUMNS: Final = tuple(f"destination_{slot}" for slot in SLOTS)
CSV_COLUMNS: Final = ("name", "detail", "data", *DESTINATION_COLUMNS)


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

    def as_api_error(self) -> ApiError:
        """The 400 answer: the message, and each bad row as a detail."""
        details = [msgspec.to_builtins(problem) for problem in self.problems]
        return ApiError(400, "IMPORT_REJECTED", str(self), details=details)


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


# Targets handed to the store at a time, and the longest record (line, or CSV record
# spanning lines) accepted: what an import holds in memory whatever the file's size.
IMPORT_BATCH: Final = 500
# Rows parsed between two looks at the event loop: parsing a body holds the loop, and
# other requests (and the engine) must not wait behind a whole chunk of rows.
ROWS_PER_CHECKPOINT: Final = 50
MAX_RECORD_BYTES: Final = 1024 * 1024
_BOM: Final = codecs.BOM_UTF8


async def batches(rows: AsyncIterator[tuple[int, T | str]]) -> AsyncIterator[list[T]]:
    """Good rows in batches of ``IMPORT_BATCH``, until the first bad row; after it
    only the problems are kept, and ``ImportRejected`` is raised at the end."""
    batch: list[T] = []
    problems: list[RowProblem] = []
    bad_rows = 0
    seen = 0
    async for line, row in rows:
        seen += 1
        if seen % ROWS_PER_CHECKPOINT == 0:
            await anyio.lowlevel.checkpoint()
        if isinstance(row, str):
            bad_rows += 1
            batch = []
            if len(problems) < MAX_REPORTED_ROWS:
                problems.append(RowProblem(line, row))
        elif not bad_rows:
            batch.append(row)
            if len(batch) >= IMPORT_BATCH:
                yield batch
                batch = []
    if bad_rows:
        raise ImportRejected(problems, bad_rows)
    if batch:
        yield batch


async def records(
    chunks: AsyncIterable[bytes], *, quoted: bool
) -> AsyncIterator[tuple[int, bytes]]:
    """Split a byte stream into ``(first line number, record)``, bytes without the line end.

    With ``quoted`` (CSV), a newline inside double quotes does not end a record: a
    record is complete when it holds an even number of ``"``. Each byte is looked at a
    bounded number of times (no re-copying of an unfinished line), and a record longer
    than ``MAX_RECORD_BYTES`` rejects the file.
    """
    record = bytearray()
    quotes = 0
    line = start = 1
    first = True
    async for chunk in chunks:
        position = 0
        while position <= len(chunk):
            end = chunk.find(b"\n", position)
            piece = chunk[position:] if end < 0 else chunk[position:end]
            record += piece
            if quoted:
                quotes += piece.count(b'"')
            if len(record) > MAX_RECORD_BYTES:
                raise ImportRejected(
                    [RowProblem(start, f"the record is longer than {MAX_RECORD_BYTES} bytes")], 1
                )
            if end < 0:
                break
            position = end + 1
            line += 1
            if quotes % 2:
                record += b"\n"
                continue
            yield start, _finished(record, first)
            record.clear()
            quotes = 0
            first = False
            start = line
    if record or quotes % 2:
        yield start, _finished(record, first)


def _finished(record: bytearray, first: bool) -> bytes:
    """A complete record: without a trailing CR, and without the BOM of the file's start."""
    data = bytes(record).removesuffix(b"\r")
    return data.removeprefix(_BOM) if first else data


def record_text(record: bytes) -> str:
    try:
        return record.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"the text is not UTF-8: byte {exc.start} "
            f"({record[exc.start : exc.start + 1]!r}): {exc.reason}"
        ) from None


def _destination(column: str, cell: str) -> Any:
    """A CSV destination cell as JSON-like data: empty (None), a phone number (a ``tel``
    address) or Address JSON; ``TargetCreate`` then validates it like a JSON body's."""
    cell = cell.strip()
    if not cell:
        return None
    if cell.startswith("{"):
        try:
            return jsontext.loads(cell)
        except jsontext.JsonProblem as exc:
            raise ValueError(f"{column}: not a valid Address: {exc}") from None
    if cell.startswith("+"):
        return {"type": AddressType.TEL.value, "target": cell}
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


async def csv_rows(
    chunks: AsyncIterable[bytes],
    header: Callable[[str], list[str]],
    convert: Callable[[dict[str, Any]], T],
) -> AsyncIterator[tuple[int, T | str]]:
    """The rows of a CSV file whose first row is a header (``header`` checks it and
    gives the columns), each as ``convert`` makes it from ``{column: cell}``, or the
    row's problem as text; ``ImportRejected`` for a bad or missing header."""
    columns: list[str] | None = None
    async for line, record in records(chunks, quoted=True):
        try:
            text = record_text(record)
            if not text.strip():
                continue
            if columns is None:
                try:
                    columns = header(text)
                except (ValueError, csv.Error) as exc:
                    # Without a valid header no row can be read: report the header alone.
                    raise ImportRejected([RowProblem(line, f"header: {exc}")], 1) from None
                continue
            cells = next(csv.reader([text]))
            if len(cells) != len(columns):
                raise ValueError(f"{len(cells)} cells, the header has {len(columns)} columns")
            yield line, convert(dict(zip(columns, cells, strict=True)))
        except (ValueError, csv.Error) as exc:
            yield line, str(exc)
    if columns is None:
        raise ImportRejected([RowProblem(1, "the file is empty: a header row is needed")], 1)


def _csv_rows(
    chunks: AsyncIterable[bytes], outdial_id: str, now: str
) -> AsyncIterator[tuple[int, OutdialTarget | str]]:
    def target(row: dict[str, Any]) -> OutdialTarget:
        for column in DESTINATION_COLUMNS:
            if column in row:
                row[column] = _destination(column, row[column])
        return target_from_body(outdial_id, now, jsontext.convert(row, TargetCreate))

    return csv_rows(chunks, _header, target)


async def _ndjson_rows(
    chunks: AsyncIterable[bytes], outdial_id: str, now: str
) -> AsyncIterator[tuple[int, OutdialTarget | str]]:
    async for line, record in records(chunks, quoted=False):
        if not record.strip():
            continue
        try:
            yield line, target_from_body(outdial_id, now, jsontext.decode(record, TargetCreate))
        except (jsontext.JsonProblem, NoDestination) as exc:
            yield line, str(exc)


def read_csv(
    chunks: AsyncIterable[bytes], outdial_id: str, now: str
) -> AsyncIterator[list[OutdialTarget]]:
    """Targets of a CSV file with a header row, in batches; ``ImportRejected`` at the end
    (after the last batch) when any row is bad."""
    return batches(_csv_rows(chunks, outdial_id, now))


def read_ndjson(
    chunks: AsyncIterable[bytes], outdial_id: str, now: str
) -> AsyncIterator[list[OutdialTarget]]:
    """Targets of NDJSON, one target object per line, in batches; ``ImportRejected`` at
    the end when any line is bad."""
    return batches(_ndjson_rows(chunks, outdial_id, now))
