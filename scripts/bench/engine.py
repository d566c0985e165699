"""Engine benchmark: end-to-end attempts per second, and tick lag with many campaigns.

Two scenarios per store backend, each bounded in time:

- throughput: agentless campaigns on a simulated centre whose calls are answered and
  end at once; attempts per second counted from start to finish (claim, originate,
  answer, finish), with CPU seconds per 1,000 attempts of the whole process (the
  simulated centre runs in it); then the centre alone places and ends as many calls
  (up to ``SIM_CALLS_MEASURED``) with nothing but a loop draining its events, and its
  CPU per call, times the calls the engine placed, is taken off the process's:
  ``sim_cpu_seconds_per_1000`` and ``engine_cpu_seconds_per_1000``;
- tick lag: many queue campaigns ticked every second on a centre with one agent per
  queue and realistic call times; p50 and p99 of how late each tick started.

With Redis, the same run also measures the raw ceiling one process reaches on that
redis-server: attempts made of two Lua round trips each (a claim that pops a queued
member and writes a hash, a finish that writes it back), from as many concurrent
connections as the store's pool, and prints the engine's share of it.

Peak RSS of the process is printed at the end. Run: scripts/bench-engine --help
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dialerd.adapters.sim import SimCallCentre
from dialerd.config import EngineConfig, Range, RedisConnection, SimConfig, SimOutcomes, StoreConfig
from dialerd.model import (
    NIL_UUID,
    Address,
    AddressType,
    Campaign,
    Outdial,
    OutdialTarget,
    Outplan,
    format_time,
    new_id,
)
from dialerd.ports import Ended, Origination, TelephonyEvent
from dialerd.queues import QueueRef
from dialerd.scheduler import Engine
from dialerd.scheduler.engine import EVENT_BUFFER
from dialerd.service import logs
from dialerd.service.clock import SystemClock
from dialerd.store import Store, StoreUnavailable, create_store
from scripts.bench.redis_server import redis_server
from tests.fakes.engine import sim_engine

CUSTOMER = "5e4a0680-804e-11ec-98a7-2fea5968d85b"
INSTANT = Range(min=0.0, max=0.0)
POLL_SECONDS = 0.05
# Tries to set a campaign running (``run_campaign``).
RUN_TRIES = 20


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench-engine", description=__doc__)
    parser.add_argument("--backends", default="sqlite,redis", help="sqlite, redis or both")
    parser.add_argument("--campaigns", type=int, default=20, help="throughput: campaigns")
    parser.add_argument("--targets", type=int, default=2000, help="throughput: targets each")
    parser.add_argument("--seconds", type=float, default=10.0, help="throughput: run time")
    parser.add_argument("--lag-campaigns", type=int, default=1000, help="tick lag: campaigns")
    parser.add_argument("--lag-seconds", type=float, default=15.0, help="tick lag: run time")
    parser.add_argument(
        "--scenarios", default="throughput,tick_lag", help="throughput, tick_lag or both"
    )
    parser.add_argument(
        "--uvloop", action="store_true", help="run on uvloop (anyio's asyncio backend)"
    )
    parser.add_argument(
        "--pool-size",
        type=int,
        default=64,
        help="Redis: the store's [store.redis] pool_size (default 64; the shipped default is 32)",
    )
    args = parser.parse_args()
    args.scenarios = [name for name in args.scenarios.split(",") if name]
    if args.uvloop and importlib.util.find_spec("uvloop") is None:
        parser.error("--uvloop needs uvloop installed (.venv/bin/pip install uvloop)")
    if not args.scenarios or set(args.scenarios) - {"throughput", "tick_lag"}:
        parser.error("--scenarios takes throughput and/or tick_lag")
    args.backends = [name for name in args.backends.split(",") if name]
    if set(args.backends) - {"sqlite", "redis"}:
        parser.error("--backends takes sqlite and/or redis")
    if args.pool_size < 1:
        parser.error("--pool-size must be 1 or more")
    if not 0 < args.seconds <= 120 or not 0 < args.lag_seconds <= 120:
        parser.error("run times must be between 0 and 120 seconds")
    return args


def outplan(now: str, customer: str = CUSTOMER) -> Outplan:
    return Outplan.fresh(
        customer,
        now,
        name="bench",
        source=Address(type=AddressType.TEL, target="+15550000000"),
        dial_timeout=0,
        try_interval=0,
        max_try_counts=(1,),
    )


async def add_campaign(
    store: Store,
    plan: Outplan,
    now: str,
    targets: int,
    queue_id: str,
    index: int,
    customer: str = CUSTOMER,
) -> Campaign:
    outdial = Outdial.fresh(customer, now, name=f"bench {index}")
    await store.create_outdial(outdial)
    await store.create_targets(
        [
            OutdialTarget.fresh(
                outdial.id, [Address(type=AddressType.TEL, target=f"+1555{n:07d}")], now
            )
            for n in range(targets)
        ]
    )
    campaign = Campaign.fresh(
        customer,
        now,
        name=f"bench {index}",
        outplan_id=plan.id,
        outdial_id=outdial.id,
        queue_id=queue_id,
    )
    return await store.create_campaign(campaign)


async def run_campaign(engine: Engine, campaign_id: str) -> int:
    """Set the campaign running; on a busy machine the store's pool may be drained by
    the loops already running (each tick waits its turn): try again a few times. How
    many tries were refused (what the API would have answered 503)."""
    for refused in range(RUN_TRIES - 1):
        try:
            await engine.control.run(CUSTOMER, campaign_id)
            return refused
        except StoreUnavailable:
            await anyio.sleep(0.5)
    await engine.control.run(CUSTOMER, campaign_id)
    return RUN_TRIES - 1


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


INSTANT_OUTCOMES = SimOutcomes(
    machine=0, busy=0, no_answer=0, failure=0, ring_time=INSTANT, talk_time=INSTANT
)
# Calls the simulated centre places alone to measure its own CPU per call; a tick's
# claim at most (``max_concurrent_attempts``) originated together, as the engine does.
SIM_CALLS_MEASURED = 20_000
SIM_BURST = 64


async def instant_campaigns(
    store: Store, clock: SystemClock, campaigns: int, targets: int, customer: str = CUSTOMER
) -> tuple[Engine, list[Campaign]]:
    """An engine on a centre whose calls are answered and end at once, and ``campaigns``
    agentless campaigns of ``targets`` targets each (stopped), all ``customer``'s."""
    centre = SimCallCentre(SimConfig(outcomes=INSTANT_OUTCOMES), clock)
    engine = sim_engine(
        store,
        clock,
        centre,
        config=EngineConfig(max_concurrent_attempts=SIM_BURST, max_attempts_per_second=100_000.0),
    )
    now = format_time(clock.now())
    plan = await store.create_outplan(outplan(now, customer))
    made = [
        await add_campaign(store, plan, now, targets, NIL_UUID, n, customer)
        for n in range(campaigns)
    ]
    return engine, made


