"""Chaos scenarios against real dialerd daemons on loopback: kill -9, redis-server
outages, several instances on one Redis, Redis Sentinel failovers, Redis Cluster primaries
killed. Prints a table of the invariants checked and exits 1 on any violation. Every
wait is bounded."""

from __future__ import annotations

import argparse
import contextlib
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import httpx
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dialerd.config import RedisConnection, StoreConfig
from dialerd.model import CampaigncallStatus
from dialerd.service.clock import SystemClock
from dialerd.store import create_store
from scripts.chaoslib.api import CUSTOMER
from scripts.chaoslib.cluster import Daemon, Redis
from scripts.chaoslib.invariants import (
    Check,
    Outage,
    check_campaign,
    check_duplicates_ignored,
    check_outages,
    read_ledgers,
)
from scripts.chaoslib.redis_cluster import RedisClusterRig, slot_of
from scripts.chaoslib.sentinel import SERVICE as SENTINEL_SERVICE
from scripts.chaoslib.sentinel import SentinelTopology

OUTAGES = 3
# The failover scenario: the calls a daemon may have up (and its sim's agents), seconds
# of dialing before each failover, nothing claimed this long after a write-back, and the
# bound (and the hard limit) on dialing again after a promotion.
FAILOVER_CALLS = 300
# Simulated seconds per real second: slow enough that calls last and hundreds are up.
FAILOVER_SPEED = 10.0
FAILOVER_SPACING = 3.0
FAILOVER_SETTLE = 2.0
# Seconds the primary's writes reach no replica before it is killed or stopped.
FAILOVER_UNREPLICATED = 1.0
FAILOVER_RESUME_BOUND = 15.0
FAILOVER_RESUME_LIMIT = 60.0
# The cluster scenario: seconds the shard's replica is cut off before its primary goes
# (under the nodes' timeout, so the replica may still be promoted); the daemons' prefix.
CLUSTER_UNREPLICATED = 0.5
PREFIX = "dialerd"
# How long after its lease expired a takeover may take: the other instances' retry pace.
TAKEOVER_SLACK = 3.0


