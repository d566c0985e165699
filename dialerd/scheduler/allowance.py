"""How many attempts one tick of a running campaign may start: free agents, the other
campaigns on its queue, the ceilings, the pacing mode and the abandonment governor."""

from __future__ import annotations

from collections.abc import Sequence

from dialerd import metrics
from dialerd.core import abandonment, governor
from dialerd.core.pacing import PacingInput, ceiling, decide
from dialerd.core.predictive import AIM, Situation, lines_to_start, lines_within_headroom
from dialerd.insight import DialingState
from dialerd.model import NIL_UUID, Campaign, CampaignType, PacingMode
from dialerd.ports import QueueUnavailable
from dialerd.scheduler.ending import CampaignEnding
from dialerd.scheduler.shared import CampaignLoop, SharedState, log


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


class Allowance:
    """Reads what the pacing rule needs and lets it decide."""

    def __init__(self, shared: SharedState, ending: CampaignEnding) -> None:
        self.shared = shared
        self.ending = ending

    async def __call__(self, loop: CampaignLoop, campaign: Campaign) -> int:
        """How many attempts the pacing rule and ceilings allow this tick."""
        now = self.shared.clock.monotonic()
        loop.budget = loop.budget.refilled(now, self.shared.config.max_attempts_per_second)
        if now < loop.backoff_until:
            loop.held_by = DialingState.BACKING_OFF
            return 0
        if campaign.type == CampaignType.CALL:
            why = self.shared.telephony.unavailable_reason()
            if why is not None:
                # As with a store outage: no attempt while the backend cannot place it.
                loop.held_by = DialingState.TELEPHONY_UNREACHABLE
                loop.state_detail = why
                return 0
        has_queue = campaign.queue_id != NIL_UUID
        available = others = 0
        if has_queue:
            queue = self.shared.queues.get(campaign.customer_id, campaign.queue_id)
            if queue is None:
                await self.ending.stop_invalid(
                    campaign, f"queue {campaign.queue_id} is no longer registered"
                )
                return 0
            try:
                available = await self.shared.queue.available_agents(queue.name)
            except QueueUnavailable as exc:
                # Never dial on a guess: no agent count, no new attempt.
                metrics.queue_read_error(self.shared.queue.name)
                if not loop.queue_unavailable:
                    # Once on entering the state; the metric counts every failed read.
                    log.warning("queue adapter unavailable", campaign_id=campaign.id,
                                queue=queue.name, adapter=self.shared.queue.name,
                                error=str(exc))  # fmt: skip
                    loop.queue_unavailable = True
                loop.held_by = DialingState.QUEUE_UNREACHABLE
                loop.state_detail = str(exc)
                return 0
            if loop.queue_unavailable:
                log.info("queue adapter available again", campaign_id=campaign.id,
                         queue=queue.name, adapter=self.shared.queue.name)  # fmt: skip
                loop.queue_unavailable = False
            metrics.AVAILABLE_AGENTS.labels(queue_id=campaign.queue_id).set(available)
            others = await self._queue_demand(campaign)
        loop.available_agents = available if has_queue else None
        metrics.campaign_pacing(
            campaign.id,
            service_level=campaign.service_level,
            available_agents=loop.available_agents,
        )
        count = self.shared.attempts.of_campaign(campaign.id)
        pacing = PacingInput(
            has_queue=has_queue,
            available_agents=available,
            dialing_attempts=count.dialing,
            active_attempts=count.active,
            service_level=campaign.service_level,
            max_concurrent_attempts=self.shared.config.max_concurrent_attempts,
            rate_allowance=loop.budget.allowance,
            other_demand=others,
        )
        predicted = headroom_lines = windows = cap = None
        # Only a backend that reports when callers reach agents measures abandonment;
        # without it (test doubles) nothing is measured and nothing governed.
        if (
            has_queue
            and campaign.type == CampaignType.CALL
            and getattr(self.shared.telephony, "reports_agent_connect", False)
        ):
            policy = self.shared.abandonment(campaign.customer_id)
            windows = await self._abandonment_now(loop, campaign, policy.windows)
            situation = self._situation(campaign, pacing, others)
            cap = governing_cap(policy.cap, campaign)
            if campaign.pacing_mode == PacingMode.PREDICTIVE:
                aim = campaign.target_abandon_rate * AIM
                predicted = lines_to_start(
                    loop.history, situation, aim, ceiling(pacing), governor.room(windows, aim)
                )
            if cap is not None:
                headroom_lines = lines_within_headroom(
                    loop.history, situation, governor.room(windows, cap), cap, ceiling(pacing)
                )
        decision = decide(
            pacing, predicted=predicted, windows=windows, cap=cap, headroom_lines=headroom_lines
        )
        loop.held_by = decision.held_by
        loop.governor_pressure = decision.pressure
        loop.state_detail = decision.detail
        if windows is not None:
            metrics.campaign_abandonment(campaign.id, windows, decision.pressure)
        return decision.attempts

    async def _abandonment_now(
        self, loop: CampaignLoop, campaign: Campaign, spans: Sequence[int]
    ) -> list[abandonment.WindowCount]:
        """The campaign's abandonment windows (read from the store on the loop's first
        tick: a restart or a takeover goes on from the stored counts)."""
        today = abandonment.campaign_day(
            self.shared.clock.now(), self.shared.config.abandon_day_offset_minutes
        )
        longest = max(spans, default=1)
        if loop.abandonment is None:
            since = abandonment.first_day(today, longest)
            stored = await self.shared.store.abandonment_days(campaign.id, since)
            loop.abandonment = {count.day: count for count in stored}
        abandonment.trimmed(loop.abandonment, today, longest)
        return abandonment.windows(loop.abandonment.values(), today, spans)

    def _situation(self, campaign: Campaign, pacing: PacingInput, others: int) -> Situation:
        """What the predictive model reads: the campaign's lines and calls right now."""
        now = self.shared.clock.monotonic()
        ringing: list[float] = []
        talking: list[float] = []
        waiting = 0
        for attempt in self.shared.attempts.of(campaign.id):
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
            wrap_up=self.shared.config.predictive_wrap_up,
            abandon_seconds=self.shared.config.abandon_seconds,
        )

    async def _queue_demand(self, campaign: Campaign) -> int:
        """Σ dialing × service_level of the other campaigns on the campaign's queue.

        This engine's own campaigns count from memory; those another instance runs
        from the store (behaviour.md §3: campaigns on one queue share its agents).
        """
        demand = 0
        own = {
            loop.campaign_id: loop.campaign
            for loop in self.shared.loops.values()
            if loop.fence is not None
            and loop.campaign is not None
            and loop.campaign.queue_id == campaign.queue_id
        }
        for other in own.values():
            if other.id != campaign.id:
                dialing = self.shared.attempts.of_campaign(other.id).dialing
                demand += dialing * other.service_level
        for other in self.shared.by_queue.get(campaign.queue_id, []):
            if other.id != campaign.id and other.id not in own:
                demand += await self.shared.store.count_dialing(other.id) * other.service_level
        return demand
