"""The SQLite import worker (a process of its own): the rows it stages are the ones
the daemon would, and a worker cut off from its import makes nothing visible."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import select
import signal
import sqlite3
import struct
import subprocess
import sys
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialerd.api.targets_import import ImportRejected, RowReader, TargetReader
from dialerd.store.sqlite import SqliteStore
from dialerd.store.sqlite.import_process import (
    _COLUMNS,
    SqliteRows,
    _stage,
    parse_apart,
)
from dialerd.store.sqlite.rows import in_transaction, target_row
from tests.integration.conftest import Factory

OUTDIAL = "0b6e7b2c-0000-4000-8000-000000000000"
NOW = "2026-03-02 09:15:30.123456"
BATCH = "5f0c1d2e3a4b4c5d8e9fa0b1c2d3e4f5"
HEADER = "name,detail,data,destination_0,destination_1,destination_4\n"

cells = st.one_of(
    st.just(""),
    st.from_regex(r"\+1[2-9][0-9]{9}", fullmatch=True),
    st.from_regex(r"\+44[1-9][0-9]{9}", fullmatch=True),
    st.just('"{""type"": ""sip"", ""target"": ""bob@example.com""}"'),
    st.text(alphabet="ab é", max_size=6),
    st.just('"{""timezone"": ""Europe/Paris""}"'),
)


def _rows(reader: RowReader[object] | TargetReader, content: bytes) -> list[object]:
    reader._ids = (f"id-{n}" for n in itertools.count())
    made: list[object] = list(reader.feed(content))
    try:
        made += reader.finish()
    except ImportRejected as exc:
        return [exc.problems]
    return made


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(cells, cells, cells, cells, cells, cells), min_size=1, max_size=8))
def test_the_worker_stages_the_rows_the_daemon_would(
    rows: list[tuple[str, str, str, str, str, str]],
) -> None:
    content = (HEADER + "".join(",".join(row) + "\n" for row in rows)).encode()
    daemon = TargetReader(OUTDIAL, NOW, csv_file=True)
    maker = SqliteRows(OUTDIAL, NOW, BATCH)
    worker = RowReader(OUTDIAL, NOW, maker, csv_file=True)
    expected = [
        made if isinstance(made, list) else target_row(made, BATCH)  # type: ignore[arg-type]
        for made in _rows(daemon, content)
    ]
    staged = [
        made if isinstance(made, list) else maker.row_of(made)  # type: ignore[arg-type]
        for made in _rows(worker, content)
    ]
    assert staged == expected


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "dialerd.sqlite3")
    await opened.open()
    yield opened
    await opened.close()


def _frames(content: bytes, *, end: bool) -> bytes:
    framed = struct.pack(">I", len(content)) + content
    return framed + struct.pack(">I", 0) if end else framed


def _run_worker(
    path: Path, stdin: bytes, parsing: str = "fork"
) -> tuple[int, list[dict[str, object]]]:
    done = subprocess.run(
        [sys.executable, "-m", "dialerd.store.sqlite.import_worker", str(path), BATCH,
         OUTDIAL, NOW, "csv", parsing],
        input=stdin, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()]


def _staged(path: Path) -> int:
    connection = sqlite3.connect(path)
    try:
        return int(connection.execute("SELECT count(*) FROM target").fetchone()[0])
    finally:
        connection.close()


# The worker parses in a process of its own ("fork") or in its own ("inline").
PARSING = pytest.mark.parametrize("parsing", ["fork", "inline"])
CONTENT = ("destination_0\n" + "".join(f"+1555{n:07d}\n" for n in range(5000))).encode()


@PARSING
async def test_a_worker_whose_import_was_dropped_writes_nothing(
    store: SqliteStore, parsing: str
) -> None:
    # No pending_batch row: as after a restart that dropped the import the worker
    # outlived (its daemon killed); the worker must not write rows anyone would see.
    code, answers = _run_worker(store.path, _frames(CONTENT, end=True), parsing)
    assert code == 1
    assert not any("done" in answer for answer in answers)
    assert _staged(store.path) == 0


@PARSING
async def test_a_worker_cut_off_mid_body_publishes_nothing(
    store: SqliteStore, parsing: str
) -> None:
    await store._write(
        lambda connection: connection.execute("INSERT INTO pending_batch (id) VALUES (?)", (BATCH,))
    )
    # The body ends without its end frame: the daemon is gone.
    code, answers = _run_worker(store.path, _frames(CONTENT, end=False), parsing)
    assert code == 1
    assert not any("done" in answer for answer in answers)
    assert (await store.list_targets(OUTDIAL)).result == []
    await store.close()
    await store.open()  # the next start drops what the import staged
    assert _staged(store.path) == 0


@PARSING
async def test_a_worker_names_the_bad_row_and_the_daemon_gets_it(
    store: SqliteStore, parsing: str
) -> None:
    await store._write(
        lambda connection: connection.execute("INSERT INTO pending_batch (id) VALUES (?)", (BATCH,))
    )
    bad = CONTENT + b"+1555123\n"
    code, answers = _run_worker(store.path, _frames(bad, end=True), parsing)
    assert code == 0
    rejected = answers[-1]["rejected"]
    assert isinstance(rejected, dict)
    assert rejected["bad_rows"] == 1
    assert rejected["problems"][0]["line"] == 5002
    assert "'+1555123' is not an E.164 number" in rejected["problems"][0]["problem"]


def _start_worker(path: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A worker sent the first part of a body (no end): it and its parsing process,
    once the worker said it staged a batch (so both run)."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "dialerd.store.sqlite.import_worker", str(path), BATCH,
         OUTDIAL, NOW, "csv", "fork"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert worker.stdin is not None
    assert worker.stdout is not None
    worker.stdin.write(_frames(CONTENT, end=False))
    worker.stdin.flush()
    assert "staged" in json.loads(worker.stdout.readline())
    children = Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split()
    assert len(children) == 1  # the parsing process
    return worker, int(children[0])


def _worker_of(path: Path, outdial: str, now: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "dialerd.store.sqlite.import_worker", str(path), BATCH,
         outdial, now, "csv", "fork"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip


def _ends_within(pid: int, seconds: float) -> bool:
    """Whether process ``pid`` (not a child of this one) ends within ``seconds``."""
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([handle], [], [], seconds)[0])
    finally:
        os.close(handle)


async def test_a_worker_whose_parsing_process_dies_publishes_nothing(store: SqliteStore) -> None:
    await store._write(
        lambda connection: connection.execute("INSERT INTO pending_batch (id) VALUES (?)", (BATCH,))
    )
    worker, parser = _start_worker(store.path)
    with worker:
        os.kill(parser, signal.SIGKILL)
        assert worker.stdin is not None
        assert worker.stdout is not None
        with contextlib.suppress(BrokenPipeError):
            worker.stdin.write(_frames(CONTENT, end=True))
            worker.stdin.close()
        answers = [json.loads(line) for line in worker.stdout.read().splitlines()]
        assert worker.wait(timeout=60) == 1
    assert not any("done" in answer for answer in answers)
    assert (await store.list_targets(OUTDIAL)).result == []


async def test_a_parsing_process_ends_with_its_worker(store: SqliteStore) -> None:
    await store._write(
        lambda connection: connection.execute("INSERT INTO pending_batch (id) VALUES (?)", (BATCH,))
    )
    worker, parser = _start_worker(store.path)
    with worker:
        worker.kill()  # as the daemon ends a worker
        worker.wait(timeout=60)
        assert _ends_within(parser, 30)


async def test_a_staged_row_is_stored_as_its_whole_row(store: SqliteStore) -> None:
    # A quick row's template values are written in its INSERT, not bound: what SQLite
    # stores must be the whole row all the same (texts with quotes, bytes, NULLs).
    outdial, now = 'o\'dial "x"', "2026-03-02 09:15:30.123456"
    await store._write(
        lambda connection: connection.execute("INSERT INTO pending_batch (id) VALUES (?)", (BATCH,))
    )
    content = (
        HEADER
        + "it's,d,x,+15551234567,,+442071234567\n"
        + ",,,,+15551234568,\n"
        + 'sip,,,"{""type"": ""sip"", ""target"": ""bob@example.com""}",,\n'
        + 'zone,,"{""timezone"": ""Europe/Paris""}",+15551234569,,\n'
    ).encode()
    maker = SqliteRows(outdial, now, BATCH)
    staged = _rows(RowReader(outdial, now, maker, csv_file=True), content)
    assert len(staged) == 4
    connection = sqlite3.connect(store.path, isolation_level=None)
    try:
        in_transaction(partial(_stage, BATCH, maker.places, staged), connection)  # type: ignore[arg-type]
        stored = connection.execute(f"SELECT {', '.join(_COLUMNS)} FROM target ORDER BY seq")
        assert stored.fetchall() == [maker.row_of(row) for row in staged]  # type: ignore[arg-type]
    finally:
        connection.close()


def test_a_parsing_process_whenever_there_are_two_cores() -> None:
    # Whatever the load as the import starts (a 10-second average of CPU pressure
    # chose one process for a whole import after a busy spell).
    assert parse_apart(cores=2)
    assert parse_apart(cores=8)
    assert not parse_apart(cores=1)  # one core: one process parses and writes


async def test_a_claim_never_hands_out_a_row_of_an_unfinished_import(
    store: SqliteStore, make: Factory
) -> None:
    """Rows a worker staged wait in the ready index as they will be dialed (no pass
    over them after publishing): claims step over them to the targets on both sides,
    and a worker killed mid-import leaves none of them to the next start."""
    dialing = await make.dialing(store)
    outdial = dialing.outdial.id
    early = make.target(outdial, tm_create=make.stamp(1), name="before the import")
    late = make.target(outdial, tm_create=make.stamp(9), name="after it")
    await store.create_targets([early, late])
    await store._write(
        lambda connection: connection.execute("INSERT INTO pending_batch (id) VALUES (?)", (BATCH,))
    )
    worker = _worker_of(store.path, outdial, make.stamp(5))
    with worker:
        assert worker.stdin is not None
        assert worker.stdout is not None
        worker.stdin.write(_frames(CONTENT, end=False))  # 5,000 rows, no end
        worker.stdin.flush()
        while json.loads(worker.stdout.readline())["staged"] < 4000:
            pass
        assert _staged(store.path) >= 4002
        claimed = [await store.start_attempt(dialing.plan(make.at(10))) for _ in range(3)]
        assert [c.outdial_target_id if c else None for c in claimed] == [early.id, late.id, None]
        assert [t.id for t in (await store.list_targets(outdial)).result] == [late.id, early.id]
        worker.kill()  # as when the daemon is killed
        worker.wait(timeout=60)
    await store.close()
    await store.open()  # the next start drops what the worker staged
    assert _staged(store.path) == 2
    assert await store.start_attempt(dialing.plan(make.at(11))) is None