@dataclass(frozen=True)
class Result:
    """One scenario on one store: what was checked, how long it took, what was done."""

    scenario: str
    store: str
    seconds: float
    note: str
    checks: list[Check]


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> float:
    """Poll ``condition`` until true; the seconds it took. RuntimeError past ``seconds``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > seconds:
            raise RuntimeError(f"timed out after {seconds:g} s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - started


def daemon(args: argparse.Namespace, workdir: Path, store: str, redis: Redis | None) -> Daemon:
    return Daemon(
        workdir,
        store=store,
        redis_url=redis.url if redis else "",
        ledger=workdir / "originations.jsonl",
        lease_ttl=args.lease_ttl,
        speed=args.speed,
        seed=args.seed,
    )


def run_to_stop(args: argparse.Namespace, daemons: list[Daemon], campaign_id: str) -> list[Check]:
    """Wait until the campaign stops by itself, then check it through a live daemon's API
    against the ledgers of every daemon of the scenario."""
    survivor = next(d for d in daemons if d.alive)
    wait_until(
        lambda: survivor.api.campaign_status(campaign_id) == "stop",
        args.deadline,
        "the campaign to stop",
    )
    final = survivor.api.final_state(campaign_id)
    # Kept beside the daemons' directories, for a look after a failed check.
    (daemons[0].workdir.parent / "final.json").write_bytes(msgspec.json.encode(final))
    ledger = read_ledgers([d.workdir / "originations.jsonl" for d in daemons])
    kept = len(final.targets)
    checks = [Check("all targets kept", kept == args.targets, kept, f"of {args.targets}")]
    logs = [d.stdout_path for d in daemons]
    return [*checks, *check_campaign(final, ledger), check_duplicates_ignored(logs)]


def exits(daemons: list[Daemon]) -> Check:
    codes = [d.terminate() for d in daemons if d.alive]
    return Check("daemon exits 0 on SIGTERM", set(codes) <= {0}, len(codes), f"exits {codes}")


def scenario_kill(args: argparse.Namespace, store: str, work: Path) -> tuple[list[Check], str]:
    """kill -9 the daemon at random (seeded) moments, restarting it on the same state,
    until the campaign stops by itself."""
    rng = random.Random(args.seed)
    redis = Redis(work / "redis") if store == "redis" else None
    if redis:
        redis.start()
    dialer = daemon(args, work / "daemon", store, redis)
    kills = 0
    try:
        dialer.start()
        campaign_id = dialer.api.create_campaign(args.targets)
        for _ in range(args.kills):
            time.sleep(rng.uniform(0.0, 2.0))
            if dialer.api.campaign_status(campaign_id) != "run":
                break
            dialer.kill()
            kills += 1
            dialer.start()
        checks = run_to_stop(args, [dialer], campaign_id)
        checks.insert(0, Check("kill -9 while the campaign ran", kills == args.kills, kills))
        checks.append(exits([dialer]))
        return checks, f"{kills} kills"
    finally:
        dialer.close()
        if redis:
            redis.stop()


def scenario_redis_outage(
    args: argparse.Namespace, store: str, work: Path
) -> tuple[list[Check], str]:
    """Shut redis-server down for ``--outage`` seconds three times during a campaign."""
    redis = Redis(work / "redis")
    redis.start()
    dialer = daemon(args, work / "daemon", "redis", redis)
    outages: list[Outage] = []
    running = polls = down = not_ready = 0
    try:
        dialer.start()
        campaign_id = dialer.api.create_campaign(args.targets)
        for _ in range(OUTAGES):
            time.sleep(3.0)
            running += dialer.api.campaign_status(campaign_id) == "run"
            began = datetime.now(UTC)
            redis.stop()
            deadline = time.monotonic() + args.outage
            while time.monotonic() < deadline:
                polls += 1
                down += not dialer.alive
                not_ready += dialer.api.ready() is False
                time.sleep(0.5)
            redis.start()
            outages.append(Outage(began, datetime.now(UTC)))
        checks = [
            Check("campaign running when redis stopped", running == OUTAGES, running),
            Check("daemon up all through the outages", down == 0, polls, f"{down} polls dead"),
            Check("/readyz 503 while redis was down", not_ready > 0, polls, "never 503"),
        ]
        checks += run_to_stop(args, [dialer], campaign_id)
        checks += check_outages(read_ledgers([dialer.workdir / "originations.jsonl"]), outages)
        checks.append(exits([dialer]))
        return checks, f"{OUTAGES} outages of {args.outage:g} s"
    finally:
        dialer.close()
        redis.stop()


async def _lease_owner(config: StoreConfig, campaign_id: str) -> str | None:
    store = create_store(config, Path("."))
    await store.open()
    try:
        return await store.lease_owner(campaign_id, SystemClock().now())
    finally:
        await store.close()


def scenario_instances(args: argparse.Namespace, store: str, work: Path) -> tuple[list[Check], str]:
    """Three daemons on one Redis; the campaign's owner is killed, then the next owner
    SIGSTOPped past its lease and continued."""
    redis = Redis(work / "redis")
    redis.start()
    daemons = [daemon(args, work / f"daemon{n}", "redis", redis) for n in range(3)]
    config = StoreConfig(backend="redis", redis=RedisConnection(url=redis.url, timeout=5.0))
    campaign_id = ""

    def owner() -> Daemon | None:
        name = anyio.run(_lease_owner, config, campaign_id)
        return next((d for d in daemons if d.alive and name and d.instance_id == name), None)

    try:
        for dialer in daemons:
            dialer.start()
        campaign_id = daemons[0].api.create_campaign(args.targets)
        wait_until(lambda: owner() is not None, 10.0, "an instance to lease the campaign")
        time.sleep(2.0)
        first = owner()
        assert first is not None, "the campaign's owner died on its own"
        first.kill()
        took_over = wait_until(
            lambda: owner() not in (None, first), args.lease_ttl + 15, "a takeover"
        )
        second = owner()
        assert second is not None
        time.sleep(2.0)
        second.signal(signal.SIGSTOP)
        third = next(d for d in daemons if d.alive and d is not second)
        took_over_paused = wait_until(
            lambda: owner() is third, args.lease_ttl + 15, "a takeover from the stopped owner"
        )
        time.sleep(1.0)
        second.signal(signal.SIGCONT)
        bound = args.lease_ttl + TAKEOVER_SLACK
        checks = [
            Check(f"takeover of a killed owner <= {bound:g} s", took_over <= bound, 1,
                  f"{took_over:.1f} s"),
            Check(f"takeover of a stopped owner <= {bound:g} s", took_over_paused <= bound, 1,
                  f"{took_over_paused:.1f} s"),
        ]  # fmt: skip
        checks += run_to_stop(args, daemons, campaign_id)
        alive = sum(d.alive for d in daemons)
        checks.append(Check("the two other instances still up", alive == 2, alive))
        checks.append(exits(daemons))
        note = f"owner killed, taken over in {took_over:.1f} s; next one stopped, taken over "
        return checks, note + f"in {took_over_paused:.1f} s, then continued"
    finally:
        for dialer in daemons:
            dialer.close()
        redis.stop()


def sentinel_daemon(args: argparse.Namespace, workdir: Path, topology: SentinelTopology) -> Daemon:
    """A daemon whose store is the topology's primary as its sentinels name it; a claim
    is dialed only once a replica has it."""
    sentinels = ", ".join(f'"{address}"' for address in topology.addresses)
    return Daemon(
        workdir,
        store="redis",
        redis_url=topology.url(),
        redis_extra=(
            f'sentinels = [{sentinels}]\nservice_name = "{SENTINEL_SERVICE}"\n'
            f"min_replicas = {args.min_replicas}\nreplica_timeout = 0.5\n"
            f"failover_settle = {FAILOVER_SETTLE}"
        ),
        ledger=workdir / "originations.jsonl",
        lease_ttl=args.lease_ttl,
        speed=min(args.speed, FAILOVER_SPEED),
        seed=args.seed,
        max_concurrent=FAILOVER_CALLS,
        agents=FAILOVER_CALLS,
    )


def _written_back(daemons: list[Daemon]) -> tuple[int, int, int]:
    """Live attempts the daemons wrote back after failovers, how many of them the new
    primary had lost, and how many attempts it had live whose end it lost (ended again;
    their logs)."""
    live = restored = ended_again = 0
    for dialer in daemons:
        if not dialer.stdout_path.exists():
            continue
        for line in dialer.stdout_path.read_text(errors="replace").splitlines():
            if "live attempts written back" not in line:
                continue
            try:
                entry = msgspec.json.decode(line)
            except msgspec.DecodeError:  # cut short by a kill: a figure of the note only
                print(f"note: {dialer.stdout_path}: a cut log line skipped", file=sys.stderr)
                continue
            live += int(entry.get("live_attempts", 0))
            restored += int(entry.get("restored", 0))
            ended_again += int(entry.get("ended_again", 0))
    return live, restored, ended_again


def _originations(daemons: list[Daemon]) -> int:
    return len(read_ledgers([d.workdir / "originations.jsonl" for d in daemons]))


def _status(daemons: list[Daemon], campaign_id: str) -> str | None:
    """The campaign's status as the first live daemon that answers gives it."""
    for dialer in daemons:
        if dialer.alive and (status := dialer.api.campaign_status(campaign_id)) is not None:
            return status
    return None


