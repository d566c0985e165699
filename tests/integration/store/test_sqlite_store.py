"""What only the SQLite store does: its file, its schema migrations and its disk errors."""

from __future__ import annotations

import asyncio
import selectors
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import msgspec
import pytest
from structlog.testing import capture_logs

from dialerd.model import CampaignStatus, OutdialTarget, TargetStatus, new_id
from dialerd.store.base import StoreError, StoreUnavailable
from dialerd.store.sqlite import SqliteStore
from dialerd.store.sqlite.checkpoint import Checkpointer, FailureLog, bound_wal, wal_path
from dialerd.store.sqlite.schema import MIGRATIONS, SCHEMA_VERSION
from tests.fakes.clock import FakeClock
from tests.integration.conftest import Dialing

if TYPE_CHECKING:
    from tests.integration.conftest import Factory


def pragma(path: Path, name: str) -> object:
    """Read a pragma of the file through a connection of our own."""
    connection = sqlite3.connect(path)
    try:
        return connection.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        connection.close()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "dialerd.sqlite3")
    await store.open()
    yield store
    await store.close()


def connection_of(store: SqliteStore) -> sqlite3.Connection:
    # Running as root, file permissions and quotas cannot make a write fail, so the
    # disk errors are provoked through the store's own connection.
    connection = store._connection
    assert connection is not None
    return connection


async def test_a_new_file_is_created_with_its_directory_at_the_current_schema(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state" / "nested" / "dialerd.sqlite3"
    store = SqliteStore(path)
    await store.open()
    await store.ping()
    await store.close()
    await store.close()
    assert path.is_file()
    assert pragma(path, "user_version") == SCHEMA_VERSION
    assert pragma(path, "journal_mode") == "wal"


async def test_data_survives_reopening_without_migrating_again(
    tmp_path: Path, make: Factory
) -> None:
    path = tmp_path / "dialerd.sqlite3"
    first = SqliteStore(path)
    await first.open()
    campaign = await first.create_campaign(make.campaign(new_id()))
    await first.close()

    again = SqliteStore(path)
    await again.open()
    assert await again.get_campaign(None, campaign.id) == campaign
    await again.close()
    assert pragma(path, "user_version") == SCHEMA_VERSION


async def test_a_file_from_a_newer_dialerd_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dialerd.sqlite3"
    connection = sqlite3.connect(path)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 7}")
    connection.close()
    with pytest.raises(StoreError, match=rf"{path}.*version {SCHEMA_VERSION + 7}"):
        await SqliteStore(path).open()


async def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dialerd.sqlite3"
    path.write_bytes(b"these are the minutes of the call-centre meeting\n" * 100)
    with pytest.raises(StoreError, match=str(path)):
        await SqliteStore(path).open()


async def test_a_file_under_a_regular_file_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("not a directory")
    path = blocker / "dialerd.sqlite3"
    with pytest.raises(StoreError, match=str(path)):
        await SqliteStore(path).open()


async def test_a_directory_in_place_of_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dialerd.sqlite3"
    path.mkdir()
    with pytest.raises(StoreError, match=str(path)):
        await SqliteStore(path).open()


async def test_a_full_disk_is_reported_and_changes_nothing(
    sqlite_store: SqliteStore, make: Factory
) -> None:
    dialing = await make.dialing(sqlite_store)
    connection = connection_of(sqlite_store)
    pages = connection.execute("PRAGMA page_count").fetchone()[0]
    connection.execute(f"PRAGMA max_page_count = {pages}")
    targets = [make.target(dialing.outdial.id) for _ in range(2000)]
    with pytest.raises(StoreUnavailable, match=rf"{sqlite_store.path}: the disk is full"):
        await sqlite_store.create_targets(targets)
    assert (await sqlite_store.list_targets(dialing.outdial.id)).result == []

    connection.execute("PRAGMA max_page_count = 1073741823")
    assert await sqlite_store.create_targets(targets) == 2000


async def test_a_read_only_database_is_reported(sqlite_store: SqliteStore, make: Factory) -> None:
    connection_of(sqlite_store).execute("PRAGMA query_only = ON")
    with pytest.raises(StoreUnavailable, match=rf"{sqlite_store.path} is read-only"):
        await sqlite_store.create_campaign(make.campaign(new_id()))
    assert await sqlite_store.campaigns_with_status([CampaignStatus.STOP]) == []