async def throughput(store: Store, args: argparse.Namespace) -> dict[str, float]:
    """Attempts per second end to end, with outcomes that come at once."""
    clock = SystemClock()
    engine, campaigns = await instant_campaigns(store, clock, args.campaigns, args.targets)
    total = args.campaigns * args.targets
    async with anyio.create_task_group() as task_group:
        await task_group.start(engine.run)
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        for campaign in campaigns:
            await engine.control.run(CUSTOMER, campaign.id)
        for _ in range(int(args.seconds / POLL_SECONDS)):
            if engine.stats.attempts_finished >= total:
                break
            await anyio.sleep(POLL_SECONDS)
        wall, cpu = time.perf_counter() - wall0, cpu_seconds() - cpu0
        finished = engine.stats.attempts_finished
        placed = engine.stats.attempts_started
        task_group.cancel_scope.cancel()
    sim_cpu = placed * await sim_cpu_per_call(min(SIM_CALLS_MEASURED, max(placed, SIM_BURST)))
    return {
        "attempts": finished,
        "attempts_per_second": finished / wall,
        "cpu_seconds_per_1000": 1000 * cpu / max(1, finished),
        "sim_cpu_seconds_per_1000": 1000 * sim_cpu / max(1, finished),
        "engine_cpu_seconds_per_1000": 1000 * (cpu - sim_cpu) / max(1, finished),
    }


