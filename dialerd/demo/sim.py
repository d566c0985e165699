"""``dialerd demo``: one campaign on a simulated call centre, from nothing to ``stop``.

It runs the real daemon (engine, SQLite store in a temporary state directory, the
simulated call centre and the API on a free loopback port), creates an outplan, an
outdial of N targets (some with two or three numbers) and a ``call`` campaign with
``end_handle = stop`` on a queue of K agents, starts it and waits until it stops by itself.

``--actions ivr`` gives the campaign an IVR ("press 1 for an agent, 9 to be put on our
do-not-call list") run by the simulated callees, and the summary says what they chose,
the opt-outs put on the list, and checks that no opted-out number was dialed again.
``--actions webhook`` runs a ``flow`` campaign instead: one ``webhook_send`` per target
to a receiver the demo starts on 127.0.0.1, and no call.

With ``--telephony asterisk`` the same daemon dials through a real Asterisk (ARI) to the
SIPp callee of the test rig (``scripts/rig``) and reads the free agents of its queue
``sales`` over AMI; see ``dialerd.demo.asterisk``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO

import anyio
import msgspec

from dialerd.config import (
    ApiConfig,
    Config,
    EngineConfig,
    OpsConfig,
    QueueEntry,
    SimConfig,
    WebhooksConfig,
)
from dialerd.core import abandonment
from dialerd.demo.common import count_done_targets, store_and_run
from dialerd.events.model import event_json
from dialerd.model import (
    NIL_UUID,
    Action,
    Address,
    AddressType,
    Campaign,
    CampaignStatus,
    CampaignType,
    Outdial,
    OutdialTarget,
    Outplan,
    PacingMode,
    format_time,
)
from dialerd.service import logs
from dialerd.service.daemon import Daemon
from dialerd.store import Outbox

CUSTOMER_ID = "5e4a0680-804e-11ec-98a7-2fea5968d85b"
# The demo's queue, registered for its customer (``[[queues]]``).
QUEUE_ID = "99bf739a-932f-433c-b1bf-103d33d7e9bb"
SAMPLE_SECONDS = 0.1
# The ids of the IVR's actions that its branch jumps to.
IVR_AGENT = "7c1e0a52-3b8d-4f6e-9a01-2d3c4b5a6f70"
IVR_OPT_OUT = "7c1e0a52-3b8d-4f6e-9a01-2d3c4b5a6f79"
IVR_BYE = "7c1e0a52-3b8d-4f6e-9a01-2d3c4b5a6f7f"
IVR_PROMPT = "Press 1 for an agent, 9 to be put on our do-not-call list."


def ivr_actions() -> list[Action]:
    """The demo's IVR: a prompt, one key, 1 to the queue, 9 on the do-not-call list."""
    return [
        Action(type="talk", option={"text": IVR_PROMPT, "language": "en-US"}),
        Action(type="digits_receive", option={"duration": 5000, "length": 1}),
        Action(
            type="branch",
            option={"target_ids": {"1": IVR_AGENT, "9": IVR_OPT_OUT}, "default_target_id": IVR_BYE},
        ),
        Action(id=IVR_AGENT, type="queue_join"),
        Action(id=IVR_OPT_OUT, type="dnc_add"),
        Action(
            type="talk",
            option={"text": "You will not be called again. Goodbye.", "language": "en-US"},
        ),
        Action(id=IVR_BYE, type="hangup"),
    ]


# The IVR demo's callees: the share pressing 1 and 9 (the rest press nothing), and the
# share hanging up during the prompt.
IVR_DIGITS = {"1": 0.6, "9": 0.15}
IVR_HANGUPS = 0.05


