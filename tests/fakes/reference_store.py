"""A pure, in-memory reference of the target and attempt part of the Store port.

It is the reference of what the stores *index* and of their atomic steps (base.py's
docstrings, behaviour.md §4-§6), not of the dialing rules: every rule comes from
``dialerd.core.targets``, exactly as a store must call it. Beside each target it keeps
the ``Placement`` the core decided, and the placement a claim found (``before``, for a
try given back). No I/O, no clock: the caller passes ``now``.

The conformance model (``tests/integration/store/test_store_model.py``) applies the same
random histories to it and to every backend and compares their answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import msgspec

from dialerd.core import dialed
from dialerd.core.targets import (
    Claim,
    Held,
    NumberState,
    Placement,
    Queue,
    RetryRule,
    decide_claim,
    exhausted,
    new_attempt,
    place_after,
    place_new,
    with_skipped,
)
from dialerd.insight import TargetCounts
from dialerd.model import (
    Campaign,
    Campaigncall,
    CampaigncallResult,
    CampaigncallStatus,
    CampaignStatus,
    DncNumber,
    Outdial,
    OutdialTarget,
    Outplan,
    Page,
    TargetStatus,
    format_time,
)
from dialerd.store.base import (
    MAX_PAGE_SIZE,
    AttemptPlan,
    CampaignNotRunning,
    Conflict,
    FinishResult,
    StoreError,
)

DIALABLE = (Queue.READY, Queue.WAITING)


@dataclass
class Entry:
    """A stored target: its creation order, the target, and its placement."""

    seq: int
    target: OutdialTarget
    placement: Placement
    # The placement a claim found, while the target is progressing (for a give-back).
    before: Placement | None = None

    @property
    def deleted(self) -> bool:
        return self.target.tm_delete is not None

    @property
    def shown(self) -> OutdialTarget:
        """The target as a store answers it: with why its placement holds it."""
        placement = self.placement
        if not placement.held:
            return self.target
        due = format_time(placement.due) if placement.queue == Queue.WAITING else ""
        return msgspec.structs.replace(
            self.target, hold_reason=placement.held.value, tm_next_try=due
        )


class ReferenceStore:
    """What a store answers, kept in dicts and lists (targets in creation order)."""

    backend = "reference"

    def __init__(self) -> None:
        self.campaigns: dict[str, Campaign] = {}
        self.outplans: dict[str, Outplan] = {}
        self.outdials: dict[str, Outdial] = {}
        self.targets: dict[str, Entry] = {}
        self.by_outdial: dict[str, list[Entry]] = {}
        self.campaigncalls: dict[str, Campaigncall] = {}
        self.dnc: dict[str, set[str]] = {}  # customer -> listed E.164 numbers
        self._seq = 0

    async def add_dnc_numbers(self, entries: Sequence[DncNumber]) -> list[DncNumber]:
        for entry in entries:
            self.dnc.setdefault(entry.customer_id, set()).add(entry.number)
        return list(entries)

    def _numbers(
        self, customer_id: str, target: OutdialTarget, region: str | None
    ) -> dict[str, NumberState]:
        """What a store reads of the target's numbers (every reading): listed or not."""
        listed = self.dnc.get(customer_id, set())
        return {
            number: NumberState(listed=number in listed)
            for number in dialed.numbers_of(target.destinations, region)
        }

    # -- the resources the attempts need ------------------------------------------------
    async def create_campaign(self, campaign: Campaign) -> Campaign:
        if campaign.id in self.campaigns:
            raise Conflict(campaign.id)
        self.campaigns[campaign.id] = campaign
        return campaign

    async def update_campaign(self, campaign: Campaign) -> Campaign:
        if campaign.id not in self.campaigns:
            raise StoreError(campaign.id)
        self.campaigns[campaign.id] = campaign
        return campaign

    async def create_outplan(self, outplan: Outplan) -> Outplan:
        if outplan.id in self.outplans:
            raise Conflict(outplan.id)
        self.outplans[outplan.id] = outplan
        return outplan

    async def update_outplan(self, outplan: Outplan) -> Outplan:
        if outplan.id not in self.outplans:
            raise StoreError(outplan.id)
        self.outplans[outplan.id] = outplan
        return outplan

    async def get_outplan(self, customer_id: str | None, outplan_id: str) -> Outplan | None:
        outplan = self.outplans.get(outplan_id)
        if outplan is None or (customer_id is not None and outplan.customer_id != customer_id):
            return None
        return outplan

    async def create_outdial(self, outdial: Outdial) -> Outdial:
        if outdial.id in self.outdials:
            raise Conflict(outdial.id)
        self.outdials[outdial.id] = outdial
        return outdial

    # -- targets ----------------------------------------------------------------------------
    async def create_targets(self, targets: Sequence[OutdialTarget]) -> int:
        """All or none, in the given order (which becomes their creation order)."""
        ids = [target.id for target in targets]
        if len(set(ids)) != len(ids) or any(id_ in self.targets for id_ in ids):
            raise Conflict("a target id exists")
        for target in targets:
            self._seq += 1
            entry = Entry(self._seq, target, place_new(target))
            self.targets[target.id] = entry
            self.by_outdial.setdefault(target.outdial_id, []).append(entry)
        return len(targets)

    def _entry(self, outdial_id: str | None, target_id: str) -> Entry | None:
        entry = self.targets.get(target_id)
        if entry is None or entry.deleted:
            return None
        if outdial_id is not None and entry.target.outdial_id != outdial_id:
            return None
        return entry

    async def get_target(self, outdial_id: str, target_id: str) -> OutdialTarget | None:
        entry = self._entry(outdial_id, target_id)
        return None if entry is None else entry.shown

    async def delete_target(
        self, outdial_id: str, target_id: str, now: datetime
    ) -> OutdialTarget | None:
        entry = self._entry(outdial_id, target_id)
        if entry is None:
            return None
        if entry.target.status == TargetStatus.PROGRESSING:
            raise Conflict(f"target {target_id} is being dialed and cannot be deleted")
        stamp = format_time(now)
        entry.target = msgspec.structs.replace(entry.target, tm_update=stamp, tm_delete=stamp)
        entry.placement = msgspec.structs.replace(entry.placement, queue=Queue.NONE)
        return entry.target

    def alive(self, outdial_id: str) -> list[Entry]:
        """The outdial's not-deleted targets, in creation order."""
        return [entry for entry in self.by_outdial.get(outdial_id, []) if not entry.deleted]

    async def list_targets(
        self, outdial_id: str, page_size: int = MAX_PAGE_SIZE, page_token: str = ""
    ) -> Page[OutdialTarget]:
        """Every not-deleted target, newest first (``tm_create`` then id, descending), in
        one page: the model compares whole listings, never page boundaries."""
        del page_size, page_token
        ordered = sorted(
            (entry.shown for entry in self.alive(outdial_id)),
            key=lambda target: (target.tm_create, target.id),
            reverse=True,
        )
        return Page(result=ordered)

    # -- the engine's atomic steps -------------------------------------------------------
    async def start_attempt(self, plan: AttemptPlan) -> Campaigncall | None:
        campaign, outplan, now = plan.campaign, plan.outplan, plan.now
        stored = self.campaigns.get(campaign.id)
        if stored is None or stored.status != CampaignStatus.RUN:
            raise CampaignNotRunning(campaign.id)
        if plan.campaigncall_id in self.campaigncalls:
            raise Conflict(f"campaigncall {plan.campaigncall_id} already exists")
        stamp = format_time(now)
        # Waiting targets whose due has come join the ready ones.
        for entry in self.alive(campaign.outdial_id):
            entry.placement = entry.placement.ready_at(now)
        # The ready targets in (touched, creation) order: the head is the first. A target
        # the core does not claim leaves the ready ones (done or waiting), so the next
        # head is the next of this order.
        ready = sorted(
            (
                entry
                for entry in self.alive(campaign.outdial_id)
                if entry.placement.queue == Queue.READY
            ),
            key=lambda entry: (entry.placement.touched, entry.seq),
        )
        for head in ready:
            placement = head.placement.ready_at(now)
            region = dialed.region_of(outplan.source)
            decision = decide_claim(
                head.target,
                placement,
                outplan.max_try_counts,
                now,
                rules=plan.rules,
                numbers=self._numbers(campaign.customer_id, head.target, region),
                region=region,
            )
            head.target = with_skipped(head.target, decision.skipped)
            if not isinstance(decision, Claim):
                # Spent under this outplan: written as the core decided, and on to the next.
                head.placement = decision
                head.target = msgspec.structs.replace(
                    head.target, status=decision.status, tm_update=stamp
                )
                continue
            break
        else:
            return None
        slot = decision.slot
        head.before = placement
        head.placement = msgspec.structs.replace(
            placement, status=TargetStatus.PROGRESSING, queue=Queue.NONE
        )
        head.target = msgspec.structs.replace(
            head.target,
            status=TargetStatus.PROGRESSING,
            tm_update=stamp,
            **{f"try_count_{slot}": decision.try_count},
        )
        destination = head.target.destinations[slot]
        assert destination is not None
        campaigncall = new_attempt(
            campaign,
            outplan,
            campaigncall_id=plan.campaigncall_id,
            reference_id=plan.reference_id,
            activeflow_id=plan.activeflow_id,
            target_id=head.target.id,
            destination=destination,
            slot=slot,
            try_count=decision.try_count,
            now=stamp,
        )
        self.campaigncalls[campaigncall.id] = campaigncall
        return campaigncall

    async def get_campaigncall(
        self, customer_id: str | None, campaigncall_id: str
    ) -> Campaigncall | None:
        campaigncall = self.campaigncalls.get(campaigncall_id)
        if campaigncall is None or campaigncall.tm_delete is not None:
            return None
        if customer_id is not None and campaigncall.customer_id != customer_id:
            return None
        return campaigncall

    async def mark_answered(self, campaigncall_id: str, now: datetime) -> Campaigncall | None:
        current = self.campaigncalls.get(campaigncall_id)
        if current is None or current.status != CampaigncallStatus.DIALING:
            return None
        answered = msgspec.structs.replace(
            current, status=CampaigncallStatus.PROGRESSING, tm_update=format_time(now)
        )
        self.campaigncalls[campaigncall_id] = answered
        return answered

    async def finish_attempt(
        self,
        campaigncall_id: str,
        result: CampaigncallResult,
        reason: str,
        rule: RetryRule,
        now: datetime,
        *,
        give_back_try: bool = False,
    ) -> FinishResult | None:
        current = self.campaigncalls.get(campaigncall_id)
        if current is None:
            return None
        entry = self._entry(None, current.outdial_target_id)
        if current.status == CampaigncallStatus.DONE:
            target = None if entry is None else entry.shown
            return FinishResult(finished=False, campaigncall=current, target=target)
        stamp = format_time(now)
        finished = msgspec.structs.replace(
            current, status=CampaigncallStatus.DONE, result=result, reason=reason, tm_update=stamp
        )
        self.campaigncalls[campaigncall_id] = finished
        if entry is None:
            return FinishResult(finished=True, campaigncall=finished, target=None)
        if entry.target.status != TargetStatus.PROGRESSING:
            return FinishResult(finished=True, campaigncall=finished, target=entry.shown)
        assert entry.before is not None
        settled = place_after(
            entry.target,
            current.destination_index,
            result,
            rule,
            now,
            reason=reason,
            give_back=give_back_try,
            before=entry.before,
        )
        counts = settled.try_counts
        entry.placement = settled.placement
        entry.before = None
        entry.target = msgspec.structs.replace(
            entry.target,
            status=settled.placement.status,
            tm_update=stamp,
            try_count_0=counts[0],
            try_count_1=counts[1],
            try_count_2=counts[2],
            try_count_3=counts[3],
            try_count_4=counts[4],
        )
        return FinishResult(finished=True, campaigncall=finished, target=entry.shown)

    async def active_attempts(self, campaign_id: str | None = None) -> list[Campaigncall]:
        return [
            campaigncall
            for campaigncall in self.campaigncalls.values()
            if campaigncall.status != CampaigncallStatus.DONE
            and (campaign_id is None or campaigncall.campaign_id == campaign_id)
        ]

    async def count_dialing(self, campaign_id: str) -> int:
        return sum(
            1
            for campaigncall in self.campaigncalls.values()
            if campaigncall.status == CampaigncallStatus.DIALING
            and campaigncall.campaign_id == campaign_id
        )

    async def target_counts(self, outdial_id: str, now: datetime) -> TargetCounts:
        """base.py: idle and not waiting at ``now``, idle and waiting (due later),
        progressing, done."""
        due = waiting = progressing = done = 0
        held: dict[str, int] = {}
        for entry in self.alive(outdial_id):
            status, placement = entry.target.status, entry.placement
            if status == TargetStatus.PROGRESSING:
                progressing += 1
            elif status == TargetStatus.DONE:
                done += 1
                if placement.held == Held.DNC:
                    held[Held.DNC.value] = held.get(Held.DNC.value, 0) + 1
            elif placement.queue == Queue.WAITING and placement.due > now:
                waiting += 1
                held[placement.held.value] = held.get(placement.held.value, 0) + 1
            else:
                due += 1
        return TargetCounts(
            idle_due=due, idle_waiting=waiting, progressing=progressing, done=done, held=held
        )

    async def outdial_exhausted(self, campaign_id: str, outdial_id: str) -> bool:
        entries = self.alive(outdial_id)
        return exhausted(
            dialable=any(entry.placement.queue in DIALABLE for entry in entries),
            progressing=any(entry.target.status == TargetStatus.PROGRESSING for entry in entries),
            active=bool(await self.active_attempts(campaign_id)),
        )

    def placement_of(self, target_id: str) -> Placement:
        """The placement kept beside a target (for tests of the reference itself)."""
        return self.targets[target_id].placement
