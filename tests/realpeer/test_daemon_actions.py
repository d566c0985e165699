"""A campaign with actions, run by the daemon against the rig: the IVR's opt-out puts the
callee on the customer's do-not-call list and no later campaign dials it; a prompt
before the queue counts in the answer-to-agent time; kill -9 during a prompt leaves no
call up and dials nobody twice."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.realpeer.rig import LedgerEntry, Rig
from tests.realpeer.test_daemon_asterisk import (
    SALT,
    AsteriskDaemon,
    agent_connects,
    by_number,
    daemon_factory,  # noqa: F401  (a fixture)
    new_app,
    wait_for,
)
from tests.receivers import http_receiver

pytestmark = pytest.mark.realpeer

TO_AGENT = str(uuid.uuid4())
OPT_OUT = str(uuid.uuid4())
# The rig's E.164 callees: +15557<key><seconds><NNNN> presses the key, +15556..: nothing.
PRESSES_1 = f"+1555711{SALT:04d}"
PRESSES_9 = f"+1555791{SALT:04d}"
SILENT = f"+1555600{SALT:04d}"


MENU = "Press 1 for an agent, 9 to be put on our do not call list."


def ivr(webhook: str = "") -> list[dict[str, Any]]:
    """Press 1 for an agent, 9 for the do-not-call list; nothing pressed: goodbye. With
    ``webhook``, a 1 is posted there (the target's number in the body) before the queue."""
    tell: list[dict[str, Any]] = []
    if webhook:
        data = '{"number": "${target.destination}", "call": "${campaigncall.id}"}'
        tell = [{"type": "webhook_send", "option": {"uri": webhook, "data": data, "sync": True}}]
    return [
        {"type": "talk", "option": {"text": MENU, "language": "en-US"}},
        {"type": "digits_receive", "option": {"duration": 5000, "length": 1}},
        {"type": "branch", "option": {"target_ids": {"1": TO_AGENT, "9": OPT_OUT}}},
        {"type": "talk", "option": {"text": "Goodbye."}},
        {"type": "hangup"},
        {"id": TO_AGENT, "type": "talk", "option": {"text": "Please wait."}},
        *tell,
        {"type": "queue_join"},
        {"id": OPT_OUT, "type": "dnc_add"},
        {"type": "talk", "option": {"text": "You will not be called again. Goodbye."}},
        {"type": "hangup"},
    ]


def invites_to(entries: list[LedgerEntry], number: str) -> list[LedgerEntry]:
    return [e for e in entries if e.event == "invite" and e.number == number]


def test_the_ivr_opt_out_lists_the_number_and_no_later_campaign_dials_it(
    fresh_rig: Rig,
    daemon_factory: Callable[..., AsteriskDaemon],  # noqa: F811
) -> None:
    with http_receiver() as receiver:
        daemon = daemon_factory(extra_config='[webhooks]\nallow_hosts = ["127.0.0.1"]\n')
        numbers = [PRESSES_1, PRESSES_9, SILENT]
        mark = fresh_rig.ledger_mark()
        first = daemon.campaign(numbers, kind="tel", actions=ivr(f"{receiver.url}/chose-1"))
        daemon.set_status(first, "run")
        calls = by_number(daemon.wait_stopped(first, within=60), daemon.targets(first))
        posted = receiver.received()
    # The webhook of the 1 branch reached a real receiver, once, about that call.
    assert [(r.method, r.path) for r in posted] == [("POST", "/chose-1")]
    assert json.loads(posted[0].body) == {
        "number": PRESSES_1,
        "call": calls[PRESSES_1]["id"],
    }
    assert calls[PRESSES_1]["result"] == "success"
    assert calls[PRESSES_9]["reason"] == "normal"
    listed = daemon.http.get("/v1.0/dnc_numbers").json()["result"]
    assert [entry["number"] for entry in listed] == [PRESSES_9]
    assert first["id"] in listed[0]["detail"]
    assert calls[PRESSES_9]["id"] in listed[0]["detail"]

    second = daemon.campaign(numbers, kind="tel", actions=ivr())
    daemon.set_status(second, "run")
    again = by_number(daemon.wait_stopped(second, within=60), daemon.targets(second))
    assert set(again) == {PRESSES_1, SILENT}
    entries = fresh_rig.ledger_since(mark)
    assert len(invites_to(entries, PRESSES_9)) == 1, "the opted-out number was dialled again"
    assert len(invites_to(entries, PRESSES_1)) == 2


def test_a_prompt_before_the_queue_counts_in_the_answer_to_agent_time(
    fresh_rig: Rig,
    daemon_factory: Callable[..., AsteriskDaemon],  # noqa: F811
) -> None:
    daemon = daemon_factory()
    text = "Please wait until an agent answers the call. Thank you for your patience."
    actions = [{"type": "talk", "option": {"text": text}}, {"type": "queue_join"}]
    before = agent_connects(daemon)
    waited_before = daemon.metric("dialerd_answer_to_agent_seconds_sum") or 0.0
    campaign = daemon.campaign([f"hangup-{6000 + SALT}"], actions=actions)
    daemon.set_status(campaign, "run")
    (call,) = daemon.wait_stopped(campaign, within=40)
    assert call["result"] == "success"
    assert agent_connects(daemon) == before + 1
    waited = (daemon.metric("dialerd_answer_to_agent_seconds_sum") or 0.0) - waited_before
    # The prompt lasts about 4 s: the agent answered after it, counted from the answer.
    assert waited > 3.0


def test_kill_9_during_a_prompt_leaves_no_call_up_and_no_second_invite(
    tmp_path: Path,
    rig: Rig,
    daemon_factory: Callable[..., AsteriskDaemon],  # noqa: F811
) -> None:
    app = new_app()
    first = daemon_factory(app)
    number = f"answer-{SALT}"
    long_prompt = "This is a long announcement that goes on and on. " * 6
    actions = [{"type": "talk", "option": {"text": long_prompt}}, {"type": "hangup"}]
    mark = rig.ledger_mark()
    campaign = first.campaign([number], queue=False, actions=actions)
    first.set_status(campaign, "run")
    rig.wait_ledger(mark, lambda entries: any(e.event == "answered" for e in entries))
    # The call is up in Stasis, its prompt playing, when dialerd dies.
    wait_for(lambda: _channels(rig), 10, "the call is up")
    first.process.kill()

    second = daemon_factory(app)
    (call,) = second.wait_stopped(campaign, within=30)
    assert call["status"] == "done"
    entries = rig.wait_ledger(mark, lambda e: any(x.event == "caller-bye" for x in e))
    assert len(invites_to(entries, number)) == 1
    assert _channels(rig) == [], "a call was left up"


def _channels(rig: Rig) -> list[str]:
    response = httpx.get(f"{rig.ari_url}/ari/channels", auth=rig.ari_auth, timeout=5)
    return [channel["id"] for channel in response.json()]
