"""A large target import parsed and staged in a process of its own (the import worker).

Parsing a file (CSV or NDJSON), checking its numbers and building its rows holds the
GIL for most of an import's time; in the daemon's process that slows the API and the
engine. So a large import runs in a child process (``import_worker``): the
daemon streams the body to it (``run_worker``) and counts what it staged against the
quotas; the worker parses with the daemon's reader (``RowReader``: the same rules and
errors as ``TargetReader``), makes the rows directly (``SqliteRows``: the ones
``target_row`` makes) and writes them into the same SQLite file, hidden behind the
import's ``pending_batch`` row, as the in-process import stages them. With two cores
or more (``parse_apart``), it is two processes, so that parsing and writing each have
a core: the worker forks a parsing process (``_parse``) that reads the body and sends
the rows, and writes them itself (``_stage_rows``); with one core, one process does
both. Publishing stays the daemon's: only once the worker said it is done and the
quotas allow it does the daemon delete the ``pending_batch`` row.

Crash safety is the in-process import's: the worker never publishes, and each batch it
writes checks, in its transaction, that the import's ``pending_batch`` row is still
there, so a worker that outlives its daemon (killed with ``kill -9``; the worker is
also killed by the kernel then, on Linux) can never make rows visible after the next
start dropped the batch (``recover_imports``).

The pipes: the daemon sends the body as frames (4 bytes of length, big-endian, then
the bytes; a frame of length 0 ends the body: an end of input without it means the
daemon is gone and the worker stops). The worker answers with one JSON object per
line: ``{"staged": n}`` (rows staged so far) after each batch, then one of
``{"done": n}``, ``{"rejected": {"problems": [...], "bad_rows": n}}`` or
``{"error": text, "unavailable": bool}``. Between the worker's two processes: frames
(the same lengths) of pickled rows, then a last one (``_parse``). Each process ends
when the other does: the parsing process is killed by the kernel when the worker dies
(as the worker when the daemon does), and a worker whose parsing process stopped before
its last frame abandons the import (nothing is published).
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import pickle
import signal
import sqlite3
import struct
import sys
from collections.abc import AsyncIterable, Callable, Iterator, Sequence
from functools import partial
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from dialerd.model import SLOTS, Address, AddressType, OutdialTarget
from dialerd.store.base import StoreError, StoreUnavailable
from dialerd.store.sqlite.rows import (
    INSERT_TARGET,
    PLACEMENT_COLUMNS,
    ROW_OUTDIAL,
    ROW_TOUCHED,
    TARGET_COLUMNS,
    in_transaction,
    stage_places,
    target_row,
)

if TYPE_CHECKING:
    from dialerd.api.targets_import import RowReader

_PROBE_NUMBER: Final = "+15550000000"
_PROBE: Final = _PROBE_NUMBER.encode()
_FIRST_DESTINATION: Final = 6  # target_row: id, outdial, name, detail, data, status, slots
# Largest body frame sent to the worker (a body chunk may be split in several).
FRAME_BYTES: Final = 256 * 1024
# Rows per staging transaction: with a body frame's rows, what the worker holds
# whatever the file's size.
WORKER_BATCH: Final = 2000
_LENGTH: Final = struct.Struct(">I")
_MESSAGE_BYTES: Final = 1024 * 1024
_PACKAGE_ROOT: Final = str(Path(__file__).resolve().parents[3])
# The pipe from the parsing process to the writing one (Linux: fcntl F_SETPIPE_SZ).
_F_SETPIPE_SZ: Final = 1031
_PIPE_BYTES: Final = 1024 * 1024
# How long a worker that gave its last answer has to exit before it is killed (killed
# at once, it would leave its parsing process to init, unwaited and uncounted).
_EXIT_SECONDS: Final = 2.0


class Rejected(Exception):
    """The worker found bad rows: ``problems`` (line and problem) and how many."""

    def __init__(self, problems: list[dict[str, Any]], bad_rows: int) -> None:
        super().__init__(f"{bad_rows} bad row(s)")
        self.problems = problems
        self.bad_rows = bad_rows


# -- the daemon's side ----------------------------------------------------------------------
def parse_apart(cores: int | None = None) -> bool:
    """Whether the worker parses in a process of its own (``main``): whenever the
    machine has two cores or more. Not a guess from the load as the import starts (a
    10-second average of CPU pressure says what the seconds before were, and its
    choice held for the whole import); two processes stage faster than one even on
    two busy cores (200k rows: 2.7-3.4 s against 3.2-3.7 s, last round). Not niced
    either: where the daemon shares its CPU share (cgroup, session) with other work, a
    niced worker gives way to all of it (measured: 2,700 rows/s on a loaded machine)."""
    if cores is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cores = os.cpu_count() or 1
    return cores >= 2


async def run_worker(
    path: Path,
    batch: str,
    chunks: AsyncIterable[bytes],
    outdial_id: str,
    now: str,
    *,
    csv_file: bool,
    counted: Callable[[int], None],
) -> int:
    """Stream ``chunks`` to a new import worker that stages them as ``batch`` in the
    SQLite file at ``path``; ``counted(rows staged so far)`` after each staged batch
    (it raises to refuse the import). Returns how many rows were staged; raises
    ``Rejected`` for bad rows, ``StoreError`` if the worker failed, or what reading
    ``chunks`` raised. The worker is always ended and waited for before this returns."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")]))
    process = await anyio.open_process(
        [
            sys.executable,
            "-m",
            "dialerd.store.sqlite.import_worker",
            str(path),
            batch,
            outdial_id,
            now,
            "csv" if csv_file else "ndjson",
            "fork" if parse_apart() else "inline",
        ],
        env=env,
        stderr=None,
    )
    answered = False
    try:
        assert process.stdin is not None
        assert process.stdout is not None
        answer = await _converse(process.stdin, process.stdout, chunks, counted)
        answered = True
    finally:
        with anyio.CancelScope(shield=True):
            if answered:  # it ends its parsing process, waits for it and exits
                with anyio.move_on_after(_EXIT_SECONDS):
                    await process.wait()
            if process.returncode is None:
                process.kill()
            await process.wait()
            await process.aclose()
    if "done" in answer:
        return int(answer["done"])
    if "rejected" in answer:
        rejected = answer["rejected"]
        raise Rejected(list(rejected["problems"]), int(rejected["bad_rows"]))
    error = str(answer.get("error", "unknown failure"))
    raise (StoreUnavailable if answer.get("unavailable") else StoreError)(error)


