"""The daemon as a real process against the real rig: ARI telephony, AMI queues, a campaign
driven through the HTTP API, and the SIPp ledger as the truth about what was dialled.

The rig is shared (other test processes may dial through it at the same time), so each
test reads the ledger from a mark and only the lines of the numbers it dialled: every
number here carries a per-process salt in its milliseconds (``busy-<salt>``), which the
callee reads as a delay of well under a second or as a long ring.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.conftest import free_port
from tests.realpeer.harness import take_registration
from tests.realpeer.rig import LedgerEntry, LedgerMark, Rig
from tests.system.daemon_process import QUEUE, DaemonProcess

pytestmark = pytest.mark.realpeer

# 101..999, never a multiple of 100: no other test's round numbers (answer-0, busy-100).
SALT = next(n for n in itertools.count(101 + os.getpid() % 800) if n % 100)
_apps = itertools.count()
TICK = 0.2


def asterisk_config(
    rig: Rig,
    app: str,
    *,
    amd: bool = False,
    queue_timeout: int = 5,
    telephony: str = "",
) -> str:
    """``[telephony]`` and ``[queue]`` sections pointing at the rig (TOML, appended);
    ``telephony``: more keys of ``[telephony.asterisk]``."""
    # Prompts are served to Asterisk from a port of this daemon's own.
    media_port = free_port()
    return f"""
[telephony]
backend = "asterisk"
[telephony.asterisk]
ari_url = "{rig.ari_url}"
username = "{rig.ari_user}"
password = "{rig.ari_password}"
app = "{app}"
endpoint = "{rig.endpoint_template}"
amd = {"true" if amd else "false"}
queue_timeout = {queue_timeout}
connect_timeout = 2.0
request_timeout = 2.0
media_listen = "127.0.0.1:{media_port}"
{telephony}
[queue]
backend = "asterisk"
[queue.asterisk]
host = "{rig.ami_host}"
port = {rig.ami_port}
username = "{rig.ami_user}"
secret = "{rig.ami_secret}"
"""


def new_app() -> str:
    """A Stasis app of this test alone: Asterisk gives an app's events to one websocket."""
    return f"dialerd-daemon-{os.getpid()}-{next(_apps)}"


