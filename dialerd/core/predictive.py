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
  campaign's talk times, averaged over the wrap-ups the queue measured (else the
  configured one); agents already promised to answered callers waiting for one
  are not free. Where the samples say too little (a call longer than nearly all seen,
  a line ringing longer than any seen) the model assumes what never over-dials.
- the live answers ``X`` of all lines ringing are a sum of Bernoulli draws; the expected
  number abandoned is ``E[(X - F)+]`` for ``F`` free agents. The policy starts the most
  new lines for which that stays within ``target`` of the expected live answers ``E[X]``
  (exactly for few lines, by a normal approximation for many).

Until the model knows the share of live answers within a factor of two (``knows``),
it answers ``None`` and the seed's rule paces the campaign. A ``PacingPrior`` (what the
campaign's model knew at the end of its last day, kept in the store) seeds the history
with a bounded weight, so a day does not start blind; today's own dials push it out.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final

import msgspec

# Outcomes kept per kind: enough for a stable estimate, few enough to follow a change
# in the list or the time of day within minutes.
HISTORY: Final = 400
# The latest dials whose share of live answers replaces the longer one's when the two
# differ by more than ``Z_CHANGE`` standard errors: a change is followed within
# ``RECENT`` dials (a minute or two for a team of 50) instead of ``HISTORY``.
RECENT: Final = 100
Z_CHANGE: Final = 3.0
# A rise of the share (more callers than agents for them) is believed sooner: from the
# latest this many dials.
LATEST: Final = 30
# The model paces once it knows the share of live answers within a factor of two at
# 95 % (``Z_KNOW``), and then paces with the upper end of its one-sided 95 % interval
# (``Z_LIVE``): the fewer dials seen, the fewer lines per free agent.
Z_KNOW: Final = 1.96
Z_LIVE: Final = 1.645
# A conditional estimate needs this many samples beyond the point it conditions on;
# with fewer, the model assumes what never over-dials.
MIN_TAIL: Final = 5
# The share of a campaign's target each decision aims at: the rest is the margin for
# what the model does not see (the spread of a day's rate, estimates that lag a change).
AIM: Final = 0.5
# The share of the abandoned calls saved so far (at the target; less one, so that one
# abandoned call never leaves the day without room) that the lines ringing may put at risk.
SPEND: Final = 0.1
# The share of live answers quicker than the ring time the free agents are forecast for.
EARLY: Final = 0.25
# The governor's odds: the windows stay within the cap unless the live answers and the
# calls ending go against the campaign by this many standard deviations (about 1 in 100).
Z_SAFE: Final = 2.33
# Below this many lines the abandonment is computed exactly; above it, approximated.
EXACT_LINES: Final = 60
# The measured wrap-ups a talking agent's chance of being free in time averages over
# (their quantiles, when the queue reported more).
WRAP_UP_POINTS: Final = 20
# A prior from the campaign's last day counts as at most this many dials, live answers'
# ring times and ended calls: today's own figures outweigh it within minutes.
PRIOR_DIALS: Final = 100
PRIOR_RINGS: Final = 20
PRIOR_TALKS: Final = 20


class _Samples:
    """The latest ``HISTORY`` values of one quantity, also kept sorted (for quantiles)."""

    def __init__(self, keep: int = HISTORY) -> None:
        self.keep = keep
        self.recent: deque[float] = deque()
        self.sorted: list[float] = []

    def add(self, value: float) -> None:
        self.recent.append(value)
        bisect.insort(self.sorted, value)
        if len(self.recent) > self.keep:
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
        return self.quantile(0.5)

    def quantile(self, share: float) -> float:
        return self.sorted[int(share * (len(self.sorted) - 1))] if self.sorted else 0.0


def wilson_upper(rate: float, trials: int, z: float) -> float:
    """The upper end of Wilson's confidence interval for a share ``rate`` of ``trials``."""
    if trials <= 0:
        return 1.0
    z2 = z * z / trials
    centre = rate + z2 / 2
    spread = z * math.sqrt(rate * (1.0 - rate) / trials + z2 / (4 * trials))
    return min(1.0, (centre + spread) / (1.0 + z2))