async def _converse(
    to_worker: anyio.abc.ByteSendStream,
    from_worker: anyio.abc.ByteReceiveStream,
    chunks: AsyncIterable[bytes],
    counted: Callable[[int], None],
) -> dict[str, Any]:
    """Send the body while reading the worker's answers; its last answer. Raises what
    ``counted`` or reading the body raised, or ``StoreError`` if the worker stopped
    without a last answer."""
    failures: list[Exception] = []
    answer: dict[str, Any] = {}

    async def send() -> None:
        try:
            async for chunk in chunks:
                for start in range(0, len(chunk), FRAME_BYTES):
                    piece = chunk[start : start + FRAME_BYTES]
                    await to_worker.send(_LENGTH.pack(len(piece)) + piece)
            await to_worker.send(_LENGTH.pack(0))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            return  # the worker ended: its answer (or its exit) says why
        except Exception as error:  # the body: too large, the client gone
            failures.append(error)
            await from_worker.aclose()

    async def receive() -> None:
        nonlocal answer
        answers = BufferedByteReceiveStream(from_worker)
        try:
            while "staged" in (
                answer := json.loads(await answers.receive_until(b"\n", _MESSAGE_BYTES))
            ):
                counted(int(answer["staged"]))
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.DelimiterNotFound):
            answer = {}
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            answer = {}  # closed by ``send``, whose failure is what counts
        except Exception as error:  # a quota refused the import
            failures.append(error)

    async with anyio.create_task_group() as group:
        group.start_soon(send)
        await receive()
        group.cancel_scope.cancel()
    if failures:
        raise failures[0]
    if not answer:
        raise StoreError("the import worker stopped before it was done; nothing was imported")
    return answer


