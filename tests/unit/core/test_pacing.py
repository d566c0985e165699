"""The service-level rule and its ceilings (behaviour.md §3), and the per-second budget."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from dialerd.core.pacing import PacingInput, RateBudget, attempts_to_start, service_level_allows

PROPERTY = settings(max_examples=200, deadline=None)


def pacing(**changes: object) -> PacingInput:
    """A campaign with a queue, service level 100 and ceilings far above the rule."""
    base = PacingInput(
        has_queue=True,
        available_agents=5,
        dialing_attempts=0,
        active_attempts=0,
        service_level=100,
        max_concurrent_attempts=1000,
        rate_allowance=1000,
    )
    return msgspec.structs.replace(base, **changes)


def test_service_level_100_dials_one_line_per_available_agent() -> None:
    assert attempts_to_start(pacing(available_agents=5, service_level=100)) == 5


def test_service_level_200_dials_one_line_per_two_available_agents() -> None:
    assert attempts_to_start(pacing(available_agents=6, service_level=200)) == 3


def test_service_level_50_dials_two_lines_per_available_agent() -> None:
    assert attempts_to_start(pacing(available_agents=4, service_level=50)) == 8


def test_service_level_0_is_bounded_only_by_the_concurrency_ceiling() -> None:
    decision = pacing(available_agents=2, service_level=0, max_concurrent_attempts=7)
    assert attempts_to_start(decision) == 7


def test_service_level_0_with_no_available_agent_dials_nothing() -> None:
    assert attempts_to_start(pacing(available_agents=0, service_level=0)) == 0


def test_agentless_campaign_is_bounded_only_by_its_ceilings() -> None:
    agentless = pacing(has_queue=False, available_agents=0, service_level=100)
    assert attempts_to_start(msgspec.structs.replace(agentless, max_concurrent_attempts=9)) == 9
    assert attempts_to_start(msgspec.structs.replace(agentless, rate_allowance=4)) == 4


def test_agentless_campaign_counts_active_attempts_against_the_ceiling() -> None:
    decision = pacing(has_queue=False, active_attempts=8, max_concurrent_attempts=10)
    assert attempts_to_start(decision) == 2


def test_attempts_already_dialing_count_against_available_agents() -> None:
    assert attempts_to_start(pacing(available_agents=5, dialing_attempts=2, active_attempts=2)) == 3
    assert attempts_to_start(pacing(available_agents=5, dialing_attempts=5, active_attempts=5)) == 0


def test_answered_attempts_do_not_count_as_dialing() -> None:
    # Five answered (progressing) calls hold their agents; three agents are still free.
    decision = pacing(available_agents=3, dialing_attempts=0, active_attempts=5)
    assert attempts_to_start(decision) == 3


def test_answered_attempts_count_toward_the_concurrency_ceiling() -> None:
    decision = pacing(
        available_agents=3, dialing_attempts=0, active_attempts=9, max_concurrent_attempts=10
    )
    assert attempts_to_start(decision) == 1


def test_campaign_at_its_concurrency_ceiling_starts_nothing() -> None:
    decision = pacing(available_agents=3, active_attempts=10, max_concurrent_attempts=10)
    assert attempts_to_start(decision) == 0


def test_rate_allowance_caps_one_tick() -> None:
    assert attempts_to_start(pacing(available_agents=10, rate_allowance=2)) == 2
    assert attempts_to_start(pacing(available_agents=10, rate_allowance=0)) == 0


def test_no_available_agent_starts_nothing() -> None:
    assert attempts_to_start(pacing(available_agents=0, service_level=100)) == 0
    assert attempts_to_start(pacing(available_agents=0, service_level=50)) == 0


def test_service_level_rule_is_the_seeds_strict_inequality() -> None:
    # 5 agents at 200%: 5 > d * 2 holds for d = 0, 1, 2, so the third line still goes out.
    assert service_level_allows(5, 2, 200)
    assert not service_level_allows(5, 3, 200)
    assert not service_level_allows(4, 4, 100)


pacing_inputs = st.builds(
    lambda has_queue, available, dialing, progressing, level, ceiling, allowance: PacingInput(
        has_queue=has_queue,
        available_agents=available,
        dialing_attempts=dialing,
        active_attempts=dialing + progressing,
        service_level=level,
        max_concurrent_attempts=ceiling,
        rate_allowance=allowance,
    ),
    st.booleans(),
    st.integers(0, 200),
    st.integers(0, 100),
    st.integers(0, 100),
    st.integers(0, 1000),
    st.integers(1, 300),
    st.integers(0, 100),
)


@PROPERTY
@given(pacing_inputs)
def test_every_attempt_started_in_a_tick_satisfies_the_rule(decision: PacingInput) -> None:
    started = attempts_to_start(decision)
    if decision.has_queue:
        for already in range(started):
            dialing = decision.dialing_attempts + already
            assert decision.available_agents * 100 > dialing * decision.service_level


@PROPERTY
@given(pacing_inputs)
def test_a_tick_never_exceeds_either_ceiling(decision: PacingInput) -> None:
    started = attempts_to_start(decision)
    assert 0 <= started <= decision.rate_allowance
    assert decision.active_attempts + started <= max(
        decision.max_concurrent_attempts, decision.active_attempts
    )
    if decision.active_attempts >= decision.max_concurrent_attempts:
        assert started == 0


@PROPERTY
@given(pacing_inputs)
def test_a_tick_starts_as_many_attempts_as_allowed(decision: PacingInput) -> None:
    started = attempts_to_start(decision)
    one_more = started + 1
    breaks_concurrency = decision.active_attempts + one_more > decision.max_concurrent_attempts
    breaks_rate = one_more > decision.rate_allowance
    breaks_rule = decision.has_queue and not (
        decision.available_agents * 100
        > (decision.dialing_attempts + started) * decision.service_level
    )
    assert breaks_concurrency or breaks_rate or breaks_rule


def test_full_budget_allows_one_second_of_attempts() -> None:
    assert RateBudget.full(rate=5.0, now=100.0).allowance == 5


def test_budget_below_one_per_second_still_allows_one_attempt() -> None:
    budget = RateBudget.full(rate=0.5, now=0.0)
    assert budget.allowance == 1
    budget = budget.spent(1)
    assert budget.refilled(1.0).allowance == 0
    assert budget.refilled(2.0).allowance == 1


def test_spending_the_budget_leaves_nothing_until_it_refills() -> None:
    budget = RateBudget.full(rate=5.0, now=0.0).spent(5)
    assert budget.allowance == 0
    assert budget.refilled(0.1).allowance == 0
    assert budget.refilled(0.2).allowance == 1
    assert budget.refilled(0.6).allowance == 3


def test_partial_spending_keeps_the_rest() -> None:
    assert RateBudget.full(rate=5.0, now=0.0).spent(2).allowance == 3


def test_budget_never_refills_beyond_its_burst() -> None:
    budget = RateBudget.full(rate=5.0, now=0.0).spent(5)
    assert budget.refilled(3600.0).allowance == 5


def test_lower_rate_on_reload_caps_the_budget_at_the_new_burst() -> None:
    budget = RateBudget.full(rate=10.0, now=0.0).refilled(0.5, rate=2.0)
    assert budget.allowance == 2
    budget = budget.spent(2)
    assert budget.refilled(1.0).allowance == 1


def test_higher_rate_on_reload_applies_from_the_reload_on() -> None:
    budget = RateBudget.full(rate=1.0, now=0.0).spent(1)
    reloaded = budget.refilled(0.5, rate=20.0)
    # Half a second at the old rate: no whole attempt yet, and no sudden burst of 20.
    assert reloaded.allowance == 0
    assert reloaded.refilled(1.0).allowance == 10
    assert reloaded.refilled(10.0).allowance == 20


@PROPERTY
@given(
    rate=st.floats(0.2, 100.0),
    ticks=st.lists(st.tuples(st.floats(0.0, 2.0), st.floats(0.0, 1.0)), min_size=1, max_size=60),
)
def test_attempts_in_any_window_never_exceed_rate_times_window_plus_burst(
    rate: float, ticks: list[tuple[float, float]]
) -> None:
    now = 0.0
    budget = RateBudget.full(rate=rate, now=now)
    granted: list[tuple[float, int]] = []
    for gap, share in ticks:
        now += gap
        budget = budget.refilled(now)
        attempts = round(budget.allowance * share)
        budget = budget.spent(attempts)
        granted.append((now, attempts))
    for first, (start, _) in enumerate(granted):
        total = 0
        for end, attempts in granted[first:]:
            total += attempts
            assert total <= rate * (end - start) + budget.burst + 1e-9