def _campaign_now(daemons: list[Daemon], campaign_id: str) -> str:
    """What the campaign is doing, for a failure's detail: its status, its targets by
    status and its attempts not ended (through a live daemon's API)."""
    for dialer in (d for d in daemons if d.alive):
        try:
            final = dialer.api.final_state(campaign_id)
        except (RuntimeError, httpx.TransportError, msgspec.DecodeError):
            continue
        targets = Counter(str(target.status) for target in final.targets)
        live = sum(call.status != CampaigncallStatus.DONE for call in final.calls)
        counted = ", ".join(f"{count} {status}" for status, count in sorted(targets.items()))
        return f"campaign {final.campaign.status}; targets: {counted}; {live} attempts live"
    return "no live daemon answered for the campaign"


def _resumed(daemons: list[Daemon], campaign_id: str) -> float | None:
    """Seconds from now (a promotion) to the next origination; None when the campaign
    stopped first: every target done, nothing left to dial (a failover at the end of
    the campaign: the resume is not measured). RuntimeError past
    ``FAILOVER_RESUME_LIMIT``, with what the campaign was doing."""
    seen = _originations(daemons)
    stopped = False

    def resumed_or_stopped() -> bool:
        nonlocal stopped
        if _originations(daemons) > seen:
            return True
        stopped = _status(daemons, campaign_id) == "stop"
        return stopped

    try:
        took = wait_until(resumed_or_stopped, FAILOVER_RESUME_LIMIT, "dialing to resume")
    except RuntimeError as exc:
        raise RuntimeError(f"{exc} ({_campaign_now(daemons, campaign_id)})") from None
    return None if stopped else took


