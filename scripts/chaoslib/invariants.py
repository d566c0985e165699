"""What must hold after any chaos scenario: checks over a campaign's final state (as the
API shows it) and the simulated backend's ledgers of originations."""

from __future__ import annotations

import itertools
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import msgspec

from dialerd.adapters.sim import LedgerEntry
from dialerd.model import (
    Campaign,
    Campaigncall,
    CampaigncallStatus,
    CampaignStatus,
    OutdialTarget,
    Outplan,
    TargetStatus,
    parse_time,
)

SLOTS = 5


@dataclass(frozen=True)
class Check:
    """One invariant: whether it held, over how many items, and the first violations."""

    name: str
    ok: bool
    count: int
    detail: str = ""


@dataclass(frozen=True)
class FinalState:
    """A campaign after a scenario: itself, its outplan, its targets and attempts."""

    campaign: Campaign
    outplan: Outplan
    targets: list[OutdialTarget]
    calls: list[Campaigncall]


@dataclass(frozen=True)
class Outage:
    """A span of wall-clock time during which the store was unreachable."""

    start: datetime
    end: datetime


class LedgerCorrupt(RuntimeError):
    """A ledger line that is not an origination, and not the partial last line a killed
    daemon can leave (a failed check of the scenario, not a crash of the script)."""


def read_ledgers(ledgers: Sequence[Path]) -> list[LedgerEntry]:
    """Every origination the simulated backends placed, from all their ledger files.

    A last line without its newline that does not decode is a write cut short (a daemon
    killed in it, or read while it writes): skipped, with a note on stderr. Any other
    line that does not decode raises ``LedgerCorrupt``."""
    entries: list[LedgerEntry] = []
    for ledger in ledgers:
        if not ledger.exists():
            continue
        data = ledger.read_bytes()
        lines = data.split(b"\n")
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                entries.append(msgspec.json.decode(line, type=LedgerEntry))
            except msgspec.DecodeError as error:
                if number == len(lines):  # the last line, not ended by a newline
                    print(
                        f"note: {ledger}: partial last line skipped ({len(line)} bytes, {error})",
                        file=sys.stderr,
                    )
                    continue
                raise LedgerCorrupt(f"{ledger} line {number}: {error}") from error
    return entries


def check_duplicates_ignored(logs: Sequence[Path]) -> Check:
    """A sim drops (and logs) a second origination of an id it placed in the same process;
    that never reaches the ledger, so count the daemons' log lines instead."""
    seen = [
        f"{log.parent.name}: {line[:120]}"
        for log in logs
        if log.exists()
        for line in log.read_text(errors="replace").splitlines()
        if "duplicate origination ignored" in line
    ]
    return _check("no origination repeated within a process", len(logs), seen)


def _check(name: str, count: int, violations: list[str]) -> Check:
    more = f" (+{len(violations) - 3} more)" if len(violations) > 3 else ""
    detail = "; ".join(violations[:3]) + more
    return Check(name, not violations, count, detail)


def _ended(call: Campaigncall) -> datetime | None:
    """When the attempt ended; None while it is live (a lost one is live until then)."""
    if call.status != CampaigncallStatus.DONE or call.tm_update is None:
        return None
    return parse_time(call.tm_update)


def check_campaign(final: FinalState, ledger: Sequence[LedgerEntry]) -> list[Check]:
    """Every invariant of issue 6 for one campaign that should have run to its end."""
    campaign, targets, calls = final.campaign, final.targets, final.calls
    originations = [entry for entry in ledger if entry.campaign_id == campaign.id]
    checks = [
        _check(
            "campaign stopped by itself",
            1,
            [] if campaign.status == CampaignStatus.STOP else [f"status {campaign.status}"],
        ),
        _check(
            "every target done",
            len(targets),
            [f"{t.id} {t.status}" for t in targets if t.status != TargetStatus.DONE],
        ),
        _check(
            "no attempt left dialing or progressing",
            len(calls),
            [f"{c.id} {c.status}" for c in calls if c.status != CampaigncallStatus.DONE],
        ),
    ]

    limits = final.outplan.max_try_counts
    per_slot = Counter((c.outdial_target_id, c.destination_index) for c in calls)
    over, mismatched = [], []
    for target in targets:
        for slot in range(SLOTS):
            made, counted = per_slot[(target.id, slot)], target.try_counts[slot]
            if made > limits[slot]:
                over.append(f"{target.id} slot {slot}: {made} > {limits[slot]}")
            if made != counted:
                mismatched.append(f"{target.id} slot {slot}: {made} attempts, try_count {counted}")
    checks.append(_check("attempts per slot <= max_try_count_N", len(targets) * SLOTS, over))
    checks.append(_check("attempts per slot == try_count_N", len(targets) * SLOTS, mismatched))

    per_call = Counter(entry.campaigncall_id for entry in originations)
    twice = [f"{call_id} x{n}" for call_id, n in per_call.items() if n > 1]
    checks.append(_check("no campaigncall originated twice", len(originations), twice))
    by_id = {call.id: call for call in calls}
    outside = []
    for entry in originations:
        call = by_id.get(entry.campaigncall_id)
        if call is None:
            outside.append(f"{entry.campaigncall_id} originated, never persisted")
            continue
        placed, ended = parse_time(entry.tm), _ended(call)
        if placed < parse_time(call.tm_create) or (ended is not None and placed > ended):
            outside.append(f"{call.id} originated at {entry.tm}, outside its attempt")
    checks.append(
        _check("every origination within its persisted attempt", len(originations), outside)
    )
    checks.append(_check("never two live attempts on one target", len(calls), _overlaps(calls)))
    return checks


def _overlaps(calls: Sequence[Campaigncall]) -> list[str]:
    """Targets with two attempts whose [tm_create, end] spans overlap."""
    by_target: dict[str, list[Campaigncall]] = defaultdict(list)
    for call in calls:
        by_target[call.outdial_target_id].append(call)
    found = []
    for target_id, attempts in by_target.items():
        attempts.sort(key=lambda c: (parse_time(c.tm_create), c.try_count, c.destination_index))
        # Sorted by start, any overlap shows between neighbours.
        for before, after in itertools.pairwise(attempts):
            ended = _ended(before)
            if ended is None or ended > parse_time(after.tm_create):
                found.append(f"{target_id}: {before.id} still live at {after.id}")
    return found


def check_outages(
    ledger: Sequence[LedgerEntry],
    outages: Sequence[Outage],
    *,
    grace: timedelta = timedelta(seconds=1),
    resume_within: timedelta = timedelta(seconds=5),
) -> list[Check]:
    """No origination while the store is away (but for attempts persisted just before,
    within ``grace``), and dialing again within ``resume_within`` of its return."""
    times = sorted(parse_time(entry.tm) for entry in ledger)
    blind, slow = [], []
    for outage in outages:
        inside = [t for t in times if outage.start + grace < t < outage.end]
        if inside:
            blind.append(f"{len(inside)} while down from {outage.start:%H:%M:%S}")
        after = next((t for t in times if t >= outage.end), None)
        if after is None or after - outage.end > resume_within:
            waited = "never" if after is None else f"{(after - outage.end).total_seconds():.1f} s"
            slow.append(f"store back at {outage.end:%H:%M:%S}, first origination {waited}")
    return [
        _check("no origination while the store was down", len(outages), blind),
        _check(f"dialing resumed within {resume_within.seconds} s", len(outages), slow),
    ]
