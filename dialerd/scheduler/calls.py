"""The attempts in flight, their whole life in this one part: the start, origination,
the dial timeout, the answer, the backend's events, release (cancel or hang-up,
repeated until the backend reports the end), the end, exactly once, and what each
attempt measures (ring and talk time, abandonment by the law's rule, kept in the
store, the campaign's call history the predictive model learns from, the origination
back-off, the running totals). The other parts read the attempts and the measures
through views (``view``, ``measures``); only this part changes them."""

from __future__ import annotations

import heapq
import itertools
import logging
import math
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import anyio
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream

from dialerd import metrics
from dialerd.attempts import Attempt, AttemptBook, AttemptsView
from dialerd.core import abandonment, targets
from dialerd.core.abandonment import DayCount, WindowCount
from dialerd.core.predictive import CallHistory
from dialerd.core.targets import RetryRule
from dialerd.model import (
    Campaign,
    Campaigncall,
    CampaigncallResult,
    CampaigncallStatus,
    CampaignType,
    OutdialTarget,
    Outplan,
    ReferenceType,
    TargetStatus,
)
from dialerd.ports import (
    AgentConnected,
    Answered,
    Ended,
    HangupReason,
    Origination,
    TelephonyEvent,
)
from dialerd.scheduler.shared import (
    STORE_RETRY,
    EngineStats,
    SharedState,
    backoff,
    log,
    logs_at,
)
from dialerd.store import AttemptEnd, Fence, FinishResult, LeaseLost, StoreError

# Seconds between repeats of a cancel or hang-up the backend has not confirmed yet:
# from the first value, doubling up to the second.
RELEASE_RETRY_FIRST = 0.5
RELEASE_RETRY_MAX = 8.0
# Seconds between two looks at the calls still up while draining for shutdown.
DRAIN_POLL = 0.1
# The answer-to-agent times /state averages: the campaign's latest calls.
AGENT_WAITS_KEPT = 100
# Events one worker takes from the stream at once (those already waiting): their ends
# are written in one store step.
EVENT_BURST = 256
# The heap of time limits is rid of cancelled ones once it holds at least this many.
EXPIRIES_COMPACT_MIN = 1024


@dataclass(eq=False, slots=True)
class _Expiry:
    """An attempt's time limit in the heap of limits; ``cancel`` (an answer, an end)
    leaves it there, dropped when it comes up."""

    attempt: Attempt
    reason: HangupReason
    live: bool = True

    def cancel(self) -> None:
        self.live = False


# An answer waiting to be written: its campaign, the lease held at the answer, and the
# time it records (None: the time of its write's first try).
_Answer = tuple[str, Fence | None, datetime | None]


@dataclass(slots=True)
class _Ending:
    """An attempt being ended: what the store is asked to write, the attempt as this
    engine followed it (None: ended from the store's copy), its campaign, the reason."""

    end: AttemptEnd
    attempt: Attempt | None
    campaign_id: str
    reason: HangupReason


@dataclass
class CampaignMeasures:
    """What a running campaign's attempts taught so far."""

    # What the campaign's own attempts did (the predictive model learns from it), and
    # its abandonment counts by day, read from the store once the loop runs it.
    history: CallHistory = field(default_factory=CallHistory)
    abandonment: dict[str, DayCount] | None = None
    # Originations that failed in a row, and no new attempt before this monotonic time.
    origination_failures: int = 0
    backoff_until: float = 0.0
    # Seconds from answer to an agent of the latest calls that reached one (what a
    # prompt before the queue costs: /state shows their mean).
    agent_waits: deque[float] = field(default_factory=lambda: deque(maxlen=AGENT_WAITS_KEPT))

    @property
    def answer_to_agent_seconds(self) -> float | None:
        """The mean answer-to-agent time of the latest calls; None before the first."""
        return sum(self.agent_waits) / len(self.agent_waits) if self.agent_waits else None


class MeasuresView(Protocol):
    """What pacing and the insight answer read of a campaign's measures."""

    @property
    def history(self) -> CallHistory: ...

    @property
    def backoff_until(self) -> float: ...

    @property
    def answer_to_agent_seconds(self) -> float | None: ...