# -- the worker's side ----------------------------------------------------------------------
class _Abandoned(Exception):
    """The import's ``pending_batch`` row is gone: the daemon dropped the import."""


def _answer(message: dict[str, Any]) -> None:
    os.write(1, json.dumps(message).encode() + b"\n")


def _answer_error(failure: StoreError) -> None:
    _answer({"error": str(failure), "unavailable": isinstance(failure, StoreUnavailable)})


def _read_exactly(stream: Any, size: int) -> bytes | None:
    data = stream.read(size)
    return data if len(data) == size else None


# A row as the worker stages it: the INSERT statement and its parameters (``SqliteRows``).
Staged = tuple[str, tuple[Any, ...]]
# The columns of ``target_row`` a quick row sets itself: id, name, detail, data (then
# its filled destinations); the other values are its template's, written in its INSERT.
_OWN_COLUMNS: Final = (0, 2, 3, 4)
_COLUMNS: Final = tuple(
    name.strip() for name in f"{TARGET_COLUMNS}, {PLACEMENT_COLUMNS}, batch".split(",")
)


def _stage(
    batch: str,
    places: Sequence[tuple[str, str]],
    rows: Sequence[Staged],
    connection: sqlite3.Connection,
) -> None:
    if not stage_places(batch, places, connection):
        raise _Abandoned
    # In file order: one ``executemany`` per run of rows with the same statement.
    for insert, run in itertools.groupby(rows, key=itemgetter(0)):
        connection.executemany(insert, [params for _, params in run])


def _literal(value: object) -> str:
    """``value`` (of a template: texts without NUL, ints, bytes, None) as SQL."""
    if value is None:
        return "NULL"
    if isinstance(value, bool) or not isinstance(value, int | str | bytes):
        raise TypeError(f"no SQL literal for {value!r}")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, bytes):
        return f"X'{value.hex()}'"
    if "\0" in value:
        raise ValueError("no SQL literal for a text with NUL")
    return "'" + value.replace("'", "''") + "'"


class SqliteRows:
    """``RowMaker`` of the rows an import stages in SQLite (``target_row``'s, with the
    import's ``batch``), as ``Staged``: a statement and its parameters.

    A quick row is made from a template: ``target_row`` of a target with the same
    destination slots filled, whose values are the same for every such row (its
    outdial, status, times, placement, batch) written in an INSERT of its own, so that
    only the row's id, texts and numbers are bound (a third of the values: binding is
    a quarter of an insert's time). Its numbers go into the template's address JSON
    (an E.164 number, ``+`` and digits, needs no escaping there). ``row_of`` gives
    the whole row back."""

    def __init__(self, outdial_id: str, now: str, batch: str) -> None:
        self.outdial_id = outdial_id
        self.now = now
        self.batch = batch
        self._inserts: dict[tuple[bool, ...], str] = {}
        self._templates: dict[str, tuple[list[Any], tuple[int, ...]]] = {}
        probe = target_row(self._probe([_PROBE_NUMBER]), batch)
        self._before, self._after = probe[_FIRST_DESTINATION].split(b'"' + _PROBE + b'"')
        # Where every row of the import goes (``stage_places``): one outdial and one
        # ``touched``, its creation time.
        self.places = [(probe[ROW_OUTDIAL], probe[ROW_TOUCHED])]

    def _probe(self, numbers: Sequence[str | None]) -> OutdialTarget:
        destinations = [
            None if number is None else Address(type=AddressType.TEL, target=number)
            for number in numbers
        ]
        return OutdialTarget.fresh(self.outdial_id, destinations, self.now, target_id="")

    def _insert(self, filled: tuple[bool, ...]) -> str:
        probe = [_PROBE_NUMBER if number else None for number in filled]
        template = list(target_row(self._probe(probe), self.batch))
        own = _OWN_COLUMNS + tuple(_FIRST_DESTINATION + slot for slot in SLOTS if filled[slot])
        values = ", ".join("?" if n in own else _literal(v) for n, v in enumerate(template))
        insert = f"INSERT INTO target ({', '.join(_COLUMNS)}) VALUES ({values})"
        self._inserts[filled] = insert
        self._templates[insert] = (template, own)
        return insert

    def quick(
        self, target_id: str, name: str, detail: str, data: str, numbers: list[str | None]
    ) -> Staged:
        filled = tuple(number is not None for number in numbers)
        insert = self._inserts.get(filled) or self._insert(filled)
        before, after = self._before, self._after
        addresses = [
            b'%s"%s"%s' % (before, number.encode(), after)
            for number in numbers
            if number is not None
        ]
        return insert, (target_id, name, detail, data, *addresses)

    def target(self, target: OutdialTarget) -> Staged:
        return INSERT_TARGET, target_row(target, self.batch)

    def row_of(self, staged: Staged) -> tuple[Any, ...]:
        """The whole row (``target_row``'s) a staged row writes."""
        insert, params = staged
        if insert == INSERT_TARGET:
            return params
        template, own = self._templates[insert]
        row = template.copy()
        for column, value in zip(own, params, strict=True):
            row[column] = value
        return tuple(row)


