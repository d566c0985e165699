"""What becomes of a target: behaviour.md §4 (which target, which number) and §5 (the
end of an attempt), decided here and nowhere else.

The stores keep a target's *placement* beside it and index it; they never evaluate a
rule. A placement says whether the target can be dialed (``queue``), in which order
(``touched``, then creation order), from when (``due``), until when (``until``) and on
which slot. The three moments the rules are applied:

- a target is created (or imported): :func:`place_new`;
- a claim reaches a target that is ready: :func:`decide_claim` returns the slot to dial
  and its new try count, or a new placement when the target cannot be dialed under the
  claiming campaign's outplan after all (its counts were lowered, or it is shared with a
  campaign that allows fewer tries);
- an attempt ends: :func:`place_after`.

A store's claim pops the ready target first in ``(touched, creation)`` order among those
whose ``due`` has come, and may take a short cut when no calling hours apply: when the
placement's ``slot`` still has a try left under the claim's outplan, ``until`` has not
passed and the slot's number is neither listed, locked nor at its day's attempts, the
decision is that slot (this is what :func:`decide_claim` returns then). Anything else
goes through :func:`decide_claim`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Final

import msgspec

from dialerd.core import dialed, hours
from dialerd.core.hours import CallingHours
from dialerd.model import (
    NIL_UUID,
    Address,
    Campaign,
    Campaigncall,
    CampaigncallResult,
    CampaigncallStatus,
    CampaignType,
    HangupReason,
    OutcomeRetry,
    OutdialTarget,
    Outplan,
    ReferenceType,
    SkippedDestination,
    TargetStatus,
    parse_time,
)

NO_SLOT = -1


class Queue(enum.IntEnum):
    """Which index of dialable targets a target is in (the stores' ``pick``)."""

    NONE = 0  # not dialable: progressing, done, deleted, or nothing to dial
    READY = 1  # dialable from ``due``; taken in (touched, creation) order
    WAITING = 3  # dialable from ``due``, which has not come yet


class Held(enum.StrEnum):
    """Why a target that is not dialed now waits (``""``: it does not)."""

    NONE = ""
    RETRY_INTERVAL = "retry_interval"
    NOTHING_TO_DIAL = "nothing_to_dial"
    CALLING_HOURS = "calling_hours"
    UNKNOWN_ZONE = "unknown_zone"
    # Its number had an abandoned call: not called again before the lockout ends.
    ABANDONED_LOCKOUT = "abandoned_lockout"
    # Its number had the customer's most attempts for the day (UTC).
    DAILY_LIMIT = "daily_limit"
    # On a done target: its numbers left to dial are all on the do-not-call list.
    DNC = "dnc"


class CallingRules(msgspec.Struct, frozen=True, kw_only=True):
    """The rules a regulator asks for, as they apply to one customer's campaigns
    (behaviour.md §10): calling hours (None: none configured), how long a number is
    not called after an abandoned call (None: no lockout), and at most how many
    attempts a number gets a day across the customer's campaigns (None: no limit)."""

    hours: CallingHours | None = None
    abandoned_lockout: timedelta | None = None
    daily_attempts: int | None = None

    def lockout_after(self, reason: str, now: datetime) -> datetime | None:
        """Until when a number is locked after an attempt that ended with ``reason``."""
        if reason != HangupReason.ABANDONED or not self.abandoned_lockout:
            return None
        return now + self.abandoned_lockout


class NumberState(msgspec.Struct, frozen=True, kw_only=True):
    """What a store knows of one number of the customer when a claim reaches a target
    (read in the claim's atomic step), keyed by each E.164 reading of what the trunk
    dials (``dialerd.core.dialed.readings``)."""

    listed: bool = False  # on the customer's do-not-call list
    locked_until: datetime | None = None  # after an abandoned call
    attempts_today: int = 0  # attempts to it this UTC day, all the customer's campaigns


def state_of(
    number: str, region: str | None, known: Mapping[str, NumberState]
) -> NumberState | None:
    """A destination's state: every reading of it counts (listed if any is, locked as
    long as the longest, the most attempts of any)."""
    states = [known[key] for key in dialed.readings(number, region) if key in known]
    if not states:
        return None
    if len(states) == 1:
        return states[0]
    locks = [state.locked_until for state in states if state.locked_until is not None]
    return NumberState(
        listed=any(state.listed for state in states),
        locked_until=max(locks) if locks else None,
        attempts_today=max(state.attempts_today for state in states),
    )


def day_of(moment: datetime) -> str:
    """The UTC day an attempt counts in: ``YYYY-MM-DD``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d")


# A callee whose zone is unknown (and no fallback), or whose hours open nowhere in the
# next 14 days, is looked at again this much later (its ``tm_next_try``: a re-check,
# not an opening), so a configuration change takes effect without a restart.
RECHECK: Final = timedelta(hours=1)


class Placement(msgspec.Struct, frozen=True, kw_only=True):
    """What a store keeps and indexes for a target: the rules' last word on it."""

    status: TargetStatus
    queue: Queue
    # The order among ready targets: its creation, then the end of its last attempt.
    touched: datetime
    # From when it may be dialed; until when (None: no limit) a ready placement holds.
    due: datetime
    until: datetime | None = None
    slot: int = NO_SLOT
    held: Held = Held.NONE
    # Set by a claim's decision: the slots it stepped over because their number is
    # listed (do-not-call); the target records them (``skipped_destinations``).
    skipped: tuple[int, ...] = ()

    def ready_at(self, now: datetime) -> Placement:
        """The same placement, in the ready queue if its ``due`` has come by ``now``."""
        if self.queue == Queue.WAITING and self.due <= now:
            return msgspec.structs.replace(self, queue=Queue.READY, held=Held.NONE)
        return self


class RetryRule(msgspec.Struct, frozen=True):
    """What an outplan says about retries: the tries per slot and the wait between."""

    max_try_counts: tuple[int, int, int, int, int]
    try_interval_ms: int = 0
    by_outcome: dict[str, OutcomeRetry] = {}

    @classmethod
    def of(cls, outplan: Outplan | None) -> RetryRule:
        """The outplan's rule; none left (no retry at all) once the outplan is gone."""
        if outplan is None:
            return cls((0, 0, 0, 0, 0))
        return cls(outplan.max_try_counts, outplan.try_interval, outplan.retry_by_outcome)

    def after(self, reason: str, tries_so_far: int) -> int | None:
        """The wait (ms) before a retry after an attempt that ended with ``reason``, or
        None when that outcome's ``max_tries`` allows no more attempts."""
        own = self.by_outcome.get(reason)
        if own is None:
            return self.try_interval_ms
        if own.max_tries is not None and tries_so_far >= own.max_tries:
            return None
        return self.try_interval_ms if own.try_interval is None else own.try_interval


class Claim(msgspec.Struct, frozen=True):
    """Dial ``slot``; the target's ``try_count_<slot>`` becomes ``try_count``;
    ``skipped``: the slots stepped over because their number is listed."""

    slot: int
    try_count: int
    skipped: tuple[int, ...] = ()


def with_skipped(target: OutdialTarget, skipped: Sequence[int]) -> OutdialTarget:
    """The target recording which of its numbers a claim's decision skipped and why."""
    return msgspec.structs.replace(
        target,
        skipped_destinations=tuple(
            SkippedDestination(destination_index=slot, reason=Held.DNC.value) for slot in skipped
        ),
    )


class Settled(msgspec.Struct, frozen=True):
    """The end of an attempt: the target's try counts and placement afterwards."""

    try_counts: tuple[int, int, int, int, int]
    placement: Placement


def has_destination(address: Address | None) -> bool:
    """A slot counts only if its address has a target to dial."""
    return address is not None and not address.is_empty


def next_slot(
    destinations: Sequence[Address | None],
    try_counts: Sequence[int],
    max_try_counts: Sequence[int] | None,
) -> int | None:
    """The first slot 0..4 with a destination and tries left (any count when
    ``max_try_counts`` is None): all tries of slot 0 come before slot 1."""
    for slot, (address, tried) in enumerate(zip(destinations, try_counts, strict=True)):
        if has_destination(address) and (max_try_counts is None or tried < max_try_counts[slot]):
            return slot
    return None


def _idle(touched: datetime, due: datetime, slot: int | None, now: datetime) -> Placement:
    if slot is None:
        return Placement(
            status=TargetStatus.IDLE,
            queue=Queue.NONE,
            touched=touched,
            due=due,
            held=Held.NOTHING_TO_DIAL,
        )
    waiting = due > now
    return Placement(
        status=TargetStatus.IDLE,
        queue=Queue.WAITING if waiting else Queue.READY,
        touched=touched,
        due=due,
        slot=slot,
        held=Held.RETRY_INTERVAL if waiting else Held.NONE,
    )


def _done(touched: datetime) -> Placement:
    return Placement(status=TargetStatus.DONE, queue=Queue.NONE, touched=touched, due=touched)


def place_new(target: OutdialTarget) -> Placement:
    """A created or imported target: dialable at once, in creation order, when it has a
    number to dial (its first slot with one; the claim checks the outplan's limits)."""
    created = parse_time(target.tm_create)
    if target.status != TargetStatus.IDLE or target.tm_delete is not None:
        status = target.status
        return Placement(status=status, queue=Queue.NONE, touched=created, due=created)
    slot = next_slot(target.destinations, target.try_counts, None)
    return _idle(created, created, slot, created)


def decide_claim(
    target: OutdialTarget,
    placement: Placement,
    max_try_counts: Sequence[int],
    now: datetime,
    *,
    rules: CallingRules | None = None,
    numbers: Mapping[str, NumberState] | None = None,
    region: str | None = None,
) -> Claim | Placement:
    """A claim reached this ready target: the slot to dial, or what the target becomes
    instead.

    The slot is the placement's (decided when the target was created or its last
    attempt ended) while it still has a try left under this outplan; else the first
    slot with one.

    Slots whose number is on the do-not-call list are skipped: ``numbers`` is what the
    store knows of each E.164 reading of the target's numbers as the trunk dials them
    under the dialing rules of ``region`` (``dialerd.core.dialed``). With no slot left
    the target is done (held ``dnc`` if a listed number is why): it is never left idle
    with nothing to dial. A target whose number is locked after an abandoned call, has
    had its attempts for the day, or whose callee is outside the calling hours waits in
    the waiting queue until that ends, so it holds up no other target. The decision
    names the slots skipped as listed (``skipped``).
    """
    known = numbers or {}
    states = [
        None if number is None or number.is_empty else state_of(number.target, region, known)
        for number in target.destinations
    ]
    spent = list(target.try_counts)
    listed: list[int] = []  # listed, with tries left: skipped if stepped over
    any_listed = False
    for n, state in enumerate(states):
        if state is not None and state.listed:
            any_listed = True
            if _dialable(target, spent, max_try_counts, n):
                listed.append(n)
            spent[n] = max(spent[n], max_try_counts[n])
    slot: int | None = placement.slot
    skipped: tuple[int, ...] = ()
    if not (
        0 <= placement.slot < len(spent)
        and _dialable(target, spent, max_try_counts, placement.slot)
    ):
        slot = next_slot(target.destinations, spent, max_try_counts)
        skipped = tuple(n for n in listed if slot is None or n < slot)
    if slot is None:
        done = _done(placement.touched)
        if any_listed:
            return msgspec.structs.replace(done, held=Held.DNC, skipped=skipped)
        return msgspec.structs.replace(done, skipped=skipped)
    address = target.destinations[slot]
    if rules is not None and address is not None:
        wait = _wait(target, address.target, states[slot], rules, now, region)
        if wait is not None:
            return Placement(
                status=TargetStatus.IDLE,
                queue=Queue.WAITING,
                touched=placement.touched,
                due=wait[0],
                slot=slot,
                held=wait[1],
                skipped=skipped,
            )
    return Claim(slot=slot, try_count=target.try_counts[slot] + 1, skipped=skipped)


def _dialable(
    target: OutdialTarget, spent: Sequence[int], max_try_counts: Sequence[int], slot: int
) -> bool:
    return has_destination(target.destinations[slot]) and spent[slot] < max_try_counts[slot]


def _wait(
    target: OutdialTarget,
    number: str,
    state: NumberState | None,
    rules: CallingRules,
    now: datetime,
    region: str | None,
) -> tuple[datetime, Held] | None:
    """Until when and why the number may not be dialed now (None: it may).

    A callee outside its hours waits for the next opening; an unknown zone, or hours
    that open nowhere in ``hours.HORIZON``, are looked at again ``RECHECK`` later
    (``tm_next_try`` is then that re-check, not an opening)."""
    if state is not None and state.locked_until is not None and state.locked_until > now:
        return state.locked_until, Held.ABANDONED_LOCKOUT
    if (
        state is not None
        and rules.daily_attempts is not None
        and state.attempts_today >= rules.daily_attempts
    ):
        midnight = datetime.combine(now.astimezone(UTC).date(), time(), tzinfo=UTC)
        return midnight + timedelta(days=1), Held.DAILY_LIMIT
    if rules.hours is not None:
        zones = hours.callee_zones(
            dialed.readings(number, region),
            hours.zone_in_target_data(target.data),
            trust_data_zone=rules.hours.trust_data_zone,
        )
        window = hours.calling_window(rules.hours, zones, now)
        if not window.allowed:
            if window.reason == "unknown_zone":
                return now + RECHECK, Held.UNKNOWN_ZONE
            return window.opens or now + RECHECK, Held.CALLING_HOURS
    return None


def place_after(
    target: OutdialTarget,
    slot: int,
    result: CampaigncallResult,
    rule: RetryRule,
    now: datetime,
    *,
    reason: str,
    give_back: bool,
    before: Placement,
) -> Settled:
    """The end of an attempt on ``slot`` of a progressing ``target`` (whose counts
    include this attempt's try).

    Success ends the target. A failure (its ``reason``) leaves it idle while a slot has
    tries left and the outplan's rule for that outcome allows another attempt, dialable
    the outcome's ``try_interval`` (else the outplan's) after the end; otherwise done
    (exhausted). With ``give_back``
    (a stop ended the call before it was answered) the try is undone and the target
    takes back the place it had before the claim (``before``).
    """
    counts = list(target.try_counts)
    if give_back and result != CampaigncallResult.SUCCESS:
        counts[slot] = max(0, counts[slot] - 1)
        return Settled(
            _counts(counts),
            _idle(before.touched, before.due, next_slot(target.destinations, counts, None), now),
        )
    if result == CampaigncallResult.SUCCESS:
        return Settled(_counts(counts), _done(now))
    following = next_slot(target.destinations, counts, rule.max_try_counts)
    wait = rule.after(reason, sum(counts))
    if following is None or wait is None:
        return Settled(_counts(counts), _done(now))
    due = now + timedelta(milliseconds=wait)
    return Settled(_counts(counts), _idle(now, due, following, now))


def _counts(counts: Sequence[int]) -> tuple[int, int, int, int, int]:
    return (counts[0], counts[1], counts[2], counts[3], counts[4])


def new_attempt(
    campaign: Campaign,
    outplan: Outplan,
    *,
    campaigncall_id: str,
    reference_id: str,
    activeflow_id: str,
    target_id: str,
    destination: Address,
    slot: int,
    try_count: int,
    now: str,
) -> Campaigncall:
    """The campaigncall a claim creates (behaviour.md §4): ``dialing``, on ``slot`` of
    the target, with the slot's new try count; a flow campaign's has no call."""
    is_flow = campaign.type == CampaignType.FLOW
    return Campaigncall(
        id=campaigncall_id,
        customer_id=campaign.customer_id,
        campaign_id=campaign.id,
        outplan_id=outplan.id,
        outdial_id=campaign.outdial_id,
        outdial_target_id=target_id,
        queue_id=campaign.queue_id,
        flow_id=NIL_UUID,
        activeflow_id=activeflow_id,
        reference_type=ReferenceType.FLOW if is_flow else ReferenceType.CALL,
        reference_id=NIL_UUID if is_flow else reference_id,
        status=CampaigncallStatus.DIALING,
        result=CampaigncallResult.NONE,
        source=outplan.source,
        destination=destination,
        destination_index=slot,
        try_count=try_count,
        tm_create=now,
        tm_update=None,
        tm_delete=None,
    )


def exhausted(*, dialable: bool, progressing: bool, active: bool) -> bool:
    """behaviour.md §6: no target is ready or waiting to be dialed, none of the outdial
    is progressing (under any campaign sharing it) and the campaign has no attempt."""
    return not (dialable or progressing or active)


def result_for(reason: HangupReason) -> CampaigncallResult:
    """Only an answered call that ended normally is a success."""
    return CampaigncallResult.SUCCESS if reason == HangupReason.NORMAL else CampaigncallResult.FAIL


def gives_try_back(reason: HangupReason, *, answered: bool, stopped: bool) -> bool:
    """A call that a stop cancelled before it was answered never reached anyone: its
    try is not spent (the campaigncall keeps the record), so a later run dials it."""
    return stopped and not answered and reason == HangupReason.CANCELLED