def wait_for(condition: Callable[[], Any], within: float, what: str) -> Any:
    """Poll until ``condition()`` is truthy; return its value or fail after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within} s")
        time.sleep(0.05)


class AsteriskDaemon:
    """``dialerd run`` with the asterisk backends, and the API calls the tests make."""

    def __init__(
        self,
        tmp_path: Path,
        rig: Rig,
        app: str,
        *,
        amd: bool = False,
        queue_timeout: int = 5,
        engine: str = "",
        extra_config: str = "",
        telephony: str = "",
    ) -> None:
        self.rig = rig
        self.app = app
        self.process = DaemonProcess(
            tmp_path,
            extra_config=asterisk_config(
                rig, app, amd=amd, queue_timeout=queue_timeout, telephony=telephony
            )
            + extra_config,
            tick_interval=TICK,
            engine=engine,
        )
        self.http = self.process.http
        self.campaigns: list[dict[str, Any]] = []
        self.process.wait_ready()
        # Ready = ARI's websocket and AMI are up, so the first tick can dial.
        wait_for(self._ready, 15, "the daemon is ready (ARI and AMI connected)")

    def _ready(self) -> bool:
        return self.process.ops.get("/readyz").status_code == 200

    def campaign(
        self,
        numbers: Iterable[str],
        *,
        queue: bool = True,
        dial_timeout: int = 10_000,
        service_level: int = 100,
        actions: list[dict[str, Any]] | None = None,
        kind: str = "sip",
    ) -> dict[str, Any]:
        """A campaign (stopped) of one target per number, one try each, of type ``kind``."""
        outplan = self.http.post(
            "/v1.0/outplans",
            json={
                "source": {"type": "tel", "target": "+15550100000", "target_name": "dialerd"},
                "max_try_count_0": 1,
                "try_interval": 0,
                "dial_timeout": dial_timeout,
            },
        )
        assert outplan.status_code == 200, outplan.text
        outdial = self.http.post("/v1.0/outdials", json={"name": "real peers"}).json()
        rows = "".join(
            json.dumps({"name": n, "destination_0": {"type": kind, "target": n}}) + "\n"
            for n in numbers
        )
        imported = self.http.post(
            f"/v1.0/outdials/{outdial['id']}/targets",
            content=rows,
            headers={"Content-Type": "application/x-ndjson"},
        )
        assert imported.status_code == 200, imported.text
        created = self.http.post(
            "/v1.0/campaigns",
            json={
                "outplan_id": outplan.json()["id"],
                "outdial_id": outdial["id"],
                "queue_id": QUEUE if queue else None,
                "service_level": service_level,
                "end_handle": "stop",
                "actions": actions or [],
            },
        )
        assert created.status_code == 200, created.text
        campaign: dict[str, Any] = created.json()
        self.campaigns.append(campaign)
        return campaign

    def set_status(self, campaign: dict[str, Any], status: str) -> None:
        done = self.http.put(f"/v1.0/campaigns/{campaign['id']}/status", json={"status": status})
        assert done.status_code == 200, done.text

    def status(self, campaign: dict[str, Any]) -> str:
        return str(self.http.get(f"/v1.0/campaigns/{campaign['id']}").json()["status"])

    def calls(self, campaign: dict[str, Any]) -> list[dict[str, Any]]:
        return list(self._pages(f"/v1.0/campaigns/{campaign['id']}/campaigncalls"))

    def targets(self, campaign: dict[str, Any]) -> list[dict[str, Any]]:
        return list(self._pages(f"/v1.0/outdials/{campaign['outdial_id']}/targets"))

    def _pages(self, path: str) -> Iterator[dict[str, Any]]:
        token = ""
        while True:
            page = self.http.get(path, params={"page_size": 100, "page_token": token}).json()
            yield from page["result"]
            token = page.get("next_page_token") or ""
            if not token or not page["result"]:
                return

    def wait_stopped(self, campaign: dict[str, Any], within: float = 60) -> list[dict[str, Any]]:
        """Wait until the campaign is ``stop`` with every call done; return the calls."""

        def finished() -> list[dict[str, Any]] | None:
            if self.status(campaign) != "stop":
                return None
            calls = self.calls(campaign)
            return calls if all(call["status"] == "done" for call in calls) else None

        result: list[dict[str, Any]] = wait_for(finished, within, "the campaign stops")
        return result

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """One sample of ``/metrics`` (None when absent)."""
        wanted = "" if not labels else ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in self.process.ops.get("/metrics").text.splitlines():
            if line.startswith("#"):
                continue
            match = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$", line)
            if match is None or match.group(1) != name:
                continue
            have = ",".join(sorted((match.group(2) or "").split(","))) if match.group(2) else ""
            if have == wanted:
                return float(match.group(3))
        return None

    def ticks(self) -> float:
        return self.metric("dialerd_tick_duration_seconds_count") or 0.0

    def wait_ticks(self, count: int) -> None:
        """Let the engine tick ``count`` more times (a bounded wait for 'nothing happens')."""
        start = self.ticks()
        wait_for(lambda: self.ticks() >= start + count, 15, f"{count} engine ticks")

    def close(self) -> None:
        """Stop the process; hang up what it left ringing or talking in Asterisk."""
        ids: list[str] = []
        if self.process.process.poll() is None:
            for campaign in self.campaigns:
                ids += [call["id"] for call in self.calls(campaign) if call["status"] != "done"]
        self.process.close()
        for campaigncall_id in ids:
            hang_up(self.rig, campaigncall_id)
        # Killed, the daemon left its app subscribed to the trunk: Asterisk would build
        # the trunk's events for it through every later test.
        httpx.delete(
            f"{self.rig.ari_url}/ari/applications/{self.app}/subscription",
            params={"eventSource": "endpoint:PJSIP/callee"},
            auth=self.rig.ari_auth,
            timeout=5,
        )


def hang_up(rig: Rig, campaigncall_id: str) -> None:
    """Hang a call up in Asterisk itself (its channel id is the campaigncall id)."""
    response = httpx.delete(
        f"{rig.ari_url}/ari/channels/{campaigncall_id}", auth=rig.ari_auth, timeout=5
    )
    assert response.status_code in (204, 404), response.text


def ours(entries: list[LedgerEntry], numbers: Iterable[str]) -> list[LedgerEntry]:
    wanted = set(numbers)
    return [entry for entry in entries if entry.number in wanted]


def invites(entries: list[LedgerEntry], numbers: Iterable[str]) -> list[LedgerEntry]:
    return [entry for entry in ours(entries, numbers) if entry.event == "invite"]


def assert_ledger_matches(
    rig: Rig, mark: LedgerMark, numbers: list[str], calls: list[dict[str, Any]]
) -> Counter[str]:
    """The ledger is the truth: every INVITE of our numbers is one of our campaigncalls, and
    none was sent twice (per attempt, and per number: one try per target)."""
    lines = invites(rig.ledger_since(mark), numbers)
    ids = Counter(entry.dialerd_id for entry in lines)
    per_number = Counter(entry.number for entry in lines)
    assert set(ids) <= {call["id"] for call in calls}, (ids, calls)
    assert max(ids.values(), default=0) <= 1, ids
    assert max(per_number.values(), default=0) <= 1, per_number
    return ids


def agent_connects(daemon: AsteriskDaemon) -> float:
    return daemon.metric("dialerd_answer_to_agent_seconds_count") or 0.0


@pytest.fixture
def daemon_factory(tmp_path: Path, rig: Rig) -> Iterator[Callable[..., AsteriskDaemon]]:
    started: list[AsteriskDaemon] = []

    def start(app: str | None = None, **options: Any) -> AsteriskDaemon:
        daemon = AsteriskDaemon(tmp_path, rig, app or new_app(), **options)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.close()


def by_number(calls: list[dict[str, Any]], targets: list[dict[str, Any]]) -> dict[str, Any]:
    names = {target["id"]: target["name"] for target in targets}
    return {names[call["outdial_target_id"]]: call for call in calls}


# -- a: each callee behaviour ---------------------------------------------------------------


def test_each_callee_behaviour_ends_with_its_result_and_reason(
    fresh_rig: Rig, daemon_factory: Callable[..., AsteriskDaemon]
) -> None:
    daemon = daemon_factory()
    expected = {
        f"hangup-{1000 + SALT}": ("success", "normal"),  # answered, an agent, callee's BYE
        f"busy-{SALT}": ("fail", "busy"),
        f"unavail-{SALT}": ("fail", "failed"),
        f"decline-{SALT}": ("fail", "no_answer"),
        f"noanswer-{60_000 + SALT}": ("fail", "no_answer"),  # rings past dial_timeout
    }
    numbers = list(expected)
    mark = fresh_rig.ledger_mark()
    connects = agent_connects(daemon)
    campaign = daemon.campaign(numbers, dial_timeout=2000)
    started = time.monotonic()
    daemon.set_status(campaign, "run")
    calls = daemon.wait_stopped(campaign, within=40)
    got = {
        n: (c["result"], c["reason"]) for n, c in by_number(calls, daemon.targets(campaign)).items()
    }
    assert got == expected
    assert agent_connects(daemon) >= connects + 1  # the answered call reached an agent
    # The no-answer ended on our dial_timeout (2 s), not on the callee's 60 s.
    assert time.monotonic() - started < 40
    ids = assert_ledger_matches(fresh_rig, mark, numbers, calls)
    assert len(ids) == len(numbers)


def test_every_agent_paused_after_the_answer_is_abandoned(
    fresh_rig: Rig, daemon_factory: Callable[..., AsteriskDaemon]
) -> None:
    daemon = daemon_factory(queue_timeout=2)
    number = f"answer-{2000 + SALT}"  # rings 2 s: the agents are paused meanwhile
    mark = fresh_rig.ledger_mark()
    campaign = daemon.campaign([number], dial_timeout=10_000)
    daemon.set_status(campaign, "run")
    fresh_rig.wait_ledger(mark, lambda entries: bool(invites(entries, [number])))
    for agent in fresh_rig.queues["sales"]:
        fresh_rig.pause("sales", agent)
    calls = daemon.wait_stopped(campaign, within=30)
    assert [(c["result"], c["reason"]) for c in calls] == [("fail", "abandoned")]
    assert_ledger_matches(fresh_rig, mark, [number], calls)


def test_amd_ends_a_machine_and_sends_a_human_to_an_agent(
    fresh_rig: Rig, daemon_factory: Callable[..., AsteriskDaemon]
) -> None:
    daemon = daemon_factory(amd=True)
    human, machine = f"human-{SALT}", f"machine-{SALT}"
    mark = fresh_rig.ledger_mark()
    connects = agent_connects(daemon)
    campaign = daemon.campaign([human, machine])
    daemon.set_status(campaign, "run")
    # The human stays on the line with the agent: hang the call up once an agent has it.
    wait_for(lambda: agent_connects(daemon) > connects, 20, "the human reaches an agent")
    human_id = wait_for(
        lambda: next((e.dialerd_id for e in invites(fresh_rig.ledger_since(mark), [human])), None),
        5,
        "the human's INVITE",
    )
    hang_up(fresh_rig, human_id)
    calls = daemon.wait_stopped(campaign, within=30)
    got = {
        n: (c["result"], c["reason"]) for n, c in by_number(calls, daemon.targets(campaign)).items()
    }
    assert got == {human: ("success", "normal"), machine: ("fail", "machine")}
    assert_ledger_matches(fresh_rig, mark, [human, machine], calls)


# -- b: cancel on stop ----------------------------------------------------------------------


def test_stop_cancels_the_ringing_calls_and_the_callee_sees_cancel(
    rig: Rig, daemon_factory: Callable[..., AsteriskDaemon]
) -> None:
    daemon = daemon_factory()
    numbers = [f"noanswer-{60_000 + SALT * 10 + i}" for i in range(6)]
    mark = rig.ledger_mark()
    campaign = daemon.campaign(numbers, queue=False, dial_timeout=60_000)
    daemon.set_status(campaign, "run")
    rig.wait_ledger(mark, lambda entries: len(invites(entries, numbers)) == len(numbers))
    daemon.set_status(campaign, "stop")
    calls = daemon.wait_stopped(campaign, within=20)
    assert [call["reason"] for call in calls] == ["cancelled"] * len(numbers)
    ids = assert_ledger_matches(rig, mark, numbers, calls)
    assert set(ids) == {call["id"] for call in calls}
    # The callee saw a CANCEL for each (its outcome lines name the SIP call id).
    sip_calls = {e.call_id for e in invites(rig.ledger_since(mark), numbers)}
    rig.wait_ledger(
        mark,
        lambda entries: {e.call_id for e in entries if e.event == "cancelled"} >= sip_calls,
    )
    # Cancelled by our stop: nobody lost a try.
    for target in daemon.targets(campaign):
        assert (target["status"], target["try_count_0"]) == ("idle", 0), target


# -- c: no second INVITE for one attempt ----------------------------------------------------


def _mixed_numbers(count: int, offset: int) -> list[str]:
    """Unique numbers: calls that ring long, and calls answered after a second or two."""
    base = SALT * 100 + offset
    return [
        f"noanswer-{60_000 + base + i}" if i % 2 else f"answer-{1000 + (base + i) % 1000}"
        for i in range(count)
    ]


def test_kill_9_mid_call_then_restart_never_dials_an_attempt_twice(
    tmp_path: Path, rig: Rig, daemon_factory: Callable[..., AsteriskDaemon]
) -> None:
    app = new_app()  # the same app after the restart: it finds its calls in Asterisk
    engine = "max_attempts_per_second = 3.0\nlease_ttl = 600.0"
    first = daemon_factory(app, engine=engine)
    numbers = _mixed_numbers(10, offset=10)
    mark = rig.ledger_mark()
    campaign = first.campaign(numbers, queue=False, dial_timeout=6000)
    first.set_status(campaign, "run")
    rig.wait_ledger(mark, lambda entries: len(invites(entries, numbers)) >= 3)
    first.process.kill()
    in_flight = {e.dialerd_id for e in invites(rig.ledger_since(mark), numbers)}

    second = daemon_factory(app, engine=engine)
    calls = second.wait_stopped(campaign, within=60)
    ids = assert_ledger_matches(rig, mark, numbers, calls)
    # Every target was dialled once, those in flight at the kill by the first process only.
    assert len(calls) == len(numbers)
    assert in_flight <= set(ids)
    reasons = {call["id"]: call["reason"] for call in calls}
    for campaigncall_id in in_flight:
        assert reasons[campaigncall_id] in {"lost", "normal", "no_answer"}, reasons
    targets = second.targets(campaign)
    assert all(target["status"] == "done" for target in targets), targets


def test_asterisk_restart_mid_campaign_never_redials_and_the_campaign_goes_on(
    rig: Rig, daemon_factory: Callable[..., AsteriskDaemon]
) -> None:
    daemon = daemon_factory(engine="max_attempts_per_second = 2.0")
    numbers = _mixed_numbers(10, offset=40)
    mark = rig.ledger_mark()
    campaign = daemon.campaign(numbers, queue=False, dial_timeout=8000)
    daemon.set_status(campaign, "run")
    rig.wait_ledger(mark, lambda entries: len(invites(entries, numbers)) >= 3)
    rig.restart_asterisk()
    after = rig.ledger_mark()
    in_flight = {e.dialerd_id for e in invites(rig.ledger_since(mark), numbers)}
    calls = daemon.wait_stopped(campaign, within=60)
    ids = assert_ledger_matches(rig, mark, numbers, calls)
    reasons = {call["id"]: call["reason"] for call in calls}
    # Asterisk's "core stop now" hangs its channels up and says so before the websocket
    # closes: a call in flight ends with what Asterisk reported, or lost if that was
    # missed; an origination sent while Asterisk was going away ends error. None is
    # ever dialled again.
    assert {reasons[i] for i in in_flight} <= {"lost", "normal", "no_answer", "failed"}, reasons
    assert set(reasons.values()) <= {"lost", "normal", "no_answer", "failed", "error"}, reasons
    # The campaign went on after the restart: targets dialled once Asterisk was back.
    assert invites(rig.ledger_since(after), numbers), "nothing dialled after the restart"
    assert len(ids) > len(in_flight)
    assert all(target["status"] == "done" for target in daemon.targets(campaign))


# -- d: free agents drive the dialing -------------------------------------------------------


def test_dialing_follows_pause_and_unpause_of_the_agents(
    fresh_rig: Rig, daemon_factory: Callable[..., AsteriskDaemon]
) -> None:
    daemon = daemon_factory()
    for agent in fresh_rig.queues["sales"]:
        fresh_rig.pause("sales", agent)
    numbers = [f"noanswer-{60_000 + SALT * 10 + i}" for i in range(4)]
    mark = fresh_rig.ledger_mark()
    campaign = daemon.campaign(numbers, dial_timeout=60_000, service_level=100)
    daemon.set_status(campaign, "run")
    wait_for(
        lambda: daemon.metric("dialerd_available_agents", {"queue_id": QUEUE}) == 0,
        10,
        "the engine reads 0 free agents",
    )
    daemon.wait_ticks(5)
    assert invites(fresh_rig.ledger_since(mark), numbers) == []
    assert daemon.calls(campaign) == []

    fresh_rig.pause("sales", "agent1", paused=False)
    fresh_rig.wait_ledger(mark, lambda entries: len(invites(entries, numbers)) == 1)
    assert daemon.metric("dialerd_available_agents", {"queue_id": QUEUE}) == 1
    daemon.wait_ticks(5)  # one free agent, one call ringing: nothing more
    assert len(invites(fresh_rig.ledger_since(mark), numbers)) == 1

    fresh_rig.pause("sales", "agent2", paused=False)
    fresh_rig.wait_ledger(mark, lambda entries: len(invites(entries, numbers)) == 2)
    daemon.set_status(campaign, "stop")
    calls = daemon.wait_stopped(campaign, within=20)
    assert [call["reason"] for call in calls] == ["cancelled", "cancelled"]
    assert_ledger_matches(fresh_rig, mark, numbers, calls)


# -- e: the ARI registration check ----------------------------------------------------------


def test_the_registration_check_runs_as_configured_and_a_loss_is_mended(
    rig: Rig, daemon_factory: Callable[..., AsteriskDaemon]
) -> None:
    # Checked every second, its event given a second: a registration taken from the
    # daemon is noticed well before the default check (15 s, then 10 s) would see it.
    daemon = daemon_factory(
        telephony="registration_check_interval = 1.0\nregistration_check_timeout = 1.0"
    )
    lost = {"backend": "asterisk"}
    assert daemon.metric("dialerd_telephony_registration_lost_total", lost) == 0
    anyio.run(take_registration, rig, daemon.app)
    wait_for(
        lambda: daemon.metric("dialerd_telephony_registration_lost_total", lost) == 1,
        8,
        "the lost registration noticed",
    )
    wait_for(daemon._ready, 15, "ARI connected again")
    # Registered again: a call's events reach the daemon, the campaign ends by itself.
    number = f"busy-{SALT}"
    mark = rig.ledger_mark()
    campaign = daemon.campaign([number], queue=False)
    daemon.set_status(campaign, "run")
    [call] = daemon.wait_stopped(campaign, within=30)
    assert call["reason"] == "busy"
    assert_ledger_matches(rig, mark, [number], [call])
