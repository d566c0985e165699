"""No phone number reaches the log at INFO on the real ARI path: dialerd's own lines and
the HTTP libraries' (whose request lines carry the dialled number in the URL) alike."""

from __future__ import annotations

import logging

import pytest

from dialerd.ports import HangupReason
from dialerd.service import logs
from tests.realpeer.harness import origination, running, telephony
from tests.realpeer.rig import Rig

pytestmark = pytest.mark.realpeer

# A rig callee in E.164 form that answers and presses nothing.
NUMBER = "+15556014321"


async def test_a_call_through_ari_logs_no_number_at_info(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    level = root.level
    logs.configure_logging("info", "json")
    try:
        async with running(telephony(rig)) as calls:
            call = origination(NUMBER)
            await calls.backend.originate(call)
            await calls.answered(call.campaigncall_id)
            await calls.backend.hangup(call.campaigncall_id)
            assert (await calls.ended(call.campaigncall_id)).reason == HangupReason.NORMAL
    finally:
        out = capsys.readouterr().out
        for handler in [h for h in root.handlers if h.get_name() == logs.HANDLER_NAME]:
            root.removeHandler(handler)
        root.setLevel(level)
    assert "ARI connected" in out  # the log was written, through dialerd's pipeline
    assert "5556014321" not in out
    assert "%2B1555" not in out
    assert "HTTP Request" not in out  # httpx's per-request lines are quiet at INFO