def _die_with(parent: int) -> None:
    """Ask Linux to kill this process when ``parent`` (its parent) dies (prctl
    PR_SET_PDEATHSIG); exit at once if it is gone already."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # elsewhere the end of input still stops the worker
    if os.getppid() != parent:
        os._exit(1)


def _die_with_parent() -> None:
    """The worker ends with the daemon (``_die_with``); Ctrl-C is the daemon's."""
    _die_with(os.getppid())
    if os.getppid() == 1:
        os._exit(1)
    # Ctrl-C at a terminal reaches the whole process group: the daemon ends the worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _encode(message: object) -> bytes:
    # Pickle: of the codecs measured, it reads these rows back the fastest (its memo
    # keeps one copy of the strings every row shares), and the writing process is the
    # one that limits the import.
    return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


def _write_frame(sink: BinaryIO, payload: bytes) -> None:
    sink.write(_LENGTH.pack(len(payload)) + payload)


def _read_frame(source: BinaryIO) -> bytes | None:
    """The next frame's bytes; None at the end of input (or a frame cut short)."""
    head = _read_exactly(source, _LENGTH.size)
    if head is None:
        return None
    (size,) = _LENGTH.unpack(head)
    return _read_exactly(source, size)


def _parsed(reader: RowReader[Staged], source: BinaryIO) -> Iterator[list[Staged] | dict[str, Any]]:
    """The rows of the body's frames read from ``source`` (the daemon), in lists of at
    most ``WORKER_BATCH``, then the last message: ``{"end": True}`` or ``{"rejected":
    ...}``. Without the body's end frame it stops without a last message (the daemon
    is gone)."""
    from dialerd.api.targets_import import ImportRejected

    try:
        while True:
            chunk = _read_frame(source)
            if chunk is None:
                return
            rows = reader.feed(chunk) if chunk else reader.finish()
            for start in range(0, len(rows), WORKER_BATCH):
                yield rows[start : start + WORKER_BATCH]
            if not chunk:
                break
    except ImportRejected as rejected:
        problems = [{"line": p.line, "problem": p.problem} for p in rejected.problems]
        yield {"rejected": {"problems": problems, "bad_rows": rejected.bad_rows}}
        return
    yield {"end": True}


def _parse(reader: RowReader[Staged], source: BinaryIO, sink: BinaryIO) -> int:
    """The parsing process: ``_parsed``'s messages to ``sink`` (the writing process),
    a frame each (pickled: both ends are this module)."""
    for message in _parsed(reader, source):
        _write_frame(sink, _encode(message))
    sink.flush()
    return 0


def _received(source: BinaryIO) -> Iterator[list[Staged] | dict[str, Any]]:
    """The messages of the parsing process, until its pipe ends."""
    while (frame := _read_frame(source)) is not None:
        yield pickle.loads(frame)  # noqa: S301 (from our own parsing process)


