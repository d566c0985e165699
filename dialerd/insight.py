"""Why a campaign is or is not dialing: the state each tick leaves, for operators.

The engine records one ``DialingState`` per running campaign at every tick; the API
(``GET /campaigns/{id}/state``), the CLI and the metric ``dialerd_campaign_state``
show it. A state names the one thing that held the campaign back this tick.
"""

from __future__ import annotations

import enum

import msgspec

from dialerd.abandonment import WindowCount


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
    NO_ELIGIBLE_TARGET = "no_eligible_target"  # targets wait for their retry interval
    EXHAUSTED = "exhausted"  # nothing left to dial (end_handle continue keeps polling)
    STOPPING = "stopping"  # ending its calls after a stop
    DRAINING = "draining"  # the daemon is shutting down


class TargetCounts(msgspec.Struct, frozen=True, kw_only=True):
    """A campaign's list progress: targets by what can happen to them next."""

    idle_due: int = 0  # may be dialed now
    idle_waiting: int = 0  # waiting for their retry interval
    progressing: int = 0  # being dialed (by this or another campaign)
    done: int = 0  # finished, or no try left


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
