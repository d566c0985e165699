"""Pacing benchmark: agents' idle time and the abandonment rate, minute by minute, of
service level 100 and of predictive pacing (3 %) on simulated shifts.

Each cell is a scenario (a team, a dial mix, events during the shift), run once per
policy on the real engine, a SQLite store and the simulated call centre, under a fake
clock: a simulated hour takes seconds. Unless a cell says otherwise: live answers ring
2-12 s, talk 60-300 s, wrap-up 3-10 s; the rest of the dials are machines, busy lines and
no answers (rung 20 s, then cancelled); the shift starts at 08:00 UTC. The abandonment
governor is on at 3 % (as in the shipped config/dialerd.toml); ``engine.predictive_wrap_up``
is the sim's longest wrap-up, 10 s (``--wrap-up``), as docs/operations.md advises.

Per cell it prints:

- ``idle SL100`` / ``idle pred``: agents' idle share (1 - occupancy: the share of
  logged-in agent time spent neither talking nor wrapping up) of each policy, and
  ``ratio`` (predictive's over service level 100's; the goal is at most 0.5);
- ``worst``: predictive's worst running abandonment rate over the engine's windows
  (today, 30 days), sampled each simulated minute, counted from the moment the window's
  live answers make one abandoned call fit under the cap (34 at 3 %); ``over``: the
  minutes sampled above the cap (the goal is 0);
- ``swings``: predictive's falls of its 5-minute occupancy by 20 points or more (and by
  two agents' worth, so a team of 3 is not judged on one agent's pause) within 15
  minutes, outside the 15 minutes after the team changes (the goal is 0), and
  ``step``: the largest minute-to-minute change of that 5-minute occupancy (points).

With ``--prior`` each campaign starts from the prior a day like the cell's would have
left in the store (behaviour.md §10), as a campaign that ran yesterday does.

Results are deterministic for a seed. Run: scripts/bench-pacing --help
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dialerd.adapters.sim import SimCallCentre
from dialerd.config import EngineConfig, Range, SimConfig, SimOutcomes
from dialerd.core import abandonment
from dialerd.core.predictive import CallHistory, PacingPrior
from dialerd.model import (
    Address,
    AddressType,
    Campaign,
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
MORNING = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
SAMPLE = 60.0
POLICIES = ("service_level_100", "predictive_3")
CAP = 0.03
FAILURE = 0.02
# A window is judged once one abandoned call fits under the cap (34 live answers at 3 %).
JUDGED_FROM = 1.0
SWING_POINTS = 0.20
SWING_MINUTES = 15


@dataclass(frozen=True)
class Change:
    """At ``minute`` of the shift: a new team size and/or a new share of live answers."""

    minute: float
    agents: int | None = None
    live: float | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    agents: int
    live: float
    hours: float = 1.0
    ring: tuple[float, float] = (2.0, 12.0)
    talk: tuple[float, float] = (60.0, 300.0)
    start: datetime = MORNING
    changes: tuple[Change, ...] = field(default_factory=tuple)


SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        Scenario("tiny_3", 3, 0.25),
        Scenario("small_5", 5, 0.15),
        Scenario("team_10", 10, 0.25),
        Scenario("bursts_50", 50, 0.25, changes=(Change(15, agents=100), Change(35, agents=40))),
        Scenario("live_shift_50", 50, 0.15, changes=(Change(20, live=0.5), Change(40, live=0.15))),
        Scenario("short_calls_50", 50, 0.25, talk=(10.0, 30.0)),
        Scenario("long_calls_30", 30, 0.25, hours=1.5, talk=(600.0, 1200.0)),
        Scenario("slow_answers_50", 50, 0.25, ring=(8.0, 19.0)),
        Scenario("midnight_50", 50, 0.25, start=datetime(2026, 3, 2, 23, 30, tzinfo=UTC)),
        Scenario("huge_500", 500, 0.25, hours=0.5),
    )
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench-pacing",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--cells", default=",".join(SCENARIOS), help=f"cells, of: {', '.join(SCENARIOS)}"
    )
    parser.add_argument("--hours", type=float, default=None, help="override each cell's hours")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--wrap-up", type=float, default=10.0,
                        help="engine.predictive_wrap_up (the sim: 3-10 s)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="one JSON object per cell")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once")
    parser.add_argument("--prior", action="store_true",
                        help="start each campaign from a prior of a day like the cell's "
                        "(as if it ran yesterday)")  # fmt: skip
    parser.add_argument("--trace", action="store_true",
                        help="each run's occupancy minute by minute (stderr)")  # fmt: skip
    args = parser.parse_args()
    args.cells = [value for value in args.cells.split(",") if value]
    unknown = set(args.cells) - set(SCENARIOS)
    if unknown:
        parser.error(f"--cells: unknown {', '.join(sorted(unknown))}")
    if args.hours is not None and not 0 < args.hours <= 24:
        parser.error("--hours must be within (0, 24]")
    return args


def outcomes(live: float, scenario: Scenario) -> SimOutcomes:
    """The dial mix: ``live`` live answers, 2 % failures, the rest machines (30 %),
    busy lines (25 %) and no answers (45 %)."""
    rest = max(0.0, 1.0 - live - FAILURE)
    return SimOutcomes(
        machine=0.30 * rest,
        busy=0.25 * rest,
        no_answer=0.45 * rest,
        failure=FAILURE,
        ring_time=Range(min=scenario.ring[0], max=scenario.ring[1]),
        talk_time=Range(min=scenario.talk[0], max=scenario.talk[1]),
    )


def campaign_for(policy: str, outplan: Outplan, outdial: Outdial, now: str) -> Campaign:
    campaign = Campaign.fresh(
        CUSTOMER, now, name=policy, service_level=100, outplan_id=outplan.id,
        outdial_id=outdial.id, queue_id=QUEUE,
    )  # fmt: skip
    if policy == "predictive_3":
        campaign = msgspec.structs.replace(
            campaign, pacing_mode=PacingMode.PREDICTIVE, target_abandon_rate=CAP
        )
    return campaign


def yesterday(scenario: Scenario, seed: int) -> PacingPrior:
    """The prior a day like the cell's start would have left (``--prior``): 400 dials of
    its first mix, each drawn as the sim draws it."""
    rng = random.Random(seed)
    history = CallHistory()
    mix = outcomes(scenario.live, scenario)
    for _ in range(400):
        draw = rng.random()
        if draw < scenario.live:
            history.answered_live(rng.uniform(*scenario.ring))
            history.talked(rng.uniform(*scenario.talk))
        elif draw < scenario.live + mix.busy:
            history.not_answered(rng.uniform(1.0, 4.0))
        elif draw < scenario.live + mix.busy + mix.machine:
            history.not_answered(rng.uniform(*scenario.ring))
        else:
            history.not_answered(20.0)  # no answer: the dial timeout
    prior = history.prior(abandonment.campaign_day(scenario.start - timedelta(days=1)))
    assert prior is not None
    return prior


def swings(occupancy: Sequence[float], quiet: set[int], agents: int) -> tuple[int, float]:
    """Falls of the 5-minute occupancy by ``SWING_POINTS`` (and by two agents' worth, for
    a small team) within ``SWING_MINUTES`` (not in ``quiet`` minutes), and its largest
    minute-to-minute step (both from minute 10)."""
    fall = max(SWING_POINTS, 2 / max(1, agents))
    smooth = [
        sum(occupancy[max(0, i - 4) : i + 1]) / len(occupancy[max(0, i - 4) : i + 1])
        for i in range(len(occupancy))
    ]
    count, step, armed_from = 0, 0.0, 10
    for i in range(10, len(smooth)):
        step = max(step, abs(smooth[i] - smooth[i - 1]))
        if i in quiet or i < armed_from:
            continue
        peak = max(smooth[max(armed_from, i - SWING_MINUTES) : i + 1])
        if peak - smooth[i] >= fall:
            count += 1
            armed_from = i + 1  # the next swing is counted from here
    return count, step


async def run_cell(scenario: Scenario, policy: str, args: argparse.Namespace) -> dict[str, object]:
    clock = FakeClock(scenario.start)
    sim = SimConfig(
        seed=args.seed,
        default_agents=scenario.agents,
        wrap_up=Range(min=3.0, max=10.0),
        abandon_after=2.0,
        outcomes=outcomes(scenario.live, scenario),
    )
    centre = SimCallCentre(sim, clock)
    hours = args.hours if args.hours is not None else scenario.hours
    seconds = hours * 3600
    most_agents = max([scenario.agents, *(c.agents or 0 for c in scenario.changes)])
    least_live = min([scenario.live, *(c.live or 1.0 for c in scenario.changes)])
    mean_talk = sum(scenario.talk) / 2
    targets = int(most_agents * seconds / (mean_talk * 0.6) / least_live) + 200
    per_minute: list[float] = []
    worst, over, quiet = 0.0, 0, set()
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
                    max_concurrent_attempts=most_agents * 15,
                    max_attempts_per_second=10_000.0,
                    predictive_wrap_up=args.wrap_up,
                ),
                abandonment=lambda customer: abandonment.AbandonmentPolicy(cap=CAP),
            )
            now = format_time(clock.now())
            outplan = Outplan.fresh(
                CUSTOMER, now, source=Address(type=AddressType.TEL, target="+15550000000"),
                dial_timeout=20_000, try_interval=3_600_000, max_try_counts=(1,),
            )  # fmt: skip
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
            if args.prior:
                await store.save_pacing_prior(campaign.id, yesterday(scenario, args.seed))
            changes = sorted(scenario.changes, key=lambda change: change.minute)
            async with (
                anyio.create_task_group() as task_group,
                clock.autojump(max_seconds=seconds + 600),
            ):
                await task_group.start(engine.run)
                await engine.control.run(CUSTOMER, campaign.id)
                begin = clock.monotonic()
                last = centre.snapshot()
                minute = 0
                while minute < seconds / SAMPLE:
                    await clock.sleep_until(begin + (minute + 1) * SAMPLE)
                    minute += 1
                    world = centre.snapshot()
                    staffed = world.staffed_agent_seconds - last.staffed_agent_seconds
                    busy = world.busy_agent_seconds - last.busy_agent_seconds
                    per_minute.append(busy / staffed if staffed > 0 else 0.0)
                    last = world
                    days = await store.abandonment_days(campaign.id, "0000-00-00")
                    today = abandonment.campaign_day(clock.now())
                    for window in abandonment.windows(days, today, [1, 30]):
                        if CAP * window.live >= JUDGED_FROM:
                            worst = max(worst, window.rate)
                            over += window.rate > CAP + 1e-12
                    for change in changes:
                        if change.minute == minute:
                            config = centre.config
                            if change.agents is not None:
                                config = msgspec.structs.replace(
                                    config, default_agents=change.agents
                                )
                                quiet.update(range(minute, minute + SWING_MINUTES + 1))
                            if change.live is not None:
                                config = msgspec.structs.replace(
                                    config, outcomes=outcomes(change.live, scenario)
                                )
                            centre.reconfigure(config)
                world = centre.snapshot()
                days = await store.abandonment_days(campaign.id, "0000-00-00")
                task_group.cancel_scope.cancel()
        finally:
            await store.close()
    live = sum(day.live for day in days)
    abandoned = sum(day.abandoned for day in days)
    count, step = swings(per_minute, quiet, scenario.agents)
    return {
        "cell": scenario.name,
        "policy": policy,
        "idle": round(1 - world.busy_agent_seconds / world.staffed_agent_seconds, 4),
        "abandon_rate": round(abandonment.rate(abandoned, live), 4),
        "worst_minute_rate": round(worst, 4),
        "minutes_over_cap": over,
        "swings": count,
        "largest_step": round(step, 3),
        "live_answers": live,
        "abandoned": abandoned,
        "simulated_hours": hours,
        "by_minute": [round(value, 2) for value in per_minute],
    }


def run_one(job: tuple[Scenario, str, argparse.Namespace]) -> dict[str, object]:
    """One run in a worker process (quiet logs), with the real seconds it took."""
    logs.configure_logging("error", "console")
    started = time.perf_counter()
    figures = anyio.run(run_cell, *job)
    figures["real_seconds"] = round(time.perf_counter() - started, 1)
    return figures


def merged(runs: dict[str, dict[str, object]]) -> dict[str, object]:
    """One cell's line: both policies' idle share, their ratio, predictive's figures."""
    base, pred = runs["service_level_100"], runs["predictive_3"]
    idle_base, idle_pred = float(base["idle"]), float(pred["idle"])  # type: ignore[arg-type]
    ratio = idle_pred / idle_base if idle_base > 0 else 0.0
    over = int(pred["minutes_over_cap"])  # type: ignore[call-overload]
    swings_seen = int(pred["swings"])  # type: ignore[call-overload]
    return {
        "cell": pred["cell"],
        "idle_sl100": idle_base,
        "idle_predictive": idle_pred,
        "ratio": round(ratio, 3),
        "worst_minute_rate": pred["worst_minute_rate"],
        "minutes_over_cap": over,
        "swings": swings_seen,
        "largest_step": pred["largest_step"],
        "abandon_rate": pred["abandon_rate"],
        "sl100_worst_minute_rate": base["worst_minute_rate"],
        "sl100_swings": base["swings"],
        "live_answers": pred["live_answers"],
        "goal": ratio <= 0.5 and over == 0 and swings_seen == 0,
        "real_seconds": round(float(base["real_seconds"]) + float(pred["real_seconds"]), 1),  # type: ignore[arg-type]
    }


