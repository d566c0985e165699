"""What must hold after any chaos scenario, read from the store and the sim's ledger."""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from dialerd.model import (
    Campaigncall,
    CampaigncallStatus,
    CampaignStatus,
    OutdialTarget,
    TargetStatus,
    parse_time,
)
from dialerd.store import Store

CUSTOMER = "5e4a0680-804e-11ec-98a7-2fea5968d85b"


@dataclass(frozen=True)
class Check:
    """One invariant: whether it held, over how many items, and the first violations."""

    name: str
    ok: bool
    count: int
    detail: str = ""


async def _targets(store: Store, outdial_id: str) -> list[OutdialTarget]:
    found: list[OutdialTarget] = []
    token = ""
    while True:
        page = await store.list_targets(outdial_id, 100, token)
        found.extend(page.result)
        if not page.next_page_token:
            return found
        token = page.next_page_token


async def _campaigncalls(store: Store, campaign_id: str) -> list[Campaigncall]:
    found: list[Campaigncall] = []
    token = ""
    while True:
        page = await store.list_campaigncalls(CUSTOMER, campaign_id, 100, token)
        found.extend(page.result)
        if not page.next_page_token:
            return found
        token = page.next_page_token


def ledger_ids(ledgers: list[Path]) -> list[str]:
    """Campaigncall ids of every origination the simulated backends placed."""
    ids: list[str] = []
    for ledger in ledgers:
        if ledger.exists():
            for line in ledger.read_text().splitlines():
                if line.strip():
                    ids.append(str(json.loads(line)["campaigncall_id"]))
    return ids


def _check(name: str, count: int, violations: list[str]) -> Check:
    return Check(name, not violations, count, "; ".join(violations[:3]))


async def check_all(
    store: Store,
    campaign_id: str,
    outdial_id: str,
    max_try_counts: tuple[int, ...],
    ledgers: list[Path],
) -> list[Check]:
    """Every invariant of issue 6 for one campaign."""
    campaign = await store.get_campaign(CUSTOMER, campaign_id)
    targets = await _targets(store, outdial_id)
    calls = await _campaigncalls(store, campaign_id)
    checks = [
        _check(
            "campaign stopped by itself",
            1,
            [] if campaign and campaign.status == CampaignStatus.STOP else [f"{campaign}"],
        ),
        _check(
            "every target done",
            len(targets),
            [t.id for t in targets if t.status != TargetStatus.DONE],
        ),
        _check(
            "no attempt left dialing or progressing",
            len(calls),
            [c.id for c in calls if c.status != CampaigncallStatus.DONE],
        ),
    ]
    per_slot = Counter((c.outdial_target_id, c.destination_index) for c in calls)
    over, mismatched = [], []
    for target in targets:
        for slot, limit in enumerate(max_try_counts):
            made = per_slot[(target.id, slot)]
            if made > limit:
                over.append(f"{target.id} slot {slot}: {made} > {limit}")
            if made != target.try_counts[slot]:
                mismatched.append(f"{target.id} slot {slot}: {made} != {target.try_counts[slot]}")
    checks.append(_check("attempts per slot <= max_try_count_N", len(targets) * 5, over))
    checks.append(_check("attempts per slot == try_count_N", len(targets) * 5, mismatched))

    originated = ledger_ids(ledgers)
    twice = [call_id for call_id, n in Counter(originated).items() if n > 1]
    checks.append(_check("no campaigncall originated twice", len(originated), twice))
    known = {c.id for c in calls}
    unpersisted = [call_id for call_id in set(originated) if call_id not in known]
    checks.append(_check("every origination persisted first", len(originated), unpersisted))

    overlapping: list[str] = []
    by_target: dict[str, list[Campaigncall]] = defaultdict(list)
    for call in calls:
        by_target[call.outdial_target_id].append(call)
    for target_id, attempts in by_target.items():
        attempts.sort(key=lambda c: (c.tm_create, c.try_count, c.destination_index))
        for before, after in itertools.pairwise(attempts):
            ended = parse_time(before.tm_update) if before.tm_update else None
            if ended is None or ended > parse_time(after.tm_create):
                overlapping.append(f"{target_id}: {before.id} still live at {after.id}")
    checks.append(_check("never two live attempts on one target", len(calls), overlapping))
    return checks
