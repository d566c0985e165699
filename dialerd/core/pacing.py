"""How many attempts a campaign may start now: the service-level rule and its ceilings.

Pure: state in, decision out (behaviour.md §3). With a queue, a new attempt may start while

    available_agents > dialing_attempts * service_level / 100

and each attempt started in the same tick counts as dialing before the next check.
Campaigns running on one queue share its agents:

    available_agents > Σ over those campaigns of dialing_c * service_level_c / 100

Whatever the rule says, a per-campaign ceiling of concurrent attempts and a ceiling of
attempts per second apply (so ``service_level = 0`` cannot dial without bound).

The rule is exact unless the abandonment governor (``dialerd.core.governor``) is given a
cap: then, over both pacing modes (the rule above, and ``predictive``:
``dialerd.core.predictive``), it holds the campaign under that cap. ``decide`` combines
them (behaviour.md §3 and §10).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec

from dialerd.core import governor
from dialerd.core.abandonment import WindowCount
from dialerd.core.states import DialingState


def service_level_allows(available_agents: int, dialing_attempts: int, service_level: int) -> bool:
    """The seed's inequality, in integers: ``available * 100 > dialing * service_level``."""
    return queue_allows(available_agents, dialing_attempts * service_level)


def queue_allows(available_agents: int, demand: int) -> bool:
    """The rule for campaigns sharing a queue, in integers:
    ``available * 100 > Σ dialing_c * service_level_c`` (``demand`` is that sum)."""
    return available_agents * 100 > demand


class PacingInput(msgspec.Struct, frozen=True, kw_only=True):
    """What the tick knows when it decides."""

    has_queue: bool
    available_agents: int
    dialing_attempts: int
    active_attempts: int
    service_level: int
    max_concurrent_attempts: int
    # Attempts the per-second ceiling still allows right now (see ``RateBudget``).
    rate_allowance: int
    # Σ dialing_c × service_level_c over the other running campaigns on the same queue:
    # they share its agents (0 when the campaign has the queue to itself).
    other_demand: int = 0


def attempts_to_start(pacing: PacingInput) -> int:
    """How many attempts this tick may start (each one raising ``dialing_attempts``)."""
    ceiling = min(
        pacing.max_concurrent_attempts - pacing.active_attempts,
        pacing.rate_allowance,
    )
    if ceiling <= 0:
        return 0
    if not pacing.has_queue:
        return ceiling
    started = 0
    while started < ceiling and queue_allows(
        pacing.available_agents,
        pacing.other_demand + (pacing.dialing_attempts + started) * pacing.service_level,
    ):
        started += 1
    return started


class RateBudget(msgspec.Struct, frozen=True, kw_only=True):
    """A token bucket for the attempts-per-second ceiling, as an immutable value.

    ``tokens`` refill at ``rate`` per second up to ``burst``; ``updated`` is the
    monotonic time of the last refill.
    """

    rate: float
    burst: float
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate: float, now: float) -> RateBudget:
        """A budget that may spend one second's worth (at least one attempt) at once."""
        burst = max(1.0, rate)
        return cls(rate=rate, burst=burst, tokens=burst, updated=now)

    def refilled(self, now: float, rate: float | None = None) -> RateBudget:
        """The budget at ``now``; a new ``rate`` (config reload) takes effect from here."""
        rate = self.rate if rate is None else rate
        burst = max(1.0, rate)
        elapsed = max(0.0, now - self.updated)
        tokens = min(burst, self.tokens + elapsed * self.rate)
        return RateBudget(rate=rate, burst=burst, tokens=tokens, updated=now)

    @property
    def allowance(self) -> int:
        """Whole attempts the budget allows now."""
        return math.floor(self.tokens)

    def spent(self, attempts: int) -> RateBudget:
        """The budget after starting ``attempts``."""
        return msgspec.structs.replace(self, tokens=self.tokens - attempts)


def holding_back(pacing: PacingInput) -> DialingState:
    """Why ``attempts_to_start`` allows no more than it does: the ceiling or rule that
    binds first (for the operator's "why is it not dialing?")."""
    if pacing.max_concurrent_attempts - pacing.active_attempts <= 0:
        return DialingState.CONCURRENCY_CEILING
    if pacing.rate_allowance <= 0:
        return DialingState.RATE_CEILING
    if pacing.has_queue and pacing.available_agents <= 0:
        return DialingState.WAITING_FOR_AGENTS
    return DialingState.PACED


def ceiling(pacing: PacingInput) -> int:
    """The most attempts the ceilings (concurrency, rate) allow this tick."""
    return max(
        0, min(pacing.max_concurrent_attempts - pacing.active_attempts, pacing.rate_allowance)
    )


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """How many attempts to start, what held the campaign back and, when the governor
    held lines back, its pressure and why (else 0 and "")."""

    attempts: int
    held_by: DialingState
    pressure: float = 0.0
    detail: str = ""


def decide(
    pacing: PacingInput,
    *,
    predicted: int | None = None,
    windows: Sequence[WindowCount] | None = None,
    cap: float | None = None,
    headroom_lines: int | None = None,
) -> Decision:
    """The tick's decision: the mode's count (``predicted`` lines when the predictive
    model has one, else the service-level rule), then the governor over it when it has
    a ``cap`` and the campaign's abandonment is measured (``windows``); else the mode's
    count is the decision.

    The governor's floor is one line per free agent: the rule at ``service_level`` 100
    (with the queue's other campaigns counted as ``attempts_to_start`` counts them)."""
    held_by = holding_back(pacing)
    if not pacing.has_queue:
        return Decision(attempts=attempts_to_start(pacing), held_by=held_by)
    wanted = attempts_to_start(pacing) if predicted is None else min(predicted, ceiling(pacing))
    if windows is None or cap is None:
        return Decision(attempts=wanted, held_by=held_by)  # not governed
    floor = attempts_to_start(msgspec.structs.replace(pacing, service_level=100))
    if wanted <= floor:
        return Decision(attempts=wanted, held_by=held_by)  # it never adds lines
    # Beyond one line per free agent, no more lines than the windows' room can take
    # (``headroom_lines``: none while a window has no room for one abandoned call, or
    # without a model of the campaign).
    room = headroom_lines if headroom_lines is not None else floor
    if governor.no_room(windows, cap):
        room = floor
    allowed = max(floor, min(wanted, room))
    if allowed >= wanted:
        return Decision(attempts=wanted, held_by=held_by)  # the governor held nothing
    pressure = 1.0 - (allowed - floor) / (wanted - floor)
    return Decision(
        attempts=allowed,
        held_by=DialingState.GOVERNED,
        pressure=pressure,
        detail=governor.why_held(windows, cap, pressure),
    )
