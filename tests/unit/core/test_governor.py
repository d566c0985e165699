"""The abandonment governor over every pacing mode, and the windows it reads (§10)."""

from __future__ import annotations

import itertools
import math
import random
from datetime import UTC, datetime

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from dialerd.core import abandonment, governor
from dialerd.core.abandonment import DayCount, WindowCount
from dialerd.core.pacing import PacingInput, decide
from dialerd.core.predictive import CallHistory, Situation, lines_within_headroom
from dialerd.insight import DialingState

PROPERTY = settings(max_examples=300, deadline=None)
CAP = 0.03


def window(live: int, abandoned: int, days: int = 1) -> WindowCount:
    return WindowCount(
        days=days, live=live, abandoned=abandoned, rate=abandonment.rate(abandoned, live)
    )


def pacing(**changes: object) -> PacingInput:
    base = PacingInput(
        has_queue=True,
        available_agents=10,
        dialing_attempts=0,
        active_attempts=0,
        service_level=50,
        max_concurrent_attempts=1000,
        rate_allowance=1000,
    )
    return msgspec.structs.replace(base, **changes)


# -- measurement ------------------------------------------------------------------------


def test_a_live_answer_is_abandoned_unless_an_agent_took_it_within_the_limit() -> None:
    assert not abandonment.is_abandoned(0.0, 2.0)
    assert not abandonment.is_abandoned(2.0, 2.0)
    assert abandonment.is_abandoned(2.5, 2.0)  # an agent took it, but too late
    assert abandonment.is_abandoned(None, 2.0)  # no agent ever did


def test_windows_sum_the_days_they_reach_and_ignore_older_ones() -> None:
    days = [
        DayCount(day="2026-01-31", live=1000, abandoned=900),  # the 31st day back: outside
        DayCount(day="2026-02-01", live=100, abandoned=4),  # the 30th day back: inside
        DayCount(day="2026-03-01", live=50, abandoned=1),
        DayCount(day="2026-03-02", live=200, abandoned=2),
    ]
    today, month = abandonment.windows(days, "2026-03-02", [1, 30])
    assert (today.live, today.abandoned, today.rate) == (200, 2, 0.01)
    assert (month.live, month.abandoned) == (350, 7)


def test_the_day_follows_the_configured_offset_from_utc() -> None:
    late = datetime(2026, 6, 1, 23, 30, tzinfo=UTC)
    assert abandonment.campaign_day(late) == "2026-06-01"
    assert abandonment.campaign_day(late, 60) == "2026-06-02"  # UK summer time


def test_no_live_answer_is_a_rate_of_zero() -> None:
    assert abandonment.rate(0, 0) == 0.0


# -- governor -----------------------------------------------------------------------------


def learned(live_rate: float = 0.25, dials: int = 400, seed: int = 1) -> CallHistory:
    """A campaign's history: live answers ring 2-12 s, the others end by 20 s; calls
    last 60-300 s."""
    rng = random.Random(seed)
    history = CallHistory()
    for _ in range(dials):
        if rng.random() < live_rate:
            history.answered_live(rng.uniform(2, 12))
            history.talked(rng.uniform(60, 300))
        else:
            history.not_answered(rng.choice((rng.uniform(1, 4), 20.0)))
    return history


def over_the_cap(lines: int, live_rate: float, free: int, room: float) -> float:
    """The chance that ``lines`` fresh lines, each answered live with ``live_rate``, with
    ``free`` agents, abandon more calls than ``room`` plus the cap's share of their live
    answers (exact, binomial)."""
    chance = 0.0
    for live in range(lines + 1):
        if max(0, live - free) > room + CAP * live:
            chance += math.exp(
                math.lgamma(lines + 1) - math.lgamma(live + 1) - math.lgamma(lines - live + 1)
                + live * math.log(live_rate) + (lines - live) * math.log1p(-live_rate)
            )  # fmt: skip
    return chance


def test_the_worst_window_governs() -> None:
    month, today = window(10_000, 100, days=30), window(100, 3, days=1)
    assert governor.no_room([month, today], CAP)
    assert governor.room([month, today], CAP) == 0.0


def test_the_governor_never_adds_lines_to_a_cautious_mode() -> None:
    decision = decide(pacing(service_level=200), windows=[window(0, 0)], cap=CAP)
    assert decision.attempts == 5


