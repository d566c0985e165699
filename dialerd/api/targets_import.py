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
import secrets
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, Generic, Protocol, TypeVar, runtime_checkable

import anyio
import msgspec

from dialerd.api import jsontext
from dialerd.api.bodies import TargetCreate
from dialerd.api.errors import ApiError
from dialerd.model import (
    MAX_ADDRESS_TARGET,
    MAX_DATA,
    MAX_DETAIL,
    MAX_NAME,
    SLOTS,
    Address,
    AddressType,
    OutdialTarget,
    surely_e164,
)

T = TypeVar("T")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
MAX_REPORTED_ROWS: Final = 10
DESTINATION_COLUMNS: Final = tuple(f"destination_{slot}" for slot in SLOTS)
CSV_COLUMNS: Final = ("name", "detail", "data", *DESTINATION_COLUMNS)
_DESTINATION_SLOT: Final = {column: slot for slot, column in enumerate(DESTINATION_COLUMNS)}
_TEXT_LIMITS: Final = {"name": MAX_NAME, "detail": MAX_DETAIL, "data": MAX_DATA}


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


class RecordSplitter:
    """Splits a byte stream, fed a chunk at a time, into ``(first line number, record)``,
    bytes without the line end.

    With ``quoted`` (CSV), a newline inside double quotes does not end a record: a
    record is complete when it holds an even number of ``"``. Each byte is looked at a
    bounded number of times (a record on one line, the common case, is not copied
    twice), and a record longer than ``MAX_RECORD_BYTES`` rejects the file.
    """

    def __init__(self, *, quoted: bool) -> None:
        self.quoted = quoted
        self._record = bytearray()  # the unfinished record
        self._quotes = 0
        self._line = self._start = 1
        self._first = True

    def feed(self, chunk: bytes) -> list[tuple[int, bytes]]:
        """The records this chunk completes."""
        done: list[tuple[int, bytes]] = []
        *complete, tail = chunk.split(b"\n")
        quoted = self.quoted
        for piece in complete:
            quotes = piece.count(b'"') if quoted else 0
            if not self._record and not self._quotes and not quotes % 2:
                if len(piece) > MAX_RECORD_BYTES:
                    self._too_long()
                record = piece.removesuffix(b"\r")
            else:
                self._add(piece, quotes)
                if self._quotes % 2:
                    self._record += b"\n"
                    self._line += 1
                    continue
                record = bytes(self._record).removesuffix(b"\r")
                self._record.clear()
                self._quotes = 0
            if self._first:
                record = record.removeprefix(_BOM)
                self._first = False
            done.append((self._start, record))
            self._line += 1
            self._start = self._line
        self._add(tail, tail.count(b'"') if quoted else 0)
        return done

    def finish(self) -> list[tuple[int, bytes]]:
        """The last record, when the stream does not end with a line end."""
        if not self._record and not self._quotes % 2:
            return []
        record = bytes(self._record).removesuffix(b"\r")
        self._record.clear()
        return [(self._start, record.removeprefix(_BOM) if self._first else record)]

    def _add(self, piece: bytes, quotes: int) -> None:
        self._record += piece
        self._quotes += quotes
        if len(self._record) > MAX_RECORD_BYTES:
            self._too_long()

    def _too_long(self) -> None:
        raise ImportRejected(
            [RowProblem(self._start, f"the record is longer than {MAX_RECORD_BYTES} bytes")], 1
        )


async def records(
    chunks: AsyncIterable[bytes], *, quoted: bool
) -> AsyncIterator[tuple[int, bytes]]:
    """``RecordSplitter``'s records of a byte stream, as it arrives."""
    splitter = RecordSplitter(quoted=quoted)
    async for chunk in chunks:
        for record in splitter.feed(chunk):
            yield record
    for record in splitter.finish():
        yield record


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


class RowMaker(Protocol[R_co]):
    """What a ``RowReader`` makes of each good row: ``quick`` for a row of plain cells
    whose destinations are E.164 numbers (``numbers``: one per slot, None when empty),
    ``target`` for any other."""

    def quick(
        self, target_id: str, name: str, detail: str, data: str, numbers: list[str | None]
    ) -> R_co: ...

    def target(self, target: OutdialTarget) -> R_co: ...


