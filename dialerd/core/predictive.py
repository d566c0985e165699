"""Predictive pacing: how many lines to ring so the live answers meet the free agents.

Pure: observations in, estimates out; no clock is read and nothing is written. The
engine feeds ``CallHistory`` with what its campaign's own attempts did (how long they
rang, whether a live person answered, how long answered calls lasted) and asks
``lines_to_start`` each tick with what is happening right now.

The model (behaviour.md §10):

- a line that has rung for ``a`` seconds without an answer becomes a live answer with
  probability ``p·S_live(a) / (p·S_live(a) + (1-p)·S_other(a))``, where ``p`` is the
  campaign's share of dials answered live and ``S`` are the empirical survival curves
  of the ring time of live answers and of every other outcome (busy, no answer, ...).
  A fresh line has probability ``p``; a line ringing past every live answer seen has 0.
- the lines started now answer after about ``h`` seconds, the median ring time of live
  answers, and may wait ``abandon_seconds`` for an agent. By then the free agents are
  those free now, plus each talking agent whose call (elapsed ``e``) ends before
  ``e + h + abandon_seconds - wrap_up``, from the empirical distribution of the
  campaign's talk times; agents already promised to answered callers waiting for one
  are not free. Where the samples say too little (a call longer than nearly all seen,
  a line ringing longer than any seen) the model assumes what never over-dials.
- the live answers ``X`` of all lines ringing are a sum of Bernoulli draws; the expected
  number abandoned is ``E[(X - F)+]`` for ``F`` free agents. The policy starts the most
  new lines for which that stays within ``target`` of the expected live answers ``E[X]``
  (exactly for few lines, by a normal approximation for many).

Until the history holds ``MIN_DIALS`` outcomes, ``MIN_LIVE`` live answers and
``MIN_TALKS`` ended calls, the model answers ``None`` and the seed's rule paces the
campaign (its first minutes).
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Sequence
from typing import Final

import msgspec

# Outcomes kept per kind: enough for a stable estimate, few enough to follow a change
# in the list or the time of day within minutes.
HISTORY: Final = 400
# Before this many dial outcomes, live answers and calls ended the model is not trusted:
# the first outcomes seen are the quick ones (busy lines before no answers, short calls
# before long ones), so an early estimate is biased.
MIN_DIALS: Final = 100
MIN_LIVE: Final = 20
MIN_TALKS: Final = 10
# A conditional estimate needs this many samples beyond the point it conditions on;
# with fewer, the model assumes what never over-dials.
MIN_TAIL: Final = 5
# The share of a campaign's target each decision aims at: the rest is the margin for
# what the model does not see (the spread of a day's rate, estimates that lag a change).
AIM: Final = 0.5
# Below this many lines the abandonment is computed exactly; above it, approximated.
EXACT_LINES: Final = 60


class _Samples:
    """The latest ``HISTORY`` values of one quantity, also kept sorted (for quantiles)."""

    def __init__(self) -> None:
        self.recent: deque[float] = deque()
        self.sorted: list[float] = []

    def add(self, value: float) -> None:
        self.recent.append(value)
        bisect.insort(self.sorted, value)
        if len(self.recent) > HISTORY:
            old = self.recent.popleft()
            del self.sorted[bisect.bisect_left(self.sorted, old)]

    def __len__(self) -> int:
        return len(self.sorted)

    def survival(self, value: float) -> float:
        """Share of the samples greater than ``value`` (1 without samples)."""
        if not self.sorted:
            return 1.0
        return self.beyond(value) / len(self.sorted)

    def beyond(self, value: float) -> int:
        """How many samples are greater than ``value``."""
        return len(self.sorted) - bisect.bisect_right(self.sorted, value)

    def median(self) -> float:
        return self.sorted[len(self.sorted) // 2] if self.sorted else 0.0

    def mean(self) -> float:
        return sum(self.sorted) / len(self.sorted) if self.sorted else 0.0


class CallHistory:
    """What one campaign's recent attempts did: the only input the model learns from."""

    def __init__(self) -> None:
        # 1.0 for a dial answered live, 0.0 for any other end (the latest HISTORY).
        self._outcomes: deque[float] = deque(maxlen=HISTORY)
        self._live_rings = _Samples()
        self._other_rings = _Samples()
        self._talks = _Samples()

    def answered_live(self, ring_seconds: float) -> None:
        """A dial was answered (machines that are detected before answer never are)."""
        self._outcomes.append(1.0)
        self._live_rings.add(max(0.0, ring_seconds))

    def not_answered(self, ring_seconds: float) -> None:
        """A dial ended without an answer: busy, no answer, machine, failure."""
        self._outcomes.append(0.0)
        self._other_rings.add(max(0.0, ring_seconds))

    def talked(self, seconds: float) -> None:
        """An answered call ended after ``seconds`` (its agent then wraps up)."""
        self._talks.add(max(0.0, seconds))

    @property
    def ready(self) -> bool:
        return (
            len(self._outcomes) >= MIN_DIALS
            and len(self._live_rings) >= MIN_LIVE
            and len(self._talks) >= MIN_TALKS
        )

    def estimates(self) -> Estimates | None:
        """The current estimates, or None while the history is too short to trust."""
        if not self.ready:
            return None
        return Estimates(
            live_rate=sum(self._outcomes) / len(self._outcomes),
            answer_seconds=self._live_rings.median(),
            talk_seconds=self._talks.mean(),
            talks_seen=len(self._talks),
        )

    def live_chance(self, live_rate: float, ringing_for: float) -> float:
        """The chance that a line ringing for ``ringing_for`` seconds is answered live."""
        if (
            self._live_rings.beyond(ringing_for) < MIN_TAIL
            and self._other_rings.beyond(ringing_for) < MIN_TAIL
        ):
            # Longer than what was seen of either: no evidence, the prior chance.
            return live_rate
        live = live_rate * self._live_rings.survival(ringing_for)
        other = (1.0 - live_rate) * self._other_rings.survival(ringing_for)
        return live / (live + other) if live > 0 else 0.0

    def frees_within(self, talked_for: float, seconds: float) -> float:
        """The chance that a call answered ``talked_for`` seconds ago ends within ``seconds``
        (from the talk times seen; 0 with none seen, which never over-dials)."""
        still = self._talks.beyond(talked_for)
        if seconds <= 0 or still < MIN_TAIL:
            # Longer than (nearly) every call seen: no evidence of when it ends.
            return 0.0
        return 1.0 - self._talks.beyond(talked_for + seconds) / still


