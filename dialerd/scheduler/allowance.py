"""How many attempts one tick of a running campaign may start: free agents, the other
campaigns on its queue, the ceilings, the pacing mode and the abandonment governor."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from dialerd import metrics
from dialerd.attempts import AttemptsView
from dialerd.core import abandonment, governor
from dialerd.core.pacing import PacingInput, RateBudget, ceiling, decide
from dialerd.core.predictive import (
    AIM,
    CallHistory,
    Situation,
    lines_to_start,
    lines_within_headroom,
)
from dialerd.insight import DialingState
from dialerd.model import NIL_UUID, Campaign, CampaignType, PacingMode
from dialerd.ports import QueueUnavailable
from dialerd.scheduler.calls import Measures
from dialerd.scheduler.shared import SharedState, log
from dialerd.scheduler.sharing import CallSharing
from dialerd.store import StoreError


def governing_cap(configured: float | None, campaign: Campaign) -> float | None:
    """The cap the governor holds the campaign to; None: not governed.

    A ``service_level`` campaign is governed only when ``[abandonment]`` is configured
    (the seed's rule is exact otherwise). A ``predictive`` campaign paces for its own
    ``target_abandon_rate``, and the governor holds what it measures to that target
    (or to the configured cap, if lower) whether or not the table is there: the model's
    estimates lag a change in the list, the governor corrects them."""
    if campaign.pacing_mode != PacingMode.PREDICTIVE:
        return configured
    target = campaign.target_abandon_rate
    return target if configured is None else min(configured, target)


@dataclass
class Pacing:
    """What the pacing of one campaign keeps between its ticks."""

    budget: RateBudget
    # What held the latest tick's attempts back, and why in words.
    held_by: DialingState = DialingState.PACED
    detail: str = ""
    available_agents: int | None = None
    governor_pressure: float = 0.0
    # The queue adapter failed the latest read of the campaign's free agents (logged
    # once on entering and once on leaving that state).
    queue_unavailable: bool = False
    # The campaign day its call history is learning (None until the first tick read
    # the stored prior): at its rollover the history is kept as the next day's prior.
    day: str | None = None


class PacingView(Protocol):
    """What the tick and the insight answer read of a campaign's pacing."""

    @property
    def held_by(self) -> DialingState: ...

    @property
    def detail(self) -> str: ...

    @property
    def available_agents(self) -> int | None: ...

    @property
    def governor_pressure(self) -> float: ...


def talk_times(attempts: AttemptsView, campaign_id: str, now: float) -> list[float]:
    """Seconds since each of the campaign's calls connected to an agent was answered:
    the calls still running, which the talk-time estimate counts (Kaplan–Meier)."""
    return [
        now - attempt.answered_at
        for attempt in attempts.of(campaign_id)
        if attempt.answered and attempt.agent_wait is not None and attempt.answered_at is not None
    ]


# The campaigns on a queue: those this instance runs (from memory) and every running
# or stopping one in the store (housekeeping's latest read).
QueueNeighbours = Callable[[str], tuple[Iterable[Campaign], Iterable[Campaign]]]


@dataclass(eq=False)
class Allowance:
    """Reads what the pacing rule needs and lets it decide, then the customers' share
    cuts it; owns each campaign's pacing state (its rate budget, what held it back)."""

    shared: SharedState
    attempts: AttemptsView
    measures: Measures
    sharing: CallSharing
    # The campaigns on a queue (its other campaigns' demand shares its agents).
    neighbours: QueueNeighbours
    # Stops a campaign that can no longer run (its queue was unregistered).
    stop_invalid: Callable[[Campaign, str], Awaitable[None]]
    _pacing: dict[str, Pacing] = field(default_factory=dict)

    def view(self, campaign_id: str) -> PacingView | None:
        return self._pacing.get(campaign_id)

    def forget(self, campaign_id: str) -> None:
        """The campaign's loop ended."""
        self._pacing.pop(campaign_id, None)

    async def keep_prior(self, campaign_id: str) -> None:
        """The campaign's loop ends: what its history learnt today is kept as its prior
        (unless it learnt nothing; a store away: logged, not retried)."""
        pacing = self._pacing.get(campaign_id)
        measured = self.measures.view(campaign_id)
        if pacing is not None and pacing.day is not None and measured is not None:
            await self._save_prior(campaign_id, measured.history, pacing.day)

    async def _follow_day(self, pacing: Pacing, campaign: Campaign, history: CallHistory) -> None:
        """On the loop's first tick, seed the history with the campaign's stored prior
        (its last day's figures); at each day's rollover, keep the history as the next
        day's prior (behaviour.md §10)."""
        day = abandonment.campaign_day(
            self.shared.clock.now(), self.shared.config.abandon_day_offset_minutes
        )
        if pacing.day is None:
            pacing.day = day
            try:
                prior = await self.shared.store.pacing_prior(campaign.id)
            except StoreError as exc:
                log.warning("pacing prior not read; the day starts without it",
                            campaign_id=campaign.id, error=str(exc))  # fmt: skip
                return
            if prior is not None and not history.dials_seen:
                history.seed(prior)
        elif day != pacing.day:
            await self._save_prior(campaign.id, history, pacing.day)
            pacing.day = day

    async def _save_prior(self, campaign_id: str, history: CallHistory, day: str) -> None:
        prior = history.prior(day)
        if prior is None:
            return
        try:
            await self.shared.store.save_pacing_prior(campaign_id, prior)
        except StoreError as exc:
            log.warning("pacing prior not kept", campaign_id=campaign_id, error=str(exc))

    def spent(self, campaign: Campaign, granted: int, started: int, *, claimed: bool) -> None:
        """The tick started ``started`` of the ``granted`` attempts (see
        ``CallSharing.spent``): they come off the campaign's rate budget, the rest goes
        back to the customer's share."""
        self.sharing.spent(campaign, granted, started, claimed=claimed)
        pacing = self._pacing.get(campaign.id)
        if pacing is not None:
            pacing.budget = pacing.budget.spent(started)

    async def __call__(self, campaign: Campaign) -> int:
        """How many attempts the pacing rule, the ceilings and the customer's share
        allow this tick."""
        pacing = self._pacing_of(campaign.id)
        allowed = await self._paced(pacing, campaign)
        allowed, hold = self.sharing.grant(campaign, allowed)
        if hold is not None:
            pacing.held_by, pacing.detail = hold
        return allowed

    def _pacing_of(self, campaign_id: str) -> Pacing:
        pacing = self._pacing.get(campaign_id)
        if pacing is None:
            config, now = self.shared.config, self.shared.clock.monotonic()
            budget = RateBudget.full(config.max_attempts_per_second, now)
            pacing = self._pacing[campaign_id] = Pacing(budget=budget)
        return pacing

    async def _paced(self, pacing: Pacing, campaign: Campaign) -> int:
        """How many attempts the pacing rule and ceilings allow this tick."""
        now = self.shared.clock.monotonic()
        pacing.budget = pacing.budget.refilled(now, self.shared.config.max_attempts_per_second)
        measured = self.measures.view(campaign.id)
        if measured is not None and now < measured.backoff_until:
            pacing.held_by, pacing.detail = DialingState.BACKING_OFF, ""
            return 0
        if campaign.type == CampaignType.CALL:
            why = self.shared.telephony.unavailable_reason()
            if why is not None:
                # As with a store outage: no attempt while the backend cannot place it.
                pacing.held_by, pacing.detail = DialingState.TELEPHONY_UNREACHABLE, why
                return 0
        has_queue = campaign.queue_id != NIL_UUID
        available = others = 0
        if has_queue:
            queue = self.shared.queues.get(campaign.customer_id, campaign.queue_id)
            if queue is None:
                await self.stop_invalid(
                    campaign, f"queue {campaign.queue_id} is no longer registered"
                )
                return 0
            try:
                available = await self.shared.queue.available_agents(queue.name)
            except QueueUnavailable as exc:
                # Never dial on a guess: no agent count, no new attempt.
                metrics.queue_read_error(self.shared.queue.name)
                if not pacing.queue_unavailable:
                    # Once on entering the state; the metric counts every failed read.
                    log.warning("queue adapter unavailable", campaign_id=campaign.id,
                                queue=queue.name, adapter=self.shared.queue.name,
                                error=str(exc))  # fmt: skip
                    pacing.queue_unavailable = True
                pacing.held_by, pacing.detail = DialingState.QUEUE_UNREACHABLE, str(exc)
                return 0
            if pacing.queue_unavailable:
                log.info("queue adapter available again", campaign_id=campaign.id,
                         queue=queue.name, adapter=self.shared.queue.name)  # fmt: skip
                pacing.queue_unavailable = False
            metrics.AVAILABLE_AGENTS.labels(queue_id=campaign.queue_id).set(available)
            others = await self._queue_demand(campaign)
        pacing.available_agents = available if has_queue else None
        metrics.campaign_pacing(
            campaign.id,
            service_level=campaign.service_level,
            available_agents=pacing.available_agents,
        )
        count = self.attempts.of_campaign(campaign.id)
        pacing_input = PacingInput(
            has_queue=has_queue,
            available_agents=available,
            dialing_attempts=count.dialing,
            active_attempts=count.active,
            service_level=campaign.service_level,
            max_concurrent_attempts=self.shared.config.max_concurrent_attempts,
            rate_allowance=pacing.budget.allowance,
            other_demand=others,
        )
        predicted = headroom_lines = windows = cap = None
        # Only a backend that reports when callers reach agents measures abandonment;
        # without it (test doubles) nothing is measured and nothing governed.
        if (
            has_queue
            and campaign.type == CampaignType.CALL
            and measured is not None
            and getattr(self.shared.telephony, "reports_agent_connect", False)
        ):
            await self._follow_day(pacing, campaign, measured.history)
            policy = self.shared.abandonment(campaign.customer_id)
            windows = await self.measures.abandonment_windows(campaign.id, policy.windows)
            situation = self._situation(campaign, pacing_input, others)
            cap = governing_cap(policy.cap, campaign)
            if campaign.pacing_mode == PacingMode.PREDICTIVE:
                aim = campaign.target_abandon_rate * AIM
                predicted = lines_to_start(
                    measured.history,
                    situation,
                    aim,
                    ceiling(pacing_input),
                    governor.room(windows, aim),
                )
            if cap is not None:
                headroom_lines = lines_within_headroom(
                    measured.history,
                    situation,
                    governor.room(windows, cap),
                    cap,
                    ceiling(pacing_input),
                )
        decision = decide(
            pacing_input,
            predicted=predicted,
            windows=windows,
            cap=cap,
            headroom_lines=headroom_lines,
        )
        pacing.held_by, pacing.detail = decision.held_by, decision.detail
        pacing.governor_pressure = decision.pressure
        if windows is not None:
            metrics.campaign_abandonment(campaign.id, windows, decision.pressure)
        return decision.attempts

    def _situation(self, campaign: Campaign, pacing: PacingInput, others: int) -> Situation:
        """What the predictive model reads: the campaign's lines and calls right now."""
        now = self.shared.clock.monotonic()
        ringing: list[float] = []
        waiting = 0
        for attempt in self.attempts.of(campaign.id):
            if not attempt.answered:
                ringing.append(now - attempt.started_at if attempt.started_at else 0.0)
            elif attempt.agent_wait is None:
                waiting += 1
        talking = talk_times(self.attempts, campaign.id, now)
        return Situation(
            available_agents=pacing.available_agents,
            ringing=ringing,
            talking=talking,
            waiting=waiting,
            # The queue's other campaigns: their demand, in lines per agent.
            other_live=others / 100,
            wrap_up=self.shared.config.predictive_wrap_up,
            wrap_ups=self._wrap_ups(campaign),
            abandon_seconds=self.shared.config.abandon_seconds,
        )

    def _wrap_ups(self, campaign: Campaign) -> Sequence[float]:
        """The wrap-ups the queue adapter measured on the campaign's queue (none from an
        adapter that does not report them: the configured one stands)."""
        queue = self.shared.queues.get(campaign.customer_id, campaign.queue_id)
        report = getattr(self.shared.queue, "wrap_ups", None)
        if queue is None or report is None:
            return ()
        measured: Sequence[float] = report(queue.name)
        return measured

    async def _queue_demand(self, campaign: Campaign) -> int:
        """Σ dialing × service_level of the other campaigns on the campaign's queue.

        This engine's own campaigns count from memory; those another instance runs
        from the store (behaviour.md §3: campaigns on one queue share its agents).
        """
        demand = 0
        own, stored = self.neighbours(campaign.queue_id)
        own_ids: set[str] = set()
        for other in own:
            own_ids.add(other.id)
            if other.id != campaign.id:
                dialing = self.attempts.of_campaign(other.id).dialing
                demand += dialing * other.service_level
        for other in stored:
            if other.id != campaign.id and other.id not in own_ids:
                demand += await self.shared.store.count_dialing(other.id) * other.service_level
        return demand