class DemoSummary(msgspec.Struct, kw_only=True, omit_defaults=True):
    status: str
    targets: int
    targets_done: int
    attempts: int
    success: int
    fail: int
    answered: int
    abandoned: int
    abandon_rate: float
    agent_occupancy: float
    max_dialing: int
    elapsed_seconds: float
    agents: int
    service_level: int
    pacing_mode: str
    # Abandoned over live answers as the engine measured them (2-second rule), per
    # window of days ending today, and the agents' busy share of their logged-in time.
    abandon_rate_today: float
    abandon_rate_30_days: float
    speed: float
    seed: int
    actions: str = "none"
    # --actions ivr: the branches the callees' keys took ("other": no key or another),
    # the numbers put on the do-not-call list, and attempts to such a number made
    # after it was listed (must be 0).
    chosen: dict[str, int] | None = None
    prompt_hangups: int | None = None
    opt_outs: int | None = None
    dnc_listed: int | None = None
    dialed_after_opt_out: int | None = None
    # --actions webhook: the POSTs the demo's receiver got (one per target).
    webhooks_received: int | None = None
    # --events: the events printed (what the customer's webhook would get).
    events: int | None = None


def demo_config(args: argparse.Namespace, state_dir: Path) -> Config:
    """The daemon's config for a demo run: SQLite, the simulated centre, a free API port."""
    # Ticks follow simulated time, so a fast demo still paces at one tick per sim-second.
    tick = min(1.0, 1.0 / args.speed)
    ivr = _actions(args) == "ivr"
    return Config(
        state_dir=str(state_dir),
        engine=EngineConfig(
            tick_interval=tick,
            max_concurrent_attempts=max(10, args.agents * 4),
            max_attempts_per_second=50.0 * args.speed,
        ),
        sim=SimConfig(
            seed=args.seed,
            speed=args.speed,
            default_agents=args.agents,
            digits=IVR_DIGITS if ivr else {},
            hangup_during_prompt=IVR_HANGUPS if ivr else 0.0,
        ),
        # The demo's own receiver (--actions webhook) is on loopback.
        webhooks=WebhooksConfig(allow_hosts=["127.0.0.1"]),
        queues=[QueueEntry(id=QUEUE_ID, customer_id=CUSTOMER_ID, name="demo")],
        api=ApiConfig(listen="127.0.0.1:0"),
        ops=OpsConfig(enabled=False),
    )


def _actions(args: argparse.Namespace) -> str:
    return str(getattr(args, "actions", "none"))


def _phone(rng: random.Random) -> Address:
    return Address(type=AddressType.TEL, target=f"+1555{rng.randrange(10**7):07d}")


def build_resources(
    args: argparse.Namespace, now: str, webhook_url: str = ""
) -> tuple[Outplan, Outdial, list[OutdialTarget], Campaign]:
    """The outplan, outdial, targets and campaign of the demo (times scaled by speed)."""
    rng = random.Random(args.seed)
    scale = 1.0 / args.speed
    outplan = Outplan.fresh(
        CUSTOMER_ID,
        now,
        name="demo outplan",
        detail="three tries on the first number, two on the others",
        source=Address(type=AddressType.TEL, target="+15550000000"),
        dial_timeout=round(30_000 * scale),
        try_interval=round(60_000 * scale),
        max_try_counts=(3, 2, 2),
    )
    outdial = Outdial.fresh(CUSTOMER_ID, now, name="demo outdial")
    targets = [
        OutdialTarget.fresh(
            outdial.id,
            [
                _phone(rng),
                _phone(rng) if index % 3 == 0 else None,
                _phone(rng) if index % 6 == 0 else None,
            ],
            now,
            name=f"contact {index + 1}",
        )
        for index in range(args.targets)
    ]
    campaign = Campaign.fresh(
        CUSTOMER_ID,
        now,
        name="demo campaign",
        detail="dialerd demo on a simulated call centre",
        service_level=args.service_level,
        # Without actions an answered call joins the queue at once.
        actions=ivr_actions() if _actions(args) == "ivr" else [],
        outplan_id=outplan.id,
        outdial_id=outdial.id,
        queue_id=QUEUE_ID,
    )
    if getattr(args, "pacing", "service_level") == "predictive":
        campaign = msgspec.structs.replace(
            campaign,
            pacing_mode=PacingMode.PREDICTIVE,
            target_abandon_rate=args.target_abandon_rate,
        )
    if _actions(args) == "webhook":
        data = '{"campaigncall": "${campaigncall.id}", "target": "${target.name}"}'
        campaign = msgspec.structs.replace(
            campaign,
            type=CampaignType.FLOW,
            detail="dialerd demo: one webhook per target, no call",
            # No agents involved: paced by engine.max_concurrent_attempts only.
            queue_id=NIL_UUID,
            actions=[Action(type="webhook_send", option={"uri": webhook_url, "data": data})],
        )
    return outplan, outdial, targets, campaign