async def test_a_closed_store_is_unavailable(tmp_path: Path, make: Factory) -> None:
    store = SqliteStore(tmp_path / "dialerd.sqlite3")
    with pytest.raises(StoreUnavailable, match="not open"):
        await store.ping()
    await store.open()
    await store.close()
    with pytest.raises(StoreError, match="not open"):
        await store.create_campaign(make.campaign(new_id()))


async def test_cancelled_claimers_leave_attempts_and_targets_in_step(
    sqlite_store: SqliteStore, make: Factory
) -> None:
    dialing = await make.dialing(sqlite_store)
    await sqlite_store.create_targets([make.target(dialing.outdial.id) for _ in range(100)])
    claimed = 0

    async def claimer(scope: anyio.CancelScope) -> None:
        nonlocal claimed
        while await sqlite_store.start_attempt(dialing.plan(make.at(1))) is not None:
            claimed += 1
            if claimed == 10:
                scope.cancel()

    with anyio.fail_after(30):
        async with anyio.create_task_group() as claimers:
            for _ in range(32):
                claimers.start_soon(claimer, claimers.cancel_scope)
        active = await sqlite_store.active_attempts(dialing.campaign.id)
        progressing = [
            target
            for target in (await sqlite_store.list_targets(dialing.outdial.id)).result
            if target.status == TargetStatus.PROGRESSING
        ]
        assert claimed >= 10
        assert sorted(c.outdial_target_id for c in active) == sorted(t.id for t in progressing)
        assert await sqlite_store.start_attempt(dialing.plan(make.at(2))) is not None


async def test_a_write_cancelled_by_asyncio_holds_the_connection_until_its_thread_is_done(
    sqlite_store: SqliteStore,
) -> None:
    # Hypercorn cancels a request past its graceful timeout with Task.cancel(), which
    # goes through AnyIO's shields: the write's thread still runs on the connection.
    started, release = threading.Event(), threading.Event()
    order: list[str] = []

    def slow(connection: sqlite3.Connection) -> None:
        started.set()
        release.wait(30)
        order.append("slow")

    def quick(connection: sqlite3.Connection) -> None:
        order.append("quick")

    async def turns() -> None:
        for _ in range(20):
            await asyncio.sleep(0)

    with anyio.fail_after(30):
        cancelled = asyncio.ensure_future(sqlite_store._write(slow))
        await anyio.to_thread.run_sync(started.wait)
        cancelled.cancel()
        await turns()
        assert not cancelled.done()  # not before its thread is done
        following = asyncio.ensure_future(sqlite_store._write(quick))
        await turns()
        assert order == []  # no second thread on the connection meanwhile
        release.set()
        await following
        assert order == ["slow", "quick"]
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        await sqlite_store.close()  # and the connection closes after both


async def test_writes_sharing_a_commit_stand_or_fall_each_alone(
    sqlite_store: SqliteStore, make: Factory
) -> None:
    """Claims queued together share one transaction: the one refused (its campaigncall
    id exists) leaves its target as it was, every other claim is written."""
    dialing = await make.dialing(sqlite_store)
    await sqlite_store.create_targets([make.target(dialing.outdial.id) for _ in range(40)])
    taken = await sqlite_store.start_attempt(dialing.plan(make.at(1)))
    assert taken is not None
    refused: list[Exception] = []

    async def claim(plan_id: str) -> None:
        plan = msgspec.structs.replace(dialing.plan(make.at(2)), campaigncall_id=plan_id)
        try:
            await sqlite_store.start_attempt(plan)
        except StoreError as error:
            refused.append(error)

    ids = [new_id() for _ in range(30)]
    ids[7] = ids[20] = taken.id  # two claims that must be refused
    with anyio.fail_after(30):
        async with anyio.create_task_group() as claims:
            for plan_id in ids:
                claims.start_soon(claim, plan_id)
    assert len(refused) == 2
    active = await sqlite_store.active_attempts(dialing.campaign.id)
    progressing = [
        target
        for target in (await sqlite_store.list_targets(dialing.outdial.id)).result
        if target.status == TargetStatus.PROGRESSING
    ]
    assert len(active) == 29  # the first claim and 28 of the 30
    assert sorted(c.outdial_target_id for c in active) == sorted(t.id for t in progressing)


