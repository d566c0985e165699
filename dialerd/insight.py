"""Why a campaign is or is not dialing: the state each tick leaves, for operators.

The engine records one ``DialingState`` per running campaign at every tick; the API
(``GET /campaigns/{id}/state``), the CLI and the metric ``dialerd_campaign_state``
show it. A state names the one thing that held the campaign back this tick.
"""

from __future__ import annotations

import msgspec

from dialerd.core.abandonment import WindowCount
from dialerd.core.states import DialingState as DialingState


class TargetCounts(msgspec.Struct, frozen=True, kw_only=True):
    """A campaign's list progress: targets by what can happen to them next."""

    idle_due: int = 0  # may be dialed now
    idle_waiting: int = 0  # waiting (retry interval, calling hours, lockouts)
    progressing: int = 0  # being dialed (by this or another campaign)
    done: int = 0  # finished, or no try left
    # Targets the rules hold back, by reason (dialerd.core.targets.Held): the waiting
    # ones by why they wait, and the done ones whose numbers are all on the DNC list.
    held: dict[str, int] = msgspec.field(default_factory=dict)

    def held_summary(self) -> str:
        """``"calling_hours 12, retry_interval 3"``: most first ("" when none)."""
        ranked = sorted(self.held.items(), key=lambda item: (-item[1], item[0]))
        return ", ".join(f"{reason} {count}" for reason, count in ranked if count)


class CampaignInsight(msgspec.Struct, frozen=True, kw_only=True):
    """What ``GET /campaigns/{id}/state`` answers."""

    campaign_id: str
    status: str
    state: str
    detail: str = ""
    # When the campaign entered this state (UTC, the reference format); "" if unknown.
    since: str = ""
    # The instance that runs the campaign, by its opaque id ("" when none does).
    instance: str = ""
    available_agents: int | None = None
    dialing: int = 0
    talking: int = 0
    service_level: int = 0
    targets: TargetCounts | None = None
    # Extensions (behaviour.md §10): the pacing mode, the abandonment per window (days
    # ending today), the governor's pressure while it held lines back at the latest tick
    # (else 0; 1: one line per free agent), and the predictive model's estimates once it
    # has history.
    pacing_mode: str = "service_level"
    abandonment: list[WindowCount] = msgspec.field(default_factory=list)
    governor_pressure: float = 0.0
    live_rate: float | None = None
    answer_seconds: float | None = None
    talk_seconds: float | None = None
    # The mean seconds from answer to an agent of the campaign's latest calls that reached
    # one (a prompt before the queue shows here; over engine.abandon_seconds a call counts
    # abandoned); None before the first.
    answer_to_agent_seconds: float | None = None
    # A flow campaign: the action each running flow waits on now, counted by type
    # (for example {"webhook_send": 3, "sleep": 1}).
    running_actions: dict[str, int] = msgspec.field(default_factory=dict)
