"""WAL checkpoints off the writer's thread.

SQLite's automatic checkpoint runs on the connection that commits, after the commit
that takes the WAL past 1,000 pages: the engine's one writer thread then copies the
WAL into the database file and syncs it (fsync) while claims and finishes wait. Here
the writer's automatic checkpoint is off (``wal_autocheckpoint = 0``) and a
``Checkpointer`` does the copying on a connection and thread of its own:

- every ``CHECKPOINT_SECONDS`` a ``PASSIVE`` checkpoint, which never blocks the writer
  or a reader: it copies what the WAL holds up to the last commit, and once it has
  caught up the writer's next transaction starts the WAL over from its beginning;
- if the WAL still holds ``RESTART_PAGES`` or more after it (a writer so busy that the
  passive pass never catches up), a ``RESTART`` checkpoint: it waits for the writer's
  current transaction, holds the next one back while it copies the few pages left, and
  makes the next commit start the WAL over.

The writer's safety net (``bound_wal``, after each of its write trips): when the
``-wal`` file is over ``WAL_HARD_BYTES`` (the checkpointer is stopped, stuck or has
failed), it checkpoints itself and truncates the file, as SQLite's own checkpoint
would have. ``journal_size_limit`` cuts a file that a burst grew back to
``WAL_LIMIT_BYTES`` each time the WAL starts over.

Nothing committed depends on checkpoints: a commit is in the WAL (``synchronous =
NORMAL``: written, synced at each checkpoint), and a process killed at any point,
mid-checkpoint too, finds it there at the next open.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

import structlog

log = structlog.get_logger("dialerd.store")

# Seconds between the checkpointer's passive checkpoints (the writer commits some
# 3,000-4,000 pages a second at full speed: about what SQLite's own 1,000-page
# checkpoint copied each time).
CHECKPOINT_SECONDS: Final = 0.25
# WAL pages (4 KiB) left after a passive checkpoint that call for a RESTART one.
RESTART_PAGES: Final = 4096
# What the -wal file is cut back to when the WAL starts over.
WAL_LIMIT_BYTES: Final = 16 * 1024 * 1024
# The -wal file size at which the writer checkpoints itself.
WAL_HARD_BYTES: Final = 64 * 1024 * 1024
# While checkpoints keep failing, seconds between two warnings that count them.
FAILURE_LOG_SECONDS: Final = 60.0


def wal_path(path: Path) -> Path:
    """The WAL file of the SQLite file at ``path``."""
    return path.with_name(path.name + "-wal")


class FailureLog:
    """The warnings of checkpoints that keep failing (every round, on a full disk): the
    first failure at once, then at most one line every ``seconds`` with how many failed
    since the last line, and one line when a checkpoint succeeds again."""

    def __init__(
        self,
        path: Path,
        *,
        seconds: float = FAILURE_LOG_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.seconds = seconds
        self.clock = clock
        self._first: float | None = None  # when the failures began; None: none failing
        self._logged = 0.0  # when the last line was written
        self._failures = 0  # since the first one
        self._unlogged = 0  # since the last line

    def failed(self, error: str) -> None:
        now = self.clock()
        self._failures += 1
        if self._first is None:
            self._first = self._logged = now
            log.warning("sqlite checkpoint failed", path=str(self.path), error=error)
            return
        self._unlogged += 1
        if now - self._logged >= self.seconds:
            log.warning(
                "sqlite checkpoint still failing",
                path=str(self.path),
                error=error,
                failures=self._unlogged,
                failing_seconds=round(now - self._first, 1),
            )
            self._logged, self._unlogged = now, 0

    def succeeded(self) -> None:
        if self._first is None:
            return
        log.info(
            "sqlite checkpoint succeeded again",
            path=str(self.path),
            failures=self._failures,
            failing_seconds=round(self.clock() - self._first, 1),
        )
        self._first, self._failures, self._unlogged = None, 0, 0


class Checkpointer:
    """A thread with its own connection to the file, checkpointing the WAL every
    ``seconds`` until ``stop``."""

    def __init__(
        self,
        path: Path,
        busy_timeout_ms: int,
        *,
        seconds: float = CHECKPOINT_SECONDS,
        restart_pages: int = RESTART_PAGES,
        failures: FailureLog | None = None,
    ) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self.seconds = seconds
        self.restart_pages = restart_pages
        self.failures = failures or FailureLog(path)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one checkpoint at a time on the connection

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="dialerd-sqlite-checkpoint", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """End the thread (after the checkpoint it may be in) and close its connection.
        Blocking: call it from a worker thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def _run(self) -> None:
        while not self._stop.wait(self.seconds):
            self.round()

    def round(self) -> None:
        """One round, its failure logged (through ``failures``) rather than raised."""
        try:
            self.checkpoint()
        except sqlite3.Error as error:
            # Nothing is lost: the next round tries again, and the writer's own
            # checkpoint bounds the WAL meanwhile.
            self.failures.failed(str(error))
        else:
            self.failures.succeeded()

    def checkpoint(self) -> tuple[int, int]:
        """One round: a passive checkpoint, and a RESTART one if the WAL still holds
        ``restart_pages`` or more. The WAL's pages and how many of them are in the
        database file, after it."""
        with self._lock:
            connection = self._connection
            if connection is None:
                connection = sqlite3.connect(
                    self.path, check_same_thread=False, isolation_level=None
                )
                connection.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
                self._connection = connection
            _, pages, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if pages >= self.restart_pages:
                _, pages, copied = connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            return int(pages), int(copied)


def bound_wal(
    connection: sqlite3.Connection,
    wal: Path,
    failures: FailureLog,
    hard_bytes: int = WAL_HARD_BYTES,
) -> None:
    """The writer's safety net: checkpoint and truncate the WAL when its file is over
    ``hard_bytes`` (run on the writer's thread, between transactions). A checkpoint
    that fails changes nothing written: the next call tries again. Failures go to
    ``failures`` (one ``FailureLog`` per writer: it follows the failures in a row)."""
    try:
        if os.stat(wal).st_size <= hard_bytes:
            return
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except (OSError, sqlite3.Error) as error:
        failures.failed(str(error))
    else:
        failures.succeeded()