async def test_a_failed_shared_commit_fails_every_write_of_it(
    sqlite_store: SqliteStore, make: Factory
) -> None:
    """Writes queued together whose commit fails (a full disk) are all reported failed,
    and none of them is there afterwards."""
    dialing = await make.dialing(sqlite_store)
    connection = connection_of(sqlite_store)
    pages = connection.execute("PRAGMA page_count").fetchone()[0]
    connection.execute(f"PRAGMA max_page_count = {pages}")
    failed: list[StoreError] = []

    async def create(batch: list[OutdialTarget]) -> None:
        try:
            await sqlite_store.create_targets(batch)
        except StoreError as error:
            failed.append(error)

    batches = [[make.target(dialing.outdial.id) for _ in range(300)] for _ in range(6)]
    with anyio.fail_after(30):
        async with anyio.create_task_group() as writers:
            for batch in batches:
                writers.start_soon(create, batch)
    assert len(failed) == len(batches)
    assert all("the disk is full" in str(error) for error in failed)
    assert (await sqlite_store.list_targets(dialing.outdial.id)).result == []


async def test_an_import_cut_by_a_stop_is_gone_after_restart_and_a_published_one_stays(
    tmp_path: Path, make: Factory
) -> None:
    """A stop (the import cancelled) leaves what was staged hidden, for the next start to
    drop; rows of a published import are dialable as written, with nothing to finish."""
    path = tmp_path / "dialerd.sqlite3"
    store = SqliteStore(path)
    await store.open()
    dialing = await make.dialing(store)
    outdial = dialing.outdial.id
    published = [make.target(outdial) for _ in range(2)]
    cut = [make.target(outdial) for _ in range(3)]
    staged = anyio.Event()

    async def rows(
        targets: list[OutdialTarget], *, hang: bool
    ) -> AsyncIterator[list[OutdialTarget]]:
        yield targets
        if hang:
            staged.set()
            await anyio.sleep_forever()

    await store.import_targets(rows(published, hang=False))
    async with anyio.create_task_group() as group:
        group.start_soon(store.import_targets, rows(cut, hang=True))
        await staged.wait()
        await anyio.wait_all_tasks_blocked()
        group.cancel_scope.cancel()  # as the daemon's stop cancels an import
    assert {t.id for t in (await store.list_targets(outdial)).result} == {t.id for t in published}
    await store.close()
    assert _count(path, "SELECT count(*) FROM target") == 5  # left for the next start

    store = SqliteStore(path)
    await store.open()
    try:
        listed = {t.id for t in (await store.list_targets(outdial)).result}
        assert listed == {t.id for t in published}
        claimed = {(await store.start_attempt(dialing.plan(make.at(n)))) for n in range(1, 4)}
        assert {c.outdial_target_id for c in claimed if c is not None} == listed
        assert None in claimed
    finally:
        await store.close()
    assert _count(path, "SELECT count(*) FROM target") == 2
    assert _count(path, "SELECT count(*) FROM pending_batch") == 0
    assert _count(path, "SELECT count(*) FROM pending_place") == 0


async def test_a_schema_10_file_drops_its_cut_import_and_finishes_its_published_one(
    tmp_path: Path, make: Factory
) -> None:
    """Schema 10 negated an import's queue until a pass after publishing made its rows
    dialable: a file a killed dialerd left mid-import, and mid-pass, opens with the cut
    import gone and the published one dialable."""
    path = tmp_path / "dialerd.sqlite3"
    store = SqliteStore(path)
    await store.open()
    dialing = await make.dialing(store)
    outdial = dialing.outdial.id
    unpublished = [make.target(outdial) for _ in range(3)]
    published = [make.target(outdial) for _ in range(2)]

    async def rows(targets: list[OutdialTarget]) -> AsyncIterator[list[OutdialTarget]]:
        yield targets

    await store.import_targets(rows(unpublished))
    await store.import_targets(rows(published))
    await store.close()
    # Back to schema 10 (without schema 12's event column too), with what it left: the
    # first import's rows still in their pending batch, the second's published but not
    # yet made dialable.
    connection = sqlite3.connect(path, isolation_level=None)
    with connection:
        connection.execute("ALTER TABLE event DROP COLUMN span")
        connection.execute("DROP TABLE pending_place")
        connection.execute("ALTER TABLE pending_batch DROP COLUMN first_seq")
        connection.execute("CREATE INDEX target_batch ON target (batch) WHERE batch IS NOT NULL")
        connection.execute("PRAGMA user_version = 10")
        connection.execute("INSERT INTO pending_batch (id) VALUES ('cut')")
        connection.executemany(
            "UPDATE target SET batch = ?, pick = -pick WHERE id = ?",
            [("cut", t.id) for t in unpublished] + [("done", t.id) for t in published],
        )
    connection.close()

    store = SqliteStore(path)
    await store.open()
    try:
        listed = {t.id for t in (await store.list_targets(outdial)).result}
        assert listed == {t.id for t in published}
        claimed = {(await store.start_attempt(dialing.plan(make.at(n)))) for n in range(1, 4)}
        assert {c.outdial_target_id for c in claimed if c is not None} == listed
        assert None in claimed
    finally:
        await store.close()
    assert pragma(path, "user_version") == SCHEMA_VERSION
    assert _count(path, "SELECT count(*) FROM target") == 2