class RowReader(Generic[R]):
    """The targets of an import file (CSV with a header row, or NDJSON), read from its
    bytes a chunk at a time, each as ``maker`` makes it (``TargetReader``: the
    ``OutdialTarget``; the SQLite import worker: the row it stores): synchronous, so
    that the parsing runs off the event loop (a worker thread, ``read_targets``, or
    an import worker process).

    ``feed`` gives the good targets its chunk completed; after the first bad row it
    gives none and only keeps the first ``MAX_REPORTED_ROWS`` problems with their line
    numbers, which ``finish`` raises as ``ImportRejected``. Imported targets get ids that
    grow in the order of the file (UUID version 7: the import's start in ms, then a
    counter from a random start), so the stores' id indexes take them at their end.
    """

    def __init__(
        self,
        outdial_id: str,
        now: str,
        maker: RowMaker[R],
        *,
        csv_file: bool,
        quick: bool = True,
    ) -> None:
        self.outdial_id = outdial_id
        self.now = now
        self.maker = maker
        self.csv_file = csv_file
        # Rows whose cells are plain text and E.164 numbers are made directly (``_quick``);
        # the others, and every bad one, go through TargetCreate as a JSON body does.
        self.quick = quick
        self._records = RecordSplitter(quoted=csv_file)
        self._columns: list[str] | None = None
        self._ids = ordered_ids()
        self.problems: list[RowProblem] = []
        self.bad_rows = 0

    def feed(self, chunk: bytes) -> list[R]:
        return self._read(self._records.feed(chunk))

    def finish(self) -> list[R]:
        """The last targets; ``ImportRejected`` if any row was bad, or the CSV header."""
        targets = self._read(self._records.finish())
        if self.csv_file and self._columns is None:
            raise ImportRejected([RowProblem(1, "the file is empty: a header row is needed")], 1)
        if self.bad_rows:
            raise ImportRejected(self.problems, self.bad_rows)
        return targets

    def _read(self, lines: list[tuple[int, bytes]]) -> list[R]:
        targets: list[R] = []
        for line, record in lines:
            try:
                target = self._csv(line, record) if self.csv_file else self._ndjson(record)
            except (ValueError, csv.Error, jsontext.JsonProblem) as exc:
                self.bad_rows += 1
                targets = []
                if len(self.problems) < MAX_REPORTED_ROWS:
                    self.problems.append(RowProblem(line, str(exc)))
                continue
            if target is not None and not self.bad_rows:
                targets.append(target)
        return targets

    def _csv(self, line: int, record: bytes) -> R | None:
        text = record_text(record)
        if not text.strip():
            return None
        if self._columns is None:
            try:
                self._columns = _header(text)
            except (ValueError, csv.Error) as exc:
                # Without a valid header no row can be read: report the header alone.
                raise ImportRejected([RowProblem(line, f"header: {exc}")], 1) from None
            return None
        if '"' in text or "\r" in text or "\0" in text:
            cells = next(csv.reader([text]))
        else:  # what csv.reader makes of a record without quotes, line ends or NULs
            cells = text.split(",")
        columns = self._columns
        if len(cells) != len(columns):
            raise ValueError(f"{len(cells)} cells, the header has {len(columns)} columns")
        if self.quick:
            target = self._quick(columns, cells)
            if target is not None:
                return target
        row: dict[str, Any] = dict(zip(columns, cells, strict=True))
        for column in DESTINATION_COLUMNS:
            if column in row:
                row[column] = _destination(column, row[column])
        return self._target(jsontext.convert(row, TargetCreate))

    def _quick(self, columns: list[str], cells: list[str]) -> R | None:
        """The target of a row of plain cells whose destinations are E.164 numbers, as
        ``TargetCreate`` would make it; None for any other row (TargetCreate decides)."""
        values = {"name": "", "detail": "", "data": ""}
        numbers: list[str | None] = [None, None, None, None, None]
        found = False
        for column, cell in zip(columns, cells, strict=True):
            slot = _DESTINATION_SLOT.get(column)
            if slot is None:
                if len(cell) > _TEXT_LIMITS[column]:
                    return None
                values[column] = cell
                continue
            number = cell.strip()
            if not number:
                continue
            if not surely_e164(number) or len(number) > MAX_ADDRESS_TARGET:
                return None
            numbers[slot] = number
            found = True
        data = values["data"]
        if not found or data.lstrip().startswith("{"):  # a zone in data: checked there
            return None
        return self.maker.quick(next(self._ids), values["name"], values["detail"], data, numbers)

    def _ndjson(self, record: bytes) -> R | None:
        if not record.strip():
            return None
        return self._target(jsontext.decode(record, TargetCreate))

    def _target(self, body: TargetCreate) -> R:
        destinations = [None if d is None else d.to_model() for d in body.destinations]
        if all(d is None or d.is_empty for d in destinations):
            raise NoDestination
        target = OutdialTarget.fresh(
            self.outdial_id,
            destinations,
            self.now,
            name=body.name,
            detail=body.detail,
            data=body.data,
            target_id=next(self._ids),
        )
        return self.maker.target(target)


class _Targets:
    """``RowMaker`` of ``OutdialTarget``s."""

    def __init__(self, outdial_id: str, now: str) -> None:
        self.outdial_id = outdial_id
        self.now = now

    def quick(
        self, target_id: str, name: str, detail: str, data: str, numbers: list[str | None]
    ) -> OutdialTarget:
        destinations = [
            None if number is None else Address(type=AddressType.TEL, target=number)
            for number in numbers
        ]
        return OutdialTarget.fresh(
            self.outdial_id,
            destinations,
            self.now,
            name=name,
            detail=detail,
            data=data,
            target_id=target_id,
        )

    def target(self, target: OutdialTarget) -> OutdialTarget:
        return target


