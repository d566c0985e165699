"""The scheduler: one supervised loop per running campaign, and the attempts it starts.

Each loop ticks its campaign at absolute deadlines (``engine.tick_interval``) and at once
when one of its attempts ends. A tick reads the campaign and its outplan, asks the queue
adapter how many agents are free, lets ``pacing`` decide how many attempts to start,
claims targets through the store (which persists each attempt before it is originated),
and checks for exhaustion (``end_handle``, chaining). Backend events come back on one
stream and end attempts exactly once. The decisions themselves live in the pure modules
``pacing``, ``outcome`` and ``lifecycle``.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import socket
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import anyio
import structlog
from anyio.abc import ObjectReceiveStream, TaskGroup, TaskStatus

from dialerd import abandonment, lifecycle, metrics
from dialerd.abandonment import DayCount
from dialerd.attempts import Attempt, AttemptBook
from dialerd.config import EngineConfig
from dialerd.control import CampaignControl, RunRefused
from dialerd.core import targets
from dialerd.core.targets import RetryRule
from dialerd.insight import CampaignInsight, DialingState, TargetCounts
from dialerd.model import (
    NIL_UUID,
    Campaign,
    Campaigncall,
    CampaigncallResult,
    CampaignStatus,
    CampaignType,
    OutdialTarget,
    Outplan,
    PacingMode,
    TargetStatus,
    format_time,
    new_id,
    parse_time,
)
from dialerd.pacing import PacingInput, RateBudget, ceiling, decide
from dialerd.ports import (
    AgentConnected,
    Answered,
    Clock,
    FlowRunner,
    HangupReason,
    Origination,
    QueueAdapter,
    QueueUnavailable,
    Telephony,
    TelephonyEvent,
    TelephonyUnavailable,
)
from dialerd.predictive import (
    AIM,
    CallHistory,
    Situation,
    lines_to_start,
    lines_within_headroom,
)
from dialerd.queues import QueueRegistry
from dialerd.store import AttemptPlan, CampaignNotRunning, Fence, LeaseLost, Store, StoreError

log = structlog.get_logger("dialerd.engine")

# Outcome events waiting to be written; a bounded buffer, so a stalled store pushes
# back on the backends instead of growing without limit.
EVENT_BUFFER = 10_000
EVENT_WORKERS = 16
# Seconds between retries while the store is unreachable.
STORE_RETRY = 1.0
# Attempts the store has as active but this engine does not follow (a reply lost in an
# outage) are ended as lost once this old.
ORPHAN_AGE = 30.0
RECONCILE_EVERY = 10
# Seconds between two ticks of one campaign woken by ending attempts.
WAKE_SPACING = 0.05
# Stopped campaigns are only counted for the metric, so not on every round.
STOPPED_COUNT_EVERY = 15
# Seconds between repeats of a cancel or hang-up the backend has not confirmed yet:
# from the first value, doubling up to the second.
RELEASE_RETRY_FIRST = 0.5
RELEASE_RETRY_MAX = 8.0
# Seconds between two looks at the calls still up while draining for shutdown.
DRAIN_POLL = 0.1
# States worth a log line when a campaign enters or leaves them.
_TROUBLE = frozenset(
    {
        DialingState.BACKING_OFF,
        DialingState.STORE_UNREACHABLE,
        DialingState.QUEUE_UNREACHABLE,
        DialingState.TELEPHONY_UNREACHABLE,
    }
)
# Seconds between two log lines of a campaign whose ticks keep failing.
REPEAT_LOG_EVERY = 60.0
# Housekeeping rounds between two counts of each campaign's list (a scan of the list).
TARGET_COUNT_EVERY = 15


@dataclass
class EngineStats:
    """Running totals since start, for the demo, STATUS and benchmarks."""

    attempts_started: int = 0
    attempts_finished: int = 0
    success: int = 0
    fail: int = 0
    targets_done: int = 0


@dataclass
class CampaignLoop:
    """The in-memory state of one campaign's loop."""

    campaign_id: str
    budget: RateBudget
    started_by_chain: bool = False
    dialed_any: bool = False
    woken: bool = False
    sleep_scope: anyio.CancelScope | None = None
    stopping_since: float | None = None
    backoff_until: float = 0.0
    origination_failures: int = 0
    # The campaign's lease: every write of this loop carries it (a fencing token).
    fence: Fence | None = None
    lease_renewed: float = -math.inf
    # The attempts a previous owner left have been ended or followed (``_take_over``).
    taken_over: bool = False
    # When a failed tick was last logged (repeats in between are only counted).
    failure_logged: float = -math.inf
    # The campaign as read by the latest tick.
    campaign: Campaign | None = None
    # What the latest tick found, since when (wall clock), and what the pacing read.
    state: DialingState | None = None
    state_detail: str = ""
    state_since: datetime | None = None
    held_by: DialingState = DialingState.PACED
    available_agents: int | None = None
    target_counts: TargetCounts | None = None
    # What the campaign's own attempts did (the predictive model learns from it), and
    # its abandonment counts by day, read from the store once the loop runs it.
    history: CallHistory = field(default_factory=CallHistory)
    abandonment: dict[str, DayCount] | None = None
    governor_pressure: float = 0.0


