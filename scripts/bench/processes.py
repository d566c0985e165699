"""Scale benchmark: aggregate attempts per second of 1, 2 and 4 dialerd processes on
one redis-server (one store, one key prefix: every process may lease every campaign)
and, with ``--cluster``, on a Redis Cluster of three primaries with a replica each
(``[store.redis] cluster = true``), measured in turn in one run.

Each process runs the engine on a simulated centre whose calls are answered and end at
once (the throughput scenario of scripts/bench-engine), with its own campaigns, of a
customer of its own (on a cluster, customers are what spreads over the shards); all of
them start dialing at the same moment and are counted over the same window. The
figure is the sum of the attempts the processes finished, over the window; per process
and per core figures follow. Bounded in time. Run: scripts/bench-processes --help
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dialerd.config import RedisConnection, StoreConfig
from dialerd.service import logs
from dialerd.service.clock import SystemClock
from dialerd.store import create_store
from scripts.bench.engine import cpu_seconds, instant_campaigns
from scripts.bench.redis_server import redis_server
from scripts.chaoslib.redis_cluster import RedisClusterRig

# Seconds the workers get to set up their campaigns before they all start together.
SETUP_SECONDS = 20.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench-processes", description=__doc__)
    parser.add_argument("--processes", default="1,2,4", help="process counts to measure")
    parser.add_argument("--campaigns", type=int, default=8, help="campaigns per process")
    parser.add_argument("--targets", type=int, default=2000, help="targets per campaign")
    parser.add_argument("--seconds", type=float, default=8.0, help="counting window")
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="also measure each count on a 3-primary Redis Cluster (in turn, same run)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.processes = [int(n) for n in args.processes.split(",") if n]
    if not args.processes or not all(1 <= n <= 16 for n in args.processes):
        parser.error("--processes takes counts from 1 to 16")
    if not 0 < args.seconds <= 60:
        parser.error("--seconds must be between 0 and 60")
    return args


async def work(args: argparse.Namespace) -> dict[str, float]:
    """One process: set up, wait for the common start, dial for the window, report."""
    config = StoreConfig(
        backend="redis",
        redis=RedisConnection(url=args.url, pool_size=32, cluster=args.cluster),
    )
    store = create_store(config, Path("."))
    await store.open()
    clock = SystemClock()
    customer = str(uuid.uuid5(uuid.NAMESPACE_URL, f"dialerd-bench-processes:{args.index}"))
    engine, campaigns = await instant_campaigns(
        store, clock, args.campaigns, args.targets, customer
    )
    try:
        async with anyio.create_task_group() as task_group:
            await task_group.start(engine.run)
            await anyio.sleep(max(0.0, args.start_at - time.time()))
            for campaign in campaigns:
                await engine.control.run(customer, campaign.id)
            cpu0, wall0 = cpu_seconds(), time.perf_counter()
            await anyio.sleep(args.seconds)
            finished = engine.stats.attempts_finished
            wall, cpu = time.perf_counter() - wall0, cpu_seconds() - cpu0
            task_group.cancel_scope.cancel()
    finally:
        await store.close()
    return {"attempts": finished, "seconds": wall, "cpu_seconds": cpu}


def measure(
    url: str, processes: int, args: argparse.Namespace, *, cluster: bool = False
) -> dict[str, float]:
    start_at = time.time() + SETUP_SECONDS
    command = [
        sys.executable, __file__, "--worker", "--url", url, "--start-at", str(start_at),
        "--campaigns", str(args.campaigns), "--targets", str(args.targets),
        "--seconds", str(args.seconds), *(["--cluster"] if cluster else []),
    ]  # fmt: skip
    workers = [
        subprocess.Popen([*command, "--index", str(n)], stdout=subprocess.PIPE, text=True)
        for n in range(processes)
    ]
    reports = []
    for worker in workers:
        out, _ = worker.communicate(timeout=SETUP_SECONDS + args.seconds + 60)
        if worker.returncode != 0:
            raise SystemExit(f"a worker failed (exit {worker.returncode})")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    attempts = sum(report["attempts"] for report in reports)
    window = max(report["seconds"] for report in reports)
    cpu = sum(report["cpu_seconds"] for report in reports)
    return {
        "processes": processes,
        "attempts": attempts,
        "attempts_per_second": attempts / window,
        "per_process": attempts / window / processes,
        "cpu_seconds_per_1000": 1000 * cpu / max(1, attempts),
    }


def main() -> None:
    args = parse_args()
    logs.configure_logging("error", "console")
    if args.worker:
        print(json.dumps(anyio.run(work, args)), flush=True)
        return
    print(f"cores: {os.cpu_count()}; campaigns per process {args.campaigns} x "
          f"{args.targets} targets; window {args.seconds:g} s")  # fmt: skip
    for processes in args.processes:
        # A fresh redis-server (and cluster) for each count: the same empty store for all.
        with redis_server() as url:
            result = measure(url, processes, args)
        report(processes, "one redis-server", result)
        if args.cluster:
            with tempfile.TemporaryDirectory(prefix="dialerd-bench-cluster-") as tmp:
                rig = RedisClusterRig(Path(tmp))
                try:
                    result = measure(rig.url, processes, args, cluster=True)
                finally:
                    rig.stop()
            report(processes, "a 3-primary cluster", result)


def report(processes: int, where: str, result: dict[str, float]) -> None:
    print(
        f"{processes} process(es) on {where}: "
        f"{result['attempts_per_second']:.0f} attempts/s "
        f"({result['per_process']:.0f} per process, {result['attempts']:.0f} attempts, "
        f"{result['cpu_seconds_per_1000']:.2f} CPU s per 1,000)",
        flush=True,
    )


if __name__ == "__main__":
    main()