def _fail_over(
    topology: SentinelTopology, daemons: list[Daemon], campaign_id: str, *, pause: bool
) -> tuple[Outage, float | None, int]:
    """kill -9 (or SIGSTOP) the primary as the sentinels name it now, wait for the
    promotion, bring the old primary back as a replica of the new one; the outage
    (kill to promotion), the seconds from the promotion to the next origination (None:
    the campaign stopped first), and the calls up when the primary went."""
    moved = topology.follow_sentinels()
    if moved is not None:
        print(
            f"note: the sentinels failed over on their own, from {moved} to "
            f"{topology.primary_port}; this failover acts on {topology.primary_port}",
            file=sys.stderr,
            flush=True,
        )
    in_flight = sum(d.api.calls_up() for d in daemons if d.alive)
    # For a while the primary's writes reach no replica: claims of that while are lost
    # in the failover (with min_replicas = 0 they are dialed, and written back).
    replicas = topology.cut_replicas()
    time.sleep(FAILOVER_UNREPLICATED)
    began = datetime.now(UTC)
    old = topology.primary_port
    if pause:
        topology.pause(old)
    else:
        topology.kill_primary()
    for port in replicas:
        topology.resume(port)
    topology.wait_promoted(old)
    promoted = datetime.now(UTC)
    resumed = _resumed(daemons, campaign_id)
    if pause:
        topology.resume(old)
    else:
        topology.restart_as_replica(old)
    topology.wait_replicas()
    return Outage(began, promoted), resumed, in_flight


def _failover_outcome(
    args: argparse.Namespace,
    daemons: list[Daemon],
    campaign_id: str,
    running: int,
    outages: list[Outage],
    resumes: list[float | None],
    flights: list[int],
    *,
    failovers: str,
    lost_by: str,
    spurious: str = "",
) -> tuple[list[Check], str]:
    """The checks of a failover scenario once its failovers are done (each resumed in
    time, the campaign run to its stop, nothing lost or doubled, the daemons' exits),
    and its note (``spurious``: the sentinels' own failovers)."""
    bound = FAILOVER_RESUME_BOUND
    measured = [seconds for seconds in resumes if seconds is not None]
    slow = [f"{seconds:.1f} s" for seconds in measured if seconds > bound]
    checks = [
        # The last failover (in a lease handover) included: one after the campaign
        # stopped tests nothing (more --targets).
        Check(
            "campaign running at each failover",
            running == len(outages),
            running,
            f"of {len(outages)}: more --targets",
        ),
        Check(
            f"dialing resumed <= {bound:g} s after each promotion",
            not slow,
            len(measured),
            ", ".join(slow),
        ),
    ]
    checks += run_to_stop(args, daemons, campaign_id)
    ledger = read_ledgers([d.workdir / "originations.jsonl" for d in daemons])
    checks += check_outages(ledger, outages, resume_within=timedelta(seconds=bound))[:1]
    checks.append(exits(daemons))
    times = ", ".join("-" if seconds is None else f"{seconds:.1f}" for seconds in resumes)
    live, restored, ended_again = _written_back(daemons)
    note = (
        f"{len(outages)} {failovers} (calls up at each: {flights}), dialing resumed "
        f"{times} s after each promotion; {live} live attempts written back, "
        f"{restored} of them lost by {lost_by}; {ended_again} ends it lost written again"
    )
    unmeasured = [str(n + 1) for n, seconds in enumerate(resumes) if seconds is None]
    if unmeasured:
        note += (
            f"; no resume to measure after failover {', '.join(unmeasured)}: the campaign "
            "stopped first (every target done)"
        )
    return checks, note + spurious


