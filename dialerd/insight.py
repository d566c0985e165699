"""Why a campaign is or is not dialing: the state each tick leaves, for operators.

The engine records one ``DialingState`` per running campaign at every tick; the API
(``GET /campaigns/{id}/state``), the CLI and the metric ``dialerd_campaign_state``
show it. A state names the one thing that held the campaign back this tick.
"""

from __future__ import annotations

import enum

import msgspec

from dialerd.core.abandonment import WindowCount


class DialingState(enum.StrEnum):
    """What the latest tick of a running (or stopping) campaign found."""

    DIALING = "dialing"  # started attempts this tick
    WAITING_FOR_AGENTS = "waiting_for_agents"  # no agent of its queue is available
    PACED = "paced"  # agents are free, but enough lines already ring for them
    # the abandonment governor held the pacing back (a window nears or reached the cap)
    GOVERNED = "governed"
    CONCURRENCY_CEILING = "concurrency_ceiling"  # engine.max_concurrent_attempts reached
    RATE_CEILING = "rate_ceiling"  # engine.max_attempts_per_second spent
    BACKING_OFF = "backing_off"  # after failed originations or ticks
    STORE_UNREACHABLE = "store_unreachable"
    QUEUE_UNREACHABLE = "queue_unreachable"
    TELEPHONY_UNREACHABLE = "telephony_unreachable"
    # targets wait (retry interval, calling hours, lockouts: the detail counts them)
    NO_ELIGIBLE_TARGET = "no_eligible_target"
    EXHAUSTED = "exhausted"  # nothing left to dial (end_handle continue keeps polling)
    STOPPING = "stopping"  # ending its calls after a stop
    DRAINING = "draining"  # the daemon is shutting down


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
    # The instance that runs the campaign ("" when none does).
    instance: str = ""
    available_agents: int | None = None
    dialing: int = 0
    talking: int = 0
    service_level: int = 0
    targets: TargetCounts | None = None
    # Extensions (behaviour.md §10): the pacing mode, the abandonment per window (days
    # ending today), the governor's pressure (0 free, 1 at the cap: one line per free
    # agent), and the predictive model's estimates once it has history.
    pacing_mode: str = "service_level"
    abandonment: list[WindowCount] = msgspec.field(default_factory=list)
    governor_pressure: float = 0.0
    live_rate: float | None = None
    answer_seconds: float | None = None
    talk_seconds: float | None = None
    # A flow campaign: the action each running flow waits on now, counted by type
    # (for example {"webhook_send": 3, "sleep": 1}).
    running_actions: dict[str, int] = msgspec.field(default_factory=dict)
