"""``dialerd demo --telephony asterisk``: one IVR campaign through a real Asterisk.

The daemon (SQLite store in a temporary state directory) dials through the test rig of
``scripts/rig``: ARI on 127.0.0.1:8088 places the calls, AMI on 127.0.0.1:5038 says how
many agents of the queue ``sales`` are free, and the SIPp callee answers, rings, refuses,
presses a key or hangs up depending on the dialled number (``+15557<key>...`` presses a
key, ``+15556...`` answers and presses nothing, ``busy-<ms>``, ...).

The campaign's actions run on each answered call: a spoken menu ("press 1 for an agent,
9 to be put on our do-not-call list"), the digit, then a branch: 1 hears "please wait
until an agent answers" and joins the queue, 9 is put on the customer's do-not-call list
and told so, nothing pressed hears goodbye. At the end the demo prints the attempts by
reason, the digits dialerd's branch chose, the opt-outs on the do-not-call list, and
checks them against the callee's ledger (one ``invite`` line per INVITE, carrying the
``X-Dialerd-Id`` header, and a ``pressed-<key>`` line per key): every INVITE of the
demo's numbers must be one of its campaigncalls, none may come twice, and the numbers
on the do-not-call list must be exactly those whose callee pressed 9.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import TextIO

import anyio
import httpx
import msgspec

from dialerd import metrics
from dialerd.config import (
    ApiConfig,
    AsteriskQueueConfig,
    AsteriskTelephony,
    Config,
    EngineConfig,
    OpsConfig,
    QueueConfig,
    QueueEntry,
    TelephonyConfig,
)
from dialerd.demo.common import count_done_targets, store_and_run
from dialerd.model import (
    Action,
    Address,
    AddressType,
    Campaign,
    Campaigncall,
    CampaignStatus,
    Outdial,
    OutdialTarget,
    Outplan,
    format_time,
)
from dialerd.service.daemon import Daemon

CUSTOMER_ID = "5e4a0680-804e-11ec-98a7-2fea5968d85b"
QUEUE_ID = "99bf739a-932f-433c-b1bf-103d33d7e9bb"
# The rig's addresses and credentials (scripts/rig; loopback only, test secrets).
ARI_URL = "http://127.0.0.1:8088"
ARI_USER = "dialerd"
ARI_PASSWORD = "dialerd-rig-secret"  # noqa: S105 - the rig's fixed test secret
AMI_PORT = 5038
AMI_SECRET = "dialerd-rig-secret"  # noqa: S105
ENDPOINT = "PJSIP/{number}@callee"
RIG_QUEUE = "sales"
DIAL_TIMEOUT_MS = 3000
CAMPAIGN_SECONDS = 600.0
# What the callee does, and how often the demo dials it. press1/press9 answer, press
# the key a second or two into the menu and hang up 8 s later; silent answers and
# presses nothing (it hears goodbye).
BEHAVIOURS = (
    ("press1", 30),
    ("press9", 15),
    ("silent", 15),
    ("busy", 15),
    ("noanswer", 10),
    ("unavail", 10),
    ("decline", 5),
)
# Milliseconds of each refusing behaviour: base + a number below span.
SPANS = {
    "noanswer": (60_000, 1_000_000),
    "busy": (1, 999),
    "unavail": (1, 999),
    "decline": (1, 999),
}
# The answering behaviours in the rig's E.164 form (a number a do-not-call list takes):
# +15557<key><seconds><NNNN> presses the key after the seconds, +15556<00><NNNN> nothing.
E164 = {"press1": "+155571{s}{n:04d}", "press9": "+155579{s}{n:04d}", "silent": "+1555600{n:04d}"}
TO_AGENT = "2b0a4d5e-3c1f-4e8a-9d6b-7f1e2a3b4c5d"
OPT_OUT = "6c7d8e9f-0a1b-4c2d-8e3f-4a5b6c7d8e9f"
MENU = "Thank you for taking our call. Press 1 for an agent, 9 to be put on our do not call list."
ACTIONS = [
    Action(type="talk", option={"text": MENU, "language": "en-US"}),
    Action(type="digits_receive", option={"duration": 4000, "length": 1}),
    Action(type="branch", option={"target_ids": {"1": TO_AGENT, "9": OPT_OUT}}),
    Action(type="talk", option={"text": "Goodbye."}),
    Action(type="hangup"),
    Action(
        type="talk", id=TO_AGENT, option={"text": "Please wait until an agent answers the call."}
    ),
    Action(type="queue_join"),
    Action(type="dnc_add", id=OPT_OUT),
    Action(type="talk", option={"text": "You will not be called again. Goodbye."}),
    Action(type="hangup"),
]


class AsteriskDemoSummary(msgspec.Struct, kw_only=True):
    status: str
    targets: int
    targets_done: int
    attempts: int
    by_reason: dict[str, int]
    # The branch dialerd took per value (a key, or "other": nothing pressed).
    digits_chosen: dict[str, int]
    # Keys the callees pressed, as the callee's ledger says.
    keys_pressed: dict[str, int]
    # Numbers the opt-out put on the customer's do-not-call list.
    opt_outs: list[str]
    # Seconds from answer to agent: the menu and the "please wait" prompt count in it.
    answer_to_agent_mean: float | None
    ledger_invites: int
    ledger_ok: bool
    ledger_problems: list[str]
    elapsed_seconds: float
    seed: int


def numbers(count: int, seed: int) -> list[str]:
    """``count`` callee numbers mixing the behaviours, each unique to this run.

    The milliseconds part makes a number unique (the ledger is read by number, and other
    programs may dial the rig at the same time) and keeps each call short: 1-2 s of talk
    for ``hangup``, under 1 s before a refusal; ``noanswer`` rings past our dial timeout.
    """
    rng = random.Random(seed)
    kinds = [kind for kind, weight in BEHAVIOURS for _ in range(weight)]
    salt = random.randrange(10**6)  # apart from runs started at the same time
    seen: Counter[str] = Counter()
    found = []
    for _ in range(count):
        kind = rng.choice(kinds)
        if kind in E164:
            if seen[kind] >= 10_000:
                raise ValueError(f"too many {kind} targets for unique callee numbers")
            seconds = 1 + seen[kind] % 2
            found.append(E164[kind].format(s=seconds, n=(salt + seen[kind]) % 10_000))
        else:
            base, span = SPANS[kind]
            if seen[kind] >= span:
                raise ValueError(f"too many {kind} targets for unique callee numbers")
            found.append(f"{kind}-{base + (salt + seen[kind]) % span}")
        seen[kind] += 1
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def demo_config(state_dir: Path, app: str) -> Config:
    return Config(
        state_dir=str(state_dir),
        engine=EngineConfig(tick_interval=0.2, max_attempts_per_second=20.0),
        telephony=TelephonyConfig(
            backend="asterisk",
            asterisk=AsteriskTelephony(
                ari_url=ARI_URL,
                username=ARI_USER,
                password=ARI_PASSWORD,
                app=app,
                endpoint=ENDPOINT,
                queue_timeout=5,
                # The menu's audio: rendered by espeak-ng, served to Asterisk from here.
                media_listen=f"127.0.0.1:{_free_port()}",
            ),
        ),
        queue=QueueConfig(
            backend="asterisk",
            asterisk=AsteriskQueueConfig(username=ARI_USER, port=AMI_PORT, secret=AMI_SECRET),
        ),
        queues=[QueueEntry(id=QUEUE_ID, customer_id=CUSTOMER_ID, name=RIG_QUEUE)],
        api=ApiConfig(listen="127.0.0.1:0"),
        ops=OpsConfig(enabled=False),
    )


def build_resources(
    dialled: list[str], now: str, service_level: int
) -> tuple[Outplan, Outdial, list[OutdialTarget], Campaign]:
    outplan = Outplan.fresh(
        CUSTOMER_ID,
        now,
        name="demo outplan (asterisk)",
        source=Address(type=AddressType.TEL, target="+15550000000", target_name="dialerd demo"),
        dial_timeout=DIAL_TIMEOUT_MS,
        try_interval=0,
        max_try_counts=(1,),
    )
    outdial = Outdial.fresh(CUSTOMER_ID, now, name="demo outdial (asterisk)")
    targets = [
        OutdialTarget.fresh(
            outdial.id,
            [
                Address(
                    type=AddressType.TEL if number.startswith("+") else AddressType.SIP,
                    target=number,
                )
            ],
            now,
            name=number,
        )
        for number in dialled
    ]
    campaign = Campaign.fresh(
        CUSTOMER_ID,
        now,
        name="demo campaign (asterisk)",
        detail="dialerd demo through a real Asterisk to SIPp callees",
        service_level=service_level,
        outplan_id=outplan.id,
        outdial_id=outdial.id,
        queue_id=QUEUE_ID,
        actions=ACTIONS,
    )
    return outplan, outdial, targets, campaign


class LedgerCheck(msgspec.Struct, kw_only=True):
    invites: int
    # The keys pressed, by number.
    pressed: dict[str, str]
    problems: list[str]


def check_ledger(
    ledger: Path, offset: int, dialled: list[str], calls: list[Campaigncall], opt_outs: list[str]
) -> LedgerCheck:
    """The INVITEs and keys of our numbers since ``offset``, and what is wrong with them."""
    try:
        with ledger.open("rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return LedgerCheck(invites=0, pressed={}, problems=[f"no ledger at {ledger}"])
    wanted = set(dialled)
    ids: Counter[str] = Counter()
    per_number: Counter[str] = Counter()
    pressed: dict[str, str] = {}
    for line in text[: text.rfind("\n") + 1].splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[3] not in wanted:
            continue
        if fields[2].startswith("pressed-"):
            pressed[fields[3]] = fields[2].removeprefix("pressed-")
        if fields[2] != "invite":
            continue
        ids[fields[4] if len(fields) > 4 else ""] += 1
        per_number[fields[3]] += 1
    problems = []
    ours = {call.id for call in calls}
    for campaigncall_id, count in sorted(ids.items()):
        if campaigncall_id not in ours:
            problems.append(f"INVITE with X-Dialerd-Id {campaigncall_id!r}: no such campaigncall")
        if count > 1:
            problems.append(f"campaigncall {campaigncall_id}: {count} INVITEs")
    for number, count in sorted(per_number.items()):
        if count > 1:
            problems.append(f"number {number} (one try): {count} INVITEs")
    dialled_calls = {call.id for call in calls if call.reason not in ("error", "lost")}
    for missing in sorted(dialled_calls - set(ids)):
        problems.append(f"campaigncall {missing}: no INVITE in the ledger")
    # The opt-out: on the list exactly the numbers whose callee pressed 9.
    pressed_9 = {number for number, key in pressed.items() if key == "9"}
    for number in sorted(pressed_9 - set(opt_outs)):
        problems.append(f"number {number} pressed 9 but is not on the do-not-call list")
    for number in sorted(set(opt_outs) - pressed_9):
        problems.append(f"number {number} is on the do-not-call list but did not press 9")
    return LedgerCheck(invites=sum(ids.values()), pressed=pressed, problems=problems)


def _chosen(campaign_id: str) -> dict[str, int]:
    """The branch counts of the campaign, while it runs (they go when it stops)."""
    found: dict[str, int] = {}
    for metric in metrics.CAMPAIGN_DIGITS_CHOSEN.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels["campaign_id"] == campaign_id:
                found[sample.labels["digits"]] = int(sample.value)
    return found


def _answer_to_agent() -> tuple[float, float]:
    count = total = 0.0
    for metric in metrics.ANSWER_TO_AGENT.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count"):
                count = sample.value
            elif sample.name.endswith("_sum"):
                total = sample.value
    return count, total


async def _calls(daemon: Daemon, campaign_id: str) -> list[Campaigncall]:
    found: list[Campaigncall] = []
    token = ""
    while True:
        page = await daemon.store.list_campaigncalls(CUSTOMER_ID, campaign_id, 100, token)
        found.extend(page.result)
        if not page.next_page_token or not page.result:
            return found
        token = page.next_page_token


async def drive(args: argparse.Namespace, state_dir: Path, out: TextIO) -> AsteriskDemoSummary:
    app = f"dialerd-demo-{random.randrange(10**9)}"
    daemon = Daemon(demo_config(state_dir, app), state_dir=state_dir)
    dialled = numbers(args.targets, args.seed)
    ledger = Path(args.rig_dir) / "ledger.log"
    offset = ledger.stat().st_size if ledger.exists() else 0
    started = time.monotonic()
    agents_before = _answer_to_agent()
    chosen: dict[str, int] = {}
    async with anyio.create_task_group() as task_group:
        await task_group.start(daemon.run)
        now = format_time(daemon.clock.now())
        resources = build_resources(dialled, now, args.service_level)
        campaign = await store_and_run(daemon, CUSTOMER_ID, resources)
        status = CampaignStatus.RUN
        shown = -1
        with anyio.move_on_after(CAMPAIGN_SECONDS):
            while status != CampaignStatus.STOP:
                await anyio.sleep(0.2)
                current = await daemon.store.get_campaign(CUSTOMER_ID, campaign.id)
                status = current.status if current else CampaignStatus.STOP
                chosen = _chosen(campaign.id) or chosen
                done = daemon.engine.stats.targets_done
                if out.isatty() and done != shown:
                    shown = done
                    out.write(f"\r{done}/{args.targets} targets done   ")
                    out.flush()
        if out.isatty():
            out.write("\n")
        calls = await _calls(daemon, campaign.id)
        # The campaign stops once every attempt has ended; wait for the last writes.
        with anyio.move_on_after(10):
            while any(call.status != "done" for call in calls):
                await anyio.sleep(0.2)
                calls = await _calls(daemon, campaign.id)
        targets_done = await count_done_targets(daemon, campaign.outdial_id)
        listed = await daemon.store.list_dnc_numbers(CUSTOMER_ID)
        opt_outs = sorted(entry.number for entry in listed.result if campaign.id in entry.detail)
        daemon.shutdown.set()
    checked = check_ledger(ledger, offset, dialled, calls, opt_outs)
    agents_after = _answer_to_agent()
    connects = agents_after[0] - agents_before[0]
    return AsteriskDemoSummary(
        status=status.value,
        targets=args.targets,
        targets_done=targets_done,
        attempts=len(calls),
        by_reason=dict(sorted(Counter(str(call.reason) for call in calls).items())),
        digits_chosen=dict(sorted(chosen.items())),
        keys_pressed=dict(sorted(Counter(checked.pressed.values()).items())),
        opt_outs=opt_outs,
        answer_to_agent_mean=round((agents_after[1] - agents_before[1]) / connects, 2)
        if connects
        else None,
        ledger_invites=checked.invites,
        ledger_ok=not checked.problems,
        ledger_problems=checked.problems,
        elapsed_seconds=round(time.monotonic() - started, 2),
        seed=args.seed,
    )


def print_table(summary: AsteriskDemoSummary, out: TextIO) -> None:
    out.write("\ndialerd demo summary (asterisk)\n")
    out.write(f"  campaign status   {summary.status}\n")
    out.write(f"  targets done      {summary.targets_done}/{summary.targets}\n")
    out.write(f"  attempts          {summary.attempts}\n")
    out.write("  by reason\n")
    for reason, count in summary.by_reason.items():
        out.write(f"    {reason:<15} {count}\n")
    out.write("  digits chosen (dialerd's branch; other = nothing pressed)\n")
    for value, count in summary.digits_chosen.items():
        out.write(f"    {value:<15} {count}\n")
    pressed = ", ".join(f"{key}: {count}" for key, count in summary.keys_pressed.items())
    out.write(f"  keys pressed      {pressed or 'none'} (the callees' ledger)\n")
    out.write(f"  opt-outs          {len(summary.opt_outs)} put on the do-not-call list\n")
    for number in summary.opt_outs:
        out.write(f"    {number}\n")
    if summary.answer_to_agent_mean is not None:
        out.write(
            f"  answer to agent   {summary.answer_to_agent_mean} s on average "
            "(the menu and the wait prompt included)\n"
        )
    verdict = "ok" if summary.ledger_ok else "FAILED"
    out.write(
        f"  SIPp ledger       {summary.ledger_invites} INVITEs, each one campaigncall, "
        f"none twice; opt-outs = the callees who pressed 9: {verdict}\n"
    )
    for problem in summary.ledger_problems[:20]:
        out.write(f"    {problem}\n")
    out.write(f"  elapsed           {summary.elapsed_seconds} s\n")
    out.flush()


def run_asterisk_demo(args: argparse.Namespace) -> int:
    """0 when the campaign stopped with every target done and the ledger checks out."""
    out = sys.stdout
    try:
        httpx.get(
            f"{ARI_URL}/ari/asterisk/ping", auth=(ARI_USER, ARI_PASSWORD), timeout=5
        ).raise_for_status()
    except httpx.HTTPError as exc:
        sys.stderr.write(
            f"dialerd demo: Asterisk's ARI at {ARI_URL} does not answer ({exc}); "
            "start the rig: scripts/rig setup && scripts/rig start\n"
        )
        return 2
    with tempfile.TemporaryDirectory(prefix="dialerd-demo-") as tmp:
        summary = anyio.run(drive, args, Path(tmp), out)
    if args.json:
        out.write(json.dumps(msgspec.to_builtins(summary)) + "\n")
    else:
        print_table(summary, out)
    ok = (
        summary.status == "stop"
        and summary.targets_done == summary.targets
        and summary.attempts == summary.targets
        and summary.ledger_ok
    )
    return 0 if ok else 1
