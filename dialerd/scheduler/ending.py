"""How a running campaign ends by itself: its outdial is exhausted (``end_handle``,
then chaining to ``next_campaign_id``), or it can no longer run (stopped, with why)."""

from __future__ import annotations

from collections.abc import Callable

from dialerd.attempts import AttemptsView
from dialerd.campaigns import RunRefused
from dialerd.core import lifecycle
from dialerd.insight import DialingState
from dialerd.model import NIL_UUID, Campaign, CampaignStatus, Outplan
from dialerd.scheduler.shared import CampaignLoop, SharedState, log
from dialerd.scheduler.states import DialingStates
from dialerd.store import Fence


class CampaignEnding:
    """Exhaustion, chaining, and the stop of a campaign that became invalid; owns the
    campaigns started by chaining whose loop has not started yet."""

    def __init__(
        self,
        shared: SharedState,
        *,
        attempts: AttemptsView,
        states: DialingStates,
        fence: Callable[[str], Fence | None],
    ) -> None:
        self.shared = shared
        self._attempts = attempts
        self._states = states
        self._fence = fence
        self._chained: set[str] = set()

    def take_chained(self, campaign_id: str) -> bool:
        """Whether the campaign was just started by chaining (asked once, as its loop
        starts)."""
        chained = campaign_id in self._chained
        self._chained.discard(campaign_id)
        return chained

    async def check_exhausted(
        self, loop: CampaignLoop, campaign: Campaign, outplan: Outplan
    ) -> bool:
        """True when the outdial is exhausted and the campaign stopped (its loop ends)."""
        if self._attempts.of_campaign(campaign.id).active:
            # A campaign with an attempt under way is not exhausted (behaviour.md §6):
            # this engine follows its attempts, so the store need not be asked.
            return False
        if not await self.shared.store.outdial_exhausted(campaign.id, campaign.outdial_id):
            return False
        self._states.set(campaign.id, DialingState.EXHAUSTED)
        if lifecycle.status_when_exhausted(campaign.end_handle) == CampaignStatus.RUN:
            return False
        stopped = await self.shared.control.transition(
            campaign.id,
            CampaignStatus.RUN,
            CampaignStatus.STOP,
            cause="outdial exhausted",
            fence=self._fence(campaign.id),
        )
        if stopped is None:
            return False
        await self._chain(loop, stopped)
        return True

    async def _chain(self, loop: CampaignLoop, stopped: Campaign) -> None:
        if stopped.next_campaign_id == NIL_UUID:
            return
        next_campaign = await self.shared.store.get_campaign(
            stopped.customer_id, stopped.next_campaign_id
        )
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
            await self.shared.control.run(stopped.customer_id, next_campaign.id, cause="chained")
        except RunRefused as exc:
            self._chained.discard(next_campaign.id)
            log.warning("chained campaign refused to run", next_campaign_id=next_campaign.id,
                        problems=exc.problems)  # fmt: skip

    async def stop_invalid(self, campaign: Campaign, why: str) -> None:
        log.error("campaign can no longer run", reason=why)
        await self.shared.control.stop(campaign.customer_id, campaign.id, cause=why)
