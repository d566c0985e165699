"""The SQLite backend's dial ledger and leases: the engine's atomic steps (claims,
answers, finishes), its counts, exhaustion, abandonment and lock pruning; one
transaction each."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import partial

import msgspec

from dialerd.core import dialed, targets
from dialerd.core.abandonment import DayCount
from dialerd.core.targets import (
    CallingRules,
    Held,
    Placement,
    Queue,
    RetryRule,
    day_of,
)
from dialerd.insight import TargetCounts
from dialerd.model import (
    Campaigncall,
    CampaigncallResult,
    CampaigncallStatus,
    CampaignStatus,
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
from dialerd.store.sqlite.outbox import outbox_row
from dialerd.store.sqlite.rows import (
    ANY_ACTIVE,
    ANY_BEING_PUBLISHED,
    ANY_PROGRESSING,
    ANY_READY,
    ANY_WAITING,
    CAMPAIGNCALLS,
    CLAIM_SKIPPED,
    CLAIM_TARGET,
    COUNT_ATTEMPT,
    LOCK_NUMBER,
    PLACEMENT_COLUMNS,
    PROMOTE,
    PRUNE_CHUNK,
    PRUNE_LOCKS,
    READY_HEAD,
    TARGET_COLUMNS,
    VISIBLE,
    check_fence,
    hold_of,
    micros_of,
    number_states,
    place_target,
    placed_target,
    select_target,
    store_campaigncall,
    wall_clock,
)


class SqliteLedger(SqliteConnection):
    """The ``Ledger`` and ``Leases`` ports on the SQLite file."""

    # -- the engine's atomic steps ----------------------------------------------------------
    async def start_attempt(self, plan: AttemptPlan) -> Campaigncall | None:
        """Claim the next eligible target of the campaign's outdial and create its attempt."""
        return await self._write(partial(self._claim, plan))

    async def start_attempts(self, plans: Sequence[AttemptPlan]) -> list[Campaigncall]:
        """Every claim of the batch in one transaction (one trip to the worker thread)."""

        def claim_all(connection: sqlite3.Connection) -> list[Campaigncall]:
            claimed: list[Campaigncall] = []
            for plan in plans:
                campaigncall = self._claim(plan, connection)
                if campaigncall is None:
                    break
                claimed.append(campaigncall)
            return claimed

        return await self._write(claim_all) if plans else []

    @staticmethod
    def _claim(plan: AttemptPlan, connection: sqlite3.Connection) -> Campaigncall | None:
        campaign, outplan = plan.campaign, plan.outplan
        check_fence(connection, plan.fence, campaign.id, plan.now)
        status = connection.execute(
            "SELECT status FROM campaign WHERE id = ? AND deleted = 0", (campaign.id,)
        ).fetchone()
        if status is None or status[0] != CampaignStatus.RUN.value:
            raise CampaignNotRunning(f"campaign {campaign.id} is not running: nothing is dialed")
        max_try_counts = outplan.max_try_counts
        region = dialed.region_of(outplan.source)
        now = format_time(plan.now)
        connection.execute(PROMOTE, (campaign.outdial_id, now))
        while True:
            # Each target decided spent leaves the ready queue for good: this ends.
            row = connection.execute(READY_HEAD, (campaign.outdial_id,)).fetchone()
            if row is None:
                return None
            target, placement, seq = placed_target(row)
            decision = targets.decide_claim(
                target,
                placement,
                max_try_counts,
                plan.now,
                rules=plan.rules,
                numbers=number_states(
                    campaign.customer_id, target, plan.now, plan.rules, region, connection
                ),
                region=region,
            )
            if isinstance(decision, Placement):
                place_target(seq, target.try_counts, decision, now, connection, decided=True)
                continue
            break
        slot = decision.slot
        destination = target.destinations[slot]
        assert destination is not None  # the core dials only a slot with a destination
        connection.execute(CLAIM_TARGET[slot], (decision.try_count, now, seq))
        connection.execute(CLAIM_SKIPPED, (",".join(map(str, decision.skipped)), seq))
        if plan.rules is not None and plan.rules.daily_attempts is not None:
            day = day_of(plan.now)
            for number in dialed.readings(destination.target, region):
                connection.execute(COUNT_ATTEMPT, (campaign.customer_id, number, day))
        target_id = target.id
        campaigncall = targets.new_attempt(
            campaign,
            outplan,
            campaigncall_id=plan.campaigncall_id,
            reference_id=plan.reference_id,
            activeflow_id=plan.activeflow_id,
            target_id=target_id,
            destination=destination,
            slot=slot,
            try_count=decision.try_count,
            now=now,
        )
        try:
            connection.execute(
                "INSERT INTO campaigncall "
                "(id, customer_id, campaign_id, outdial_target_id, status, tm_create, body) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    campaigncall.id,
                    campaigncall.customer_id,
                    campaigncall.campaign_id,
                    target_id,
                    campaigncall.status.value,
                    now,
                    encode(campaigncall),
                ),
            )
        except sqlite3.IntegrityError as error:
            raise Conflict(f"campaigncall {campaigncall.id} already exists") from error
        # events out (dialerd.events): the attempt's creation, in this transaction
        outbox_row(
            connection,
            "campaigncall_created",
            campaigncall.customer_id,
            campaigncall.campaign_id,
            encode(campaigncall),
        )
        return campaigncall

    async def mark_answered(
        self, campaigncall_id: str, now: datetime, *, fence: Fence | None = None
    ) -> Campaigncall | None:
        """``dialing`` -> ``progressing``; ``None`` if the attempt is not ``dialing``."""
        stamp = format_time(now)

        def answer(connection: sqlite3.Connection) -> Campaigncall | None:
            current = CAMPAIGNCALLS.get(None, campaigncall_id, connection)
            if current is None or current.status != CampaigncallStatus.DIALING:
                return None
            check_fence(connection, fence, current.campaign_id, now)
            answered = msgspec.structs.replace(
                current, status=CampaigncallStatus.PROGRESSING, tm_update=stamp
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

        return await self._write(answer)

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
        work = partial(
            self._finish,
            campaigncall_id,
            result,
            reason,
            rule,
            now,
            fence,
            give_back_try,
            calling_rules,
        )
        return await self._write(work)

    async def finish_attempts(
        self, ends: Sequence[AttemptEnd]
    ) -> list[FinishResult | LeaseLost | None]:
        """Every end of the burst in one transaction (one trip to the worker thread);
        an end whose lease is lost changed nothing and the others are written."""

        def finish_all(connection: sqlite3.Connection) -> list[FinishResult | LeaseLost | None]:
            done: list[FinishResult | LeaseLost | None] = []
            for end in ends:
                try:
                    done.append(
                        self._finish(
                            end.campaigncall_id,
                            end.result,
                            end.reason,
                            end.rule,
                            end.now,
                            end.fence,
                            end.give_back_try,
                            end.calling_rules,
                            connection,
                            answered=end.answered,
                        )
                    )
                except LeaseLost as lost:
                    done.append(lost)  # raised before that end wrote anything
            return done

        return await self._write(finish_all) if ends else []

    def _finish(
        self,
        campaigncall_id: str,
        result: CampaigncallResult,
        reason: str,
        rule: RetryRule,
        moment: datetime,
        fence: Fence | None,
        give_back_try: bool,
        calling_rules: CallingRules | None,
        connection: sqlite3.Connection,
        *,
        answered: bool = False,
    ) -> FinishResult | None:
        """End one attempt in ``connection``'s transaction; ``answered`` when its answer
        came with its end (not written apart: its event is written here, first)."""
        now = format_time(moment)
        row = connection.execute(
            "SELECT body FROM campaigncall WHERE id = ?", (campaigncall_id,)
        ).fetchone()
        if row is None:
            return None
        current = CAMPAIGNCALL.decode(row[0])
        check_fence(connection, fence, current.campaign_id, moment)
        target_id = current.outdial_target_id
        if current.status == CampaigncallStatus.DONE:
            target = select_target(None, target_id, connection)
            return FinishResult(finished=False, campaigncall=current, target=target)
        if answered and current.status == CampaigncallStatus.DIALING:
            progressing = msgspec.structs.replace(
                current, status=CampaigncallStatus.PROGRESSING, tm_update=now
            )
            outbox_row(
                connection,
                "campaigncall_updated",
                progressing.customer_id,
                progressing.campaign_id,
                encode(progressing),
            )
        finished = msgspec.structs.replace(
            current, status=CampaigncallStatus.DONE, result=result, reason=reason, tm_update=now
        )
        store_campaigncall(finished, connection)
        # events out (dialerd.events): the end, in this transaction
        outbox_row(
            connection,
            "campaigncall_updated",
            finished.customer_id,
            finished.campaign_id,
            encode(finished),
        )
        locked_until = calling_rules.lockout_after(reason, moment) if calling_rules else None
        if locked_until is not None:
            # The outplan the claim dialed under, deleted or not: the same readings.
            body = connection.execute(
                "SELECT body FROM outplan WHERE id = ?", (current.outplan_id,)
            ).fetchone()
            region = dialed.region_of(None if body is None else OUTPLAN.decode(body[0]).source)
            for number in dialed.readings(current.destination.target, region):
                connection.execute(
                    LOCK_NUMBER, (current.customer_id, number, format_time(locked_until))
                )
        row = connection.execute(
            f"SELECT {TARGET_COLUMNS}, {PLACEMENT_COLUMNS}, seq FROM target "
            "WHERE id = ? AND tm_delete IS NULL",
            (target_id,),
        ).fetchone()
        if row is None:
            return FinishResult(finished=True, campaigncall=finished, target=None)
        target, before, seq = placed_target(row)
        if target.status != TargetStatus.PROGRESSING:
            return FinishResult(finished=True, campaigncall=finished, target=target)
        settled = targets.place_after(
            target,
            current.destination_index,
            result,
            rule,
            moment,
            reason=reason,
            give_back=give_back_try,
            before=before,
        )
        place_target(seq, settled.try_counts, settled.placement, now, connection)
        placement = settled.placement
        ended = msgspec.structs.replace(
            target,
            status=placement.status,
            tm_update=now,
            **{f"try_count_{n}": count for n, count in enumerate(settled.try_counts)},
            **hold_of(placement.queue, format_time(placement.due), placement.held),
        )
        # events out (dialerd.events): the target as its attempt left it
        outbox_row(
            connection,
            "outdialtarget_updated",
            finished.customer_id,
            finished.campaign_id,
            encode(ended),
        )
        return FinishResult(finished=True, campaigncall=finished, target=ended)

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
                dialable=exists(ANY_READY, outdial_id) or exists(ANY_WAITING, outdial_id),
                # Rows of a published import still being made dialable count as dialable.
                progressing=exists(ANY_PROGRESSING, outdial_id)
                or exists(ANY_BEING_PUBLISHED, outdial_id),
                active=exists(ANY_ACTIVE, campaign_id),
            )

        return await self._read(exhausted)