def _count(path: Path, query: str) -> int:
    connection = sqlite3.connect(path)
    try:
        return int(connection.execute(query).fetchone()[0])
    finally:
        connection.close()


async def test_a_schema_4_file_keeps_its_dialing_order_and_retry_waits(
    tmp_path: Path, make: Factory
) -> None:
    """Targets written by schema 4 (rules evaluated at each claim) carry on under the
    placements of schema 5: never-tried ones ready, retried ones waiting out the
    outplan's interval from their last end, a published import's rows dialable."""
    path = tmp_path / "dialerd.sqlite3"
    customer = new_id()
    outplan = make.outplan(customer, max_try_counts=(3,), try_interval=60_000)
    outdial = make.outdial(customer)
    campaign = make.campaign(
        customer, outplan_id=outplan.id, outdial_id=outdial.id, status=CampaignStatus.RUN
    )
    fresh = make.target(outdial.id, tm_create=make.stamp(1), name="never tried")
    retried = make.target(outdial.id, tm_create=make.stamp(0), name="tried once")
    imported = make.target(outdial.id, tm_create=make.stamp(2), name="published import")
    connection = sqlite3.connect(path, isolation_level=None)
    for step in MIGRATIONS[:4]:
        for statement in step:
            assert isinstance(statement, str)
            connection.execute(statement)
    connection.execute("PRAGMA user_version = 4")
    encode = msgspec.json.encode
    for table, resource in (("outplan", outplan), ("outdial", outdial)):
        connection.execute(
            f"INSERT INTO {table} (id, customer_id, tm_create, body) VALUES (?, ?, ?, ?)",
            (resource.id, customer, resource.tm_create, encode(resource)),
        )
    connection.execute(
        "INSERT INTO campaign (id, customer_id, status, tm_create, body) VALUES (?, ?, ?, ?, ?)",
        (campaign.id, customer, "run", campaign.tm_create, encode(campaign)),
    )
    # (target, try_count_0, touched, pick, batch): pick 1 never tried, 2 retried.
    for target, tries, touched, pick, batch in (
        (retried, 1, make.stamp(10), 2, None),
        (fresh, 0, make.stamp(1), 1, None),
        (imported, 0, make.stamp(2), 0, "published"),
    ):
        connection.execute(
            "INSERT INTO target (id, outdial_id, name, detail, data, status, destination_0, "
            "try_count_0, try_count_1, try_count_2, try_count_3, try_count_4, tm_create, "
            "tm_update, slots, touched, pick, batch) "
            "VALUES (?, ?, ?, '', '', 'idle', ?, ?, 0, 0, 0, 0, ?, ?, 1, ?, ?, ?)",
            (
                target.id, outdial.id, target.name, encode(target.destination_0), tries,
                target.tm_create, touched if tries else None, touched, pick, batch,
            ),
        )  # fmt: skip
    connection.close()

    store = SqliteStore(path)
    await store.open()
    try:
        dialing = Dialing(campaign=campaign, outplan=outplan, outdial=outdial)
        claimed = [await store.start_attempt(dialing.plan(make.at(30))) for _ in range(3)]
        assert [c.outdial_target_id if c else None for c in claimed] == [
            fresh.id,
            imported.id,
            None,  # tried at 10 s: waits until 70 s
        ]
        assert await store.start_attempt(dialing.plan(make.at(69))) is None
        again = await store.start_attempt(dialing.plan(make.at(70)))
        assert again is not None
        assert (again.outdial_target_id, again.try_count) == (retried.id, 2)
    finally:
        await store.close()
    assert pragma(path, "user_version") == SCHEMA_VERSION