class Estimates(msgspec.Struct, frozen=True, kw_only=True):
    """The model's view of a campaign, shown by the insight."""

    live_rate: float
    answer_seconds: float
    talk_seconds: float
    talks_seen: int


class Situation(msgspec.Struct, frozen=True, kw_only=True):
    """What is happening on the campaign's queue right now."""

    available_agents: int
    # Seconds each of the campaign's ringing lines has rung.
    ringing: Sequence[float]
    # Seconds since each call connected to an agent was answered.
    talking: Sequence[float]
    # Answered calls still waiting for an agent (each will take the next free one).
    waiting: int = 0
    # Lines other campaigns on the same queue ring, counted as live answers for them.
    other_live: float = 0.0
    # Seconds an agent takes after a call before taking the next (not observable here).
    wrap_up: float = 5.0
    # Seconds an answered call may wait for an agent before it counts abandoned.
    abandon_seconds: float = 2.0


def expected_excess(
    chances: Sequence[float], new_lines: int, live_rate: float, free: float
) -> tuple[float, float]:
    """``(E[(X - free)+], E[X])`` for ``X`` the live answers of the ringing lines (each
    with its chance) and ``new_lines`` fresh ones (each with ``live_rate``)."""
    mean = sum(chances) + new_lines * live_rate
    if len(chances) + new_lines <= EXACT_LINES:
        # Exact: the distribution of X by adding one line at a time.
        dist = [1.0]
        for chance in [*chances, *[live_rate] * new_lines]:
            nxt = [0.0] * (len(dist) + 1)
            for k, weight in enumerate(dist):
                nxt[k] += weight * (1.0 - chance)
                nxt[k + 1] += weight * chance
            dist = nxt
        return sum(weight * (k - free) for k, weight in enumerate(dist) if k > free), mean
    variance = sum(c * (1.0 - c) for c in chances) + new_lines * live_rate * (1.0 - live_rate)
    sigma = math.sqrt(max(variance, 1e-9))
    # E[(X - F)+] for X normal: σ·φ(z) + (μ - F)·(1 - Φ(z)), z = (F - μ)/σ; F + ½ for
    # the continuity of a count.
    z = (free + 0.5 - mean) / sigma
    tail = 0.5 * math.erfc(z / math.sqrt(2.0))
    density = math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return max(0.0, sigma * density + (mean - free - 0.5) * tail), mean


def free_agents_forecast(history: CallHistory, estimates: Estimates, now: Situation) -> float:
    """Agents expected free when lines started now are answered."""
    horizon = estimates.answer_seconds + now.abandon_seconds - now.wrap_up
    freeing = sum(history.frees_within(elapsed, horizon) for elapsed in now.talking)
    return max(0.0, now.available_agents + freeing - now.waiting - now.other_live)


def lines_to_start(history: CallHistory, now: Situation, target: float, ceiling: int) -> int | None:
    """How many new lines to ring (at most ``ceiling``) so that the expected share of
    live answers abandoned stays within ``target``; None while the model has no history."""
    estimates = history.estimates()
    if estimates is None:
        return None
    if ceiling <= 0 or estimates.live_rate <= 0:
        return 0
    free = free_agents_forecast(history, estimates, now)
    chances = [history.live_chance(estimates.live_rate, ringing) for ringing in now.ringing]

    def fits(new_lines: int) -> bool:
        excess, mean = expected_excess(chances, new_lines, estimates.live_rate, free)
        return excess <= target * mean

    if not fits(0):
        return 0
    # ``fits`` holds up to some count and fails beyond it: find the largest by bisection.
    low, high = 0, ceiling
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def lines_within_headroom(
    history: CallHistory, now: Situation, headroom: float, cap: float, ceiling: int
) -> int | None:
    """The most new lines whose expected abandoned calls fit a quarter of the windows' room
    (``headroom``: abandoned calls the tightest window may still take) plus half the cap
    of the live answers they bring; None while the model has no history."""
    estimates = history.estimates()
    if estimates is None:
        return None
    free = free_agents_forecast(history, estimates, now)
    chances = [history.live_chance(estimates.live_rate, ringing) for ringing in now.ringing]

    def fits(new_lines: int) -> bool:
        excess, mean = expected_excess(chances, new_lines, estimates.live_rate, free)
        return excess <= 0.25 * max(0.0, headroom) + 0.5 * cap * mean

    low, high = 0, max(0, ceiling)
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low