def scenario_failover(args: argparse.Namespace, store: str, work: Path) -> tuple[list[Check], str]:
    """A primary, two replicas and three sentinels; two daemons share the store
    (``--min-replicas``). ``--failovers`` times while the campaign dials: the primary's
    writes stop reaching the replicas for a second (what is claimed then is lost in
    the failover), then it is killed (kill -9), or every other time SIGSTOPped (a
    partition); a replica is promoted; the old primary comes back as a replica. Last,
    the campaign's owner is killed and, during the lease handover, the primary too."""
    topology = SentinelTopology(work / "redis")
    daemons = [sentinel_daemon(args, work / f"daemon{n}", topology) for n in range(2)]
    outages: list[Outage] = []
    resumes: list[float | None] = []
    flights: list[int] = []
    try:
        for dialer in daemons:
            dialer.start()
        campaign_id = daemons[0].api.create_campaign(args.targets)
        running = 0
        for n in range(args.failovers):
            time.sleep(FAILOVER_SPACING)
            running += daemons[0].api.campaign_status(campaign_id) == "run"
            outage, resumed, in_flight = _fail_over(
                topology, daemons, campaign_id, pause=n % 2 == 1
            )
            outages.append(outage)
            resumes.append(resumed)
            flights.append(in_flight)
        # A failover during a lease handover: the owner dies, then the primary.
        config = StoreConfig(
            backend="redis",
            redis=RedisConnection(
                url=topology.url(),
                sentinels=topology.addresses,
                service_name=SENTINEL_SERVICE,
                timeout=5.0,
            ),
        )
        running += _status(daemons, campaign_id) == "run"
        name = anyio.run(_lease_owner, config, campaign_id)
        owner = next((d for d in daemons if d.instance_id == name), daemons[0])
        owner.kill()
        time.sleep(args.lease_ttl / 2)
        outage, resumed, in_flight = _fail_over(topology, daemons, campaign_id, pause=False)
        outages.append(outage)
        resumes.append(resumed)
        flights.append(in_flight)
        spurious = max(0, topology.switches() - len(outages))
        return _failover_outcome(
            args, daemons, campaign_id, running, outages, resumes, flights,
            failovers="failovers", lost_by="the new primary",
            spurious=f"; {spurious} spurious failovers by the sentinels on their own "
            f"({len(topology.spurious)} seen before a failover, which acted on the "
            "primary they named)",
        )  # fmt: skip
    finally:
        for dialer in daemons:
            dialer.close()
        topology.stop()


def cluster_daemon(args: argparse.Namespace, workdir: Path, rig: RedisClusterRig) -> Daemon:
    """A daemon whose store is the Redis Cluster (``cluster = true``, a seed node's URL)."""
    return Daemon(
        workdir,
        store="redis",
        redis_url=rig.url,
        redis_extra=(
            f"cluster = true\nmin_replicas = {args.min_replicas}\nreplica_timeout = 0.5\n"
            f"failover_settle = {FAILOVER_SETTLE}"
        ),
        ledger=workdir / "originations.jsonl",
        lease_ttl=args.lease_ttl,
        speed=min(args.speed, FAILOVER_SPEED),
        seed=args.seed,
        max_concurrent=FAILOVER_CALLS,
        agents=FAILOVER_CALLS,
    )