async def test_rows_of_an_unpublished_import_keep_no_campaign_from_exhausting(
    sqlite_store: SqliteStore, make: Factory
) -> None:
    """Staged rows wait in the ready index as they will be dialed: until published they
    count for nothing, as before (a list with only them is exhausted)."""
    dialing = await make.dialing(sqlite_store)
    outdial = dialing.outdial.id
    seen: list[bool] = []

    async def rows() -> AsyncIterator[list[OutdialTarget]]:
        yield [make.target(outdial) for _ in range(3)]
        seen.append(await sqlite_store.outdial_exhausted(dialing.campaign.id, outdial))

    await sqlite_store.import_targets(rows())
    assert seen == [True]
    assert not await sqlite_store.outdial_exhausted(dialing.campaign.id, outdial)


# -- the WAL's checkpoints (dialerd.store.sqlite.checkpoint) ------------------------------
EVENT_BODY = b'{"note":"' + b"x" * 800 + b'"}'  # about the size of an attempt's event
MiB = 1024 * 1024


def wal_bytes(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


async def append_burst(store: SqliteStore, events: int) -> None:
    """``events`` events appended at once: one trip to the store's thread, one commit."""
    async with anyio.create_task_group() as task_group:
        for _ in range(events):
            task_group.start_soon(store.append_event, "campaign_state", "c1", "k1", EVENT_BODY)


async def test_the_wal_stays_bounded_when_no_checkpoint_round_comes(tmp_path: Path) -> None:
    # The checkpointer's thread is stuck (its rounds an hour apart): the writer's own
    # safety net keeps the -wal file near its bound, and nothing written is lost.
    path = tmp_path / "dialerd.sqlite3"
    store = SqliteStore(path)
    store.checkpoint_seconds = 3600.0
    store.wal_hard_bytes = 1 * MiB
    await store.open()
    largest = 0
    for _ in range(60):  # some 3 MiB of WAL in all
        await append_burst(store, 50)
        largest = max(largest, wal_bytes(path))
    assert largest <= 1 * MiB + MiB // 4  # the bound and one commit's pages
    assert await store.outbox_backlog("c1") == 3000
    await store.close()


async def test_checkpoint_rounds_keep_the_wal_from_growing_in_a_long_run(
    tmp_path: Path,
) -> None:
    path = tmp_path / "dialerd.sqlite3"
    store = SqliteStore(path)
    store.checkpoint_seconds = 3600.0  # the rounds are run here, between the bursts
    await store.open()
    checkpointer = store._checkpointer
    assert checkpointer is not None
    sizes = []
    for _ in range(40):
        await append_burst(store, 50)
        pages, copied = await anyio.to_thread.run_sync(checkpointer.checkpoint)
        assert copied == pages > 0  # all of the WAL is in the database file
        sizes.append(wal_bytes(path))
    # The WAL starts over after each round: the file is no bigger than one burst made it.
    assert max(sizes) == sizes[0] < MiB
    assert await store.outbox_backlog("c1") == 2000
    await store.close()
    reopened = SqliteStore(path)
    await reopened.open()
    assert await reopened.outbox_backlog("c1") == 2000
    await reopened.close()


async def test_a_checkpoint_failing_every_round_is_logged_once_a_minute(tmp_path: Path) -> None:
    # The file cannot be opened (its directory is missing), so every round fails: the
    # first failure is logged at once, then one line a minute counts the failures since
    # the last line, and one line says when checkpoints succeed again.
    clock = FakeClock()
    path = tmp_path / "missing" / "dialerd.sqlite3"
    checkpointer = Checkpointer(path, 100, failures=FailureLog(path, clock=clock.monotonic))
    with capture_logs() as logs:
        for _ in range(4 * 300):  # five minutes of rounds 0.25 s apart
            checkpointer.round()
            await clock.advance(0.25)
        path.parent.mkdir()
        checkpointer.round()
    checkpointer.stop()
    lines = [(line["event"], line.get("failures")) for line in logs]
    assert lines == [
        ("sqlite checkpoint failed", None),
        *[("sqlite checkpoint still failing", 240)] * 4,
        ("sqlite checkpoint succeeded again", 1200),
    ]
    assert "unable to open database file" in logs[0]["error"]
    assert [line["failing_seconds"] for line in logs[1:]] == [60.0, 120.0, 180.0, 240.0, 300.0]


async def test_the_writers_own_checkpoint_failing_after_each_write_is_logged_once_a_minute(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    path = tmp_path / "dialerd.sqlite3"
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("CREATE TABLE t (x)")  # the -wal file exists from here
    failures = FailureLog(wal_path(path), clock=clock.monotonic)
    try:
        with capture_logs() as logs:
            for _ in range(100):  # write trips over 90 s, the -wal file's size unreadable
                bound_wal(connection, tmp_path / "missing-wal", failures, hard_bytes=0)
                await clock.advance(0.9)
            bound_wal(connection, wal_path(path), failures, hard_bytes=-1)
    finally:
        connection.close()
    assert [line["event"] for line in logs] == [
        "sqlite checkpoint failed",
        "sqlite checkpoint still failing",
        "sqlite checkpoint succeeded again",
    ]
    assert logs[1]["failures"] == 67  # the trips from 0.9 s to 60.3 s
    assert logs[2]["failures"] == 100
    assert wal_bytes(path) == 0  # the last trip's checkpoint truncated it


_WRITE_UNTIL_KILLED = """
import sys
from pathlib import Path

import anyio

from dialerd.store.sqlite import SqliteStore
from tests.integration.store.test_sqlite_store import EVENT_BODY


async def main() -> None:
    store = SqliteStore(Path(sys.argv[1]))
    store.checkpoint_seconds = 0.001  # checkpoints one after the other: killed in one
    await store.open()
    written = 0
    while True:
        async with anyio.create_task_group() as task_group:
            for _ in range(20):
                task_group.start_soon(
                    store.append_event, "campaign_state", "c1", "k1", EVENT_BODY
                )
        written += 20
        print(written, flush=True)


anyio.run(main)
"""


def test_a_kill_during_checkpoints_loses_nothing_committed(tmp_path: Path) -> None:
    path = tmp_path / "dialerd.sqlite3"
    committed = 0
    with subprocess.Popen(
        [sys.executable, "-c", _WRITE_UNTIL_KILLED, str(path)],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[3],
    ) as writer:
        assert writer.stdout is not None
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(writer.stdout, selectors.EVENT_READ)
                while committed < 4000:  # several checkpoint rounds and WAL restarts
                    assert selector.select(timeout=60), "the writer stopped writing"
                    line = writer.stdout.readline()
                    assert line, "the writer ended before it was killed"
                    committed = int(line)
        finally:
            writer.send_signal(signal.SIGKILL)
            writer.wait()
    # What the next start finds: every event the writer was told was written.
    connection = sqlite3.connect(path)
    try:
        (kept,) = connection.execute("SELECT count(*) FROM event").fetchone()
        (check,) = connection.execute("PRAGMA integrity_check").fetchone()
    finally:
        connection.close()
    assert kept >= committed
    assert check == "ok"


async def test_a_schema_11_files_events_read_the_same_and_new_ones_follow(
    tmp_path: Path, make: Factory
) -> None:
    path = tmp_path / "dialerd.sqlite3"
    store = SqliteStore(path)
    await store.open()
    dialing = await make.dialing(store)
    customer = dialing.campaign.customer_id
    for n in range(3):
        await store.append_event("campaign_state", customer, dialing.campaign.id, b"[%d]" % n)
    before = await store.read_events(customer, "", 100)
    await store.close()
    connection = sqlite3.connect(path, isolation_level=None)
    with connection:  # back to schema 11: one row per event
        connection.execute("ALTER TABLE event DROP COLUMN span")
        connection.execute("PRAGMA user_version = 11")
    connection.close()

    store = SqliteStore(path)
    await store.open()
    try:
        assert await store.read_events(customer, "", 100) == before
        await store.create_targets([make.target(dialing.outdial.id) for _ in range(2)])
        await store.start_attempts([dialing.plan(make.at(1)) for _ in range(2)])
        after = await store.read_events(customer, before[-1].position, 100)
        assert [entry.type for entry in after] == ["campaigncall_created"] * 2
        assert int(after[0].position) == int(before[-1].position) + 1
        assert await store.outbox_backlog(customer) == len(before) + 2
    finally:
        await store.close()
    assert pragma(path, "user_version") == SCHEMA_VERSION
