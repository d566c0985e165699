"""The campaign loops: one supervised loop per running or stopping campaign, ticking at
absolute deadlines and at once when woken, and the housekeeping round that finds
campaigns without a loop, publishes counts and reconciles."""

from __future__ import annotations

import itertools
import math
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
import structlog

from dialerd import metrics
from dialerd.insight import DialingState
from dialerd.model import NIL_UUID, Campaign, CampaignStatus, Outplan
from dialerd.ports import QueueUnavailable
from dialerd.scheduler.heap import LongLivedHeap
from dialerd.scheduler.ownership import Ownership
from dialerd.scheduler.registry import Leases, RunningCampaigns
from dialerd.scheduler.shared import STORE_RETRY, CampaignLoop, SharedState, backoff, log
from dialerd.scheduler.states import DialingStates
from dialerd.scheduler.tick import Tick
from dialerd.store import LeaseLost, StoreError

# Housekeeping rounds between two reconciliation sweeps.
RECONCILE_EVERY = 10
# Seconds between two ticks of one campaign woken by ending attempts.
WAKE_SPACING = 0.05
# Stopped campaigns are only counted for the metric, so not on every round.
STOPPED_COUNT_EVERY = 15
# Seconds between two log lines of a campaign whose ticks keep failing.
REPEAT_LOG_EVERY = 60.0
# Housekeeping rounds between two counts of each campaign's list (a scan of the list).
TARGET_COUNT_EVERY = 15
# Housekeeping rounds between two prunes of the number locks that ended.
PRUNE_LOCKS_EVERY = 60