class Progress:
    """A one-line progress bar, redrawn in place on a terminal."""

    def __init__(self, out: TextIO, total: int) -> None:
        self.out = out
        self.total = total
        self.enabled = out.isatty()

    def draw(self, done: int, attempts: int, answered: int, abandoned: int, busy: str) -> None:
        if not self.enabled:
            return
        width = 30
        filled = width * done // max(1, self.total)
        bar = "#" * filled + "-" * (width - filled)
        self.out.write(
            f"\r[{bar}] {done}/{self.total} targets  attempts {attempts}  "
            f"answered {answered}  abandoned {abandoned}  agents busy {busy}   "
        )
        self.out.flush()

    def close(self) -> None:
        if self.enabled:
            self.out.write("\n")
            self.out.flush()


async def drive(args: argparse.Namespace, state_dir: Path, out: TextIO) -> DemoSummary:
    """Run the daemon, the campaign and the sampling loop; return the summary."""
    with webhook_receiver() as receiver:
        summary = await _drive(args, state_dir, out, receiver)
    if _actions(args) == "webhook":
        summary.webhooks_received = receiver.count
    return summary


async def _drive(
    args: argparse.Namespace, state_dir: Path, out: TextIO, receiver: WebhookReceiver
) -> DemoSummary:
    daemon = Daemon(demo_config(args, state_dir), state_dir=state_dir)
    progress = Progress(out, args.targets)
    started = time.monotonic()
    async with anyio.create_task_group() as task_group:
        await task_group.start(daemon.run)
        now = format_time(daemon.clock.now())
        resources = build_resources(args, now, receiver.url)
        campaign = await store_and_run(daemon, CUSTOMER_ID, resources)

        status = CampaignStatus.RUN
        shown_events = EventsShown()
        while status != CampaignStatus.STOP:
            await anyio.sleep(SAMPLE_SECONDS)
            if getattr(args, "events", False):
                await shown_events.print_new(daemon.store, out)
            current = await daemon.store.get_campaign(CUSTOMER_ID, campaign.id)
            status = current.status if current else CampaignStatus.STOP
            world = daemon.sim.snapshot()
            stats = daemon.engine.stats
            progress.draw(
                stats.targets_done,
                stats.attempts_started,
                world.answered,
                world.abandoned,
                f"{world.agents_busy}/{world.agents_total}",
            )
        progress.close()
        if getattr(args, "events", False):
            await shown_events.print_new(daemon.store, out)
        done = await count_done_targets(daemon, campaign.outdial_id)
        today = abandonment.campaign_day(daemon.clock.now())
        days = await daemon.store.abandonment_days(campaign.id, abandonment.first_day(today, 30))
        day_window, month_window = abandonment.windows(days, today, [1, 30])
        world = daemon.sim.snapshot()
        stats = daemon.engine.stats
        opt_out_check = (
            await opt_out_check_of(daemon, campaign.id) if _actions(args) == "ivr" else None
        )
        daemon.shutdown.set()
    summary = DemoSummary(
        status=status.value,
        targets=args.targets,
        targets_done=done,
        attempts=stats.attempts_started,
        success=stats.success,
        fail=stats.fail,
        answered=world.answered,
        abandoned=world.abandoned,
        abandon_rate=round(world.abandoned / world.answered, 4) if world.answered else 0.0,
        agent_occupancy=(
            round(world.busy_agent_seconds / world.staffed_agent_seconds, 4)
            if world.staffed_agent_seconds
            else 0.0
        ),
        max_dialing=daemon.engine.max_dialing,
        elapsed_seconds=round(time.monotonic() - started, 2),
        agents=args.agents,
        service_level=args.service_level,
        pacing_mode=getattr(args, "pacing", "service_level"),
        abandon_rate_today=round(day_window.rate, 4),
        abandon_rate_30_days=round(month_window.rate, 4),
        speed=args.speed,
        seed=args.seed,
        actions=_actions(args),
    )
    if getattr(args, "events", False):
        summary.events = shown_events.count
    if opt_out_check is not None:
        summary.chosen = dict(sorted(world.chosen.items()))
        summary.prompt_hangups = world.prompt_hangups
        summary.opt_outs = world.opt_outs
        summary.dnc_listed, summary.dialed_after_opt_out = opt_out_check
    return summary


