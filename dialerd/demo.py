"""``dialerd demo``: one campaign on a simulated call centre, from nothing to ``stop``.

It runs the real daemon (engine, SQLite store in a temporary state directory, the
simulated call centre and the API on a free loopback port), creates an outplan, an
outdial of N targets (some with two or three numbers) and a ``call`` campaign with
``end_handle = stop`` on a queue of K agents, starts it and waits until it stops by itself.

With ``--telephony asterisk`` the same daemon dials through a real Asterisk (ARI) to the
SIPp callee of the test rig (``scripts/rig``) and reads the free agents of its queue
``sales`` over AMI; see ``dialerd.demo_asterisk``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

import anyio
import msgspec

from dialerd import logs
from dialerd.config import ApiConfig, Config, EngineConfig, OpsConfig, QueueEntry, SimConfig
from dialerd.core import abandonment
from dialerd.daemon import Daemon
from dialerd.model import (
    Action,
    Address,
    AddressType,
    Campaign,
    CampaignStatus,
    Outdial,
    OutdialTarget,
    Outplan,
    PacingMode,
    TargetStatus,
    format_time,
)

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


class DemoSummary(msgspec.Struct, kw_only=True):
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


def demo_config(args: argparse.Namespace, state_dir: Path) -> Config:
    """The daemon's config for a demo run: SQLite, the simulated centre, a free API port."""
    # Ticks follow simulated time, so a fast demo still paces at one tick per sim-second.
    tick = min(1.0, 1.0 / args.speed)
    return Config(
        state_dir=str(state_dir),
        engine=EngineConfig(
            tick_interval=tick,
            max_concurrent_attempts=max(10, args.agents * 4),
            max_attempts_per_second=50.0 * args.speed,
        ),
        sim=SimConfig(seed=args.seed, speed=args.speed, default_agents=args.agents),
        queues=[QueueEntry(id=QUEUE_ID, customer_id=CUSTOMER_ID, name="demo")],
        api=ApiConfig(listen="127.0.0.1:0"),
        ops=OpsConfig(enabled=False),
    )


def _phone(rng: random.Random) -> Address:
    return Address(type=AddressType.TEL, target=f"+1555{rng.randrange(10**7):07d}")


def build_resources(
    args: argparse.Namespace, now: str
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
        actions=[
            Action(
                type="talk",
                option={"text": "Hello, an agent will be with you shortly.", "language": "en-US"},
            )
        ],
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
    return outplan, outdial, targets, campaign


async def count_done_targets(daemon: Daemon, outdial_id: str) -> int:
    """Targets of the outdial whose status is ``done``, read back from the store."""
    done, token = 0, ""
    while True:
        page = await daemon.store.list_targets(outdial_id, 100, token)
        done += sum(1 for target in page.result if target.status == TargetStatus.DONE)
        if not page.next_page_token:
            return done
        token = page.next_page_token


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
    daemon = Daemon(demo_config(args, state_dir), state_dir=state_dir)
    progress = Progress(out, args.targets)
    started = time.monotonic()
    async with anyio.create_task_group() as task_group:
        await task_group.start(daemon.run)
        now = format_time(daemon.clock.now())
        outplan, outdial, targets, campaign = build_resources(args, now)
        await daemon.store.create_outplan(outplan)
        await daemon.store.create_outdial(outdial)
        await daemon.store.create_targets(targets)
        await daemon.store.create_campaign(campaign)
        await daemon.control.run(CUSTOMER_ID, campaign.id, cause="demo")

        status = CampaignStatus.RUN
        while status != CampaignStatus.STOP:
            await anyio.sleep(SAMPLE_SECONDS)
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
        done = await count_done_targets(daemon, outdial.id)
        today = abandonment.campaign_day(daemon.clock.now())
        days = await daemon.store.abandonment_days(campaign.id, abandonment.first_day(today, 30))
        day_window, month_window = abandonment.windows(days, today, [1, 30])
        world = daemon.sim.snapshot()
        stats = daemon.engine.stats
        daemon.shutdown.set()
    return DemoSummary(
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
    )


def print_table(summary: DemoSummary, out: TextIO) -> None:
    """The end-of-run summary as an aligned two-column table."""
    rows: dict[str, Any] = msgspec.structs.asdict(summary)
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
        from dialerd.demo_asterisk import run_asterisk_demo

        return run_asterisk_demo(args)
    out = sys.stdout
    with tempfile.TemporaryDirectory(prefix="dialerd-demo-") as tmp:
        summary = anyio.run(drive, args, Path(tmp), out)
    if args.json:
        out.write(json.dumps(msgspec.to_builtins(summary)) + "\n")
    else:
        print_table(summary, out)
    ok = summary.status == "stop" and summary.targets_done == summary.targets
    return 0 if ok else 1
