"""What each running campaign's latest tick found (the operator's "why is it not
dialing?") and its list progress: written here only, read by the insight answer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from dialerd import metrics
from dialerd.insight import DialingState, TargetCounts
from dialerd.ports import Clock
from dialerd.scheduler.shared import log

# States worth a log line when a campaign enters or leaves them.
_TROUBLE = frozenset(
    {
        DialingState.BACKING_OFF,
        DialingState.STORE_UNREACHABLE,
        DialingState.QUEUE_UNREACHABLE,
        DialingState.TELEPHONY_UNREACHABLE,
    }
)


@dataclass(frozen=True)
class CampaignState:
    """One campaign's dialing state, since when (wall clock), and its list counts."""

    state: DialingState | None = None
    detail: str = ""
    since: datetime | None = None
    target_counts: TargetCounts | None = None


class DialingStates:
    """The dialing state of each campaign this instance runs; hands out frozen copies."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._states: dict[str, CampaignState] = {}
        # Told the campaign's id after each change of state (events out); no I/O here.
        self.on_change: Callable[[str], None] | None = None

    def get(self, campaign_id: str) -> CampaignState:
        return self._states.get(campaign_id) or CampaignState()

    def set(self, campaign_id: str, state: DialingState, detail: str = "") -> None:
        """Record what this tick found."""
        current = self.get(campaign_id)
        since = current.since
        changed = state != current.state
        if changed:
            since = self._clock.now()
            metrics.campaign_state(campaign_id, state)
            if state in _TROUBLE or current.state in _TROUBLE:
                log.info(
                    "campaign dialing state changed",
                    state=state.value,
                    previous=current.state.value if current.state else None,
                    detail=detail,
                )
        self._states[campaign_id] = replace(current, state=state, detail=detail, since=since)
        if changed and self.on_change is not None:
            self.on_change(campaign_id)

    def counted(self, campaign_id: str, counts: TargetCounts) -> None:
        """Record the campaign's list progress (housekeeping counts it now and then)."""
        self._states[campaign_id] = replace(self.get(campaign_id), target_counts=counts)

    def forget(self, campaign_id: str) -> None:
        self._states.pop(campaign_id, None)
