"""The state directory and the files dialerd keeps in it: private to the daemon's user.

The directory is made 0700 and the SQLite file 0600 whatever the umask of the shell that
started dialerd (SQLite gives its ``-wal`` and ``-shm`` files the database's mode), and
``dialerd run`` adds 077 to its umask, so nothing it writes is readable by others.
"""

from __future__ import annotations

import os
from pathlib import Path

import structlog

log = structlog.get_logger("dialerd.daemon")

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_umask() -> None:
    """Add 077 to the process's umask: every file it creates from now on is private."""
    os.umask(os.umask(0o077) | 0o077)


def make_state_dir(path: Path) -> None:
    """Make the state directory 0700 (its parents as the umask says); an existing one is
    left as it is (it may be the operator's), with a warning when others may read it."""
    try:
        path.mkdir(mode=PRIVATE_DIR)
    except FileExistsError:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            log.warning("state directory readable by others", path=str(path),
                        mode=f"{mode:04o}", fix=f"chmod 700 {path}")  # fmt: skip
        return
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=PRIVATE_DIR, exist_ok=True)
    # mkdir's mode passes through the umask, which may take bits away but never add any.
    os.chmod(path, PRIVATE_DIR)


def make_private_file(path: Path) -> None:
    """Create ``path`` empty and 0600 unless it exists; an existing file of this user
    that others may read is made 0600 (with the files SQLite keeps beside it)."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            _tighten(file)
        return
    os.close(descriptor)
    os.chmod(path, PRIVATE_FILE)


def _tighten(path: Path) -> None:
    try:
        status = path.stat()
    except FileNotFoundError:
        return
    mode = status.st_mode & 0o777
    if mode & 0o077 and status.st_uid == os.geteuid():
        os.chmod(path, PRIVATE_FILE)
        log.info("made a state file private", path=str(path), previous=f"{mode:04o}")
