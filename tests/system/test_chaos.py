"""A short chaos run per store: kill -9 the daemon mid-campaign, restart it on the same
state, and check every invariant of scripts/chaos through the API and the sim's ledger.

The full scenarios (20 kills on 2,000 targets, redis outages, three instances) are run
by hand with scripts/chaos; these keep the same checks in every test run.
"""

from __future__ import annotations

import os
import shutil
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
import redis
from msgspec.structs import replace

from dialerd.adapters.sim import LedgerEntry
from dialerd.model import Campaigncall, CampaigncallStatus, format_time, new_id
from scripts.chaoslib.invariants import (
    FinalState,
    LedgerCorrupt,
    Outage,
    check_campaign,
    check_outages,
    read_ledgers,
)
from scripts.chaoslib.run import (
    main,
    parse_args,
    scenario_cluster_failover,
    scenario_failover,
    scenario_kill,
)
from scripts.chaoslib.sentinel import SERVICE, SentinelTopology


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_kill_9_mid_campaign_loses_and_doubles_nothing(tmp_path: Path, store: str) -> None:
    args = parse_args(
        ["--targets", "300", "--kills", "3", "--speed", "50", "--seed", "5", "--deadline", "45"]
    )
    checks, note = scenario_kill(args, store, tmp_path)
    failed = [f"{check.name}: {check.detail}" for check in checks if not check.ok]
    assert not failed, failed
    assert note == "3 kills"
    counted = {check.name: check.count for check in checks}
    assert counted["every target done"] == 300
    assert counted["no campaigncall originated twice"] >= 300
    assert {
        "attempts per slot <= max_try_count_N",
        "attempts per slot == try_count_N",
        "every origination within its persisted attempt",
        "never two live attempts on one target",
    } <= counted.keys()
    if store == "sqlite":
        _faults_in_the_real_outcome_are_caught(tmp_path)


def _failing(final: FinalState, ledger: list[LedgerEntry]) -> set[str]:
    return {check.name for check in check_campaign(final, ledger) if not check.ok}


def _faults_in_the_real_outcome_are_caught(tmp_path: Path) -> None:
    """The checks that passed above fail once the outcome is bent: they can fail."""
    final = msgspec.json.decode((tmp_path / "final.json").read_bytes(), type=FinalState)
    ledger = read_ledgers([tmp_path / "daemon" / "originations.jsonl"])
    assert _failing(final, ledger) == set()
    call, target = final.calls[0], final.targets[0]

    assert _failing(final, [*ledger, ledger[0]]) == {"no campaigncall originated twice"}
    unknown = replace(ledger[0], campaigncall_id=new_id())
    assert _failing(final, [*ledger, unknown]) == {"every origination within its persisted attempt"}
    stuck = replace(call, status=CampaigncallStatus.PROGRESSING)
    assert "no attempt left dialing or progressing" in _failing(
        _with_calls(final, [stuck, *final.calls[1:]]), ledger
    )
    # A second attempt on the same slot, started while the first was live.
    again = replace(call, id=new_id())
    assert _failing(_with_calls(final, [*final.calls, again]), ledger) >= {
        "attempts per slot == try_count_N",
        "never two live attempts on one target",
    }
    miscounted = replace(target, try_count_1=target.try_count_1 + 2)
    assert _failing(
        FinalState(final.campaign, final.outplan, [miscounted, *final.targets[1:]], final.calls),
        ledger,
    ) == {"attempts per slot == try_count_N"}


def _with_calls(final: FinalState, calls: list[Campaigncall]) -> FinalState:
    return FinalState(final.campaign, final.outplan, final.targets, calls)


def _entry(call_id: str, at: datetime) -> LedgerEntry:
    return LedgerEntry(
        tm=format_time(at),
        kind="call",
        campaigncall_id=call_id,
        campaign_id="c",
        customer_id="u",
        reference_id="r",
        queue_id="q",
        destination="+15550000001",
    )


def test_outage_checks_catch_blind_dialing_and_a_slow_resume(tmp_path: Path) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    outage = Outage(start, start + timedelta(seconds=10))
    ledger = tmp_path / "originations.jsonl"
    ledger.write_bytes(
        b"".join(
            msgspec.json.encode(_entry(f"call-{n}", start + timedelta(seconds=s))) + b"\n"
            for n, s in enumerate([-1.0, 0.5, 4.0, 17.0])
        )
    )
    blind, slow = check_outages(read_ledgers([ledger, tmp_path / "absent.jsonl"]), [outage])
    assert not blind.ok
    assert blind.detail.startswith("1 while down")
    assert not slow.ok
    assert "7.0 s" in slow.detail


def test_a_partial_last_ledger_line_is_skipped_and_a_corrupt_one_elsewhere_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    lines = [msgspec.json.encode(_entry(f"call-{n}", start)) + b"\n" for n in range(3)]
    cut = lines[2][:40]  # a daemon killed while it wrote its third line
    ledger = tmp_path / "originations.jsonl"
    ledger.write_bytes(lines[0] + lines[1] + cut)
    assert [entry.campaigncall_id for entry in read_ledgers([ledger])] == ["call-0", "call-1"]
    note = capsys.readouterr().err
    assert f"note: {ledger}: partial last line skipped (40 bytes" in note

    # The same cut line followed by more (the daemon restarted and appended): corrupt.
    ledger.write_bytes(lines[0] + cut + lines[1])
    with pytest.raises(LedgerCorrupt, match=r"originations\.jsonl line 2"):
        read_ledgers([ledger])
    # A complete last line that is not an origination: corrupt too.
    ledger.write_bytes(lines[0] + b'{"tm": 1}\n')
    with pytest.raises(LedgerCorrupt, match="line 2"):
        read_ledgers([ledger])


