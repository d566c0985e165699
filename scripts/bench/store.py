"""Measure the Store's claim/finish rate on outdials of several sizes."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import anyio
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dialerd.core.targets import RetryRule
from dialerd.model import (
    NIL_UUID,
    Address,
    AddressType,
    Campaign,
    CampaigncallResult,
    CampaignStatus,
    Outdial,
    OutdialTarget,
    Outplan,
    format_time,
    new_id,
)
from dialerd.store import AttemptPlan, Store, StoreError
from scripts.bench.redis_server import redis_server

# Targets per create_targets call: SQLite gains from big transactions; a redis Lua call
# must stay well under the client's timeout.
INSERT_CHUNK = {"sqlite": 200_000, "redis": 20_000}
WARMUP_PAIRS = 200


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench-store", description=__doc__)
    parser.add_argument("--sizes", default="10000,1000000", help="outdial sizes, comma-separated")
    parser.add_argument("--claimers", type=int, default=32, help="concurrent claimers")
    parser.add_argument("--pairs", type=int, default=5000, help="pairs per measurement (<= 100000)")
    parser.add_argument("--backends", default="sqlite,redis", help="sqlite, redis or both")
    args = parser.parse_args()
    try:
        args.sizes = [int(size) for size in args.sizes.split(",") if size]
    except ValueError:
        parser.error(f"--sizes must be numbers separated by commas, not {args.sizes!r}")
    args.backends = [name for name in args.backends.split(",") if name]
    if not 1 <= args.pairs <= 100_000:
        parser.error("--pairs must be between 1 and 100000")
    if not 1 <= args.claimers <= 256:
        parser.error("--claimers must be between 1 and 256")
    if not args.sizes or min(args.sizes) < 1:
        parser.error("--sizes needs positive numbers")
    unknown = set(args.backends) - {"sqlite", "redis"}
    if unknown:
        parser.error(f"unknown backend(s): {', '.join(sorted(unknown))}")
    return args


def resources(now: str) -> tuple[Campaign, Outplan, Outdial]:
    customer = new_id()
    source = Address(type=AddressType.TEL, target="+15550100")
    outplan = Outplan.fresh(customer, now, name="bench", source=source, max_try_counts=(3,))
    outdial = Outdial.fresh(customer, now, name="bench")
    campaign = msgspec.structs.replace(
        Campaign.fresh(customer, now, name="bench", outplan_id=outplan.id, outdial_id=outdial.id),
        status=CampaignStatus.RUN,
    )
    return campaign, outplan, outdial


def targets(outdial_id: str, count: int, now: str) -> list[OutdialTarget]:
    return [
        OutdialTarget.fresh(
            outdial_id, [Address(type=AddressType.TEL, target=f"+1555{n:07d}")], now
        )
        for n in range(count)
    ]


async def pairs_per_second(
    store: Store, campaign: Campaign, outplan: Outplan, pairs: int, claimers: int
) -> float:
    """Run ``pairs`` start+finish(fail) pairs with ``claimers`` concurrent tasks."""
    remaining = pairs
    done = 0

    async def claimer() -> None:
        nonlocal remaining, done
        while remaining > 0:
            remaining -= 1
            now = datetime.now(UTC)
            plan = AttemptPlan(
                campaign=campaign,
                outplan=outplan,
                campaigncall_id=new_id(),
                reference_id=new_id(),
                activeflow_id=NIL_UUID,
                now=now,
            )
            campaigncall = await store.start_attempt(plan)
            if campaigncall is None:
                raise SystemExit("the outdial ran out of targets: use fewer --pairs")
            await store.finish_attempt(
                campaigncall.id,
                CampaigncallResult.FAIL,
                "busy",
                RetryRule.of(outplan),
                datetime.now(UTC),
            )
            done += 1

    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        for _ in range(claimers):
            group.start_soon(claimer)
    return done / (time.perf_counter() - started)


async def measure(store: Store, size: int, args: argparse.Namespace) -> tuple[float, float]:
    """Fill an outdial of ``size`` targets; return (insert seconds, pairs per second)."""
    now = format_time(datetime.now(UTC))
    campaign, outplan, outdial = resources(now)
    await store.create_outplan(outplan)
    await store.create_outdial(outdial)
    await store.create_campaign(campaign)
    inserted = 0.0
    step = INSERT_CHUNK[store.backend]
    for offset in range(0, size, step):
        chunk = targets(outdial.id, min(step, size - offset), now)
        started = time.perf_counter()
        await store.create_targets(chunk)
        inserted += time.perf_counter() - started
    await pairs_per_second(store, campaign, outplan, min(WARMUP_PAIRS, size), args.claimers)
    rate = await pairs_per_second(store, campaign, outplan, args.pairs, args.claimers)
    return inserted, rate


def make_store(backend: str, size: int, workdir: Path, redis_url: str, claimers: int) -> Store:
    if backend == "sqlite":
        from dialerd.store.sqlite import SqliteStore

        return SqliteStore(workdir / f"bench-{size}.sqlite3")
    from dialerd.store.redis import RedisStore

    return RedisStore(url=redis_url, prefix=f"bench{size}", pool_size=claimers + 8, timeout=60.0)


async def run(args: argparse.Namespace, workdir: Path, redis_url: str) -> int:
    print(
        f"{'backend':8} {'targets':>9} {'insert s':>9} {'targets/s':>10} {'pairs':>6} "
        f"{'pairs/s':>9}"
    )
    rates: dict[str, dict[int, float]] = {}
    failed = 0
    for backend in args.backends:
        for size in args.sizes:
            try:
                store = make_store(backend, size, workdir, redis_url, args.claimers)
            except ImportError as error:
                print(f"{backend:8} skipped: {error}")
                break
            try:
                await store.open()
                try:
                    inserted, rate = await measure(store, size, args)
                finally:
                    await store.close()
            except StoreError as error:
                print(f"{backend:8} {size:>9} failed: {error}", flush=True)
                failed = 1
                continue
            rates.setdefault(backend, {})[size] = rate
            print(
                f"{backend:8} {size:>9} {inserted:>9.2f} {size / inserted:>10.0f} "
                f"{args.pairs:>6} {rate:>9.0f}",
                flush=True,
            )
    smallest, largest = min(args.sizes), max(args.sizes)
    if smallest != largest:
        print()
        for backend, by_size in rates.items():
            if smallest in by_size and largest in by_size:
                ratio = by_size[smallest] / by_size[largest]
                print(f"{backend:8} rate at {smallest} / rate at {largest} targets: {ratio:.2f}")
    return failed


def main() -> int:
    args = parse_args()
    print(f"{args.claimers} claimers, {args.pairs} start_attempt+finish_attempt pairs each")
    with tempfile.TemporaryDirectory(prefix="dialerd-bench-") as directory:
        workdir = Path(directory)
        with redis_server(enabled="redis" in args.backends) as url:
            return anyio.run(run, args, workdir, url)


if __name__ == "__main__":
    sys.exit(main())