class Survival(msgspec.Struct, frozen=True):
    """A Kaplan–Meier estimate of how long calls last, from the calls that ended (events)
    and those still running (censored: they lasted at least as long as they have run).

    ``times`` are the distinct event times, ascending; ``at_risk`` the calls still running
    just before each; ``survival`` the estimate just after each; ``greenwood`` the running
    sum of Greenwood's variance terms (for the confidence of a quantile)."""

    times: tuple[float, ...]
    at_risk: tuple[int, ...]
    survival: tuple[float, ...]
    greenwood: tuple[float, ...]
    # The longest duration the estimate says something about: beyond the last event
    # with ``MIN_TAIL`` calls at risk it is no evidence (0: it knows nothing).
    known_until: float = 0.0

    @classmethod
    def estimate(cls, ended: Sequence[float], running: Sequence[float]) -> Survival:
        marks = sorted([(value, 1) for value in ended] + [(value, 0) for value in running])
        times: list[float] = []
        at_risk: list[int] = []
        survival: list[float] = []
        greenwood: list[float] = []
        risk, level, variance, index = len(marks), 1.0, 0.0, 0
        while index < len(marks):
            value = marks[index][0]
            events = censored = 0
            while index < len(marks) and marks[index][0] == value:
                events += marks[index][1]
                censored += 1 - marks[index][1]
                index += 1
            if events:
                level *= 1.0 - events / risk
                if risk > events:
                    variance += events / (risk * (risk - events))
                times.append(value)
                at_risk.append(risk)
                survival.append(level)
                greenwood.append(variance)
            risk -= events + censored
        known = max((time for time, risk in zip(times, at_risk, strict=True)
                     if risk >= MIN_TAIL), default=0.0)  # fmt: skip
        return cls(tuple(times), tuple(at_risk), tuple(survival), tuple(greenwood), known)

    def at(self, value: float) -> float:
        """S(value): the share of calls lasting longer than ``value``."""
        index = bisect.bisect_right(self.times, value)
        return 1.0 if index == 0 else self.survival[index - 1]

    def ends_within(self, talked_for: float, seconds: float) -> float:
        """The chance that a call running for ``talked_for`` seconds ends within
        ``seconds``, counting only what the estimate knows (so never more than it)."""
        end = min(talked_for + seconds, self.known_until)
        if seconds <= 0 or end <= talked_for:
            return 0.0
        still = self.at(talked_for)
        return 1.0 - self.at(end) / still if still > 0 else 0.0

    def quantile(self, share: float, *, upper: bool = False) -> float | None:
        """The duration that ``share`` of the calls outlast (``0.5``: the median), or with
        ``upper`` the upper end of its 95 % confidence interval (the first time the upper
        confidence bound of S is at or below ``share``); None while not known."""
        for level, variance, time in zip(self.survival, self.greenwood, self.times, strict=True):
            bound = level + (Z_KNOW * level * math.sqrt(variance) if upper else 0.0)
            if bound <= share:
                return time
        return None

    def mean_until(self, limit: float) -> float:
        """The mean duration, restricted to ``limit`` (the area under S up to it)."""
        area, previous, level = 0.0, 0.0, 1.0
        for time, value in zip(self.times, self.survival, strict=True):
            if time >= limit:
                break
            area += level * (time - previous)
            previous, level = time, value
        return area + level * max(0.0, limit - previous)


def quantiles(values: Sequence[float], points: int) -> tuple[float, ...]:
    """``points`` evenly spaced quantiles (the middle of each share) of sorted ``values``
    (all of them when there are no more)."""
    if len(values) <= points:
        return tuple(values)
    step = len(values) / points
    return tuple(values[int((index + 0.5) * step)] for index in range(points))