def main() -> int:
    args = parse_args()
    logs.configure_logging("error", "console")
    if not args.json:
        print(
            f"dialerd pacing benchmark: seed {args.seed}, cap {CAP:.0%}, abandoned = no agent "
            "within 2 s; goal: ratio <= 0.5, over = 0, swings = 0"
        )
        print(
            f"{'cell':<16} {'idle SL100':>10} {'idle pred':>9} {'ratio':>6} {'worst':>6} "
            f"{'over':>4} {'swings':>6} {'step':>5} {'day':>6} {'goal':>4} {'real s':>6}"
        )
    jobs = [(SCENARIOS[name], policy, args) for name in args.cells for policy in POLICIES]
    runs: dict[str, dict[str, dict[str, object]]] = {}
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        for run in pool.imap(run_one, jobs):
            if args.trace:
                print(run["cell"], run["policy"], run["by_minute"], file=sys.stderr)
            cell = runs.setdefault(str(run["cell"]), {})
            cell[str(run["policy"])] = run
            if len(cell) < len(POLICIES):
                continue
            line = merged(cell)
            if args.json:
                print(json.dumps(line), flush=True)
                continue
            print(
                f"{line['cell']:<16} {line['idle_sl100']:>10.1%} {line['idle_predictive']:>9.1%} "
                f"{line['ratio']:>6.2f} {line['worst_minute_rate']:>6.2%} "
                f"{line['minutes_over_cap']:>4} {line['swings']:>6} "
                f"{float(line['largest_step']) * 100:>5.1f} {line['abandon_rate']:>6.2%} "  # type: ignore[arg-type]
                f"{'yes' if line['goal'] else 'no':>4} {line['real_seconds']:>6.1f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