async def sim_cpu_per_call(calls: int) -> float:
    """CPU seconds per call of the throughput scenario's simulated centre alone: ``calls``
    calls (answered and ended at once) originated ``SIM_BURST`` at a time in one task,
    as a tick's claim is, their events drained by a loop that only counts the ends,
    taking those waiting together as the engine does. That loop's receiving is counted
    as the centre's (the engine receives the same events), so the engine's share is if
    anything under-stated."""
    clock = SystemClock()
    centre = SimCallCentre(SimConfig(outcomes=INSTANT_OUTCOMES), clock)
    send, receive = anyio.create_memory_object_stream[TelephonyEvent](EVENT_BUFFER)
    source = Address(type=AddressType.TEL, target="+15550000000")
    originations = [
        Origination(
            campaigncall_id=new_id(),
            campaign_id=NIL_UUID,
            customer_id=CUSTOMER,
            reference_id=new_id(),
            queue_id=NIL_UUID,
            source=source,
            destination=Address(type=AddressType.TEL, target=f"+1555{n:07d}"),
            actions=[],
            dial_timeout_ms=0,
        )
        for n in range(calls)
    ]
    all_ended = anyio.Event()

    async def drain() -> None:
        # As the engine's event workers take them: those already waiting together.
        ended = 0
        async with receive:
            async for event in receive:
                burst = [event]
                while True:
                    try:
                        burst.append(receive.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                ended += sum(isinstance(event, Ended) for event in burst)
                if ended == calls:
                    all_ended.set()

    async with anyio.create_task_group() as task_group:
        await task_group.start(centre.telephony.run, send)
        task_group.start_soon(drain)
        cpu0 = cpu_seconds()
        for first in range(0, calls, SIM_BURST):
            for origination in originations[first : first + SIM_BURST]:
                await centre.telephony.originate(origination)
            await anyio.lowlevel.checkpoint()  # the calls' lives run, as between a tick's claims
        await all_ended.wait()
        cpu = cpu_seconds() - cpu0
        task_group.cancel_scope.cancel()
    return cpu / calls


async def tick_lag(store: Store, args: argparse.Namespace) -> dict[str, float]:
    """Tick lag of many running campaigns, each with its own one-agent queue."""
    clock = SystemClock()
    sim = SimConfig(
        seed=3,
        default_agents=1,
        outcomes=SimOutcomes(
            ring_time=Range(min=2.0, max=8.0), talk_time=Range(min=20.0, max=60.0)
        ),
    )
    centre = SimCallCentre(sim, clock)
    engine = sim_engine(store, clock, centre, config=EngineConfig(tick_interval=1.0))
    now = format_time(clock.now())
    plan = await store.create_outplan(msgspec.structs.replace(outplan(now), dial_timeout=30_000))
    # One registered one-agent queue per campaign.
    queues = [
        QueueRef(id=new_id(), customer_id=CUSTOMER, name=f"q{n}") for n in range(args.lag_campaigns)
    ]
    engine.queues.replace(queues)
    campaigns = [
        await add_campaign(store, plan, now, 50, queue.id, n) for n, queue in enumerate(queues)
    ]
    lags: list[float] = []
    durations: list[float] = []

    def observe(lag: float, duration: float) -> None:
        lags.append(lag)
        durations.append(duration)

    async with anyio.create_task_group() as task_group:
        await task_group.start(engine.run)
        refused = 0
        for campaign in campaigns:
            refused += await run_campaign(engine, campaign.id)
        await anyio.sleep(2.0)  # let every loop reach its steady phase
        engine.tick_observer = observe
        await anyio.sleep(args.lag_seconds)
        engine.tick_observer = None
        started = engine.stats.attempts_started
        task_group.cancel_scope.cancel()
    quantiles = statistics.quantiles(lags, n=100) if len(lags) > 1 else [0.0] * 99
    return {
        "ticks": len(lags),
        "ticks_per_second": len(lags) / args.lag_seconds,
        "lag_p50_ms": 1000 * quantiles[49],
        "lag_p99_ms": 1000 * quantiles[98],
        "tick_p99_ms": 1000 * statistics.quantiles(durations, n=100)[98] if durations else 0.0,
        "attempts_started": started,
        "runs_refused": refused,
    }


CLAIM_LUA = """
local member = redis.call('ZPOPMIN', KEYS[1])[1]
if not member then return nil end
redis.call('HSET', KEYS[2] .. member, 's', 'progressing', 't', ARGV[1])
redis.call('SADD', KEYS[3], member)
return member
"""
FINISH_LUA = """
redis.call('HSET', KEYS[2] .. ARGV[1], 's', 'idle', 't', ARGV[2])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
"""
CEILING_WORKERS = 64


async def redis_ceiling(url: str, seconds: float) -> dict[str, float]:
    """Claim+finish Lua pairs per second from this one process (no dialing logic)."""
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(url, max_connections=CEILING_WORKERS)
    keys = ("bench:queue", "bench:target:", "bench:progressing")
    await client.zadd(keys[0], {f"t{n}": n for n in range(10_000)})
    claim, finish = client.register_script(CLAIM_LUA), client.register_script(FINISH_LUA)
    pairs = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal pairs
        while time.perf_counter() < deadline:
            stamp = time.time_ns()
            member = await claim(keys=keys, args=[stamp])
            if member is not None:
                await finish(keys=keys, args=[member, stamp])
                pairs += 1

    started = time.perf_counter()
    async with anyio.create_task_group() as task_group:
        for _ in range(CEILING_WORKERS):
            task_group.start_soon(worker)
    wall = time.perf_counter() - started
    await client.flushall()
    await client.aclose()
    return {"attempts_per_second": pairs / wall}


Figures = dict[str, dict[str, float]]


async def run_backend(backend: str, args: argparse.Namespace, redis_url: str) -> Figures:
    """Both scenarios on one backend (the Redis ceiling first): their figures by
    scenario, printed as they come."""
    measured: Figures = {}
    ceiling = 0.0
    if backend == "redis" and "throughput" in args.scenarios:
        await flush(redis_url)
        ceiling = (await redis_ceiling(redis_url, min(args.seconds, 5.0)))["attempts_per_second"]
        print(
            f"{'redis':<7} {'ceiling':<11} two Lua round trips per attempt from one process: "
            f"attempts_per_second={ceiling:,.1f}",
            flush=True,
        )
    for scenario in (throughput, tick_lag):
        if scenario.__name__ not in args.scenarios:
            continue
        with tempfile.TemporaryDirectory(prefix="dialerd-bench-") as tmp:
            config = StoreConfig(
                backend="redis" if backend == "redis" else "sqlite",
                redis=RedisConnection(
                    url=redis_url or "redis://127.0.0.1:1/0", pool_size=args.pool_size
                ),
            )
            store = create_store(config, Path(tmp))
            await store.open()
            try:
                if backend == "redis":
                    await flush(redis_url)
                figures = await scenario(store, args)
            finally:
                await store.close()
        if ceiling and scenario is throughput:
            figures["share_of_ceiling_percent"] = 100 * figures["attempts_per_second"] / ceiling
        shown = "  ".join(f"{key}={shown_figure(value)}" for key, value in figures.items())
        print(f"{backend:<7} {scenario.__name__:<11} {shown}", flush=True)
        measured[scenario.__name__] = figures
    if ceiling:
        measured["ceiling"] = {"attempts_per_second": ceiling}
    return measured


def issue_table(results: dict[str, Figures]) -> list[str]:
    """The figures of issue 25's table, each with its goal and the ratio to the raw Redis
    ceiling measured in the same run (so runs on a busy machine compare)."""
    ceiling = results.get("redis", {}).get("ceiling", {}).get("attempts_per_second", 0.0)
    rows = ["| figure | measured | goal |", "| --- | --- | --- |"]
    for backend, name in (("redis", "Redis"), ("sqlite", "SQLite")):
        done = results.get(backend, {}).get("throughput")
        if done is None:
            continue
        rate = done["attempts_per_second"]
        share = (
            f" ({100 * rate / ceiling:.1f} % of the {ceiling:,.0f}/s ceiling)" if ceiling else ""
        )
        goal = ">= 3,000 and >= 30 % of the ceiling" if backend == "redis" else ">= 3,000"
        rows.append(f"| {name} attempts/s end to end | {rate:,.0f}{share} | {goal} |")
    cpu = [
        f"{results[backend]['throughput']['cpu_seconds_per_1000']:.2f} ({name})"
        for backend, name in (("redis", "Redis"), ("sqlite", "SQLite"))
        if "throughput" in results.get(backend, {})
    ]
    if cpu:
        rows.append(f"| CPU s per 1,000 attempts | {' / '.join(cpu)} | <= 0.3 |")
        engine_only = [
            f"{results[backend]['throughput']['engine_cpu_seconds_per_1000']:.2f} ({name})"
            for backend, name in (("redis", "Redis"), ("sqlite", "SQLite"))
            if "throughput" in results.get(backend, {})
        ]
        rows.append(
            f"| CPU s per 1,000 attempts, less the simulated centre's (measured alone) "
            f"| {' / '.join(engine_only)} | |"
        )
    lags = [
        f"{name} {results[backend]['tick_lag']['lag_p99_ms']:,.1f} ms "
        f"(tick p99 {results[backend]['tick_lag']['tick_p99_ms']:,.1f} ms)"
        for backend, name in (("redis", "Redis"), ("sqlite", "SQLite"))
        if "tick_lag" in results.get(backend, {})
    ]
    if lags:
        rows.append(f"| tick lag p99 | {', '.join(lags)} | < 50 ms on both |")
    return rows


def shown_figure(value: float) -> str:
    """A figure as printed: small ones (CPU seconds per 1,000) with two decimals."""
    return f"{value:,.2f}" if abs(value) < 10 else f"{value:,.1f}"


async def flush(url: str) -> None:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(url)
    await client.flushall()
    await client.aclose()


def main() -> int:
    args = parse_args()
    logs.configure_logging("error", "console")
    print(
        f"dialerd engine benchmark: throughput {args.campaigns} campaigns x {args.targets} "
        f"targets (<= {args.seconds:g} s); tick lag {args.lag_campaigns} campaigns "
        f"for {args.lag_seconds:g} s; event loop: {'uvloop' if args.uvloop else 'asyncio'}"
    )
    results: dict[str, Figures] = {}
    with redis_server(enabled="redis" in args.backends) as redis_url:
        for backend in args.backends:
            results[backend] = anyio.run(
                run_backend, backend, args, redis_url, backend_options={"use_uvloop": args.uvloop}
            )
    print("\n".join(issue_table(results)))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak_mib:,.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
