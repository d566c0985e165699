"""The scheduler's small owned states over the fakes: the dialing state, the leases'
read view, the one back-off formula."""

from __future__ import annotations

from datetime import timedelta

from dialerd.config import EngineConfig
from dialerd.insight import DialingState, TargetCounts
from dialerd.scheduler.registry import Leases
from dialerd.scheduler.shared import backoff
from dialerd.scheduler.states import DialingStates
from tests.fakes.clock import FakeClock

CAMPAIGN = "0b7f1a3e-0000-4000-8000-000000000001"


async def test_a_state_keeps_its_since_until_it_changes() -> None:
    clock = FakeClock()
    states = DialingStates(clock)
    assert states.get(CAMPAIGN).state is None

    states.set(CAMPAIGN, DialingState.DIALING)
    entered = states.get(CAMPAIGN).since
    await clock.advance(5.0)
    states.set(CAMPAIGN, DialingState.DIALING)
    assert states.get(CAMPAIGN).since == entered

    states.set(CAMPAIGN, DialingState.NO_ELIGIBLE_TARGET, "retry_interval 3")
    changed = states.get(CAMPAIGN)
    assert entered is not None
    assert changed.since == entered + timedelta(seconds=5)
    assert changed.detail == "retry_interval 3"


def test_list_counts_survive_a_state_change_and_go_with_the_campaign() -> None:
    states = DialingStates(FakeClock())
    counts = TargetCounts(idle_due=4, done=1)
    states.counted(CAMPAIGN, counts)
    states.set(CAMPAIGN, DialingState.DIALING)
    assert states.get(CAMPAIGN).target_counts == counts
    states.forget(CAMPAIGN)
    assert states.get(CAMPAIGN).target_counts is None


def test_no_lease_is_held_or_known_elsewhere_at_first() -> None:
    leases = Leases()
    assert leases.fence(CAMPAIGN) is None
    assert not leases.held_elsewhere(CAMPAIGN, 0.0)


def test_the_back_off_doubles_up_to_its_maximum() -> None:
    config = EngineConfig(backoff_initial=1.0, backoff_max=5.0)
    assert [backoff(config, failures) for failures in range(1, 6)] == [1, 2, 4, 5, 5]