def test_a_huge_team_early_in_the_day_rings_only_what_the_room_takes() -> None:
    # Issue 24, defect 1: 500 free agents, 40 live answers so far (room for 1.2 abandoned
    # calls): the old governor let the model ring ~2000 lines, whose spread alone
    # abandons dozens of callers and puts the day above the cap.
    history = learned()
    now = Situation(available_agents=500, ringing=[], talking=[])
    room = CAP * 40  # the day's room: 1.2 abandoned calls
    allowed = lines_within_headroom(history, now, room, CAP, 5000)
    assert allowed is not None
    estimates = history.estimates()
    assert estimates is not None
    state = pacing(service_level=100, available_agents=500, max_concurrent_attempts=5000,
                   rate_allowance=5000)  # fmt: skip
    decision = decide(state, predicted=4000, windows=[window(40, 0)], cap=CAP,
                      headroom_lines=allowed)  # fmt: skip
    assert decision.attempts == allowed
    assert over_the_cap(decision.attempts, estimates.live_rate, 500, room) < 0.02


def test_lines_already_ringing_spend_the_room() -> None:
    history = learned()
    idle = lines_within_headroom(history, Situation(available_agents=50, ringing=[],
                                                    talking=[]), 3.0, CAP, 5000)  # fmt: skip
    ringing = lines_within_headroom(history, Situation(available_agents=50, ringing=[0.0] * 150,
                                                       talking=[]), 3.0, CAP, 5000)  # fmt: skip
    assert idle is not None
    assert ringing is not None
    assert ringing <= max(0, idle - 140)


def test_nearing_the_cap_the_lines_fall_a_few_at_a_time_not_to_the_floor() -> None:
    # Issue 24, defect 3: the old governor's pressure went from 0 to 1 between 1.8 % and
    # 3 %, so the line count jumped between the mode's and one per free agent.
    history = learned()
    now = Situation(available_agents=20, ringing=[], talking=[])
    counts = []
    for abandoned in range(0, 300, 10):  # 0 % to 2.9 % of 10 000 live answers
        room = CAP * 10_000 - abandoned
        allowed = lines_within_headroom(history, now, room, CAP, 1000)
        assert allowed is not None
        counts.append(decide(pacing(service_level=100, available_agents=20), predicted=70,
                             windows=[window(10_000, abandoned)], cap=CAP,
                             headroom_lines=allowed).attempts)  # fmt: skip
    # While the room takes dozens of abandoned calls (up to 2.5 %) nothing is held back:
    # the old pressure cut lines from 1.8 % on, and the rate swung around that point.
    assert counts[:26] == [70] * 26
    assert counts[-1] > 20  # at 2.9 %, room for 10 calls: above the floor
    assert all(later <= earlier for earlier, later in itertools.pairwise(counts))
    assert max(a - b for a, b in itertools.pairwise(counts)) <= 10


@PROPERTY
@given(
    available=st.integers(0, 300),
    ringing=st.integers(0, 300),
    room=st.floats(0.0, 50.0),
)
def test_the_lines_allowed_keep_the_windows_within_the_cap_with_high_odds(
    available: int, ringing: int, room: float
) -> None:
    history = learned(seed=4)
    estimates = history.estimates()
    assert estimates is not None
    now = Situation(available_agents=available, ringing=[0.0] * ringing, talking=[])
    allowed = lines_within_headroom(history, now, room, CAP, 3000)
    assert allowed is not None
    lines = ringing + allowed
    if allowed > 0:
        chance = history.live_chance(estimates.live_rate, 0.0)
        assert over_the_cap(lines, chance, available, room) < 0.03


# -- the decision: mode, then governor ---------------------------------------------------


def test_service_level_50_rings_two_lines_per_free_agent_while_far_from_the_cap() -> None:
    decision = decide(pacing(), windows=[window(1000, 0)], cap=CAP, headroom_lines=100)
    assert decision.attempts == 20


def test_service_level_50_at_the_cap_rings_one_line_per_free_agent() -> None:
    decision = decide(pacing(), windows=[window(100, 3)], cap=CAP)
    assert decision.attempts == 10
    assert decision.held_by == DialingState.GOVERNED