class Measures:
    """What the attempts measure, per running campaign (its call history, its
    abandonment counts, its origination back-off) and in all (the running totals, ring
    and talk time): changed by ``Calls`` as attempts go, read by pacing and the insight
    answer through ``view``."""

    def __init__(self, shared: SharedState, runs: Callable[[str], bool]) -> None:
        self.shared = shared
        # Whether this instance runs the campaign now (only then is it measured).
        self._runs = runs
        self._campaigns: dict[str, CampaignMeasures] = {}
        self.stats = EngineStats()

    def view(self, campaign_id: str) -> MeasuresView | None:
        """The campaign's measures while this instance runs it."""
        return self._of(campaign_id)

    def _of(self, campaign_id: str) -> CampaignMeasures | None:
        if not self._runs(campaign_id):
            return None
        measured = self._campaigns.get(campaign_id)
        if measured is None:
            measured = self._campaigns[campaign_id] = CampaignMeasures()
        return measured

    def forget(self, campaign_id: str) -> None:
        """The campaign's loop ended: what it measured goes with it."""
        self._campaigns.pop(campaign_id, None)

    async def abandonment_windows(
        self, campaign_id: str, spans: Sequence[int]
    ) -> list[WindowCount]:
        """The campaign's abandonment windows (read from the store on the loop's first
        tick: a restart or a takeover goes on from the stored counts)."""
        today = self._today()
        longest = max(spans, default=1)
        measured = self._of(campaign_id)
        if measured is None:
            return []
        if measured.abandonment is None:
            since = abandonment.first_day(today, longest)
            stored = await self.shared.store.abandonment_days(campaign_id, since)
            measured.abandonment = {count.day: count for count in stored}
        abandonment.trimmed(measured.abandonment, today, longest)
        return abandonment.windows(measured.abandonment.values(), today, spans)

    def abandonment_counted(self, campaign_id: str, spans: Sequence[int]) -> list[WindowCount]:
        """The campaign's abandonment per window, as counted so far (no store read)."""
        measured = self._campaigns.get(campaign_id)
        days = measured.abandonment if measured is not None else None
        return abandonment.windows((days or {}).values(), self._today(), spans)

    def _today(self) -> str:
        return abandonment.campaign_day(
            self.shared.clock.now(), self.shared.config.abandon_day_offset_minutes
        )

    def origination_failed(self, campaign_id: str) -> None:
        """One more origination failed: the campaign backs off."""
        measured = self._of(campaign_id)
        if measured is None:
            return
        measured.origination_failures += 1
        delay = backoff(self.shared.config, measured.origination_failures)
        measured.backoff_until = self.shared.clock.monotonic() + delay

    def origination_placed(self, campaign_id: str) -> None:
        measured = self._of(campaign_id)
        if measured is not None:
            measured.origination_failures = 0

    def _rang(self, attempt: Attempt, now: float) -> float | None:
        """The one place ring time is measured (at the answer, or at the end of a call
        never answered): the metric observed, the seconds returned."""
        ring = attempt.ring_seconds(now)
        if ring is not None:
            metrics.RING_TIME.observe(ring)
        return ring

    def answered(self, attempt: Attempt) -> None:
        """The call was answered now: its ring time, one live answer for the model."""
        attempt.answered_at = self.shared.clock.monotonic()
        ring = self._rang(attempt, attempt.answered_at)
        measured = self._of(attempt.campaign_id)
        if ring is not None and measured is not None:
            measured.history.answered_live(ring)

    async def agent_connected(self, attempt: Attempt, wait_seconds: float) -> None:
        """An answered call reached an agent: one live answer, abandoned if it waited
        longer than the law allows (behaviour.md §10)."""
        attempt.agent_wait = wait_seconds
        measured = self._of(attempt.campaign_id)
        if measured is not None:
            measured.agent_waits.append(wait_seconds)
        late = abandonment.is_abandoned(wait_seconds, self.shared.config.abandon_seconds)
        await self._count_abandonment(attempt.campaign_id, abandoned=late)

    async def ended(self, attempt: Attempt, reason: HangupReason) -> None:
        """Call times; what an ended attempt teaches the campaign's model; and an
        answered call that ended without ever reaching an agent: a live answer,
        abandoned."""
        now = self.shared.clock.monotonic()
        measured = self._of(attempt.campaign_id)
        if attempt.answered_at is not None:
            metrics.TALK_TIME.observe(now - attempt.answered_at)
            is_call = attempt.campaign_type == CampaignType.CALL
            if measured is not None and is_call and attempt.agent_wait is not None:
                measured.history.talked(now - attempt.answered_at)
        elif attempt.campaign_type == CampaignType.CALL:
            ring = self._rang(attempt, now)
            if measured is not None and ring is not None and reason != HangupReason.CANCELLED:
                measured.history.not_answered(ring)
        if attempt.answered and attempt.agent_wait is None and reason == HangupReason.ABANDONED:
            await self._count_abandonment(attempt.campaign_id, abandoned=True)

    async def _count_abandonment(self, campaign_id: str, *, abandoned: bool) -> None:
        """Add one live answer to today's count, in the store (so a restart or another
        instance goes on from it) and in the copy the governor reads."""
        metrics.LIVE_ANSWERS_MEASURED.labels(abandoned=str(abandoned).lower()).inc()
        day = self._today()
        while True:
            try:
                count = await self.shared.store.add_abandonment(campaign_id, day, 1, int(abandoned))
                break
            except StoreError as exc:
                # A measurement the governor depends on is never dropped: retry.
                log.warning("abandonment count kept until the store answers", error=str(exc))
                await self.shared.clock.sleep_until(self.shared.clock.monotonic() + STORE_RETRY)
        measured = self._of(campaign_id)
        if measured is not None and measured.abandonment is not None:
            measured.abandonment[day] = count

    def finished(self, call: Campaigncall, target: OutdialTarget | None) -> None:
        self.stats.attempts_finished += 1
        if call.result == CampaigncallResult.SUCCESS:
            self.stats.success += 1
        else:
            self.stats.fail += 1
        if target is not None and target.status == TargetStatus.DONE:
            self.stats.targets_done += 1