class TargetReader(RowReader[OutdialTarget]):
    """A ``RowReader`` of ``OutdialTarget``s."""

    def __init__(self, outdial_id: str, now: str, *, csv_file: bool, quick: bool = True) -> None:
        super().__init__(outdial_id, now, _Targets(outdial_id, now), csv_file=csv_file, quick=quick)


def ordered_ids(counter: int | None = None) -> Iterator[str]:
    """UUIDs (version 7) that grow in the order they are made: the time in ms now, then
    a 74-bit counter from a random start (RFC 9562, method 2), or from ``counter``.

    Only the last group (the counter's low 48 bits) is formatted per id; the rest is
    formatted again when those bits wrap."""
    stamp = time.time_ns() // 1_000_000
    if counter is None:
        counter = secrets.randbits(73)  # room to count well past any import
    while True:
        rand_a, rand_b = counter >> 62, counter & ((1 << 62) - 1)
        value = (stamp << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
        text = f"{value:032x}"
        prefix = f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-"
        low = counter & _LOW_48
        for bits in range(low, _LOW_48 + 1):
            yield f"{prefix}{bits:012x}"
        counter += _LOW_48 + 1 - low


_LOW_48: Final = (1 << 48) - 1


async def read_targets(
    chunks: AsyncIterable[bytes], outdial_id: str, now: str, *, csv_file: bool
) -> AsyncIterator[list[OutdialTarget]]:
    """Targets of a CSV file with a header row (``csv_file``) or of NDJSON, one target
    object per line, in batches of ``IMPORT_BATCH``; ``ImportRejected`` at the end
    (after the last batch) when any row is bad.

    Each body chunk is parsed in a worker thread of the import's own while the batches
    of the chunk before are handed on (the store writes them meanwhile, SQLite without
    holding the GIL), so reading and writing overlap and the event loop parses nothing.
    What it holds is bounded: a batch and the rows of two chunks.
    """
    reader = TargetReader(outdial_id, now, csv_file=csv_file)
    pending: list[OutdialTarget] = []
    parser = ThreadPoolExecutor(1, thread_name_prefix="dialerd-import")
    try:
        async for chunk in chunks:
            parsing = parser.submit(reader.feed, chunk)
            while len(pending) >= IMPORT_BATCH:
                yield pending[:IMPORT_BATCH]
                del pending[:IMPORT_BATCH]
            pending += await anyio.to_thread.run_sync(parsing.result)
        pending += await anyio.to_thread.run_sync(reader.finish)
    finally:
        # Never waits: a parse under way when the import is abandoned ends on its own.
        parser.shutdown(wait=False, cancel_futures=True)
    for start in range(0, len(pending), IMPORT_BATCH):
        yield pending[start : start + IMPORT_BATCH]


def read_csv(
    chunks: AsyncIterable[bytes], outdial_id: str, now: str
) -> AsyncIterator[list[OutdialTarget]]:
    """Targets of a CSV file with a header row (``read_targets``)."""
    return read_targets(chunks, outdial_id, now, csv_file=True)


def read_ndjson(
    chunks: AsyncIterable[bytes], outdial_id: str, now: str
) -> AsyncIterator[list[OutdialTarget]]:
    """Targets of NDJSON, one target object per line (``read_targets``)."""
    return read_targets(chunks, outdial_id, now, csv_file=False)


# A body longer than this goes to an import worker process when the store has one
# (``FileImporter``); a shorter one is read here (a process costs ~0.3 s to start).
WORKER_BYTES: Final = 1024 * 1024


@runtime_checkable
class FileImporter(Protocol):
    """A store that parses and stages a whole import file in a process of its own
    (SQLite: ``dialerd.store.sqlite.import_process``), away from the daemon's GIL."""

    async def import_target_file(
        self,
        chunks: AsyncIterable[bytes],
        outdial_id: str,
        now: str,
        *,
        csv_file: bool,
        counted: Callable[[int], None],
    ) -> int: ...


async def head_of(chunks: AsyncIterable[bytes], size: int) -> tuple[list[bytes], bool]:
    """The first chunks of a body, at least ``size`` bytes of them unless the body is
    shorter, and whether the body ended within them."""
    head: list[bytes] = []
    held = 0
    iterator = aiter(chunks)
    while held <= size:
        try:
            chunk = await anext(iterator)
        except StopAsyncIteration:
            return head, True
        head.append(chunk)
        held += len(chunk)
    return head, False


async def replayed(head: Sequence[bytes], rest: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """``head`` then the rest of the body."""
    for chunk in head:
        yield chunk
    async for chunk in rest:
        yield chunk


def rejected(problems: Sequence[dict[str, Any]], bad_rows: int) -> ImportRejected:
    """The ``ImportRejected`` of problems an import worker reported."""
    listed = [RowProblem(int(problem["line"]), str(problem["problem"])) for problem in problems]
    return ImportRejected(listed, bad_rows)