class Engine:
    """Runs every campaign whose status is ``run`` or ``stopping``."""

    def __init__(
        self,
        *,
        store: Store,
        queue: QueueAdapter,
        telephony: Telephony,
        flows: FlowRunner,
        clock: Clock,
        config: EngineConfig,
        control: CampaignControl | None = None,
        owner: str | None = None,
        queues: QueueRegistry | None = None,
    ) -> None:
        self.store = store
        self.queue = queue
        self.queues = queues if queues is not None else QueueRegistry()
        self.telephony = telephony
        self.flows = flows
        self.clock = clock
        self.config = config
        self.control = control or CampaignControl(
            store, clock, queues=self.queues, queue_adapter=queue
        )
        self.control.wake = self.wake
        self.control.stopped = self.note_stop
        self.control.insight = self.insight
        # Running and stopping campaigns by queue id, refreshed by housekeeping: the
        # campaigns that share a queue's agents (several instances included).
        self._by_queue: dict[str, list[Campaign]] = {}
        self._queue_locks: dict[str, anyio.Lock] = {}
        self._loops: dict[str, CampaignLoop] = {}
        self._attempts = AttemptBook()
        self._outplans: dict[str, Outplan] = {}
        self._chained: set[str] = set()
        # This process's name on campaign leases.
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{new_id()[:8]}"
        # Campaigns another instance holds: not tried again before this monotonic time.
        self._foreign: dict[str, float] = {}
        self._task_group: TaskGroup | None = None
        self._housekeeping_sleep: anyio.CancelScope | None = None
        self.last_progress = clock.monotonic()
        self.stats = EngineStats()
        # Set by ``drain`` (shutdown): no new attempt; ends are counted by reason.
        self.draining = False
        self._drained: Counter[str] = Counter()
        # Called with (lag, duration) of every tick; benchmarks collect the samples.
        self.tick_observer: Callable[[float, float], None] | None = None

    # -- lifecycle ---------------------------------------------------------------
    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start the backends, reconcile, pick up campaigns, then run until cancelled."""
        metrics.declare_backends(
            telephony=[self.telephony.name, self.flows.name], queue_adapter=self.queue.name
        )
        send, receive = anyio.create_memory_object_stream[TelephonyEvent](EVENT_BUFFER)
        async with anyio.create_task_group() as task_group:
            self._task_group = task_group
            async with send:
                await task_group.start(self.telephony.run, send.clone())
                await task_group.start(self.flows.run, send.clone())
            for _ in range(EVENT_WORKERS):
                task_group.start_soon(self._handle_events, receive.clone())
            await receive.aclose()
            await self._reconcile()
            for campaign in await self.store.campaigns_with_status(
                [CampaignStatus.RUN, CampaignStatus.STOPPING]
            ):
                self._ensure_loop(campaign.id)
            task_group.start_soon(self._housekeeping)
            log.info("engine started", campaigns=len(self._loops))
            task_status.started()

    def reconfigure(self, config: EngineConfig) -> None:
        """Apply a reloaded ``[engine]`` section; every sleeping loop ticks at once, so a
        new tick interval applies now."""
        self.config = config
        if self._housekeeping_sleep is not None:
            self._housekeeping_sleep.cancel()
        for campaign_id in list(self._loops):
            self.wake(campaign_id)

    def wake(self, campaign_id: str) -> None:
        """Tick the campaign now (starting its loop if it has none)."""
        loop = self._loops.get(campaign_id)
        if loop is None:
            self._ensure_loop(campaign_id)
            return
        loop.woken = True
        if loop.sleep_scope is not None:
            loop.sleep_scope.cancel()

    def _set_state(self, loop: CampaignLoop, state: DialingState, detail: str = "") -> None:
        """Record what this tick found (the operator's "why is it not dialing?")."""
        if state != loop.state:
            loop.state_since = self.clock.now()
            metrics.campaign_state(loop.campaign_id, state)
            if state in _TROUBLE or loop.state in _TROUBLE:
                log.info(
                    "campaign dialing state changed",
                    state=state.value,
                    previous=loop.state.value if loop.state else None,
                    detail=detail,
                )
        loop.state, loop.state_detail = state, detail

    def insight(self, campaign_id: str) -> CampaignInsight | None:
        """What this instance knows of a campaign it runs; None if it runs it not."""
        loop = self._loops.get(campaign_id)
        if loop is None or loop.fence is None or loop.campaign is None or loop.state is None:
            return None
        count = self._attempts.of_campaign(campaign_id)
        return CampaignInsight(
            campaign_id=campaign_id,
            status=loop.campaign.status.value,
            state=loop.state.value,
            detail=loop.state_detail,
            since=format_time(loop.state_since) if loop.state_since else "",
            instance=self.owner,
            available_agents=loop.available_agents,
            dialing=count.dialing,
            talking=count.active - count.dialing,
            service_level=loop.campaign.service_level,
            targets=loop.target_counts,
            pacing_mode=loop.campaign.pacing_mode.value,
            abandonment=self._abandonment_windows(loop),
            governor_pressure=loop.governor_pressure,
            **self._estimates(loop),
        )

    def _abandonment_windows(self, loop: CampaignLoop) -> list[abandonment.WindowCount]:
        """The campaign's abandonment per configured window, as counted so far."""
        today = abandonment.campaign_day(self.clock.now(), self.config.abandon_day_offset_minutes)
        return abandonment.windows(
            (loop.abandonment or {}).values(), today, self.config.abandon_windows
        )

    @staticmethod
    def _estimates(loop: CampaignLoop) -> dict[str, float]:
        estimates = loop.history.estimates()
        if estimates is None:
            return {}
        return {
            "live_rate": round(estimates.live_rate, 4),
            "answer_seconds": round(estimates.answer_seconds, 2),
            "talk_seconds": round(estimates.talk_seconds, 2),
        }

    async def drain(self) -> None:
        """Shutdown: start nothing more, cancel unanswered calls (their tries go back),
        let answered ones go on up to ``stop_grace``, then hang them up; return once
        every call has ended (bounded by ``stop_grace + release_timeout``)."""
        self.draining = True
        dialing = self._attempts.dialing
        log.info(
            "shutdown: ending calls",
            dialing=dialing,
            answered=len(self._attempts) - dialing,
            grace=self.config.stop_grace,
        )
        started = self.clock.monotonic()
        for attempt in self._attempts:
            if not attempt.answered:
                self._release_soon(attempt)
        await self._wait_calls_ended(started + self.config.stop_grace)
        for attempt in self._attempts:
            self._release_soon(attempt)
        await self._wait_calls_ended(
            started + self.config.stop_grace + self.config.release_timeout + RELEASE_RETRY_MAX
        )
        log.info(
            "shutdown: calls ended",
            ended=dict(self._drained),
            still_up=len(self._attempts),
        )

    async def _wait_calls_ended(self, deadline: float) -> None:
        while len(self._attempts) and self.clock.monotonic() < deadline:
            await self.clock.sleep_until(min(self.clock.monotonic() + DRAIN_POLL, deadline))

    def _release_soon(self, attempt: Attempt) -> None:
        """Have the call ended (cancel or hang-up, repeated until its end is seen)."""
        if attempt.release_requested or self._task_group is None:
            return
        attempt.release_requested = True
        self._task_group.start_soon(self._release_until_ended, attempt)

    def note_stop(self, campaign_id: str) -> None:
        """A stop was stored just now: the grace of answered calls counts from here."""
        loop = self._loops.get(campaign_id)
        if loop is not None:
            loop.stopping_since = self.clock.monotonic()
        self.wake(campaign_id)

    @property
    def running_campaigns(self) -> int:
        return len(self._loops)

    @property
    def active_attempts(self) -> int:
        return len(self._attempts)

    @property
    def max_dialing(self) -> int:
        """The most attempts that were dialing at one moment."""
        return self._attempts.max_dialing

    async def _housekeeping(self) -> None:
        """Once a tick: publish campaign counts and pick up any campaign left without a loop.

        A campaign set to ``run`` by another path (another instance, a restored backup)
        is found here, so no running campaign can be forgotten. Its progress is also the
        heartbeat the systemd watchdog follows.
        """
        deadline = self.clock.monotonic()
        stopped = 0
        for rounds in itertools.count():
            try:
                active = await self.store.campaigns_with_status(
                    [CampaignStatus.RUN, CampaignStatus.STOPPING]
                )
                now = self.clock.monotonic()
                for campaign in active:
                    if self._foreign.get(campaign.id, -math.inf) <= now:
                        self._ensure_loop(campaign.id)
                if rounds % STOPPED_COUNT_EVERY == 0:
                    stopped = len(await self.store.campaigns_with_status([CampaignStatus.STOP]))
                by_queue: dict[str, list[Campaign]] = {}
                for campaign in active:
                    if campaign.queue_id != NIL_UUID:
                        by_queue.setdefault(campaign.queue_id, []).append(campaign)
                self._by_queue = by_queue
                stored = {status.value: 0 for status in CampaignStatus}
                stored[CampaignStatus.STOP.value] = stopped
                for campaign in active:
                    stored[campaign.status.value] += 1
                metrics.campaigns_stored(stored)
                # This instance's own: they add up right across instances.
                owned = {status.value: 0 for status in CampaignStatus}
                for loop in self._loops.values():
                    if loop.fence is not None and loop.campaign is not None:
                        owned[loop.campaign.status.value] += 1
                metrics.campaigns_by_status(owned)
                metrics.queues_in_use(
                    {campaign.queue_id for campaign in active if campaign.queue_id != NIL_UUID}
                )
                if rounds % RECONCILE_EVERY == RECONCILE_EVERY - 1:
                    await self._end_orphans()
                if rounds % TARGET_COUNT_EVERY == 0:
                    await self._count_targets()
            except Exception as exc:
                log.warning("housekeeping failed", error=str(exc) or type(exc).__name__)
            self.last_progress = self.clock.monotonic()
            # Read each round: a reload may change the interval.
            deadline = max(deadline + self.config.tick_interval, self.clock.monotonic())
            with anyio.CancelScope() as self._housekeeping_sleep:
                await self.clock.sleep_until(deadline)
            deadline = min(deadline, self.clock.monotonic())

    async def _count_targets(self) -> None:
        """The list progress of each campaign this instance runs (a scan per list)."""
        for loop in list(self._loops.values()):
            campaign = loop.campaign
            outplan = self._outplans.get(campaign.outplan_id) if campaign else None
            if loop.fence is None or campaign is None or outplan is None:
                continue
            loop.target_counts = await self.store.target_counts(
                campaign.outdial_id, self.clock.now()
            )
            if campaign.id in self._loops:
                metrics.campaign_targets(campaign.id, loop.target_counts)

    def _ensure_loop(self, campaign_id: str) -> None:
        if campaign_id in self._loops or self._task_group is None:
            return
        loop = CampaignLoop(
            campaign_id=campaign_id,
            budget=RateBudget.full(self.config.max_attempts_per_second, self.clock.monotonic()),
            started_by_chain=campaign_id in self._chained,
        )
        self._chained.discard(campaign_id)
        self._loops[campaign_id] = loop
        self._task_group.start_soon(self._supervise, loop, name=f"campaign {campaign_id}")

    async def _end_orphans(self) -> None:
        """End active attempts nobody follows (their start's reply was lost in an
        outage), and followed ones whose call vanished without an end event."""
        cutoff = self.clock.now() - timedelta(seconds=ORPHAN_AGE)
        try:
            live = await self._live_calls()
        except TelephonyUnavailable:
            return  # cannot tell which are live: next round
        for campaigncall in await self.store.active_attempts(None):
            if (
                campaigncall.id in self._attempts
                or campaigncall.id in live
                or self._fence(campaigncall.campaign_id) is None
                or parse_time(campaigncall.tm_create) > cutoff
            ):
                continue
            log.warning("orphan attempt ended", campaigncall_id=campaigncall.id,
                        campaign_id=campaigncall.campaign_id)  # fmt: skip
            await self._finish(campaigncall.id, HangupReason.LOST, campaigncall=campaigncall)
        await self._end_vanished(live)

    async def _end_vanished(self, live: set[str]) -> None:
        """End followed calls the backend no longer has, whose end event never came (a
        lost event). Missing from two sweeps in a row: an end event already on its way
        is written first, and wins."""
        for attempt in self._attempts:
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

    async def _reconcile(self) -> None:
        """After a restart: keep following live attempts; end the others as ``lost``.

        Campaigns leased by another instance are that instance's to reconcile. When the
        backend cannot tell which calls live, each campaign's loop does it on its own
        (``_take_over``) before it dials.
        """
        try:
            live = await self._live_calls()
        except TelephonyUnavailable as exc:
            log.warning("reconciliation deferred: telephony unavailable", error=str(exc))
            return
        owners: dict[str, str | None] = {}
        for campaigncall in await self.store.active_attempts(None):
            campaign_id = campaigncall.campaign_id
            if campaign_id not in owners:
                owners[campaign_id] = await self.store.lease_owner(campaign_id, self.clock.now())
            if owners[campaign_id] not in (None, self.owner):
                continue
            if campaigncall.id in live:
                self._follow(campaigncall, answered=campaigncall.status != "dialing", placed=True)
                continue
            await self._finish(campaigncall.id, HangupReason.LOST, campaigncall=campaigncall)

    # -- one campaign's loop -----------------------------------------------------
    async def _supervise(self, loop: CampaignLoop) -> None:
        structlog.contextvars.bind_contextvars(campaign_id=loop.campaign_id)
        deadline = self.clock.monotonic()
        failures = 0
        try:
            while True:
                # Read each tick: a reload may change the interval.
                interval = self.config.tick_interval
                tick_started = self.clock.monotonic()
                lag = max(0.0, tick_started - deadline)
                try:
                    if not await self._hold_lease(loop):
                        return
                    finished = await self._tick(loop, lag)
                    failures = 0
                except LeaseLost:
                    self._abandon(loop, "a write was fenced off")
                    return
                except Exception as exc:
                    # One campaign's failure never stops another: log, back off, retry.
                    failures += 1
                    delay = min(
                        self.config.backoff_initial * 2 ** (failures - 1), self.config.backoff_max
                    )
                    if isinstance(exc, StoreError):
                        # The store coming back must resume dialing within seconds.
                        delay = min(delay, STORE_RETRY)
                    error = str(exc) or type(exc).__name__
                    self._set_state(
                        loop,
                        DialingState.STORE_UNREACHABLE
                        if isinstance(exc, StoreError)
                        else DialingState.BACKING_OFF,
                        error,
                    )
                    now = self.clock.monotonic()
                    # One line per outage and then one a minute, with the count: a
                    # thousand campaigns must not flood the journal twice a second.
                    if failures == 1 or now - loop.failure_logged >= REPEAT_LOG_EVERY:
                        log.error(
                            "campaign tick failed",
                            error=error,
                            error_type=type(exc).__name__,
                            retry_in=delay,
                            failures=failures,
                            exc_info=not isinstance(exc, StoreError | QueueUnavailable),
                        )
                        loop.failure_logged = now
                    await self.clock.sleep_until(self.clock.monotonic() + delay)
                    deadline = self.clock.monotonic()
                    continue
                if finished:
                    return
                deadline += interval
                now = self.clock.monotonic()
                if deadline < now:
                    # Fell behind by more than a tick: skip the missed ones, keep the phase.
                    deadline += math.ceil((now - deadline) / interval) * interval
                with anyio.CancelScope() as scope:
                    loop.sleep_scope = scope
                    if not loop.woken:
                        await self.clock.sleep_until(deadline)
                loop.sleep_scope = None
                if loop.woken:
                    # Attempts ending in a burst share one tick: at most one wake-up
                    # tick per WAKE_SPACING, however many calls ended.
                    deadline = max(self.clock.monotonic(), tick_started + WAKE_SPACING)
                    await self.clock.sleep_until(deadline)
                    loop.woken = False
        finally:
            del self._loops[loop.campaign_id]
            metrics.forget_campaign(loop.campaign_id)
            if loop.fence is not None:
                # Shielded and bounded; if the store is away the lease simply expires.
                with (
                    anyio.CancelScope(shield=True),
                    anyio.move_on_after(STORE_RETRY),
                    contextlib.suppress(StoreError),
                ):
                    await self.store.release_lease(loop.fence)

    async def _hold_lease(self, loop: CampaignLoop) -> bool:
        """Take or renew the campaign's lease; False when another instance holds it."""
        now = self.clock.monotonic()
        ttl = self.config.lease_ttl
        if loop.fence is not None and now - loop.lease_renewed < ttl / 3:
            return True
        fence = await self.store.acquire_lease(loop.campaign_id, self.owner, ttl, self.clock.now())
        if fence is None or (loop.fence is not None and fence.token != loop.fence.token):
            if loop.fence is not None:
                self._abandon(loop, "the lease expired")
            self._foreign[loop.campaign_id] = now + ttl / 3
            return False
        loop.fence = fence
        loop.lease_renewed = now
        if not loop.taken_over:
            # Nothing is dialed before the previous owner's attempts are settled; if the
            # backend cannot tell which live, the tick fails and is retried.
            await self._take_over(loop)
            loop.taken_over = True
        return True

    async def _take_over(self, loop: CampaignLoop) -> None:
        """A newly leased campaign: attempts of a previous owner that this process does
        not have live are ended as lost, before anything is dialed."""
        live = await self._live_calls()
        for campaigncall in await self.store.active_attempts(loop.campaign_id):
            if campaigncall.id in self._attempts:
                continue
            if campaigncall.id in live:
                self._follow(campaigncall, answered=campaigncall.status != "dialing", placed=True)
                continue
            await self._finish(campaigncall.id, HangupReason.LOST, campaigncall=campaigncall)

    def _abandon(self, loop: CampaignLoop, why: str) -> None:
        """The lease is gone: stop following the campaign's calls and drop them, unwritten."""
        log.warning("campaign lease lost; another instance takes over", reason=why)
        loop.fence = None
        loop.taken_over = False
        assert self._task_group is not None
        for attempt in self._attempts:
            if attempt.campaign_id == loop.campaign_id:
                self._attempts.pop(attempt.campaigncall_id)
                if attempt.timer is not None:
                    attempt.timer.cancel()
                self._task_group.start_soon(self._release, attempt)
        self._publish_active(loop.campaign_id)

    def _fence(self, campaign_id: str) -> Fence | None:
        loop = self._loops.get(campaign_id)
        return loop.fence if loop is not None else None

    async def _tick(self, loop: CampaignLoop, lag: float) -> bool:
        """One tick; True when the campaign no longer runs and its loop should end."""
        started_at = self.clock.monotonic()
        metrics.TICK_LAG.observe(lag)
        try:
            campaign = loop.campaign = await self.store.get_campaign(None, loop.campaign_id)
            if campaign is None:
                finished = True
            elif campaign.status == CampaignStatus.RUN:
                finished = await self._tick_running(loop, campaign)
            else:
                finished = await self._tick_stopping(loop, campaign)
            return finished
        finally:
            # A tick that ended, well or with an error (a store away), is progress: the
            # scheduler is alive. Only a tick that never ends stops the watchdog.
            self.last_progress = self.clock.monotonic()
            duration = self.clock.monotonic() - started_at
            metrics.TICK_DURATION.observe(duration)
            if self.tick_observer is not None:
                self.tick_observer(lag, duration)

    async def _tick_running(self, loop: CampaignLoop, campaign: Campaign) -> bool:
        if self.draining:
            self._set_state(loop, DialingState.DRAINING)
            return False  # shutting down: nothing new starts
        outplan = await self.store.get_outplan(campaign.customer_id, campaign.outplan_id)
        if outplan is None:
            await self._stop_invalid(campaign, f"outplan {campaign.outplan_id} no longer exists")
            return False
        self._outplans[outplan.id] = outplan

        # A stop may come back to run before this loop saw it: its grace starts anew.
        loop.stopping_since = None
        # Campaigns sharing a queue decide one at a time, each seeing the others' calls.
        queue_lock = (
            self._queue_locks.setdefault(campaign.queue_id, anyio.Lock())
            if campaign.queue_id != NIL_UUID
            else contextlib.nullcontext()
        )
        async with queue_lock:
            allowed = await self._allowance(loop, campaign)
            started = 0
            stopped = False
            for _ in range(allowed):
                try:
                    campaigncall = await self._start_one(campaign, outplan, loop.fence)
                except CampaignNotRunning:
                    # Stopped while this tick was under way: the store claimed no more.
                    stopped = True
                    break
                if campaigncall is None:
                    break
                started += 1
        loop.budget = loop.budget.spent(started)
        if stopped:
            self.wake(campaign.id)
            return False
        if started:
            loop.dialed_any = True
            self._set_state(loop, DialingState.DIALING)
        elif allowed == 0:
            self._set_state(loop, loop.held_by, loop.state_detail)
        else:
            self._set_state(loop, DialingState.NO_ELIGIBLE_TARGET)
        metrics.pacing_decision(allowed=allowed, started=started)
        if started < allowed or allowed == 0:
            return await self._check_exhausted(loop, campaign, outplan)
        return False

    async def _allowance(self, loop: CampaignLoop, campaign: Campaign) -> int:
        """How many attempts the pacing rule and ceilings allow this tick."""
        now = self.clock.monotonic()
        loop.budget = loop.budget.refilled(now, self.config.max_attempts_per_second)
        if now < loop.backoff_until:
            loop.held_by = DialingState.BACKING_OFF
            return 0
        if campaign.type == CampaignType.CALL:
            why = self.telephony.unavailable_reason()
            if why is not None:
                # As with a store outage: no attempt while the backend cannot place it.
                loop.held_by = DialingState.TELEPHONY_UNREACHABLE
                loop.state_detail = why
                return 0
        has_queue = campaign.queue_id != NIL_UUID
        available = others = 0
        if has_queue:
            queue = self.queues.get(campaign.customer_id, campaign.queue_id)
            if queue is None:
                await self._stop_invalid(
                    campaign, f"queue {campaign.queue_id} is no longer registered"
                )
                return 0
            try:
                available = await self.queue.available_agents(queue.name)
            except QueueUnavailable as exc:
                # Never dial on a guess: no agent count, no new attempt.
                metrics.queue_read_error(self.queue.name)
                loop.held_by = DialingState.QUEUE_UNREACHABLE
                loop.state_detail = str(exc)
                return 0
            metrics.AVAILABLE_AGENTS.labels(queue_id=campaign.queue_id).set(available)
            others = await self._queue_demand(campaign)
        loop.available_agents = available if has_queue else None
        metrics.campaign_pacing(
            campaign.id,
            service_level=campaign.service_level,
            available_agents=loop.available_agents,
        )
        count = self._attempts.of_campaign(campaign.id)
        pacing = PacingInput(
            has_queue=has_queue,
            available_agents=available,
            dialing_attempts=count.dialing,
            active_attempts=count.active,
            service_level=campaign.service_level,
            max_concurrent_attempts=self.config.max_concurrent_attempts,
            rate_allowance=loop.budget.allowance,
            other_demand=others,
        )
        predicted = headroom_lines = windows = None
        # Only a backend that reports when callers reach agents measures abandonment;
        # without it (test doubles) the seed's rule runs ungoverned, as before.
        if (
            has_queue
            and campaign.type == CampaignType.CALL
            and getattr(self.telephony, "reports_agent_connect", False)
        ):
            windows = await self._abandonment_now(loop, campaign)
            situation = self._situation(campaign, pacing, others)
            if campaign.pacing_mode == PacingMode.PREDICTIVE:
                predicted = lines_to_start(
                    loop.history, situation, campaign.target_abandon_rate * AIM, ceiling(pacing)
                )
            cap = self.config.abandon_cap
            room = min((cap * window.live - window.abandoned for window in windows), default=0.0)
            headroom_lines = lines_within_headroom(
                loop.history, situation, room, cap, ceiling(pacing)
            )
        decision = decide(
            pacing,
            predicted=predicted,
            windows=windows,
            cap=self.config.abandon_cap,
            headroom_lines=headroom_lines,
        )
        loop.held_by = decision.held_by
        loop.governor_pressure = decision.pressure
        loop.state_detail = "abandonment nears the cap" if decision.pressure > 0 else ""
        return decision.attempts

    async def _abandonment_now(
        self, loop: CampaignLoop, campaign: Campaign
    ) -> list[abandonment.WindowCount]:
        """The campaign's abandonment windows (read from the store on the loop's first
        tick: a restart or a takeover goes on from the stored counts)."""
        today = abandonment.campaign_day(self.clock.now(), self.config.abandon_day_offset_minutes)
        longest = max(self.config.abandon_windows, default=1)
        if loop.abandonment is None:
            since = abandonment.first_day(today, longest)
            stored = await self.store.abandonment_days(campaign.id, since)
            loop.abandonment = {count.day: count for count in stored}
        abandonment.trimmed(loop.abandonment, today, longest)
        windows = self._abandonment_windows(loop)
        metrics.campaign_abandonment(campaign.id, windows, loop.governor_pressure)
        return windows

    def _situation(self, campaign: Campaign, pacing: PacingInput, others: int) -> Situation:
        """What the predictive model reads: the campaign's lines and calls right now."""
        now = self.clock.monotonic()
        ringing: list[float] = []
        talking: list[float] = []
        waiting = 0
        for attempt in self._attempts.of(campaign.id):
            if not attempt.answered:
                ringing.append(now - attempt.started_at if attempt.started_at else 0.0)
            elif attempt.agent_wait is None:
                waiting += 1
            elif attempt.answered_at is not None:
                talking.append(now - attempt.answered_at)
        return Situation(
            available_agents=pacing.available_agents,
            ringing=ringing,
            talking=talking,
            waiting=waiting,
            # The queue's other campaigns: their demand, in lines per agent.
            other_live=others / 100,
            wrap_up=self.config.predictive_wrap_up,
            abandon_seconds=self.config.abandon_seconds,
        )

    def _queue_name(self, campaign: Campaign) -> str:
        queue = self.queues.get(campaign.customer_id, campaign.queue_id)
        return queue.name if queue is not None else ""

    async def _queue_demand(self, campaign: Campaign) -> int:
        """Σ dialing × service_level of the other campaigns on the campaign's queue.

        This engine's own campaigns count from memory; those another instance runs
        from the store (behaviour.md §3: campaigns on one queue share its agents).
        """
        demand = 0
        own = {
            loop.campaign_id: loop.campaign
            for loop in self._loops.values()
            if loop.fence is not None
            and loop.campaign is not None
            and loop.campaign.queue_id == campaign.queue_id
        }
        for other in own.values():
            if other.id != campaign.id:
                dialing = self._attempts.of_campaign(other.id).dialing
                demand += dialing * other.service_level
        for other in self._by_queue.get(campaign.queue_id, []):
            if other.id != campaign.id and other.id not in own:
                demand += await self.store.count_dialing(other.id) * other.service_level
        return demand

    async def _start_one(
        self, campaign: Campaign, outplan: Outplan, fence: Fence | None
    ) -> Campaigncall | None:
        """Persist one attempt, then originate it (keyed by its campaigncall id)."""
        plan = AttemptPlan(
            campaign=campaign,
            outplan=outplan,
            campaigncall_id=new_id(),
            reference_id=new_id() if campaign.type == CampaignType.CALL else NIL_UUID,
            activeflow_id=new_id(),
            now=self.clock.now(),
            fence=fence,
        )
        with metrics.store_operation("start_attempt", self.store.backend):
            campaigncall = await self.store.start_attempt(plan)
        if campaigncall is None:
            return None
        self._follow(campaigncall)
        metrics.attempt_started(campaign.type.value)
        metrics.campaign_attempt_started(campaign.id)
        self.stats.attempts_started += 1
        log.info(
            "attempt started",
            campaigncall_id=campaigncall.id,
            target_id=campaigncall.outdial_target_id,
            destination=campaigncall.destination.target,
            destination_index=campaigncall.destination_index,
            try_count=campaigncall.try_count,
        )
        origination = Origination(
            campaigncall_id=campaigncall.id,
            campaign_id=campaign.id,
            customer_id=campaign.customer_id,
            reference_id=campaigncall.reference_id,
            queue_id=campaign.queue_id,
            source=campaigncall.source,
            destination=campaigncall.destination,
            actions=campaign.actions,
            dial_timeout_ms=outplan.dial_timeout,
            queue_name=self._queue_name(campaign),
        )
        assert self._task_group is not None
        self._task_group.start_soon(self._originate, origination, campaign.type)
        return campaigncall

    async def _originate(self, origination: Origination, campaign_type: CampaignType) -> None:
        attempt = self._attempts.get(origination.campaigncall_id)
        if attempt is None:
            return
        if attempt.release_requested:
            # Stopped between the claim and now: nothing was placed, the try goes back.
            await self._reliably(
                origination.campaigncall_id, "stopped before origination", self._finish,
                HangupReason.CANCELLED,
            )  # fmt: skip
            return
        try:
            if campaign_type == CampaignType.FLOW:
                await self.flows.start_flow(origination)
                limit, reason = self.config.flow_timeout, HangupReason.TIMEOUT
            else:
                await self.telephony.originate(origination)
                limit, reason = origination.dial_timeout_ms / 1000, HangupReason.NO_ANSWER
        except Exception as exc:
            # One failed origination ends that attempt only; the campaign backs off.
            backend = self.flows.name if campaign_type == CampaignType.FLOW else self.telephony.name
            metrics.origination_error(backend)
            log.warning(
                "origination failed",
                campaigncall_id=origination.campaigncall_id,
                error=str(exc) or type(exc).__name__,
            )
            self._back_off(origination.campaign_id)
            await self._reliably(
                origination.campaigncall_id, "origination failed", self._finish, HangupReason.ERROR
            )
            return
        attempt.placed = True
        loop = self._loops.get(origination.campaign_id)
        if loop is not None:
            loop.origination_failures = 0
        if attempt.release_requested:
            # A stop came while the origination was in flight: end the call now.
            await self._release(attempt)
            return
        if limit > 0 and not attempt.answered:
            await self._expire(attempt, limit, reason)

    def _back_off(self, campaign_id: str) -> None:
        loop = self._loops.get(campaign_id)
        if loop is None:
            return
        loop.origination_failures += 1
        delay = min(
            self.config.backoff_initial * 2 ** (loop.origination_failures - 1),
            self.config.backoff_max,
        )
        loop.backoff_until = self.clock.monotonic() + delay

    async def _expire(self, attempt: Attempt, seconds: float, reason: HangupReason) -> None:
        """End the attempt with ``reason`` if it is not answered (or reported) in time."""
        with anyio.CancelScope() as scope:
            attempt.timer = scope
            await self.clock.sleep_until(self.clock.monotonic() + seconds)
        if scope.cancelled_caught or attempt.campaigncall_id not in self._attempts:
            return
        # The call is dropped at once, even while the store is away; the attempt is then
        # recorded with this reason, whichever of the two writes comes first.
        attempt.end_reason = reason
        await self._release(attempt)
        await self._reliably(attempt.campaigncall_id, f"expired {reason}", self._finish, reason)

    async def _release(self, attempt: Attempt) -> None:
        """Tell the backend to drop a call the engine has ended itself."""
        try:
            if attempt.campaign_type == CampaignType.FLOW:
                await self.flows.stop_flow(attempt.campaigncall_id)
            elif attempt.answered:
                await self.telephony.hangup(attempt.campaigncall_id)
            else:
                await self.telephony.cancel(attempt.campaigncall_id)
        except Exception as exc:
            log.warning(
                "backend did not release call",
                campaigncall_id=attempt.campaigncall_id,
                error=str(exc) or type(exc).__name__,
            )

    async def _check_exhausted(
        self, loop: CampaignLoop, campaign: Campaign, outplan: Outplan
    ) -> bool:
        if not await self.store.outdial_exhausted(campaign.id, campaign.outdial_id):
            return False
        self._set_state(loop, DialingState.EXHAUSTED)
        if lifecycle.status_when_exhausted(campaign.end_handle) == CampaignStatus.RUN:
            return False
        stopped = await self.control.transition(
            campaign.id,
            CampaignStatus.RUN,
            CampaignStatus.STOP,
            cause="outdial exhausted",
            fence=loop.fence,
        )
        if stopped is None:
            return False
        await self._chain(loop, stopped)
        return True

    async def _chain(self, loop: CampaignLoop, stopped: Campaign) -> None:
        if stopped.next_campaign_id == NIL_UUID:
            return
        next_campaign = await self.store.get_campaign(stopped.customer_id, stopped.next_campaign_id)
        if not lifecycle.should_chain(
            stopped,
            next_campaign,
            started_by_chain=loop.started_by_chain,
            dialed_any=loop.dialed_any,
        ):
            log.info(
                "campaign not chained",
                next_campaign_id=stopped.next_campaign_id,
                reason="nothing dialed" if loop.started_by_chain else "next campaign not startable",
            )
            return
        assert next_campaign is not None
        self._chained.add(next_campaign.id)
        try:
            await self.control.run(stopped.customer_id, next_campaign.id, cause="chained")
        except RunRefused as exc:
            self._chained.discard(next_campaign.id)
            log.warning("chained campaign refused to run", next_campaign_id=next_campaign.id,
                        problems=exc.problems)  # fmt: skip

    async def _stop_invalid(self, campaign: Campaign, why: str) -> None:
        log.error("campaign can no longer run", reason=why)
        await self.control.stop(campaign.customer_id, campaign.id, cause=why)

    async def _tick_stopping(self, loop: CampaignLoop, campaign: Campaign) -> bool:
        """Cancel unanswered attempts now, hang up answered ones after the grace (counted
        from the latest stop); each is repeated until the backend confirms the end."""
        now = self.clock.monotonic()
        self._set_state(loop, DialingState.STOPPING)
        if loop.stopping_since is None:
            loop.stopping_since = now
        active = await self.store.active_attempts(campaign.id)
        if not active:
            loop.stopping_since = None
            if campaign.status == CampaignStatus.STOPPING:
                await self.control.transition(
                    campaign.id,
                    CampaignStatus.STOPPING,
                    CampaignStatus.STOP,
                    cause="no attempt left active",
                    fence=loop.fence,
                )
            return True
        grace_over = now - loop.stopping_since >= self.config.stop_grace
        unfollowed = [call for call in active if call.id not in self._attempts]
        if unfollowed:
            with contextlib.suppress(TelephonyUnavailable):
                live = await self._live_calls()
                for campaigncall in unfollowed:
                    if campaigncall.id not in live:
                        await self._finish(
                            campaigncall.id, HangupReason.LOST, campaigncall=campaigncall
                        )
        for campaigncall in active:
            attempt = self._attempts.get(campaigncall.id)
            if attempt is None or attempt.release_requested:
                continue
            if not attempt.answered or grace_over:
                self._release_soon(attempt)
        return False

    async def _release_until_ended(self, attempt: Attempt) -> None:
        """Cancel (or hang up) the call again and again, backing off, until its end is
        reported; after ``release_timeout`` end it as lost, so a stop always ends."""
        campaigncall_id = attempt.campaigncall_id
        give_up = self.clock.monotonic() + self.config.release_timeout
        delay = RELEASE_RETRY_FIRST
        while self._attempts.get(campaigncall_id) is attempt:
            if attempt.placed:
                await self._release(attempt)
            now = self.clock.monotonic()
            if now >= give_up:
                log.warning(
                    "backend never confirmed the end of the call; attempt ended as lost",
                    campaigncall_id=campaigncall_id,
                    waited=self.config.release_timeout,
                )
                await self._reliably(
                    campaigncall_id, "release unconfirmed", self._finish, HangupReason.LOST
                )
                return
            await self.clock.sleep_until(min(now + delay, give_up))
            delay = min(delay * 2, RELEASE_RETRY_MAX)

    async def _live_calls(self) -> set[str]:
        return await self.telephony.live_calls() | await self.flows.live_calls()

    # -- attempts and their events ----------------------------------------------
    def _follow(
        self, campaigncall: Campaigncall, *, answered: bool = False, placed: bool = False
    ) -> None:
        campaign_type = (
            CampaignType.FLOW if campaigncall.reference_type == "flow" else CampaignType.CALL
        )
        self._attempts.add(
            Attempt(
                campaigncall_id=campaigncall.id,
                campaign_id=campaigncall.campaign_id,
                campaign_type=campaign_type,
                outplan_id=campaigncall.outplan_id,
                answered=answered,
                placed=placed,
                # Restored attempts (a restart) have no known start: no ring time.
                started_at=None if placed else self.clock.monotonic(),
            )
        )
        self._publish_active(campaigncall.campaign_id)

    async def _handle_events(self, events: ObjectReceiveStream[TelephonyEvent]) -> None:
        async with events:
            async for event in events:
                await self._apply(event)

    async def _apply(self, event: TelephonyEvent) -> None:
        """Write one backend event (see ``_reliably``)."""
        if isinstance(event, Answered):
            await self._reliably(event.campaigncall_id, "answered", self._answered)
        elif isinstance(event, AgentConnected):
            await self._agent_connected(event)
        else:
            await self._reliably(
                event.campaigncall_id, f"ended {event.reason}", self._finish, event.reason
            )

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
                await self.clock.sleep_until(self.clock.monotonic() + STORE_RETRY)
            except Exception as exc:
                log.error(
                    "attempt change not applied",
                    campaigncall_id=campaigncall_id,
                    change=what,
                    error=str(exc) or type(exc).__name__,
                    exc_info=True,
                )
                return

    async def _answered(self, campaigncall_id: str) -> None:
        attempt = self._attempts.get(campaigncall_id)
        if attempt is None:
            return  # not ours (any more), or already ended
        if self._attempts.answer(campaigncall_id) is not None:
            if attempt.timer is not None:
                attempt.timer.cancel()
            attempt.answered_at = self.clock.monotonic()
            if attempt.started_at is not None:
                metrics.RING_TIME.observe(attempt.answered_at - attempt.started_at)
                loop = self._loops.get(attempt.campaign_id)
                if loop is not None:
                    loop.history.answered_live(attempt.answered_at - attempt.started_at)
        with metrics.store_operation("mark_answered", self.store.backend):
            answered = await self.store.mark_answered(
                campaigncall_id, self.clock.now(), fence=self._fence(attempt.campaign_id)
            )
        if answered is not None:
            metrics.ANSWERED.inc()
            if attempt.campaign_id in self._loops:
                metrics.campaign_answered(attempt.campaign_id)
            self._publish_active(attempt.campaign_id)
            log.debug("attempt answered", campaigncall_id=campaigncall_id,
                      campaign_id=answered.campaign_id)  # fmt: skip

    async def _finish(
        self,
        campaigncall_id: str,
        reason: HangupReason,
        *,
        campaigncall: Campaigncall | None = None,
    ) -> None:
        """End the attempt once; a repeated or late event changes nothing."""
        attempt = self._attempts.pop(campaigncall_id)
        give_back_try = False
        if attempt is not None:
            if attempt.timer is not None:
                attempt.timer.cancel()
            reason = attempt.end_reason or reason
            campaign_id, outplan_id = attempt.campaign_id, attempt.outplan_id
            give_back_try = targets.gives_try_back(
                reason, answered=attempt.answered, stopped=attempt.release_requested
            )
        elif campaigncall is not None:
            campaign_id, outplan_id = campaigncall.campaign_id, campaigncall.outplan_id
        else:
            return  # a late or repeated event of an attempt this engine no longer follows
        rule = await self._retry_rule(outplan_id)
        result = targets.result_for(reason)
        try:
            with metrics.store_operation("finish_attempt", self.store.backend):
                finished = await self.store.finish_attempt(
                    campaigncall_id,
                    result,
                    reason.value,
                    rule,
                    self.clock.now(),
                    fence=self._fence(campaign_id),
                    give_back_try=give_back_try,
                )
        except LeaseLost:
            log.warning("attempt left to the campaign's new owner", campaigncall_id=campaigncall_id)
            return
        except BaseException:
            if attempt is not None:
                # Not written: keep following it so a later event or tick can finish it.
                self._attempts.add(attempt)
            raise
        self._publish_active(campaign_id)
        if finished is None or not finished.finished:
            return
        if self.draining:
            self._drained[reason.value] += 1
        metrics.attempt_finished(result.value, reason.value)
        if campaign_id in self._loops:
            metrics.campaign_attempt_ended(campaign_id, result.value, reason.value)
        if attempt is not None:
            self._observe_call_times(attempt)
            await self._measure_end(attempt, reason)
        self._count_finished(finished.campaigncall, finished.target)
        call = finished.campaigncall
        log.info(
            "attempt ended",
            campaign_id=call.campaign_id,
            campaigncall_id=call.id,
            target_id=call.outdial_target_id,
            result=result.value,
            reason=reason.value,
            target_status=finished.target.status.value if finished.target else None,
        )
        if call.campaign_id in self._loops:
            self.wake(call.campaign_id)

    def _publish_active(self, campaign_id: str | None = None) -> None:
        dialing = self._attempts.dialing
        metrics.attempts_active(dialing=dialing, progressing=len(self._attempts) - dialing)
        if campaign_id is not None and campaign_id in self._loops:
            count = self._attempts.of_campaign(campaign_id)
            metrics.campaign_activity(
                campaign_id, dialing=count.dialing, talking=count.active - count.dialing
            )

    async def _agent_connected(self, event: AgentConnected) -> None:
        """An answered call reached an agent: one live answer, abandoned if it waited
        longer than the law allows (behaviour.md §10)."""
        attempt = self._attempts.get(event.campaigncall_id)
        if attempt is None or attempt.agent_wait is not None:
            return
        attempt.agent_wait = event.wait_seconds
        late = abandonment.is_abandoned(event.wait_seconds, self.config.abandon_seconds)
        await self._count_abandonment(attempt.campaign_id, abandoned=late)

    async def _measure_end(self, attempt: Attempt, reason: HangupReason) -> None:
        """What an ended attempt teaches the campaign's model, and an answered call that
        ended without ever reaching an agent: a live answer, abandoned."""
        loop = self._loops.get(attempt.campaign_id)
        now = self.clock.monotonic()
        if loop is not None and attempt.campaign_type == CampaignType.CALL:
            if attempt.answered_at is not None:
                if attempt.agent_wait is not None:
                    loop.history.talked(now - attempt.answered_at)
            elif attempt.started_at is not None and reason != HangupReason.CANCELLED:
                loop.history.not_answered(now - attempt.started_at)
        if attempt.answered and attempt.agent_wait is None and reason == HangupReason.ABANDONED:
            await self._count_abandonment(attempt.campaign_id, abandoned=True)

    async def _count_abandonment(self, campaign_id: str, *, abandoned: bool) -> None:
        """Add one live answer to today's count, in the store (so a restart or another
        instance goes on from it) and in the loop's copy the governor reads."""
        metrics.LIVE_ANSWERS_MEASURED.labels(abandoned=str(abandoned).lower()).inc()
        day = abandonment.campaign_day(self.clock.now(), self.config.abandon_day_offset_minutes)
        while True:
            try:
                count = await self.store.add_abandonment(campaign_id, day, 1, int(abandoned))
                break
            except StoreError as exc:
                # A measurement the governor depends on is never dropped: retry.
                log.warning("abandonment count kept until the store answers", error=str(exc))
                await self.clock.sleep_until(self.clock.monotonic() + STORE_RETRY)
        loop = self._loops.get(campaign_id)
        if loop is not None and loop.abandonment is not None:
            loop.abandonment[day] = count

    def _observe_call_times(self, attempt: Attempt) -> None:
        now = self.clock.monotonic()
        if attempt.answered_at is not None:
            metrics.TALK_TIME.observe(now - attempt.answered_at)
        elif attempt.started_at is not None and attempt.campaign_type == CampaignType.CALL:
            metrics.RING_TIME.observe(now - attempt.started_at)

    def _count_finished(self, call: Campaigncall, target: OutdialTarget | None) -> None:
        self.stats.attempts_finished += 1
        if call.result == CampaigncallResult.SUCCESS:
            self.stats.success += 1
        else:
            self.stats.fail += 1
        if target is not None and target.status == TargetStatus.DONE:
            self.stats.targets_done += 1

    async def _retry_rule(self, outplan_id: str) -> RetryRule:
        outplan = self._outplans.get(outplan_id)
        if outplan is None:
            # None when the outplan is gone: no retry can follow, the target ends done.
            outplan = await self.store.get_outplan(None, outplan_id)
            if outplan is not None:
                self._outplans[outplan_id] = outplan
        return RetryRule.of(outplan)
