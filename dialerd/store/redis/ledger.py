"""The Redis backend's dial ledger and leases: the engine's atomic steps (claims,
answers, finishes), its counts, exhaustion, abandonment and lock pruning; one script
each."""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from datetime import datetime
from typing import Any

import msgspec
from redis.exceptions import NoScriptError

from dialerd.core import dialed
from dialerd.core.abandonment import DayCount
from dialerd.core.targets import (
    CallingRules,
    Claim,
    Held,
    NumberState,
    Queue,
    RetryRule,
    day_of,
    decide_claim,
    exhausted,
    place_after,
    with_skipped,
)
from dialerd.insight import TargetCounts
from dialerd.model import (
    NIL_UUID,
    Campaigncall,
    CampaigncallResult,
    CampaignType,
    OutdialTarget,
    TargetStatus,
    format_time,
)
from dialerd.store.base import (
    AttemptEnd,
    AttemptPlan,
    CampaignNotRunning,
    Fence,
    FinishResult,
    LeaseLost,
    StoreUnavailable,
)
from dialerd.store.documents import (
    CAMPAIGNCALL,
    OUTPLAN,
    encode,
)
from dialerd.store.redis.connection import EVENTS_LEASE, RedisConnection
from dialerd.store.redis.fields import (
    CLAIMS_KEPT,
    CLAIMS_PER_CALL,
    FINISH_ATTEMPTS,
    FINISHES_PER_CALL,
    MAX_ROUNDS,
    PROMOTE_STEP,
    PRUNE_CHUNK,
    UNCHOSEN,
    decode_target,
    fence_args,
    from_micros,
    held_target,
    max_counts_arg,
    micros,
    placeholder_campaigncall,
    placement_args,
    settled_body,
    settled_target,
    stored_placement,
)

# The finish script's decision fields when there is no decision (always eight).
NO_DECISION: tuple[str, ...] = ("0", "", "", "", "", "", "", "")
# One end's fields for the finish script, packed as one argument (a msgpack array of
# strings, decoded once by the script: cheaper to send than a field per argument).
_pack = msgspec.msgpack.Encoder().encode


# The campaign's and its outplan's bodies as a tick read them last, while
# ``RedisStore.start_attempts_if_unchanged`` claims: the claim script checks them first.
AS_READ: ContextVar[tuple[bytes, bytes] | None] = ContextVar("dialerd_as_read", default=None)


class StaleRead(Exception):
    """The claim script found the campaign or its outplan changed since the tick's read
    (``AS_READ``): nothing claimed; their bodies as stored now (None: gone)."""

    def __init__(self, campaign: bytes | None, outplan: bytes | None) -> None:
        super().__init__("the campaign or its outplan changed since it was read")
        self.campaign, self.outplan = campaign, outplan


class _Changed:
    """``_finished``: the target changed since the decision was made."""


CHANGED = _Changed()


def _plan_ids(plan: AttemptPlan) -> str:
    """A plan after a claim call's first, as start.lua takes it: the ids its attempt
    differs by from the first's ("<id> <reference_id> <activeflow_id>")."""
    reference = NIL_UUID if plan.campaign.type == CampaignType.FLOW else plan.reference_id
    return f"{plan.campaigncall_id} {reference} {plan.activeflow_id}"


async def _raise(error: Exception) -> None:
    """An error a pipeline answered in place, raised (for ``_guard`` to translate)."""
    raise error


