"""Fixtures of the system tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.daemon_process import NotifySocket


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    """A ``NOTIFY_SOCKET`` to hand the daemon, as systemd would."""
    listener = NotifySocket(tmp_path / "notify.sock")
    yield listener
    listener.close()
