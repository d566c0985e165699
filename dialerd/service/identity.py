"""This instance's name on campaign leases, kept in the state directory.

A restarted daemon is the same instance: it takes back its own leases at once and
reconciles its predecessor's calls, instead of waiting ``lease_ttl`` for them to
expire. An exclusive lock on the state directory makes sure two live processes can
never share one identity (and so one lease).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import socket
import uuid
from pathlib import Path
from typing import IO

ID_FILE = "instance-id"
# The random part of an instance's name, as ``_instance_id`` makes it.
_RANDOM_PART = re.compile(r"[0-9a-f]{8,32}")
LOCK_FILE = "instance.lock"


class StateDirInUse(OSError):
    """Another live dialerd process holds this state directory."""


class InstanceIdentity:
    """The instance's id, and the lock that keeps it this process's alone."""

    def __init__(self, name: str, lock: IO[bytes]) -> None:
        self.name = name
        self._lock = lock

    def release(self) -> None:
        """Let another process take the identity (on exit the OS does it anyway)."""
        self._lock.close()


def claim_identity(state_dir: Path) -> InstanceIdentity:
    """Lock ``state_dir`` and return its instance id, made on first use.

    Raise ``StateDirInUse`` when a live process holds the lock.
    """
    lock = (state_dir / LOCK_FILE).open("a+b")
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().decode(errors="replace").strip() or "unknown"
        lock.close()
        raise StateDirInUse(
            f"state directory {state_dir} is in use by another dialerd process (pid {holder})"
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()).encode())
    lock.flush()
    return InstanceIdentity(_instance_id(state_dir), lock)


def _instance_id(state_dir: Path) -> str:
    path = state_dir / ID_FILE
    try:
        name = path.read_text().strip()
    except FileNotFoundError:
        name = ""
    if name:
        return name
    name = f"{socket.gethostname()}:{uuid.uuid4().hex[:12]}"
    partial = path.with_suffix(".tmp")
    partial.write_text(name + "\n")
    partial.replace(path)
    return name


def public_id(name: str) -> str:
    """What API clients see of an instance's name: the random part it ends with (the
    name also holds the host's name, which is no customer's business), or a digest of
    a name made another way. Operators find it in ``<state_dir>/instance-id``."""
    tail = name.rpartition(":")[2]
    if _RANDOM_PART.fullmatch(tail):
        return tail
    return hashlib.sha256(name.encode()).hexdigest()[:12]