def _stage_rows(
    stage: Callable[[Sequence[Staged], sqlite3.Connection], None],
    messages: Iterator[list[Staged] | dict[str, Any]],
    connection: sqlite3.Connection,
) -> int:
    """Stages the rows of ``messages`` (``_parsed``'s) with ``stage`` (``_stage`` of the
    import), a transaction per ``WORKER_BATCH`` rows, and answers the daemon; the exit
    status."""
    pending: list[Staged] = []
    staged = 0
    for message in messages:
        if isinstance(message, dict):
            break
        pending += message
        while len(pending) >= WORKER_BATCH:
            staged = _stage_some(stage, pending, connection, staged)
    else:
        return 1  # no last message: the daemon is gone (nothing is published)
    if "rejected" in message:
        _answer(message)
        return 0
    while pending:
        staged = _stage_some(stage, pending, connection, staged)
    _answer({"done": staged})
    return 0


def _stage_some(
    stage: Callable[[Sequence[Staged], sqlite3.Connection], None],
    pending: list[Staged],
    connection: sqlite3.Connection,
    staged: int,
) -> int:
    """Stage the first ``WORKER_BATCH`` rows of ``pending`` (taken out of it) and say
    so; rows staged in all."""
    rows = pending[:WORKER_BATCH]
    del pending[:WORKER_BATCH]
    in_transaction(partial(stage, rows), connection)
    staged += len(rows)
    _answer({"staged": staged})
    return staged


def main(argv: Sequence[str]) -> int:
    _die_with_parent()
    # ``parsing``: "fork" (a parsing process of its own) or "inline" (``parse_apart``).
    path, batch, outdial_id, now, kind, parsing = argv
    # Imported here: the daemon's side needs none of the parsing.
    from dialerd.api.targets_import import RowReader
    from dialerd.store.sqlite.connection import SqliteConnection

    maker = SqliteRows(outdial_id, now, batch)
    reader = RowReader(outdial_id, now, maker, csv_file=kind == "csv")
    parser = 0
    source: BinaryIO | None = None
    if parsing == "fork":
        # Parsing and writing in two processes, so that both cores work: this one writes,
        # a child (forked: nothing to import again) parses and sends it the rows. Threads
        # would not do: the sqlite3 module gives up the GIL for each row it writes, and a
        # parsing thread beside it would take it at every row (measured: a third slower).
        rows_from, rows_to = os.pipe()
        with contextlib.suppress(OSError):  # room for a few frames: the parser runs ahead
            fcntl.fcntl(rows_to, _F_SETPIPE_SZ, _PIPE_BYTES)
        writer = os.getpid()
        parser = os.fork()
        if parser == 0:  # the parsing process: the body in, the rows out, no answer
            os._exit(_run_parser(reader, writer, rows_from, rows_to))
        os.close(rows_to)
        _detach_stdin()  # the parser reads the body: a parser gone closes the daemon's pipe
        source = open(rows_from, "rb")  # noqa: SIM115 (closed below)
        messages = _received(source)
    else:
        messages = _parsed(reader, sys.stdin.buffer)
    try:
        store = SqliteConnection(Path(path))
        try:  # as the daemon's connection of an in-process import
            connection = store._connect_for_import()
        except StoreError as error:
            _answer_error(error)
            return 1
        try:
            return _stage_rows(partial(_stage, batch, maker.places), messages, connection)
        except _Abandoned:
            return 1
        except sqlite3.Error as error:
            _answer_error(store._translate(error))
            return 1
        finally:
            connection.close()
    finally:
        if source is not None:
            source.close()
        if parser:
            with contextlib.suppress(ProcessLookupError):
                os.kill(parser, signal.SIGKILL)  # done, or of no use any more
            os.waitpid(parser, 0)


def _run_parser(reader: RowReader[Staged], writer: int, rows_from: int, rows_to: int) -> int:
    """The parsing process, in the forked child: it dies with the writing process."""
    os.close(rows_from)
    _die_with(writer)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # only the writing process answers the daemon
    os.close(devnull)
    try:
        with open(rows_to, "wb") as sink:
            return _parse(reader, sys.stdin.buffer, sink)
    except BrokenPipeError:
        # The writing process is gone (a stop, a cancelled import): it has told the
        # daemon; this process ends without a word.
        return 1


def _detach_stdin() -> None:
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