class PacingPrior(msgspec.Struct, frozen=True, kw_only=True):
    """What a campaign's model knew when its last day ended (or the campaign stopped):
    the prior its next day starts from (behaviour.md §10). Each sample set is kept as
    evenly spaced quantiles, with the count it was read from (its weight)."""

    # The campaign day it was measured on (``YYYY-MM-DD``).
    day: str
    # The share of dials answered live, and the dials it is read from.
    live_rate: float
    dials: int
    # Ring times of live answers and of every other end; talk times of ended calls.
    live_rings: tuple[float, ...] = ()
    live_rings_seen: int = 0
    other_rings: tuple[float, ...] = ()
    other_rings_seen: int = 0
    talks: tuple[float, ...] = ()
    talks_seen: int = 0


class CallHistory:
    """What one campaign's recent attempts did: the only input the model learns from
    (with, from ``seed``, a prior from its last day)."""

    def __init__(self) -> None:
        # 1.0 for a dial answered live, 0.0 for any other end (the latest HISTORY, and
        # the latest RECENT: the share follows a change once they disagree).
        self._outcomes: deque[float] = deque(maxlen=HISTORY)
        self._recent: deque[float] = deque(maxlen=RECENT)
        self._live_rings = _Samples()
        self._other_rings = _Samples()
        self._talks = _Samples()
        # The survival of talk times, per set of calls running (recomputed when asked
        # with other running calls or after a call ended).
        self._survival: tuple[tuple[float, ...], int, Survival] | None = None
        self._ended = 0
        # Dials seen since the history began (a prior's pseudo-dials not counted).
        self.dials_seen = 0

    def seed(self, prior: PacingPrior) -> None:
        """Start from a prior: at most ``PRIOR_DIALS`` dials at its live share (spread
        evenly), ``PRIOR_RINGS`` ring times of each kind and ``PRIOR_TALKS`` talk times,
        each from its quantiles. They sit in the long history only: the latest dials
        (``RECENT``, ``LATEST``) that detect a change are today's own, and today's
        outcomes push the prior's out."""
        dials = min(max(0, prior.dials), PRIOR_DIALS)
        live = round(dials * min(1.0, max(0.0, prior.live_rate)))
        for index in range(dials):
            # The index-th of ``dials`` is live when it completes one more of ``live``.
            self._outcomes.append(float((index + 1) * live // dials > index * live // dials))
        for samples, values, seen, points in (
            (self._live_rings, prior.live_rings, prior.live_rings_seen, PRIOR_RINGS),
            (self._other_rings, prior.other_rings, prior.other_rings_seen, PRIOR_RINGS),
            (self._talks, prior.talks, prior.talks_seen, PRIOR_TALKS),
        ):
            for value in quantiles(sorted(values), min(seen, points)):
                samples.add(max(0.0, value))
        self._ended += 1  # the talk times changed: recompute their survival

    def prior(self, day: str) -> PacingPrior | None:
        """What this history knows, as the prior of the campaign's next day; None
        before its first dial (nothing learnt: a stored prior stays as it is)."""
        if not self.dials_seen or not self._outcomes:
            return None
        rate, dials = self._live_share()
        return PacingPrior(
            day=day,
            live_rate=rate,
            dials=dials,
            live_rings=quantiles(self._live_rings.sorted, PRIOR_RINGS),
            live_rings_seen=len(self._live_rings),
            other_rings=quantiles(self._other_rings.sorted, PRIOR_RINGS),
            other_rings_seen=len(self._other_rings),
            talks=quantiles(self._talks.sorted, PRIOR_TALKS),
            talks_seen=len(self._talks),
        )

    def answered_live(self, ring_seconds: float) -> None:
        """A dial was answered (machines that are detected before answer never are)."""
        self._outcomes.append(1.0)
        self._recent.append(1.0)
        self.dials_seen += 1
        self._live_rings.add(max(0.0, ring_seconds))

    def not_answered(self, ring_seconds: float) -> None:
        """A dial ended without an answer: busy, no answer, machine, failure."""
        self._outcomes.append(0.0)
        self._recent.append(0.0)
        self.dials_seen += 1
        self._other_rings.add(max(0.0, ring_seconds))

    def talked(self, seconds: float) -> None:
        """An answered call ended after ``seconds`` (its agent then wraps up)."""
        self._talks.add(max(0.0, seconds))
        self._ended += 1

    def live_rate(self) -> float:
        """The share of dials answered live (see ``_live_share``)."""
        return self._live_share()[0]

    def _live_share(self) -> tuple[float, int]:
        """The share of dials answered live and the dials it is read from: the latest
        ``HISTORY`` outcomes, or the latest ``RECENT`` when those differ from it beyond
        chance (the list changed), or the latest ``LATEST`` when those say it rose. After
        a ``seed``, today's own dials (fewer than ``RECENT`` at first) that differ from
        the prior beyond chance replace it the same way."""
        if not self._outcomes:
            return 0.0, 0
        long = sum(self._outcomes) / len(self._outcomes)
        if len(self._outcomes) <= RECENT:
            return long, len(self._outcomes)
        spread = math.sqrt(max(long * (1.0 - long), 1e-6))
        # More live answers than the longer history says: dangerous (more callers than
        # agents), so believed after the latest ``LATEST`` dials already. (The latest
        # dials are today's own: after a prior, fewer at first, judged by their count.)
        if not self._recent:
            return long, len(self._outcomes)
        latest = list(self._recent)[-LATEST:]
        rising = sum(latest) / len(latest)
        if rising > long + Z_CHANGE * spread / math.sqrt(len(latest)):
            return rising, len(latest)
        short = sum(self._recent) / len(self._recent)
        if abs(short - long) > Z_CHANGE * spread / math.sqrt(len(self._recent)):
            return short, len(self._recent)
        return long, len(self._outcomes)

    def survival(self, running: Sequence[float] = ()) -> Survival:
        """Talk times by Kaplan–Meier: the calls ended and ``running`` (still talking)."""
        key = tuple(sorted(running))
        if self._survival is None or self._survival[0] != key or self._survival[1] != self._ended:
            self._survival = (key, self._ended, Survival.estimate(self._talks.recent, key))
        return self._survival[2]

    def live_bounds(self) -> tuple[float, float]:
        """The share of dials answered live and the upper end of its one-sided 95 %
        confidence interval (Wilson's, good for few dials too)."""
        rate, dials = self._live_share()
        return rate, wilson_upper(rate, dials, Z_LIVE)

    def knows(self) -> bool:
        """Whether the model knows enough to pace: live answers seen (their ring times)
        and the share of them known within a factor of two (95 %). What it knows less
        well it counts on the safe side: the upper end of the share's interval, and no
        agent freed by a call longer than the talk times it has evidence of."""
        if len(self._live_rings) < MIN_TAIL:
            return False
        rate, dials = self._live_share()
        return rate > 0 and wilson_upper(rate, dials, Z_KNOW) <= 2.0 * rate

    @property
    def ready(self) -> bool:
        return self.knows()

    def estimates(self, running: Sequence[float] = ()) -> Estimates | None:
        """The current estimates, or None while the model does not know enough."""
        if not self.knows():
            return None
        talks = self.survival(running)
        median = talks.quantile(0.5)
        rate, high = self.live_bounds()
        return Estimates(
            live_rate=rate,
            live_rate_high=high,
            answer_seconds=self._live_rings.median(),
            early_answer_seconds=self._live_rings.quantile(EARLY),
            # Unknown yet: at least as long as the longest call seen or running.
            talk_seconds=median
            if median is not None
            else max([*self._talks.sorted[-1:], *running, talks.known_until]),
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

    def frees_within(
        self, talked_for: float, seconds: float, running: Sequence[float] = ()
    ) -> float:
        """The chance that a call answered ``talked_for`` seconds ago ends within ``seconds``
        (Kaplan–Meier over the calls ended and ``running``; where it knows too little,
        the part it knows, which never over-dials)."""
        return self.survival(running).ends_within(talked_for, seconds)


class Estimates(msgspec.Struct, frozen=True, kw_only=True):
    """The model's view of a campaign, shown by the insight."""

    live_rate: float
    # The upper end of the share's 95 % interval: what the model paces with.
    live_rate_high: float = 0.0
    answer_seconds: float
    # The ring time a live answer beats only ``EARLY`` of the time: the free agents are
    # forecast for it (a caller answered sooner than the median finds fewer freed).
    early_answer_seconds: float = 0.0
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
    # Seconds an agent takes after a call before taking the next: the configured
    # assumption, used while the queue reports fewer than ``MIN_TAIL`` measured ones.
    wrap_up: float = 5.0
    # The wrap-ups the queue measured of its latest calls (seconds; any order).
    wrap_ups: Sequence[float] = ()
    # Seconds an answered call may wait for an agent before it counts abandoned.
    abandon_seconds: float = 2.0


def expected_excess(
    chances: Sequence[float],
    new_lines: int,
    live_rate: float,
    free: float,
    freeing: Sequence[float] = (),
) -> tuple[float, float]:
    """``(E[(X - G - free)+], E[X])`` for ``X`` the live answers of the ringing lines (each
    with its chance) and ``new_lines`` fresh ones (each with ``live_rate``), and ``G`` the
    talking agents freed in time (each with its chance in ``freeing``)."""
    mean = sum(chances) + new_lines * live_rate
    if len(chances) + new_lines + len(freeing) <= EXACT_LINES:
        # Exact: the distribution of X - G by adding one line (+1) or agent (-1) at a
        # time; ``offset`` is the index of 0.
        dist, offset = [1.0], 0
        steps = [(chance, 1) for chance in [*chances, *[live_rate] * new_lines]]
        steps += [(chance, -1) for chance in freeing]
        for chance, sign in steps:
            nxt = [0.0] * (len(dist) + 1)
            for k, weight in enumerate(dist):
                if sign > 0:
                    nxt[k] += weight * (1.0 - chance)
                    nxt[k + 1] += weight * chance
                else:
                    nxt[k + 1] += weight * (1.0 - chance)
                    nxt[k] += weight * chance
            dist = nxt
            offset += sign < 0
        excess = sum(
            weight * (k - offset - free) for k, weight in enumerate(dist) if k - offset > free
        )
        return excess, mean
    variance = sum(c * (1.0 - c) for c in chances) + new_lines * live_rate * (1.0 - live_rate)
    freed_variance = sum(c * (1.0 - c) for c in freeing)

    def normal_excess(centre: float, variance: float) -> float:
        # E[(Y - F)+] for Y normal: σ·φ(z) + (μ - F)·(1 - Φ(z)), z = (F - μ)/σ; F + ½
        # for the continuity of a count.
        sigma = math.sqrt(max(variance, 1e-9))
        z = (free + 0.5 - centre) / sigma
        tail = 0.5 * math.erfc(z / math.sqrt(2.0))
        density = math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
        return max(0.0, sigma * density + (centre - free - 0.5) * tail)

    # X - G <= X: agents who may come free never raise the excess, though their spread
    # widens the normal curve (it would, for a few agents unlikely to come free).
    return min(
        normal_excess(mean - sum(freeing), variance + freed_variance),
        normal_excess(mean, variance),
    ), mean


def free_agents_forecast(history: CallHistory, estimates: Estimates, now: Situation) -> float:
    """Agents expected free when lines started now are answered."""
    available, freeing, _ = _agents(history, estimates, now)
    return max(0.0, available + sum(freeing))


def _agents(
    history: CallHistory, estimates: Estimates, now: Situation
) -> tuple[float, list[float], Survival]:
    """Agents free now for the campaign's new callers (less those promised to callers
    waiting and to the queue's other campaigns), the chance each talking agent is free by
    the time lines started now are answered, and the talk-time estimate used."""
    talks = history.survival(now.talking)
    horizon = estimates.early_answer_seconds + now.abandon_seconds
    waits = wrap_up_samples(now)
    freeing = [
        sum(talks.ends_within(elapsed, horizon - wait) for wait in waits) / len(waits)
        for elapsed in now.talking
    ]
    return now.available_agents - now.waiting - now.other_live, freeing, talks


def wrap_up_samples(now: Situation) -> tuple[float, ...]:
    """The wrap-ups a talking agent's next one is drawn from: the queue's measured ones
    (at most ``WRAP_UP_POINTS`` of their quantiles) once it reported ``MIN_TAIL``, else
    the configured assumption alone."""
    measured = sorted(now.wrap_ups)
    if len(measured) < MIN_TAIL:
        return (now.wrap_up,)
    return quantiles(measured, WRAP_UP_POINTS)


def _largest(ceiling: int, fits: Callable[[int], bool]) -> int:
    """The largest count in ``[0, ceiling]`` that ``fits`` (which holds up to some count
    and fails beyond it), 0 if none."""
    low, high = 0, max(0, ceiling)
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def lines_to_start(
    history: CallHistory, now: Situation, target: float, ceiling: int, saved: float = 0.0
) -> int | None:
    """How many new lines to ring (at most ``ceiling``) so that the expected abandoned
    calls of the lines ringing stay within ``target`` of their expected live answers,
    plus ``SPEND`` of ``saved`` less one (the abandoned calls the day may still take at
    the target: a small team, whose every extra line risks a whole call, spends what its
    calls answered in time saved); None while the model knows too little."""
    estimates = history.estimates(now.talking)
    if estimates is None:
        return None
    rate = estimates.live_rate_high
    if ceiling <= 0 or rate <= 0:
        return 0
    available, freeing, _ = _agents(history, estimates, now)
    free = max(0.0, available)
    chances = [history.live_chance(rate, ringing) for ringing in now.ringing]

    def fits(new_lines: int) -> bool:
        excess, mean = expected_excess(chances, new_lines, rate, free, freeing)
        return excess <= target * mean + SPEND * max(0.0, saved - 1.0)

    if not fits(0):
        return 0
    return _largest(ceiling, fits)


def lines_within_headroom(
    history: CallHistory, now: Situation, headroom: float, cap: float, ceiling: int
) -> int | None:
    """The most new lines (at most ``ceiling``) with which the windows stay within the cap
    unless chance goes against the campaign by ``Z_SAFE`` standard deviations; None while
    the model knows too little.

    With ``X`` the live answers of the lines ringing and started, ``G`` the talking agents
    freed in time and ``A`` the agents free now, the calls abandoned are ``(X - A - G)+``
    and the windows stay within the cap while those are at most ``headroom`` (the
    abandoned calls the tightest window may still take) plus ``cap·X``: that is while
    ``(1 - cap)·X - G <= A + headroom``. Counting the lines already ringing, a decision
    repeated each tick does not spend the room twice."""
    estimates = history.estimates(now.talking)
    if estimates is None:
        return None
    available, freeing, _ = _agents(history, estimates, now)
    rate = estimates.live_rate_high
    chances = [history.live_chance(rate, ringing) for ringing in now.ringing]
    ringing_mean = sum(chances)
    ringing_variance = sum(chance * (1.0 - chance) for chance in chances)
    freed_mean = sum(freeing)
    freed_variance = sum(chance * (1.0 - chance) for chance in freeing)
    keep = 1.0 - cap

    def fits(new_lines: int) -> bool:
        mean = keep * (ringing_mean + new_lines * rate)
        variance = keep * keep * (ringing_variance + new_lines * rate * (1.0 - rate))
        # X - G <= X: agents who may come free never count against the room, though
        # their spread widens the normal bound (a few agents unlikely to come free).
        bound = min(
            mean - freed_mean + Z_SAFE * math.sqrt(variance + freed_variance),
            mean + Z_SAFE * math.sqrt(variance),
        )
        return bound <= available + headroom

    return _largest(ceiling, fits)
