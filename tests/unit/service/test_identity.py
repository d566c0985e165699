"""The instance identity kept in the state directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dialerd.service.identity import StateDirInUse, claim_identity, public_id


def test_a_restarted_process_is_the_same_instance(tmp_path: Path) -> None:
    first = claim_identity(tmp_path)
    name = first.name
    first.release()
    again = claim_identity(tmp_path)
    assert again.name == name
    again.release()


def test_two_live_processes_cannot_share_a_state_directory(tmp_path: Path) -> None:
    held = claim_identity(tmp_path)
    try:
        other = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from pathlib import Path; from dialerd.service.identity import "
                "claim_identity; claim_identity(Path(sys.argv[1]))",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert other.returncode != 0
        assert f"state directory {tmp_path} is in use by another dialerd process" in other.stderr
    finally:
        held.release()


def test_different_state_directories_are_different_instances(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = claim_identity(tmp_path / "a"), claim_identity(tmp_path / "b")
    assert a.name != b.name
    a.release()
    b.release()


def test_a_lock_held_in_this_process_refuses_a_second_claim(tmp_path: Path) -> None:
    held = claim_identity(tmp_path)
    with pytest.raises(StateDirInUse):
        claim_identity(tmp_path)
    held.release()


def test_clients_see_the_random_part_of_the_name_not_the_host(tmp_path: Path) -> None:
    identity = claim_identity(tmp_path)
    try:
        host, _, random_part = identity.name.rpartition(":")
        assert public_id(identity.name) == random_part
        assert host not in public_id(identity.name)
    finally:
        identity.release()
    # A name made another way (an operator's own instance-id file) is shown as a digest.
    shown = public_id("db-7.internal.example")
    assert len(shown) == 12
    assert "example" not in shown
    assert shown == public_id("db-7.internal.example")