def _cluster_fail_over(
    rig: RedisClusterRig, daemons: list[Daemon], campaign_id: str, *, pause: bool
) -> tuple[Outage, float | None, int]:
    """kill -9 (or SIGSTOP) the primary of the campaign's customer's shard, wait for its
    replica's promotion, bring the old node back (a replica now); the outage, the
    seconds from the promotion to the next origination (None: the campaign stopped
    first), and the calls up at the kill."""
    in_flight = sum(d.api.calls_up() for d in daemons if d.alive)
    shard = rig.primary_of_slot(slot_of(f"{PREFIX}:{{c:{CUSTOMER}}}"))
    assert shard is not None
    replica = rig.replica_of(shard)
    assert replica is not None
    # For a moment the shard's writes reach no replica: claims of that moment are lost
    # in the failover (with min_replicas = 0 they are dialed, and written back).
    rig.pause(replica)
    rig.cut_replicas_of(shard)
    time.sleep(CLUSTER_UNREPLICATED)
    began = datetime.now(UTC)
    if pause:
        rig.pause(shard)
    else:
        rig.kill(shard)
    rig.resume(replica)
    rig.wait_promoted(shard)
    promoted = datetime.now(UTC)
    resumed = _resumed(daemons, campaign_id)
    rig.heal(shard)
    return Outage(began, promoted), resumed, in_flight


def scenario_cluster_failover(
    args: argparse.Namespace, store: str, work: Path
) -> tuple[list[Check], str]:
    """A Redis Cluster of three primaries with a replica each; two daemons share it
    (``cluster = true``, ``--min-replicas``). ``--failovers`` times while the campaign
    dials: the replica of the customer's shard is cut off for a moment, then the shard's
    primary is killed (kill -9), or every other time SIGSTOPped; its replica is
    promoted; the old node comes back as a replica. Last, the campaign's owner is
    killed and, during the lease handover, the shard's primary too."""
    rig = RedisClusterRig(work / "redis")
    daemons = [cluster_daemon(args, work / f"daemon{n}", rig) for n in range(2)]
    outages: list[Outage] = []
    resumes: list[float | None] = []
    flights: list[int] = []
    try:
        for dialer in daemons:
            dialer.start()
        campaign_id = daemons[0].api.create_campaign(args.targets)
        running = 0
        for n in range(args.failovers):
            time.sleep(FAILOVER_SPACING)
            running += daemons[0].api.campaign_status(campaign_id) == "run"
            outage, resumed, in_flight = _cluster_fail_over(
                rig, daemons, campaign_id, pause=n % 2 == 1
            )
            outages.append(outage)
            resumes.append(resumed)
            flights.append(in_flight)
        # A failover during a lease handover: the owner dies, then the shard's primary.
        config = StoreConfig(
            backend="redis", redis=RedisConnection(url=rig.url, cluster=True, timeout=5.0)
        )
        running += _status(daemons, campaign_id) == "run"
        name = anyio.run(_lease_owner, config, campaign_id)
        owner = next((d for d in daemons if d.instance_id == name), daemons[0])
        owner.kill()
        time.sleep(args.lease_ttl / 2)
        outage, resumed, in_flight = _cluster_fail_over(rig, daemons, campaign_id, pause=False)
        outages.append(outage)
        resumes.append(resumed)
        flights.append(in_flight)
        return _failover_outcome(
            args, daemons, campaign_id, running, outages, resumes, flights,
            failovers="cluster failovers", lost_by="the promoted replica",
        )  # fmt: skip
    finally:
        for dialer in daemons:
            dialer.close()
        rig.stop()


