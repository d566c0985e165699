"""The SQLite backend's dial ledger and leases: the engine's atomic steps (claims,
answers, finishes), its counts, exhaustion, abandonment and lock pruning; one
transaction each."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import msgspec

from dialerd.core import dialed, targets
from dialerd.core.abandonment import DayCount
from dialerd.core.targets import (
    CallingRules,
    Claim,
    Held,
    NumberState,
    Placement,
    Queue,
    RetryRule,
    day_of,
)
from dialerd.insight import TargetCounts
from dialerd.model import (
    SLOTS,
    Campaigncall,
    CampaigncallResult,
    CampaigncallStatus,
    CampaignStatus,
    OutdialTarget,
    TargetStatus,
    format_time,
)
from dialerd.store.base import (
    AttemptEnd,
    AttemptPlan,
    CampaignNotRunning,
    Conflict,
    Fence,
    FinishResult,
    LeaseLost,
)
from dialerd.store.documents import (
    CAMPAIGNCALL,
    OUTPLAN,
    encode,
)
from dialerd.store.sqlite.connection import SqliteConnection
from dialerd.store.sqlite.outbox import Event, outbox_row, outbox_rows
from dialerd.store.sqlite.rows import (
    ANY_ACTIVE,
    ANY_PROGRESSING,
    ANY_WAITING,
    CAMPAIGNCALLS,
    CLAIM_TARGET,
    COUNT_ATTEMPT,
    LOCK_NUMBER,
    PLACE_TARGET,
    PLACEMENT_COLUMNS,
    PROMOTE,
    PRUNE_CHUNK,
    PRUNE_LOCKS,
    TARGET_COLUMNS,
    VISIBLE,
    any_ready,
    check_fence,
    hold_of,
    micros_of,
    number_states,
    placed_target,
    placement_params,
    ready_head,
    select_target,
    stamp_of,
    store_campaigncall,
    wall_clock,
)


class SqliteLedger(SqliteConnection):
    """The ``Ledger`` and ``Leases`` ports on the SQLite file."""

    # -- the engine's atomic steps ----------------------------------------------------------
    async def start_attempt(self, plan: AttemptPlan) -> Campaigncall | None:
        """Claim the next eligible target of the campaign's outdial and create its attempt."""
        claimed = await self._write(partial(self._claim, (plan,)))
        return claimed[0] if claimed else None

    async def start_attempts(self, plans: Sequence[AttemptPlan]) -> list[Campaigncall]:
        """Every claim of the batch in one transaction (one trip to the worker thread);
        the claims stop at the first one that finds no target."""

        def claim_all(connection: sqlite3.Connection) -> list[Campaigncall]:
            claimed: list[Campaigncall] = []
            for group in _same_claim(plans):
                made = self._claim(group, connection)
                claimed += made
                if len(made) < len(group):
                    break
            return claimed

        return await self._write(claim_all) if plans else []

    @staticmethod
    def _claim(plans: Sequence[AttemptPlan], connection: sqlite3.Connection) -> list[Campaigncall]:
        """Claims of one campaign at one moment (``_same_claim``), in order: as one claim
        after the other would, with a few statements for all of them. The campaign's
        checks and the promotion of the waiting targets are made once; the ready head
        is read as many targets at a time as there are claims left; what the rules
        know of their numbers is read once for all of them (a claim's attempt counted
        for the day is seen by the claims after it); the writes go as one executemany
        each."""
        first = plans[0]
        campaign, outplan, moment, rules = first.campaign, first.outplan, first.now, first.rules
        check_fence(connection, first.fence, campaign.id, moment)
        status = connection.execute(
            "SELECT status FROM campaign WHERE id = ? AND deleted = 0", (campaign.id,)
        ).fetchone()
        if status is None or status[0] != CampaignStatus.RUN.value:
            raise CampaignNotRunning(f"campaign {campaign.id} is not running: nothing is dialed")
        customer_id = campaign.customer_id
        max_try_counts = outplan.max_try_counts
        region = dialed.region_of(outplan.source)
        counting = rules is not None and rules.daily_attempts is not None
        now = format_time(moment)
        connection.execute(PROMOTE, (campaign.outdial_id, now))
        claims: list[tuple[OutdialTarget, Claim]] = []
        counted: list[str] = []  # the numbers of the claims' attempts, one per attempt
        while len(claims) < len(plans):
            wanted = len(plans) - len(claims)
            heads = [
                placed_target(row) for row in ready_head(connection, campaign.outdial_id, wanted)
            ]
            numbers = dialed.numbers_of(
                (address for target, _, _ in heads for address in target.destinations), region
            )
            known = number_states(customer_id, numbers, moment, rules, connection)
            for number in counted:  # the claims before these, not written yet
                if number in known:
                    known[number] = _one_more(known[number])
            placed: list[tuple[object, ...]] = []
            taken: list[list[tuple[object, ...]]] = [[] for _ in SLOTS]
            for target, placement, seq in heads:
                decision = targets.decide_claim(
                    target,
                    placement,
                    max_try_counts,
                    moment,
                    rules=rules,
                    numbers=known,
                    region=region,
                )
                if isinstance(decision, Placement):
                    placed.append(
                        placement_params(seq, target.try_counts, decision, now, decided=True)
                    )
                    continue
                slot = decision.slot
                skipped = ",".join(map(str, decision.skipped))
                taken[slot].append((decision.try_count, now, skipped, seq))
                claims.append((target, decision))
                if counting:
                    destination = target.destinations[slot]
                    assert destination is not None
                    for number in dialed.readings(destination.target, region):
                        counted.append(number)
                        if number in known:
                            known[number] = _one_more(known[number])
            if placed:
                connection.executemany(PLACE_TARGET, placed)
            for slot, claimed in enumerate(taken):
                if claimed:
                    connection.executemany(CLAIM_TARGET[slot], claimed)
            if len(heads) < wanted:
                break  # the ready queue is empty: no more claims
        if counted:
            day = day_of(moment)
            connection.executemany(
                COUNT_ATTEMPT, [(customer_id, number, day) for number in counted]
            )
        made: list[Campaigncall] = []
        rows: list[tuple[object, ...]] = []
        events: list[Event] = []
        for plan, (target, decision) in zip(plans, claims, strict=False):
            destination = target.destinations[decision.slot]
            assert destination is not None  # the core dials only a slot with a destination
            campaigncall = targets.new_attempt(
                campaign,
                outplan,
                campaigncall_id=plan.campaigncall_id,
                reference_id=plan.reference_id,
                activeflow_id=plan.activeflow_id,
                target_id=target.id,
                destination=destination,
                slot=decision.slot,
                try_count=decision.try_count,
                now=now,
            )
            body = encode(campaigncall)
            made.append(campaigncall)
            rows.append(
                (
                    campaigncall.id,
                    customer_id,
                    campaign.id,
                    target.id,
                    campaigncall.status.value,
                    now,
                    body,
                )
            )
            # events out (dialerd.events): the attempt's creation, in this transaction
            events.append((customer_id, campaign.id, "campaigncall_created", body, ""))
        try:
            connection.executemany(
                "INSERT INTO campaigncall "
                "(id, customer_id, campaign_id, outdial_target_id, status, tm_create, body) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        except sqlite3.IntegrityError as error:
            raise Conflict(f"a campaigncall of {campaign.id} already exists ({error})") from error
        outbox_rows(connection, events)
        return made

    async def mark_answered(
        self, campaigncall_id: str, now: datetime, *, fence: Fence | None = None
    ) -> Campaigncall | None:
        """``dialing`` -> ``progressing``; ``None`` if the attempt is not ``dialing``."""
        return await self._write(partial(_answer, campaigncall_id, fence, now))

    async def mark_answered_many(
        self, answers: Sequence[tuple[str, Fence | None]], now: datetime
    ) -> list[Campaigncall | LeaseLost | None]:
        """``mark_answered`` of each (campaigncall id, fence) in one transaction (one job
        of the connection's thread); a fenced-off one is answered ``LeaseLost``."""
        if not answers:
            return []

        def answer_all(connection: sqlite3.Connection) -> list[Campaigncall | LeaseLost | None]:
            answered: list[Campaigncall | LeaseLost | None] = []
            for campaigncall_id, fence in answers:
                try:
                    answered.append(_answer(campaigncall_id, fence, now, connection))
                except LeaseLost as lost:
                    answered.append(lost)
            return answered

        return await self._write(answer_all)

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
        """End an active attempt exactly once (behaviour.md §5)."""
        end = AttemptEnd(
            campaigncall_id=campaigncall_id,
            result=result,
            reason=reason,
            rule=rule,
            now=now,
            fence=fence,
            give_back_try=give_back_try,
            calling_rules=calling_rules,
        )
        (outcome,) = await self._write(partial(_finish, (end,)))
        if isinstance(outcome, LeaseLost):
            raise outcome
        return outcome

    async def finish_attempts(
        self, ends: Sequence[AttemptEnd]
    ) -> list[FinishResult | LeaseLost | None]:
        """Every end of the burst in one transaction (one trip to the worker thread);
        an end whose lease is lost changed nothing and the others are written."""
        return await self._write(partial(_finish, ends)) if ends else []

    async def prune_locks(self, now: datetime) -> int:
        """Delete the number locks that ended by ``now``, ``PRUNE_CHUNK`` rows a
        transaction (through the expiry index)."""
        cutoff = format_time(now)
        pruned = 0
        while True:
            count = await self._write(
                lambda connection: connection.execute(PRUNE_LOCKS, (cutoff, PRUNE_CHUNK)).rowcount
            )
            pruned += count
            if count < PRUNE_CHUNK:
                return pruned

    # -- campaign leases (SQLite serves one host: expiry follows the ``now`` passed in) ----
    async def acquire_lease(
        self, campaign_id: str, owner: str, ttl: float, now: datetime
    ) -> Fence | None:
        """Take or renew the campaign's lease until ``now + ttl``.

        The row outlives the lease (released: expiry 0), so it knows the last holder and
        token: the same owner keeps its token, another one gets the next.
        """
        now_us = micros_of(now)
        expires_us = micros_of(now + timedelta(seconds=ttl))

        def acquire(connection: sqlite3.Connection) -> Fence | None:
            row = connection.execute(
                "SELECT owner, token, expires_at_us FROM lease WHERE campaign_id = ?",
                (campaign_id,),
            ).fetchone()
            if row is None:
                token = 1
            elif row[0] == owner:
                token = int(row[1])
            elif int(row[2]) > now_us:
                return None
            else:
                token = int(row[1]) + 1
            connection.execute(
                "INSERT INTO lease (campaign_id, owner, token, expires_at_us) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (campaign_id) DO UPDATE SET "
                "owner = excluded.owner, token = excluded.token, "
                "expires_at_us = excluded.expires_at_us",
                (campaign_id, owner, token, expires_us),
            )
            return Fence(campaign_id, owner, token)

        return await self._write(acquire)

    async def release_lease(self, fence: Fence) -> None:
        """Give the lease up at once, if ``fence`` still holds it."""
        await self._write(
            lambda connection: connection.execute(
                "UPDATE lease SET expires_at_us = 0 "
                "WHERE campaign_id = ? AND owner = ? AND token = ?",
                (fence.campaign_id, fence.owner, fence.token),
            )
        )

    async def lease_owner(self, campaign_id: str, now: datetime | None = None) -> str | None:
        """The owner of the campaign's valid lease at ``now`` (the wall clock if None)."""
        now_us = micros_of(wall_clock() if now is None else now)

        def owner(connection: sqlite3.Connection) -> str | None:
            row = connection.execute(
                "SELECT owner FROM lease WHERE campaign_id = ? AND expires_at_us > ?",
                (campaign_id, now_us),
            ).fetchone()
            return None if row is None else str(row[0])

        return await self._read(owner)

    async def count_dialing(self, campaign_id: str) -> int:
        """How many of the campaign's attempts are ``dialing``."""

        def count(connection: sqlite3.Connection) -> int:
            row = connection.execute(
                "SELECT count(*) FROM campaigncall WHERE campaign_id = ? "
                "AND status != 'done' AND status = 'dialing'",
                (campaign_id,),
            ).fetchone()
            return int(row[0])

        return await self._read(count)

    async def add_abandonment(
        self, campaign_id: str, day: str, live: int, abandoned: int
    ) -> DayCount:
        """Add to the campaign's count of ``day``; returns the day's new count."""

        def add(connection: sqlite3.Connection) -> DayCount:
            row = connection.execute(
                "INSERT INTO abandonment (campaign_id, day, live, abandoned) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (campaign_id, day) DO UPDATE SET live = live + excluded.live, "
                "abandoned = abandoned + excluded.abandoned RETURNING live, abandoned",
                (campaign_id, day, live, abandoned),
            ).fetchone()
            return DayCount(day=day, live=int(row[0]), abandoned=int(row[1]))

        return await self._write(add)

    async def abandonment_days(self, campaign_id: str, since: str) -> list[DayCount]:
        """The campaign's counts of ``since`` and later days, oldest first."""

        def select(connection: sqlite3.Connection) -> list[DayCount]:
            rows = connection.execute(
                "SELECT day, live, abandoned FROM abandonment WHERE campaign_id = ? AND day >= ? "
                "ORDER BY day",
                (campaign_id, since),
            ).fetchall()
            return [DayCount(day=row[0], live=int(row[1]), abandoned=int(row[2])) for row in rows]

        return await self._read(select)

    async def active_attempts(self, campaign_id: str | None = None) -> list[Campaigncall]:
        """Attempts ``dialing`` or ``progressing`` (of one campaign, or of all)."""
        query = "SELECT body FROM campaigncall WHERE status != 'done'"
        params: tuple[str, ...] = ()
        if campaign_id is not None:
            query += " AND campaign_id = ?"
            params = (campaign_id,)

        def select(connection: sqlite3.Connection) -> list[Campaigncall]:
            rows = connection.execute(query + " ORDER BY tm_create, id", params).fetchall()
            return [CAMPAIGNCALL.decode(row[0]) for row in rows]

        return await self._read(select)

    async def target_counts(self, outdial_id: str, now: datetime) -> TargetCounts:
        """The outdial's targets by what can happen to them next."""
        stamp = format_time(now)

        def count(connection: sqlite3.Connection) -> TargetCounts:
            by_status = dict(
                connection.execute(
                    "SELECT status, count(*) FROM target "
                    f"WHERE outdial_id = ? AND tm_delete IS NULL AND {VISIBLE} GROUP BY status",
                    (outdial_id,),
                ).fetchall()
            )
            (waiting,) = connection.execute(
                f"SELECT count(*) FROM target WHERE outdial_id = ? AND pick = {Queue.WAITING} "
                "AND due > ?",
                (outdial_id, stamp),
            ).fetchone()
            held = dict(
                connection.execute(
                    f"SELECT held, count(*) FROM target WHERE outdial_id = ? "
                    f"AND pick = {Queue.WAITING} AND due > ? GROUP BY held",
                    (outdial_id, stamp),
                ).fetchall()
            )
            (listed,) = connection.execute(
                "SELECT count(*) FROM target WHERE outdial_id = ? AND status = 'done' "
                "AND held = ? AND tm_delete IS NULL",
                (outdial_id, Held.DNC.value),
            ).fetchone()
            if listed:
                held[Held.DNC.value] = int(listed)
            idle = int(by_status.get(TargetStatus.IDLE.value, 0))
            return TargetCounts(
                idle_due=idle - int(waiting),
                idle_waiting=int(waiting),
                progressing=int(by_status.get(TargetStatus.PROGRESSING.value, 0)),
                done=int(by_status.get(TargetStatus.DONE.value, 0)),
                held={str(reason): int(count) for reason, count in held.items()},
            )

        return await self._read(count)

    async def outdial_exhausted(self, campaign_id: str, outdial_id: str) -> bool:
        """True when behaviour.md §6 says the outdial is exhausted for this campaign."""

        def exhausted(connection: sqlite3.Connection) -> bool:
            def exists(query: str, key: str) -> bool:
                return connection.execute(query, (key,)).fetchone() is not None

            return targets.exhausted(
                dialable=any_ready(connection, outdial_id) or exists(ANY_WAITING, outdial_id),
                progressing=exists(ANY_PROGRESSING, outdial_id),
                active=exists(ANY_ACTIVE, campaign_id),
            )

        return await self._read(exhausted)


def _same_claim(plans: Sequence[AttemptPlan]) -> list[Sequence[AttemptPlan]]:
    """The plans cut into runs that one ``_claim`` serves: the same campaign, outplan,
    lease, moment and rules (a tick's plans are one run)."""
    groups: list[Sequence[AttemptPlan]] = []
    start = 0
    for n in range(1, len(plans) + 1):
        if n == len(plans) or not _claims_alike(plans[start], plans[n]):
            groups.append(plans[start:n])
            start = n
    return groups


def _claims_alike(one: AttemptPlan, other: AttemptPlan) -> bool:
    return all(
        mine is theirs or mine == theirs
        for mine, theirs in (
            (one.campaign, other.campaign),
            (one.outplan, other.outplan),
            (one.fence, other.fence),
            (one.now, other.now),
            (one.rules, other.rules),
        )
    )


def _one_more(state: NumberState) -> NumberState:
    """A number's state once one more attempt to it is counted for today."""
    return msgspec.structs.replace(state, attempts_today=state.attempts_today + 1)


_Outcome = FinishResult | LeaseLost | None
# A target row as the finish reads it: ``TARGET_COLUMNS, PLACEMENT_COLUMNS, seq``.
_SELECT_TARGETS = (
    f"SELECT {TARGET_COLUMNS}, {PLACEMENT_COLUMNS}, seq FROM target "
    "WHERE tm_delete IS NULL AND id IN ({marks})"
)
_SELECT_CAMPAIGNCALLS = "SELECT id, body FROM campaigncall WHERE id IN ({marks})"
_SELECT_LEASES = (
    "SELECT campaign_id, owner, token, expires_at_us FROM lease WHERE campaign_id IN ({marks})"
)
_STORE_CAMPAIGNCALL = "UPDATE campaigncall SET status = ?, body = ? WHERE id = ?"
# Keys per ``IN (...)`` lookup: well under SQLite's limit of bound parameters.
_LOOKUP_CHUNK = 500


def _rows_by_key(
    connection: sqlite3.Connection, query: str, keys: Sequence[str]
) -> dict[str, tuple[Any, ...]]:
    """``query``'s rows (keyed by their first column) for ``keys``, read a chunk of keys
    per statement."""
    unique = list(dict.fromkeys(keys))
    found: dict[str, tuple[Any, ...]] = {}
    for start in range(0, len(unique), _LOOKUP_CHUNK):
        chunk = unique[start : start + _LOOKUP_CHUNK]
        rows = connection.execute(query.format(marks=", ".join("?" * len(chunk))), chunk)
        found.update((row[0], row) for row in rows)
    return found


class _Finishing:
    """The ends of one burst, each as ``finish_attempt`` would end it one after the
    other, in one transaction with a few statements for all of them: the attempts,
    their leases and their targets are read once, and the writes go as one executemany
    per statement (``flush``), the events in the order the ends wrote them. Each end
    sees what the ones before it wrote: an attempt as the burst left it, and a target
    the burst already changed read again after a flush."""

    def __init__(self, ends: Sequence[AttemptEnd], connection: sqlite3.Connection) -> None:
        self.connection = connection
        self.calls = {
            key: CAMPAIGNCALL.decode(row[1])
            for key, row in _rows_by_key(
                connection, _SELECT_CAMPAIGNCALLS, [end.campaigncall_id for end in ends]
            ).items()
        }
        fenced = [end.fence.campaign_id for end in ends if end.fence is not None]
        self.leases = _rows_by_key(connection, _SELECT_LEASES, fenced) if fenced else {}
        self.targets = _rows_by_key(
            connection,
            _SELECT_TARGETS,
            [call.outdial_target_id for call in self.calls.values()],
        )
        self.changed: set[str] = set()  # the targets written (queued or not)
        self.call_writes: list[tuple[Any, ...]] = []
        self.target_writes: list[tuple[Any, ...]] = []
        self.events: list[Event] = []

    def flush(self) -> None:
        """Write what the ends decided so far."""
        connection = self.connection
        if self.call_writes:
            connection.executemany(_STORE_CAMPAIGNCALL, self.call_writes)
        if self.target_writes:
            connection.executemany(PLACE_TARGET, self.target_writes)
        if self.events:
            outbox_rows(connection, self.events)
        self.call_writes, self.target_writes, self.events = [], [], []

    def _target_row(self, target_id: str) -> tuple[Any, ...] | None:
        """The target's row as the ends so far left it."""
        if target_id in self.changed:  # a second attempt of it in the burst: rare
            self.flush()
            self.changed.discard(target_id)
            self.targets.update(_rows_by_key(self.connection, _SELECT_TARGETS, [target_id]))
        return self.targets.get(target_id)

    def _holds(self, fence: Fence, campaign_id: str, moment: datetime) -> bool:
        """``check_fence`` on the leases read at the start (a finish changes none)."""
        lease = self.leases.get(campaign_id)
        return (
            fence.campaign_id == campaign_id
            and lease is not None
            and lease[1] == fence.owner
            and lease[2] == fence.token
            and lease[3] > micros_of(moment)
        )

    def end(self, end: AttemptEnd) -> _Outcome:
        """One end (``finish_attempt``'s rule); its writes are queued for ``flush``."""
        key = end.campaigncall_id
        current = self.calls.get(key)
        if current is None:
            return None
        moment, fence = end.now, end.fence
        customer_id, campaign_id = current.customer_id, current.campaign_id
        if fence is not None and not self._holds(fence, campaign_id, moment):
            return LeaseLost(
                f"campaign {campaign_id}: the lease of {fence.owner} is no longer held"
            )
        now = stamp_of(moment)
        target_id = current.outdial_target_id
        if current.status == CampaigncallStatus.DONE:
            self.flush()
            target = select_target(None, target_id, self.connection)
            return FinishResult(finished=False, campaigncall=current, target=target)
        if end.answered and current.status == CampaigncallStatus.DIALING:
            progressing = msgspec.structs.replace(
                current, status=CampaigncallStatus.PROGRESSING, tm_update=now
            )
            # events out (dialerd.events): the answer that came with its end, first
            self.events.append(
                (customer_id, campaign_id, "campaigncall_updated", encode(progressing), "")
            )
        finished = msgspec.structs.replace(
            current,
            status=CampaigncallStatus.DONE,
            result=end.result,
            reason=end.reason,
            tm_update=now,
        )
        body = encode(finished)
        self.call_writes.append((finished.status.value, body, key))
        self.calls[key] = finished
        # events out (dialerd.events): the end, in this transaction
        self.events.append((customer_id, campaign_id, "campaigncall_updated", body, ""))
        rules = end.calling_rules
        locked_until = rules.lockout_after(end.reason, moment) if rules else None
        if locked_until is not None:
            self._lock(current, format_time(locked_until))
        row = self._target_row(target_id)
        if row is None:
            return FinishResult(finished=True, campaigncall=finished, target=None)
        target, before, seq = placed_target(row)
        if target.status != TargetStatus.PROGRESSING:
            return FinishResult(finished=True, campaigncall=finished, target=target)
        settled = targets.place_after(
            target,
            current.destination_index,
            end.result,
            end.rule,
            moment,
            reason=end.reason,
            give_back=end.give_back_try,
            before=before,
        )
        placement = settled.placement
        self.target_writes.append(placement_params(seq, settled.try_counts, placement, now))
        self.changed.add(target_id)
        ended = msgspec.structs.replace(
            target,
            status=placement.status,
            tm_update=now,
            **{f"try_count_{n}": count for n, count in enumerate(settled.try_counts)},
            **hold_of(placement.queue, stamp_of(placement.due), placement.held),
        )
        # events out (dialerd.events): the target as its attempt left it
        self.events.append((customer_id, campaign_id, "outdialtarget_updated", encode(ended), ""))
        return FinishResult(finished=True, campaigncall=finished, target=ended)

    def _lock(self, current: Campaigncall, until: str) -> None:
        """Lock the attempt's number (every reading of it) until ``until``."""
        # The outplan the claim dialed under, deleted or not: the same readings.
        body = self.connection.execute(
            "SELECT body FROM outplan WHERE id = ?", (current.outplan_id,)
        ).fetchone()
        region = dialed.region_of(None if body is None else OUTPLAN.decode(body[0]).source)
        self.connection.executemany(
            LOCK_NUMBER,
            [
                (current.customer_id, number, until)
                for number in dialed.readings(current.destination.target, region)
            ],
        )


def _answer(
    campaigncall_id: str, fence: Fence | None, now: datetime, connection: sqlite3.Connection
) -> Campaigncall | None:
    """``mark_answered`` in ``connection``'s transaction."""
    current = CAMPAIGNCALLS.get(None, campaigncall_id, connection)
    if current is None or current.status != CampaigncallStatus.DIALING:
        return None
    check_fence(connection, fence, current.campaign_id, now)
    answered = msgspec.structs.replace(
        current, status=CampaigncallStatus.PROGRESSING, tm_update=stamp_of(now)
    )
    store_campaigncall(answered, connection)
    # events out (dialerd.events): the answer, in this transaction
    outbox_row(
        connection,
        "campaigncall_updated",
        answered.customer_id,
        answered.campaign_id,
        encode(answered),
    )
    return answered


def _finish(ends: Sequence[AttemptEnd], connection: sqlite3.Connection) -> list[_Outcome]:
    """End the attempts (``finish_attempts``) in ``connection``'s transaction; an end
    whose lease is lost changes nothing and is answered ``LeaseLost``; an end whose
    answer came with it (``answered``, not written apart) writes its answer's event
    first."""
    finishing = _Finishing(ends, connection)
    outcomes = [finishing.end(end) for end in ends]
    finishing.flush()
    return outcomes