class Calls:
    """Starts, times, releases, ends and measures the attempts this instance follows."""

    def __init__(
        self,
        shared: SharedState,
        *,
        fence: Callable[[str], Fence | None],
        runs: Callable[[str], bool],
        wake: Callable[[str], bool],
    ) -> None:
        self.shared = shared
        # The lease this instance holds on a campaign (every write carries it).
        self._fence = fence
        # Whether this instance runs the campaign now (its metrics and measures count).
        self._runs = runs
        # Refills the campaign now (or ticks it): an ended attempt frees a line.
        self._wake = wake
        self._book = AttemptBook()
        self.view: AttemptsView = self._book
        self.measures = Measures(shared, runs)
        # The outplans the loops' ticks read, and each one's retry rule with the outplan
        # it was made of: kept while a campaign loop of this instance uses the outplan
        # (its campaign as last read names it), forgotten after, so that a long-running
        # process does not keep every outplan it ever ran.
        self._outplans: dict[str, Outplan] = {}
        self._retry_rules: dict[str, tuple[Outplan, RetryRule]] = {}
        # The outplan each loop's campaign names, and how many loops name each outplan.
        self._outplan_of: dict[str, str] = {}
        self._outplan_loops: Counter[str] = Counter()
        # Outplans kept though no loop names them (read for the end of an attempt that
        # outlived its loop): forgotten when a loop ends.
        self._outplans_unused: set[str] = set()
        # Set by ``drain`` (shutdown): no new attempt; ends are counted by reason.
        self.draining = False
        self._drained: Counter[str] = Counter()
        # Attempts whose end is being written (out of the book meanwhile): still live
        # for a store failover's write-back until the write is done.
        self._finishing: dict[str, Attempt] = {}
        # Answers not written yet (campaigncall id -> campaign id, the lease held at the
        # answer, the time it records), in order, and those being written now
        # (``_write_answers``): an end that comes meanwhile writes its answer with it.
        self._answers: dict[str, _Answer] = {}
        self._answers_writing: dict[str, _Answer] = {}
        self._answer_writer = False
        # A write of answers failed (the store away) and none got through since: an
        # answer records the time it was seen, not that of the write that gets through.
        self._answers_held = False
        # Attempts ended as lost whose end the store did not take yet (campaigncall id
        # -> campaign id, when the loss was first seen): the time the end records,
        # however often it is tried again.
        self._lost_seen: dict[str, tuple[str, datetime]] = {}
        # The attempts' time limits (dial and flow timeouts): (monotonic deadline, order
        # of setting, limit), served by one task while any is left (``_serve_expiries``);
        # its sleep until the earliest, cancelled when an earlier one is set.
        self._expiries: list[tuple[float, int, _Expiry]] = []
        self._expiry_seq = itertools.count()
        self._expiries_compact_at = EXPIRIES_COMPACT_MIN
        self._expiring = False
        self._expiry_wait: anyio.CancelScope | None = None
        self._expiry_wait_until = math.inf

    def note_outplan(self, outplan: Outplan) -> None:
        """The outplan as a tick read it (its retry rule applies when attempts end)."""
        self._outplans[outplan.id] = outplan
        if not self._outplan_loops[outplan.id]:
            self._outplans_unused.add(outplan.id)

    def outplan(self, outplan_id: str) -> Outplan | None:
        return self._outplans.get(outplan_id)

    def uses_outplan(self, campaign_id: str, outplan_id: str | None) -> None:
        """A tick read the campaign of this instance's loop: it names ``outplan_id``
        (None: the campaign is gone). An outplan no loop names any more is forgotten."""
        before = self._outplan_of.get(campaign_id)
        if before == outplan_id:
            return
        if outplan_id is None:
            del self._outplan_of[campaign_id]
        else:
            self._outplan_of[campaign_id] = outplan_id
            self._outplan_loops[outplan_id] += 1
        if before is not None:
            self._outplan_loops[before] -= 1
            if not self._outplan_loops[before]:
                del self._outplan_loops[before]
                self._forget_outplan(before)

    def loop_ended(self, campaign_id: str) -> None:
        """The campaign's loop ended: its outplan is forgotten unless another loop names
        it, and so are those kept for the ends of attempts that outlived their loop, and
        when its lost ends not written yet were seen."""
        self.uses_outplan(campaign_id, None)
        if self._lost_seen:
            # Its lost ends not retried by now will not be (another instance's now).
            for campaigncall_id, (lost_of, _) in list(self._lost_seen.items()):
                if lost_of == campaign_id:
                    del self._lost_seen[campaigncall_id]
        for outplan_id in self._outplans_unused:
            if not self._outplan_loops[outplan_id]:
                self._forget_outplan(outplan_id)
        self._outplans_unused.clear()

    def _forget_outplan(self, outplan_id: str) -> None:
        self._outplans.pop(outplan_id, None)
        self._retry_rules.pop(outplan_id, None)

    # -- start -------------------------------------------------------------------
    def start(self, campaign: Campaign, claimed: Sequence[Campaigncall]) -> None:
        """The attempts one claim of the campaign made: follow them, count and log their
        starts (their originations follow); the counts are published once for all."""
        if not claimed:
            return
        for campaigncall in claimed:
            self.follow(campaigncall, publish=False)
        self._publish_active(campaign.id)
        metrics.attempt_started(campaign.type.value, len(claimed))
        metrics.campaign_attempt_started(campaign.id, len(claimed))
        self.measures.stats.attempts_started += len(claimed)
        if not logs_at(logging.INFO):
            return
        for campaigncall in claimed:
            log.info(
                "attempt started",
                campaigncall_id=campaigncall.id,
                target_id=campaigncall.outdial_target_id,
                destination=campaigncall.destination.target,
                destination_index=campaigncall.destination_index,
                try_count=campaigncall.try_count,
            )

    def follow(
        self,
        campaigncall: Campaigncall,
        *,
        answered: bool = False,
        placed: bool = False,
        publish: bool = True,
    ) -> None:
        """Follow an attempt: its events, its timers and its release are this engine's."""
        campaign_type = (
            CampaignType.FLOW
            if campaigncall.reference_type == ReferenceType.FLOW
            else CampaignType.CALL
        )
        self._book.add(
            Attempt(
                campaigncall_id=campaigncall.id,
                campaign_id=campaigncall.campaign_id,
                campaign_type=campaign_type,
                outplan_id=campaigncall.outplan_id,
                customer_id=campaigncall.customer_id,
                answered=answered,
                placed=placed,
                # Restored attempts (a restart) have no known start: no ring time.
                started_at=None if placed else self.shared.clock.monotonic(),
                campaigncall=campaigncall,
            )
        )
        if publish:
            self._publish_active(campaigncall.campaign_id)

    def live_attempts(self) -> list[Campaigncall]:
        """The attempts followed now, as claimed, with their status now (``dialing``
        until answered): what is written back after a store failover."""
        attempts = {attempt.campaigncall_id: attempt for attempt in self._book}
        attempts.update(self._finishing)
        return [
            msgspec.structs.replace(
                attempt.campaigncall,
                status=CampaigncallStatus.PROGRESSING
                if attempt.answered
                else CampaigncallStatus.DIALING,
            )
            for attempt in attempts.values()
            if attempt.campaigncall is not None
        ]

    def originate_soon(
        self, originations: Sequence[Origination], campaign_type: CampaignType
    ) -> None:
        """Place these claimed calls (or start these flows): one after the other in one
        task when the backend's originate waits for nothing (``originates_at_once``),
        else a task each, so that a slow origination holds up no other."""
        if not originations:
            return
        task_group = self.shared.task_group
        assert task_group is not None
        if self._at_once(campaign_type):
            task_group.start_soon(self._originate_in_turn, originations, campaign_type)
        else:
            for origination in originations:
                task_group.start_soon(self.originate, origination, campaign_type)

    async def _originate_in_turn(
        self, originations: Sequence[Origination], campaign_type: CampaignType
    ) -> None:
        for origination in originations:
            await self.originate(origination, campaign_type)

    async def originate(self, origination: Origination, campaign_type: CampaignType) -> None:
        """Place one claimed call (or start one flow) and set its time limit. Whatever
        may wait after that (an end's write, a release) runs in a task of its own: only
        the backend's originate is awaited here."""
        attempt = self._book.get(origination.campaigncall_id)
        if attempt is None:
            return
        if attempt.release_requested:
            # Stopped between the claim and now: nothing was placed, the try goes back.
            self._soon(
                self._reliably, origination.campaigncall_id, "stopped before origination",
                self._finish, HangupReason.CANCELLED,
            )  # fmt: skip
            return
        try:
            if campaign_type == CampaignType.FLOW:
                await self.shared.flows.start_flow(origination)
                limit, reason = self.shared.config.flow_timeout, HangupReason.TIMEOUT
            else:
                await self.shared.telephony.originate(origination)
                limit, reason = origination.dial_timeout_ms / 1000, HangupReason.NO_ANSWER
        except Exception as exc:
            # Broad on purpose: a backend adapter may fail in any way (its client
            # library's errors, a bug); one failed origination ends that attempt only,
            # and the campaign backs off.
            backend = (
                self.shared.flows.name
                if campaign_type == CampaignType.FLOW
                else self.shared.telephony.name
            )
            metrics.origination_error(backend)
            log.warning(
                "origination failed",
                campaigncall_id=origination.campaigncall_id,
                error=str(exc) or type(exc).__name__,
            )
            self.measures.origination_failed(origination.campaign_id)
            self._soon(
                self._reliably, origination.campaigncall_id, "origination failed",
                self._finish, HangupReason.ERROR,
            )  # fmt: skip
            return
        attempt.placed = True
        self.measures.origination_placed(origination.campaign_id)
        if attempt.release_requested:
            # A stop came while the origination was in flight: end the call now.
            self._soon(self._release, attempt)
            return
        if limit > 0 and not attempt.answered and attempt.campaigncall_id in self._book:
            self._expire_at(attempt, self.shared.clock.monotonic() + limit, reason)

    def _at_once(self, campaign_type: CampaignType) -> bool:
        """Whether the backend of this type of campaign originates (and releases)
        without waiting on anything (``ports.Telephony``)."""
        backend: object = (
            self.shared.flows if campaign_type == CampaignType.FLOW else self.shared.telephony
        )
        return bool(getattr(backend, "originates_at_once", False))

    def _soon(self, work: Callable[..., Coroutine[Any, Any, object]], *args: object) -> None:
        task_group = self.shared.task_group
        assert task_group is not None
        task_group.start_soon(work, *args)

    # -- time limits ---------------------------------------------------------------
    def _expire_at(self, attempt: Attempt, deadline: float, reason: HangupReason) -> None:
        """End the attempt with ``reason`` at ``deadline`` unless it is answered or ended
        before (which cancels its ``timer``). One heap and one task serve every limit."""
        expiry = _Expiry(attempt, reason)
        attempt.timer = expiry
        heapq.heappush(self._expiries, (deadline, next(self._expiry_seq), expiry))
        if len(self._expiries) >= self._expiries_compact_at:
            # Cancelled limits are dropped lazily; rebuilt once they could be most.
            self._expiries = [entry for entry in self._expiries if entry[2].live]
            heapq.heapify(self._expiries)
            self._expiries_compact_at = max(EXPIRIES_COMPACT_MIN, 2 * len(self._expiries))
        if not self._expiring:
            self._expiring = True
            self._soon(self._serve_expiries)
        elif deadline < self._expiry_wait_until and self._expiry_wait is not None:
            self._expiry_wait.cancel()  # an earlier limit than the one slept for

    async def _serve_expiries(self) -> None:
        """Until no limit is left: sleep on the shared clock until the earliest, then
        end the attempts whose limit has come, in the order of their limits."""
        clock = self.shared.clock
        try:
            while self._expiries:
                if not self._expiries[0][2].live:
                    heapq.heappop(self._expiries)  # answered or ended: nothing to wait for
                    continue
                deadline = self._expiries[0][0]
                now = clock.monotonic()
                if deadline > now:
                    with anyio.CancelScope() as scope:
                        self._expiry_wait, self._expiry_wait_until = scope, deadline
                        await clock.sleep_until(deadline)
                    self._expiry_wait, self._expiry_wait_until = None, math.inf
                    continue
                due: list[_Expiry] = []
                while self._expiries and self._expiries[0][0] <= now:
                    expiry = heapq.heappop(self._expiries)[2]
                    attempt = expiry.attempt
                    if expiry.live and self._book.get(attempt.campaigncall_id) is attempt:
                        expiry.live = False
                        due.append(expiry)
                if due:
                    await self._expire(due)
        finally:
            self._expiring = False
            self._expiry_wait, self._expiry_wait_until = None, math.inf

    async def _expire(self, due: Sequence[_Expiry]) -> None:
        """The calls are dropped at once, even while the store is away; each attempt is
        then recorded with its limit's reason, whichever of the two writes comes first
        (the ends of one moment in one store step, in a task of their own)."""
        for expiry in due:
            attempt = expiry.attempt
            attempt.end_reason = expiry.reason
            if self._at_once(attempt.campaign_type):
                await self._release(attempt)
            else:
                self._soon(self._release, attempt)
        self._soon(
            self._finish_burst,
            [
                (
                    expiry.attempt.campaigncall_id,
                    expiry.reason,
                    self._answer_unwritten(expiry.attempt.campaigncall_id),
                )
                for expiry in due
            ],
        )

    # -- release -------------------------------------------------------------------
    async def _release(self, attempt: Attempt) -> None:
        """Tell the backend to drop a call the engine has ended itself."""
        try:
            if attempt.campaign_type == CampaignType.FLOW:
                await self.shared.flows.stop_flow(attempt.campaigncall_id)
            elif attempt.answered:
                await self.shared.telephony.hangup(attempt.campaigncall_id)
            else:
                await self.shared.telephony.cancel(attempt.campaigncall_id)
        except Exception as exc:
            # Broad on purpose: whatever the backend raises, the release is repeated
            # (``_release_until_ended``) or the call is left to the backend.
            log.warning(
                "backend did not release call",
                campaigncall_id=attempt.campaigncall_id,
                error=str(exc) or type(exc).__name__,
            )

    def release_stopping(self, active: Iterable[Campaigncall], *, grace_over: bool) -> None:
        """A stopping campaign's calls: unanswered ones are released now, answered ones
        once the grace is over."""
        for campaigncall in active:
            attempt = self._book.get(campaigncall.id)
            if attempt is None or attempt.release_requested:
                continue
            if not attempt.answered or grace_over:
                self._release_soon(attempt)

    def _release_soon(self, attempt: Attempt) -> None:
        """Have the call ended (cancel or hang-up, repeated until its end is seen)."""
        if attempt.release_requested or self.shared.task_group is None:
            return
        attempt.release_requested = True
        self.shared.task_group.start_soon(self._release_until_ended, attempt)

    async def _release_until_ended(self, attempt: Attempt) -> None:
        """Cancel (or hang up) the call again and again, backing off, until its end is
        reported; after ``release_timeout`` end it as lost, so a stop always ends."""
        campaigncall_id = attempt.campaigncall_id
        give_up = self.shared.clock.monotonic() + self.shared.config.release_timeout
        delay = RELEASE_RETRY_FIRST
        while self._book.get(campaigncall_id) is attempt:
            if attempt.placed:
                await self._release(attempt)
            now = self.shared.clock.monotonic()
            if now >= give_up:
                log.warning(
                    "backend never confirmed the end of the call; attempt ended as lost",
                    campaigncall_id=campaigncall_id,
                    waited=self.shared.config.release_timeout,
                )
                await self._reliably(
                    campaigncall_id, "release unconfirmed", self._finish, HangupReason.LOST
                )
                return
            await self.shared.clock.sleep_until(min(now + delay, give_up))
            delay = min(delay * 2, RELEASE_RETRY_MAX)

    def abandon(self, campaign_id: str) -> None:
        """The campaign's lease is gone: stop following its calls and drop them, unwritten."""
        task_group = self.shared.task_group
        assert task_group is not None
        for attempt in self._book.of(campaign_id):
            self._book.pop(attempt.campaigncall_id)
            if attempt.timer is not None:
                attempt.timer.cancel()
            task_group.start_soon(self._release, attempt)
        self._publish_active(campaign_id)

    async def live_calls(self) -> set[str]:
        """The calls and flows the backends have up now (raises TelephonyUnavailable)."""
        return await self.shared.telephony.live_calls() | await self.shared.flows.live_calls()

    async def drain(self) -> None:
        """Shutdown: see ``Engine.drain``."""
        self.draining = True
        dialing = self._book.dialing
        log.info(
            "shutdown: ending calls",
            dialing=dialing,
            answered=len(self._book) - dialing,
            grace=self.shared.config.stop_grace,
        )
        started = self.shared.clock.monotonic()
        for attempt in self._book:
            if not attempt.answered:
                self._release_soon(attempt)
        await self._wait_calls_ended(started + self.shared.config.stop_grace)
        for attempt in self._book:
            self._release_soon(attempt)
        await self._wait_calls_ended(
            started
            + self.shared.config.stop_grace
            + self.shared.config.release_timeout
            + RELEASE_RETRY_MAX
        )
        log.info("shutdown: calls ended", ended=dict(self._drained), still_up=len(self._book))

    async def _wait_calls_ended(self, deadline: float) -> None:
        while len(self._book) and self.shared.clock.monotonic() < deadline:
            await self.shared.clock.sleep_until(
                min(self.shared.clock.monotonic() + DRAIN_POLL, deadline)
            )

    # -- the backends' events ------------------------------------------------------
    async def handle_events(self, events: MemoryObjectReceiveStream[TelephonyEvent]) -> None:
        """Apply the backends' events until the stream ends: each time, the burst of
        those already waiting (up to ``EVENT_BURST``), see ``_apply_burst``."""
        async with events:
            async for event in events:
                burst = [event]
                while len(burst) < EVENT_BURST:
                    try:
                        burst.append(events.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                await self._apply_burst(burst)

    async def _apply_burst(self, burst: Sequence[TelephonyEvent]) -> None:
        """Apply a burst of events in order, the ends last and together (one store step,
        ``_finish_burst``). An answer whose end is in the same burst is not written on
        its own: the end writes both. Events of a call after its end in the burst
        change nothing (as they would after the end was written)."""
        ending = {event.campaigncall_id for event in burst if isinstance(event, Ended)}
        ends: dict[str, tuple[str, HangupReason, bool]] = {}
        answered: set[str] = set()
        # The campaigns whose answered calls now count as talking (published once).
        talking: set[str] = set()
        for event in burst:
            campaigncall_id = event.campaigncall_id
            if campaigncall_id in ends:
                continue
            if isinstance(event, Answered):
                attempt = self._answer_followed(campaigncall_id)
                if attempt is None:
                    continue
                if campaigncall_id in ending:
                    answered.add(campaigncall_id)
                else:
                    self._answer_soon(attempt)
                    talking.add(attempt.campaign_id)
            elif isinstance(event, AgentConnected):
                await self._agent_connected(event)
            else:
                ends[campaigncall_id] = (
                    campaigncall_id,
                    event.reason,
                    campaigncall_id in answered or self._answer_unwritten(campaigncall_id),
                )
        if talking:
            self._publish_active(*talking)
        if ends:
            await self._finish_burst(list(ends.values()))

    async def _reliably(
        self,
        campaigncall_id: str,
        what: str,
        write: Callable[..., Awaitable[None]],
        *args: HangupReason,
    ) -> None:
        """Write an attempt's change; while the store is unreachable, keep it and retry.

        A task held here stops taking events, so the event stream's buffer (bounded) holds
        the rest, and backends wait once it is full: no outcome is dropped. Never raises.
        """
        outage_logged = False
        while True:
            try:
                await write(campaigncall_id, *args)
                return
            except LeaseLost:
                return  # another instance owns the campaign now; it reconciles the attempt
            except StoreError as exc:
                if not outage_logged:
                    log.warning(
                        "attempt change kept until the store answers",
                        campaigncall_id=campaigncall_id,
                        change=what,
                        error=str(exc),
                    )
                    outage_logged = True
                await self.shared.clock.sleep_until(self.shared.clock.monotonic() + STORE_RETRY)
            except Exception as exc:
                # Broad on purpose: this runs in the event workers, and a worker that
                # raised would take no more events; the error is logged with its trace.
                log.error(
                    "attempt change not applied",
                    campaigncall_id=campaigncall_id,
                    change=what,
                    error=str(exc) or type(exc).__name__,
                    exc_info=True,
                )
                return

    def _answer_followed(self, campaigncall_id: str) -> Attempt | None:
        """The answer, in what this engine follows: the dial timeout stops, the ring
        time is measured, the answer counted. The attempt; None if not followed."""
        attempt = self._book.get(campaigncall_id)
        if attempt is None:
            return None  # not ours (any more), or already ended
        if self._book.answer(campaigncall_id) is not None:
            if attempt.timer is not None:
                attempt.timer.cancel()
            self.measures.answered(attempt)
            metrics.ANSWERED.inc()
            if self._runs(attempt.campaign_id):
                metrics.campaign_answered(attempt.campaign_id)
        return attempt

    def _answer_soon(self, attempt: Attempt) -> None:
        """Have the answer written: with the others waiting, in one store step
        (``_write_answers``), unless the attempt's end comes first and writes it. The
        caller publishes the campaign's counts (once for a burst's answers)."""
        self._answers[attempt.campaigncall_id] = (
            attempt.campaign_id,
            self._fence(attempt.campaign_id),
            # Written soon, at the write's time; while the store is away, when seen.
            self.shared.clock.now() if self._answers_held else None,
        )
        if not self._answer_writer:
            self._answer_writer = True
            self._soon(self._write_answers)

    def _answer_unwritten(self, campaigncall_id: str) -> bool:
        """Whether the attempt's answer is not written yet (it is then taken from those
        waiting: its end writes it, ``AttemptEnd.answered``)."""
        if self._answers.pop(campaigncall_id, None) is not None:
            return True
        return campaigncall_id in self._answers_writing

    async def _write_answers(self) -> None:
        """Write the answers waiting, all of them in one store step, until none waits;
        kept and retried while the store is unreachable (those still followed), as
        ``_reliably`` does for one. Each records the time of its first try (or, seen
        while the store is away, the time it was seen), however often it is retried: one
        step per such time. Never raises but a cancellation."""
        outage_logged = False
        try:
            while self._answers:
                batch, self._answers = self._answers, {}
                self._answers_writing = batch
                now = self.shared.clock.now()
                unwritten = {
                    key: (campaign_id, fence, at or now)
                    for key, (campaign_id, fence, at) in batch.items()
                }
                by_time: dict[datetime, list[tuple[str, Fence | None]]] = {}
                for key, (_, fence, at) in unwritten.items():
                    by_time.setdefault(at, []).append((key, fence))
                outcomes: list[Campaigncall | LeaseLost | None] = []
                try:
                    for at, answers in by_time.items():
                        with metrics.store_operation("mark_answered", self.shared.store.backend):
                            outcomes += await self.shared.store.mark_answered_many(answers, at)
                        for key, _ in answers:
                            del unwritten[key]
                except StoreError as exc:
                    kept = {key: what for key, what in unwritten.items() if key in self._book}
                    self._answers = {**kept, **self._answers}
                    self._answers_held = True
                    if not outage_logged:
                        log.warning(
                            "attempt changes kept until the store answers",
                            campaigncall_ids=list(kept),
                            change="answered",
                            error=str(exc),
                        )
                        outage_logged = True
                    self._answers_writing = {}
                    await self.shared.clock.sleep_until(self.shared.clock.monotonic() + STORE_RETRY)
                    continue
                except Exception as exc:
                    # Broad on purpose, as in ``_reliably``: logged with its trace (the
                    # attempts stay followed; their ends are written as ever).
                    log.error(
                        "attempt changes not applied",
                        campaigncall_ids=list(batch),
                        change="answered",
                        error=str(exc) or type(exc).__name__,
                        exc_info=True,
                    )
                    continue
                finally:
                    self._answers_writing = {}
                self._answers_held = False
                if logs_at(logging.DEBUG):
                    for outcome in outcomes:
                        if outcome is not None and not isinstance(outcome, LeaseLost):
                            log.debug("attempt answered", campaigncall_id=outcome.id,
                                      campaign_id=outcome.campaign_id)  # fmt: skip
        finally:
            self._answer_writer = False
            self._answers_writing = {}

    async def _agent_connected(self, event: AgentConnected) -> None:
        """An answered call reached an agent: one live answer, abandoned if it waited
        longer than the law allows (behaviour.md §10)."""
        attempt = self._book.get(event.campaigncall_id)
        if attempt is None or attempt.agent_wait is not None:
            return
        await self.measures.agent_connected(attempt, event.wait_seconds)

    # -- the end -------------------------------------------------------------------
    async def end_as_lost(self, campaigncall: Campaigncall, *, warning: str | None = None) -> None:
        """An attempt the store has as active whose call is not live: ended as lost
        (the ownership's reconciliation)."""
        if warning is not None:
            log.warning(warning, campaigncall_id=campaigncall.id,
                        campaign_id=campaigncall.campaign_id)  # fmt: skip
        # A retried end (the store was away: the reconciliation runs again) records the
        # loss when it was first seen.
        _, seen = self._lost_seen.setdefault(
            campaigncall.id, (campaigncall.campaign_id, self.shared.clock.now())
        )
        kept = False
        try:
            await self._finish(
                campaigncall.id, HangupReason.LOST, campaigncall=campaigncall, seen=seen
            )
        except StoreError:
            kept = True
            raise
        finally:
            if not kept:
                self._lost_seen.pop(campaigncall.id, None)

    async def end_vanished(self, live: set[str]) -> None:
        """End followed calls the backend no longer has, whose end event never came (a
        lost event). Missing from two sweeps in a row: an end event already on its way
        is written first, and wins."""
        for attempt in self._book:
            if not attempt.placed or attempt.campaigncall_id in live:
                attempt.missing_sweeps = 0
                continue
            attempt.missing_sweeps += 1
            if attempt.missing_sweeps < 2:
                continue
            log.warning(
                "call vanished without an end event; attempt ended as lost",
                campaigncall_id=attempt.campaigncall_id,
                campaign_id=attempt.campaign_id,
            )
            await self._reliably(
                attempt.campaigncall_id, "vanished", self._finish, HangupReason.LOST
            )

    async def _finish(
        self,
        campaigncall_id: str,
        reason: HangupReason,
        *,
        campaigncall: Campaigncall | None = None,
        seen: datetime | None = None,
    ) -> None:
        """End the attempt once; a repeated or late event changes nothing. ``seen``:
        when the end of the stored ``campaigncall`` was seen (default: now)."""
        answered = self._answer_unwritten(campaigncall_id)
        ending = await self._ending(
            campaigncall_id, reason, campaigncall, answered=answered, seen=seen
        )
        if ending is None:
            return  # a late or repeated event of an attempt this engine no longer follows
        end = ending.end
        try:
            if end.answered:
                # Its answer is not written yet: the end writes both.
                with metrics.store_operation("finish_attempts", self.shared.store.backend):
                    (outcome,) = await self.shared.store.finish_attempts([end])
                if isinstance(outcome, LeaseLost):
                    raise outcome
                finished = outcome
            else:
                with metrics.store_operation("finish_attempt", self.shared.store.backend):
                    finished = await self.shared.store.finish_attempt(
                        campaigncall_id,
                        end.result,
                        end.reason,
                        end.rule,
                        end.now,
                        fence=end.fence,
                        give_back_try=end.give_back_try,
                        calling_rules=end.calling_rules,
                    )
        except LeaseLost:
            log.warning("attempt left to the campaign's new owner", campaigncall_id=campaigncall_id)
            return
        except BaseException:
            # Broad on purpose, and re-raised: whatever stopped the write (a store
            # outage, a cancellation), the attempt is followed again so a later event
            # or tick can finish it.
            if ending.attempt is not None:
                self._book.add(ending.attempt)
            raise
        finally:
            self._finishing.pop(campaigncall_id, None)
        await self._ended(ending, finished)

    async def _finish_burst(self, ends: Sequence[tuple[str, HangupReason, bool]]) -> None:
        """End the attempts of one burst of events (id, reason, answered in the same
        burst) in one store step (``finish_attempts``); kept and retried while the store
        is unreachable, as ``_reliably`` does for one. Never raises."""
        endings: list[_Ending] = []
        outage_logged = False
        while True:
            try:
                for campaigncall_id, reason, answered in ends:
                    ending = await self._ending(campaigncall_id, reason, None, answered=answered)
                    if ending is not None:
                        endings.append(ending)
                if not endings:
                    return
                with metrics.store_operation("finish_attempts", self.shared.store.backend):
                    outcomes = await self.shared.store.finish_attempts(
                        [ending.end for ending in endings]
                    )
                break
            except StoreError as exc:
                self._settled(endings)
                for ending in endings:
                    if ending.attempt is not None:
                        self._book.add(ending.attempt)
                endings = []
                if not outage_logged:
                    log.warning(
                        "attempt changes kept until the store answers",
                        campaigncall_ids=[campaigncall_id for campaigncall_id, *_ in ends],
                        change="ended",
                        error=str(exc),
                    )
                    outage_logged = True
                await self.shared.clock.sleep_until(self.shared.clock.monotonic() + STORE_RETRY)
            except BaseException as exc:
                # Broad on purpose: whatever stopped the write, the attempts are followed
                # again so a later event or tick can finish them; a cancellation goes on.
                self._settled(endings)
                for ending in endings:
                    if ending.attempt is not None:
                        self._book.add(ending.attempt)
                if not isinstance(exc, Exception):
                    raise
                log.error(
                    "attempt changes not applied",
                    campaigncall_ids=[campaigncall_id for campaigncall_id, *_ in ends],
                    change="ended",
                    error=str(exc) or type(exc).__name__,
                    exc_info=True,
                )
                return
        self._settled(endings)
        self._publish_active(*{ending.campaign_id for ending in endings})
        for ending, outcome in zip(endings, outcomes, strict=True):
            if isinstance(outcome, LeaseLost):
                log.warning("attempt left to the campaign's new owner",
                            campaigncall_id=ending.end.campaigncall_id)  # fmt: skip
                continue
            await self._ended(ending, outcome, published=True)

    def _settled(self, endings: Sequence[_Ending]) -> None:
        """The store answered for these ends (or they are followed again)."""
        for ending in endings:
            self._finishing.pop(ending.end.campaigncall_id, None)

    async def _ending(
        self,
        campaigncall_id: str,
        reason: HangupReason,
        campaigncall: Campaigncall | None,
        *,
        answered: bool = False,
        seen: datetime | None = None,
    ) -> _Ending | None:
        """Stop following the attempt and say how it ends; None if it is not followed
        (and no stored ``campaigncall`` is given)."""
        attempt = self._book.pop(campaigncall_id)
        give_back_try = False
        now = seen or self.shared.clock.now()
        if attempt is not None:
            # A retried write (the store was away) records the end when it was seen.
            if attempt.ended_at is None:
                attempt.ended_at = now
            now = attempt.ended_at
            if attempt.timer is not None:
                attempt.timer.cancel()
            reason = attempt.end_reason or reason
            campaign_id, outplan_id = attempt.campaign_id, attempt.outplan_id
            customer_id = attempt.customer_id
            give_back_try = targets.gives_try_back(
                reason, answered=attempt.answered, stopped=attempt.release_requested
            )
        elif campaigncall is not None:
            campaign_id, outplan_id = campaigncall.campaign_id, campaigncall.outplan_id
            customer_id = campaigncall.customer_id
        else:
            return None
        try:
            rule = await self._retry_rule(outplan_id)
        except BaseException:
            if attempt is not None:
                self._book.add(attempt)
            raise
        end = AttemptEnd(
            campaigncall_id=campaigncall_id,
            result=targets.result_for(reason),
            reason=reason.value,
            rule=rule,
            now=now,
            fence=self._fence(campaign_id),
            give_back_try=give_back_try,
            calling_rules=self.shared.calling_rules(customer_id),
            answered=answered,
        )
        if attempt is not None:
            # Live until the store has its end: written back by a failover meanwhile.
            self._finishing[campaigncall_id] = attempt
        return _Ending(end, attempt, campaign_id, reason)

    async def _ended(
        self, ending: _Ending, finished: FinishResult | None, *, published: bool = False
    ) -> None:
        """What follows an end the store wrote: metrics, measures, the log line, a tick
        (``published``: the caller published the campaign's counts already)."""
        campaign_id, reason, attempt = ending.campaign_id, ending.reason, ending.attempt
        result = ending.end.result
        if not published:
            self._publish_active(campaign_id)
        if finished is None or not finished.finished:
            return
        if self.draining:
            self._drained[reason.value] += 1
        metrics.attempt_finished(result.value, reason.value)
        runs = self._runs(campaign_id)
        if runs:
            metrics.campaign_attempt_ended(campaign_id, result.value, reason.value)
        if attempt is not None:
            await self.measures.ended(attempt, reason)
        self.measures.finished(finished.campaigncall, finished.target)
        call = finished.campaigncall
        if logs_at(logging.INFO):
            log.info(
                "attempt ended",
                campaign_id=call.campaign_id,
                campaigncall_id=call.id,
                target_id=call.outdial_target_id,
                result=result.value,
                reason=reason.value,
                target_status=finished.target.status.value if finished.target else None,
            )
        if runs:
            self._wake(call.campaign_id)

    async def _retry_rule(self, outplan_id: str) -> RetryRule:
        outplan = self._outplans.get(outplan_id)
        if outplan is None:
            # None when the outplan is gone: no retry can follow, the target ends done.
            outplan = await self.shared.store.get_outplan(None, outplan_id)
            if outplan is None:
                return RetryRule.of(None)
            self.note_outplan(outplan)
        # Made once per outplan as a tick read it, not once per end.
        kept = self._retry_rules.get(outplan_id)
        if kept is not None and kept[0] is outplan:
            return kept[1]
        rule = RetryRule.of(outplan)
        self._retry_rules[outplan_id] = (outplan, rule)
        return rule

    def _publish_active(self, *campaign_ids: str) -> None:
        """Set the gauges of the attempts in progress, in all and of these campaigns (those
        this instance runs)."""
        dialing = self._book.dialing
        metrics.attempts_active(dialing=dialing, progressing=len(self._book) - dialing)
        for campaign_id in campaign_ids:
            if self._runs(campaign_id):
                count = self._book.of_campaign(campaign_id)
                metrics.campaign_activity(
                    campaign_id, dialing=count.dialing, talking=count.active - count.dialing
                )


def is_answered(campaigncall: Campaigncall) -> bool:
    """A restored attempt past dialing was answered."""
    return campaigncall.status != CampaigncallStatus.DIALING