@dataclass(eq=False)
class Supervisor:
    """Starts, paces and ends the campaign loops; runs housekeeping."""

    shared: SharedState
    running: RunningCampaigns
    leases: Leases
    ownership: Ownership
    tick: Tick
    states: DialingStates
    # Whether a campaign whose loop starts was started by chaining (asked once).
    started_by_chain: Callable[[str], bool]
    # The outplan a campaign's tick read last (None before its first tick).
    outplan: Callable[[str], Outplan | None]
    # What the other parts forget of a campaign whose loop ended.
    loop_ended: Callable[[str], None]
    # What a loop that ends while it holds the lease keeps of what it learnt (the
    # pacing prior), before ``loop_ended`` forgets it.
    keep_learnt: Callable[[str], Awaitable[None]] | None = None
    # When housekeeping or a tick last got through (the watchdog's heartbeat).
    last_progress: float = -math.inf
    # Freezes the loops' long-lived objects out of the collector's passes.
    heap: LongLivedHeap = field(default_factory=LongLivedHeap)
    # Loops started since the engine started (the heap settles after each new one).
    _loops_started: int = 0
    # Stopped campaigns in the store, as last counted (every ``STOPPED_COUNT_EVERY``).
    _stopped: int = 0
    _housekeeping_sleep: anyio.CancelScope | None = None

    def __post_init__(self) -> None:
        self.last_progress = self.shared.clock.monotonic()

    def reconfigured(self) -> None:
        """A reload: housekeeping and every sleeping loop go on at once, so a new tick
        interval applies now; then each loop goes back to its own phase."""
        if self._housekeeping_sleep is not None:
            self._housekeeping_sleep.cancel()
        for campaign_id, loop in list(self.running.loops.items()):
            loop.rephase = True
            self.wake(campaign_id)

    def wake(self, campaign_id: str) -> None:
        """Tick the campaign now (starting its loop if it has none)."""
        if not self.running.wake(campaign_id):
            self.ensure_loop(campaign_id)

    def note_stop(self, campaign_id: str) -> None:
        """A stop was stored just now: the grace of answered calls counts from here."""
        loop = self.running.loops.get(campaign_id)
        if loop is not None:
            loop.stopping_since = self.shared.clock.monotonic()
        self.wake(campaign_id)

    async def housekeeping(self) -> None:
        """Once a tick: publish campaign counts and pick up any campaign left without a loop.

        A campaign set to ``run`` by another path (another instance, a restored backup)
        is found here, so no running campaign can be forgotten. Its progress is also the
        heartbeat the systemd watchdog follows.
        """
        deadline = self.shared.clock.monotonic()
        try:
            for rounds in itertools.count():
                try:
                    await self._housekeeping_round(rounds)
                except Exception as exc:
                    # Broad on purpose: housekeeping is what finds forgotten campaigns and
                    # feeds the watchdog; whatever failed this round, the next one runs.
                    log.warning("housekeeping failed", error=str(exc) or type(exc).__name__)
                self.last_progress = self.shared.clock.monotonic()
                self.heap.settle(self._loops_started, self.last_progress)
                # Read each round: a reload may change the interval.
                deadline = max(
                    deadline + self.shared.config.tick_interval, self.shared.clock.monotonic()
                )
                with anyio.CancelScope() as self._housekeeping_sleep:
                    await self.shared.clock.sleep_until(deadline)
                deadline = min(deadline, self.shared.clock.monotonic())
        finally:
            # The engine stops: its frozen objects go back to the collector.
            self.heap.release()

    async def _housekeeping_round(self, rounds: int) -> None:
        """One round: loops for the campaigns without one, the counts published, and
        the reconciliation and lock prunes whose round it is (each campaign's list is
        counted by its own loop, ``_count_if_due``)."""
        await self.ownership.write_back()
        active = await self.shared.store.campaigns_with_status(
            [CampaignStatus.RUN, CampaignStatus.STOPPING]
        )
        now = self.shared.clock.monotonic()
        for campaign in active:
            if not self.leases.held_elsewhere(campaign.id, now):
                self.ensure_loop(campaign.id, spread=True)
        if rounds % STOPPED_COUNT_EVERY == 0:
            self._stopped = len(
                await self.shared.store.campaigns_with_status([CampaignStatus.STOP])
            )
        by_queue: dict[str, list[Campaign]] = {}
        for campaign in active:
            if campaign.queue_id != NIL_UUID:
                by_queue.setdefault(campaign.queue_id, []).append(campaign)
        self.running.by_queue = by_queue
        stored = {status.value: 0 for status in CampaignStatus}
        stored[CampaignStatus.STOP.value] = self._stopped
        for campaign in active:
            stored[campaign.status.value] += 1
        metrics.campaigns_stored(stored)
        # This instance's own: they add up right across instances.
        owned = {status.value: 0 for status in CampaignStatus}
        for owned_campaign in self.running.owned():
            owned[owned_campaign.status.value] += 1
        metrics.campaigns_by_status(owned)
        metrics.queues_in_use(
            {campaign.queue_id for campaign in active if campaign.queue_id != NIL_UUID}
        )
        if rounds % RECONCILE_EVERY == RECONCILE_EVERY - 1:
            await self.ownership.sweep()
        if rounds % PRUNE_LOCKS_EVERY == PRUNE_LOCKS_EVERY - 1:
            await self.shared.store.prune_locks(self.shared.clock.now())

    async def _count_if_due(self, loop: CampaignLoop, interval: float) -> None:
        """After a tick: count the campaign's list (a scan of it) once every
        ``TARGET_COUNT_EVERY`` intervals, at the campaign's own offset within that
        period (its phase), so that many campaigns' counts spread like their ticks
        instead of falling in one burst of reads."""
        now = self.shared.clock.monotonic()
        period = TARGET_COUNT_EVERY * interval
        if loop.count_due is None:
            loop.count_due = now + phase(loop.campaign_id) * period
        if now < loop.count_due:
            return
        # The next one a period on, on the same offset (periods missed are skipped).
        loop.count_due += max(1, math.ceil((now - loop.count_due) / period)) * period
        campaign = loop.campaign
        if (
            campaign is None
            or self.outplan(campaign.outplan_id) is None
            or self.leases.fence(loop.campaign_id) is None
        ):
            return
        try:
            counts = await self.shared.store.target_counts(
                campaign.outdial_id, self.shared.clock.now()
            )
        except Exception as exc:
            # Broad on purpose: only progress figures, never worth the loop; the next
            # period counts again (a store away is said by the ticks already).
            if not isinstance(exc, StoreError):
                log.warning("list not counted", error=str(exc) or type(exc).__name__)
            return
        if campaign.id in self.running:
            self.states.counted(campaign.id, counts)
            metrics.campaign_targets(campaign.id, counts)

    def ensure_loop(self, campaign_id: str, *, spread: bool = False) -> None:
        """Start the campaign's loop unless it has one; ``spread``: one of many started
        together (the engine's start, housekeeping), whose ticks after the first fall
        on the campaign's phase of the interval."""
        if campaign_id in self.running.loops or self.shared.task_group is None:
            return
        loop = CampaignLoop(
            campaign_id=campaign_id,
            started_by_chain=self.started_by_chain(campaign_id),
            rephase=spread,
        )
        self.running.loops[campaign_id] = loop
        self._loops_started += 1
        self.shared.task_group.start_soon(self._supervise, loop, name=f"campaign {campaign_id}")

    async def _supervise(self, loop: CampaignLoop) -> None:
        """Tick the campaign until it no longer runs, its lease is lost, or cancelled."""
        structlog.contextvars.bind_contextvars(campaign_id=loop.campaign_id)
        deadline = self.shared.clock.monotonic()
        failures = 0
        # The campaign's tick found it no longer runs here (stopped, deleted).
        ended = False
        try:
            while True:
                # Read each tick: a reload may change the interval.
                interval = self.shared.config.tick_interval
                tick_started = self.shared.clock.monotonic()
                lag = max(0.0, tick_started - deadline)
                try:
                    # After a store failover, nothing is claimed before the write-back.
                    await self.ownership.write_back()
                    if not await self.ownership.hold_lease(loop.campaign_id):
                        return
                    try:
                        finished = await self.tick(loop, lag)
                    finally:
                        # A tick that ended, well or with an error (a store away), is
                        # progress: the scheduler is alive. Only a tick that never ends
                        # stops the watchdog.
                        self.last_progress = self.shared.clock.monotonic()
                    failures = 0
                except LeaseLost:
                    self.ownership.abandon(loop.campaign_id, "a write was fenced off")
                    return
                except Exception as exc:
                    # Broad on purpose: one campaign's failure (whatever a port raised)
                    # never stops another: log, back off, retry.
                    failures += 1
                    await self._after_failed_tick(loop, exc, failures)
                    deadline = self.shared.clock.monotonic()
                    continue
                if finished:
                    ended = True
                    return
                await self._count_if_due(loop, interval)
                deadline = await self._sleep_to_next_tick(loop, deadline, interval, tick_started)
        finally:
            if self.keep_learnt is not None and self.leases.fence(loop.campaign_id) is not None:
                # While the loop still counts as running (its measures are readable);
                # shielded and bounded, as the lease's release below.
                with anyio.CancelScope(shield=True), anyio.move_on_after(STORE_RETRY):
                    await self.keep_learnt(loop.campaign_id)
            # The lease given back before the loop leaves the registry: a wake meanwhile
            # (a run stored now) is this loop's, served below, and starts no loop that
            # would take the lease again before its release is written (the release
            # would then end the new loop's lease under it, and fence off its writes).
            await self.ownership.release_lease(loop.campaign_id)
            self.running.ended(loop.campaign_id)
            self.loop_ended(loop.campaign_id)
            metrics.forget_campaign(loop.campaign_id)
            if ended and loop.woken:
                # Woken after the last tick read the campaign (a run stored just after
                # an edit woke the stopped campaign's loop, say): that wake's tick is
                # owed now, as it would be had the wake come once the loop had ended,
                # not at the next housekeeping round.
                self.ensure_loop(loop.campaign_id)

    async def _after_failed_tick(self, loop: CampaignLoop, exc: Exception, failures: int) -> None:
        """After a failed tick: record and log it (not every time), then wait."""
        delay = backoff(self.shared.config, failures)
        if isinstance(exc, StoreError):
            # The store coming back must resume dialing within seconds.
            delay = min(delay, STORE_RETRY)
        error = str(exc) or type(exc).__name__
        self.states.set(
            loop.campaign_id,
            DialingState.STORE_UNREACHABLE
            if isinstance(exc, StoreError)
            else DialingState.BACKING_OFF,
            error,
        )
        now = self.shared.clock.monotonic()
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
        await self.shared.clock.sleep_until(self.shared.clock.monotonic() + delay)

    async def _sleep_to_next_tick(
        self, loop: CampaignLoop, deadline: float, interval: float, tick_started: float
    ) -> float:
        """Sleep until the next tick's deadline, or less when woken; the new deadline."""
        deadline += interval
        now = self.shared.clock.monotonic()
        if loop.rephase:
            # The campaign's phase, within an interval from now: ticks due once an
            # interval go on (a restart or a reload delays none of them).
            loop.rephase = False
            deadline = on_phase(loop.campaign_id, now, interval)
        elif deadline < now:
            # Fell behind by more than a tick: skip the missed ones, keep the phase.
            deadline += math.ceil((now - deadline) / interval) * interval
        with anyio.CancelScope() as scope:
            loop.sleep_scope = scope
            if not loop.woken:
                await self.shared.clock.sleep_until(deadline)
        loop.sleep_scope = None
        if loop.woken:
            # Attempts ending in a burst share one tick: at most one wake-up
            # tick per WAKE_SPACING, however many calls ended.
            deadline = max(self.shared.clock.monotonic(), tick_started + WAKE_SPACING)
            await self.shared.clock.sleep_until(deadline)
            loop.woken = False
        return deadline


def phase(campaign_id: str) -> float:
    """The campaign's share of the tick interval at which its ticks fall once its loop
    is ``rephase``, from its id: a thousand loops started at one moment (a restart, a
    reload) then tick spread over the interval, not all in the same instant."""
    return zlib.crc32(campaign_id.encode()) / 2**32


def on_phase(campaign_id: str, now: float, interval: float) -> float:
    """The first instant after ``now`` that falls on the campaign's phase."""
    offset = phase(campaign_id) * interval
    due = offset + math.ceil((now - offset) / interval) * interval
    return due if due > now else due + interval
