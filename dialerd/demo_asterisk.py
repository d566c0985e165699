"""``dialerd demo --telephony asterisk``: one campaign through a real Asterisk.

The daemon (SQLite store in a temporary state directory) dials through the test rig of
``scripts/rig``: ARI on 127.0.0.1:8088 places the calls, AMI on 127.0.0.1:5038 says how
many agents of the queue ``sales`` are free, and the SIPp callee answers, rings, refuses
or hangs up depending on the dialled number (``hangup-<ms>``, ``busy-<ms>``, ...). The
campaign mixes these behaviours; at the end the demo prints the attempts by reason and
checks them against the callee's ledger (one ``invite`` line per INVITE, carrying the
``X-Dialerd-Id`` header): every INVITE of the demo's numbers must be one of its
campaigncalls, and none may come twice.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import TextIO

import anyio
import httpx
import msgspec

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
from dialerd.daemon import Daemon
from dialerd.demo import count_done_targets
from dialerd.model import (
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
# What the callee does, and how often the demo dials it. "hangup" answers at once and
# hangs up after <ms>: the call goes to an agent meanwhile.
BEHAVIOURS = (
    ("hangup", 35),
    ("busy", 20),
    ("noanswer", 15),
    ("unavail", 10),
    ("decline", 10),
)
# Milliseconds of each behaviour: base + a number below span.
SPANS = {
    "hangup": (1000, 1000),
    "noanswer": (60_000, 1_000_000),
    "busy": (1, 999),
    "unavail": (1, 999),
    "decline": (1, 999),
}


class AsteriskDemoSummary(msgspec.Struct, kw_only=True):
    status: str
    targets: int
    targets_done: int
    attempts: int
    by_reason: dict[str, int]
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
        base, span = SPANS[kind]
        if seen[kind] >= span:
            raise ValueError(f"too many {kind} targets for unique callee numbers")
        found.append(f"{kind}-{base + (salt + seen[kind]) % span}")
        seen[kind] += 1
    return found


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
            outdial.id, [Address(type=AddressType.SIP, target=number)], now, name=number
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
    )
    return outplan, outdial, targets, campaign


def check_ledger(
    ledger: Path, offset: int, dialled: list[str], calls: list[Campaigncall]
) -> tuple[int, list[str]]:
    """The INVITEs of our numbers since ``offset``, and what is wrong with them."""
    try:
        with ledger.open("rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return 0, [f"no ledger at {ledger}"]
    wanted = set(dialled)
    ids: Counter[str] = Counter()
    per_number: Counter[str] = Counter()
    for line in text[: text.rfind("\n") + 1].splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[2] != "invite" or fields[3] not in wanted:
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
    return sum(ids.values()), problems


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
    async with anyio.create_task_group() as task_group:
        await task_group.start(daemon.run)
        now = format_time(daemon.clock.now())
        outplan, outdial, targets, campaign = build_resources(dialled, now, args.service_level)
        await daemon.store.create_outplan(outplan)
        await daemon.store.create_outdial(outdial)
        await daemon.store.create_targets(targets)
        await daemon.store.create_campaign(campaign)
        await daemon.control.run(CUSTOMER_ID, campaign.id, cause="demo")
        status = CampaignStatus.RUN
        shown = -1
        with anyio.move_on_after(CAMPAIGN_SECONDS):
            while status != CampaignStatus.STOP:
                await anyio.sleep(0.2)
                current = await daemon.store.get_campaign(CUSTOMER_ID, campaign.id)
                status = current.status if current else CampaignStatus.STOP
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
        targets_done = await count_done_targets(daemon, outdial.id)
        daemon.shutdown.set()
    invites, problems = check_ledger(ledger, offset, dialled, calls)
    return AsteriskDemoSummary(
        status=status.value,
        targets=args.targets,
        targets_done=targets_done,
        attempts=len(calls),
        by_reason=dict(sorted(Counter(str(call.reason) for call in calls).items())),
        ledger_invites=invites,
        ledger_ok=not problems,
        ledger_problems=problems,
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
    verdict = "ok" if summary.ledger_ok else "FAILED"
    out.write(
        f"  SIPp ledger       {summary.ledger_invites} INVITEs, "
        f"each one campaigncall, none twice: {verdict}\n"
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