@pytest.mark.slow
def test_sentinel_failovers_under_hundreds_of_calls_lose_and_double_nothing(
    tmp_path: Path,
) -> None:
    """Two daemons on a Sentinel-managed primary with two replicas (min_replicas = 0:
    the claims made while the primary's writes reach no replica are dialed, then lost
    by the promoted replica and written back): the primary killed, then SIGSTOPped,
    then killed during a lease handover, while the campaign has calls up."""
    args = parse_args(["--targets", "1500", "--failovers", "2", "--seed", "3", "--deadline", "300"])
    checks, note = scenario_failover(args, "redis", tmp_path)
    failed = [f"{check.name}: {check.detail}" for check in checks if not check.ok]
    assert not failed, (failed, note)
    counted = {check.name: check.count for check in checks}
    assert counted["every target done"] == 1500
    assert counted["dialing resumed <= 15 s after each promotion"] == 3
    assert {
        "no campaigncall originated twice",
        "every origination within its persisted attempt",
        "never two live attempts on one target",
        "no attempt left dialing or progressing",
    } <= counted.keys()


@pytest.mark.slow
def test_a_cluster_primary_killed_under_hundreds_of_calls_loses_and_doubles_nothing(
    tmp_path: Path,
) -> None:
    """Two daemons on a Redis Cluster (three primaries with a replica each,
    min_replicas = 0: the claims made while the shard's writes reach no replica are
    dialed, then lost by the promoted replica and written back): the primary of the
    customer's shard killed, then SIGSTOPped (and continued once its replica serves),
    then killed during a lease handover, while the campaign has calls up."""
    args = parse_args(["--targets", "400", "--failovers", "2", "--seed", "3", "--deadline", "120"])
    checks, note = scenario_cluster_failover(args, "redis", tmp_path)
    failed = [f"{check.name}: {check.detail}" for check in checks if not check.ok]
    assert not failed, (failed, note)
    counted = {check.name: check.count for check in checks}
    assert counted["every target done"] == 400
    assert counted["dialing resumed <= 15 s after each promotion"] == 3
    assert {
        "no campaigncall originated twice",
        "every origination within its persisted attempt",
        "never two live attempts on one target",
        "no attempt left dialing or progressing",
    } <= counted.keys()


def _replication(port: int) -> dict[str, object]:
    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        return dict(client.info("replication"))
    finally:
        client.close()


def _failover_by_the_sentinels(topology: SentinelTopology) -> None:
    """One sentinel fails over on its own from a primary that never went down (what
    the 1 s down-after does on a loaded host); the harness is not told."""
    sentinel = redis.Redis(host="127.0.0.1", port=next(iter(topology.sentinels)))
    try:
        sentinel.execute_command("SENTINEL", "FAILOVER", SERVICE)
    finally:
        sentinel.close()


def test_a_spurious_failover_is_followed_and_counted_and_the_harness_acts_on_the_new_primary(
    tmp_path: Path,
) -> None:
    with SentinelTopology(tmp_path) as topology:
        old = topology.primary_port
        _failover_by_the_sentinels(topology)

        topology._wait(lambda: topology.sentinel_primary() not in (None, old), "the promotion")
        named = topology.sentinel_primary()
        assert named is not None

        # A replica killed and restarted is made a replica of the primary the sentinels
        # name now, not of the server the harness still takes for the primary (a replica
        # now itself).
        replica = next(port for port in topology.servers if port not in (old, named))
        process = topology.servers.pop(replica)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        topology.restart_as_replica(replica)
        assert _replication(replica)["master_port"] == named

        # Before its next step the harness asks the sentinels: the primary moved, counted.
        assert topology.follow_sentinels() == old
        assert topology.primary_port == named
        assert topology.spurious == [(old, named)]
        assert topology.follow_sentinels() is None  # nothing moved since
        # So the failover it makes kills the primary, not the demoted one.
        assert topology.kill_primary() == named
        assert topology.wait_promoted(named) != named
        # Both failovers in the sentinels' logs (each logs a switch once it learns of it).
        topology._wait(lambda: topology.switches() == 2, "the sentinels' logs")


def test_keep_leaves_the_run_directory_and_prints_its_path(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--scenario", "kill", "--store", "sqlite", "--targets", "40", "--kills", "1"]
    assert main([*argv, "--seed", "7", "--deadline", "45", "--keep"]) == 0
    captured = capsys.readouterr()
    kept = Path(captured.err.split(", kept in ", 1)[1].split()[0])
    try:
        assert f"kept in {kept}" in captured.out  # the summary names it too
        assert (kept / "daemon" / "stdout.log").exists()
        assert (kept / "daemon" / "originations.jsonl").stat().st_size > 0
    finally:
        shutil.rmtree(kept)
