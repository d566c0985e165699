"""What a running campaign's latest tick found: the states ``/state`` and the metrics show."""

from __future__ import annotations

import enum


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
