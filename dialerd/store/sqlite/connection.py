"""The SQLite backend's one connection: opened and migrated, used from one worker
thread at a time (work queued while it is busy goes to it as one batch), each write in
its own ``BEGIN IMMEDIATE`` transaction; and the steps every staged import takes."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, cast

import anyio
import anyio.to_thread

from dialerd.store.base import (
    StoreError,
    StoreUnavailable,
)
from dialerd.store.sqlite.checkpoint import (
    CHECKPOINT_SECONDS,
    WAL_HARD_BYTES,
    WAL_LIMIT_BYTES,
    Checkpointer,
    FailureLog,
    bound_wal,
    wal_path,
)
from dialerd.store.sqlite.rows import (
    BUSY_TIMEOUT_MS,
    CACHE_KIB,
    DISCARD_SECONDS,
    in_transaction,
    recover_dnc_imports,
    recover_imports,
)
from dialerd.store.sqlite.schema import MIGRATIONS, SCHEMA_VERSION

R = TypeVar("R")
# Page cache of an import's own connection (the main one has CACHE_KIB).
IMPORT_CACHE_KIB = 8 * 1024


class Writer(Protocol):
    """Runs ``work`` in a transaction of its own on a connection (an import's)."""

    async def __call__(self, work: Callable[[sqlite3.Connection], R]) -> R: ...


Item = TypeVar("Item")


class _Job(Generic[R]):
    """One unit of work for the connection, and what came of it.

    ``step`` (with ``connection``) is the job's work on the connection when it may run
    with other jobs in one transaction (``_run_jobs``): ``write`` says whether it is a
    write (run in a savepoint of its own) or a read; ``work`` is the job run alone.
    """

    __slots__ = (
        "cancelled",
        "connection",
        "done",
        "error",
        "result",
        "step",
        "translate",
        "work",
        "write",
    )

    def __init__(
        self,
        work: Callable[[], R],
        step: Callable[[sqlite3.Connection], R] | None = None,
        connection: sqlite3.Connection | None = None,
        *,
        write: bool = False,
        translate: Callable[[sqlite3.Error], StoreError] | None = None,
    ) -> None:
        self.work = work
        self.translate = translate
        self.step = step
        self.connection = connection
        self.write = write
        self.cancelled = False
        self.done = False
        self.result: R | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        if not self.cancelled:
            try:
                self.result = self.work()
            except Exception as error:
                self.error = error
        self.done = True


def _run_jobs(jobs: Sequence[_Job[Any]]) -> None:
    """Run the jobs in order. When two writes or more are among them, the jobs that can
    (``step``) run in one transaction (each write in its own savepoint: one that fails
    leaves nothing and the others stand), committed once: one commit for many writes.
    No job is done (its result seen) before that commit; if it fails, every job of the
    transaction fails with its error, and nothing of them was written."""
    if sum(job.write and not job.cancelled for job in jobs) < 2:
        for job in jobs:
            job.run()
        return
    group: list[_Job[Any]] = []
    for job in jobs:
        if job.cancelled:
            job.done = True
        elif job.step is not None and (not group or job.connection is group[0].connection):
            group.append(job)
        else:
            _run_group(group)
            group = []
            if job.step is not None:
                group.append(job)
            else:
                job.run()
    _run_group(group)


def _run_group(group: Sequence[_Job[Any]]) -> None:
    """``_run_jobs``' one transaction."""
    if not group:
        return
    if len(group) == 1:
        group[0].run()
        return
    connection = group[0].connection
    assert connection is not None
    try:
        connection.execute("BEGIN IMMEDIATE")
        try:
            for job in group:
                assert job.step is not None
                if job.write:
                    connection.execute("SAVEPOINT job")
                try:
                    job.result = job.step(connection)
                except Exception as error:
                    if not connection.in_transaction:
                        raise  # SQLite rolled it all back (a full disk...): all fail
                    if job.write:
                        connection.execute("ROLLBACK TO job")
                    job.error = error
                if job.write:
                    connection.execute("RELEASE job")
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
    except Exception as error:
        for job in group:
            failed = error
            if isinstance(error, sqlite3.Error) and job.translate is not None:
                failed = job.translate(error)
            job.result, job.error = None, failed
    finally:
        for job in group:
            job.done = True


class _Trip:
    """One batch of jobs sent to the thread: run there unless abandoned before it
    started; once started, ``finished`` is set when it is done. ``after_writes`` runs
    on the thread after a batch with a write in it."""

    def __init__(
        self, jobs: Sequence[_Job[Any]], after_writes: Callable[[], object] | None = None
    ) -> None:
        self.jobs = jobs
        self.after_writes = after_writes
        self._lock = threading.Lock()
        self._started = False
        self._abandoned = False
        self.finished = threading.Event()

    def run(self) -> None:
        with self._lock:
            if self._abandoned:
                return
            self._started = True
        try:
            _run_jobs(self.jobs)
            if self.after_writes is not None and any(job.write for job in self.jobs):
                self.after_writes()
        finally:
            self.finished.set()

    def abandon(self) -> bool:
        """Keep the batch from starting; False when it has started already."""
        with self._lock:
            self._abandoned = not self._started
            return self._abandoned

    async def wait(self) -> None:
        """Until the started batch is done, however often the waiting task is cancelled."""
        while not self.finished.is_set():
            try:
                await anyio.to_thread.run_sync(self.finished.wait)
            except BaseException:
                if not self.finished.is_set():
                    continue
                raise


class _ConnectionWorker:
    """Runs the connection's work one job at a time on a worker thread.

    Jobs that queue up while the thread is busy go to it together on its next trip,
    so many concurrent claimers cost one thread hand-off per batch, not one per job;
    ``after_writes`` runs on the thread after each batch that wrote.
    """

    def __init__(self, after_writes: Callable[[], object] | None = None) -> None:
        self._after_writes = after_writes
        self._queue: list[_Job[Any]] = []
        self._draining = False
        self._drained = anyio.Event()

    async def run(self, work: Callable[[], R]) -> R:
        return await self.run_job(_Job(work))

    async def run_job(self, job: _Job[R]) -> R:
        self._queue.append(job)
        try:
            while not job.done:
                if self._draining:
                    await self._drained.wait()
                else:
                    await self._drain()
        except BaseException:
            job.cancelled = True  # still queued: it will be skipped, never half-done
            raise
        if job.error is not None:
            raise job.error
        return cast(R, job.result)

    async def _drain(self) -> None:
        self._draining = True
        self._drained = drained = anyio.Event()
        batch, self._queue = self._queue, []
        trip = _Trip(batch, self._after_writes)
        try:
            await anyio.to_thread.run_sync(trip.run)
        except BaseException:
            # An asyncio cancellation (Hypercorn ending a request past its graceful
            # timeout) goes through shields, and the thread may still run the batch.
            # Until it is done nothing else may use the connection (a second thread
            # on it crashes SQLite's module) and the daemon may not exit (a thread
            # inside SQLite at exit: SIGSEGV).
            if not trip.abandon():
                with anyio.CancelScope(shield=True):
                    await trip.wait()
            raise
        finally:
            # A batch that never reached the thread (cancelled on the way) goes back first.
            self._queue[:0] = [job for job in batch if not job.done]
            self._draining = False
            drained.set()


class SqliteConnection:
    """One SQLite file, opened: what every part of the backend reads and writes through."""

    backend = "sqlite"
    # The WAL's checkpoints (``checkpoint``): seconds between the checkpointer's rounds,
    # and the -wal file size at which the writer checkpoints itself.
    checkpoint_seconds: float = CHECKPOINT_SECONDS
    wal_hard_bytes: int = WAL_HARD_BYTES

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._connection: sqlite3.Connection | None = None
        self._worker: _ConnectionWorker | None = None
        self._checkpointer: Checkpointer | None = None

    # -- connection -------------------------------------------------------------------
    async def open(self) -> None:
        """Open (or create) the file and apply schema migrations."""
        if self._connection is not None:
            return
        self._connection = connection = await anyio.to_thread.run_sync(self._connect)
        self._worker = _ConnectionWorker(
            partial(
                bound_wal,
                connection,
                wal_path(self.path),
                FailureLog(wal_path(self.path)),
                self.wal_hard_bytes,
            )
        )
        self._checkpointer = Checkpointer(
            self.path, BUSY_TIMEOUT_MS, seconds=self.checkpoint_seconds
        )
        self._checkpointer.start()

    async def close(self) -> None:
        """Close the connection once in-flight work is done. Idempotent."""
        connection, self._connection = self._connection, None
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(checkpointer.stop)
        if connection is not None and self._worker is not None:
            await self._worker.run(connection.close)

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the file answers a query now."""
        try:
            await self._read(lambda connection: connection.execute("SELECT 1").fetchone())
        except StoreUnavailable:
            raise
        except StoreError as error:
            raise StoreUnavailable(str(error)) from error

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError as error:
            raise StoreError(
                f"cannot create SQLite store {self.path}: {error.filename} is not a directory"
            ) from error
        except OSError as error:
            raise StoreError(
                f"cannot create the directory of SQLite store {self.path}: {error.strerror}"
            ) from error
        try:
            connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as error:
            raise StoreError(f"cannot open SQLite store {self.path}: {error}") from error
        try:
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")
            # Checkpoints run on a thread of their own (``checkpoint``), not after a commit.
            connection.execute("PRAGMA wal_autocheckpoint = 0")
            connection.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT_BYTES}")
            # Random-id indexes of a large outdial thrash SQLite's default 2 MiB page cache.
            connection.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            self._migrate(connection)
            in_transaction(recover_imports, connection)
            in_transaction(recover_dnc_imports, connection)
        except BaseException as error:
            connection.close()
            if isinstance(error, sqlite3.Error):
                raise self._translate(error) from error
            raise
        return connection

    def _migrate(self, connection: sqlite3.Connection) -> None:
        version = int(connection.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"SQLite store {self.path} has schema version {version}, newer than the "
                f"{SCHEMA_VERSION} this dialerd knows: run a newer dialerd or use another file"
            )
        for number in range(version, SCHEMA_VERSION):

            def apply(connection: sqlite3.Connection, step: int = number) -> None:
                for statement in MIGRATIONS[step]:
                    if isinstance(statement, str):
                        connection.execute(statement)
                    else:
                        statement(connection)
                connection.execute(f"PRAGMA user_version = {step + 1}")

            in_transaction(apply, connection)

    def _translate(self, error: sqlite3.Error) -> StoreError:
        text = str(error)
        lowered = text.lower()
        where = f"SQLite store {self.path}"
        if "readonly" in lowered or "read-only" in lowered:
            return StoreUnavailable(f"{where} is read-only ({text}): check the file and its disk")
        if "disk is full" in lowered:
            return StoreUnavailable(f"{where}: the disk is full ({text}); nothing was changed")
        if "locked" in lowered or "busy" in lowered:
            return StoreUnavailable(f"{where} is locked by another process ({text})")
        if "unable to open" in lowered or "disk i/o" in lowered:
            return StoreUnavailable(f"{where} cannot be opened or read ({text})")
        if isinstance(error, sqlite3.ProgrammingError):
            return StoreError(f"{where} is closed ({text})")
        return StoreError(f"{where}: {text}")

    def _guarded(
        self, work: Callable[[sqlite3.Connection], R], connection: sqlite3.Connection
    ) -> R:
        try:
            return work(connection)
        except sqlite3.Error as error:
            raise self._translate(error) from error

    async def _read(self, work: Callable[[sqlite3.Connection], R]) -> R:
        return await self._job(work, write=False)

    async def _write(self, work: Callable[[sqlite3.Connection], R]) -> R:
        """``work`` as one atomic write: its own transaction, or its own savepoint in a
        transaction shared with the other work waiting for the thread (one commit)."""
        return await self._job(work, write=True)

    async def _job(self, work: Callable[[sqlite3.Connection], R], *, write: bool) -> R:
        connection, worker = self._connection, self._worker
        if connection is None or worker is None:
            raise StoreError(f"SQLite store {self.path} is not open")
        alone = partial(in_transaction, work) if write else work
        job = _Job(
            partial(self._guarded, alone, connection),
            partial(self._guarded, work),
            connection,
            write=write,
            translate=self._translate,
        )
        return await worker.run_job(job)

    @asynccontextmanager
    async def _import_connection(
        self,
    ) -> AsyncIterator[Writer]:
        """A second connection to the file, for one import's staging writes: yields
        ``write(work)``, which runs ``work`` in a transaction of its own on it."""
        if self._connection is None:
            raise StoreError(f"SQLite store {self.path} is not open")
        staging = await anyio.to_thread.run_sync(self._connect_for_import)
        worker = _ConnectionWorker()

        async def write(work: Callable[[sqlite3.Connection], R]) -> R:
            return await worker.run(partial(self._guarded, partial(in_transaction, work), staging))

        try:
            yield write
        finally:
            with anyio.CancelScope(shield=True):
                await worker.run(staging.close)

    def _connect_for_import(self) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            connection.execute("PRAGMA synchronous = NORMAL")
            # Small: an import's rows go to the end of its indexes (ids grow in file order).
            connection.execute(f"PRAGMA cache_size = -{IMPORT_CACHE_KIB}")
        except sqlite3.Error as error:
            raise self._translate(error) from error
        return connection

    async def _staged_import(
        self,
        batches: AsyncIterable[Sequence[Item]],
        stage: Callable[[Sequence[Item]], Callable[[sqlite3.Connection], object]],
        publish: Callable[[sqlite3.Connection], object],
        settle: Callable[..., Awaitable[None]],
    ) -> int:
        """The steps every import takes: ``stage`` each batch in its own transaction,
        ``publish`` once ``batches`` ends, then ``settle(write, publish=True)``; if
        anything fails first, ``settle(write, publish=False)`` drops what was staged
        (bounded in time).

        All of it runs on a connection (and thread) of the import's own, ``write``: the
        engine's work and the API's reads do not queue behind it (WAL: readers never
        wait for a writer; the engine's writes wait for the lock at most one batch or
        one settled chunk).
        """
        count = 0
        published = stopped = False
        async with self._import_connection() as write:
            try:
                async for items in batches:
                    if items:
                        await write(stage(items))
                        count += len(items)
                await write(publish)
                published = True
            except anyio.get_cancelled_exc_class():
                # Only the daemon's stop cancels an import: dropping a large one now would
                # outlast the stop grace, so what it staged stays hidden and the next
                # start drops it (``recover_imports``), as after a crash.
                stopped = not published
                raise
            finally:
                with anyio.CancelScope(shield=True):
                    if published:
                        await settle(write, publish=True)
                    elif not stopped:
                        with anyio.move_on_after(DISCARD_SECONDS):
                            await settle(write, publish=False)
        return count
