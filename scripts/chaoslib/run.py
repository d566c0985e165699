"""Chaos scenarios: kill -9, store outages, several instances. Prints a table; exit 1 on
any violated invariant. Bounded in time, loopback only. Run: scripts/chaos --help"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dialerd.config import RedisConnection, StoreConfig
from dialerd.store import create_store
from scripts.chaoslib.cluster import Daemon, Redis, create_campaign
from scripts.chaoslib.invariants import Check, check_all

CAMPAIGN_SECONDS = 600.0


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.2)


def store_config(store: str, redis: Redis | None) -> StoreConfig:
    if store == "redis":
        assert redis is not None
        return StoreConfig(backend="redis", redis=RedisConnection(url=redis.url, timeout=10.0))
    return StoreConfig(backend="sqlite")


async def _checks(
    config: StoreConfig,
    state_dir: Path,
    campaign_id: str,
    outdial_id: str,
    max_try_counts: tuple[int, ...],
    ledger: Path,
) -> list[Check]:
    store = create_store(config, state_dir)
    await store.open()
    try:
        return await check_all(store, campaign_id, outdial_id, max_try_counts, [ledger])
    finally:
        await store.close()


async def _lease_owner(config: StoreConfig, campaign_id: str) -> str | None:
    store = create_store(config, Path("."))
    await store.open()
    try:
        from dialerd.clock import SystemClock

        return await store.lease_owner(campaign_id, SystemClock().now())
    finally:
        await store.close()


def scenario_kill(args: argparse.Namespace, store: str, work: Path) -> tuple[list[Check], str]:
    """kill -9 the daemon at random moments, restarting it, until the campaign stops."""
    rng = random.Random(args.seed)
    redis = Redis(work / "redis") if store == "redis" else None
    if redis:
        redis.start()
    ledger = work / "originations.jsonl"
    daemon = Daemon(
        work / "daemon",
        store=store,
        redis_url=redis.url if redis else "",
        ledger=ledger,
        lease_ttl=args.lease_ttl,
        speed=args.speed,
    )
    kills = 0
    try:
        daemon.start()
        campaign_id, outdial_id, max_try_counts = create_campaign(daemon, args.targets)
        for _ in range(args.kills):
            time.sleep(rng.uniform(0.2, 2.0))
            if daemon.campaign_status(campaign_id) == "stop":
                break
            daemon.kill()
            kills += 1
            daemon.start()
        wait_until(lambda: daemon.campaign_status(campaign_id) == "stop", CAMPAIGN_SECONDS, "stop")
        exit_code = daemon.terminate()
        config = store_config(store, redis)
        checks = anyio.run(
            _checks, config, work / "daemon" / "state", campaign_id, outdial_id,
            max_try_counts, ledger,
        )  # fmt: skip
        checks.append(Check("daemon exits 0 on SIGTERM", exit_code == 0, 1, f"exit {exit_code}"))
        return checks, f"{kills} kills"
    finally:
        daemon.close()
        if redis:
            redis.stop()


def scenario_redis_outage(
    args: argparse.Namespace, store: str, work: Path
) -> tuple[list[Check], str]:
    """Stop redis-server for 10 s three times during a campaign on the Redis store."""
    redis = Redis(work / "redis")
    redis.start()
    ledger = work / "originations.jsonl"
    daemon = Daemon(
        work / "daemon",
        store="redis",
        redis_url=redis.url,
        ledger=ledger,
        lease_ttl=args.lease_ttl,
        speed=args.speed,
    )
    not_ready_seen = stayed_up = 0
    try:
        daemon.start()
        campaign_id, outdial_id, max_try_counts = create_campaign(daemon, args.targets)
        for _ in range(3):
            time.sleep(3.0)
            redis.stop()
            deadline = time.monotonic() + args.outage
            while time.monotonic() < deadline:
                ready = daemon.http.get(f"http://127.0.0.1:{daemon.port}/readyz", timeout=5)
                not_ready_seen += ready.status_code == 503
                time.sleep(0.5)
            stayed_up += daemon.alive
            redis.start()
        wait_until(lambda: daemon.campaign_status(campaign_id) == "stop", CAMPAIGN_SECONDS, "stop")
        exit_code = daemon.terminate()
        checks = anyio.run(
            _checks, store_config("redis", redis), work, campaign_id, outdial_id,
            max_try_counts, ledger,
        )  # fmt: skip
        checks.append(Check("daemon stayed up through 3 outages", stayed_up == 3, 3, ""))
        checks.append(Check("/readyz said 503 while redis was down", not_ready_seen > 0, 1, ""))
        checks.append(Check("daemon exits 0 on SIGTERM", exit_code == 0, 1, f"exit {exit_code}"))
        return checks, f"3 outages of {args.outage:g} s"
    finally:
        daemon.close()
        redis.stop()


def scenario_instances(args: argparse.Namespace, store: str, work: Path) -> tuple[list[Check], str]:
    """Three daemons on one Redis; the owner is killed, the next owner SIGSTOPped."""
    redis = Redis(work / "redis")
    redis.start()
    ledger = work / "originations.jsonl"
    daemons = [
        Daemon(
            work / f"daemon{n}",
            store="redis",
            redis_url=redis.url,
            ledger=ledger,
            lease_ttl=args.lease_ttl,
            speed=args.speed,
        )
        for n in range(3)
    ]
    config = store_config("redis", redis)

    def owner() -> Daemon | None:
        name = anyio.run(_lease_owner, config, campaign_id)
        for daemon in daemons:
            if name and daemon.alive and name.split(":")[1] == str(daemon.process.pid):  # type: ignore[union-attr]
                return daemon
        return None

    events = []
    try:
        for daemon in daemons:
            daemon.start()
        campaign_id, outdial_id, max_try_counts = create_campaign(daemons[0], args.targets)
        time.sleep(3.0)
        first = owner()
        assert first is not None, "no instance owns the campaign"
        first.kill()
        events.append("owner killed")
        wait_until(lambda: owner() not in (None, first), args.lease_ttl + 10, "a takeover")
        second = owner()
        assert second is not None
        time.sleep(2.0)
        second.signal(signal.SIGSTOP)
        events.append("new owner stopped")
        time.sleep(args.lease_ttl * 2)
        second.signal(signal.SIGCONT)
        events.append("and continued")
        survivor = next(d for d in daemons if d.alive)
        wait_until(
            lambda: survivor.campaign_status(campaign_id) == "stop", CAMPAIGN_SECONDS, "stop"
        )
        codes = [daemon.terminate() for daemon in daemons if daemon.alive]
        checks = anyio.run(_checks, config, work, campaign_id, outdial_id, max_try_counts, ledger)
        checks.append(Check("survivors exit 0 on SIGTERM", set(codes) == {0}, len(codes), ""))
        return checks, ", ".join(events)
    finally:
        for daemon in daemons:
            daemon.close()
        redis.stop()


SCENARIOS = {
    "kill": scenario_kill,
    "redis-outage": scenario_redis_outage,
    "instances": scenario_instances,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/chaos", description=__doc__)
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    parser.add_argument("--store", choices=["sqlite", "redis", "both"], default="both")
    parser.add_argument("--targets", type=int, default=2000)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--outage", type=float, default=10.0, help="seconds redis is down")
    parser.add_argument("--lease-ttl", type=float, default=3.0)
    parser.add_argument("--speed", type=float, default=50.0, help="simulated time factor")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if not 1 <= args.targets <= 20_000 or not 0 <= args.kills <= 100:
        parser.error("--targets must be 1..20000 and --kills 0..100")
    return args


def plan(args: argparse.Namespace) -> list[tuple[str, str]]:
    scenarios = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    runs = []
    for scenario in scenarios:
        stores = ["sqlite", "redis"] if args.store == "both" else [args.store]
        if scenario != "kill":
            stores = ["redis"]
        runs.extend((scenario, store) for store in stores)
    return runs


def run(args: argparse.Namespace) -> list[tuple[str, str, float, str, list[Check]]]:
    results = []
    for scenario, store in plan(args):
        with tempfile.TemporaryDirectory(prefix="dialerd-chaos-") as tmp:
            started = time.monotonic()
            try:
                checks, note = SCENARIOS[scenario](args, store, Path(tmp))
            except (RuntimeError, AssertionError) as exc:
                checks, note = [Check("scenario ran to the end", False, 1, str(exc))], "aborted"
            elapsed = time.monotonic() - started
        results.append((scenario, store, elapsed, note, checks))
        print_table([results[-1]])
    return results


def print_table(results: list[tuple[str, str, float, str, list[Check]]]) -> None:
    for scenario, store, elapsed, note, checks in results:
        print(f"\n{scenario} on {store} ({note}, {elapsed:.0f} s)")
        for check in checks:
            verdict = "PASS" if check.ok else "FAIL"
            detail = f"  {check.detail}" if check.detail and not check.ok else ""
            print(f"  {verdict}  {check.name:<42} {check.count:>7}{detail}")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    results = run(args)
    failed = [check for *_, checks in results for check in checks if not check.ok]
    print(f"\n{'FAILED' if failed else 'PASSED'}: {len(failed)} violation(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
