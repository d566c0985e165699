"""What ended and connected calls are counted as: abandonment by the law's rule (kept
in the store), the campaign's call history the predictive model learns from, call-time
metrics and the engine's running totals."""

from __future__ import annotations

from dialerd import metrics
from dialerd.attempts import Attempt
from dialerd.core import abandonment
from dialerd.model import (
    Campaigncall,
    CampaigncallResult,
    CampaignType,
    OutdialTarget,
    TargetStatus,
)
from dialerd.ports import AgentConnected, HangupReason
from dialerd.scheduler.shared import STORE_RETRY, SharedState, log
from dialerd.store import StoreError


class Measures:
    """Counts what the attempts did."""

    def __init__(self, shared: SharedState) -> None:
        self.shared = shared

    async def agent_connected(self, event: AgentConnected) -> None:
        """An answered call reached an agent: one live answer, abandoned if it waited
        longer than the law allows (behaviour.md §10)."""
        attempt = self.shared.attempts.get(event.campaigncall_id)
        if attempt is None or attempt.agent_wait is not None:
            return
        attempt.agent_wait = event.wait_seconds
        late = abandonment.is_abandoned(event.wait_seconds, self.shared.config.abandon_seconds)
        await self._count_abandonment(attempt.campaign_id, abandoned=late)

    async def measure_end(self, attempt: Attempt, reason: HangupReason) -> None:
        """What an ended attempt teaches the campaign's model, and an answered call that
        ended without ever reaching an agent: a live answer, abandoned."""
        loop = self.shared.loops.get(attempt.campaign_id)
        now = self.shared.clock.monotonic()
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
        day = abandonment.campaign_day(
            self.shared.clock.now(), self.shared.config.abandon_day_offset_minutes
        )
        while True:
            try:
                count = await self.shared.store.add_abandonment(campaign_id, day, 1, int(abandoned))
                break
            except StoreError as exc:
                # A measurement the governor depends on is never dropped: retry.
                log.warning("abandonment count kept until the store answers", error=str(exc))
                await self.shared.clock.sleep_until(self.shared.clock.monotonic() + STORE_RETRY)
        loop = self.shared.loops.get(campaign_id)
        if loop is not None and loop.abandonment is not None:
            loop.abandonment[day] = count

    def observe_call_times(self, attempt: Attempt) -> None:
        now = self.shared.clock.monotonic()
        if attempt.answered_at is not None:
            metrics.TALK_TIME.observe(now - attempt.answered_at)
        elif attempt.started_at is not None and attempt.campaign_type == CampaignType.CALL:
            metrics.RING_TIME.observe(now - attempt.started_at)

    def count_finished(self, call: Campaigncall, target: OutdialTarget | None) -> None:
        self.shared.stats.attempts_finished += 1
        if call.result == CampaigncallResult.SUCCESS:
            self.shared.stats.success += 1
        else:
            self.shared.stats.fail += 1
        if target is not None and target.status == TargetStatus.DONE:
            self.shared.stats.targets_done += 1
