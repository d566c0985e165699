"""The abandonment governor over every pacing mode, and the windows it reads (§10)."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from dialerd.core import abandonment, governor
from dialerd.core.abandonment import DayCount, WindowCount
from dialerd.core.pacing import PacingInput, decide
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


def test_far_from_the_cap_the_mode_decides() -> None:
    assert governor.pressure([window(1000, 10)], CAP) == 0.0
    assert governor.governed(wanted=30, floor=10, pressure=0.0) == 30


def test_at_the_cap_no_more_lines_than_free_agents() -> None:
    assert governor.pressure([window(200, 6)], CAP) == 1.0
    assert governor.governed(wanted=30, floor=10, pressure=1.0) == 10


def test_nearing_the_cap_backs_off_towards_one_line_per_free_agent() -> None:
    halfway = governor.pressure([window(1000, 24)], CAP)  # 2.4 %: half-way from 1.8 % to 3 %
    assert 0.4 < halfway < 0.6
    assert governor.governed(wanted=30, floor=10, pressure=halfway) == 20


def test_the_worst_window_governs() -> None:
    month, today = window(10_000, 100, days=30), window(100, 3, days=1)
    assert governor.pressure([month, today], CAP) == 1.0


def test_the_governor_never_adds_lines_to_a_cautious_mode() -> None:
    assert governor.governed(wanted=5, floor=10, pressure=1.0) == 5


@PROPERTY
@given(
    wanted=st.integers(0, 500),
    floor=st.integers(0, 500),
    pressure=st.floats(0.0, 1.0),
)
def test_governed_lines_lie_between_the_floor_and_the_mode(
    wanted: int, floor: int, pressure: float
) -> None:
    allowed = governor.governed(wanted, floor, pressure)
    assert min(wanted, floor) <= allowed <= max(wanted, floor)
    if wanted > floor and pressure >= 1.0:
        assert allowed == floor


@PROPERTY
@given(live=st.integers(1, 10_000), abandoned=st.integers(0, 10_000))
def test_pressure_grows_with_the_rate(live: int, abandoned: int) -> None:
    abandoned = min(abandoned, live)
    lower = governor.pressure([window(live, abandoned)], CAP)
    higher = governor.pressure([window(live, min(live, abandoned + 1))], CAP)
    assert 0.0 <= lower <= higher <= 1.0


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
    assert governor.pressure([window(10, 0)], CAP) == 1.0  # 3 % of 10 is under one call
    assert governor.pressure([window(100, 0)], CAP) == 0.0


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
    decision = decide(pacing(), windows=[window(1000, 24)], cap=CAP, headroom_lines=100)
    assert decision.held_by == DialingState.GOVERNED
    assert decision.detail == "abandonment nears the cap: 2.4% of 3.0% over 1 day"
    assert 0 < decision.pressure < 1