def test_predictive_at_the_cap_counts_the_lines_already_ringing() -> None:
    decision = decide(pacing(dialing_attempts=8), predicted=40, windows=[window(50, 5)], cap=CAP)
    assert decision.attempts == 2  # 10 free agents, 8 lines ring already


def test_without_history_a_predictive_campaign_follows_the_seed_rule() -> None:
    seed = decide(pacing(service_level=100))
    assert decide(pacing(service_level=100), predicted=None).attempts == seed.attempts == 10


@PROPERTY
@given(
    available=st.integers(0, 300),
    dialing=st.integers(0, 300),
    service_level=st.integers(0, 300),
    predicted=st.none() | st.integers(0, 2000),
    live=st.integers(1, 5000),
)
def test_at_the_cap_lines_ringing_never_exceed_free_agents(
    available: int, dialing: int, service_level: int, predicted: int | None, live: int
) -> None:
    state = pacing(
        available_agents=available,
        dialing_attempts=dialing,
        active_attempts=dialing,
        service_level=service_level,
    )
    at_cap = window(live, max(1, round(live * CAP + 0.5)))
    started = decide(state, predicted=predicted, windows=[at_cap], cap=CAP).attempts
    assert dialing + started <= max(dialing, available)


def test_without_a_model_of_the_campaign_a_governed_mode_rings_one_line_per_free_agent() -> None:
    decision = decide(pacing(), windows=[window(1000, 0)], cap=CAP, headroom_lines=None)
    assert decision.attempts == 10


def test_at_the_start_of_a_window_one_abandoned_call_would_break_the_cap() -> None:
    assert governor.no_room([window(10, 0)], CAP)  # 3 % of 10 is under one call
    assert not governor.no_room([window(100, 0)], CAP)
    held = decide(pacing(), windows=[window(33, 0)], cap=CAP, headroom_lines=100)
    assert held.attempts == 10


# -- the governor acts only when configured (behaviour.md §3) ----------------------------


def test_without_a_cap_service_level_50_rings_two_lines_per_free_agent_from_the_start() -> None:
    # The start of a day: no live answer yet, which is no room at all under a cap.
    decision = decide(pacing(), windows=[window(0, 0)], cap=None)
    assert decision.attempts == 20
    assert decision.held_by == DialingState.PACED
    assert (decision.pressure, decision.detail) == (0.0, "")


def test_without_a_cap_service_level_0_is_bounded_by_the_ceiling_only() -> None:
    decision = decide(pacing(service_level=0, max_concurrent_attempts=100), windows=[window(0, 0)])
    assert decision.attempts == 100


def test_with_a_cap_the_cold_start_holds_one_line_per_free_agent_and_says_why() -> None:
    decision = decide(pacing(), windows=[window(0, 0)], cap=CAP)
    assert decision.attempts == 10
    assert decision.held_by == DialingState.GOVERNED
    assert decision.pressure == 1.0
    assert "no room for an abandoned call" in decision.detail
    assert "nears the cap" not in decision.detail


def test_the_governor_is_not_blamed_when_it_held_nothing_back() -> None:
    # No free agent: the rule allows nothing, the governor has nothing to hold.
    waiting = decide(pacing(available_agents=0), windows=[window(0, 0)], cap=CAP)
    assert waiting.held_by == DialingState.WAITING_FOR_AGENTS
    assert (waiting.pressure, waiting.detail) == (0.0, "")
    # One line per free agent asked: the floor itself, nothing held back at the cap.
    at_floor = decide(pacing(service_level=100), windows=[window(100, 3)], cap=CAP)
    assert (at_floor.attempts, at_floor.held_by) == (10, DialingState.PACED)
    assert (at_floor.pressure, at_floor.detail) == (0.0, "")


def test_near_the_cap_the_detail_names_the_rate_and_the_cap() -> None:
    decision = decide(pacing(), windows=[window(1000, 24)], cap=CAP, headroom_lines=15)
    assert decision.held_by == DialingState.GOVERNED
    assert decision.attempts == 15
    assert decision.detail == (
        "abandonment cap 3.0%: 2.4% over 1 day; no more lines than the windows' room can take"
    )
    assert decision.pressure == 0.5
