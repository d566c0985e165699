"""One tick of a campaign: read it and its outplan, let the allowance decide, claim
targets and originate them (a running campaign); release its calls (a stopping one)."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import msgspec
import structlog

from dialerd import metrics
from dialerd.campaigns import CampaignLocks
from dialerd.core import flow
from dialerd.insight import DialingState
from dialerd.model import (
    NIL_UUID,
    Campaign,
    Campaigncall,
    CampaignStatus,
    CampaignType,
    Outplan,
    new_ids,
    new_ordered_ids,
)
from dialerd.ports import Origination, TelephonyUnavailable
from dialerd.scheduler.allowance import Allowance
from dialerd.scheduler.calls import Calls
from dialerd.scheduler.ending import CampaignEnding
from dialerd.scheduler.shared import CampaignLoop, SharedState, log
from dialerd.scheduler.states import DialingStates
from dialerd.store import (
    AsStored,
    AttemptPlan,
    CampaignNotRunning,
    Fence,
    LeaseLost,
    StoreError,
)

# Set the attempts the store has as active, that this engine does not follow, against
# the calls the backend has live (``Ownership.reconcile``).
Reconcile = Callable[..., Awaitable[None]]


class _Changed(Exception):
    """A kept read is no longer what is stored: the campaign and outplan as stored now."""

    def __init__(self, campaign: Campaign | None, outplan: Outplan | None) -> None:
        super().__init__("the campaign or its outplan changed since the tick's last read")
        self.campaign, self.outplan = campaign, outplan


@dataclass(eq=False)
class Tick:
    """One tick of one campaign's loop."""

    shared: SharedState
    calls: Calls
    allowance: Allowance
    ending: CampaignEnding
    states: DialingStates
    fence: Callable[[str], Fence | None]
    reconcile: Reconcile
    wake: Callable[[str], bool]
    # Keeps the campaign a tick read as the loop's (and the registry's index by queue).
    read: Callable[[CampaignLoop, Campaign | None], None]
    # The campaign's loop, if it has one here.
    loop_of: Callable[[str], CampaignLoop | None] = lambda campaign_id: None
    # Called with (lag, duration) of every tick; benchmarks collect the samples.
    observer: Callable[[float, float], None] | None = None
    # One claim at a time per campaign (a tick's or a refill's), per queue when the
    # campaign has one (its campaigns share the agents). A lock goes once no claim holds
    # or waits on it: the table does not grow with every queue and campaign ever run.
    _claim_locks: CampaignLocks = field(default_factory=CampaignLocks)

    async def __call__(self, loop: CampaignLoop, lag: float) -> bool:
        """One tick; True when the campaign no longer runs and its loop should end."""
        started_at = self.shared.clock.monotonic()
        metrics.TICK_LAG.observe(lag)
        try:
            try:
                kept = self._kept_read(loop)
                if kept is not None:
                    # The claim (or, with nothing allowed, the read) checks the kept
                    # read is still what is stored: one store round trip.
                    return await self._tick_running(loop, *kept, kept=True)
                campaign, outplan = await self.shared.store.campaign_and_outplan(loop.campaign_id)
            except _Changed as changed:
                campaign, outplan = changed.campaign, changed.outplan
            self.read(loop, campaign)
            if campaign is None:
                finished = True
            elif campaign.status == CampaignStatus.RUN:
                finished = await self._tick_running(loop, campaign, outplan)
            else:
                finished = await self._tick_stopping(loop, campaign)
            return finished
        finally:
            duration = self.shared.clock.monotonic() - started_at
            metrics.TICK_DURATION.observe(duration)
            if self.observer is not None:
                self.observer(lag, duration)

    def _kept_read(self, loop: CampaignLoop) -> tuple[Campaign, Outplan] | None:
        """The running campaign and its outplan as the loop's latest tick read them, when
        this tick may go on from them (``kept``: its claim checks them in its own step)."""
        campaign = loop.campaign
        if campaign is None or campaign.status != CampaignStatus.RUN or self.calls.draining:
            return None
        outplan = self.calls.outplan(campaign.outplan_id)
        if outplan is None or self.fence(campaign.id) is None:
            return None
        return campaign, outplan

    async def _tick_running(
        self, loop: CampaignLoop, campaign: Campaign, outplan: Outplan | None, *, kept: bool = False
    ) -> bool:
        if self.calls.draining:
            self.states.set(campaign.id, DialingState.DRAINING)
            return False  # shutting down: nothing new starts
        if outplan is None:
            await self.ending.stop_invalid(
                campaign, f"outplan {campaign.outplan_id} no longer exists"
            )
            return False
        self.calls.note_outplan(outplan)
        # A stop may come back to run before this loop saw it: its grace starts anew.
        loop.stopping_since = None
        allowed, started, stopped = await self._claim(loop, campaign, outplan, kept=kept)
        if stopped:
            self.wake(campaign.id)
            return False
        if started < allowed or allowed == 0:
            return await self.ending.check_exhausted(loop, campaign, outplan)
        return False

    async def _claim(
        self, loop: CampaignLoop, campaign: Campaign, outplan: Outplan, *, kept: bool = False
    ) -> tuple[int, int, bool]:
        """Let the allowance decide and claim (and originate) what it allows, one claim
        of the campaign at a time (a tick's, a refill's); campaigns sharing a queue
        decide one at a time, each seeing the others' calls. (allowed, started,
        stopped: the store refused the claim, the campaign no longer runs.)"""
        async with self._claim_locks.hold(self._lock_key(campaign)):
            allowed = await self.allowance(campaign)
            started, stopped, claimed = 0, False, False
            try:
                fence = self.fence(campaign.id)
                started = await self._start(campaign, outplan, fence, allowed, kept=kept)
                claimed = True
            except CampaignNotRunning:
                # Stopped while this tick was under way: the store claimed nothing.
                stopped = True
            finally:
                # What was granted and not started goes back to the customer's share.
                self.allowance.spent(campaign, allowed, started, claimed=claimed)
        if stopped:
            return allowed, started, stopped
        if started:
            loop.dialed_any = True
            self.states.set(campaign.id, DialingState.DIALING)
        elif allowed == 0:
            pacing = self.allowance.view(campaign.id)
            if pacing is not None:
                self.states.set(campaign.id, pacing.held_by, pacing.detail)
        else:
            counts = self.states.get(campaign.id).target_counts
            held = counts.held_summary() if counts else ""
            self.states.set(campaign.id, DialingState.NO_ELIGIBLE_TARGET, held)
        metrics.pacing_decision(allowed=allowed, started=started)
        return allowed, started, stopped

    @staticmethod
    def _lock_key(campaign: Campaign) -> str:
        return campaign.queue_id if campaign.queue_id != NIL_UUID else campaign.id

    # -- refill --------------------------------------------------------------------
    def refill(self, campaign_id: str) -> bool:
        """Lines of the campaign were freed (its attempts ended): claim and originate
        what its allowance grants now, without waiting for its next tick (``_refill``,
        in a task of its own; one at a time per campaign, a second request while one
        runs makes it go again). False when the campaign has no loop here."""
        loop = self.loop_of(campaign_id)
        if loop is None:
            return False
        if loop.refilling:
            loop.refill_again = True
            return True
        task_group = self.shared.task_group
        if task_group is None:
            return self.wake(campaign_id)
        loop.refilling = True
        task_group.start_soon(self._refill, loop)
        return True

    async def _refill(self, loop: CampaignLoop) -> None:
        """Claim for a running campaign as its latest tick read it (and its outplan):
        the same allowance, the same atomic claim (the store refuses it once a stop is
        stored, fences it by the lease, applies the calling rules), so the only thing a
        refill does not see is a change to the campaign since that tick, which its next
        tick applies. Anything else (a stop, no target ready, a failure) is the tick's:
        the loop is woken."""
        # Its lines name the campaign as the loop's do (a task of the event workers').
        structlog.contextvars.bind_contextvars(campaign_id=loop.campaign_id)
        try:
            while True:
                loop.refill_again = False
                if not await self._refill_once(loop):
                    self.wake(loop.campaign_id)
                    return
                if not loop.refill_again:
                    return
        finally:
            loop.refilling = False

    async def _refill_once(self, loop: CampaignLoop) -> bool:
        """One refill; False when the campaign's tick should look (see ``_refill``)."""
        campaign = loop.campaign
        if (
            campaign is None
            or campaign.status != CampaignStatus.RUN
            or self.calls.draining
            or self.fence(campaign.id) is None
            or self.loop_of(campaign.id) is not loop
        ):
            return False
        outplan = self.calls.outplan(campaign.outplan_id)
        if outplan is None:
            return False
        try:
            allowed, started, stopped = await self._claim(loop, campaign, outplan)
        except (StoreError, LeaseLost):
            return False  # the tick retries, or finds the lease gone
        except Exception as exc:
            # Broad on purpose, as a tick's failure: logged, and the tick goes on.
            log.warning("refill failed; left to the next tick", campaign_id=campaign.id,
                        error=str(exc) or type(exc).__name__)  # fmt: skip
            return False
        return not stopped and started >= allowed

    async def _tick_stopping(self, loop: CampaignLoop, campaign: Campaign) -> bool:
        """Cancel unanswered attempts now, hang up answered ones after the grace (counted
        from the latest stop); each is repeated until the backend confirms the end."""
        now = self.shared.clock.monotonic()
        self.states.set(campaign.id, DialingState.STOPPING)
        if loop.stopping_since is None:
            loop.stopping_since = now
        active = await self.shared.store.active_attempts(campaign.id)
        if not active:
            loop.stopping_since = None
            if campaign.status == CampaignStatus.STOPPING:
                await self.shared.control.transition(
                    campaign.id,
                    CampaignStatus.STOPPING,
                    CampaignStatus.STOP,
                    cause="no attempt left active",
                    fence=self.fence(campaign.id),
                )
            return True
        grace_over = now - loop.stopping_since >= self.shared.config.stop_grace
        unfollowed = [call for call in active if call.id not in self.calls.view]
        if unfollowed:
            with contextlib.suppress(TelephonyUnavailable):
                live = await self.calls.live_calls()
                await self.reconcile(unfollowed, live, follow_live=False)
        self.calls.release_stopping(active, grace_over=grace_over)
        return False

    async def _start(
        self,
        campaign: Campaign,
        outplan: Outplan,
        fence: Fence | None,
        count: int,
        *,
        kept: bool = False,
    ) -> int:
        """Persist up to ``count`` attempts in one store call, then originate each
        (keyed by its campaigncall id); how many were claimed. ``kept``: the campaign
        and outplan are a kept read, checked by the claim (or read again when nothing is
        claimed); ``_Changed`` when they are no longer what is stored."""
        if count <= 0:
            if kept:
                stored = await self.shared.store.campaign_and_outplan(campaign.id)
                if stored != (campaign, outplan):
                    raise _Changed(*stored)
            return 0
        now = self.shared.clock.now()
        rules = self.shared.calling_rules(campaign.customer_id)
        # Each attempt's ids, drawn for the whole claim at once: its campaigncall id
        # (time-ordered: it keys an index a row is added to per attempt), its call's id
        # (a call campaign's), its activeflow's id.
        campaigncall_ids = new_ordered_ids(count)
        is_call = campaign.type == CampaignType.CALL
        other_ids = new_ids(2 * count if is_call else count)
        activeflow_ids = other_ids[:count]
        reference_ids = other_ids[count:] if is_call else [NIL_UUID] * count
        plans = [
            AttemptPlan(
                campaign=campaign,
                outplan=outplan,
                campaigncall_id=campaigncall_id,
                reference_id=reference_id,
                activeflow_id=activeflow_id,
                now=now,
                fence=fence,
                rules=rules,
            )
            for campaigncall_id, reference_id, activeflow_id in zip(
                campaigncall_ids, reference_ids, activeflow_ids, strict=True
            )
        ]
        with metrics.store_operation("start_attempt", self.shared.store.backend):
            if kept:
                claims = await self.shared.store.start_attempts_if_unchanged(plans)
                if isinstance(claims, AsStored):
                    raise _Changed(claims.campaign, claims.outplan)
                claimed = claims
            else:
                claimed = await self.shared.store.start_attempts(plans)
        self.calls.start(campaign, claimed)
        queue_name = self._queue_name(campaign)
        # Asked once for the claim: it reads the actions through.
        reads_target = flow.reads_target(campaign.actions) if claimed else False
        originations = [
            origination
            for campaigncall in claimed
            if (
                origination := self._originate(
                    campaign, outplan, campaigncall, queue_name, reads_target=reads_target
                )
            )
        ]
        self.calls.originate_soon(originations, campaign.type)
        return len(claimed)

    def _originate(
        self,
        campaign: Campaign,
        outplan: Outplan,
        campaigncall: Campaigncall,
        queue_name: str,
        *,
        reads_target: bool,
    ) -> Origination | None:
        """The claimed (and followed) attempt's origination, or None when its actions
        read the target (``reads_target``: then originated in a task of its own, once
        the target is read)."""
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
            queue_name=queue_name,
            variables=flow.call_variables(campaign, campaigncall, None),
        )
        if not reads_target:
            return origination
        assert self.shared.task_group is not None
        self.shared.task_group.start_soon(
            self._originate_with_target, origination, campaign, campaigncall
        )
        return None

    async def _originate_with_target(
        self, origination: Origination, campaign: Campaign, campaigncall: Campaigncall
    ) -> None:
        """Originate with the target's name and data among the variables (the actions
        refer to them); without them when the store cannot give the target now."""
        try:
            target = await self.shared.store.get_target(
                campaigncall.outdial_id, campaigncall.outdial_target_id
            )
        except StoreError as exc:
            log.warning(
                "target not read for the actions' variables",
                campaigncall_id=campaigncall.id,
                error=str(exc) or type(exc).__name__,
            )
            target = None
        variables = flow.call_variables(campaign, campaigncall, target)
        origination = msgspec.structs.replace(origination, variables=variables)
        await self.calls.originate(origination, campaign.type)

    def _queue_name(self, campaign: Campaign) -> str:
        queue = self.shared.queues.get(campaign.customer_id, campaign.queue_id)
        return queue.name if queue is not None else ""