class EventsShown:
    """``--events``: prints the demo customer's events, as its webhook would get them."""

    def __init__(self) -> None:
        self.after = ""
        self.count = 0

    async def print_new(self, store: Outbox, out: TextIO) -> None:
        """Print every event written since the last call, one JSON line each."""
        while entries := await store.read_events(CUSTOMER_ID, self.after, 500):
            for entry in entries:
                out.write(event_json(entry).decode() + "\n")
            self.after = entries[-1].position
            self.count += len(entries)
        out.flush()


async def opt_out_check_of(daemon: Daemon, campaign_id: str) -> tuple[int, int]:
    """The numbers on the demo customer's do-not-call list, and the attempts of the
    campaign made to one of them after it was listed (the opt-out's promise: none)."""
    listed: dict[str, str] = {}
    token = ""
    while True:
        page = await daemon.store.list_dnc_numbers(CUSTOMER_ID, 100, token)
        listed.update((entry.number, entry.tm_create) for entry in page.result)
        if not page.result or not page.next_page_token:
            break
        token = page.next_page_token
    redialed, token = 0, ""
    while True:
        calls = await daemon.store.list_campaigncalls(CUSTOMER_ID, campaign_id, 100, token)
        redialed += sum(
            1
            for call in calls.result
            if call.destination.target in listed
            and call.tm_create > listed[call.destination.target]
        )
        if not calls.result or not calls.next_page_token:
            return len(listed), redialed
        token = calls.next_page_token


class WebhookReceiver:
    """The demo's webhook receiver on 127.0.0.1: counts the requests it answers 200."""

    def __init__(self) -> None:
        self.count = 0
        self.url = ""
        self._lock = threading.Lock()

    def received(self) -> None:
        with self._lock:
            self.count += 1


class _Server(ThreadingHTTPServer):
    # socketserver listens with a backlog of 5: too few for a campaign's concurrency.
    request_queue_size = 128


@contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A ``WebhookReceiver`` served in a thread for as long as the block runs."""
    receiver = WebhookReceiver()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            receiver.received()
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/demo-webhook"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def print_table(summary: DemoSummary, out: TextIO) -> None:
    """The end-of-run summary as an aligned two-column table."""
    rows: dict[str, Any] = {
        key: value for key, value in msgspec.structs.asdict(summary).items() if value is not None
    }
    width = max(len(key) for key in rows)
    out.write("\ndialerd demo summary\n")
    for key, value in rows.items():
        rates = ("abandon_rate", "agent_occupancy", "abandon_rate_today", "abandon_rate_30_days")
        shown = f"{value:.1%}" if key in rates else value
        out.write(f"  {key:<{width}}  {shown}\n")
    out.flush()


def run_demo(args: argparse.Namespace) -> int:
    """Entry point of ``dialerd demo``; 0 when the campaign stopped with every target done."""
    logs.configure_logging(args.log_level, "auto")
    asterisk = getattr(args, "telephony", "sim") == "asterisk"
    if getattr(args, "targets", None) is None:
        args.targets = 30 if asterisk else 300
    if asterisk:
        from dialerd.demo.asterisk import run_asterisk_demo

        return run_asterisk_demo(args)
    out = sys.stdout
    with tempfile.TemporaryDirectory(prefix="dialerd-demo-") as tmp:
        summary = anyio.run(drive, args, Path(tmp), out)
    if args.json:
        out.write(json.dumps(msgspec.to_builtins(summary)) + "\n")
    else:
        print_table(summary, out)
    ok = summary.status == "stop" and summary.targets_done == summary.targets
    if summary.dialed_after_opt_out:
        out.write(f"FAILED: {summary.dialed_after_opt_out} attempts to opted-out numbers\n")
        ok = False
    if summary.webhooks_received is not None and summary.webhooks_received != summary.targets:
        ok = False
    return 0 if ok else 1