SCENARIOS = {
    "kill": scenario_kill,
    "redis-outage": scenario_redis_outage,
    "instances": scenario_instances,
    "failover": scenario_failover,
    "cluster-failover": scenario_cluster_failover,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/chaos", description=__doc__)
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    parser.add_argument(
        "--store",
        choices=["sqlite", "redis", "both"],
        default="both",
        help="for kill; redis-outage, instances and failover always use redis",
    )
    parser.add_argument("--targets", type=int, default=2000)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--outage", type=float, default=10.0, help="seconds redis is down")
    parser.add_argument(
        "--failovers", type=int, default=4, help="failovers before the one in a handover"
    )
    parser.add_argument(
        "--min-replicas",
        type=int,
        choices=[0, 1, 2],
        default=0,
        help="[store.redis] min_replicas of the failover scenario's daemons",
    )
    parser.add_argument("--lease-ttl", type=float, default=3.0, help="[engine] lease_ttl, s")
    parser.add_argument("--speed", type=float, default=50.0, help="[sim] speed")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--deadline", type=float, default=600.0, help="seconds a campaign may take to stop"
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep each scenario's directory (daemons' logs, ledgers, servers' logs), "
        "whatever the outcome; its path is printed",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.targets <= 20_000:
        parser.error(f"--targets must be 1..20000, got {args.targets}")
    if not 0 <= args.kills <= 100:
        parser.error(f"--kills must be 0..100, got {args.kills}")
    if not 0 <= args.failovers <= 20:
        parser.error(f"--failovers must be 0..20, got {args.failovers}")
    if not 1 <= args.outage <= 60 or not 1 <= args.lease_ttl <= 60:
        parser.error("--outage and --lease-ttl must be 1..60 seconds")
    if not 1 <= args.deadline <= 3600:
        parser.error(f"--deadline must be 1..3600 seconds, got {args.deadline}")
    if not 1 <= args.speed <= 1000:
        parser.error(f"--speed must be 1..1000, got {args.speed}")
    return args


def plan(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(scenario, store) pairs to run; only kill runs on SQLite."""
    scenarios = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    stores = ["sqlite", "redis"] if args.store == "both" else [args.store]
    return [(s, store) for s in scenarios for store in (stores if s == "kill" else ["redis"])]


def run_directory(keep: bool) -> AbstractContextManager[str]:
    """A scenario's directory (its daemons' logs, ledgers and state, the servers' logs):
    removed after the scenario, or with ``keep`` left for a post-mortem."""
    if not keep:
        return tempfile.TemporaryDirectory(prefix="dialerd-chaos-")
    return contextlib.nullcontext(tempfile.mkdtemp(prefix="dialerd-chaos-"))


def run(args: argparse.Namespace) -> list[Result]:
    results = []
    for scenario, store in plan(args):
        with run_directory(args.keep) as tmp:
            kept = f", kept in {tmp}" if args.keep else ""
            print(f"{scenario} on {store}: running{kept}", file=sys.stderr, flush=True)
            started = time.monotonic()
            try:
                checks, note = SCENARIOS[scenario](args, store, Path(tmp))
            except (RuntimeError, AssertionError) as exc:
                checks, note = [Check("scenario ran to the end", False, 1, str(exc))], "aborted"
            elapsed = time.monotonic() - started
        results.append(Result(scenario, store, elapsed, note + kept, checks))
    return results


def print_table(results: list[Result]) -> None:
    """One row per scenario x invariant, then the time each scenario took."""
    print(f"{'scenario':<16} {'store':<7} {'invariant':<48} {'result':<6} {'count':>6}")
    for result in results:
        for check in result.checks:
            verdict = "PASS" if check.ok else "FAIL"
            detail = f"  {check.detail}" if check.detail and not check.ok else ""
            print(
                f"{result.scenario:<16} {result.store:<7} {check.name:<48} {verdict:<6} "
                f"{check.count:>6}{detail}"
            )
    print()
    for result in results:
        print(f"{result.scenario} on {result.store}: {result.seconds:.0f} s ({result.note})")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = run(args)
    print_table(results)
    failed = [check for result in results for check in result.checks if not check.ok]
    print(f"\n{'FAILED' if failed else 'PASSED'}: {len(failed)} violation(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
