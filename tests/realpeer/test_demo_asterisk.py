"""``scripts/demo --telephony asterisk`` against the running rig: the campaign ends with
every target done and the SIPp ledger shows each INVITE as one campaigncall, none twice."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.realpeer.rig import REPO, Rig

pytestmark = pytest.mark.realpeer


def test_demo_through_asterisk_accounts_for_every_invite(fresh_rig: Rig) -> None:
    assert fresh_rig.is_running()  # so scripts/demo uses it as it is
    done = subprocess.run(
        [str(REPO / "scripts" / "demo"), "--telephony", "asterisk", "--targets", "20", "--json"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, "DIALERD_RIG_DIR": str(fresh_rig.directory)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["status"] == "stop"
    assert summary["targets_done"] == summary["attempts"] == 20
    assert summary["ledger_ok"] is True, summary["ledger_problems"]
    assert sum(summary["by_reason"].values()) == 20
    # Every attempt that reached the callee left one INVITE.
    assert summary["ledger_invites"] == 20 - summary["by_reason"].get("error", 0)
    assert "starting the real-telephony rig" not in done.stderr
