"""Pacing benchmark: occupancy and abandonment of each pacing policy on simulated shifts.

A grid of cells (agents x share of live answers), each run once per policy (service
level 100, service level 50, predictive at 3 %) on the real engine, a SQLite store and
the simulated call centre, under a fake clock: a simulated hour takes seconds. Talk
times are drawn from 60-300 s, wrap-up 3-10 s, live answers ring 2-12 s; the rest of the
dials are machines, busy lines and no answers (rung 20 s, then cancelled).

For each cell and policy it prints agent occupancy (share of logged-in agent time spent
talking or wrapping up), abandonment as the engine measured it (live answers not
connected to an agent within 2 s; overall, and the worst of the engine's windows) and
the mean agent wait between two calls. The abandonment governor is on at 3 % (as in the
shipped config/dialerd.toml). Results are deterministic for a seed.

Run: scripts/bench-pacing --help
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import anyio
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dialerd.adapters.sim import SimCallCentre
from dialerd.config import EngineConfig, Range, SimConfig, SimOutcomes
from dialerd.core import abandonment
from dialerd.model import (
    Address,
    AddressType,
    Campaign,
    CampaignStatus,
    Outdial,
    OutdialTarget,
    Outplan,
    PacingMode,
    format_time,
)
from dialerd.queues import QueueRef, QueueRegistry
from dialerd.service import logs
from dialerd.store.sqlite import SqliteStore
from tests.fakes.engine import FakeClock, sim_engine

CUSTOMER = "5e4a0680-804e-11ec-98a7-2fea5968d85b"
QUEUE = "7d1f5b3e-2f7c-4a0e-9f43-2a3b9c1d0e11"
# A shift starts at 08:00 UTC: it never crosses midnight, so the day window is the shift.
START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
SAMPLE = 60.0
POLICIES = ("service_level_100", "service_level_50", "predictive_3")
FAILURE = 0.02


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench-pacing", description=__doc__)
    parser.add_argument("--agents", default="10,50,200", help="team sizes, comma-separated")
    parser.add_argument("--live", default="0.15,0.25,0.5", help="shares of live answers")
    parser.add_argument("--policies", default=",".join(POLICIES), help="policies to run")
    parser.add_argument("--hours", type=float, default=1.0, help="simulated hours per run")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="one JSON object per cell")
    parser.add_argument("--jobs", type=int, default=2, help="cells run at once")
    parser.add_argument("--trace", action="store_true", help="progress of each run (stderr)")
    args = parser.parse_args()
    args.agents = [int(value) for value in args.agents.split(",") if value]
    args.live = [float(value) for value in args.live.split(",") if value]
    args.policies = [value for value in args.policies.split(",") if value]
    if set(args.policies) - set(POLICIES):
        parser.error(f"--policies takes {', '.join(POLICIES)}")
    if not 0 < args.hours <= 24:
        parser.error("--hours must be within (0, 24]")
    return args


def outcomes(live_rate: float) -> SimOutcomes:
    """The dial mix: ``live_rate`` live answers, 2 % failures, the rest machines (30 %),
    busy lines (25 %) and no answers (45 %)."""
    rest = max(0.0, 1.0 - live_rate - FAILURE)
    return SimOutcomes(
        machine=0.30 * rest,
        busy=0.25 * rest,
        no_answer=0.45 * rest,
        failure=FAILURE,
        ring_time=Range(min=2.0, max=12.0),
        talk_time=Range(min=60.0, max=300.0),
    )


def campaign_for(policy: str, outplan: Outplan, outdial: Outdial, now: str) -> Campaign:
    campaign = Campaign.fresh(
        CUSTOMER,
        now,
        name=policy,
        service_level=50 if policy == "service_level_50" else 100,
        outplan_id=outplan.id,
        outdial_id=outdial.id,
        queue_id=QUEUE,
    )
    if policy == "predictive_3":
        campaign = msgspec.structs.replace(
            campaign, pacing_mode=PacingMode.PREDICTIVE, target_abandon_rate=0.03
        )
    return campaign


async def run_cell(
    agents: int, live_rate: float, policy: str, args: argparse.Namespace
) -> dict[str, object]:
    clock = FakeClock(START)
    sim = SimConfig(
        seed=args.seed,
        default_agents=agents,
        wrap_up=Range(min=3.0, max=10.0),
        abandon_after=2.0,
        outcomes=outcomes(live_rate),
    )
    centre = SimCallCentre(sim, clock)
    seconds = args.hours * 3600
    # Enough numbers for the shift whatever the policy: calls an agent can take, over
    # the share of dials answered live, with room to spare.
    targets = int(agents * seconds / 130 / live_rate) + 100
    with tempfile.TemporaryDirectory(prefix="dialerd-bench-pacing-") as tmp:
        store = SqliteStore(Path(tmp) / "dialerd.sqlite3")
        await store.open()
        try:
            engine = sim_engine(
                store,
                clock,
                centre,
                queues=QueueRegistry([QueueRef(id=QUEUE, customer_id=CUSTOMER, name=QUEUE)]),
                config=EngineConfig(
                    tick_interval=1.0,
                    max_concurrent_attempts=agents * 15,
                    max_attempts_per_second=10_000.0,
                ),
                # The governor on, as the shipped config/dialerd.toml has it.
                abandonment=lambda customer: abandonment.AbandonmentPolicy(cap=0.03),
            )
            now = format_time(clock.now())
            outplan = Outplan.fresh(
                CUSTOMER,
                now,
                source=Address(type=AddressType.TEL, target="+15550000000"),
                dial_timeout=20_000,
                try_interval=3_600_000,
                max_try_counts=(1,),
            )
            await store.create_outplan(outplan)
            outdial = await store.create_outdial(Outdial.fresh(CUSTOMER, now, name="bench"))
            await store.create_targets(
                [
                    OutdialTarget.fresh(
                        outdial.id, [Address(type=AddressType.TEL, target=f"+1555{n:07d}")], now
                    )
                    for n in range(targets)
                ]
            )
            campaign = await store.create_campaign(campaign_for(policy, outplan, outdial, now))
            async with (
                anyio.create_task_group() as task_group,
                clock.autojump(max_seconds=seconds + 600),
            ):
                await task_group.start(engine.run)
                await engine.control.run(CUSTOMER, campaign.id)
                end = clock.monotonic() + seconds
                while clock.monotonic() < end:
                    await clock.sleep_until(min(end, clock.monotonic() + SAMPLE))
                    if args.trace:
                        await trace(store, centre, campaign.id, clock.monotonic())
                stored = await store.get_campaign(None, campaign.id)
                world = centre.snapshot()
                days = await store.abandonment_days(campaign.id, "0000-00-00")
                task_group.cancel_scope.cancel()
        finally:
            await store.close()
    today = abandonment.campaign_day(clock.now())
    windows = abandonment.windows(days, today, [1, 30])
    live = sum(day.live for day in days)
    abandoned = sum(day.abandoned for day in days)
    occupancy = world.busy_agent_seconds / world.staffed_agent_seconds
    idle = world.staffed_agent_seconds - world.busy_agent_seconds
    return {
        "agents": agents,
        "live_rate": live_rate,
        "policy": policy,
        "occupancy": round(occupancy, 4),
        "abandon_rate": round(abandonment.rate(abandoned, live), 4),
        "worst_window_abandon_rate": round(max(window.rate for window in windows), 4),
        "agent_wait_seconds": round(idle / max(1, world.connected), 1),
        "live_answers": live,
        "abandoned": abandoned,
        "connected": world.connected,
        "attempts": engine.stats.attempts_started,
        "simulated_hours": args.hours,
        "still_running": stored is not None and stored.status == CampaignStatus.RUN,
    }


async def trace(store: SqliteStore, centre: SimCallCentre, campaign_id: str, at: float) -> None:
    """One line per sample: the measurement and occupancy so far (for tuning)."""
    days = await store.abandonment_days(campaign_id, "0000-00-00")
    live = sum(day.live for day in days)
    abandoned = sum(day.abandoned for day in days)
    world = centre.snapshot()
    busy = world.busy_agent_seconds / max(1.0, world.staffed_agent_seconds)
    print(
        f"  t={at:>6.0f}s live={live:>5} abandoned={abandoned:>4} "
        f"rate={abandonment.rate(abandoned, live):.2%} occupancy={busy:.1%}",
        file=sys.stderr,
    )


def run_one(cell: tuple[int, float, str, argparse.Namespace]) -> dict[str, object]:
    """One cell in a worker process (quiet logs), with the real seconds it took."""
    logs.configure_logging("error", "console")
    started = time.perf_counter()
    figures = anyio.run(run_cell, *cell)
    figures["real_seconds"] = round(time.perf_counter() - started, 1)
    return figures


def main() -> int:
    args = parse_args()
    logs.configure_logging("error", "console")
    if not args.json:
        print(
            f"dialerd pacing benchmark: {args.hours:g} simulated hour(s) per run, seed "
            f"{args.seed}; talk 60-300 s, wrap-up 3-10 s, abandoned = no agent within 2 s"
        )
        print(
            f"{'agents':>6} {'live':>5} {'policy':<18} {'occupancy':>9} {'abandon':>8} "
            f"{'worst win':>9} {'wait s':>7} {'live ans':>8} {'real s':>7}"
        )
    cells = [
        (agents, live_rate, policy, args)
        for agents in args.agents
        for live_rate in args.live
        for policy in args.policies
    ]
    # Each cell is its own process-free run with its own seeded world: running several
    # at once changes nothing in their figures, only the wall time.
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        for cell in pool.imap(run_one, cells):
            if args.json:
                print(json.dumps(cell), flush=True)
                continue
            print(
                f"{cell['agents']:>6} {cell['live_rate']:>5.0%} {cell['policy']:<18} "
                f"{cell['occupancy']:>9.1%} {cell['abandon_rate']:>8.2%} "
                f"{cell['worst_window_abandon_rate']:>9.2%} {cell['agent_wait_seconds']:>7} "
                f"{cell['live_answers']:>8} {cell['real_seconds']:>7.1f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