class RedisLedger(RedisConnection):
    """The ``Ledger`` and ``Leases`` ports on the Redis server."""

    async def _call_owner(self, campaigncall_id: str, fence: Fence | None) -> str:
        """The customer of an attempt: known here (claimed or read here), that of the
        fence's campaign, or its ``where`` key."""
        known = self._owners.get(campaigncall_id)
        if known is not None:
            return known
        if fence is not None and not fence.campaign_id.startswith(EVENTS_LEASE):
            return await self._owner(fence.campaign_id)
        return await self._owner(campaigncall_id)

    # -- the engine's atomic steps ----------------------------------------------------------
    async def start_attempt(self, plan: AttemptPlan) -> Campaigncall | None:
        """Claim the next eligible target of the campaign's outdial and create its attempt
        (``start_attempts`` of this one plan)."""
        claimed = await self.start_attempts((plan,))
        return claimed[0] if claimed else None

    async def start_attempts(self, plans: Sequence[AttemptPlan]) -> list[Campaigncall]:
        """The plans' claims, in order, until one finds no target ready.

        One script call claims up to ``CLAIMS_PER_CALL`` plans in the common case (each
        head's placement names a slot with tries left, and its number is a clear ``tel``
        number). When a head is not that, the script answers the claims made so far and
        hands the head and up to 99 ready targets behind it to ``decide_claim``, in
        order, with what the store knows of every reading of their numbers (read here:
        the claim re-checks the one it dials); the placements decided for those before
        the first dialable one are written in one script call that applies each only to
        the very target it was made on (same version, still ready), and the dialable one
        is claimed by the next claim call (which goes on with the plans after it),
        re-checked the same way. When more waiting targets are due than one call moves,
        they are all moved first (``promote.lua``), so the head is the one SQLite
        takes; a call that steps over a thousand staged targets is followed by one that
        goes on from there. Each plan goes on until a target is claimed or none is ready
        (at most ``MAX_ROUNDS`` rounds).
        """
        if not plans:
            return []
        first = plans[0]
        stamp = format_time(first.now)
        now = micros(first.now)
        outdial_id = first.campaign.outdial_id
        customer_id = first.campaign.customer_id
        region = dialed.region_of(first.outplan.source)
        # The short cut (the placement's slot) holds only when no calling hours apply:
        # those the core alone can tell ('' disables it: every head is decided here).
        rules = first.rules
        short_cut = rules is None or rules.hours is None
        limits = max_counts_arg(first.outplan.max_try_counts) if short_cut else ""
        fence = fence_args(first.fence)
        daily = "" if rules is None or rules.daily_attempts is None else rules.daily_attempts
        common = (now, limits, *fence, "0" if rules is None else "1", daily, day_of(first.now))
        # Checked by the first call only: the claims after it were made on them.
        as_read: tuple[bytes | str, bytes | str] = AS_READ.get() or ("", "")
        # One server: the claim script writes each attempt's where key in its own step; a
        # cluster has that key on another node, written here after the claim.
        where = "" if self.cluster else "1"
        claimed: list[Campaigncall] = []
        chosen: tuple[str | int | bytes, ...] = UNCHOSEN
        resume: str | bytes = ""
        rounds = 0
        while len(claimed) < len(plans) and rounds < MAX_ROUNDS:
            rounds += 1
            at = len(claimed)
            # The call's first plan as a body, the next ones by their ids only.
            body = encode(placeholder_campaigncall(plans[at], stamp))
            try:
                reply = await self._run(
                    "start",
                    body,
                    *common,
                    *chosen,
                    resume,
                    where,
                    *as_read,
                    *(_plan_ids(plan) for plan in plans[at + 1 : at + CLAIMS_PER_CALL]),
                    customer=customer_id,
                )
            except CampaignNotRunning:
                if not claimed:
                    raise
                break  # stopped since the claims before: the list ends there
            kind, heads, claims = reply
            if kind == b"reread":
                raise StaleRead(heads[0] or None, heads[1] or None)
            chosen, resume, as_read = UNCHOSEN, "", ("", "")
            for claim in claims:
                campaigncall = CAMPAIGNCALL.decode(claim[0])
                self._claims[campaigncall.id] = (campaigncall, [claim[2], claim[1], *claim[3:8]])
                claimed.append(campaigncall)
            if claims:
                rounds = 0
                # Where each attempt's keys are, for lookups by its id alone.
                if where:
                    for call in claimed[at:]:
                        self._own(call.id, customer_id)
                else:
                    await self._register(customer_id, *(call.id for call in claimed[at:]))
            if len(self._claims) > CLAIMS_KEPT:
                for _ in range(len(self._claims) - CLAIMS_KEPT):
                    self._claims.popitem(last=False)
            if kind == b"none":
                break
            if kind == b"promote":
                while (
                    await self._run("promote", outdial_id, now, customer=customer_id)
                    >= PROMOTE_STEP
                ):
                    pass
                continue
            if kind == b"more":
                resume = heads[0]
                continue
            if kind != b"decide":
                continue  # all claimed, the decided target changed, or ask again
            plan = plans[len(claimed)]
            read = [(head, decode_target(head[1])) for head in heads]
            known = await self._number_states(
                customer_id,
                [n for _, target in read for n in dialed.numbers_of(target.destinations, region)],
                with_rules=plan.rules is not None,
                day=day_of(plan.now),
            )
            # The heads in order: the first the core finds dialable is claimed, those
            # before it take the placements the core decided.
            placed: list[str | int | bytes] = []
            for head, target in read:
                target_id, version = head[0].decode(), head[2].decode()
                placement = stored_placement(target.status, Queue.READY, head[3:8], plan.now)
                decision = decide_claim(
                    target,
                    placement,
                    plan.outplan.max_try_counts,
                    plan.now,
                    rules=plan.rules,
                    numbers=known,
                    region=region,
                )
                if isinstance(decision, Claim):
                    address = target.destinations[decision.slot]
                    assert address is not None  # the core dials only a slot with one
                    chosen = (
                        target_id,
                        decision.slot,
                        decision.try_count,
                        version,
                        encode(list(dialed.readings(address.target, region))),
                        encode(list(decision.skipped)),
                    )
                    break
                decided = with_skipped(target, decision.skipped)
                placed += [
                    target_id,
                    version,
                    settled_body(decided, decision.status, stamp),
                    *placement_args(decision),
                ]
            if placed:
                await self._run("place", *placed, customer=customer_id)
        return claimed

    async def _number_states(
        self, customer_id: str, numbers: Sequence[str], *, with_rules: bool, day: str
    ) -> dict[str, NumberState]:
        """What the store knows of these numbers (E.164 readings) for ``decide_claim``:
        listed; with rules, locked until and attempts on ``day``."""
        unique = list(dict.fromkeys(numbers))
        if not unique:
            return {}
        client = self._connected()
        async with client.pipeline(transaction=False) as pipe:
            pipe.smismember(self._ckey(customer_id, "dnc", customer_id), unique)
            if with_rules:
                pipe.hmget(self._ckey(customer_id, "locks", customer_id), unique)
                pipe.hmget(self._ckey(customer_id, "attempts", customer_id, day), unique)
            replies = await self._guard(pipe.execute())
        listed: list[Any] = replies[0]
        locks: list[Any] = replies[1] if with_rules else [b""] * len(unique)
        today: list[Any] = replies[2] if with_rules else [0] * len(unique)
        return {
            number: NumberState(
                listed=bool(listed[n]),
                locked_until=from_micros(locks[n]) if locks[n] else None,
                attempts_today=int(today[n] or 0),
            )
            for n, number in enumerate(unique)
        }

    async def mark_answered(
        self, campaigncall_id: str, now: datetime, *, fence: Fence | None = None
    ) -> Campaigncall | None:
        """``dialing`` -> ``progressing``; ``None`` if the attempt is not ``dialing``."""
        customer = await self._call_owner(campaigncall_id, fence)
        body = await self._run(
            "answer", campaigncall_id, format_time(now), *fence_args(fence), customer=customer
        )
        return None if body is None else CAMPAIGNCALL.decode(body)

    async def mark_answered_many(
        self, answers: Sequence[tuple[str, Fence | None]], now: datetime
    ) -> list[Campaigncall | LeaseLost | None]:
        """The answer script of each (campaigncall id, fence) in one pipelined round trip
        (each one atomic, as ``mark_answered``'s); a fenced-off one is answered
        ``LeaseLost``."""
        if not answers:
            return []
        stamp = format_time(now)
        owners = [await self._call_owner(call_id, fence) for call_id, fence in answers]
        sha = self._scripts["answer"].sha
        async with self._connected().pipeline(transaction=False) as pipe:
            for (call_id, fence), owner in zip(answers, owners, strict=True):
                pipe.evalsha(sha, 1, self._tag(owner), self.prefix, call_id, stamp,
                             *fence_args(fence))  # fmt: skip
            replies = await self._guard(pipe.execute(raise_on_error=False))
        answered: list[Campaigncall | LeaseLost | None] = []
        for (call_id, fence), reply in zip(answers, replies, strict=True):
            try:
                if isinstance(reply, NoScriptError):
                    # The server lost its scripts: mark_answered loads them again.
                    answered.append(await self.mark_answered(call_id, now, fence=fence))
                    continue
                if isinstance(reply, Exception):
                    await self._guard(_raise(reply))
            except LeaseLost as lost:
                answered.append(lost)
                continue
            answered.append(None if reply is None else CAMPAIGNCALL.decode(reply))
        return answered

    async def finish_attempt(
        self,
        campaigncall_id: str,
        result: CampaigncallResult,
        reason: str,
        rule: RetryRule,
        now: datetime,
        *,
        fence: Fence | None = None,
        give_back_try: bool = False,
        calling_rules: CallingRules | None = None,
    ) -> FinishResult | None:
        """End an active attempt exactly once (behaviour.md §5).

        One script call when this instance made the claim (it remembers the target as
        the claim left it), else two: one reads the attempt and its target.
        ``place_after`` decides; the finish script ends the campaigncall and writes the
        decision in one step, only if the target is still at the version the decision
        was made on (else it is read again and decided again).
        """
        end = AttemptEnd(
            campaigncall_id=campaigncall_id,
            result=CampaigncallResult(result),
            reason=reason,
            rule=rule,
            now=now,
            fence=fence,
            give_back_try=give_back_try,
            calling_rules=calling_rules,
        )
        return await self._finish_end(end)

    async def _finish_end(self, end: AttemptEnd) -> FinishResult | None:
        """``finish_attempt`` of ``end``."""
        return await self._finish_one(end, self._claims.pop(end.campaigncall_id, None))

    async def _finish_one(
        self, end: AttemptEnd, remembered: tuple[Campaigncall, list[bytes]] | None
    ) -> FinishResult | None:
        """``end`` written alone (``finish_attempt``, and an end of a burst whose target
        changed meanwhile): decided and written again while the target keeps changing,
        up to ``FINISH_ATTEMPTS`` times; all of ``end`` (its answer too) each time."""
        for _ in range(FINISH_ATTEMPTS):
            packed, written = await self._finish_args(end, remembered)
            remembered = None
            customer = await self._call_owner(end.campaigncall_id, end.fence)
            (reply,) = await self._run("finish", packed, customer=customer)
            done = self._finished(reply, written)
            if isinstance(done, LeaseLost):
                raise done
            if not isinstance(done, _Changed):
                return done
        raise StoreUnavailable(
            f"the target of campaigncall {end.campaigncall_id} kept changing while it was "
            "being finished; try again"
        )

    async def finish_attempts(
        self, ends: Sequence[AttemptEnd]
    ) -> list[FinishResult | LeaseLost | None]:
        """The burst's ends in one finish script call per customer (up to
        ``FINISHES_PER_CALL`` ends a call; the calls pipelined: one round trip), each
        end as ``finish_attempt`` writes it and the customer's ends together in one
        step; an end whose target changed meanwhile is finished again on its own
        (``finish_attempt``)."""
        if not ends:
            return []
        prepared = [
            await self._finish_args(end, self._claims.pop(end.campaigncall_id, None))
            for end in ends
        ]
        # Each customer's ends, in order, a chunk per script call.
        by_owner: dict[str, list[int]] = {}
        for index, end in enumerate(ends):
            owner = await self._call_owner(end.campaigncall_id, end.fence)
            by_owner.setdefault(owner, []).append(index)
        chunks = [
            (owner, indexes[start : start + FINISHES_PER_CALL])
            for owner, indexes in by_owner.items()
            for start in range(0, len(indexes), FINISHES_PER_CALL)
        ]
        calls = [(owner, tuple(prepared[index][0] for index in chunk)) for owner, chunk in chunks]
        if len(calls) == 1:
            # One script call: no pipeline to build around it.
            owner, packed = calls[0]
            answers = [await self._run("finish", *packed, customer=owner)]
        else:
            answers = await self._run_each("finish", calls)
        replies: list[Any] = [None] * len(ends)
        for (_owner, chunk), answered in zip(chunks, answers, strict=True):
            for index, reply in zip(chunk, answered, strict=True):
                replies[index] = reply
        done: list[FinishResult | LeaseLost | None] = []
        for end, (_args, written), reply in zip(ends, prepared, replies, strict=True):
            finished = self._finished(reply, written)
            if isinstance(finished, _Changed):
                try:
                    finished = await self._finish_one(end, None)
                except LeaseLost as lost:
                    finished = lost
            done.append(finished)
        return done

    async def _finish_args(
        self, end: AttemptEnd, remembered: tuple[Campaigncall, list[bytes]] | None
    ) -> tuple[bytes, OutdialTarget | None]:
        """The finish script's argument for ``end``, packed (with the target as the claim
        left it when remembered, else as ``attempt.lua`` reads it now), and the target
        body the decision writes (None when there is no decision)."""
        now, reason = end.now, end.reason
        stamp = format_time(now)
        campaigncall: Campaigncall | None = None
        if remembered is not None:
            campaigncall, read = remembered
        else:
            customer = await self._call_owner(end.campaigncall_id, end.fence)
            read = await self._run("attempt", end.campaigncall_id, customer=customer)
            if read[0] == b"active":
                campaigncall = CAMPAIGNCALL.decode(read[1])
            read = read[2:]
        version = "-"
        decision: tuple[str, ...] = NO_DECISION
        written: OutdialTarget | None = None
        lock = ""
        locked_until = end.calling_rules.lockout_after(reason, now) if end.calling_rules else None
        if campaigncall is not None and locked_until is not None:
            lock = encode([micros(locked_until), *await self._readings_of(campaigncall)]).decode()
        if campaigncall is not None:
            # read: the target's version, body and placement before the claim.
            version = read[0].decode()
            if read[1]:
                target = decode_target(read[1])
                before = stored_placement(TargetStatus.IDLE, Queue.READY, read[2:7], now)
                settled = place_after(
                    target,
                    campaigncall.destination_index,
                    end.result,
                    end.rule,
                    now,
                    reason=reason,
                    give_back=end.give_back_try,
                    before=before,
                )
                placement = settled.placement
                written = settled_target(target, placement.status, stamp, settled.try_counts)
                letter, touched, due, until, slot, held = placement_args(placement)
                decision = (
                    "1",
                    encode(written).decode(),
                    letter,
                    str(touched),
                    str(due),
                    str(until),
                    str(slot),
                    held,
                )
        fenced, owner, token = fence_args(end.fence)
        fields = (
            end.campaigncall_id,
            end.result.value,
            reason,
            stamp,
            fenced,
            owner,
            str(token),
            version,
            lock,
            *decision,
            "1" if end.answered else "0",
        )
        return _pack(fields), written

    @staticmethod
    def _finished(
        reply: Any, written: OutdialTarget | None
    ) -> FinishResult | _Changed | LeaseLost | None:
        """The finish script's reply for one end: what ``finish_attempt`` answers, the
        ``LeaseLost`` it raises, or ``CHANGED`` (the target changed since the decision:
        read again, decide again)."""
        if reply[0] == b"changed":
            return CHANGED
        if reply[0] == b"lost":
            return LeaseLost(reply[1].decode())
        if reply[0] == b"none":
            return None
        after: OutdialTarget | None = None
        if len(reply) > 2:
            # The body is '' when it is the one written here.
            known = written if written is not None and not reply[2] else reply[2]
            after = held_target(known, *reply[3:6])
        return FinishResult(
            finished=reply[0] == b"done",
            campaigncall=CAMPAIGNCALL.decode(reply[1]),
            target=after,
        )

    async def _readings_of(self, campaigncall: Campaigncall) -> tuple[str, ...]:
        """The E.164 readings of the number an attempt dialed, under the dialing rules of
        the outplan it was claimed with (deleted or not), as the claim read it."""
        key = self._ckey(campaigncall.customer_id, "outplan", campaigncall.outplan_id)
        (body,) = await self._fields(key, "b")
        source = None if body is None else OUTPLAN.decode(body).source
        return dialed.readings(campaigncall.destination.target, dialed.region_of(source))

    async def prune_locks(self, now: datetime) -> int:
        """Drop the number locks that ended by ``now``: each customer's ``locks`` hash is
        read a page at a time and the script deletes a field only if it is still over."""
        client = self._connected()
        cutoff = micros(now)
        pruned = 0
        for customer_id in await self.customers():
            name = self._ckey(customer_id, "locks", customer_id)
            ended: list[bytes] = []
            async for field, value in client.hscan_iter(name, count=1000):
                if int(value) <= cutoff:
                    ended.append(field)
                if len(ended) >= PRUNE_CHUNK:
                    pruned += await self._run(
                        "prune", customer_id, cutoff, *ended, customer=customer_id
                    )
                    ended = []
            if ended:
                pruned += await self._run(
                    "prune", customer_id, cutoff, *ended, customer=customer_id
                )
        return pruned

    # -- campaign leases (expiry by the Redis server's clock) ------------------------------
    async def acquire_lease(
        self, campaign_id: str, owner: str, ttl: float, now: datetime
    ) -> Fence | None:
        """Take or renew the campaign's lease; ``now`` is unused (Redis keeps the time)."""
        customer = await self._owner(campaign_id)
        token = await self._run(
            "lease", campaign_id, owner, max(1, round(ttl * 1000)), customer=customer
        )
        return None if token is None else Fence(campaign_id, owner, int(token))

    async def release_lease(self, fence: Fence) -> None:
        """Give the lease up at once, if ``fence`` still holds it."""
        customer = await self._owner(fence.campaign_id)
        await self._run("release", fence.campaign_id, fence.owner, fence.token, customer=customer)

    async def lease_owner(self, campaign_id: str, now: datetime | None = None) -> str | None:
        """The owner of the campaign's valid lease, or None (``now`` is unused)."""
        key = self._ckey(await self._owner(campaign_id), "lease", campaign_id)
        owner = await self._guard(self._connected().hget(key, "owner"))
        if owner is None:
            return None
        return owner.decode() if isinstance(owner, bytes) else str(owner)

    async def count_dialing(self, campaign_id: str) -> int:
        """How many of the campaign's attempts are ``dialing``."""
        key = self._ckey(await self._owner(campaign_id), "dialing", campaign_id)
        return int(await self._guard(self._connected().scard(key)))

    async def add_abandonment(
        self, campaign_id: str, day: str, live: int, abandoned: int
    ) -> DayCount:
        """Add to the campaign's count of ``day`` (two fields of one hash, in one
        MULTI/EXEC); returns the day's new count."""
        key = self._ckey(await self._owner(campaign_id), "abandonment", campaign_id)
        async with self._connected().pipeline(transaction=True) as pipe:
            pipe.hincrby(key, f"{day}:live", int(live))
            pipe.hincrby(key, f"{day}:abandoned", int(abandoned))
            new_live, new_abandoned = await self._guard(pipe.execute())
        return DayCount(day=day, live=int(new_live), abandoned=int(new_abandoned))

    async def abandonment_days(self, campaign_id: str, since: str) -> list[DayCount]:
        """The campaign's counts of ``since`` and later days, oldest first."""
        key = self._ckey(await self._owner(campaign_id), "abandonment", campaign_id)
        fields = await self._guard(self._connected().hgetall(key))
        days: dict[str, dict[str, int]] = {}
        for field, value in fields.items():
            day, _, kind = (field.decode() if isinstance(field, bytes) else field).partition(":")
            if day >= since:
                days.setdefault(day, {})[kind] = int(value)
        return [
            DayCount(day=day, live=counts.get("live", 0), abandoned=counts.get("abandoned", 0))
            for day, counts in sorted(days.items())
        ]

    async def active_attempts(self, campaign_id: str | None = None) -> list[Campaigncall]:
        """Attempts ``dialing`` or ``progressing`` (of one campaign, or of all)."""
        campaigncalls: list[Campaigncall] = []
        if campaign_id is None:
            # Each customer's active set is on its own slot.
            calls = [(customer, ("campaigncall", "active")) for customer in await self._slots()]
            for bodies in await self._run_each("members", calls):
                campaigncalls += await self._decoded(CAMPAIGNCALL, bodies)
        else:
            customer = await self._owner(campaign_id)
            bodies = await self._run(
                "members", "campaigncall", f"active:{campaign_id}", customer=customer
            )
            campaigncalls = await self._decoded(CAMPAIGNCALL, bodies)
        for campaigncall in campaigncalls:
            self._own(campaigncall.id, campaigncall.customer_id)
        return sorted(campaigncalls, key=lambda call: (call.tm_create, call.id))

    async def target_counts(self, outdial_id: str, now: datetime) -> TargetCounts:
        """The outdial's targets by what can happen to them next (from its indexes):
        idle and not waiting at ``now`` (ready, due, or with nothing to dial), waiting
        (``due`` later) also by why (``held``), progressing, done (the rest of the
        listing), and done because of the do-not-call list."""
        moment = micros(now)
        reasons = [reason.value for reason in Held if reason != Held.NONE]
        customer = await self._owner(outdial_id)

        def key(*parts: str) -> str:
            return self._ckey(customer, *parts)

        pipe = self._connected().pipeline(transaction=True)
        pipe.zcard(key("targets", outdial_id))
        pipe.zcard(key("ready", outdial_id))
        pipe.zcount(key("waiting", outdial_id), "-inf", moment)
        pipe.zcount(key("waiting", outdial_id), f"({moment}", "+inf")
        pipe.scard(key("held", outdial_id))
        pipe.scard(key("progressing", outdial_id))
        for reason in reasons:
            pipe.zcount(key("waiting_held", outdial_id, reason), f"({moment}", "+inf")
        pipe.scard(key("done_held", outdial_id, Held.DNC.value))
        total, ready, due, waiting, unplaced, progressing, *by_reason, listed = await self._guard(
            pipe.execute()
        )
        held = {reason: int(count) for reason, count in zip(reasons, by_reason, strict=True)}
        held = {reason: count for reason, count in held.items() if count}
        if int(listed):
            held[Held.DNC.value] = int(listed)
        idle_due = int(ready) + int(due) + int(unplaced)
        return TargetCounts(
            idle_due=idle_due,
            idle_waiting=int(waiting),
            progressing=int(progressing),
            done=max(0, int(total) - idle_due - int(waiting) - int(progressing)),
            held=held,
        )

    async def outdial_exhausted(self, campaign_id: str, outdial_id: str) -> bool:
        """``dialerd.core.targets.exhausted`` from four counts read in one MULTI/EXEC.

        Targets staged by an import not yet published are in the ready and waiting
        indexes already: the outdial is not exhausted while an import is under way."""
        customer = await self._owner(outdial_id)

        def key(*parts: str) -> str:
            return self._ckey(customer, *parts)

        pipe = self._connected().pipeline(transaction=True)
        pipe.zcard(key("ready", outdial_id))
        pipe.zcard(key("waiting", outdial_id))
        pipe.scard(key("progressing", outdial_id))
        pipe.scard(key("active", campaign_id))
        ready, waiting, progressing, active = await self._guard(pipe.execute())
        return exhausted(
            dialable=int(ready) + int(waiting) > 0,
            progressing=int(progressing) > 0,
            active=int(active) > 0,
        )
