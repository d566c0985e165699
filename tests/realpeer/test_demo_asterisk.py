"""``scripts/demo --telephony asterisk`` against the running rig: the IVR campaign ends
with every target done, the SIPp ledger shows each INVITE as one campaigncall, none
twice, and the do-not-call list holds exactly the callees who pressed 9."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.realpeer.rig import REPO, Rig

pytestmark = pytest.mark.realpeer


def test_demo_through_asterisk_accounts_for_every_invite_and_every_key(fresh_rig: Rig) -> None:
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
    # The IVR: what the callees pressed is what dialerd's branch chose; every 9 is an
    # opt-out on the customer's list; an answered callee who pressed nothing is "other".
    pressed = summary["keys_pressed"]
    chosen = summary["digits_chosen"]
    assert pressed, "no callee pressed a key"
    for key, count in pressed.items():
        assert chosen.get(key) == count, (pressed, chosen)
    assert len(summary["opt_outs"]) == pressed.get("9", 0)
    answered = summary["by_reason"].get("normal", 0) + summary["by_reason"].get("abandoned", 0)
    assert sum(chosen.values()) == answered
    if pressed.get("1"):
        # The menu and the wait prompt come before the queue: the agent answers after them.
        assert summary["answer_to_agent_mean"] > 3.0
